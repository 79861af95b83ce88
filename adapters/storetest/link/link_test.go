package link

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// upstream serves one object with ranges (http.ServeContent), echoes the
// body of a PUT with its length, and answers POST /session with a
// Location on itself, as a resumable upload's start does.
func upstream(t *testing.T, data []byte) *httptest.Server {
	t.Helper()
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPut:
			b, _ := io.ReadAll(r.Body)
			w.Header().Set("X-Host", r.Host)
			w.Write(b)
		case r.Method == http.MethodPost && r.URL.Path == "/session":
			w.Header().Set("Location", srv.URL+"/upload?id=1")
			w.WriteHeader(http.StatusOK)
		default:
			http.ServeContent(w, r, "obj", time.Time{}, bytes.NewReader(data))
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func start(t *testing.T, up string, c Config) *Link {
	t.Helper()
	l, err := Start(up, c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{7}).Read(b)
	return b
}

// get fetches the object through the link with an optional Range, on a
// fresh client (no connection reused across tests).
func get(t *testing.T, l *Link, rng string) (*http.Response, []byte, error) {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodGet, l.URL+"/obj", nil)
	if rng != "" {
		req.Header.Set("Range", rng)
	}
	res, err := client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res, b, err
}

func TestForward(t *testing.T) {
	data := randBytes(1 << 20)
	up := upstream(t, data)
	l := start(t, up.URL, Config{Rate: 64 << 20, Latency: time.Millisecond})
	res, b, err := get(t, l, "")
	if err != nil || res.StatusCode != 200 || !bytes.Equal(b, data) {
		t.Fatalf("whole object: status %v, %d bytes, %v", res.StatusCode, len(b), err)
	}
	res, b, err = get(t, l, "bytes=100-199")
	if err != nil || res.StatusCode != 206 || !bytes.Equal(b, data[100:200]) || res.Header.Get("Content-Range") != "bytes 100-199/1048576" {
		t.Fatalf("range: status %v, %d bytes, %q, %v", res.StatusCode, len(b), res.Header.Get("Content-Range"), err)
	}

	// An upload goes through, with the emulator's own Host.
	body := randBytes(300 << 10)
	pres, err := http.Post(l.URL+"/up", "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	pres.Body.Close()
	req, _ := http.NewRequest(http.MethodPut, l.URL+"/up", bytes.NewReader(body))
	pres, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	echo, _ := io.ReadAll(pres.Body)
	pres.Body.Close()
	if !bytes.Equal(echo, body) || pres.Header.Get("X-Host") != strings.TrimPrefix(up.URL, "http://") {
		t.Errorf("PUT echoed %d bytes, Host %q", len(echo), pres.Header.Get("X-Host"))
	}

	// A Location on the emulator comes back on the link.
	sres, err := http.Post(l.URL+"/session", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	sres.Body.Close()
	if loc := sres.Header.Get("Location"); loc != l.URL+"/upload?id=1" {
		t.Errorf("Location %q, want it on the link %s", loc, l.URL)
	}
	if st := l.Stats(); st.Requests != 5 || st.Faults != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestFaults(t *testing.T) {
	data := randBytes(1 << 20)
	l := start(t, upstream(t, data).URL, Config{})
	set := func(f Fault) { l.SetFaults(func(*http.Request) Fault { return f }) }

	set(SlowDown())
	res, b, err := get(t, l, "bytes=0-99")
	if err != nil || res.StatusCode != 503 || !strings.Contains(string(b), "<Code>SlowDown</Code>") {
		t.Errorf("SlowDown: %v, %q, %v", res.StatusCode, b, err)
	}
	set(Unavailable())
	if res, b, err = get(t, l, ""); err != nil || res.StatusCode != 503 || !strings.Contains(string(b), `"code":503`) {
		t.Errorf("Unavailable: %v, %q, %v", res.StatusCode, b, err)
	}

	// A reset mid-body: the client gets the bytes before it, then an error.
	set(ResetAfter(1000))
	res, b, err = get(t, l, "bytes=0-99999")
	if err == nil || len(b) > 1000 || !bytes.Equal(b, data[:len(b)]) || res.StatusCode != 206 {
		t.Errorf("ResetAfter: %d bytes, %v", len(b), err)
	}
	// An orderly close mid-body: fewer bytes than Content-Length.
	set(CloseAfter(5000))
	res, b, err = get(t, l, "bytes=10-99999")
	if !errors.Is(err, io.ErrUnexpectedEOF) || !bytes.Equal(b, data[10:5010]) || res.ContentLength != 99990 {
		t.Errorf("CloseAfter: %d bytes of %d, %v", len(b), res.ContentLength, err)
	}
	// A short answer is well formed: its headers say what it holds.
	set(ShortAfter(300))
	res, b, err = get(t, l, "bytes=1000-1999")
	if err != nil || res.StatusCode != 206 || !bytes.Equal(b, data[1000:1300]) || res.Header.Get("Content-Range") != "bytes 1000-1299/1048576" {
		t.Errorf("ShortAfter: status %v, %d bytes, Content-Range %q, %v", res.StatusCode, len(b), res.Header.Get("Content-Range"), err)
	}
	// ... and leaves whole answers alone.
	if res, b, err = get(t, l, ""); err != nil || res.StatusCode != 200 || !bytes.Equal(b, data) {
		t.Errorf("ShortAfter on a 200: status %v, %d bytes, %v", res.StatusCode, len(b), err)
	}
	if st := l.Stats(); st.Faults != 6 {
		t.Errorf("%d faults counted, want 6", st.Faults)
	}
}

// TestCancelEndsRequest: a client that gives up mid-body ends the
// request at the link and the link's own request upstream.
func TestCancelEndsRequest(t *testing.T) {
	data := randBytes(4 << 20)
	l := start(t, upstream(t, data).URL, Config{Rate: 256 << 10}) // 16 s for the whole object
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, l.URL+"/obj", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(res.Body, make([]byte, 10000)); err != nil {
		t.Fatal(err)
	}
	if st := l.Stats(); st.Active != 1 {
		t.Fatalf("active %d mid-body, want 1", st.Active)
	}
	cancel()
	res.Body.Close()
	deadline := time.Now().Add(10 * time.Second)
	for l.Stats().Active != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("request still active after the client left: %+v", l.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestStartRefuses(t *testing.T) {
	for _, up := range []string{"", "https://x:1", "127.0.0.1:80"} {
		if _, err := Start(up, Config{}); err == nil {
			t.Errorf("Start(%q) succeeded", up)
		}
	}
	if _, err := Start("http://127.0.0.1:1", Config{Rate: -1}); err == nil {
		t.Error("negative rate accepted")
	}
}
