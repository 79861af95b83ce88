package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/momentum-run/momentum/adapters/storetest/link"
	"github.com/momentum-run/momentum/compute"
)

// Linked describes a store whose server can be reached through a
// simulated link (package link), for RunReadAhead.
type Linked struct {
	// Upstream is the server's address, http://HOST:PORT.
	Upstream string
	// Open returns a store on the server through a link at url, with a
	// client of its own that retries quickly.
	Open func(t *testing.T, url string) compute.Store
	// Versioned says the store keeps a version readable after an
	// overwrite, as in Options.
	Versioned bool
	// SlowDown is how the server tells a client to back off: S3's 503
	// SlowDown, Cloud Storage's 503.
	SlowDown link.Fault
	// Prefix is put before every key.
	Prefix string
}

// The read-ahead tests read objects of a few ranges of raRange bytes,
// raConns at once.
const (
	raRange = 64 << 10
	raConns = 4
)

var readAhead = compute.ReadAhead{Connections: raConns, RangeSize: raRange, Attempts: 4}

// RunReadAhead runs compute.ReadAhead and compute.Job through a link in
// front of the store's server: exact bytes through a slow link, a reset,
// an early close, a short answer and 503s on some ranges (all resumed or
// retried, the output exact), a range that keeps failing and an object
// replaced while its ranges are in flight (the job fails and writes
// nothing, unless the store keeps the version read), and a cancel
// mid-run (every request and goroutine ends).
func RunReadAhead(t *testing.T, l Linked) {
	k := func(key string) string { return l.Prefix + key }
	t.Run("Exact", func(t *testing.T) { testRAExact(t, l, k) })
	t.Run("Faults", func(t *testing.T) { testRAFaults(t, l, k) })
	t.Run("KeepsFailing", func(t *testing.T) { testRAKeepsFailing(t, l, k) })
	t.Run("Replaced", func(t *testing.T) { testRAReplaced(t, l, k) })
	t.Run("Cancel", func(t *testing.T) { testRACancel(t, l, k) })
}

// startLink starts a link to l's server and returns a store through it.
func startLink(t *testing.T, l Linked, c link.Config) (*link.Link, compute.Store) {
	t.Helper()
	ln, err := link.Start(l.Upstream, c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln, l.Open(t, ln.URL)
}

// csvOf is about n bytes of mass,velocity rows, and their output.
func csvOf(t testing.TB, n int) (in, out []byte) {
	t.Helper()
	var b bytes.Buffer
	b.WriteString("id,mass,velocity\n")
	for i := 1; b.Len() < n; i++ {
		fmt.Fprintf(&b, "%d,%d.%d,-%d.25\n", i, i%99991, i%7, i%29989)
	}
	var o bytes.Buffer
	if _, err := compute.Transform(context.Background(), &o, bytes.NewReader(b.Bytes()), compute.Options{}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes(), o.Bytes()
}

// ranged reports whether r asks for a byte range of an object: every
// request of a ReadAhead but its first.
func ranged(r *http.Request) bool {
	return (r.Method == http.MethodGet || r.Method == http.MethodHead) && r.Header.Get("Range") != ""
}

// runJob runs a job of in to out through s, reading ahead.
func runJob(ctx context.Context, s compute.Store, in, out string) (compute.JobResult, error) {
	j := &compute.Job{Input: s, InputKey: in, ReadAhead: readAhead, Output: s, OutputKey: out}
	return j.Run(ctx)
}

func assertAbsent(t *testing.T, s compute.Store, key string) {
	t.Helper()
	if _, _, err := Get(t, s, key, compute.ReadOptions{}); !errors.Is(err, compute.ErrNotFound) {
		t.Errorf("%s: err = %v, want it absent", key, err)
	}
}

func testRAExact(t *testing.T, l Linked, k func(string) string) {
	ln, s := startLink(t, l, link.Config{Rate: 4 << 20, Latency: 2 * time.Millisecond})
	ctx := context.Background()
	for _, n := range []int{0, 1, raRange - 1, raRange, raRange + 1, 5*raRange + 3, 9*raRange - 1} {
		data := make([]byte, n)
		for i := range data {
			data[i] = byte(i*7 + i>>9)
		}
		key := k(fmt.Sprintf("readahead/exact-%d", n))
		Put(t, s, key, data)
		before := ln.Stats().Requests
		for _, o := range []compute.ReadOptions{{}, {Offset: 100, Length: int64(3 * raRange)}, {Offset: raRange + 5, Length: -1}} {
			r, info, err := readAhead.NewReader(ctx, s, key, o)
			if err != nil {
				t.Fatalf("%d bytes, %+v: %v", n, o, err)
			}
			got, err := io.ReadAll(r)
			r.Close()
			end := int64(n)
			if o.Length > 0 {
				end = min(end, o.Offset+o.Length)
			}
			want := data[min(o.Offset, end):end]
			if err != nil || !bytes.Equal(got, want) || info.Size != int64(n) {
				t.Errorf("%d bytes, %+v: read %d bytes, size %d, %v; want %d", n, o, len(got), info.Size, err, len(want))
			}
		}
		if n > 3*raRange && ln.Stats().Requests-before < 3*4 {
			t.Errorf("%d bytes read in %d requests: not in ranges", n, ln.Stats().Requests-before)
		}
	}
	in, want := csvOf(t, 7*raRange+123)
	Put(t, s, k("readahead/in.csv"), in)
	res, err := runJob(ctx, s, k("readahead/in.csv"), k("readahead/out.csv"))
	if err != nil || res.Outcome != compute.Done {
		t.Fatalf("job: %+v, %v", res, err)
	}
	if got, _, err := Get(t, s, k("readahead/out.csv"), compute.ReadOptions{}); err != nil || !bytes.Equal(got, want) {
		t.Errorf("job output: %d bytes, %v; want %d", len(got), err, len(want))
	}
}

// testRAFaults: each fault hits some ranges; they are resumed or asked
// for again, and the job's output is exact.
func testRAFaults(t *testing.T, l Linked, k func(string) string) {
	in, want := csvOf(t, 8*raRange+77)
	for _, tc := range []struct {
		name  string
		fault func(n int) link.Fault // n: the ranged request, from 1
	}{
		{"ResetMidRange", func(n int) link.Fault {
			if n == 3 || n == 5 {
				return link.ResetAfter(raRange / 3)
			}
			return link.Forward
		}},
		{"CloseMidRange", func(n int) link.Fault {
			if n == 2 {
				return link.CloseAfter(1000)
			}
			return link.Forward
		}},
		{"ShortRange", func(n int) link.Fault {
			if n == 4 {
				return link.ShortAfter(raRange / 2)
			}
			return link.Forward
		}},
		{"SlowDown", func(n int) link.Fault {
			if n%3 == 1 {
				return l.SlowDown
			}
			return link.Forward
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, s := startLink(t, l, link.Config{Rate: 8 << 20})
			key, out := k("readahead/faults-"+tc.name+".csv"), k("readahead/faults-"+tc.name+".out.csv")
			Put(t, s, key, in)
			var n atomic.Int32
			ln.SetFaults(func(r *http.Request) link.Fault {
				if !ranged(r) {
					return link.Forward
				}
				return tc.fault(int(n.Add(1)))
			})
			res, err := runJob(context.Background(), s, key, out)
			ln.SetFaults(nil)
			if err != nil || res.Outcome != compute.Done {
				t.Fatalf("job: %+v, %v", res, err)
			}
			if got, _, err := Get(t, s, out, compute.ReadOptions{}); err != nil || !bytes.Equal(got, want) {
				t.Errorf("output: %d bytes, %v; want %d", len(got), err, len(want))
			}
			if ln.Stats().Faults == 0 {
				t.Error("no fault was injected")
			}
		})
	}
}

// testRAKeepsFailing: a range answered 503 every time fails the job,
// which writes nothing, and says the failure is transient.
func testRAKeepsFailing(t *testing.T, l Linked, k func(string) string) {
	ln, s := startLink(t, l, link.Config{})
	in, _ := csvOf(t, 6*raRange)
	key, out := k("readahead/failing.csv"), k("readahead/failing.out.csv")
	Put(t, s, key, in)
	ln.SetFaults(func(r *http.Request) link.Fault {
		if ranged(r) && strings.HasPrefix(r.Header.Get("Range"), "bytes="+strconv.Itoa(3*raRange)+"-") {
			return l.SlowDown
		}
		return link.Forward
	})
	res, err := runJob(context.Background(), s, key, out)
	ln.SetFaults(nil)
	if !errors.Is(err, compute.ErrTransient) || res.Outcome != "" {
		t.Fatalf("job: %+v, %v; want a transient failure", res, err)
	}
	assertAbsent(t, s, out)
}

// testRAReplaced: the input is overwritten while its ranges are in
// flight. A store that keeps versions still serves the version read, so
// the output is that version's; otherwise the job fails and writes
// nothing. Never a mix.
func testRAReplaced(t *testing.T, l Linked, k func(string) string) {
	ln, s := startLink(t, l, link.Config{Rate: 8 << 20})
	in, want := csvOf(t, 8*raRange)
	other, _ := csvOf(t, 8*raRange+raRange/2)
	other = bytes.ReplaceAll(other, []byte(",-"), []byte(",+"))
	key, out := k("readahead/replaced.csv"), k("readahead/replaced.out.csv")
	Put(t, s, key, in)
	var n atomic.Int32
	var once sync.Once
	ln.SetFaults(func(r *http.Request) link.Fault {
		if ranged(r) && n.Add(1) == 3 {
			once.Do(func() { Put(t, s, key, other) })
		}
		return link.Forward
	})
	res, err := runJob(context.Background(), s, key, out)
	ln.SetFaults(nil)
	if n.Load() < 3 {
		t.Fatalf("only %d ranged requests: the object was not replaced mid-read", n.Load())
	}
	if l.Versioned {
		if err != nil || res.Outcome != compute.Done {
			t.Fatalf("job: %+v, %v; want the version first read", res, err)
		}
		if got, _, err := Get(t, s, out, compute.ReadOptions{}); err != nil || !bytes.Equal(got, want) {
			t.Errorf("output: %d bytes, %v; want the first version's %d", len(got), err, len(want))
		}
		return
	}
	if !errors.Is(err, compute.ErrNotFound) || res.Outcome != "" {
		t.Fatalf("job: %+v, %v; want a failure: the version read is gone", res, err)
	}
	assertAbsent(t, s, out)
}

// testRACancel cancels a job while its ranges are in flight: every
// request ends, at the link too, and so does every goroutine of the
// reader; nothing is written.
func testRACancel(t *testing.T, l Linked, k func(string) string) {
	ln, s := startLink(t, l, link.Config{Rate: 256 << 10}) // a range takes a quarter of a second
	in, _ := csvOf(t, 16*raRange)
	key, out := k("readahead/cancel.csv"), k("readahead/cancel.out.csv")
	_, direct := startLink(t, l, link.Config{}) // the upload at the slow rate would take 4 s
	Put(t, direct, key, in)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := runJob(ctx, s, key, out)
		done <- err
	}()
	// Cancel once the kernel has had a range (the reader has started
	// ranges after the first ones, so the output is open) and ranges are
	// in flight.
	deadline := time.Now().Add(20 * time.Second)
	for st := ln.Stats(); st.Requests < raConns+3 || st.Active < 2; st = ln.Stats() {
		if time.Now().After(deadline) {
			t.Fatalf("the ranges never were in flight: %+v", st)
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("job: %v, want context.Canceled", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the job did not stop")
	}
	for ln.Stats().Active != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("requests still in flight after the cancel: %+v", ln.Stats())
		}
		time.Sleep(time.Millisecond)
	}
	for {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		if !strings.Contains(stacks, "compute.(*rangeReader)") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("goroutines of the reader left:\n%s", stacks)
		}
		time.Sleep(time.Millisecond)
	}
	assertAbsent(t, s, out)
}
