package main

import (
	"context"
	"io"

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
		return io.NopCloser(stdin), stdinSize(stdin), nil
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
