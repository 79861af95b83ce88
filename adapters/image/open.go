// Package image reads and writes container images with go-containerregistry,
// without a container engine.
//
// Open reads an image for one platform from what a command line names:
//
//	DIR, DIR:TAG, oci:DIR[:TAG]   an OCI image layout
//	FILE, FILE:TAG                a docker save tarball, or an OCI archive
//	REF, docker://REF             an image in a registry, with the
//	                              credentials of docker login
//
// ReadEntrypoint finds the binary an image runs as a container runtime
// does: through the layers (later layers replace files, whiteouts delete
// them) and symbolic links, in the image's PATH. FileLayer, NewIndex,
// WriteLayout and WriteTarball write images.
package image

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Linux is the platform linux/goarch.
func Linux(goarch string) v1.Platform {
	return v1.Platform{OS: "linux", Architecture: goarch}
}

// Source is an image opened for one platform, and how it was found.
type Source struct {
	Image    v1.Image
	Platform v1.Platform
	Index    v1.Hash // the index the image was picked from; zero when none
	Manifest v1.Hash // zero for a docker save tarball, which keeps no manifest
	Config   v1.Hash // the digest of the image's config
	cleanup  func()
}

// Close removes what opening the image left on disk.
func (s *Source) Close() {
	if s.cleanup != nil {
		s.cleanup()
	}
}

// Open opens the image ref names, for platform: an OCI layout
// (DIR, DIR:TAG, oci:DIR[:TAG]), a docker save tarball or an OCI archive
// (FILE, FILE:TAG), or a registry reference (REF, docker://REF).
func Open(ctx context.Context, ref string, platform v1.Platform) (*Source, error) {
	if r, ok := strings.CutPrefix(ref, "docker://"); ok {
		return fromRegistry(ctx, r, platform, true)
	}
	local, explicit := strings.CutPrefix(ref, "oci:")
	// The longest prefix that exists is the file or directory; what
	// follows its colon is the tag. Tags have colons too (momentum:dev).
	for i := len(local); i > 0; i = strings.LastIndexByte(local[:i], ':') {
		file, tag := local[:i], ""
		if i < len(local) {
			tag = local[i+1:]
		}
		fi, err := os.Stat(file)
		switch {
		case err != nil:
			continue
		case fi.IsDir():
			if _, err := os.Stat(filepath.Join(file, "oci-layout")); err != nil {
				return nil, fmt.Errorf("%s: a directory, but not an OCI image layout (no oci-layout file)", file)
			}
			return fromLayout(file, tag, platform)
		case explicit:
			return nil, fmt.Errorf("%s: oci: wants an OCI layout directory, not a file", file)
		}
		return fromTarball(file, tag, platform)
	}
	if explicit {
		return nil, fmt.Errorf("%s: no such OCI layout directory", local)
	}
	if looksLocal(ref) || !strings.ContainsAny(ref, "/:@") {
		// A bare word is far likelier a mistyped path than an image on
		// Docker Hub: say so, and how to name a registry's image.
		return nil, fmt.Errorf("%s: no such file or directory (an image in a registry is named with its repository, such as REGISTRY/NAME:TAG or docker://NAME)", ref)
	}
	return fromRegistry(ctx, ref, platform, false)
}

// looksLocal reports whether ref, which does not exist, reads as a path
// rather than a registry reference.
func looksLocal(ref string) bool {
	for _, p := range []string{"/", "./", "../", "~", `\`} {
		if strings.HasPrefix(ref, p) {
			return true
		}
	}
	for _, ext := range []string{".tar", ".tar.gz", ".tgz", ".oci"} {
		if strings.HasSuffix(ref, ext) {
			return true
		}
	}
	// build/image when build/ is here.
	if dir := filepath.Dir(ref); dir != "." {
		if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
			return true
		}
	}
	return false
}

// fromLayout picks the image of a layout: the one tagged tag, or the only
// one; within an index, the one for platform.
func fromLayout(dir, tag string, platform v1.Platform) (*Source, error) {
	p, err := layout.FromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	root, err := p.ImageIndex()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	m, err := root.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	var picked []v1.Descriptor
	var tags []string
	for _, d := range m.Manifests {
		tags = append(tags, d.Annotations[RefNameAnnotation])
		if tag == "" || tagMatches(tag, d.Annotations) {
			picked = append(picked, d)
		}
	}
	switch {
	case len(m.Manifests) == 0:
		return nil, fmt.Errorf("%s: the layout holds no image", dir)
	case len(picked) == 0:
		return nil, fmt.Errorf("%s: no image tagged %q (the tags are %q)", dir, tag, tags)
	case len(picked) > 1 && tag == "" && allHavePlatforms(picked):
		// Platform images listed in index.json itself, as some tools write.
		return fromIndex(root, v1.Hash{}, platform, dir)
	case len(picked) > 1:
		return nil, fmt.Errorf("%s holds %d images tagged %q: name one as %s:TAG", dir, len(picked), tags, dir)
	}
	d := picked[0]
	where := dir
	if tag != "" {
		where += ":" + tag
	}
	if d.MediaType.IsIndex() {
		idx, err := root.ImageIndex(d.Digest)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		return fromIndex(idx, d.Digest, platform, where)
	}
	img, err := root.Image(d.Digest)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	return fromImage(img, platform, where, true)
}

// RefNameAnnotation tags an image in an OCI layout.
const RefNameAnnotation = "org.opencontainers.image.ref.name"

// containerdNameAnnotation is the full image name docker save records.
const containerdNameAnnotation = "io.containerd.image.name"

// tagMatches reports whether tag names the layout entry with these
// annotations: its ref.name exactly (skopeo's oci:DIR:TAG), or as the tag
// of NAME:TAG, or the full image name docker save records.
func tagMatches(tag string, ann map[string]string) bool {
	refName := ann[RefNameAnnotation]
	if refName != "" && (tag == refName || strings.HasSuffix(tag, ":"+refName)) {
		return true
	}
	full, err := name.NewTag(ann[containerdNameAnnotation])
	if err != nil {
		return false
	}
	want, err := name.NewTag(tag)
	return err == nil && want.Name() == full.Name()
}

func allHavePlatforms(ds []v1.Descriptor) bool {
	for _, d := range ds {
		if d.Platform == nil {
			return false
		}
	}
	return true
}

// fromIndex picks the image for platform from an index whose digest is
// digest (zero when it has none of its own, as a layout's index.json).
func fromIndex(idx v1.ImageIndex, digest v1.Hash, platform v1.Platform, where string) (*Source, error) {
	have, err := platformImages(idx, 0)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	var listed []string
	for _, pi := range have {
		listed = append(listed, pi.platform.String())
		if pi.platform.OS == platform.OS && pi.platform.Architecture == platform.Architecture {
			src, err := fromImage(pi.img, platform, where, true)
			if err != nil {
				return nil, err
			}
			src.Index = digest
			return src, nil
		}
	}
	if len(listed) == 0 {
		return nil, fmt.Errorf("%s: the index holds no image", where)
	}
	return nil, fmt.Errorf("%s: no %s image in the index (it has %s)", where, platform, strings.Join(listed, ", "))
}

type platformImage struct {
	platform v1.Platform
	img      v1.Image
}

// platformImages lists the images of an index and of the indexes within,
// with their platforms, from the descriptors or else from the images'
// configs. Attestations are left out.
func platformImages(idx v1.ImageIndex, depth int) ([]platformImage, error) {
	if depth > 4 {
		return nil, errors.New("indexes nested too deep")
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	var out []platformImage
	for _, d := range m.Manifests {
		switch {
		case d.Annotations["vnd.docker.reference.type"] == "attestation-manifest":
		case d.MediaType.IsIndex():
			inner, err := idx.ImageIndex(d.Digest)
			if err != nil {
				return nil, err
			}
			more, err := platformImages(inner, depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, more...)
		case d.MediaType.IsImage():
			img, err := idx.Image(d.Digest)
			if err != nil {
				return nil, err
			}
			var p v1.Platform
			if d.Platform != nil {
				p = *d.Platform
			} else {
				cfg, err := img.ConfigFile()
				if err != nil {
					return nil, err
				}
				p = v1.Platform{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant}
			}
			out = append(out, platformImage{p, img})
		}
	}
	return out, nil
}

// fromImage checks that a single image is for platform, and describes
// it; hasManifest is false for a docker save tarball.
func fromImage(img v1.Image, platform v1.Platform, where string, hasManifest bool) (*Source, error) {
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	if cfg.OS != platform.OS || cfg.Architecture != platform.Architecture {
		return nil, fmt.Errorf("%s is a %s/%s image, not %s", where, cfg.OS, cfg.Architecture, platform)
	}
	src := &Source{Image: img, Platform: platform}
	if src.Config, err = img.ConfigName(); err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	if hasManifest {
		if src.Manifest, err = img.Digest(); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
	}
	return src, nil
}

// fromTarball opens a docker save tarball (manifest.json) or an OCI
// archive (oci-layout), which is unpacked to a temporary directory.
func fromTarball(file, tag string, platform v1.Platform) (*Source, error) {
	kind, err := tarballKind(file)
	if err != nil {
		return nil, err
	}
	if kind == "oci-layout" {
		dir, err := os.MkdirTemp("", "momentum-oci-archive-")
		if err != nil {
			return nil, err
		}
		if err := untar(file, dir); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		src, err := fromLayout(dir, tag, platform)
		if err != nil {
			os.RemoveAll(dir)
			return nil, errors.New(strings.ReplaceAll(err.Error(), dir, file))
		}
		src.cleanup = func() { os.RemoveAll(dir) }
		return src, nil
	}
	var t *name.Tag
	if tag != "" {
		nt, err := name.NewTag(tag)
		if err != nil {
			return nil, fmt.Errorf("%s:%s: %w", file, tag, err)
		}
		t = &nt
	}
	img, err := tarball.ImageFromPath(file, t)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	where := file
	if tag != "" {
		where += ":" + tag
	}
	return fromImage(img, platform, where, false)
}

// tarballKind tells a docker save tarball ("manifest.json") from an OCI
// archive ("oci-layout"). docker save writes both since Docker 25; its
// manifest.json is read then.
func tarballKind(file string) (string, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", err
	}
	defer f.Close()
	var magic [2]byte
	if _, err := io.ReadFull(f, magic[:]); err == nil && magic == [2]byte{0x1f, 0x8b} {
		return "", fmt.Errorf("%s: gzip-compressed; gunzip it first", file)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	kind := ""
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", fmt.Errorf("%s: not an image tarball: %v", file, err)
		}
		switch path.Clean(h.Name) {
		case "manifest.json":
			return "manifest.json", nil
		case "oci-layout":
			kind = "oci-layout"
		}
	}
	if kind == "" {
		return "", fmt.Errorf("%s: not an image tarball (no manifest.json, no oci-layout)", file)
	}
	return kind, nil
}

// untar unpacks the regular files and directories of an OCI archive into
// dir, refusing names that would land outside it.
func untar(file, dir string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
		rel := path.Clean(h.Name)
		if !fs.ValidPath(rel) {
			return fmt.Errorf("%s: unsafe name %q", file, h.Name)
		}
		dst := filepath.Join(dir, filepath.FromSlash(rel))
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(dst, 0o755)
		case tar.TypeReg:
			err = writeUntarred(dst, tr)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
	}
}

func writeUntarred(dst string, r io.Reader) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	w, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(w, r); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}

// fromRegistry fetches the image ref names from its registry, with the
// credentials docker login and credential helpers keep. explicit says
// ref came as docker://REF rather than as what is not a local file.
func fromRegistry(ctx context.Context, ref string, platform v1.Platform, explicit bool) (*Source, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, fmt.Errorf("%s: not a file, an OCI layout or a registry reference (%v)", ref, err)
	}
	desc, err := remote.Get(r, remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain),
		remote.WithUserAgent("momentum"))
	if err != nil && !explicit {
		return nil, fmt.Errorf("%s: no such file or directory, and from the registry: %w", ref, err)
	} else if err != nil {
		return nil, fmt.Errorf("%s: %w", ref, err)
	}
	where := r.String()
	if desc.MediaType.IsIndex() {
		idx, err := desc.ImageIndex()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		return fromIndex(idx, desc.Digest, platform, where)
	}
	img, err := desc.Image()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	return fromImage(img, platform, where, true)
}
