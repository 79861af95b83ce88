package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"syscall"

	"github.com/momentum-run/momentum/adapters/gcs"
	"github.com/momentum-run/momentum/adapters/local"
	"github.com/momentum-run/momentum/adapters/s3"
	"github.com/momentum-run/momentum/compute"
)

// storeSet opens the stores that the command line's locations name, each
// once: "-" is stdin or stdout, s3://bucket/key an S3 object,
// gs://bucket/object a Cloud Storage object, anything else a local path.
// Cloud clients are made only when a location needs them, so a local run
// starts as fast as it can.
type storeSet struct {
	// readAhead is how cloud objects are read; see readAheadFor.
	readAhead compute.ReadAhead
	// partSize is the bytes in each part of a cloud output; 0 for the
	// stores' default.
	partSize int

	files   *local.Store
	buckets map[string]compute.Store // by scheme://bucket
	closers []func() error
}

// readAheadFor is how to read an object of store. Cloud objects are read
// through the ReadAhead: an object store serves each connection at a
// bounded rate. Files are read in one stream: the kernel's page cache and
// read-ahead already serve a sequential read at the speed of the disk
// (or of memory), far above the kernel's, and ranges read at once would
// only add a copy, buffers and, on a spinning disk, seeks.
func (s *storeSet) readAheadFor(store compute.Store) compute.ReadAhead {
	if _, ok := store.(*local.Store); ok {
		return compute.ReadAhead{}
	}
	return s.readAhead
}

// locate returns the store holding a location, and the key within it.
func (s *storeSet) locate(ctx context.Context, loc string) (compute.Store, string, error) {
	scheme, bucket, key, ok := splitURL(loc)
	if !ok {
		store, err := s.localFiles()
		return store, loc, err
	}
	if bucket == "" || key == "" || strings.HasSuffix(key, "/") {
		return nil, "", &usageError{fmt.Sprintf("%q: want %s://BUCKET/KEY", loc, scheme)}
	}
	store, err := s.bucket(ctx, scheme, bucket)
	return store, key, err
}

// locateFolder returns the store holding a folder to read (a location
// ending in /, or a bucket's root) and the key prefix of the objects in
// it. Reading creates nothing: a local folder must exist.
func (s *storeSet) locateFolder(ctx context.Context, loc string) (compute.Store, string, error) {
	return s.folder(ctx, loc, func() error {
		fi, err := os.Stat(loc)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return fmt.Errorf("folder %s does not exist", loc)
		case errors.Is(err, syscall.ENOTDIR) || err == nil && !fi.IsDir():
			return fmt.Errorf("%s is not a folder", loc)
		}
		return err
	})
}

// locateOutputFolder is locateFolder for a folder to write parts into: a
// local one is made as needed, as a bucket's prefix needs nothing.
func (s *storeSet) locateOutputFolder(ctx context.Context, loc string) (compute.Store, string, error) {
	return s.folder(ctx, loc, func() error { return os.MkdirAll(loc, 0o777) })
}

// folder is locateFolder and locateOutputFolder, which check or make a
// local folder with prepare.
func (s *storeSet) folder(ctx context.Context, loc string, prepare func() error) (compute.Store, string, error) {
	scheme, bucket, key, ok := splitURL(loc)
	if !ok {
		if !strings.HasSuffix(loc, "/") {
			return nil, "", &usageError{fmt.Sprintf("%q: a folder ends with /", loc)}
		}
		if err := prepare(); err != nil {
			return nil, "", err
		}
		store, err := s.localFiles()
		return store, loc, err
	}
	if bucket == "" || key != "" && !strings.HasSuffix(key, "/") {
		return nil, "", &usageError{fmt.Sprintf("%q: want %s://BUCKET/FOLDER/", loc, scheme)}
	}
	store, err := s.bucket(ctx, scheme, bucket)
	return store, key, err
}

// localFiles returns the store of plain paths, opened once.
func (s *storeSet) localFiles() (compute.Store, error) {
	if s.files == nil {
		files, err := local.NewStore("")
		if err != nil {
			return nil, err
		}
		s.files = files
		s.closers = append(s.closers, files.Close)
	}
	return s.files, nil
}

// uploads is how many parts of an output are uploaded at once: as many
// as ranges are read ahead, the one --connections setting.
func (s *storeSet) uploads() int {
	if s.readAhead.Connections > 0 {
		return s.readAhead.Connections
	}
	return compute.DefaultConnections
}

// partSizeOr is the bytes in each part of a cloud output, or def.
func (s *storeSet) partSizeOr(def int) int {
	if s.partSize > 0 {
		return s.partSize
	}
	return def
}

// bucket returns the store of a bucket, opened once.
func (s *storeSet) bucket(ctx context.Context, scheme, bucket string) (compute.Store, error) {
	id := scheme + "://" + bucket
	if store, ok := s.buckets[id]; ok {
		return store, nil
	}
	useFallbackRootsIfNone()
	var store compute.Store
	switch scheme {
	case "s3":
		st, err := s3.New(ctx, bucket, s3.WithUploadConcurrency(s.uploads()), s3.WithPartSize(s.partSizeOr(s3.DefaultPartSize)))
		if err != nil {
			return nil, err
		}
		store = st
	case "gs":
		st, err := gcs.New(ctx, bucket, gcs.WithUploadConcurrency(s.uploads()), gcs.WithPartSize(s.partSizeOr(gcs.DefaultPartSize)))
		if err != nil {
			return nil, err
		}
		store = st
		s.closers = append(s.closers, st.Close)
	}
	if s.buckets == nil {
		s.buckets = map[string]compute.Store{}
	}
	s.buckets[id] = store
	return store, nil
}

// splitURL splits s3://bucket/key or gs://bucket/key.
func splitURL(loc string) (scheme, bucket, key string, ok bool) {
	scheme, rest, found := strings.Cut(loc, "://")
	if !found || (scheme != "s3" && scheme != "gs") {
		return "", "", "", false
	}
	bucket, key, _ = strings.Cut(rest, "/")
	return scheme, bucket, key, true
}

// open opens a location for reading and returns its size, or -1.
func (s *storeSet) open(ctx context.Context, loc string, stdin io.Reader) (io.ReadCloser, int64, error) {
	if loc == "-" {
		return io.NopCloser(interruptible(ctx, stdin)), stdinSize(stdin), nil
	}
	store, key, err := s.locate(ctx, loc)
	if err != nil {
		return nil, 0, err
	}
	r, info, err := s.readAheadFor(store).NewReader(ctx, store, key, compute.ReadOptions{})
	if err != nil {
		return nil, 0, err
	}
	return r, info.Size, nil
}

// create starts writing a location, whose bytes are compressed as
// contentEncoding says ("" for plain); Close commits it.
func (s *storeSet) create(ctx context.Context, loc string, stdout io.Writer, contentEncoding string) (io.WriteCloser, error) {
	if loc == "-" {
		return nopWriteCloser{stdout}, nil
	}
	store, key, err := s.locate(ctx, loc)
	if err != nil {
		return nil, err
	}
	return store.NewWriter(ctx, key, compute.WriteOptions{ContentType: "text/csv", ContentEncoding: contentEncoding})
}

func (s *storeSet) close() {
	for _, c := range s.closers {
		c()
	}
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }

// isURL reports whether a location names a cloud object rather than a path.
func isURL(loc string) bool {
	_, _, _, ok := splitURL(loc)
	return ok
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
