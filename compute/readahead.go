package compute

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"time"
)

// Defaults of a ReadAhead.
const (
	DefaultConnections = 8       // ranged requests in flight
	DefaultRangeSize   = 8 << 20 // bytes per ranged request
	DefaultAttempts    = 5       // requests for one range before the read fails
)

// A ReadAhead reads an object of a Store as several ranged requests at
// once, handed on in order as one stream. Object stores serve each
// connection at a bounded rate, so one stream reads a large object at a
// fraction of what the machine's network can carry; Connections streams
// carry about Connections times as much.
//
// The zero value reads one plain stream, as Store.NewReader does.
type ReadAhead struct {
	// Connections is how many ranged requests may be in flight at once,
	// and so how many buffers of RangeSize bytes a reader holds; 0 or 1
	// reads one plain stream.
	Connections int
	// RangeSize is the bytes of each ranged request; 0 means
	// DefaultRangeSize.
	RangeSize int
	// Attempts bounds the requests made for one range; 0 means
	// DefaultAttempts.
	Attempts int
}

// retryBase is the wait before a range's second request; it doubles with
// each further one, up to retryMax, with jitter.
var (
	retryBase = 50 * time.Millisecond
	retryMax  = 2 * time.Second
)

// errClosed is the error of a read after Close.
var errClosed = errors.New("compute: read after Close")

// NewReader opens the object at key in s, or the range of it that o
// selects, for one streaming read, and returns what s.NewReader returns
// for o. The first request is s.NewReader's own, exactly as without a
// ReadAhead. When its answer gives the object's size, more than one
// range of bytes is to be read, and there is a version or an ETag to pin
// the reads to (o's, or the answer's), the rest is read in ranges of
// RangeSize bytes, Connections requests at a time, each pinned to that
// version (or ETag): an object replaced mid-read fails the read rather
// than mix two versions. The first request's stream serves the first
// range. Otherwise (a small object, a size unknown as for an object
// served decompressed, a store without versions or ETags) that one
// stream is the read.
//
// A range cut short (a connection reset, a body with fewer bytes than
// asked) is resumed from where it stopped, and one that fails with
// ErrTransient (such as S3's 503 SlowDown) is asked for again, after a
// backoff, up to Attempts requests in all. A range that fails for good
// (too many attempts, the object gone or changed, ErrNotFound) fails the
// read at once, wherever the consumer is: Read returns that error.
//
// The reader holds Connections buffers of RangeSize bytes, made when it
// opens and reused. Close, or the end of ctx, stops every request; Close
// returns once they have all ended. The reader is not safe for
// concurrent use.
func (ra ReadAhead) NewReader(ctx context.Context, s Store, key string, o ReadOptions) (io.ReadCloser, ObjectInfo, error) {
	if ra.Connections <= 1 {
		return s.NewReader(ctx, key, o)
	}
	// Every request, the first too, ends with the reader.
	ctx, cancel := context.WithCancelCause(ctx)
	rc, info, err := s.NewReader(ctx, key, o)
	if err != nil {
		cancel(nil)
		return rc, info, err
	}
	if info.Size < 0 {
		return &plainStream{rc, cancel}, info, nil
	}
	size := int64(ra.RangeSize)
	if size <= 0 {
		size = DefaultRangeSize
	}
	start, end := o.Offset, info.Size
	switch {
	case o.Length > 0:
		end = min(end, o.Offset+o.Length)
	case o.Length == 0 && o.Offset > 0:
		end = start // no bytes: only the object's description was asked for
	}
	pin, ok := pinTo(o, info)
	if !ok || end-start <= size {
		return &plainStream{rc, cancel}, info, nil
	}
	attempts := ra.Attempts
	if attempts <= 0 {
		attempts = DefaultAttempts
	}
	r := &rangeReader{store: s, key: key, pin: pin, size: info.Size, start: start, end: end,
		rangeSize: size, attempts: attempts, ctx: ctx, cancel: cancel}
	r.ranges = int((end - start + size - 1) / size)
	for i := range min(ra.Connections, r.ranges) {
		var first io.ReadCloser
		if i == 0 {
			first = rc
		}
		r.startRange(make([]byte, min(size, end-start-int64(i)*size)), first)
	}
	return r, info, nil
}

// plainStream is one plain stream of a ReadAhead: closing it ends its
// request's context.
type plainStream struct {
	io.ReadCloser
	cancel context.CancelCauseFunc
}

func (s *plainStream) Close() error {
	err := s.ReadCloser.Close()
	s.cancel(errClosed)
	return err
}

// pinTo returns the options that read the version of the object that
// the answer to o described: its version id, else its ETag.
func pinTo(o ReadOptions, info ObjectInfo) (ReadOptions, bool) {
	switch {
	case o.Version != "":
		return ReadOptions{Version: o.Version}, true
	case info.Version != "":
		return ReadOptions{Version: info.Version}, true
	case o.ETag != "":
		return ReadOptions{ETag: o.ETag}, true
	case info.ETag != "":
		return ReadOptions{ETag: info.ETag}, true
	}
	return ReadOptions{}, false
}

// rangeReader reads the bytes [start, end) of an object in ranges of
// rangeSize bytes, each fetched by a goroutine of its own into a buffer
// and handed to Read in order, as its bytes come. Read starts the next
// range with each buffer it is done with, so that at most as many ranges
// are in flight as there are buffers.
type rangeReader struct {
	ctx    context.Context // of every request: ends with Close or a failure
	cancel context.CancelCauseFunc
	wg     sync.WaitGroup // the ranges' goroutines

	store      Store
	key        string
	pin        ReadOptions
	size       int64 // the object's
	start, end int64 // the bytes read
	rangeSize  int64
	attempts   int

	ranges int     // ranges in [start, end)
	next   int     // the next range to start
	queue  []*span // the ranges started and not yet read, in order
	pos    int     // bytes of queue[0] read
	err    error   // what every Read returns from now on
	closed bool
}

// A span is one range being fetched. Its goroutine fills buf from the
// start and says how far it got; Read takes the bytes as they come.
type span struct {
	buf  []byte        // the range's bytes, of which buf[:n] are in
	more chan struct{} // a signal (buffered): n, done or err changed

	mu   sync.Mutex
	n    int
	done bool  // buf is full
	err  error // the range failed for good
}

func (s *span) publish(n int, done bool, err error) {
	s.mu.Lock()
	s.n, s.done, s.err = n, done, err
	s.mu.Unlock()
	select {
	case s.more <- struct{}{}:
	default:
	}
}

func (s *span) state() (n int, done bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n, s.done, s.err
}

// startRange starts fetching the next range into buf, from first (an
// open stream at its start, which the range then owns) or with requests
// of its own.
func (r *rangeReader) startRange(buf []byte, first io.ReadCloser) {
	i := r.next
	r.next++
	off := r.start + int64(i)*r.rangeSize
	s := &span{buf: buf[:min(r.rangeSize, r.end-off)], more: make(chan struct{}, 1)}
	r.queue = append(r.queue, s)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.fetch(off, s, first)
	}()
}

// fetch fills s with the bytes at off, reading from rc first if it is
// not nil, resuming or retrying as its errors allow. A range that fails
// for good cancels the whole read, with its error as the cause.
func (r *rangeReader) fetch(off int64, s *span, rc io.ReadCloser) {
	got, failures := 0, 0
	last := off + int64(len(s.buf)) - 1
	for {
		err := r.ctx.Err()
		if err == nil && rc == nil {
			if failures > 0 {
				err = sleep(r.ctx, backoff(failures))
			}
			if err == nil {
				rc, err = r.open(off+int64(got), int64(len(s.buf)-got))
			}
		}
		for err == nil && got < len(s.buf) {
			var n int
			n, err = rc.Read(s.buf[got:])
			got += n
			switch {
			case err == io.EOF && got < len(s.buf):
				err = fmt.Errorf("compute: read %s: bytes %d-%d: the answer ended after %d bytes: %w", r.key, off, last, got, io.ErrUnexpectedEOF)
			case err == io.EOF:
				err = nil
			}
			if n > 0 && got < len(s.buf) {
				s.publish(got, false, nil)
			}
		}
		if rc != nil {
			rc.Close()
			rc = nil
		}
		if err == nil {
			s.publish(got, true, nil)
			return
		}
		if r.ctx.Err() != nil {
			s.publish(got, false, context.Cause(r.ctx))
			return
		}
		failures++
		if !retryable(err) || failures >= r.attempts {
			if retryable(err) {
				err = fmt.Errorf("compute: read %s: bytes %d-%d: %d attempts failed: %w", r.key, off, last, failures, err)
			}
			r.cancel(err)
			s.publish(got, false, err)
			return
		}
	}
}

// open requests n bytes at off of the version read.
func (r *rangeReader) open(off, n int64) (io.ReadCloser, error) {
	o := r.pin
	o.Offset, o.Length = off, n
	return sameSize(r.key, r.size)(r.store.NewReader(r.ctx, r.key, o))
}

// sameSize returns a check of an answer to a pinned ranged read: an object
// that no longer has size bytes was replaced while being read, which fails
// the read with ErrNotFound rather than mixing two versions.
func sameSize(key string, size int64) func(io.ReadCloser, ObjectInfo, error) (io.ReadCloser, error) {
	return func(rc io.ReadCloser, info ObjectInfo, err error) (io.ReadCloser, error) {
		if err != nil {
			return nil, err
		}
		if info.Size != size {
			rc.Close()
			return nil, fmt.Errorf("compute: read %s: the object changed while being read (%d bytes, then %d): %w", key, size, info.Size, ErrNotFound)
		}
		return rc, nil
	}
}

// retryable reports whether a range that failed with err may succeed if
// asked for again: a transient failure, or an answer cut short.
func retryable(err error) bool {
	return errors.Is(err, ErrTransient) || errors.Is(err, io.ErrUnexpectedEOF)
}

// backoff is the wait before a range's request after its nth failure.
func backoff(n int) time.Duration {
	d := retryMax
	if n < 8 {
		d = min(retryBase<<(n-1), retryMax)
	}
	return d/2 + rand.N(d/2+1)
}

// sleep waits d, or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

func (r *rangeReader) Read(p []byte) (int, error) {
	for r.err == nil {
		if r.ctx.Err() != nil {
			// A range failed for good, or the caller gave up.
			r.err = context.Cause(r.ctx)
			break
		}
		if len(r.queue) == 0 {
			r.err = io.EOF
			break
		}
		s := r.queue[0]
		n, done, err := s.state()
		switch {
		case r.pos < n:
			k := copy(p, s.buf[r.pos:n])
			r.pos += k
			return k, nil
		case err != nil:
			r.err = err
		case done:
			// Read whole: its buffer takes the next range.
			r.queue, r.pos = r.queue[1:], 0
			if r.next < r.ranges {
				r.startRange(s.buf[:cap(s.buf)], nil)
			}
		default:
			select {
			case <-s.more:
			case <-r.ctx.Done():
			}
		}
	}
	return 0, r.err
}

// Close stops every request and waits for them to end.
func (r *rangeReader) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	r.cancel(errClosed)
	r.wg.Wait()
	r.queue = nil
	if r.err == nil || r.err == io.EOF {
		r.err = errClosed
	}
	return nil
}
