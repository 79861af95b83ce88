package main

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Small static programs for each architecture, built once.
var (
	programsOnce sync.Once
	programs     map[string][]byte // GOARCH → binary
	programsErr  error
)

func program(t *testing.T, goarch string) []byte {
	t.Helper()
	programsOnce.Do(func() {
		dir, err := os.MkdirTemp("", "momentum-package-")
		if err != nil {
			programsErr = err
			return
		}
		defer os.RemoveAll(dir)
		src := filepath.Join(dir, "main.go")
		os.WriteFile(src, []byte("package main\n\nfunc main() { println(\"hello from the image\") }\n"), 0o644)
		programs = map[string][]byte{}
		for _, arch := range []string{"amd64", "arm64"} {
			out := filepath.Join(dir, arch)
			cmd := exec.Command("go", "build", "-trimpath", "-o", out, src)
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch, "GOFLAGS=")
			cmd.Dir = dir
			if b, err := cmd.CombinedOutput(); err != nil {
				programsErr = err
				programs = nil
				os.Stderr.Write(b)
				return
			}
			programs[arch], _ = os.ReadFile(out)
		}
	})
	if programsErr != nil {
		t.Fatal(programsErr)
	}
	return programs[goarch]
}

// entry is a file of a test layer.
type entry struct {
	name string
	data []byte
	link string // a symbolic link to this, when set
	mode int64
}

func layer(t *testing.T, entries ...entry) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: 0o755, Typeflag: tar.TypeReg, Size: int64(len(e.data))}
		if e.mode != 0 {
			h.Mode = e.mode
		}
		if e.link != "" {
			h.Typeflag, h.Linkname, h.Size = tar.TypeSymlink, e.link, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write(e.data)
	}
	tw.Close()
	b := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// image is an image of the layers with the entrypoint, for an
// architecture.
func image(t *testing.T, goarch string, entrypoint []string, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	img = mutate.MediaType(img, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", goarch
	cfg.Config.Entrypoint = entrypoint
	cfg.Config.User = "65532:65532"
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
		t.Fatal(err)
	}
	return img
}

// writeLayout writes an OCI layout holding img (an image or an index)
// tagged "momentum:dev".
func writeLayout(t *testing.T, img any) string {
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

func index(t *testing.T, images map[string]v1.Image) v1.ImageIndex {
	t.Helper()
	var idx v1.ImageIndex = mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, arch := range []string{"amd64", "arm64"} {
		if img, ok := images[arch]; ok {
			idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}}})
		}
	}
	return idx
}

// packageRun runs "momentum package lambda" in process.
func packageRun(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := runPackage(context.Background(), append([]string{"lambda"}, args...), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// bootstrap reads the zip and returns its one entry's bytes.
func bootstrap(t *testing.T, zipPath string) []byte {
	t.Helper()
	zr, err := zip.OpenReader(zipPath)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	if len(zr.File) != 1 || zr.File[0].Name != "bootstrap" || zr.File[0].Mode() != 0o755 {
		var names []string
		for _, f := range zr.File {
			names = append(names, f.Name+" "+f.Mode().String())
		}
		t.Fatalf("zip entries %q, want one: bootstrap -rwxr-xr-x", names)
	}
	if len(zr.File[0].Extra) != 0 {
		t.Errorf("the entry has extra fields: %x", zr.File[0].Extra)
	}
	rc, err := zr.File[0].Open()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var b bytes.Buffer
	b.ReadFrom(rc)
	return b.Bytes()
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestPackageLambda(t *testing.T) {
	amd64, arm64 := program(t, "amd64"), program(t, "arm64")
	single := writeLayout(t, image(t, "amd64", []string{"/momentum"}, layer(t, entry{name: "momentum", data: amd64})))
	multi := writeLayout(t, index(t, map[string]v1.Image{
		"amd64": image(t, "amd64", []string{"/momentum"}, layer(t, entry{name: "momentum", data: amd64})),
		"arm64": image(t, "arm64", []string{"/momentum"}, layer(t, entry{name: "momentum", data: arm64})),
	}))
	tarPath := filepath.Join(t.TempDir(), "image.tar")
	if err := tarball.WriteToFile(tarPath, name.MustParseReference("momentum:dev"), image(t, "amd64", []string{"/momentum", "serve"}, layer(t, entry{name: "momentum", data: amd64}))); err != nil {
		t.Fatal(err)
	}
	replaced := writeLayout(t, image(t, "amd64", []string{"/momentum"},
		layer(t, entry{name: "momentum", data: arm64}), layer(t, entry{name: "momentum", data: amd64})))
	linked := writeLayout(t, image(t, "amd64", []string{"/usr/bin/momentum"},
		layer(t, entry{name: "app/momentum", data: amd64}, entry{name: "usr/bin/momentum", link: "../../app/momentum"})))

	tests := []struct {
		name  string
		image string
		arch  string
		want  []byte // the bootstrap
	}{
		{"layout", single, "x86_64", amd64},
		{"layout with its tag", single + ":momentum:dev", "x86_64", amd64},
		{"index, x86_64", multi, "x86_64", amd64},
		{"index, arm64", multi, "arm64", arm64},
		{"docker save tarball", tarPath, "x86_64", amd64},
		{"replaced in a later layer", replaced, "x86_64", amd64},
		{"through a symbolic link", linked, "x86_64", amd64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "function.zip")
			code, stdout, stderr := packageRun(t, "--image", tt.image, "--arch", tt.arch, "-o", out)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			got := bootstrap(t, out)
			if !bytes.Equal(got, tt.want) {
				t.Fatalf("bootstrap is not the image's binary for %s", tt.arch)
			}
			zipped, _ := os.ReadFile(out)
			for _, want := range []string{"sha256:" + sum(tt.want), "sha256:" + sum(zipped), "image   "} {
				if !strings.Contains(stdout, want) {
					t.Errorf("stdout %q does not show %s", stdout, want)
				}
			}
			if strings.Contains(stderr, "coming out") {
				t.Errorf("announced itself on a stderr that is not a terminal: %q", stderr)
			}
			// The same image gives the same zip, byte for byte.
			again := filepath.Join(t.TempDir(), "again.zip")
			if code, _, stderr := packageRun(t, "--image", tt.image, "--arch", tt.arch, "-o", again, "--quiet"); code != 0 {
				t.Fatal(stderr)
			}
			if b, _ := os.ReadFile(again); !bytes.Equal(b, zipped) {
				t.Error("packaging twice gave different zips")
			}
		})
	}

	dynamic, err := os.ReadFile("/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	refusals := []struct {
		name  string
		image string
		arch  string
		want  string
	}{
		{"whiteout", writeLayout(t, image(t, "amd64", []string{"/momentum"},
			layer(t, entry{name: "momentum", data: amd64}), layer(t, entry{name: ".wh.momentum"}))), "x86_64", "not in the image"},
		{"dynamically linked", writeLayout(t, image(t, "amd64", []string{"/momentum"},
			layer(t, entry{name: "momentum", data: dynamic}))), "x86_64", "dynamically linked"},
		{"binary of another architecture", writeLayout(t, image(t, "amd64", []string{"/momentum"},
			layer(t, entry{name: "momentum", data: arm64}))), "x86_64", "built for EM_AARCH64"},
		{"image of another architecture", single, "arm64", "linux/amd64 image, not linux/arm64"},
		{"index without the architecture", writeLayout(t, index(t, map[string]v1.Image{
			"amd64": image(t, "amd64", []string{"/momentum"}, layer(t, entry{name: "momentum", data: amd64})),
		})), "arm64", "no linux/arm64 image in the index (it has linux/amd64)"},
		{"no entrypoint", writeLayout(t, image(t, "amd64", nil, layer(t, entry{name: "momentum", data: amd64}))), "x86_64", "no entrypoint"},
		{"entrypoint a name", writeLayout(t, image(t, "amd64", []string{"momentum"}, layer(t, entry{name: "momentum", data: amd64}))), "x86_64", "not a path"},
		{"not an executable", writeLayout(t, image(t, "amd64", []string{"/momentum"},
			layer(t, entry{name: "momentum", data: []byte("#!/bin/sh\necho hi\n")}))), "x86_64", "not an ELF executable"},
		{"no image", t.TempDir(), "x86_64", "without an oci-layout"},
		{"unknown tag", single + ":other", "x86_64", `no image tagged "other"`},
	}
	for _, tt := range refusals {
		t.Run("refuses "+tt.name, func(t *testing.T) {
			dir := t.TempDir()
			out := filepath.Join(dir, "function.zip")
			code, _, stderr := packageRun(t, "--image", tt.image, "--arch", tt.arch, "-o", out)
			if code != exitFailure || !strings.Contains(stderr, tt.want) {
				t.Errorf("exit %d, stderr %q; want 1 and %q", code, stderr, tt.want)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("left behind: %v", entries)
			}
		})
	}

	t.Run("usage", func(t *testing.T) {
		for _, args := range [][]string{
			{"--image", single},
			{"-o", "x.zip"},
			{"--image", single, "-o", "x.zip", "--arch", "386"},
			{"--image", single, "-o", "x.zip", "extra"},
		} {
			if code, _, stderr := packageRun(t, args...); code != exitUsage {
				t.Errorf("%q: exit %d, %s", args, code, stderr)
			}
		}
		if code, stdout, _ := packageRun(t, "--help"); code != 0 || !strings.Contains(stdout, "momentum package lambda --image") {
			t.Errorf("--help: %d %q", code, stdout)
		}
	})

	t.Run("output a directory", func(t *testing.T) {
		dir := t.TempDir()
		os.Mkdir(filepath.Join(dir, "function.zip"), 0o755)
		if code, _, _ := packageRun(t, "--image", single, "-o", filepath.Join(dir, "function.zip")); code != exitFailure {
			t.Errorf("exit %d, want 1", code)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 1 {
			t.Errorf("left behind: %v", entries)
		}
	})
}
