// Package local is a compute.Store on the local file system.
//
// Without a root directory, keys are plain paths, as the command line
// gives them. With one, keys are cloud-style names ("runs/a.csv") mapped
// onto that folder; keys that would leave it (an absolute path, "..", a
// symbolic link pointing out) are refused with compute.ErrInvalidKey, and
// missing folders are created as object stores imply them.
//
// A file is written to a temporary file beside it and renamed into place
// only when the writer is closed after a successful write, so a reader
// never sees a partial file and a failed run leaves the old file as it was.
// With plain paths, a symbolic link is followed and its target replaced
// that way; a device, FIFO or socket, or a descriptor such as /dev/stdout,
// is written in place, where atomicity cannot apply.
package local

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/momentum-run/momentum/compute"
)

// Store reads and writes files. Its zero value is not usable: use
// NewStore.
type Store struct {
	root   *os.Root // where keys resolve
	rooted bool     // keys are cloud-style names confined to root
	dir    string   // root's absolute path, when rooted
}

var (
	_ compute.Store   = (*Store)(nil)
	_ compute.Locator = (*Store)(nil)
)

// NewStore returns a store whose keys are names under dir. With dir ""
// keys are plain paths, absolute or relative to the working directory.
func NewStore(dir string) (*Store, error) {
	if dir == "" {
		root, err := os.OpenRoot("/")
		if err != nil {
			return nil, err
		}
		return &Store{root: root}, nil
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, mapError(err)
	}
	return &Store{root: root, rooted: true, dir: abs}, nil
}

// Location returns the absolute path of the file at key, for
// compute.Locator: with a root, key's name under it; without, key made
// absolute against the working directory.
func (s *Store) Location(key string) string {
	if s.rooted {
		return filepath.Join(s.dir, filepath.FromSlash(key))
	}
	if abs, err := filepath.Abs(key); err == nil {
		return abs
	}
	return key
}

// Close releases the store's directory handle.
func (s *Store) Close() error { return s.root.Close() }

// name turns a key into a name relative to the root.
func (s *Store) name(key string) (string, error) {
	if key == "" || strings.IndexByte(key, 0) >= 0 {
		return "", fmt.Errorf("%w: %q", compute.ErrInvalidKey, key)
	}
	if !s.rooted {
		abs, err := filepath.Abs(key)
		if err != nil {
			return "", err
		}
		return strings.TrimPrefix(filepath.ToSlash(abs), "/"), nil
	}
	if path.IsAbs(key) || filepath.IsAbs(key) || strings.HasSuffix(key, "/") {
		return "", fmt.Errorf("%w: %q is not a relative name", compute.ErrInvalidKey, key)
	}
	for _, elem := range strings.Split(key, "/") {
		if elem == ".." || elem == "." || elem == "" {
			return "", fmt.Errorf("%w: %q has an empty, . or .. element", compute.ErrInvalidKey, key)
		}
	}
	return key, nil
}

// NewReader opens the file at key.
func (s *Store) NewReader(ctx context.Context, key string, o compute.ReadOptions) (io.ReadCloser, compute.ObjectInfo, error) {
	info := compute.ObjectInfo{Size: -1}
	if o.Version != "" {
		return nil, info, fmt.Errorf("local: %s: files have no versions", key)
	}
	name, err := s.name(key)
	if err != nil {
		return nil, info, err
	}
	f, err := s.root.Open(name)
	if err != nil {
		return nil, info, mapError(keyError("open", key, err))
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, info, mapError(err)
	}
	if fi.IsDir() {
		f.Close()
		return nil, info, kindError{compute.ErrNotFound, fmt.Errorf("%s is a directory, not a file", key)}
	}
	if fi.Mode().IsRegular() {
		info.Size = fi.Size()
		info.ETag = etag(fi)
	}
	if o.ETag != "" && o.ETag != info.ETag {
		f.Close()
		return nil, info, fmt.Errorf("%w: %s changed (ETag %s, want %s)", compute.ErrNotFound, key, info.ETag, o.ETag)
	}
	var r io.Reader = f
	if o.Offset > 0 {
		if _, err := f.Seek(o.Offset, io.SeekStart); err != nil {
			f.Close()
			return nil, info, err
		}
	}
	if o.Length > 0 {
		r = io.LimitReader(f, o.Length)
	}
	return readCloser{r, f}, info, nil
}

type readCloser struct {
	io.Reader
	io.Closer
}

// etag identifies a file's content as well as its metadata can: its
// inode (every commit is a new file), modification time and size.
func etag(fi fs.FileInfo) string {
	return fmt.Sprintf("%x-%x-%x", inode(fi), fi.ModTime().UnixNano(), fi.Size())
}

// NewWriter starts writing the file at key.
func (s *Store) NewWriter(ctx context.Context, key string, o compute.WriteOptions) (io.WriteCloser, error) {
	name, err := s.name(key)
	if err != nil {
		return nil, err
	}
	if !s.rooted {
		target, inPlace, err := resolveOutput(key, "/"+name)
		if err != nil {
			return nil, mapError(err)
		}
		if inPlace {
			return openInPlace(ctx, key, target, o)
		}
		name = strings.TrimPrefix(target, "/")
	} else if fi, err := s.root.Lstat(name); err == nil && fi.IsDir() {
		return nil, mapError(keyError("create", key, syscall.EISDIR))
	}
	dir, base := path.Split(name)
	if s.rooted && dir != "" {
		if err := s.root.MkdirAll(strings.TrimSuffix(dir, "/"), 0o777); err != nil {
			return nil, mapError(err)
		}
	}
	var suffix [6]byte
	rand.Read(suffix[:])
	tmpName := dir + "." + base + ".tmp-" + hex.EncodeToString(suffix[:])
	tmp, err := s.root.OpenFile(tmpName, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, mapError(keyError("create", key, err))
	}
	return &Writer{ctx: ctx, root: s.root, tmp: tmp, tmpName: tmpName, name: name, key: key, createOnly: o.IfNotExists}, nil
}

// resolveOutput decides where a write to the absolute path p lands. A
// symbolic link is followed to its target (which may not exist yet), so
// that the file is replaced beside the target and the link stays a link.
// A device, FIFO or socket, or a path that names an open descriptor
// (/dev/stdout, /dev/fd/N, /proc/self/fd/N), is written in place: it
// cannot be replaced by rename, and replacing it would be wrong. A
// directory is an error naming key, the path the user gave.
func resolveOutput(key, p string) (target string, inPlace bool, err error) {
	for hops := 0; ; hops++ {
		if isDescriptorPath(p) {
			return p, true, nil
		}
		fi, err := os.Lstat(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return p, false, nil // a new file
		case err != nil:
			return "", false, keyError("create", key, err)
		case fi.Mode()&fs.ModeSymlink != 0:
			if hops == 40 {
				return "", false, keyError("create", key, syscall.ELOOP)
			}
			link, err := os.Readlink(p)
			if err != nil {
				return "", false, keyError("create", key, err)
			}
			if !filepath.IsAbs(link) {
				link = filepath.Join(filepath.Dir(p), link)
			}
			p = filepath.Clean(link)
		case fi.IsDir():
			return "", false, keyError("create", key, syscall.EISDIR)
		case fi.Mode().IsRegular():
			return p, false, nil
		default:
			return p, true, nil // a device, FIFO or socket
		}
	}
}

// isDescriptorPath reports whether p names an open file descriptor of a
// process rather than a file: writing it must reach that descriptor's
// file as it is.
func isDescriptorPath(p string) bool {
	switch {
	case p == "/dev/stdout", p == "/dev/stderr", p == "/dev/stdin",
		strings.HasPrefix(p, "/dev/fd/"):
		return true
	case strings.HasPrefix(p, "/proc/"):
		elems := strings.Split(p, "/") // "", "proc", PID, "fd", N
		return len(elems) == 5 && elems[3] == "fd"
	}
	return false
}

// openInPlace opens what p names (a device, FIFO, socket or descriptor)
// for writing where it is, as a shell's > does. There is no temporary
// file: what is written is seen at once, and a failed run cannot take it
// back.
func openInPlace(ctx context.Context, key, p string, o compute.WriteOptions) (io.WriteCloser, error) {
	if o.IfNotExists {
		return nil, fmt.Errorf("%w: %s", compute.ErrExists, key)
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o666)
	if err != nil {
		return nil, mapError(keyError("open", key, err))
	}
	return &inPlaceWriter{ctx: ctx, f: f}, nil
}

// inPlaceWriter writes straight to an open file. Close reports the
// context's error when it is done, though what was written stays written.
type inPlaceWriter struct {
	ctx  context.Context
	f    *os.File
	done bool
}

func (w *inPlaceWriter) Write(p []byte) (int, error) { return w.f.Write(p) }

func (w *inPlaceWriter) Close() error {
	if w.done {
		return errors.New("local: writer already closed")
	}
	w.done = true
	err := w.f.Close()
	if cerr := w.ctx.Err(); cerr != nil {
		return cerr
	}
	return err
}

// Writer writes one file atomically. Close commits it; Abort, or Close
// after its context is done, discards it.
type Writer struct {
	ctx        context.Context
	root       *os.Root
	tmp        *os.File
	tmpName    string
	name, key  string
	createOnly bool
	done       bool
	written    int64 // bytes written so far
	flushed    int64 // bytes handed to early writeback
}

// writebackEvery is how often written data is handed to the kernel for
// writeback while the run goes on, so the sync at Close has little left.
const writebackEvery = 8 << 20

// Write writes to the temporary file.
func (w *Writer) Write(p []byte) (int, error) {
	n, err := w.tmp.Write(p)
	w.written += int64(n)
	if w.written-w.flushed >= writebackEvery {
		startWriteback(w.tmp, w.flushed, w.written-w.flushed)
		w.flushed = w.written
	}
	return n, err
}

// Close syncs the temporary file and moves it to the target name: a
// rename, or for a create-only write a hard link, which fails rather than
// replace a file. If the context is done it aborts instead and returns the
// context's error.
func (w *Writer) Close() error {
	if w.done {
		return errors.New("local: writer already closed")
	}
	if err := w.ctx.Err(); err != nil {
		w.Abort()
		return err
	}
	w.done = true
	err := w.tmp.Sync()
	if err == nil {
		err = w.tmp.Chmod(w.targetMode())
	}
	if cerr := w.tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		if w.createOnly {
			err = w.root.Link(w.tmpName, w.name)
			if errors.Is(err, fs.ErrExist) {
				err = fmt.Errorf("%w: %s", compute.ErrExists, w.key)
			}
		} else {
			err = w.root.Rename(w.tmpName, w.name)
		}
	}
	if err != nil || w.createOnly {
		w.root.Remove(w.tmpName)
	}
	return mapError(err)
}

// Abort discards what was written. It is safe to call more than once and
// after Close.
func (w *Writer) Abort() {
	if w.done {
		return
	}
	w.done = true
	w.tmp.Close()
	w.root.Remove(w.tmpName)
}

// targetMode is the mode the committed file gets: the replaced file's, or
// 0644 less the umask.
func (w *Writer) targetMode() fs.FileMode {
	if fi, err := w.root.Stat(w.name); err == nil {
		return fi.Mode().Perm()
	}
	return 0o644 &^ umask
}

// keyError names the key, not the name inside the root or a temporary
// file, in a file system error.
func keyError(op, key string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return &fs.PathError{Op: op, Path: key, Err: err}
}

// mapError adds the compute storage kind to a file system error.
func mapError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, compute.ErrExists), errors.Is(err, compute.ErrNotFound),
		errors.Is(err, compute.ErrInvalidKey), errors.Is(err, compute.ErrPermission):
		return err
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		return kindError{compute.ErrNotFound, err}
	case errors.Is(err, fs.ErrPermission):
		return kindError{compute.ErrPermission, err}
	case strings.Contains(err.Error(), "path escapes from parent"):
		// os.Root's refusal of a symbolic link that leads out of it.
		return kindError{compute.ErrInvalidKey, err}
	}
	return err
}

// kindError keeps an error's text and adds a storage kind to what it
// matches with errors.Is.
type kindError struct {
	kind error
	err  error
}

func (e kindError) Error() string { return e.err.Error() }
func (e kindError) Unwrap() []error {
	return []error{e.kind, e.err}
}

// Compose writes dst as the concatenation of srcs, in order, through a
// temporary file renamed into place, as every write is.
func (s *Store) Compose(ctx context.Context, dst string, srcs []string, o compute.WriteOptions) error {
	return compute.ComposeByCopy(ctx, s, dst, srcs, o)
}
