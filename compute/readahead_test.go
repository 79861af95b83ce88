package compute

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"
)

// rangeStore is a Store over one object in memory, for the logic of the
// ranged reader: it keeps versions as S3 or Cloud Storage do, records
// the requests made of it, and lets a test choose a fault for each.
type rangeStore struct {
	mu       sync.Mutex
	data     []byte
	version  int  // the current version; replace bumps it
	versions bool // reports Version; otherwise only an ETag
	noPin    bool // reports neither
	noSize   bool // reports no size
	requests []ReadOptions
	fault    func(n int, o ReadOptions) storeFault // n from 1
	active   int                                   // readers open
	inFlight int                                   // readers open and not yet at their end
	peak     int
}

// A storeFault is what one request of a rangeStore does.
type storeFault struct {
	open  error // fail the request with this
	after int   // with err or eof: bytes given first
	err   error // fail the body after `after` bytes
	eof   bool  // end the body early, at `after`, without an error
	block bool  // after `after` bytes, block until ctx is done
	hook  func()
}

func newRangeStore(data []byte) *rangeStore {
	return &rangeStore{data: data, version: 1, versions: true}
}

func (s *rangeStore) replace(data []byte) {
	s.mu.Lock()
	s.data, s.version = data, s.version+1
	s.mu.Unlock()
}

func (s *rangeStore) NewReader(ctx context.Context, key string, o ReadOptions) (io.ReadCloser, ObjectInfo, error) {
	s.mu.Lock()
	s.requests = append(s.requests, o)
	n := len(s.requests)
	f := storeFault{}
	if s.fault != nil {
		f = s.fault(n, o)
	}
	s.mu.Unlock()
	if f.hook != nil {
		f.hook()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if f.open != nil {
		return nil, ObjectInfo{Size: -1}, f.open
	}
	v, etag := fmt.Sprint(s.version), fmt.Sprintf(`"e%d"`, s.version)
	if o.Version != "" && o.Version != v || o.ETag != "" && o.ETag != etag {
		return nil, ObjectInfo{Size: -1}, &StoreError{Op: "read", URL: "mem://" + key, Kind: ErrNotFound, Err: errors.New("no such version")}
	}
	info := ObjectInfo{Size: int64(len(s.data))}
	switch {
	case s.noPin:
	case s.versions:
		info.Version = v
	default:
		info.ETag = etag
	}
	if s.noSize {
		info.Size = -1
	}
	end := int64(len(s.data))
	if o.Length > 0 {
		end = min(end, o.Offset+o.Length)
	}
	body := s.data[min(o.Offset, end):end]
	s.active++
	s.inFlight++
	s.peak = max(s.peak, s.inFlight)
	return &rangeBody{s: s, ctx: ctx, r: bytes.NewReader(body), f: f}, info, nil
}

func (s *rangeStore) NewWriter(context.Context, string, WriteOptions) (io.WriteCloser, error) {
	return nil, errors.New("read only")
}

func (s *rangeStore) stats() (requests []ReadOptions, active, peak int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]ReadOptions(nil), s.requests...), s.active, s.peak
}

type rangeBody struct {
	s      *rangeStore
	ctx    context.Context
	r      *bytes.Reader
	f      storeFault
	got    int
	ended  bool
	closed bool
}

func (b *rangeBody) Read(p []byte) (int, error) {
	if b.f.err != nil || b.f.eof || b.f.block {
		if b.got >= b.f.after {
			switch {
			case b.f.block:
				<-b.ctx.Done()
				return 0, b.ctx.Err()
			case b.f.eof:
				b.end()
				return 0, io.EOF
			}
			return 0, b.f.err
		}
		p = p[:min(len(p), b.f.after-b.got)]
	}
	n, err := b.r.Read(p)
	b.got += n
	if err == io.EOF {
		b.end()
	}
	return n, err
}

func (b *rangeBody) end() {
	b.s.mu.Lock()
	if !b.ended {
		b.ended = true
		b.s.inFlight--
	}
	b.s.mu.Unlock()
}

func (b *rangeBody) Close() error {
	b.end()
	b.s.mu.Lock()
	defer b.s.mu.Unlock()
	if !b.closed {
		b.closed = true
		b.s.active--
	}
	return nil
}

func testData(n int) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{3}).Read(b)
	return b
}

func fastRetries(t *testing.T) {
	old := retryBase
	retryBase = time.Millisecond
	t.Cleanup(func() { retryBase = old })
}

// readAll reads a ReadAhead's stream whole, then closes it.
func readAll(t *testing.T, ra ReadAhead, s Store, o ReadOptions) ([]byte, ObjectInfo, error) {
	t.Helper()
	r, info, err := ra.NewReader(context.Background(), s, "k", o)
	if err != nil {
		return nil, info, err
	}
	b, err := io.ReadAll(r)
	r.Close()
	return b, info, err
}

// assertNoRangeGoroutines fails the test if a goroutine of a ranged
// reader is still there a little after every reader was closed.
func assertNoRangeGoroutines(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		if !strings.Contains(stacks, "compute.(*rangeReader)") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("goroutines of a ranged reader left:\n%s", stacks)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestReadAheadExact(t *testing.T) {
	data := testData(1000)
	for _, tc := range []struct {
		conns, rangeSize int
		off, n           int64
	}{
		{2, 100, 0, -1},
		{2, 100, 0, 0},
		{3, 100, 0, 1000},
		{4, 7, 0, -1}, // many ranges, a short last one
		{8, 333, 0, -1},
		{16, 100, 0, -1}, // more connections than ranges
		{4, 100, 50, -1},
		{4, 100, 50, 251},
		{4, 100, 999, -1},
		{4, 100, 1000, -1},
		{4, 100, 1200, 10},
		{4, 100, 200, 100}, // one range: one request
		{4, 999, 0, -1},
		{4, 1000, 0, -1}, // fits one range
		{4, 1001, 0, -1},
	} {
		t.Run(fmt.Sprintf("%d×%d@%d+%d", tc.conns, tc.rangeSize, tc.off, tc.n), func(t *testing.T) {
			s := newRangeStore(data)
			got, info, err := readAll(t, ReadAhead{Connections: tc.conns, RangeSize: tc.rangeSize}, s, ReadOptions{Offset: tc.off, Length: tc.n})
			end := int64(len(data))
			if tc.n > 0 {
				end = min(end, tc.off+tc.n)
			}
			want := data[min(tc.off, end):end]
			if err != nil || !bytes.Equal(got, want) || info.Size != 1000 || info.Version != "1" {
				t.Fatalf("read %d bytes, info %+v, %v; want %d bytes", len(got), info, err, len(want))
			}
			reqs, active, peak := s.stats()
			if active != 0 {
				t.Errorf("%d readers left open", active)
			}
			if peak > max(tc.conns, 1) {
				t.Errorf("%d requests in flight at once, want at most %d", peak, tc.conns)
			}
			if reqs[0] != (ReadOptions{Offset: tc.off, Length: tc.n}) {
				t.Errorf("first request %+v, want the caller's options", reqs[0])
			}
			span := len(want)
			wantReqs := 1
			if span > tc.rangeSize {
				wantReqs = (span + tc.rangeSize - 1) / tc.rangeSize
			}
			if len(reqs) != wantReqs {
				t.Errorf("%d requests, want %d", len(reqs), wantReqs)
			}
			for _, o := range reqs[1:] {
				if o.Version != "1" || o.Length <= 0 || o.Length > int64(tc.rangeSize) || (o.Offset-tc.off)%int64(tc.rangeSize) != 0 {
					t.Errorf("range request %+v: want version 1, a range within one of %d bytes", o, tc.rangeSize)
				}
			}
		})
	}
	assertNoRangeGoroutines(t)
}

// TestReadAheadOneStream: one connection, an object of unknown size, or
// a store with neither versions nor ETags is read as one plain stream,
// the very reader the store gave.
func TestReadAheadOneStream(t *testing.T) {
	data := testData(1000)
	for _, tc := range []struct {
		name  string
		ra    ReadAhead
		store func(*rangeStore)
	}{
		{"zero value", ReadAhead{}, nil},
		{"one connection", ReadAhead{Connections: 1, RangeSize: 10}, nil},
		{"size unknown", ReadAhead{Connections: 4, RangeSize: 10}, func(s *rangeStore) { s.noSize = true }},
		{"nothing to pin", ReadAhead{Connections: 4, RangeSize: 10}, func(s *rangeStore) { s.noPin = true }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newRangeStore(data)
			if tc.store != nil {
				tc.store(s)
			}
			r, _, err := tc.ra.NewReader(context.Background(), s, "k", ReadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			switch r := r.(type) {
			case *rangeBody:
			case *plainStream:
				if _, ok := r.ReadCloser.(*rangeBody); tc.ra.Connections <= 1 || !ok {
					t.Fatalf("reader %T, want the store's own", r.ReadCloser)
				}
			default:
				t.Fatalf("reader %T, want the store's own", r)
			}
			got, err := io.ReadAll(r)
			r.Close()
			if reqs, _, _ := s.stats(); err != nil || !bytes.Equal(got, data) || len(reqs) != 1 {
				t.Fatalf("%d bytes in %d requests, %v", len(got), len(reqs), err)
			}
		})
	}
	// The first request's error is the store's.
	s := newRangeStore(data)
	s.fault = func(int, ReadOptions) storeFault { return storeFault{open: ErrPermission} }
	if _, _, err := (ReadAhead{Connections: 4}).NewReader(context.Background(), s, "k", ReadOptions{}); err != ErrPermission {
		t.Errorf("err = %v, want the store's", err)
	}
}

// TestReadAheadETag: a store without versions is pinned to the ETag, and
// so is a read that names one.
func TestReadAheadETag(t *testing.T) {
	data := testData(1000)
	s := newRangeStore(data)
	s.versions = false
	got, _, err := readAll(t, ReadAhead{Connections: 3, RangeSize: 100}, s, ReadOptions{})
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("%d bytes, %v", len(got), err)
	}
	reqs, _, _ := s.stats()
	for _, o := range reqs[1:] {
		if o.ETag != `"e1"` || o.Version != "" {
			t.Errorf("request %+v, want pinned to ETag \"e1\"", o)
		}
	}
	// A version named by the caller wins over the ETag.
	s = newRangeStore(data)
	if got, _, err := readAll(t, ReadAhead{Connections: 3, RangeSize: 100}, s, ReadOptions{Version: "1", ETag: `"x"`}); err == nil {
		t.Fatalf("read %d bytes despite a wrong ETag", len(got))
	}
}

func TestReadAheadFaults(t *testing.T) {
	fastRetries(t)
	data := testData(1000)
	transient := &StoreError{Op: "read", URL: "mem://k", Kind: ErrTransient, Err: errors.New("503 SlowDown")}
	reset := &StoreError{Op: "read", URL: "mem://k", Kind: ErrTransient, Err: errors.New("connection reset by peer")}
	type want struct {
		err      error // nil: the exact bytes
		requests int   // 0: do not check
		resumeAt int64 // a request must start here, if not 0
	}
	var store *rangeStore
	for _, tc := range []struct {
		name  string
		fault func(n int, o ReadOptions) storeFault
		want  want
	}{
		{"reset mid-range", func(n int, o ReadOptions) storeFault {
			if o.Offset == 300 && o.Length == 100 {
				return storeFault{after: 37, err: reset}
			}
			return storeFault{}
		}, want{resumeAt: 337, requests: 11}},
		{"the first stream cut", func(n int, o ReadOptions) storeFault {
			if n == 1 {
				return storeFault{after: 20, err: fmt.Errorf("body: %w", io.ErrUnexpectedEOF)}
			}
			return storeFault{}
		}, want{resumeAt: 20, requests: 11}},
		{"short answer", func(n int, o ReadOptions) storeFault {
			if o.Offset == 500 {
				return storeFault{after: 10, eof: true}
			}
			return storeFault{}
		}, want{resumeAt: 510, requests: 11}},
		{"503 twice", func(n int, o ReadOptions) storeFault {
			if o.Offset == 700 && n < 12 {
				return storeFault{open: transient}
			}
			return storeFault{}
		}, want{}},
		{"every range once 503", func() func(int, ReadOptions) storeFault {
			seen := map[int64]bool{}
			return func(n int, o ReadOptions) storeFault {
				if n > 1 && !seen[o.Offset] {
					seen[o.Offset] = true
					return storeFault{open: transient}
				}
				return storeFault{}
			}
		}(), want{requests: 19}},
		{"a range that keeps failing", func(n int, o ReadOptions) storeFault {
			if o.Offset == 800 {
				return storeFault{open: transient}
			}
			return storeFault{}
		}, want{err: ErrTransient}},
		{"a range that keeps breaking", func(n int, o ReadOptions) storeFault {
			if o.Offset >= 600 && o.Offset < 700 {
				return storeFault{after: 1, err: reset}
			}
			return storeFault{}
		}, want{err: ErrTransient}},
		{"permission lost", func(n int, o ReadOptions) storeFault {
			if o.Offset == 400 {
				return storeFault{open: &StoreError{Op: "read", URL: "mem://k", Kind: ErrPermission, Err: errors.New("403")}}
			}
			return storeFault{}
		}, want{err: ErrPermission, requests: 0}},
		{"replaced mid-read", func(n int, o ReadOptions) storeFault {
			if o.Offset == 300 {
				return storeFault{hook: func() { store.replace(testData(1000)[:999]) }}
			}
			return storeFault{}
		}, want{err: ErrNotFound}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store = newRangeStore(data)
			store.fault = tc.fault
			got, _, err := readAll(t, ReadAhead{Connections: 4, RangeSize: 100, Attempts: 3}, store, ReadOptions{})
			reqs, active, _ := store.stats()
			if active != 0 {
				t.Errorf("%d readers left open", active)
			}
			if tc.want.err != nil {
				if !errors.Is(err, tc.want.err) {
					t.Fatalf("err = %v, want %v", err, tc.want.err)
				}
				if len(got) >= len(data) {
					t.Errorf("read all %d bytes despite the failure", len(got))
				}
				if !bytes.Equal(got, data[:len(got)]) {
					t.Errorf("the bytes before the failure differ")
				}
				return
			}
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("read %d bytes, %v", len(got), err)
			}
			if tc.want.requests != 0 && len(reqs) != tc.want.requests {
				t.Errorf("%d requests, want %d: %+v", len(reqs), tc.want.requests, reqs)
			}
			if tc.want.resumeAt != 0 {
				found := false
				for _, o := range reqs {
					found = found || o.Offset == tc.want.resumeAt && o.Version == "1"
				}
				if !found {
					t.Errorf("no request resumed at %d: %+v", tc.want.resumeAt, reqs)
				}
			}
		})
	}
	assertNoRangeGoroutines(t)
}

// TestReadAheadAttempts: a range is asked for Attempts times, no more.
func TestReadAheadAttempts(t *testing.T) {
	fastRetries(t)
	s := newRangeStore(testData(1000))
	s.fault = func(n int, o ReadOptions) storeFault {
		if o.Offset == 200 {
			return storeFault{open: &StoreError{Op: "read", URL: "mem://k", Kind: ErrTransient, Err: errors.New("503")}}
		}
		return storeFault{}
	}
	_, _, err := readAll(t, ReadAhead{Connections: 2, RangeSize: 100, Attempts: 4}, s, ReadOptions{})
	if !errors.Is(err, ErrTransient) || !strings.Contains(err.Error(), "4 attempts") {
		t.Fatalf("err = %v", err)
	}
	reqs, _, _ := s.stats()
	n := 0
	for _, o := range reqs {
		if o.Offset == 200 {
			n++
		}
	}
	if n != 4 {
		t.Errorf("range 200 asked for %d times, want 4", n)
	}
}

// TestReadAheadFailsFast: a range that fails for good stops the read,
// though the consumer is still at an earlier range whose bytes are slow
// to come.
func TestReadAheadFailsFast(t *testing.T) {
	s := newRangeStore(testData(1000))
	s.fault = func(n int, o ReadOptions) storeFault {
		switch {
		case n == 1:
			return storeFault{after: 10, block: true} // the first range never ends
		case o.Offset == 300:
			return storeFault{open: &StoreError{Op: "read", URL: "mem://k", Kind: ErrNotFound, Err: errors.New("gone")}}
		}
		return storeFault{}
	}
	_, _, err := readAll(t, ReadAhead{Connections: 4, RangeSize: 100}, s, ReadOptions{})
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
	if _, active, _ := s.stats(); active != 0 {
		t.Errorf("%d readers left open", active)
	}
	assertNoRangeGoroutines(t)
}

// TestReadAheadCancel: cancelling the context, or closing the reader
// midway, stops every request and every goroutine.
func TestReadAheadCancel(t *testing.T) {
	for _, how := range []string{"cancel", "close"} {
		t.Run(how, func(t *testing.T) {
			s := newRangeStore(testData(1000))
			s.fault = func(n int, o ReadOptions) storeFault {
				if o.Offset >= 200 {
					return storeFault{after: 5, block: true}
				}
				return storeFault{}
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			r, _, err := ReadAhead{Connections: 4, RangeSize: 100}.NewReader(ctx, s, "k", ReadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(r, make([]byte, 150)); err != nil {
				t.Fatal(err)
			}
			if how == "cancel" {
				cancel()
				if _, err := io.ReadAll(r); !errors.Is(err, context.Canceled) {
					t.Errorf("read after cancel: %v, want context.Canceled", err)
				}
			}
			r.Close()
			if _, active, _ := s.stats(); active != 0 {
				t.Errorf("%d requests left open", active)
			}
			if _, err := r.Read(make([]byte, 1)); err == nil {
				t.Error("read after Close succeeded")
			}
			assertNoRangeGoroutines(t)
		})
	}
}

// TestReadAheadReads checks the stream with testing/iotest's reader
// tests, and through one-byte and half reads.
func TestReadAheadReads(t *testing.T) {
	data := testData(5000)
	ra := ReadAhead{Connections: 3, RangeSize: 333}
	for name, wrap := range map[string]func(io.Reader) io.Reader{
		"plain": func(r io.Reader) io.Reader { return r }, "OneByte": iotest.OneByteReader, "Half": iotest.HalfReader,
	} {
		r, _, err := ra.NewReader(context.Background(), newRangeStore(data), "k", ReadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if name == "plain" {
			if err := iotest.TestReader(r, data); err != nil {
				t.Error(err)
			}
		} else if got, err := io.ReadAll(wrap(r)); err != nil || !bytes.Equal(got, data) {
			t.Errorf("%s: %d bytes, %v", name, len(got), err)
		}
		r.Close()
	}
}

// TestReadAheadRandom reads random spans of random objects in random
// ranges, with random faults that a retry fixes, and gets the exact
// bytes each time.
func TestReadAheadRandom(t *testing.T) {
	fastRetries(t)
	for trial := range 200 {
		rng := rand.New(rand.NewPCG(uint64(trial), 5))
		data := testData(rng.IntN(3000))
		s := newRangeStore(data)
		s.versions = rng.IntN(2) == 0
		var mu sync.Mutex
		s.fault = func(n int, o ReadOptions) storeFault {
			mu.Lock()
			defer mu.Unlock()
			switch rng.IntN(8) {
			case 0:
				return storeFault{open: &StoreError{Op: "read", URL: "mem://k", Kind: ErrTransient, Err: errors.New("503")}}
			case 1:
				return storeFault{after: rng.IntN(50), err: fmt.Errorf("reset: %w", io.ErrUnexpectedEOF)}
			case 2:
				return storeFault{after: rng.IntN(50), eof: true}
			}
			return storeFault{}
		}
		off := int64(rng.IntN(len(data) + 2))
		n := int64(rng.IntN(len(data)+2)) - 1
		ra := ReadAhead{Connections: 1 + rng.IntN(6), RangeSize: 1 + rng.IntN(400), Attempts: 1000}
		r, _, err := ra.NewReader(context.Background(), s, "k", ReadOptions{Offset: off, Length: n})
		if err != nil {
			// The first request is the caller's, not retried: a fault
			// there is the caller's to see.
			continue
		}
		got, err := io.ReadAll(r)
		r.Close()
		end := int64(len(data))
		if n > 0 {
			end = min(end, off+n)
		}
		want := data[min(off, end):end]
		if ra.Connections <= 1 || len(want) <= ra.RangeSize {
			// One plain stream: its faults are the caller's to see (a
			// real store fails a short body; this one may just end).
			if !bytes.Equal(got, want[:min(len(got), len(want))]) {
				t.Fatalf("trial %d: one stream read wrong bytes", trial)
			}
			continue
		}
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("trial %d (%+v, %d bytes at %d+%d): read %d bytes, %v; want %d", trial, ra, len(data), off, n, len(got), err, len(want))
		}
	}
	assertNoRangeGoroutines(t)
}
