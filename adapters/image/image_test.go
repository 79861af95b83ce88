package image

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"log"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

var epoch = time.Unix(0, 0).UTC()

// entry is a file of a test layer: a regular file with data, or a
// symbolic link, a hard link or a directory.
type entry struct {
	name     string
	data     string
	mode     int64 // default 0755
	symlink  string
	hardlink string
	dir      bool
}

func layerOf(t *testing.T, entries ...entry) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: 0o755, Typeflag: tar.TypeReg, Size: int64(len(e.data)), ModTime: epoch}
		if e.mode != 0 {
			h.Mode = e.mode
		}
		switch {
		case e.symlink != "":
			h.Typeflag, h.Linkname, h.Size = tar.TypeSymlink, e.symlink, 0
		case e.hardlink != "":
			h.Typeflag, h.Linkname, h.Size = tar.TypeLink, e.hardlink, 0
		case e.dir:
			h.Typeflag, h.Size = tar.TypeDir, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			if _, err := io.WriteString(tw, e.data); err != nil {
				t.Fatal(err)
			}
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

// imageOf is an OCI image for linux/goarch of the layers, its run config
// cfg.
func imageOf(t *testing.T, goarch string, cfg v1.Config, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), layers...)
	if err != nil {
		t.Fatal(err)
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Config = "linux", goarch, cfg
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	return img
}

// binaryImage is an image as cmd/momentum-image writes it: one layer
// holding /momentum, the entrypoint.
func binaryImage(t *testing.T, goarch, data string) v1.Image {
	t.Helper()
	l, err := FileLayer("/momentum", []byte(data), epoch)
	if err != nil {
		t.Fatal(err)
	}
	return imageOf(t, goarch, v1.Config{Entrypoint: []string{"/momentum"}}, l)
}

func mustRef(t *testing.T, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func mustDigest(t *testing.T, d interface{ Digest() (v1.Hash, error) }) v1.Hash {
	t.Helper()
	h, err := d.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// read opens ref for linux/goarch and returns its entrypoint's contents.
func read(t *testing.T, ref, goarch string) (*Source, string) {
	t.Helper()
	src, err := Open(context.Background(), ref, Linux(goarch))
	if err != nil {
		t.Fatalf("Open(%q, %s): %v", ref, goarch, err)
	}
	t.Cleanup(src.Close)
	bin, err := ReadEntrypoint(context.Background(), src.Image)
	if err != nil {
		t.Fatalf("ReadEntrypoint(%q): %v", ref, err)
	}
	return src, string(bin.Data)
}

// TestWriteThenOpen writes images with WriteLayout and WriteTarball and
// reads them back with Open, by every name Open takes; and checks that
// Open picks the platform's image out of an index, and says which
// platforms there are when the one asked for is not.
func TestWriteThenOpen(t *testing.T) {
	amd, arm := binaryImage(t, "amd64", "amd64 binary"), binaryImage(t, "arm64", "arm64 binary")
	tag := name.MustParseReference("momentum:dev").(name.Tag)
	dir := filepath.Join(t.TempDir(), "layout")
	idx := NewIndex([]v1.Platform{Linux("amd64"), Linux("arm64")}, []v1.Image{amd, arm})
	if err := WriteLayout(dir, tag, idx); err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{dir, dir + ":momentum:dev", "oci:" + dir + ":momentum:dev"} {
		for goarch, want := range map[string]string{"amd64": "amd64 binary", "arm64": "arm64 binary"} {
			src, got := read(t, ref, goarch)
			if got != want {
				t.Errorf("%s for %s: %q, want %q", ref, goarch, got, want)
			}
			if src.Index != mustDigest(t, idx) || !src.Platform.Equals(Linux(goarch)) || src.Config == (v1.Hash{}) {
				t.Errorf("%s for %s: index %s platform %s config %s, want index %s", ref, goarch, src.Index, src.Platform, src.Config, mustDigest(t, idx))
			}
		}
	}
	if _, err := Open(context.Background(), dir, Linux("s390x")); err == nil ||
		!strings.Contains(err.Error(), "no linux/s390x image in the index (it has linux/amd64, linux/arm64)") {
		t.Errorf("an index without the platform: %v", err)
	}

	// A second tag in the same layout; the same tag again replaces.
	other := name.MustParseReference("momentum:other").(name.Tag)
	if err := WriteLayout(dir, other, amd); err != nil {
		t.Fatal(err)
	}
	if err := WriteLayout(dir, other, binaryImage(t, "amd64", "newer")); err != nil {
		t.Fatal(err)
	}
	if _, got := read(t, dir+":momentum:other", "amd64"); got != "newer" {
		t.Errorf("the replaced tag: %q, want newer", got)
	}
	if _, err := Open(context.Background(), dir, Linux("amd64")); err == nil || !strings.Contains(err.Error(), "holds 2 images") {
		t.Errorf("an untagged ref to a layout of two tags: %v", err)
	}

	file := filepath.Join(t.TempDir(), "image.tar")
	if err := WriteTarball(file, tag, arm); err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{file, file + ":momentum:dev"} {
		src, got := read(t, ref, "arm64")
		if got != "arm64 binary" || src.Manifest != (v1.Hash{}) {
			t.Errorf("%s: %q, manifest %s; want the arm64 binary and no manifest", ref, got, src.Manifest)
		}
	}
	if _, err := Open(context.Background(), file, Linux("amd64")); err == nil || !strings.Contains(err.Error(), "is a linux/arm64 image, not linux/amd64") {
		t.Errorf("a tarball of another platform: %v", err)
	}
}

// TestOpenRegistry reads an image and an index from a registry on
// loopback, by REF and docker://REF.
func TestOpenRegistry(t *testing.T) {
	t.Setenv("DOCKER_CONFIG", t.TempDir()) // no credentials of this machine
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	single, index := host+"/momentum:single", host+"/momentum:index"
	amd, arm := binaryImage(t, "amd64", "amd64 binary"), binaryImage(t, "arm64", "arm64 binary")
	if err := remote.Write(mustRef(t, single), amd); err != nil {
		t.Fatal(err)
	}
	idx := NewIndex([]v1.Platform{Linux("amd64"), Linux("arm64")}, []v1.Image{amd, arm})
	if err := remote.WriteIndex(mustRef(t, index), idx); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ ref, goarch, want string }{
		{single, "amd64", "amd64 binary"},
		{"docker://" + single, "amd64", "amd64 binary"},
		{index, "arm64", "arm64 binary"},
		{"docker://" + index, "amd64", "amd64 binary"},
	} {
		src, got := read(t, tt.ref, tt.goarch)
		if got != tt.want || src.Manifest == (v1.Hash{}) {
			t.Errorf("%s for %s: %q, manifest %s; want %q", tt.ref, tt.goarch, got, src.Manifest, tt.want)
		}
	}
	if _, err := Open(context.Background(), host+"/nothing:here", Linux("amd64")); err == nil {
		t.Error("a missing repository: no error")
	}
}

// TestReadEntrypoint finds the binary as a container runtime would.
func TestReadEntrypoint(t *testing.T) {
	ep := func(argv ...string) v1.Config { return v1.Config{Entrypoint: argv} }
	for _, tt := range []struct {
		name       string
		cfg        v1.Config
		layers     [][]entry
		path, want string // the file found and its contents; or want the error
		fails      bool
	}{
		{"absolute", ep("/app/momentum"), [][]entry{{{name: "app/momentum", data: "bin"}}}, "/app/momentum", "bin", false},
		{"a later layer replaces", ep("/momentum"), [][]entry{{{name: "momentum", data: "old"}}, {{name: "momentum", data: "new"}}}, "/momentum", "new", false},
		{"no entrypoint, the command", v1.Config{Cmd: []string{"/momentum", "serve"}}, [][]entry{{{name: "momentum", data: "bin"}}}, "/momentum", "bin", false},
		{"relative to the working directory", v1.Config{Entrypoint: []string{"./momentum"}, WorkingDir: "/app"}, [][]entry{{{name: "app/momentum", data: "bin"}}}, "/app/momentum", "bin", false},
		{"symbolic link", ep("/usr/bin/momentum"), [][]entry{{{name: "app/momentum", data: "bin"}, {name: "usr/bin/momentum", symlink: "../../app/momentum"}}}, "/app/momentum", "bin", false},
		{"linked directory", ep("/usr/local/bin/momentum"), [][]entry{{{name: "opt/bin/momentum", data: "bin"}}, {{name: "usr/local/bin", symlink: "/opt/bin"}}}, "/opt/bin/momentum", "bin", false},
		{"hard link", ep("/bin/momentum"), [][]entry{{{name: "app/momentum", data: "bin"}, {name: "bin/momentum", hardlink: "app/momentum"}}}, "/app/momentum", "bin", false},
		{"in PATH", v1.Config{Entrypoint: []string{"momentum"}, Env: []string{"PATH=/data:/app"}},
			[][]entry{{{name: "data/momentum", data: "not executable", mode: 0o644}, {name: "app/momentum", data: "bin"}}}, "/app/momentum", "bin", false},
		{"in the default PATH", ep("momentum"), [][]entry{{{name: "usr/bin/momentum", data: "bin"}}}, "/usr/bin/momentum", "bin", false},
		{"whiteout", ep("/momentum"), [][]entry{{{name: "momentum", data: "bin"}}, {{name: ".wh.momentum"}}}, "", "the entrypoint /momentum is not in the image", true},
		{"opaque directory", ep("/app/momentum"), [][]entry{{{name: "app/momentum", data: "bin"}}, {{name: "app/.wh..wh..opq"}}}, "", "/app/momentum is not in the image", true},
		{"none", v1.Config{}, [][]entry{{{name: "momentum", data: "bin"}}}, "", "the image has no entrypoint (and no command)", true},
		{"a directory", ep("/app"), [][]entry{{{name: "app", dir: true}}}, "", "/app is a directory, not a regular file", true},
		{"through a file", ep("/momentum/x"), [][]entry{{{name: "momentum", data: "bin"}}}, "", "/momentum is not a directory", true},
		{"not in PATH", ep("momentum"), [][]entry{{{name: "momentum", data: "bin"}}}, "", `the entrypoint "momentum" is not found in the image's PATH /usr/local/sbin:`, true},
		{"a loop", ep("/a"), [][]entry{{{name: "a", symlink: "b"}, {name: "b", symlink: "a"}}}, "", "/a: too many levels of symbolic links", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var layers []v1.Layer
			for _, l := range tt.layers {
				layers = append(layers, layerOf(t, l...))
			}
			bin, err := ReadEntrypoint(context.Background(), imageOf(t, "amd64", tt.cfg, layers...))
			switch {
			case tt.fails && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("error %v, want %q", err, tt.want)
			case !tt.fails && err != nil:
				t.Errorf("error %v", err)
			case !tt.fails && (bin.Path != tt.path || string(bin.Data) != tt.want):
				t.Errorf("%s %q, want %s %q", bin.Path, bin.Data, tt.path, tt.want)
			}
		})
	}
}

func TestGOARCH(t *testing.T) {
	for in, want := range map[string]string{"x86_64": "amd64", "amd64": "amd64", "arm64": "arm64", "s390x": "s390x"} {
		if got := GOARCH(in); got != want {
			t.Errorf("GOARCH(%q) = %q, want %q", in, got, want)
		}
	}
}
