package image

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/match"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// FileLayer returns an OCI gzip layer whose tar holds one regular file,
// data at the absolute path name, mode 0755, owned by 0:0, modified at
// modTime. The tar is built in memory.
func FileLayer(name string, data []byte, modTime time.Time) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	hdr := &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     strings.TrimPrefix(name, "/"),
		Mode:     0o755,
		Size:     int64(len(data)),
		ModTime:  modTime,
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return nil, err
	}
	if _, err := tw.Write(data); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	archive := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(archive)), nil
	}, tarball.WithMediaType(types.OCILayer), tarball.WithCompressedCaching)
}

// NewIndex returns an OCI image index of images, images[i] for platforms[i].
func NewIndex(platforms []v1.Platform, images []v1.Image) v1.ImageIndex {
	adds := make([]mutate.IndexAddendum, len(images))
	for i, img := range images {
		adds[i] = mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &platforms[i]}}
	}
	return mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), adds...)
}

// WriteLayout adds img, an image or an index, to the OCI layout in dir
// under tag (its org.opencontainers.image.ref.name), replacing what had
// that tag. It creates the layout if dir is missing or empty, and refuses a
// directory holding something else.
func WriteLayout(dir string, tag name.Tag, img mutate.Appendable) error {
	p, err := layout.FromPath(dir)
	if errors.Is(err, fs.ErrNotExist) {
		if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
			return fmt.Errorf("layout %s: not empty and not an OCI layout (no index.json)", dir)
		}
		p, err = layout.Write(dir, empty.Index)
	}
	if err != nil {
		return fmt.Errorf("layout %s: %w", dir, err)
	}
	opt := layout.WithAnnotations(map[string]string{RefNameAnnotation: tag.String()})
	switch img := img.(type) {
	case v1.ImageIndex:
		err = p.ReplaceIndex(img, match.Name(tag.String()), opt)
	case v1.Image:
		err = p.ReplaceImage(img, match.Name(tag.String()), opt)
	}
	if err != nil {
		return fmt.Errorf("layout %s: %w", dir, err)
	}
	return nil
}

// WriteTarball writes img tagged tag to file as docker save does,
// removing the file if that fails.
func WriteTarball(file string, tag name.Tag, img v1.Image) error {
	if err := tarball.WriteToFile(file, tag, img); err != nil {
		os.Remove(file)
		return fmt.Errorf("tarball %s: %w", file, err)
	}
	return nil
}
