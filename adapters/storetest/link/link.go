// Package link is a simulated cloud link for tests and benchmarks: an
// HTTP proxy on loopback, put in front of a storage emulator (gofakes3,
// fake-gcs-server), that gives every client connection the throughput
// and latency of a connection to an object store, and injects the
// faults of a real one on demand.
//
// Clients reach the emulator through Link.URL (AWS_ENDPOINT_URL_S3) or
// Link.Host (STORAGE_EMULATOR_HOST) instead of the emulator's own
// address:
//
//   - Each accepted connection has two token buckets, one per direction,
//     of Config.Rate bytes per second: a download or an upload on one
//     connection goes no faster, while parallel connections add up, as
//     with S3 and Cloud Storage.
//   - Each request waits Config.Latency before it is forwarded: a first
//     byte's delay.
//   - SetFaults chooses, per request, to forward it as it is or to answer
//     it with a fault: a status of its own (503 SlowDown), a connection
//     reset in the middle of the response body, a connection closed early
//     (fewer bytes than the Content-Length announced), or a well-formed
//     partial answer with fewer bytes than the range asked for.
//
// The link speaks HTTP/1.1 on both sides and forwards requests to the
// emulator with the emulator's own Host, so that the emulator sees what a
// direct client would send. A Location header naming the emulator (a
// resumable upload's session) is rewritten to name the link.
package link

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Config shapes a link.
type Config struct {
	// Rate is the throughput of each connection, in bytes per second, in
	// each direction; 0 means no limit.
	Rate int64
	// Latency is added to every request before it is forwarded; 0 means
	// none.
	Latency time.Duration
}

// A Link is a running proxy. Its methods are safe for concurrent use.
type Link struct {
	// URL is the link's address, http://127.0.0.1:PORT.
	URL string

	upstream  *url.URL
	cfg       Config
	ln        net.Listener
	srv       *http.Server
	transport *http.Transport

	mu     sync.Mutex
	faults func(*http.Request) Fault
	stats  Stats
	done   chan struct{}
}

// Stats count what a link has seen.
type Stats struct {
	Requests int // requests received
	Active   int // requests being served now
	Faults   int // requests answered with a fault
	Conns    int // connections accepted
	Open     int // connections open now
}

// Start starts a link to the HTTP server at upstream (http://host:port)
// on a free port of 127.0.0.1.
func Start(upstream string, c Config) (*Link, error) {
	u, err := url.Parse(upstream)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return nil, fmt.Errorf("link: upstream %q: want http://HOST:PORT", upstream)
	}
	if c.Rate < 0 || c.Latency < 0 {
		return nil, errors.New("link: negative rate or latency")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	l := &Link{
		URL:      "http://" + ln.Addr().String(),
		upstream: u,
		cfg:      c,
		ln:       ln,
		transport: &http.Transport{
			Proxy:               nil,
			DisableCompression:  true, // pass Accept-Encoding and bodies through as they are
			MaxIdleConnsPerHost: 256,
			IdleConnTimeout:     30 * time.Second,
		},
		done: make(chan struct{}),
	}
	l.srv = &http.Server{Handler: l, ConnState: l.connState}
	go func() {
		defer close(l.done)
		l.srv.Serve(&listener{Listener: ln, rate: c.Rate})
	}()
	return l, nil
}

// Host is the link's host:port, for STORAGE_EMULATOR_HOST.
func (l *Link) Host() string { return strings.TrimPrefix(l.URL, "http://") }

// Close stops the link and drops its connections.
func (l *Link) Close() error {
	err := l.srv.Close()
	<-l.done
	l.transport.CloseIdleConnections()
	return err
}

// SetFaults makes f choose the fault of each request from now on; nil
// forwards every request. f is called from the requests' goroutines, at
// once, and may look at the request but not read its body.
func (l *Link) SetFaults(f func(r *http.Request) Fault) {
	l.mu.Lock()
	l.faults = f
	l.mu.Unlock()
}

// Stats returns the link's counts so far.
func (l *Link) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stats
}

func (l *Link) connState(_ net.Conn, s http.ConnState) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch s {
	case http.StateNew:
		l.stats.Conns++
		l.stats.Open++
	case http.StateClosed, http.StateHijacked:
		l.stats.Open--
	}
}

// A Fault is what the link does with one request. The zero value
// forwards it.
type Fault struct {
	kind        faultKind
	status      int
	contentType string
	body        string
	after       int64
}

type faultKind int

const (
	pass faultKind = iota
	refuse
	reset
	cut
	short
)

// Forward forwards the request as it is.
var Forward = Fault{}

// Refuse answers the request with status and body, without forwarding it.
func Refuse(status int, contentType, body string) Fault {
	return Fault{kind: refuse, status: status, contentType: contentType, body: body}
}

// SlowDown is S3's answer to a client it wants to back off: 503 SlowDown.
func SlowDown() Fault {
	return Refuse(http.StatusServiceUnavailable, "application/xml", `<?xml version="1.0" encoding="UTF-8"?>`+
		`<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message><RequestId>LINK</RequestId><HostId>LINK</HostId></Error>`)
}

// Unavailable is Cloud Storage's answer when it wants a client to back
// off: 503 with a JSON error.
func Unavailable() Fault {
	return Refuse(http.StatusServiceUnavailable, "application/json",
		`{"error":{"code":503,"message":"We encountered an internal error. Please try again.","errors":[{"reason":"backendError"}]}}`)
}

// ResetAfter forwards the request, then sends the status, the headers and
// n bytes of the response body, and resets the connection (TCP RST).
func ResetAfter(n int64) Fault { return Fault{kind: reset, after: max(n, 0)} }

// CloseAfter forwards the request, then sends the status, the headers
// (Content-Length as the emulator gave it) and n bytes of the body, and
// closes the connection in good order (TCP FIN): the body ends short.
func CloseAfter(n int64) Fault { return Fault{kind: cut, after: max(n, 0)} }

// ShortAfter forwards the request and, when the answer is a 206 Partial
// Content, keeps only the first n bytes of its body and rewrites its
// Content-Range and Content-Length to match: a well-formed answer with
// fewer bytes than the range asked for. Other answers pass as they are.
func ShortAfter(n int64) Fault { return Fault{kind: short, after: max(n, 0)} }

func (l *Link) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	l.mu.Lock()
	l.stats.Requests++
	l.stats.Active++
	choose := l.faults
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		l.stats.Active--
		l.mu.Unlock()
	}()

	if l.cfg.Latency > 0 {
		t := time.NewTimer(l.cfg.Latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	var f Fault
	if choose != nil {
		f = choose(r)
	}
	if f.kind != pass {
		l.mu.Lock()
		l.stats.Faults++
		l.mu.Unlock()
	}
	if f.kind == refuse {
		io.Copy(io.Discard, r.Body)
		if f.contentType != "" {
			w.Header().Set("Content-Type", f.contentType)
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(f.body)))
		w.WriteHeader(f.status)
		if r.Method != http.MethodHead {
			io.WriteString(w, f.body)
		}
		return
	}

	out, err := http.NewRequestWithContext(r.Context(), r.Method, l.upstream.Scheme+"://"+l.upstream.Host+r.URL.RequestURI(), r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	copyHeader(out.Header, r.Header)
	out.Header.Del("Expect") // the link's server has answered 100 Continue itself
	out.ContentLength = r.ContentLength
	if r.ContentLength == 0 {
		out.Body = http.NoBody
	}
	res, err := l.transport.RoundTrip(out)
	if err != nil {
		if r.Context().Err() == nil {
			http.Error(w, "link: "+err.Error(), http.StatusBadGateway)
		}
		return
	}
	defer res.Body.Close()
	h := w.Header()
	copyHeader(h, res.Header)
	if loc := h.Get("Location"); loc != "" {
		h.Set("Location", strings.Replace(loc, "//"+l.upstream.Host, "//"+l.Host(), 1))
	}
	if res.ContentLength >= 0 {
		h.Set("Content-Length", strconv.FormatInt(res.ContentLength, 10))
	}
	switch {
	case f.kind == short && res.StatusCode == http.StatusPartialContent && res.ContentLength > f.after:
		first, total, ok := contentRange(res.Header.Get("Content-Range"))
		if !ok || f.after == 0 {
			// A 206 of no bytes cannot be written; cut the body instead.
			l.hijack(w, res, Fault{kind: cut, after: f.after})
			return
		}
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%s", first, first+f.after-1, total))
		h.Set("Content-Length", strconv.FormatInt(f.after, 10))
		w.WriteHeader(res.StatusCode)
		io.CopyN(w, res.Body, f.after)
	case f.kind == reset || f.kind == cut:
		l.hijack(w, res, f)
	default:
		w.WriteHeader(res.StatusCode)
		buf := make([]byte, 32<<10)
		io.CopyBuffer(w, res.Body, buf)
	}
}

// hijack takes the connection over and writes the head of the response,
// then f.after bytes of its body, then resets or closes it.
func (l *Link) hijack(w http.ResponseWriter, res *http.Response, f Fault) {
	c, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	defer c.Close()
	w.Header().Set("Connection", "close")
	fmt.Fprintf(rw, "HTTP/1.1 %d %s\r\n", res.StatusCode, http.StatusText(res.StatusCode))
	w.Header().Write(rw)
	rw.WriteString("\r\n")
	io.CopyN(rw, res.Body, f.after)
	rw.Flush()
	if f.kind == reset {
		if tc, ok := c.(*conn); ok {
			tc.reset()
		}
	}
}

// contentRange reads "bytes FIRST-LAST/TOTAL".
func contentRange(v string) (first int64, total string, ok bool) {
	rest, found := strings.CutPrefix(v, "bytes ")
	if !found {
		return 0, "", false
	}
	span, total, found := strings.Cut(rest, "/")
	firstText, _, found2 := strings.Cut(span, "-")
	first, err := strconv.ParseInt(firstText, 10, 64)
	return first, total, found && found2 && err == nil
}

// hopHeaders are the headers of one connection, never forwarded.
var hopHeaders = []string{"Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
	"Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

func copyHeader(dst, src http.Header) {
	for k, v := range src {
		dst[k] = append([]string(nil), v...)
	}
	for _, k := range hopHeaders {
		dst.Del(k)
	}
}

// listener gives every accepted connection its token buckets.
type listener struct {
	net.Listener
	rate int64
}

func (ln *listener) Accept() (net.Conn, error) {
	c, err := ln.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &conn{Conn: c, in: newBucket(ln.rate), out: newBucket(ln.rate)}, nil
}

// conn is one client connection, throttled each way.
type conn struct {
	net.Conn
	in, out *bucket // bytes from the client, bytes to it
}

func (c *conn) Read(p []byte) (int, error) {
	if c.in != nil && len(p) > c.in.max {
		p = p[:c.in.max]
	}
	n, err := c.Conn.Read(p)
	c.in.wait(n)
	return n, err
}

func (c *conn) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		k := len(p)
		if c.out != nil {
			k = min(k, c.out.max)
		}
		c.out.wait(k)
		n, err := c.Conn.Write(p[:k])
		written += n
		if err != nil {
			return written, err
		}
		p = p[k:]
	}
	return written, nil
}

// reset makes the next Close send a TCP RST.
func (c *conn) reset() {
	if tc, ok := c.Conn.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
}

// bucket is a token bucket of rate bytes per second. A transfer takes its
// tokens at once, going into debt, and waits the debt off: the rate holds
// on average over any span longer than a burst.
type bucket struct {
	max  int // bytes per transfer: a hundredth of a second, at least 4 KiB
	rate float64

	mu     sync.Mutex
	tokens float64
	last   time.Time
}

func newBucket(rate int64) *bucket {
	if rate <= 0 {
		return nil
	}
	b := &bucket{max: int(max(rate/100, 4<<10)), rate: float64(rate), last: time.Now()}
	b.tokens = float64(b.max)
	return b
}

// wait takes n tokens and sleeps until the bucket is out of debt.
func (b *bucket) wait(n int) {
	if b == nil || n <= 0 {
		return
	}
	b.mu.Lock()
	now := time.Now()
	b.tokens = min(float64(b.max), b.tokens+now.Sub(b.last).Seconds()*b.rate) - float64(n)
	b.last = now
	debt := b.tokens
	b.mu.Unlock()
	if debt < 0 {
		time.Sleep(time.Duration(-debt / b.rate * float64(time.Second)))
	}
}
