// Package local reads and writes files on the local file system.
//
// A file is written to a temporary file beside it and renamed into place
// only when the writer is closed after a successful write, so a reader
// never sees a partial file and a failed run leaves the old file as it was.
package local

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
)

// Writer writes one file atomically. Close commits it; Abort, or Close
// after its context is done, discards it.
type Writer struct {
	ctx     context.Context
	tmp     *os.File
	path    string
	done    bool
	written int64 // bytes written so far
	flushed int64 // bytes handed to early writeback
}

// writebackEvery is how often written data is handed to the kernel for
// writeback while the run goes on, so the sync at Close has little left.
const writebackEvery = 8 << 20

// Create starts writing the file at path. The file appears at path only
// when Close succeeds; its mode is the existing file's, or 0644 less the
// umask for a new one.
func Create(ctx context.Context, path string) (*Writer, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, &fs.PathError{Op: "create", Path: path, Err: err}
	}
	return &Writer{ctx: ctx, tmp: tmp, path: path}, nil
}

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

// Close syncs the temporary file and renames it to the target path. If
// the context is done it aborts instead and returns the context's error.
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
		err = w.tmp.Chmod(targetMode(w.path))
	}
	if cerr := w.tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(w.tmp.Name(), w.path)
	}
	if err != nil {
		os.Remove(w.tmp.Name())
	}
	return err
}

// Abort discards what was written. It is safe to call more than once and
// after Close.
func (w *Writer) Abort() {
	if w.done {
		return
	}
	w.done = true
	w.tmp.Close()
	os.Remove(w.tmp.Name())
}

// targetMode is the mode the committed file gets.
func targetMode(path string) fs.FileMode {
	if fi, err := os.Stat(path); err == nil {
		return fi.Mode().Perm()
	}
	return 0o644 &^ umask
}
