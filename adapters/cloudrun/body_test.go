package cloudrun

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestReadBodyBudget: a body takes its buffer from the budget as it
// arrives, not as its Content-Length announces; past the budget a read is
// errBodiesBusy (503), and release gives the bytes back.
func TestReadBodyBudget(t *testing.T) {
	const limit = 64 << 10
	mem := newBudget(limit)
	request := func(body io.Reader, length int64) *http.Request {
		r := httptest.NewRequest(http.MethodPost, "/v1/momentum", body)
		r.ContentLength = length
		return r
	}

	// A body announced at 60 KiB, 20 KiB of it arrived: it holds 32 KiB
	// (16 KiB, then doubled), not 60.
	pr, pw := io.Pipe()
	type result struct {
		body    []byte
		release func()
		err     error
	}
	done := make(chan result, 1)
	go func() {
		b, release, err := readBody(httptest.NewRecorder(), request(pr, 60<<10), limit, time.Minute, mem)
		done <- result{b, release, err}
	}()
	whole := bytes.Repeat([]byte("1,2\n"), (60<<10)/4)
	if _, err := pw.Write(whole[:20<<10]); err != nil { // returns once read
		t.Fatal(err)
	}
	if left := mem.left; left != limit-32<<10 {
		t.Errorf("a body of 20 KiB so far holds %d bytes, want 32 KiB", limit-left)
	}
	// 40 KiB more cannot be had while it grows to 60.
	if _, err := pw.Write(whole[20<<10 : 40<<10]); err != nil {
		t.Fatal(err)
	}
	if left := mem.left; left != limit-60<<10 {
		t.Errorf("a body of 40 KiB so far, 60 announced, holds %d bytes, want 60 KiB", limit-left)
	}
	_, _, err := readBody(httptest.NewRecorder(), request(strings.NewReader(string(whole[:8<<10])), 8<<10), limit, time.Minute, mem)
	if !errors.Is(err, errBodiesBusy) || statusOf(err) != http.StatusServiceUnavailable {
		t.Errorf("a body over the budget left: %v, want errBodiesBusy (503)", err)
	}
	if left := mem.left; left != limit-60<<10 {
		t.Errorf("a refused body kept %d bytes", limit-60<<10-left)
	}
	pw.Write(whole[40<<10:])
	pw.Close()
	r := <-done
	if r.err != nil || !bytes.Equal(r.body, whole) {
		t.Fatalf("the first body: %d bytes, %v", len(r.body), r.err)
	}
	r.release()
	if mem.left != limit {
		t.Errorf("after release, %d bytes left of %d", mem.left, limit)
	}

	// A body without a length grows by doubling, up to the limit and no
	// further.
	b, release, err := readBody(httptest.NewRecorder(), request(bytes.NewReader(whole[:50<<10]), -1), limit, time.Minute, mem)
	if err != nil || len(b) != 50<<10 || cap(b) != 64<<10 {
		t.Errorf("chunked body: %d bytes in %d, %v", len(b), cap(b), err)
	}
	release()
	_, _, err = readBody(httptest.NewRecorder(), request(io.MultiReader(bytes.NewReader(whole), bytes.NewReader(whole)), -1), limit, time.Minute, mem)
	if !errors.Is(err, errTooLarge) {
		t.Errorf("chunked body over the limit: %v", err)
	}
	if mem.left != limit {
		t.Errorf("after errors, %d bytes left of %d", mem.left, limit)
	}
}
