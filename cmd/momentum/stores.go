package main

import (
	"context"
	"io"
	"strings"

	"github.com/momentum-run/momentum/adapters/local"
	"github.com/momentum-run/momentum/compute"
)

// storeSet opens the stores that the command line's locations name, each
// once: "-" is stdin or stdout, anything else a local path.
type storeSet struct {
	files *local.Store
}

// locate returns the store holding a location, and the key within it.
func (s *storeSet) locate(loc string) (compute.Store, string, error) {
	if s.files == nil {
		files, err := local.NewStore("")
		if err != nil {
			return nil, "", err
		}
		s.files = files
	}
	return s.files, loc, nil
}

// open opens a location for reading and returns its size, or -1.
func (s *storeSet) open(ctx context.Context, loc string, stdin io.Reader) (io.ReadCloser, int64, error) {
	if loc == "-" {
		return io.NopCloser(interruptible(ctx, stdin)), stdinSize(stdin), nil
	}
	store, key, err := s.locate(loc)
	if err != nil {
		return nil, 0, err
	}
	r, info, err := store.NewReader(ctx, key, compute.ReadOptions{})
	if err != nil {
		return nil, 0, err
	}
	return r, info.Size, nil
}

// create starts writing a location; Close commits it.
func (s *storeSet) create(ctx context.Context, loc string, stdout io.Writer) (io.WriteCloser, error) {
	if loc == "-" {
		return nopWriteCloser{stdout}, nil
	}
	store, key, err := s.locate(loc)
	if err != nil {
		return nil, err
	}
	return store.NewWriter(ctx, key, compute.WriteOptions{ContentType: "text/csv"})
}

func (s *storeSet) close() {
	if s.files != nil {
		s.files.Close()
	}
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }

// isURL reports whether a location names a cloud object rather than a path.
func isURL(loc string) bool {
	return strings.HasPrefix(loc, "s3://") || strings.HasPrefix(loc, "gs://")
}

// interruptible makes reads from r return as soon as ctx is done. A read
// from a pipe or terminal can block for as long as its writer likes, and
// an interrupted run must not wait for it. Each read goes through a
// goroutine with its own buffer, so an abandoned read touches nothing of
// the caller's.
func interruptible(ctx context.Context, r io.Reader) io.Reader {
	return &ctxReader{ctx: ctx, r: r}
}

type ctxReader struct {
	ctx     context.Context
	r       io.Reader
	results chan readResult
	buf     []byte
}

type readResult struct {
	n   int
	err error
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	if c.results == nil {
		c.results = make(chan readResult, 1)
	}
	if cap(c.buf) < len(p) {
		c.buf = make([]byte, len(p))
	}
	buf := c.buf[:len(p)]
	go func() {
		n, err := c.r.Read(buf)
		c.results <- readResult{n, err}
	}()
	select {
	case res := <-c.results:
		return copy(p, buf[:res.n]), res.err
	case <-c.ctx.Done():
		c.buf = nil // the abandoned read may still write into it
		return 0, c.ctx.Err()
	}
}
