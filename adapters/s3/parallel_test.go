package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/momentum-run/momentum/compute"
)

// TestPartSizeAt checks the part size schedule on its own: sizes never
// shrink, stay within S3's limits, and MaxParts parts hold S3's largest
// object from any first size.
func TestPartSizeAt(t *testing.T) {
	for _, base := range []int{MinPartSize, MinPartSize + 1, DefaultPartSize, 16 << 20, 100 << 20, 1 << 30, MaxPartSize} {
		var total int64
		prev := 0
		for n := 1; n <= MaxParts; n++ {
			size := PartSizeAt(base, n)
			if size < prev || size < base || size > MaxPartSize {
				t.Fatalf("base %d: part %d is %d bytes after %d", base, n, size, prev)
			}
			prev = size
			total += int64(size)
		}
		if total < MaxObjectSize {
			t.Errorf("base %d: %d parts hold %d bytes, want at least %d", base, MaxParts, total, int64(MaxObjectSize))
		}
	}
	for _, c := range []struct{ n, want int }{
		{1, 8 << 20}, {2000, 8 << 20}, {2001, 16 << 20}, {2800, 16 << 20}, {2801, 32 << 20},
		{4400, 64 << 20}, {4401, 128 << 20}, {8801, 4 << 30}, {9601, MaxPartSize}, {MaxParts, MaxPartSize},
	} {
		if got := PartSizeAt(DefaultPartSize, c.n); got != c.want {
			t.Errorf("PartSizeAt(8 MiB, %d) = %d, want %d", c.n, got, c.want)
		}
	}
	// Where the parts have grown, given as the bytes before the first part
	// of each size.
	var before int64
	for n := 1; n <= 4401; n++ {
		if n > 1 && PartSizeAt(DefaultPartSize, n) != PartSizeAt(DefaultPartSize, n-1) {
			t.Logf("%4d MiB parts from %.1f GiB", PartSizeAt(DefaultPartSize, n)>>20, float64(before)/(1<<30))
		}
		before += int64(PartSizeAt(DefaultPartSize, n))
	}
}

// partSizes records the size of every part uploaded, by part number, and
// can hold the first parts until some are in flight at once.
type partSizes struct {
	mu    sync.Mutex
	sizes map[int]int64
	hold  int           // parts held until this many have come
	came  int           // parts come so far
	all   chan struct{} // closed when hold parts have come
}

func newPartSizes(hold int) *partSizes {
	return &partSizes{sizes: map[int]int64{}, hold: hold, all: make(chan struct{})}
}

func (p *partSizes) fault(w http.ResponseWriter, r *http.Request, op string, _ int, next http.Handler) bool {
	if op != "UploadPart" {
		return false
	}
	n, _ := strconv.Atoi(r.URL.Query().Get("partNumber"))
	p.mu.Lock()
	p.sizes[n] = r.ContentLength
	p.came++
	if p.came == p.hold {
		close(p.all)
	}
	held := p.came <= p.hold
	p.mu.Unlock()
	if held {
		select {
		case <-p.all:
		case <-time.After(10 * time.Second): // the test fails on the peak
		}
	}
	return false
}

// TestParallelUpload writes an object through many parts, several at
// once and growing as the schedule says, and reads it back byte for byte.
func TestParallelUpload(t *testing.T) {
	srv := newServer(t, false)
	st := srv.store(WithPartSize(MinPartSize), WithUploadConcurrency(4))
	st.growAfter, st.growEvery = 3, 2 // 5, 5, 5, 10, 10, 20, 20 MiB, ...
	sizes := newPartSizes(4)
	srv.setFault(sizes.fault)
	data := randBytes(72<<20+3, 9)
	if err := put(context.Background(), st, "parallel/a", data, 1<<20, compute.WriteOptions{ContentType: "text/csv"}); err != nil {
		t.Fatal(err)
	}
	srv.setFault(nil)
	got, info, err := get(t, st, "parallel/a", compute.ReadOptions{})
	if err != nil || !bytes.Equal(got, data) || info.Size != int64(len(data)) {
		t.Fatalf("read back %d bytes (size %d), %v; want %d", len(got), info.Size, err, len(data))
	}
	// 5+5+5+10+10+20 MiB, then the last 17 MiB and 3 bytes.
	const M = 1 << 20
	want := map[int]int64{1: 5 * M, 2: 5 * M, 3: 5 * M, 4: 10 * M, 5: 10 * M, 6: 20 * M, 7: 17*M + 3}
	sizes.mu.Lock()
	if fmt.Sprint(sizes.sizes) != fmt.Sprint(want) {
		t.Errorf("part sizes %v, want %v", sizes.sizes, want)
	}
	sizes.mu.Unlock()
	srv.mu.Lock()
	peak := srv.peak["UploadPart"]
	srv.mu.Unlock()
	if peak != 4 {
		t.Errorf("%d parts uploaded at once, want 4", peak)
	}
	srv.assertNoUploads(t)
}

// hang answers no UploadPart until the client gives up on it, and tells
// started of each.
func hang(started chan<- int) faultFunc {
	return func(w http.ResponseWriter, r *http.Request, op string, _ int, _ http.Handler) bool {
		if op != "UploadPart" {
			return false
		}
		io.Copy(io.Discard, r.Body)
		n, _ := strconv.Atoi(r.URL.Query().Get("partNumber"))
		started <- n
		<-r.Context().Done()
		return true
	}
}

// TestParallelCancel cancels a writer with all its parts in flight:
// Write and Close fail, and no object and no upload is left.
func TestParallelCancel(t *testing.T) {
	const inFlight = 8
	srv := newServer(t, false)
	st := srv.store(WithPartSize(MinPartSize), WithUploadConcurrency(inFlight))
	started := make(chan int, 2*inFlight)
	srv.setFault(hang(started))
	ctx, cancel := context.WithCancel(context.Background())
	w, err := st.NewWriter(ctx, "parallel/cancel", compute.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	written := make(chan error)
	go func() {
		_, err := w.Write(randBytes((inFlight+2)*MinPartSize, 10))
		written <- err
	}()
	for range inFlight {
		<-started
	}
	cancel()
	if err := <-written; !errors.Is(err, context.Canceled) {
		t.Errorf("Write: err = %v, want context.Canceled", err)
	}
	if err := w.Close(); !errors.Is(err, context.Canceled) {
		t.Errorf("Close: err = %v, want context.Canceled", err)
	}
	if n := len(started); n > 0 {
		t.Errorf("%d parts more than %d were sent", n, inFlight)
	}
	srv.setFault(nil)
	assertNotFound(t, st, "parallel/cancel")
	srv.assertNoUploads(t)
}

// TestParallelPartFails fails one part while the others hang: the writer
// stops them all and aborts the upload, and Close returns the part's
// failure.
func TestParallelPartFails(t *testing.T) {
	srv := newServer(t, false)
	st := srv.store(WithPartSize(MinPartSize), WithUploadConcurrency(8))
	started := make(chan int, 16)
	hung := hang(started)
	srv.setFault(func(w http.ResponseWriter, r *http.Request, op string, n int, next http.Handler) bool {
		if op == "UploadPart" && r.URL.Query().Get("partNumber") == "3" {
			writeError(w, r, http.StatusForbidden, "AccessDenied", "Access Denied")
			return true
		}
		return hung(w, r, op, n, next)
	})
	err := put(context.Background(), st, "parallel/fails", randBytes(12*MinPartSize, 11), 1<<20, compute.WriteOptions{})
	if !errors.Is(err, compute.ErrPermission) || !strings.Contains(err.Error(), "part 3") {
		t.Errorf("err = %v, want ErrPermission for part 3", err)
	}
	srv.setFault(nil)
	if n := srv.count("AbortMultipartUpload"); n != 1 {
		t.Errorf("%d AbortMultipartUpload requests, want 1", n)
	}
	assertNotFound(t, st, "parallel/fails")
	srv.assertNoUploads(t)
}

// TestParallelCreateOnly loses a create-only write of many parts to an
// object already there: ErrExists, the object as it was, no upload left.
func TestParallelCreateOnly(t *testing.T) {
	srv := newServer(t, false)
	st := srv.store(WithPartSize(MinPartSize), WithUploadConcurrency(8))
	mustPut(t, st, "parallel/exists", []byte("first"))
	err := put(context.Background(), st, "parallel/exists", randBytes(10*MinPartSize+1, 12), 1<<20, compute.WriteOptions{IfNotExists: true})
	if !errors.Is(err, compute.ErrExists) {
		t.Errorf("err = %v, want ErrExists", err)
	}
	if got, _, err := get(t, st, "parallel/exists", compute.ReadOptions{}); err != nil || string(got) != "first" {
		t.Errorf("object is now %d bytes, %v", len(got), err)
	}
	if n := srv.count("UploadPart"); n != 11 {
		t.Errorf("%d parts uploaded, want 11", n)
	}
	srv.assertNoUploads(t)
}

// TestWriterOnDoneContext: a writer made with a context already done
// fails its writes and leaves nothing, without racing its own set-up.
func TestWriterOnDoneContext(t *testing.T) {
	srv := newServer(t, false)
	st := srv.store()
	for range 20 {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		w, err := st.NewWriter(ctx, "done/x", compute.WriteOptions{})
		if err != nil {
			continue
		}
		w.Write([]byte("x"))
		if err := w.Close(); err == nil {
			t.Fatal("Close on a done context succeeded")
		}
	}
	srv.assertNoUploads(t)
}
