package main

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/momentum-run/momentum/adapters/image"
)

// pkgPrograms are small static Go programs for linux, by GOARCH, built
// once per test run.
var pkgPrograms struct {
	once sync.Once
	bins map[string][]byte
	err  error
}

// pkgProgram returns a small static Go program for linux/goarch (amd64,
// arm64 or 386).
func pkgProgram(t *testing.T, goarch string) []byte {
	t.Helper()
	pkgPrograms.once.Do(func() {
		dir, err := os.MkdirTemp("", "momentum-package-")
		if err != nil {
			pkgPrograms.err = err
			return
		}
		defer os.RemoveAll(dir)
		src := filepath.Join(dir, "main.go")
		if err := os.WriteFile(src, []byte("package main\n\nfunc main() { println(\"hello from the image\") }\n"), 0o644); err != nil {
			pkgPrograms.err = err
			return
		}
		bins := map[string][]byte{}
		for _, arch := range []string{"amd64", "arm64", "386"} {
			out := filepath.Join(dir, arch)
			cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, src)
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch, "GOFLAGS=")
			cmd.Dir = dir
			if b, err := cmd.CombinedOutput(); err != nil {
				pkgPrograms.err = fmt.Errorf("go build for linux/%s: %v\n%s", arch, err, b)
				return
			}
			if bins[arch], err = os.ReadFile(out); err != nil {
				pkgPrograms.err = err
				return
			}
		}
		pkgPrograms.bins = bins
	})
	if pkgPrograms.err != nil {
		t.Fatal(pkgPrograms.err)
	}
	return pkgPrograms.bins[goarch]
}

// pkgTinyELF is a minimal static ELF executable for linux/amd64, of 132
// bytes, for the tests where only its being one matters: an ELF header,
// one loadable segment, and code that exits with status.
func pkgTinyELF(status byte) []byte {
	code := []byte{
		0xb8, 0x3c, 0x00, 0x00, 0x00, // mov eax, 60 (exit)
		0xbf, status, 0x00, 0x00, 0x00, // mov edi, status
		0x0f, 0x05, // syscall
	}
	const base, ehsize, phsize = 0x400000, 64, 56
	var b bytes.Buffer
	le := binary.LittleEndian
	b.Write([]byte{0x7f, 'E', 'L', 'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0}) // 64-bit, little-endian, SysV
	binary.Write(&b, le, struct {
		Type, Machine                                        uint16
		Version                                              uint32
		Entry, Phoff, Shoff                                  uint64
		Flags                                                uint32
		Ehsize, Phentsize, Phnum, Shentsize, Shnum, Shstrndx uint16
	}{uint16(elf.ET_EXEC), uint16(elf.EM_X86_64), 1, base + ehsize + phsize, ehsize, 0, 0, ehsize, phsize, 1, 64, 0, 0})
	size := uint64(ehsize + phsize + len(code))
	binary.Write(&b, le, struct {
		Type, Flags                             uint32
		Off, Vaddr, Paddr, Filesz, Memsz, Align uint64
	}{uint32(elf.PT_LOAD), uint32(elf.PF_R | elf.PF_X), 0, base, base, size, size, 0x1000})
	b.Write(code)
	return b.Bytes()
}

// pkgDynamic returns a dynamically linked executable of the host, and the
// host's architecture as Lambda names it.
func pkgDynamic(t *testing.T) ([]byte, string) {
	t.Helper()
	arch := map[string]string{"amd64": "x86_64", "arm64": "arm64"}[runtime.GOARCH]
	if runtime.GOOS != "linux" || arch == "" {
		t.Skipf("no dynamically linked linux/amd64 or arm64 executable on %s/%s", runtime.GOOS, runtime.GOARCH)
	}
	for _, p := range []string{"/bin/true", "/usr/bin/true", "/bin/ls"} {
		f, err := elf.Open(p)
		if err != nil {
			continue
		}
		interp := false
		for _, prog := range f.Progs {
			interp = interp || prog.Type == elf.PT_INTERP
		}
		f.Close()
		if b, err := os.ReadFile(p); err == nil && interp {
			return b, arch
		}
	}
	t.Skip("no dynamically linked executable on this host")
	return nil, ""
}

// pkgFile is a file of a test layer: a regular file with data, or a
// symbolic link (symlink), a hard link (hardlink) or a directory (dir).
type pkgFile struct {
	name     string
	data     []byte
	mode     int64 // default 0755
	symlink  string
	hardlink string
	dir      bool
}

func pkgLayer(t *testing.T, files ...pkgFile) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: 0o755, Typeflag: tar.TypeReg, Size: int64(len(f.data)), ModTime: time.Unix(0, 0)}
		if f.mode != 0 {
			h.Mode = f.mode
		}
		switch {
		case f.symlink != "":
			h.Typeflag, h.Linkname, h.Size = tar.TypeSymlink, f.symlink, 0
		case f.hardlink != "":
			h.Typeflag, h.Linkname, h.Size = tar.TypeLink, f.hardlink, 0
		case f.dir:
			h.Typeflag, h.Size = tar.TypeDir, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(f.data); err != nil && h.Size > 0 {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
		tarball.WithMediaType(types.OCILayer))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// pkgImage is an OCI image for linux/goarch of the layers, its config
// set by config.
func pkgImage(t *testing.T, goarch string, config func(*v1.Config), layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), layers...)
	if err != nil {
		t.Fatal(err)
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", goarch
	cfg.Config.User = "65532:65532"
	if config != nil {
		config(&cfg.Config)
	}
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
		t.Fatal(err)
	}
	return img
}

// pkgEntrypoint sets the entrypoint.
func pkgEntrypoint(argv ...string) func(*v1.Config) {
	return func(c *v1.Config) { c.Entrypoint = argv }
}

// pkgSimple is the image momentum-image makes: /momentum, the entrypoint.
func pkgSimple(t *testing.T, goarch string, bin []byte) v1.Image {
	t.Helper()
	return pkgImage(t, goarch, pkgEntrypoint("/momentum"), pkgLayer(t, pkgFile{name: "momentum", data: bin}))
}

// pkgIndex is an OCI index of images by architecture.
func pkgIndex(images map[string]v1.Image) v1.ImageIndex {
	var idx v1.ImageIndex = mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, arch := range []string{"amd64", "arm64"} {
		if img, ok := images[arch]; ok {
			idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
				Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}},
			})
		}
	}
	return idx
}

// pkgLayout writes an OCI layout holding img (an image or an index)
// tagged "momentum:dev".
func pkgLayout(t *testing.T, img any) string {
	t.Helper()
	dir := t.TempDir()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	ann := layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "momentum:dev"})
	switch img := img.(type) {
	case v1.Image:
		err = p.AppendImage(img, ann)
	case v1.ImageIndex:
		err = p.AppendIndex(img, ann)
	}
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// pkgTarDir writes the files under dir into a tar, as an OCI archive.
func pkgTarDir(t *testing.T, dir string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "image.oci.tar")
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		h, err := tar.FileInfoHeader(fi, "")
		if err != nil {
			return err
		}
		h.Name = filepath.ToSlash(rel)
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if d.Type().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			_, err = tw.Write(b)
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	tw.Close()
	if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}

// pkgDockerSave writes img as docker save does, tagged momentum:dev.
func pkgDockerSave(t *testing.T, img v1.Image) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "image.tar")
	if err := tarball.WriteToFile(out, name.MustParseReference("momentum:dev"), img); err != nil {
		t.Fatal(err)
	}
	return out
}

// pkgRegistry starts a registry on loopback and pushes img (an image or
// an index) to it as momentum:dev. It returns the reference. The test
// empties docker login's configuration first with pkgNoDockerConfig.
func pkgRegistry(t *testing.T, img any) string {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	ref := strings.TrimPrefix(srv.URL, "http://") + "/momentum:dev"
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	switch img := img.(type) {
	case v1.Image:
		err = remote.Write(r, img)
	case v1.ImageIndex:
		err = remote.WriteIndex(r, img)
	}
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

// pkgNoDockerConfig points docker login's configuration, which
// authn.DefaultKeychain reads, at an empty directory for this test and
// its subtests (which may then run in parallel).
func pkgNoDockerConfig(t *testing.T) {
	t.Setenv("DOCKER_CONFIG", t.TempDir())
}

// pkgRun runs "momentum package lambda" in process.
func pkgRun(t *testing.T, terminal bool, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := runPackage(context.Background(), append([]string{"lambda"}, args...), &stdout, &stderr, terminal)
	return result{code, stdout.String(), stderr.String()}
}

// pkgBootstrap checks that the zip has one entry, bootstrap, a regular
// file of mode 0755 made on Unix, deflated, dated 1980-01-01 00:00:00 UTC,
// with no extra fields, and returns its contents.
func pkgBootstrap(t *testing.T, zipped []byte) []byte {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(zipped), int64(len(zipped)))
	if err != nil {
		t.Fatal(err)
	}
	if len(zr.File) != 1 {
		t.Fatalf("the zip has %d entries, want 1", len(zr.File))
	}
	f := zr.File[0]
	want1980 := time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)
	switch {
	case f.Name != "bootstrap":
		t.Errorf("entry %q, want bootstrap", f.Name)
	case f.Mode() != 0o755:
		t.Errorf("mode %v, want -rwxr-xr-x", f.Mode())
	case f.CreatorVersion>>8 != 3:
		t.Errorf("made by %d, want 3 (Unix)", f.CreatorVersion>>8)
	case f.ExternalAttrs != 0o100755<<16:
		t.Errorf("external attributes %#o, want 0o100755<<16", f.ExternalAttrs)
	case f.Method != zip.Deflate:
		t.Errorf("method %d, want deflate", f.Method)
	case !f.Modified.Equal(want1980):
		t.Errorf("modified %v, want %v", f.Modified, want1980)
	case len(f.Extra) != 0:
		t.Errorf("extra fields %x, want none", f.Extra)
	}
	// The local header's extra field too.
	if len(zipped) < 30 || binary.LittleEndian.Uint32(zipped) != 0x04034b50 || binary.LittleEndian.Uint16(zipped[28:]) != 0 {
		t.Errorf("the local header has extra fields (or is not one): % x", zipped[:min(len(zipped), 30)])
	}
	rc, err := f.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc) // checks the CRC too
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestPackageLambda packages images of every kind IMAGE can name, and
// checks that the zip holds the very bytes of the right binary and that
// the report shows the digests; and that the zip depends on the binary
// alone: whatever the source, the same binary gives the same bytes.
func TestPackageLambda(t *testing.T) {
	pkgNoDockerConfig(t)
	amd64, arm64 := pkgProgram(t, "amd64"), pkgProgram(t, "arm64")
	single := pkgSimple(t, "amd64", amd64)
	singleDir := pkgLayout(t, single)
	multi := pkgIndex(map[string]v1.Image{"amd64": single, "arm64": pkgSimple(t, "arm64", arm64)})
	multiDir := pkgLayout(t, multi)
	dockerSave := pkgDockerSave(t, pkgImage(t, "amd64", pkgEntrypoint("/momentum", "serve"),
		pkgLayer(t, pkgFile{name: "momentum", data: amd64})))
	// Where the binary is found, tiny binaries do.
	tiny, other := pkgTinyELF(0), pkgTinyELF(1)
	staticPIE := bytes.Clone(tiny) // ET_DYN without an interpreter
	binary.LittleEndian.PutUint16(staticPIE[16:], uint16(elf.ET_DYN))
	inLayout := func(config func(*v1.Config), layers ...[]pkgFile) func(t *testing.T) string {
		return func(t *testing.T) string {
			ls := make([]v1.Layer, len(layers))
			for i, files := range layers {
				ls[i] = pkgLayer(t, files...)
			}
			return pkgLayout(t, pkgImage(t, "amd64", config, ls...))
		}
	}

	tests := []struct {
		name   string
		image  func(t *testing.T) string
		arch   string
		want   []byte   // the bootstrap
		report []string // more lines the report must have
	}{
		{"OCI layout", func(*testing.T) string { return singleDir }, "x86_64", amd64,
			[]string{"manifest  " + digest(t, single) + " linux/amd64"}},
		{"OCI layout DIR:TAG", func(*testing.T) string { return singleDir + ":momentum:dev" }, "x86_64", amd64, nil},
		{"OCI layout oci:DIR:TAG", func(*testing.T) string { return "oci:" + singleDir + ":momentum:dev" }, "x86_64", amd64, nil},
		{"index for x86_64", func(*testing.T) string { return multiDir }, "x86_64", amd64,
			[]string{"index     " + digest(t, multi), "manifest  " + digest(t, single) + " linux/amd64"}},
		{"index for arm64", func(*testing.T) string { return multiDir + ":momentum:dev" }, "arm64", arm64,
			[]string{"index     " + digest(t, multi), " linux/arm64"}},
		{"docker save tarball", func(*testing.T) string { return dockerSave }, "x86_64", amd64, []string{"config    sha256:"}},
		{"docker save tarball FILE:TAG", func(*testing.T) string { return dockerSave + ":momentum:dev" }, "x86_64", amd64, nil},
		{"OCI archive", func(t *testing.T) string { return pkgTarDir(t, multiDir) }, "arm64", arm64,
			[]string{"index     " + digest(t, multi)}},
		{"registry, index", func(t *testing.T) string { return pkgRegistry(t, multi) }, "arm64", arm64,
			[]string{"index     " + digest(t, multi)}},
		{"registry, docker://", func(t *testing.T) string { return "docker://" + pkgRegistry(t, single) }, "x86_64", amd64,
			[]string{"manifest  " + digest(t, single)}},
		{"binary replaced in a later layer", inLayout(pkgEntrypoint("/momentum"),
			[]pkgFile{{name: "momentum", data: other}}, []pkgFile{{name: "momentum", data: tiny}}), "x86_64", tiny, nil},
		{"deleted and put back", inLayout(pkgEntrypoint("/app/momentum"),
			[]pkgFile{{name: "app/momentum", data: other}}, []pkgFile{{name: "app/.wh..wh..opq"}},
			[]pkgFile{{name: "app/momentum", data: tiny}}), "x86_64", tiny, nil},
		{"through a symbolic link", inLayout(pkgEntrypoint("/usr/bin/momentum"),
			[]pkgFile{{name: "app/momentum", data: tiny}, {name: "usr/bin/momentum", symlink: "../../app/momentum"}}), "x86_64", tiny,
			[]string{"binary    /app/momentum (entrypoint /usr/bin/momentum) sha256:"}},
		{"through a linked directory", inLayout(pkgEntrypoint("/usr/local/bin/momentum"),
			[]pkgFile{{name: "opt/bin/momentum", data: tiny}}, []pkgFile{{name: "usr/local/bin", symlink: "/opt/bin"}}), "x86_64", tiny,
			[]string{"binary    /opt/bin/momentum (entrypoint /usr/local/bin/momentum)"}},
		{"a hard link", inLayout(pkgEntrypoint("/bin/momentum"),
			[]pkgFile{{name: "app/momentum", data: tiny}, {name: "bin/momentum", hardlink: "app/momentum"}}), "x86_64", tiny, nil},
		{"command, no entrypoint", inLayout(func(c *v1.Config) { c.Cmd = []string{"/momentum", "serve"} },
			[]pkgFile{{name: "momentum", data: tiny}}), "x86_64", tiny, nil},
		{"relative to the working directory", inLayout(func(c *v1.Config) { c.Entrypoint, c.WorkingDir = []string{"./momentum"}, "/app" },
			[]pkgFile{{name: "app/momentum", data: tiny}}), "x86_64", tiny, nil},
		{"a static PIE", inLayout(pkgEntrypoint("/momentum"), []pkgFile{{name: "momentum", data: staticPIE}}), "x86_64", staticPIE, nil},
		{"a name in PATH", inLayout(func(c *v1.Config) { c.Entrypoint, c.Env = []string{"momentum"}, []string{"PATH=/nope:/data:/app"} },
			[]pkgFile{{name: "data/momentum", data: other, mode: 0o644}, {name: "app/momentum", data: tiny}}), "x86_64", tiny,
			[]string{"binary    /app/momentum sha256:"}},
	}
	var mu sync.Mutex
	zips := map[string]map[string][]string{} // binary's sha256 → zip's sha256 → cases
	t.Run("sources", func(t *testing.T) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				ref := tt.image(t)
				dir := t.TempDir()
				out := filepath.Join(dir, "function.zip")
				r := pkgRun(t, false, "--image", ref, "--arch", tt.arch, "-o", out)
				if r.code != exitOK {
					t.Fatalf("exit %d: %s", r.code, r.stderr)
				}
				zipped, err := os.ReadFile(out)
				if err != nil {
					t.Fatal(err)
				}
				if got := pkgBootstrap(t, zipped); !bytes.Equal(got, tt.want) {
					t.Fatalf("bootstrap (sha256:%s) is not the image's binary (sha256:%s)", sha256Hex(got), sha256Hex(tt.want))
				}
				for _, want := range append([]string{
					" sha256:" + sha256Hex(tt.want) + " ",
					"zip       " + out + " sha256:" + sha256Hex(zipped) + " ",
					"config    sha256:",
				}, tt.report...) {
					if !strings.Contains(r.stdout, want) {
						t.Errorf("the report does not show %q:\n%s", want, r.stdout)
					}
				}
				if r.stderr != "" {
					t.Errorf("stderr not a terminal, yet: %q", r.stderr)
				}
				if entries, _ := os.ReadDir(dir); len(entries) != 1 {
					t.Errorf("beside the zip: %v", entries)
				}
				mu.Lock()
				defer mu.Unlock()
				bin, zip := sha256Hex(tt.want), sha256Hex(zipped)
				if zips[bin] == nil {
					zips[bin] = map[string][]string{}
				}
				zips[bin][zip] = append(zips[bin][zip], tt.name)
			})
		}
	})
	for bin, byZip := range zips {
		if len(byZip) > 1 {
			t.Errorf("the binary sha256:%s gave different zips: %v", bin, byZip)
		}
	}

	t.Run("twice", func(t *testing.T) {
		var zipped [2][]byte
		for i := range zipped {
			out := filepath.Join(t.TempDir(), "function.zip")
			if r := pkgRun(t, false, "--image", multiDir, "--arch", "arm64", "-o", out, "--quiet"); r.code != exitOK {
				t.Fatal(r.stderr)
			}
			zipped[i] = readFile(t, out)
		}
		if !bytes.Equal(zipped[0], zipped[1]) {
			t.Error("packaging twice gave different zips")
		}
	})
}

func digest(t *testing.T, d interface{ Digest() (v1.Hash, error) }) string {
	t.Helper()
	h, err := d.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return h.String()
}

// TestPackageLambdaRefuses checks that what would not run on Lambda, or
// is not there, is refused with exit status 1, a message saying why, and
// no zip.
func TestPackageLambdaRefuses(t *testing.T) {
	pkgNoDockerConfig(t)
	amd64, arm64, i386 := pkgProgram(t, "amd64"), pkgProgram(t, "arm64"), pkgProgram(t, "386")
	singleDir := pkgLayout(t, pkgSimple(t, "amd64", amd64))
	tiny := pkgTinyELF(0) // where the binary is not the point
	elfType := func(typ elf.Type, entry uint64) []byte {
		b := bytes.Clone(tiny)
		binary.LittleEndian.PutUint16(b[16:], uint16(typ))
		binary.LittleEndian.PutUint64(b[24:], entry)
		return b
	}
	withBinary := func(t *testing.T, goarch string, config func(*v1.Config), files ...pkgFile) string {
		return pkgLayout(t, pkgImage(t, goarch, config, pkgLayer(t, files...)))
	}
	gzipped := func(t *testing.T) string {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		zw.Write(readFile(t, pkgDockerSave(t, pkgSimple(t, "amd64", amd64))))
		zw.Close()
		p := filepath.Join(t.TempDir(), "image.tar.gz")
		os.WriteFile(p, buf.Bytes(), 0o644)
		return p
	}

	tests := []struct {
		name  string
		image func(t *testing.T) string
		arch  string
		want  string
	}{
		{"whiteout", func(t *testing.T) string {
			return pkgLayout(t, pkgImage(t, "amd64", pkgEntrypoint("/momentum"),
				pkgLayer(t, pkgFile{name: "momentum", data: tiny}), pkgLayer(t, pkgFile{name: ".wh.momentum"})))
		}, "x86_64", "the entrypoint /momentum is not in the image"},
		{"opaque directory", func(t *testing.T) string {
			return pkgLayout(t, pkgImage(t, "amd64", pkgEntrypoint("/app/momentum"),
				pkgLayer(t, pkgFile{name: "app/momentum", data: tiny}), pkgLayer(t, pkgFile{name: "app/.wh..wh..opq"})))
		}, "x86_64", "/app/momentum is not in the image"},
		{"dynamically linked", func(t *testing.T) string {
			bin, arch := pkgDynamic(t)
			return withBinary(t, image.GOARCH(arch), pkgEntrypoint("/momentum"), pkgFile{name: "momentum", data: bin})
		}, "", "/momentum in %s: dynamically linked (interpreter /lib"},
		{"arm64 binary in an amd64 image", func(t *testing.T) string {
			return withBinary(t, "amd64", pkgEntrypoint("/momentum"), pkgFile{name: "momentum", data: arm64})
		}, "x86_64", "an ELF file for arm64 (EM_AARCH64), not amd64 (EM_X86_64)"},
		{"32-bit binary", func(t *testing.T) string {
			return withBinary(t, "amd64", pkgEntrypoint("/momentum"), pkgFile{name: "momentum", data: i386})
		}, "x86_64", "a 32-bit ELF file (ELFCLASS32, 386 (EM_386)), not 64-bit"},
		{"--arch arm64 for an amd64 image", func(*testing.T) string { return singleDir }, "arm64",
			"is a linux/amd64 image, not linux/arm64"},
		{"index without the architecture", func(t *testing.T) string {
			return pkgLayout(t, pkgIndex(map[string]v1.Image{"amd64": pkgSimple(t, "amd64", amd64)}))
		}, "arm64", "no linux/arm64 image in the index (it has linux/amd64)"},
		{"no entrypoint", func(t *testing.T) string {
			return withBinary(t, "amd64", nil, pkgFile{name: "momentum", data: tiny})
		}, "x86_64", "the image has no entrypoint (and no command)"},
		{"entrypoint a directory", func(t *testing.T) string {
			return withBinary(t, "amd64", pkgEntrypoint("/app"), pkgFile{name: "app", dir: true}, pkgFile{name: "app/momentum", data: tiny})
		}, "x86_64", "/app is a directory, not a regular file"},
		{"entrypoint under a file", func(t *testing.T) string {
			return withBinary(t, "amd64", pkgEntrypoint("/momentum/momentum"), pkgFile{name: "momentum", data: tiny})
		}, "x86_64", "/momentum is not a directory"},
		{"a name not in PATH", func(t *testing.T) string {
			return withBinary(t, "amd64", pkgEntrypoint("momentum"), pkgFile{name: "app/momentum", data: tiny})
		}, "x86_64", `the entrypoint "momentum" is not found in the image's PATH /usr/local/sbin:`},
		{"a symbolic link loop", func(t *testing.T) string {
			return withBinary(t, "amd64", pkgEntrypoint("/a"), pkgFile{name: "a", symlink: "b"}, pkgFile{name: "b", symlink: "/a"})
		}, "x86_64", "/a: too many levels of symbolic links"},
		{"a relocatable object", func(t *testing.T) string {
			return withBinary(t, "amd64", pkgEntrypoint("/momentum"), pkgFile{name: "momentum", data: elfType(elf.ET_REL, 0)})
		}, "x86_64", "not an executable (ELF type ET_REL)"},
		{"a shared library", func(t *testing.T) string {
			return withBinary(t, "amd64", pkgEntrypoint("/momentum"), pkgFile{name: "momentum", data: elfType(elf.ET_DYN, 0)})
		}, "x86_64", "a shared library, not an executable"},
		{"a script", func(t *testing.T) string {
			return withBinary(t, "amd64", pkgEntrypoint("/momentum"), pkgFile{name: "momentum", data: []byte("#!/bin/sh\necho hi\n")})
		}, "x86_64", "a script (#!/bin/sh), not an ELF executable"},
		{"not a layout", func(t *testing.T) string { return t.TempDir() }, "x86_64", "not an OCI image layout (no oci-layout file)"},
		{"unknown tag", func(*testing.T) string { return singleDir + ":other" }, "x86_64", `no image tagged "other"`},
		{"no such file", func(*testing.T) string { return "./no/such/image.tar" }, "x86_64", "no such file or directory"},
		{"no such directory, not a reference", func(*testing.T) string { return "nosuchdir" }, "x86_64",
			"nosuchdir: no such file or directory (an image in a registry is named with its repository"},
		{"gzip tarball", gzipped, "x86_64", "gzip-compressed; gunzip it first"},
		{"not an image tarball", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "x.tar")
			os.WriteFile(p, []byte("not a tar"), 0o644)
			return p
		}, "x86_64", "not an image tarball"},
		{"not in the registry", func(t *testing.T) string {
			return "docker://" + strings.TrimSuffix(pkgRegistry(t, pkgSimple(t, "amd64", amd64)), ":dev") + ":other"
		}, "x86_64", "MANIFEST_UNKNOWN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ref := tt.image(t)
			arch := tt.arch
			if arch == "" {
				arch = map[string]string{"amd64": "x86_64", "arm64": "arm64"}[runtime.GOARCH]
			}
			want := tt.want
			if strings.Contains(want, "%s") {
				want = fmt.Sprintf(want, ref)
			}
			dir := t.TempDir()
			out := filepath.Join(dir, "function.zip")
			r := pkgRun(t, true, "--image", ref, "--arch", arch, "-o", out)
			if r.code != exitFailure || !strings.HasPrefix(r.stderr, "momentum: package lambda: ") || !strings.Contains(r.stderr, want) {
				t.Errorf("exit %d, stderr %q; want 1 and %q", r.code, r.stderr, want)
			}
			if strings.Contains(r.stderr, "coming out") || r.stdout != "" {
				t.Errorf("refused, yet printed: stdout %q stderr %q", r.stdout, r.stderr)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("left behind: %v", entries)
			}
		})
	}
}

// TestPackageOutput checks where the zip goes: a file replaced whole, or
// standard output; and that nothing is left when it cannot be written.
func TestPackageOutput(t *testing.T) {
	t.Parallel()
	amd64 := pkgTinyELF(0)
	image := pkgLayout(t, pkgSimple(t, "amd64", amd64))

	t.Run("replaces a file", func(t *testing.T) {
		dir := t.TempDir()
		out := filepath.Join(dir, "function.zip")
		os.WriteFile(out, []byte("old"), 0o644)
		if r := pkgRun(t, false, "--image", image, "-o", out); r.code != exitOK {
			t.Fatal(r.stderr)
		}
		if got := pkgBootstrap(t, readFile(t, out)); !bytes.Equal(got, amd64) {
			t.Error("wrong bootstrap")
		}
		if fi, _ := os.Stat(out); fi.Mode().Perm() != 0o644 {
			t.Errorf("the zip's mode is %v, want 0644", fi.Mode())
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 1 {
			t.Errorf("left behind: %v", entries)
		}
	})

	t.Run("standard output", func(t *testing.T) {
		for _, quiet := range []bool{false, true} {
			args := []string{"--image", image, "-o", "-"}
			if quiet {
				args = append(args, "--quiet")
			}
			r := pkgRun(t, false, args...)
			if r.code != exitOK {
				t.Fatal(r.stderr)
			}
			if got := pkgBootstrap(t, []byte(r.stdout)); !bytes.Equal(got, amd64) {
				t.Error("wrong bootstrap")
			}
			wantReport := "zip       standard output sha256:" + sha256Hex([]byte(r.stdout))
			if quiet && r.stderr != "" {
				t.Errorf("--quiet, yet stderr %q", r.stderr)
			} else if !quiet && !strings.Contains(r.stderr, wantReport) {
				t.Errorf("stderr %q, want the report with %q", r.stderr, wantReport)
			}
		}
	})

	t.Run("refusal keeps the old zip", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "function.zip")
		os.WriteFile(out, []byte("old"), 0o644)
		if r := pkgRun(t, false, "--image", image, "--arch", "arm64", "-o", out); r.code != exitFailure {
			t.Fatalf("exit %d", r.code)
		}
		if b := readFile(t, out); string(b) != "old" {
			t.Errorf("the old zip was changed: %q", b)
		}
	})

	t.Run("interrupted", func(t *testing.T) {
		dir := t.TempDir()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		var stdout, stderr bytes.Buffer
		code := runPackage(ctx, []string{"lambda", "--image", image, "-o", filepath.Join(dir, "function.zip")}, &stdout, &stderr, false)
		if code != exitFailure || stderr.String() != "momentum: package lambda: interrupted\n" {
			t.Errorf("exit %d, stderr %q; want 1 and interrupted", code, stderr.String())
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Errorf("left behind: %v", entries)
		}
		// Cancelled once the zip is written: the temporary file goes too.
		if err := writeFileAtomic(ctx, filepath.Join(dir, "function.zip"), []byte("zip")); err != context.Canceled {
			t.Errorf("writeFileAtomic: %v, want context.Canceled", err)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Errorf("left behind: %v", entries)
		}
	})

	t.Run("the file written has the mode unzip keeps", func(t *testing.T) {
		dir := t.TempDir()
		out := filepath.Join(dir, "function.zip")
		if r := pkgRun(t, false, "--image", image, "-o", out); r.code != exitOK {
			t.Fatal(r.stderr)
		}
		// archive/zip reads what unzip reads: the entry made on Unix,
		// its mode in the external attributes.
		if boot := pkgBootstrap(t, readFile(t, out)); !bytes.HasPrefix(boot, []byte("\x7fELF")) {
			t.Errorf("bootstrap starts %q, want an ELF executable", boot[:min(len(boot), 4)])
		}
	})

	fileDir := t.TempDir()
	notDir := filepath.Join(fileDir, "file")
	os.WriteFile(notDir, nil, 0o644)
	roDir := t.TempDir()
	os.Chmod(roDir, 0o555)
	t.Cleanup(func() { os.Chmod(roDir, 0o755) })
	for _, tt := range []struct {
		name, out, want string
		dir             string // must stay as it was
	}{
		{"a directory", roDir, "is a directory", roDir},
		{"in a missing directory", filepath.Join(t.TempDir(), "no", "function.zip"), "no such file or directory", ""},
		{"under a file", filepath.Join(notDir, "function.zip"), "not a directory", fileDir},
		{"an unwritable directory", filepath.Join(roDir, "function.zip"), "permission denied", roDir},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.name == "an unwritable directory" && os.Geteuid() == 0 {
				t.Skip("root writes anywhere")
			}
			var before []fs.DirEntry
			if tt.dir != "" {
				before, _ = os.ReadDir(tt.dir)
			}
			r := pkgRun(t, false, "--image", image, "-o", tt.out)
			if r.code != exitFailure || !strings.Contains(r.stderr, tt.want) {
				t.Errorf("exit %d, stderr %q; want 1 and %q", r.code, r.stderr, tt.want)
			}
			if tt.dir != "" {
				if after, _ := os.ReadDir(tt.dir); len(after) != len(before) {
					t.Errorf("left behind in %s: %v", tt.dir, after)
				}
			}
		})
	}
}

// TestPackageGreeting checks the nod to the original demo: one line on
// stderr, only when it is a terminal and without --quiet.
func TestPackageGreeting(t *testing.T) {
	t.Parallel()
	image := pkgLayout(t, pkgSimple(t, "amd64", pkgTinyELF(0)))
	for _, tt := range []struct {
		terminal, quiet bool
		greets          bool
	}{
		{terminal: true, greets: true},
		{terminal: true, quiet: true},
		{terminal: false},
		{terminal: false, quiet: true},
	} {
		t.Run(fmt.Sprintf("terminal=%v,quiet=%v", tt.terminal, tt.quiet), func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "function.zip")
			args := []string{"--image", image, "-o", out}
			if tt.quiet {
				args = append(args, "--quiet")
			}
			r := pkgRun(t, tt.terminal, args...)
			if r.code != exitOK {
				t.Fatal(r.stderr)
			}
			want := ""
			if tt.greets {
				want = "I'm coming out… /momentum from " + image + " (linux/amd64) → " + out + "\n"
			}
			if r.stderr != want {
				t.Errorf("stderr %q, want %q", r.stderr, want)
			}
			if !strings.Contains(r.stdout, "zip       "+out+" sha256:") {
				t.Errorf("stdout %q lacks the report", r.stdout)
			}
		})
	}
}

func TestPackageUsage(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{},
		{"docker"},
		{"lambda"},
		{"lambda", "--image", "x"},
		{"lambda", "-o", "x.zip"},
		{"lambda", "--image", "x", "-o", "x.zip", "--arch", "386"},
		{"lambda", "--image", "x", "-o", "x.zip", "extra"},
		{"lambda", "--image", "x", "-o", "x.zip", "--bogus"},
		{"lambda", "--image", "x.zip", "-o", "x.zip"},
		{"lambda", "--image", "x", "--binary", "y", "-o", "z.zip"},
		{"lambda", "--binary", "x.zip", "-o", "x.zip"},
	} {
		var stdout, stderr bytes.Buffer
		code := runPackage(context.Background(), args, &stdout, &stderr, false)
		if code != exitUsage || !strings.HasPrefix(stderr.String(), "momentum: package") ||
			!strings.Contains(stderr.String(), "Run 'momentum package lambda --help'") || stdout.Len() != 0 {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want 2 and a usage error", args, code, stdout.String(), stderr.String())
		}
	}
	for _, args := range [][]string{{"lambda", "--help"}, {"lambda", "-h"}, {"--help"}} {
		var stdout, stderr bytes.Buffer
		code := runPackage(context.Background(), args, &stdout, &stderr, false)
		help := stdout.String()
		if code != exitOK || stderr.Len() != 0 {
			t.Errorf("%q: exit %d, stderr %q", args, code, stderr.String())
		}
		for _, want := range []string{"Usage: momentum package lambda (--image IMAGE | --binary FILE) -o ZIP", "Examples:",
			"momentum package lambda --image build/image:momentum:dev -o function.zip", "--arch", "--quiet", "Exit status"} {
			if !strings.Contains(help, want) {
				t.Errorf("%q: the help lacks %q:\n%s", args, want, help)
			}
		}
	}
}

// TestPackageRealImage builds the real image as cmd/momentum-image does,
// packages it, and runs the zip's bootstrap.
func TestPackageRealImage(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds the image")
	}
	if runtime.GOOS != "linux" || (runtime.GOARCH != "amd64" && runtime.GOARCH != "arm64") {
		t.Skipf("the bootstrap runs on linux/amd64 or arm64, not %s/%s", runtime.GOOS, runtime.GOARCH)
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	imageDir := filepath.Join(dir, "image")
	start := time.Now()
	build := exec.Command("go", "run", "./cmd/momentum-image", "--platform", "linux/"+runtime.GOARCH,
		"--layout", imageDir, "--tag", "momentum:test", "--version", "v0.0.0-packagetest")
	build.Dir = root
	var buildErr bytes.Buffer
	build.Stderr = &buildErr
	built, err := build.Output()
	if err != nil {
		t.Fatalf("building the image: %v\n%s", err, buildErr.String())
	}
	t.Logf("image built in %v: %s", time.Since(start).Round(time.Millisecond), strings.TrimSpace(string(built)))

	arch := map[string]string{"amd64": "x86_64", "arm64": "arm64"}[runtime.GOARCH]
	zipPath := filepath.Join(dir, "function.zip")
	start = time.Now()
	r := pkgRun(t, false, "--image", imageDir+":momentum:test", "--arch", arch, "-o", zipPath)
	if r.code != exitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	t.Logf("packaged in %v:\n%s", time.Since(start).Round(time.Millisecond), r.stdout)

	// The image's digest as momentum-image printed it, and its binary
	// as its one layer holds it.
	imageDigest, _, _ := strings.Cut(string(built), " ")
	if !strings.Contains(r.stdout, "manifest  "+imageDigest+" linux/"+runtime.GOARCH) {
		t.Errorf("the report does not show the image %s", imageDigest)
	}
	inLayer := layerFile(t, imageDir, "momentum")
	bootstrap := pkgBootstrap(t, readFile(t, zipPath))
	if !bytes.Equal(bootstrap, inLayer) {
		t.Fatalf("bootstrap sha256:%s, the image's /momentum sha256:%s", sha256Hex(bootstrap), sha256Hex(inLayer))
	}
	if !strings.Contains(r.stdout, "binary    /momentum sha256:"+sha256Hex(inLayer)) {
		t.Errorf("the report does not show the binary's sha256:%s", sha256Hex(inLayer))
	}

	exe := filepath.Join(dir, "bootstrap")
	if err := os.WriteFile(exe, bootstrap, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(exe, "--version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "momentum v0.0.0-packagetest ") {
		t.Errorf("bootstrap --version: %v: %q", err, out)
	}
}

// layerFile reads a file from the single layer of the single image of an
// OCI layout, without the code under test.
func layerFile(t *testing.T, dir, file string) []byte {
	t.Helper()
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	m, err := idx.IndexManifest()
	if err != nil || len(m.Manifests) != 1 {
		t.Fatalf("index.json: %v, %d manifests", err, len(m.Manifests))
	}
	img, err := idx.Image(m.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers: %v, %d", err, len(layers))
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("%s not in the layer: %v", file, err)
		}
		if h.Name == file {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
}
