package image

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// Binary is the file an image runs.
type Binary struct {
	Entrypoint string // the path the image's config gives, made absolute
	Path       string // the file it is, after symbolic links
	Data       []byte
}

// defaultPATH is the PATH a container runtime uses when the image sets
// none.
const defaultPATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// ReadEntrypoint reads the file the image's entrypoint (or, without one,
// its command) runs, through the image's flattened filesystem, as a
// container runtime finds it: an absolute path; a relative one from the
// working directory; a bare name in the image's PATH.
func ReadEntrypoint(ctx context.Context, img v1.Image) (*Binary, error) {
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	argv := cfg.Config.Entrypoint
	if len(argv) == 0 {
		argv = cfg.Config.Cmd
	}
	if len(argv) == 0 || argv[0] == "" {
		return nil, errors.New("the image has no entrypoint (and no command) to take the binary from")
	}
	prog := argv[0]
	var candidates []string
	switch {
	case path.IsAbs(prog):
		candidates = []string{path.Clean(prog)}
	case strings.Contains(prog, "/"):
		candidates = []string{path.Join("/", cfg.Config.WorkingDir, prog)}
	default:
		search := defaultPATH
		for _, e := range cfg.Config.Env {
			if v, ok := strings.CutPrefix(e, "PATH="); ok {
				search = v
			}
		}
		for dir := range strings.SplitSeq(search, ":") {
			if dir = path.Clean(dir); path.IsAbs(dir) {
				candidates = append(candidates, path.Join(dir, prog))
			}
		}
		if len(candidates) == 0 {
			return nil, fmt.Errorf("the entrypoint %q is a name to look up in PATH, and the image's PATH %q has no absolute directory", prog, search)
		}
	}

	keep := map[string]bool{}
	for _, c := range candidates {
		keep[c] = true
	}
	files, err := readImageFS(ctx, img, keep)
	if err != nil {
		return nil, err
	}
	var found *Binary
	var firstErr error
	for _, c := range candidates {
		p, err := files.resolveFile(c)
		if err != nil {
			firstErr = cmpOr(firstErr, err)
			continue
		}
		if len(candidates) > 1 && files.entries[p].mode&0o111 == 0 {
			continue // not executable: a PATH lookup goes on
		}
		found = &Binary{Entrypoint: c, Path: p}
		break
	}
	switch {
	case found == nil && len(candidates) > 1:
		return nil, fmt.Errorf("the entrypoint %q is not found in the image's PATH %s", prog, strings.Join(dirsOf(candidates), ":"))
	case found == nil:
		return nil, fmt.Errorf("the entrypoint %w", firstErr)
	}
	if found.Data = files.data[found.Path]; found.Data == nil {
		// Reached through links: read the image again for that file.
		again, err := readImageFS(ctx, img, map[string]bool{found.Path: true})
		if err != nil {
			return nil, err
		}
		found.Data = again.data[found.Path]
	}
	return found, nil
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

func dirsOf(paths []string) []string {
	dirs := make([]string, len(paths))
	for i, p := range paths {
		dirs[i] = path.Dir(p)
	}
	return dirs
}

// imageFS is an image's filesystem as a container sees it: every path,
// absolute and clean, with its type; and the contents of some regular
// files.
type imageFS struct {
	entries map[string]fsEntry
	data    map[string][]byte
}

type fsEntry struct {
	typ  byte
	link string // a symbolic link's target, or a hard link's
	mode int64
}

// readImageFS reads the image's layers flattened (later layers replace
// files, whiteouts delete them), keeping the contents of the regular files
// keep names.
func readImageFS(ctx context.Context, img v1.Image, keep map[string]bool) (*imageFS, error) {
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	files := &imageFS{entries: map[string]fsEntry{}, data: map[string][]byte{}}
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		h, err := tr.Next()
		if err == io.EOF {
			return files, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading the image's layers: %w", err)
		}
		p := path.Join("/", h.Name)
		files.entries[p] = fsEntry{typ: h.Typeflag, link: h.Linkname, mode: h.Mode}
		if h.Typeflag == tar.TypeReg && keep[p] {
			b, err := io.ReadAll(tr)
			if err != nil {
				return nil, fmt.Errorf("reading %s from the image: %w", p, err)
			}
			files.data[p] = b
		}
	}
}

// maxSymlinks bounds the symbolic links followed for one path, as Linux's
// MAXSYMLINKS does.
const maxSymlinks = 40

// resolveFile follows the symbolic links of every component of p within
// the image's root, and a hard link at the end, to a regular file.
func (f *imageFS) resolveFile(p string) (string, error) {
	cur := "/"
	rest := strings.Split(strings.TrimPrefix(path.Clean(p), "/"), "/")
	hops := 0
	for len(rest) > 0 {
		part := rest[0]
		rest = rest[1:]
		switch part {
		case "", ".":
			continue
		case "..":
			cur = path.Dir(cur) // the root's parent is the root
			continue
		}
		next := path.Join(cur, part)
		e, ok := f.entries[next]
		switch {
		case !ok && len(rest) == 0:
			return "", notInImage(p, next)
		case !ok:
			// A directory the layers imply without listing it.
		case e.typ == tar.TypeSymlink:
			if hops++; hops > maxSymlinks {
				return "", fmt.Errorf("%s: too many levels of symbolic links", p)
			}
			if path.IsAbs(e.link) {
				cur = "/"
			}
			rest = append(strings.Split(e.link, "/"), rest...)
			continue
		case e.typ == tar.TypeDir:
		case len(rest) > 0:
			return "", fmt.Errorf("%s: %s is not a directory", p, next)
		}
		cur = next
	}
	e := f.entries[cur]
	if e.typ == tar.TypeLink {
		target := path.Join("/", e.link)
		t, ok := f.entries[target]
		if !ok {
			return "", fmt.Errorf("%s: a hard link to %s, which is not in the image", p, target)
		}
		cur, e = target, t
	}
	switch e.typ {
	case tar.TypeReg:
		return cur, nil
	case tar.TypeDir:
		return "", fmt.Errorf("%s is a directory, not a regular file", describe(p, cur))
	default:
		return "", fmt.Errorf("%s is not a regular file (tar type %q)", describe(p, cur), e.typ)
	}
}

func notInImage(p, missing string) error {
	if p == missing {
		return fmt.Errorf("%s is not in the image", p)
	}
	return fmt.Errorf("%s: %s is not in the image", p, missing)
}

func describe(p, resolved string) string {
	if p == resolved {
		return p
	}
	return p + " → " + resolved
}
