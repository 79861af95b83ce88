package main

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// testVersion is linked into the binaries the tests build.
const testVersion = "v0.0.0-imagetest"

// noEnv is a getenv with nothing set, so an ambient SOURCE_DATE_EPOCH does
// not change the digests.
func noEnv(string) string { return "" }

// runTool runs momentum-image with args and returns its stdout.
func runTool(t *testing.T, getenv func(string) string, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	start := time.Now()
	err := run(context.Background(), args, getenv, &stdout, &stderr)
	t.Logf("momentum-image %s (%v):\n%s", strings.Join(args, " "), time.Since(start).Round(time.Millisecond), stderr.String())
	if err != nil {
		t.Fatalf("momentum-image %s: %v", strings.Join(args, " "), err)
	}
	return stdout.String()
}

// shared is the two-platform layout the tests read, built once.
var shared struct {
	once           sync.Once
	dir            string
	stdout, stderr string
	err            error
}

func TestMain(m *testing.M) {
	code := m.Run()
	for _, dir := range []string{shared.dir, tiny.dir} {
		if dir != "" {
			os.RemoveAll(dir)
		}
	}
	os.Exit(code)
}

// twoPlatformLayout returns the directory of an OCI layout of the image for
// linux/amd64 and linux/arm64 tagged momentum:dev, and what momentum-image
// printed when it wrote it. go test -short skips the tests that need it:
// building momentum for two platforms takes minutes on a cold cache.
func twoPlatformLayout(t *testing.T) (dir, stdout string) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds momentum for linux/amd64 and linux/arm64")
	}
	shared.once.Do(func() {
		if shared.dir, shared.err = os.MkdirTemp("", "momentum-image-test-"); shared.err != nil {
			return
		}
		var out, errs bytes.Buffer
		start := time.Now()
		shared.err = run(context.Background(), []string{"--layout", shared.dir, "--version", testVersion}, noEnv, &out, &errs)
		shared.stdout = out.String()
		shared.stderr = fmt.Sprintf("%s(built in %v)", errs.String(), time.Since(start).Round(time.Millisecond))
	})
	if shared.err != nil {
		t.Fatalf("momentum-image --layout: %v\n%s", shared.err, shared.stderr)
	}
	return shared.dir, shared.stdout
}

// checked holds imageProblems' findings for the images of the shared
// layout, computed once: reading a layer takes seconds under the race
// detector.
var checked struct {
	once     sync.Once
	bins     map[string][]byte   // by architecture
	problems map[string][]string // by architecture
}

// checkedLayout returns the binaries and the problems of the images in the
// shared layout, by architecture.
func checkedLayout(t *testing.T) (bins map[string][]byte, problems map[string][]string) {
	t.Helper()
	dir, _ := twoPlatformLayout(t)
	want := wantConfig(t)
	checked.once.Do(func() {
		_, images := layoutImages(t, dir)
		checked.bins, checked.problems = map[string][]byte{}, map[string][]string{}
		for arch, img := range images {
			checked.bins[arch], checked.problems[arch] = imageProblems(img, arch, want)
		}
	})
	return checked.bins, checked.problems
}

// hostArch is the architecture of the image whose binary the tests run.
func hostArch(t *testing.T) string {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skipf("the image's binary runs on linux, not %s", runtime.GOOS)
	}
	if runtime.GOARCH != "amd64" && runtime.GOARCH != "arm64" {
		t.Skipf("the layout has no image for %s", runtime.GOARCH)
	}
	return runtime.GOARCH
}

// layoutImages returns the images of the index tagged momentum:dev in the
// layout in dir by architecture, checking the layout's structure.
func layoutImages(t *testing.T, dir string) (v1.ImageIndex, map[string]v1.Image) {
	t.Helper()
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	root, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	rm, err := root.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(rm.Manifests) != 1 {
		t.Fatalf("index.json lists %d manifests, want 1", len(rm.Manifests))
	}
	d := rm.Manifests[0]
	if got := d.Annotations[refName]; got != "momentum:dev" {
		t.Errorf("index.json: %s = %q, want momentum:dev", refName, got)
	}
	if d.MediaType != types.OCIImageIndex {
		t.Errorf("index.json lists a %s, want an OCI image index", d.MediaType)
	}
	idx, err := root.ImageIndex(d.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Index(idx, validate.Fast); err != nil {
		t.Errorf("validate.Index: %v", err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if im.MediaType != types.OCIImageIndex {
		t.Errorf("index media type %s, want %s", im.MediaType, types.OCIImageIndex)
	}
	images := map[string]v1.Image{}
	var platforms []string
	for _, m := range im.Manifests {
		if m.Platform == nil {
			t.Fatalf("index entry %s has no platform", m.Digest)
		}
		platforms = append(platforms, m.Platform.String())
		if m.MediaType != types.OCIManifestSchema1 {
			t.Errorf("%s: manifest media type %s, want %s", m.Platform, m.MediaType, types.OCIManifestSchema1)
		}
		img, err := idx.Image(m.Digest)
		if err != nil {
			t.Fatal(err)
		}
		images[m.Platform.Architecture] = img
	}
	slices.Sort(platforms)
	if want := []string{"linux/amd64", "linux/arm64"}; !slices.Equal(platforms, want) {
		t.Errorf("index platforms %q, want %q", platforms, want)
	}
	return idx, images
}

// wantConfig returns the config the Dockerfile gives the image.
func wantConfig(t *testing.T) v1.Config {
	t.Helper()
	c, err := dockerfileConfig(readRepoFile(t, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// elfMachine is the ELF machine of each GOARCH the tests build for.
var elfMachine = map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}

// imageProblems checks img against the image the Dockerfile describes for
// linux/arch with config want. It returns the binary img holds, or nil, and
// what is wrong. It does not check digests and sizes: validate does.
func imageProblems(img v1.Image, arch string, want v1.Config) (bin []byte, problems []string) {
	bad := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(format, a...)) }
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, append(problems, err.Error())
	}
	if cf.OS != "linux" || cf.Architecture != arch || cf.Variant != "" {
		bad("config platform %s/%s/%s, want linux/%s", cf.OS, cf.Architecture, cf.Variant, arch)
	}
	c := cf.Config
	if !slices.Equal(c.Entrypoint, want.Entrypoint) || len(c.Cmd) != 0 {
		bad("config Entrypoint %q Cmd %q, want %q and no Cmd", c.Entrypoint, c.Cmd, want.Entrypoint)
	}
	if c.User != want.User {
		bad("config User %q, want %q", c.User, want.User)
	}
	if !slices.Equal(c.Env, want.Env) {
		bad("config Env %q, want %q", c.Env, want.Env)
	}
	if !reflect.DeepEqual(c.Labels, want.Labels) {
		bad("config Labels %q, want %q", c.Labels, want.Labels)
	}

	layers, err := img.Layers()
	if err != nil {
		return nil, append(problems, err.Error())
	}
	if len(layers) != 1 {
		bad("%d layers, want 1", len(layers))
		return nil, problems
	}
	// The layer is what its digests say; validate.Fast checks the rest.
	l := layers[0]
	digest, errD := l.Digest()
	size, errS := l.Size()
	diffID, errI := l.DiffID()
	crc, err := l.Compressed()
	if err = errors.Join(errD, errS, errI, err); err != nil {
		return nil, append(problems, err.Error())
	}
	h, n, err := v1.SHA256(crc)
	crc.Close()
	if err != nil || h != digest || n != size {
		bad("layer blob is %s, %d bytes (%v); the manifest says %s, %d bytes", h, n, err, digest, size)
	}
	if len(cf.RootFS.DiffIDs) != 1 || cf.RootFS.DiffIDs[0] != diffID {
		bad("config diff IDs %v, want [%s]", cf.RootFS.DiffIDs, diffID)
	}
	rc, err := l.Uncompressed()
	if err != nil {
		return nil, append(problems, err.Error())
	}
	defer rc.Close()
	uncompressed := sha256.New()
	tr := tar.NewReader(io.TeeReader(rc, uncompressed))
	name := strings.TrimPrefix(want.Entrypoint[0], "/")
	entries := 0
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, append(problems, "layer: "+err.Error())
		}
		entries++
		if hdr.Name != name || hdr.Typeflag != tar.TypeReg {
			bad("layer entry %q of type %q, want only the regular file %q", hdr.Name, hdr.Typeflag, name)
			continue
		}
		if hdr.Mode != 0o755 || hdr.Uid != 0 || hdr.Gid != 0 {
			bad("layer: %s mode %#o owner %d:%d, want 0755 0:0", hdr.Name, hdr.Mode, hdr.Uid, hdr.Gid)
		}
		if bin, err = io.ReadAll(tr); err != nil {
			return nil, append(problems, "layer: "+err.Error())
		}
	}
	if entries != 1 {
		bad("layer has %d entries, want 1", entries)
	}
	if _, err := io.Copy(uncompressed, rc); err != nil { // the tar's padding
		bad("layer: %v", err)
	}
	if got := "sha256:" + hex.EncodeToString(uncompressed.Sum(nil)); got != diffID.String() {
		bad("layer's tar is %s, its diff ID says %s", got, diffID)
	}
	if bin == nil {
		return nil, problems
	}

	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		return bin, append(problems, "binary: "+err.Error())
	}
	if f.Machine != elfMachine[arch] || f.Class != elf.ELFCLASS64 || f.Type != elf.ET_EXEC {
		bad("binary is a %s %s %s, want an ELFCLASS64 ET_EXEC %s", f.Class, f.Type, f.Machine, elfMachine[arch])
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			bad("binary has a %s program header: it is dynamically linked", p.Type)
		}
	}
	if f.Section(".dynamic") != nil || f.Section(".interp") != nil {
		bad("binary has a dynamic section: it is dynamically linked")
	}
	return bin, problems
}

func TestLayoutTwoPlatforms(t *testing.T) {
	dir, stdout := twoPlatformLayout(t)
	t.Log(shared.stderr)
	idx, images := layoutImages(t, dir)
	_, problems := checkedLayout(t)
	for arch, img := range images {
		for _, p := range problems[arch] {
			t.Errorf("linux/%s: %s", arch, p)
		}
		m, err := img.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		if m.Config.MediaType != types.OCIConfigJSON || len(m.Layers) != 1 || m.Layers[0].MediaType != types.OCILayer {
			t.Errorf("linux/%s: config %s, layers %+v; want OCI media types", arch, m.Config.MediaType, m.Layers)
		}
	}

	// stdout: the index, then each platform's image.
	d, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	lines := []string{d.String() + " momentum:dev"}
	for _, arch := range []string{"amd64", "arm64"} {
		if img := images[arch]; img != nil {
			d, err := img.Digest()
			if err != nil {
				t.Fatal(err)
			}
			lines = append(lines, d.String()+" linux/"+arch)
		}
	}
	if want := strings.Join(lines, "\n") + "\n"; stdout != want {
		t.Errorf("stdout\n%s\nwant\n%s", stdout, want)
	}
}

// hostBinary writes the binary of the layout's image for the host to a file
// and returns its name.
func hostBinary(t *testing.T) string {
	t.Helper()
	arch := hostArch(t)
	bins, problems := checkedLayout(t)
	bin := bins[arch]
	if bin == nil {
		t.Fatalf("no binary in the linux/%s image: %q", arch, problems[arch])
	}
	name := filepath.Join(t.TempDir(), "momentum")
	if err := os.WriteFile(name, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	return name
}

// tiny is a small static executable for the host, for the tests of the
// image's structure, built once: packing the 30 MB momentum binary takes
// seconds under the race detector.
var tiny struct {
	once sync.Once
	dir  string
	err  error
}

// tinyBinary returns the name of a static executable for the host that
// does nothing.
func tinyBinary(t *testing.T) string {
	t.Helper()
	hostArch(t)
	tiny.once.Do(func() {
		if tiny.dir, tiny.err = os.MkdirTemp("", "momentum-image-tiny-"); tiny.err != nil {
			return
		}
		for name, src := range map[string]string{"go.mod": "module tiny\n", "main.go": "package main\n\nfunc main() {}\n"} {
			if tiny.err = os.WriteFile(filepath.Join(tiny.dir, name), []byte(src), 0o644); tiny.err != nil {
				return
			}
		}
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", "tiny", ".")
		cmd.Dir = tiny.dir
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false")
		if out, err := cmd.CombinedOutput(); err != nil {
			tiny.err = fmt.Errorf("go build tiny: %v\n%s", err, out)
		}
	})
	if tiny.err != nil {
		t.Fatal(tiny.err)
	}
	return filepath.Join(tiny.dir, "tiny")
}

func TestHostBinaryRuns(t *testing.T) {
	bin := hostBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("momentum --version: %v\n%s", err, out)
	}
	if want := "momentum " + testVersion + " "; !strings.HasPrefix(string(out), want) {
		t.Errorf("momentum --version printed %q, want the prefix %q", out, want)
	}
}

func TestReproducible(t *testing.T) {
	_, first := twoPlatformLayout(t)
	second := runTool(t, noEnv, "--layout", t.TempDir(), "--version", testVersion)
	if first != second {
		t.Errorf("built twice, the digests differ:\n%s\n%s", first, second)
	}
}

// TestSourceDateEpoch checks that SOURCE_DATE_EPOCH dates the layer's file,
// the history and the config, and that the date is all that changes.
func TestSourceDateEpoch(t *testing.T) {
	bin := tinyBinary(t)
	plat := "linux/" + hostArch(t)
	epoch := func(s string) func(string) string {
		return func(k string) string {
			if k == "SOURCE_DATE_EPOCH" {
				return s
			}
			return ""
		}
	}
	build := func(s string) (string, v1.Image) {
		dir := t.TempDir()
		out := runTool(t, epoch(s), "--binary", bin, "--platform", plat, "--layout", dir)
		p, err := layout.FromPath(dir)
		if err != nil {
			t.Fatal(err)
		}
		ii, err := p.ImageIndex()
		if err != nil {
			t.Fatal(err)
		}
		m, err := ii.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		img, err := ii.Image(m.Manifests[0].Digest)
		if err != nil {
			t.Fatal(err)
		}
		return out, img
	}
	zero, zeroImg := build("")
	if again, _ := build("0"); again != zero {
		t.Errorf("SOURCE_DATE_EPOCH=0 gives %q, unset gives %q", again, zero)
	}
	later, img := build("1700000000")
	if later == zero {
		t.Errorf("SOURCE_DATE_EPOCH=1700000000 gives the digest of 0: %q", later)
	}
	want := time.Unix(1700000000, 0).UTC()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if !cf.Created.Equal(want) || len(cf.History) != 1 || !cf.History[0].Created.Equal(want) {
		t.Errorf("config created %v, history %+v; want %v", cf.Created, cf.History, want)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	hdr, err := tar.NewReader(rc).Next()
	if err != nil {
		t.Fatal(err)
	}
	if !hdr.ModTime.Equal(want) {
		t.Errorf("layer: %s modified %v, want %v", hdr.Name, hdr.ModTime, want)
	}
	zc, err := zeroImg.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(zc.Config, cf.Config) {
		t.Errorf("the run config changes with the date:\n%+v\n%+v", zc.Config, cf.Config)
	}
	if reflect.DeepEqual(zc.RootFS, cf.RootFS) {
		t.Errorf("the layer is the same at both dates: %+v", cf.RootFS)
	}
}

func TestTarball(t *testing.T) {
	arch := hostArch(t)
	dir, _ := twoPlatformLayout(t)
	_, images := layoutImages(t, dir)
	file := filepath.Join(t.TempDir(), "momentum.tar")
	out := runTool(t, noEnv, "--platform", "linux/"+arch, "--tarball", file, "--tag", "momentum:tarball", "--version", testVersion)

	img, err := tarball.ImageFromPath(file, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(img, validate.Fast); err != nil {
		t.Errorf("validate.Image: %v", err)
	}
	bin, problems := imageProblems(img, arch, wantConfig(t))
	for _, p := range problems {
		t.Error(p)
	}
	if bin == nil {
		t.Fatal("no binary in the tarball's image")
	}
	// The config names the layer by its diff ID, so the same config is the
	// same image: the one in the layout, built for the same platform.
	got, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	want, err := images[arch].ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("tarball image config %s, layout image config %s", got, want)
	}
	if d, err := images[arch].Digest(); err != nil || out != d.String()+" momentum:tarball\n" {
		t.Errorf("stdout %q, want %q (err %v)", out, d.String()+" momentum:tarball\n", err)
	}
	m, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(file) })
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 1 || !slices.Equal(m[0].RepoTags, []string{"momentum:tarball"}) {
		t.Errorf("manifest.json %+v, want one image tagged momentum:tarball", m)
	}
}

// TestLayoutUpdate checks that --layout adds to a layout, replaces the
// image of the same tag, and refuses a directory that is not a layout.
func TestLayoutUpdate(t *testing.T) {
	bin := tinyBinary(t)
	plat := "linux/" + hostArch(t)
	dir := t.TempDir()
	a1 := runTool(t, noEnv, "--binary", bin, "--platform", plat, "--layout", dir, "--tag", "momentum:a")
	b := runTool(t, noEnv, "--binary", bin, "--platform", plat, "--layout", dir, "--tag", "momentum:b")
	later := func(k string) string {
		if k == "SOURCE_DATE_EPOCH" {
			return "86400"
		}
		return ""
	}
	a2 := runTool(t, later, "--binary", bin, "--platform", plat, "--layout", dir, "--tag", "momentum:a")
	if a1 == a2 {
		t.Fatalf("the two builds of momentum:a have the same digest %q", a1)
	}
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	ii, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	m, err := ii.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range m.Manifests {
		got = append(got, d.Digest.String()+" "+d.Annotations[refName]+"\n")
	}
	slices.Sort(got)
	want := []string{a2, b}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("index.json lists %q, want %q", got, want)
	}

	notLayout := t.TempDir()
	if err := os.WriteFile(filepath.Join(notLayout, "go.mod"), []byte("module x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err = run(context.Background(), []string{"--binary", bin, "--platform", plat, "--layout", notLayout}, noEnv, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "not an OCI layout") {
		t.Errorf("--layout into a directory holding go.mod: %v, want a refusal", err)
	}
}

func TestArgs(t *testing.T) {
	tests := []struct {
		args []string
		env  string // SOURCE_DATE_EPOCH
		want string
	}{
		{nil, "", "want one of --layout and --tarball"},
		{[]string{"--layout", "d", "--tarball", "f"}, "", "want one of --layout and --tarball"},
		{[]string{"--tarball", "f"}, "", "--tarball holds one platform"},
		{[]string{"--layout", "d", "--binary", "b"}, "", "--binary is for one platform"},
		{[]string{"--layout", "d", "--platform", "linux/amd64", "--binary", "b", "--version", "v1"}, "", "--binary is already built"},
		{[]string{"--layout", "d", "--platform", "linux"}, "", `--platform "linux"`},
		{[]string{"--layout", "d", "--platform", "windows/amd64"}, "", "want linux/ARCH"},
		{[]string{"--layout", "d", "--platform", "linux/arm64/v8"}, "", "want linux/ARCH"},
		{[]string{"--layout", "d", "--platform", "linux/mips"}, "", "want linux/ARCH"},
		{[]string{"--layout", "d", "--platform", "linux/amd64,linux/amd64"}, "", "listed twice"},
		{[]string{"--layout", "d", "--tag", "Momentum:dev"}, "", "--tag"},
		{[]string{"--layout", "d", "--version", "v1 beta"}, "", "no spaces"},
		{[]string{"--layout", "d"}, "yesterday", "SOURCE_DATE_EPOCH"},
		{[]string{"--layout", "d"}, "-1", "SOURCE_DATE_EPOCH"},
		{[]string{"--layout", "d", "extra"}, "", `unexpected argument "extra"`},
		{[]string{"--layout", "d", "--no-such-flag"}, "", "not defined"},
	}
	for _, tt := range tests {
		getenv := func(k string) string {
			if k == "SOURCE_DATE_EPOCH" {
				return tt.env
			}
			return ""
		}
		err := run(context.Background(), tt.args, getenv, io.Discard, io.Discard)
		var usage usageError
		if !errors.As(err, &usage) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("momentum-image %q (SOURCE_DATE_EPOCH=%q): %v; want a usage error containing %q", tt.args, tt.env, err, tt.want)
		}
	}
	if err := run(context.Background(), []string{"-h"}, noEnv, io.Discard, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v, want flag.ErrHelp", err)
	}
}

// TestCheckBinary checks that momentum-image refuses to pack a binary that
// cannot run in the image.
func TestCheckBinary(t *testing.T) {
	bin := tinyBinary(t)
	host := v1.Platform{OS: "linux", Architecture: hostArch(t)}
	if err := checkBinary(bin, host); err != nil {
		t.Errorf("a static binary for %s: %v", host, err)
	}
	other := v1.Platform{OS: "linux", Architecture: "arm64"}
	if host.Architecture == "arm64" {
		other.Architecture = "amd64"
	}
	if err := checkBinary(bin, other); err == nil || !strings.Contains(err.Error(), "not "+elfMachines[other.Architecture].String()) {
		t.Errorf("a %s binary for %s: %v, want an error", host, other, err)
	}
	if err := checkBinary("main.go", host); err == nil {
		t.Error("main.go as a binary: no error")
	}
	if dyn := dynamicBinary(t); dyn != "" {
		if err := checkBinary(dyn, host); err == nil || !strings.Contains(err.Error(), "dynamically linked") {
			t.Errorf("%s: %v, want dynamically linked", dyn, err)
		}
	}
}

// dynamicBinary returns a dynamically linked executable of the host, or ""
// after logging that there is none.
func dynamicBinary(t *testing.T) string {
	for _, name := range []string{"/bin/true", "/usr/bin/true", "/bin/sh"} {
		f, err := elf.Open(name)
		if err != nil {
			continue
		}
		defer f.Close()
		if f.Machine == elfMachine[runtime.GOARCH] && slices.ContainsFunc(f.Progs, func(p *elf.Prog) bool { return p.Type == elf.PT_INTERP }) {
			return name
		}
	}
	t.Log("no dynamically linked executable found; not checked")
	return ""
}

// layerOf returns an uncompressed layer holding files, each a header and
// its contents.
func layerOf(t *testing.T, files ...any) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for i := 0; i < len(files); i += 2 {
		hdr, body := files[i].(*tar.Header), files[i+1].([]byte)
		hdr.Size = int64(len(body))
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return static.NewLayer(buf.Bytes(), types.OCIUncompressedLayer)
}

// TestImageProblems breaks the image in turn in each way imageProblems
// looks for, and expects it to say so.
func TestImageProblems(t *testing.T) {
	arch := hostArch(t)
	want := wantConfig(t)
	good, err := newImage(tinyBinary(t), v1.Platform{OS: "linux", Architecture: arch}, time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	content, problems := imageProblems(good, arch, want)
	if len(problems) > 0 || content == nil {
		t.Fatalf("the good image: %q", problems)
	}
	withLayer := func(l v1.Layer) v1.Image {
		img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), l)
		if err != nil {
			t.Fatal(err)
		}
		if img, err = mutate.Config(img, want); err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		cf.OS, cf.Architecture = "linux", arch
		if img, err = mutate.ConfigFile(img, cf); err != nil {
			t.Fatal(err)
		}
		return img
	}
	withConfig := func(f func(*v1.Config)) v1.Image {
		c := imageConfig()
		f(&c)
		img, err := mutate.Config(good, c)
		if err != nil {
			t.Fatal(err)
		}
		return img
	}
	file := func(name string, mode int64, uid int) *tar.Header {
		return &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Uid: uid, Gid: uid}
	}
	other := "arm64"
	if arch == "arm64" {
		other = "amd64"
	}

	tests := []struct {
		name string
		img  v1.Image
		arch string
		want string
	}{
		{"the layer alone", withLayer(layerOf(t, file("momentum", 0o755, 0), content)), arch, ""},
		{"another architecture", good, other, "want linux/" + other},
		{"another machine", good, other, "want an ELFCLASS64 ET_EXEC"},
		{"root", withConfig(func(c *v1.Config) { c.User = "0:0" }), arch, "config User"},
		{"a Cmd", withConfig(func(c *v1.Config) { c.Cmd = []string{"--help"} }), arch, "and no Cmd"},
		{"another entrypoint", withConfig(func(c *v1.Config) { c.Entrypoint = []string{"/bin/sh"} }), arch, "config Entrypoint"},
		{"a label less", withConfig(func(c *v1.Config) { c.Labels = nil }), arch, "config Labels"},
		{"the default PATH", withConfig(func(c *v1.Config) { c.Env = bareScratchEnv }), arch, "config Env"},
		{"two layers", mutate.MediaType(must(mutate.AppendLayers(good, layerOf(t, file("etc/passwd", 0o644, 0), []byte("root:x:0:0::/:\n")))), types.OCIManifestSchema1), arch, "2 layers"},
		{"mode 0644", withLayer(layerOf(t, file("momentum", 0o644, 0), content)), arch, "mode 0644"},
		{"setuid", withLayer(layerOf(t, file("momentum", 0o4755, 0), content)), arch, "mode 04755"},
		{"owned by a user", withLayer(layerOf(t, file("momentum", 0o755, 1000), content)), arch, "owner 1000:1000"},
		{"another name", withLayer(layerOf(t, file("app/momentum", 0o755, 0), content)), arch, `entry "app/momentum"`},
		{"a directory too", withLayer(layerOf(t, &tar.Header{Typeflag: tar.TypeDir, Name: "tmp/", Mode: 0o1777}, []byte{}, file("momentum", 0o755, 0), content)), arch, "2 entries"},
		{"a symlink", withLayer(layerOf(t, &tar.Header{Typeflag: tar.TypeSymlink, Name: "momentum", Linkname: "/bin/true"}, []byte{})), arch, "want only the regular file"},
		{"a wrong digest", withLayer(lyingLayer{Layer: layerOf(t, file("momentum", 0o755, 0), content), digest: true}), arch, "the manifest says sha256:0000"},
		{"a wrong diff ID", withLayer(lyingLayer{Layer: layerOf(t, file("momentum", 0o755, 0), content), diffID: true}), arch, "its diff ID says sha256:0000"},
		{"not ELF", withLayer(layerOf(t, file("momentum", 0o755, 0), []byte("#!/bin/sh\necho momentum\n"))), arch, "binary: "},
	}
	if dyn := dynamicBinary(t); dyn != "" {
		b, err := os.ReadFile(dyn)
		if err != nil {
			t.Fatal(err)
		}
		img := withLayer(layerOf(t, file("momentum", 0o755, 0), b))
		tests = append(tests,
			struct {
				name string
				img  v1.Image
				arch string
				want string
			}{"dynamic " + dyn, img, arch, "PT_INTERP program header"})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, problems := imageProblems(tt.img, tt.arch, want)
			if tt.want == "" {
				if len(problems) > 0 {
					t.Errorf("problems %q, want none", problems)
				}
				return
			}
			if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, tt.want) }) {
				t.Errorf("problems %q, want one containing %q", problems, tt.want)
			}
		})
	}
}

// lyingLayer is a layer whose digest or diff ID is not its contents'.
type lyingLayer struct {
	v1.Layer
	digest, diffID bool // which lies
}

var zeroHash = v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("0", 64)}

func (l lyingLayer) Digest() (v1.Hash, error) {
	if l.digest {
		return zeroHash, nil
	}
	return l.Layer.Digest()
}

func (l lyingLayer) DiffID() (v1.Hash, error) {
	if l.diffID {
		return zeroHash, nil
	}
	return l.Layer.DiffID()
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
