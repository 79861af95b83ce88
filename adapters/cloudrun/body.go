package cloudrun

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"time"
)

// Errors of reading a request body; statusOf gives each its status.
var (
	errTooLarge   = errors.New("request body too large")                      // 413
	errSlowBody   = errors.New("request body too slow")                       // 408
	errBodiesBusy = errors.New("busy: too many request bodies in memory")     // 503
	errStopped    = errors.New("stopped before the request body had arrived") // 503: shutdown
)

// DefaultBodyTimeout is the default of Service.BodyTimeout.
const DefaultBodyTimeout = 10 * time.Second

const (
	// minBodyRate is the rate a body must keep beyond its BodyTimeout, in
	// bytes per second: each minBodyRate bytes received give it one more
	// second. A 32 MiB body has BodyTimeout + 128 s.
	minBodyRate = 256 << 10
	// firstChunk is the first buffer of a body, in bytes, unless its
	// Content-Length is smaller; it doubles as the body arrives, up to
	// the Content-Length or the limit.
	firstChunk = 16 << 10
)

// statusOf is the status of a readBody error.
func statusOf(err error) int {
	switch {
	case errors.Is(err, errTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, errSlowBody):
		return http.StatusRequestTimeout
	case errors.Is(err, errBodiesBusy), errors.Is(err, errStopped):
		return http.StatusServiceUnavailable
	}
	return http.StatusBadRequest
}

// budget is a number of bytes that requests share: the buffers of their
// bodies. A nil *budget has no limit.
type budget struct {
	mu   sync.Mutex
	left int64
}

func newBudget(n int64) *budget { return &budget{left: n} }

// take takes n bytes, if that many are left.
func (b *budget) take(n int64) bool {
	if b == nil {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if n > b.left {
		return false
	}
	b.left -= n
	return true
}

// give gives n bytes back.
func (b *budget) give(n int64) {
	if b == nil {
		return
	}
	b.mu.Lock()
	b.left += n
	b.mu.Unlock()
}

// readBody reads a whole request body of at most limit bytes, within a
// time bound, into a buffer taken from mem as the body arrives; release
// gives the buffer's bytes back to mem, once the body is no longer used.
//
// A Content-Length over the limit is refused before anything is read; a
// longer body without one is cut by http.MaxBytesReader. The body must
// have arrived within timeout of the call, plus a second for each
// minBodyRate bytes received (a read deadline on the connection, moved
// on as the body comes); a slower one is errSlowBody. When the request's
// context ends (shutdown), the read ends at once with errStopped. When
// mem has not enough bytes left for the next part of the buffer, the
// error is errBodiesBusy. After any error the connection is closed once
// answered: the rest of the body is not read.
func readBody(w http.ResponseWriter, r *http.Request, limit int64, timeout time.Duration, mem *budget) (body []byte, release func(), err error) {
	var held int64 // bytes taken from mem
	defer func() {
		if err != nil {
			mem.give(held)
			// Do not wait for the rest of the body, nor read it after
			// the answer.
			w.Header().Set("Connection", "close")
		}
	}()
	if r.ContentLength > limit {
		return nil, nil, fmt.Errorf("%w: %d bytes, the limit is %d", errTooLarge, r.ContentLength, limit)
	}

	// The connection's read deadline bounds each read of the body; the
	// request's end moves it to the past, so that a read waiting for a
	// slow client ends. A connection without deadlines has no bound.
	rc := http.NewResponseController(w)
	ctx := r.Context()
	var mu sync.Mutex
	deadlines := true
	setDeadline := func(d time.Time) {
		mu.Lock()
		defer mu.Unlock()
		if !deadlines {
			return
		}
		if ctx.Err() != nil {
			d = time.Unix(1, 0)
		}
		if rc.SetReadDeadline(d) != nil {
			deadlines = false
		}
	}
	stop := context.AfterFunc(ctx, func() { setDeadline(time.Unix(1, 0)) })
	defer func() {
		stop()
		mu.Lock()
		defer mu.Unlock()
		if deadlines && err == nil {
			// Done with the body: no deadline on the connection while
			// the handler runs. After an error the deadline stays in the
			// past, so that the server reads nothing more.
			rc.SetReadDeadline(time.Time{})
		}
		deadlines = false
	}()

	start := time.Now()
	src := http.MaxBytesReader(w, r.Body, limit)
	var buf []byte
	var scratch [1]byte
	for {
		p := buf[len(buf):cap(buf)]
		if len(p) == 0 {
			n := max(2*int64(cap(buf)), firstChunk)
			if r.ContentLength >= 0 {
				n = min(n, r.ContentLength)
			}
			n = min(n, limit)
			if grow := n - int64(cap(buf)); grow > 0 {
				if !mem.take(grow) {
					return nil, nil, fmt.Errorf("%w: try again shortly", errBodiesBusy)
				}
				held += grow
				buf = append(make([]byte, 0, n), buf...)
				p = buf[len(buf):cap(buf)]
			} else {
				// At the Content-Length or the limit: a read to see the
				// end, or an error if more comes.
				p = scratch[:]
			}
		}
		received := int64(len(buf))
		due := start.Add(timeout + time.Duration(received/minBodyRate)*time.Second +
			time.Duration(received%minBodyRate)*time.Second/minBodyRate)
		setDeadline(due)
		n, rerr := src.Read(p)
		if &p[0] == &scratch[0] {
			if n > 0 {
				return nil, nil, fmt.Errorf("%w: over the %d bytes announced", errTooLarge, r.ContentLength)
			}
		} else {
			buf = buf[:len(buf)+n]
		}
		var tooLarge *http.MaxBytesError
		switch {
		case rerr == nil:
		case rerr == io.EOF:
			if buf == nil {
				buf = []byte{}
			}
			return buf, func() { mem.give(held) }, nil
		case errors.As(rerr, &tooLarge):
			return nil, nil, fmt.Errorf("%w: the limit is %d bytes", errTooLarge, limit)
		case errors.Is(rerr, os.ErrDeadlineExceeded) && !time.Now().Before(due):
			// The deadline itself, not the request's end moving it to
			// the past (a read error also ends the request's context).
			return nil, nil, fmt.Errorf("%w: %d bytes in %.1fs; a body has %v, plus a second for each %d KiB", errSlowBody,
				len(buf), time.Since(start).Seconds(), timeout, minBodyRate>>10)
		case ctx.Err() != nil:
			return nil, nil, fmt.Errorf("%w (shutdown, or the client gone), after %d bytes", errStopped, len(buf))
		default:
			return nil, nil, fmt.Errorf("reading the request: %w", rerr)
		}
	}
}
