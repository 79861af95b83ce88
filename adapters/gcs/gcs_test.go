package gcs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"cloud.google.com/go/storage"
	"github.com/fsouza/fake-gcs-server/fakestorage"
	"github.com/googleapis/gax-go/v2"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/momentum-run/momentum/adapters/storetest"
	"github.com/momentum-run/momentum/adapters/storetest/link"
	"github.com/momentum-run/momentum/compute"
)

const bucket = "momentum-test"

// env is fake-gcs-server in process, in memory, behind a loopback HTTP
// server whose handler a test can wrap with faults.
type env struct {
	fake   *fakestorage.Server
	url    string // the server, http://127.0.0.1:port
	faults *faults
}

// newEnv starts the server. The httptest listener is made first, on a
// free port, so that the fake's public host can be its host:port; the fake
// itself opens no listener and serves through our handler.
func newEnv(t *testing.T, versioned bool) *env {
	t.Helper()
	ts := httptest.NewUnstartedServer(nil)
	host := ts.Listener.Addr().String()
	fake, err := fakestorage.NewServerWithOptions(fakestorage.Options{
		Scheme:     "http",
		Host:       "127.0.0.1",
		PublicHost: host,
		NoListener: true, // in-memory backend: no StorageRoot
	})
	if err != nil {
		t.Fatal(err)
	}
	fake.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: bucket, VersioningEnabled: versioned})
	f := &faults{next: storetest.GCSCompose(storetest.OneGenerationReadAtATime(fake.HTTPHandler()))}
	ts.Config.Handler = f
	ts.Start()
	t.Cleanup(func() { ts.Close(); fake.Stop() })
	return &env{fake: fake, url: ts.URL, faults: f}
}

// store returns a store on e through a client of its own, which retries
// quickly and at most maxAttempts times where the client counts attempts
// (0: the client's default, no limit).
func (e *env) store(t *testing.T, maxAttempts int, opts ...Option) *Store {
	t.Helper()
	return storeAt(t, e.url, maxAttempts, opts...)
}

// storeAt is env.store for a server at url: the fake, or a link to it.
func storeAt(t *testing.T, url string, maxAttempts int, opts ...Option) *Store {
	t.Helper()
	client, err := storage.NewClient(context.Background(),
		option.WithEndpoint(url+"/storage/v1/"), option.WithoutAuthentication(), storage.WithJSONReads())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	retry := []storage.RetryOption{storage.WithBackoff(gax.Backoff{Initial: time.Millisecond, Max: 5 * time.Millisecond})}
	if maxAttempts > 0 {
		retry = append(retry, storage.WithMaxAttempts(maxAttempts))
	}
	client.SetRetry(retry...)
	s := NewFromClient(client, bucket, opts...)
	s.retryPause = time.Millisecond
	s.answerGrace = 2 * time.Second
	return s
}

func (e *env) put(key, data string) {
	e.fake.CreateObject(fakestorage.Object{ObjectAttrs: fakestorage.ObjectAttrs{BucketName: bucket, Name: key}, Content: []byte(data)})
}

func (e *env) content(t *testing.T, key string) (string, bool) {
	t.Helper()
	obj, err := e.fake.GetObject(bucket, key)
	if err != nil {
		return "", false
	}
	return string(obj.Content), true
}

// faults serves requests through next unless a rule takes them.
type faults struct {
	next http.Handler
	mu   sync.Mutex
	rule func(w http.ResponseWriter, r *http.Request, next http.Handler) bool
}

func (f *faults) set(rule func(w http.ResponseWriter, r *http.Request, next http.Handler) bool) {
	f.mu.Lock()
	f.rule = rule
	f.mu.Unlock()
}

func (f *faults) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	rule := f.rule
	f.mu.Unlock()
	if rule != nil && rule(w, r, f.next) {
		return
	}
	f.next.ServeHTTP(w, r)
}

// kind names a request by its part in the JSON API.
func kind(r *http.Request) string {
	switch {
	case strings.HasPrefix(r.URL.Path, "/upload/") && r.URL.Query().Has("upload_id"):
		return "chunk" // of a resumable upload
	case strings.HasPrefix(r.URL.Path, "/upload/"):
		return "upload" // a whole small object, or the start of a resumable upload
	case r.Method == http.MethodGet && r.URL.Query().Get("alt") == "media":
		return "download"
	case r.Method == http.MethodGet:
		return "metadata"
	case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/compose"):
		return "compose"
	}
	return r.Method
}

// reset drops the connection with a TCP RST. What the handler wrote is
// sent first; if it wrote nothing, the client gets no response at all.
func reset(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(err)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	conn.Close()
}

// fail answers as Cloud Storage does with a JSON error.
func fail(w http.ResponseWriter, r *http.Request, code int) {
	io.Copy(io.Discard, r.Body)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	fmt.Fprintf(w, `{"error":{"code":%d,"message":"injected %s"}}`, code, http.StatusText(code))
}

// record runs next into a recorder, for a rule to replay in part.
func record(r *http.Request, next http.Handler) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	next.ServeHTTP(rec, r)
	return rec
}

func replayHeader(w http.ResponseWriter, rec *httptest.ResponseRecorder) {
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
}

func write(ctx context.Context, s *Store, key string, data []byte, o compute.WriteOptions) (werr, cerr error) {
	w, err := s.NewWriter(ctx, key, o)
	if err != nil {
		return err, err
	}
	_, werr = w.Write(data)
	return werr, w.Close()
}

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>11)
	}
	return b
}

// TestConformance runs the shared suite on a versioned bucket (the fake
// keeps overwritten generations readable there) through New, which finds
// the emulator by STORAGE_EMULATOR_HOST, on a bucket without versions with
// parts of 1 MiB, and with resumable uploads. No temporary object is left.
func TestConformance(t *testing.T) {
	t.Run("Versioned", func(t *testing.T) {
		e := newEnv(t, true)
		t.Setenv("STORAGE_EMULATOR_HOST", strings.TrimPrefix(e.url, "http://"))
		s, err := New(context.Background(), bucket)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		storetest.Run(t, s, storetest.Options{Versioned: true})
		e.assertNoTemps(t)
	})
	t.Run("Unversioned", func(t *testing.T) {
		e := newEnv(t, false)
		storetest.Run(t, e.store(t, 0, WithPartSize(1<<20)), storetest.Options{LargeSize: -1})
		e.assertNoTemps(t)
	})
	t.Run("Resumable", func(t *testing.T) {
		e := newEnv(t, false)
		storetest.Run(t, e.store(t, 0, resumable...), storetest.Options{LargeSize: 40 << 20})
		e.assertNoTemps(t)
	})
}

// TestReadAhead reads through a simulated link with faults, pinned to a
// generation, from a bucket that keeps old generations and from one that
// does not.
func TestReadAhead(t *testing.T) {
	for _, versioned := range []bool{true, false} {
		t.Run(fmt.Sprintf("versioned=%v", versioned), func(t *testing.T) {
			e := newEnv(t, versioned)
			storetest.RunReadAhead(t, storetest.Linked{
				Upstream:  e.url,
				Open:      func(t *testing.T, url string) compute.Store { return storeAt(t, url, 3) },
				Versioned: versioned,
				SlowDown:  link.Unavailable(),
			})
		})
	}
}

func TestContentType(t *testing.T) {
	e := newEnv(t, false)
	s := e.store(t, 0)
	for _, c := range []struct{ key, set, want string }{
		{"ct/a.csv", "text/csv", "text/csv"},
		{"ct/b.json", "application/json", "application/json"},
	} {
		if _, err := write(context.Background(), s, c.key, []byte("a,b\n"), compute.WriteOptions{ContentType: c.set}); err != nil {
			t.Fatal(err)
		}
		obj, err := e.fake.GetObject(bucket, c.key)
		if err != nil || obj.ContentType != c.want {
			t.Errorf("%s: content type %q, %v; want %q", c.key, obj.ContentType, err, c.want)
		}
	}
}

func TestETag(t *testing.T) {
	e := newEnv(t, true)
	s := e.store(t, 0)
	key := "etag/a.csv"
	storetest.Put(t, s, key, []byte("v1"))
	attrs1, err := s.client.Bucket(bucket).Object(key).Attrs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	storetest.Put(t, s, key, []byte("v2"))
	attrs2, err := s.client.Bucket(bucket).Object(key).Attrs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if attrs1.Etag == attrs2.Etag {
		t.Fatalf("ETag did not change: %q", attrs1.Etag)
	}
	v1 := strconv.FormatInt(attrs1.Generation, 10)
	for _, c := range []struct {
		name string
		o    compute.ReadOptions
		want string // "" for ErrNotFound
	}{
		{"current", compute.ReadOptions{ETag: attrs2.Etag}, "v2"},
		{"replaced", compute.ReadOptions{ETag: attrs1.Etag}, ""},
		{"unknown", compute.ReadOptions{ETag: "nope"}, ""},
		{"old generation, its ETag", compute.ReadOptions{Version: v1, ETag: attrs1.Etag}, "v1"},
		{"old generation, current ETag", compute.ReadOptions{Version: v1, ETag: attrs2.Etag}, ""},
		{"current, range", compute.ReadOptions{ETag: attrs2.Etag, Offset: 1}, "2"},
	} {
		got, info, err := storetest.Get(t, s, key, c.o)
		if c.want == "" {
			if !errors.Is(err, compute.ErrNotFound) {
				t.Errorf("%s: %q, %v; want ErrNotFound", c.name, got, err)
			}
			continue
		}
		if err != nil || string(got) != c.want || info.ETag != c.o.ETag || info.Size != 2 {
			t.Errorf("%s: %q, %+v, %v; want %q with ETag %q", c.name, got, info, err, c.want, c.o.ETag)
		}
	}
	// Without ETag in the options none is fetched or reported.
	if _, info, err := storetest.Get(t, s, key, compute.ReadOptions{}); err != nil || info.ETag != "" || info.Version != strconv.FormatInt(attrs2.Generation, 10) {
		t.Errorf("plain read: %+v, %v", info, err)
	}
}

func TestReadOptions(t *testing.T) {
	e := newEnv(t, false)
	s := e.store(t, 0)
	storetest.Put(t, s, "opts/a.csv", []byte("0123456789"))
	storetest.Put(t, s, "opts/empty", nil)
	for _, c := range []struct {
		key  string
		o    compute.ReadOptions
		want string
		size int64
		kind error // nil: success
	}{
		{"opts/a.csv", compute.ReadOptions{Offset: 10}, "", 10, nil},
		{"opts/a.csv", compute.ReadOptions{Offset: 12, Length: 3}, "", 10, nil},
		{"opts/a.csv", compute.ReadOptions{Offset: 9, Length: 0}, "9", 10, nil},
		{"opts/empty", compute.ReadOptions{}, "", 0, nil},
		{"opts/empty", compute.ReadOptions{Length: 5}, "", 0, nil},
		{"opts/a.csv", compute.ReadOptions{Version: "x1"}, "", -1, compute.ErrNotFound},
		{"opts/a.csv", compute.ReadOptions{Version: "-3"}, "", -1, compute.ErrNotFound},
		{"opts/a.csv", compute.ReadOptions{Version: "12345"}, "", -1, compute.ErrNotFound},
		{"opts/none", compute.ReadOptions{Offset: 3}, "", -1, compute.ErrNotFound},
		{"", compute.ReadOptions{}, "", -1, compute.ErrInvalidKey},
		{"bad\nname", compute.ReadOptions{}, "", -1, compute.ErrInvalidKey},
		{strings.Repeat("k", 1025), compute.ReadOptions{}, "", -1, compute.ErrInvalidKey},
		{"bad\xffutf8", compute.ReadOptions{}, "", -1, compute.ErrInvalidKey},
	} {
		got, info, err := storetest.Get(t, s, c.key, c.o)
		if c.kind != nil {
			if !errors.Is(err, c.kind) {
				t.Errorf("%.20q %+v: err = %v, want %v", c.key, c.o, err, c.kind)
			}
			continue
		}
		if err != nil || string(got) != c.want || info.Size != c.size {
			t.Errorf("%q %+v: %q, size %d, %v; want %q, size %d", c.key, c.o, got, info.Size, err, c.want, c.size)
		}
	}
	if _, err := s.NewWriter(context.Background(), "..", compute.WriteOptions{}); !errors.Is(err, compute.ErrInvalidKey) {
		t.Errorf("NewWriter(..): err = %v, want ErrInvalidKey", err)
	}
}

func TestParseURL(t *testing.T) {
	for _, c := range []struct{ url, bucket, key string }{
		{"gs://b/runs/a.csv", "b", "runs/a.csv"},
		{"gs://b/keys/100%.csv", "b", "keys/100%.csv"},
		{"gs://b/%2B/a b", "b", "%2B/a b"},
		{"gs://b/", "", ""},
		{"gs://b", "", ""},
		{"gs:///k", "", ""},
		{"s3://b/k", "", ""},
	} {
		b, k, err := ParseURL(c.url)
		if b != c.bucket || k != c.key || (err == nil) != (c.bucket != "") {
			t.Errorf("ParseURL(%q) = %q, %q, %v; want %q, %q", c.url, b, k, err, c.bucket, c.key)
		}
	}
	if got := (&Store{name: "b"}).URL("runs/a b.csv"); got != "gs://b/runs/a b.csv" {
		t.Errorf("URL = %q", got)
	}
}

// TestDeletedBetweenReads: once the object is gone, a read of it, or of
// the generation read before, is ErrNotFound.
func TestDeletedBetweenReads(t *testing.T) {
	e := newEnv(t, false)
	s := e.store(t, 0)
	key := "deleted/a.csv"
	storetest.Put(t, s, key, []byte("here"))
	_, info, err := storetest.Get(t, s, key, compute.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.fake.Backend().DeleteObject(bucket, key); err != nil {
		t.Fatal(err)
	}
	for _, o := range []compute.ReadOptions{{}, {Version: info.Version}, {Offset: 2}} {
		if _, _, err := storetest.Get(t, s, key, o); !errors.Is(err, compute.ErrNotFound) {
			t.Errorf("%+v: err = %v, want ErrNotFound", o, err)
		}
	}
}

// TestTransientRetried: 500 and 503 on the first two requests of each
// kind are retried by the client, and every result is as without them.
func TestTransientRetried(t *testing.T) {
	t.Run("resumable", func(t *testing.T) { testTransientRetried(t, "chunk", WithUploadConcurrency(1)) })
	t.Run("parallel", func(t *testing.T) { testTransientRetried(t, "compose") })
}

// testTransientRetried checks that requests of kind large, of a large
// write, are among those retried.
func testTransientRetried(t *testing.T, large string, opts ...Option) {
	e := newEnv(t, false)
	s := e.store(t, 0, opts...)
	var mu sync.Mutex
	seen := map[string]int{}
	e.faults.set(func(w http.ResponseWriter, r *http.Request, next http.Handler) bool {
		mu.Lock()
		n := seen[kind(r)]
		seen[kind(r)]++
		mu.Unlock()
		switch n {
		case 0:
			fail(w, r, http.StatusServiceUnavailable)
		case 1:
			fail(w, r, http.StatusInternalServerError)
		default:
			return false
		}
		return true
	})
	small, big := []byte("mass,velocity\n1,2\n"), pattern(20<<20)
	for _, c := range []struct {
		key  string
		data []byte
		o    compute.WriteOptions
	}{
		{"retry/small.csv", small, compute.WriteOptions{}},
		{"retry/large.csv", big, compute.WriteOptions{}},
		{"retry/created.csv", small, compute.WriteOptions{IfNotExists: true}},
	} {
		if werr, cerr := write(context.Background(), s, c.key, c.data, c.o); werr != nil || cerr != nil {
			t.Fatalf("%s: write %v, close %v", c.key, werr, cerr)
		}
		if got, ok := e.content(t, c.key); !ok || got != string(c.data) {
			t.Errorf("%s: stored %d bytes, wrote %d", c.key, len(got), len(c.data))
		}
	}
	got, _, err := storetest.Get(t, s, "retry/large.csv", compute.ReadOptions{})
	if err != nil || !bytes.Equal(got, big) {
		t.Errorf("read large: %d bytes, %v", len(got), err)
	}
	got, info, err := storetest.Get(t, s, "retry/large.csv", compute.ReadOptions{Offset: 5 << 20, Length: 3})
	if err != nil || !bytes.Equal(got, big[5<<20:5<<20+3]) || info.Size != int64(len(big)) {
		t.Errorf("read range: %v, size %d, %v", got, info.Size, err)
	}
	attrs, err := s.client.Bucket(bucket).Object("retry/small.csv").Attrs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got, _, err = storetest.Get(t, s, "retry/small.csv", compute.ReadOptions{ETag: attrs.Etag})
	if err != nil || !bytes.Equal(got, small) {
		t.Errorf("read with ETag: %q, %v", got, err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, k := range []string{"upload", large, "download", "metadata"} {
		if seen[k] < 2 {
			t.Errorf("%s requests: %d, want the 2 failed ones and more", k, seen[k])
		}
	}
}

// TestResetMidDownload: a download cut by a connection reset is resumed
// from where it broke, at the same generation; if that generation is gone
// by then the read fails with ErrNotFound. It never ends early as if
// complete.
func TestResetMidDownload(t *testing.T) {
	data := string(pattern(3 << 20))
	for _, c := range []struct {
		name    string
		between func(e *env, key string) // before the reset
		want    error                    // nil: the whole object
	}{
		{"resumed", func(*env, string) {}, nil},
		{"overwritten", func(e *env, key string) { e.put(key, "new") }, compute.ErrNotFound},
		{"deleted", func(e *env, key string) { e.fake.Backend().DeleteObject(bucket, key) }, compute.ErrNotFound},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, false)
			s := e.store(t, 0)
			key := "reset/" + c.name
			e.put(key, data)
			var mu sync.Mutex
			resets := 0
			e.faults.set(func(w http.ResponseWriter, r *http.Request, next http.Handler) bool {
				mu.Lock()
				defer mu.Unlock()
				if kind(r) != "download" || resets > 0 {
					return false
				}
				resets++
				rec := record(r, next)
				replayHeader(w, rec)
				w.WriteHeader(rec.Code)
				w.Write(rec.Body.Bytes()[:1<<20])
				http.NewResponseController(w).Flush()
				c.between(e, key)
				reset(w)
				return true
			})
			for _, o := range []compute.ReadOptions{{}, {Offset: 1000, Length: 2 << 20}} {
				mu.Lock()
				resets = 0
				mu.Unlock()
				e.put(key, data)
				got, _, err := storetest.Get(t, s, key, o)
				want := data[o.Offset:]
				if o.Length > 0 {
					want = want[:o.Length]
				}
				mu.Lock()
				n := resets
				mu.Unlock()
				if n != 1 {
					t.Fatalf("%+v: %d resets, want 1", o, n)
				}
				if c.want == nil {
					if err != nil || string(got) != want {
						t.Errorf("%+v: %d bytes, %v; want %d bytes", o, len(got), err, len(want))
					}
				} else if !errors.Is(err, c.want) || len(got) >= len(want) {
					t.Errorf("%+v: %d bytes, %v; want fewer than %d and %v", o, len(got), err, len(want), c.want)
				}
			}
		})
	}
}

// TestShortBody: a response that ends early but looks complete (its
// Content-Length shortened to match) fails the read: the client's CRC32C
// check catches a whole object, the store's byte count a range.
func TestShortBody(t *testing.T) {
	e := newEnv(t, false)
	s := e.store(t, 0)
	data := string(pattern(1 << 20))
	e.put("short/a.csv", data)
	e.faults.set(func(w http.ResponseWriter, r *http.Request, next http.Handler) bool {
		if kind(r) != "download" {
			return false
		}
		rec := record(r, next)
		body := rec.Body.Bytes()
		body = body[:len(body)-100]
		replayHeader(w, rec)
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(rec.Code)
		w.Write(body)
		return true
	})
	for _, o := range []compute.ReadOptions{{}, {Offset: 10}, {Offset: 10, Length: 5000}} {
		got, _, err := storetest.Get(t, s, "short/a.csv", o)
		if err == nil || !errors.Is(err, compute.ErrTransient) {
			t.Errorf("%+v: read %d bytes, err = %v; want ErrTransient", o, len(got), err)
		}
	}
}

// TestResetMidUpload: an upload whose connection is reset part way
// through a request is retried; if the retry is refused, Write or Close
// fails and nothing is published, not even the chunks already stored in
// the upload session, and an object already there is left as it was.
func TestResetMidUpload(t *testing.T) {
	small, large := pattern(1<<20), pattern(20<<20)
	for _, c := range []struct {
		name    string
		data    []byte
		target  string // the request kind to reset
		nth     int    // which one of them, from 0
		refused bool   // later requests get 403
		opts    []Option
	}{
		{"single request, retried", small, "upload", 0, false, nil},
		{"single request, refused", small, "upload", 0, true, nil},
		{"resumable single request, retried", small, "upload", 0, false, resumable},
		{"resumable single request, refused", small, "upload", 0, true, resumable},
		{"second chunk, retried", large, "chunk", 1, false, resumable},
		{"second chunk, refused", large, "chunk", 1, true, resumable},
		{"second part, retried", large, "upload", 1, false, nil},
		{"second part, refused", large, "upload", 1, true, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, false)
			s := e.store(t, 0, c.opts...)
			for _, existing := range []bool{false, true} {
				key := fmt.Sprintf("upload/%v", existing)
				if existing {
					e.put(key, "old")
				}
				var mu sync.Mutex
				seen, resets := 0, 0
				e.faults.set(func(w http.ResponseWriter, r *http.Request, next http.Handler) bool {
					mu.Lock()
					defer mu.Unlock()
					switch {
					case kind(r) != c.target && !(resets > 0 && kind(r) == "chunk"):
						return false
					case resets > 0 && c.refused:
						fail(w, r, http.StatusForbidden)
						return true
					case seen != c.nth || resets > 0:
						seen++
						return false
					}
					seen++
					resets++
					io.CopyN(io.Discard, r.Body, 64<<10)
					reset(w)
					return true
				})
				werr, cerr := write(context.Background(), s, key, c.data, compute.WriteOptions{})
				mu.Lock()
				n := resets
				mu.Unlock()
				if n != 1 {
					t.Fatalf("%d resets, want 1", n)
				}
				got, ok := e.content(t, key)
				if !c.refused {
					if werr != nil || cerr != nil || got != string(c.data) {
						t.Errorf("existing %v: write %v, close %v, stored %d bytes; want %d", existing, werr, cerr, len(got), len(c.data))
					}
					continue
				}
				if !errors.Is(cerr, compute.ErrPermission) || (werr != nil && !errors.Is(werr, compute.ErrPermission)) {
					t.Errorf("existing %v: write %v, close %v; want ErrPermission", existing, werr, cerr)
				}
				if existing && got != "old" || !existing && ok {
					t.Errorf("existing %v: object is now %d bytes (present %v)", existing, len(got), ok)
				}
				e.faults.set(nil)
				e.assertNoTemps(t)
			}
		})
	}
}

var resumable = []Option{WithUploadConcurrency(1)}

// TestReplyLost: when a whole-object upload is stored but its reply is
// lost, the client sends it again. An overwrite ends with the same bytes;
// a create-only write is then refused by its own object, as the package
// documents.
func TestReplyLost(t *testing.T) {
	for _, c := range []struct {
		o    compute.WriteOptions
		want error
	}{
		{compute.WriteOptions{}, nil},
		{compute.WriteOptions{IfNotExists: true}, compute.ErrExists},
	} {
		e := newEnv(t, false)
		s := e.store(t, 0)
		var mu sync.Mutex
		uploads := 0
		e.faults.set(func(w http.ResponseWriter, r *http.Request, next http.Handler) bool {
			mu.Lock()
			defer mu.Unlock()
			if kind(r) != "upload" {
				return false
			}
			if uploads++; uploads > 1 {
				return false
			}
			if rec := record(r, next); rec.Code != http.StatusOK {
				t.Errorf("first upload: %d %s", rec.Code, rec.Body)
			}
			reset(w)
			return true
		})
		data := "mass,velocity\n1,2\n"
		_, err := write(context.Background(), s, "lost/a.csv", []byte(data), c.o)
		mu.Lock()
		n := uploads
		mu.Unlock()
		if n != 2 || !errors.Is(err, c.want) {
			t.Errorf("%+v: %d uploads, err = %v; want 2 and %v", c.o, n, err, c.want)
		}
		if got, _ := e.content(t, "lost/a.csv"); got != data {
			t.Errorf("%+v: object is %q", c.o, got)
		}
	}
}

// TestAbandon: after a failed write, a cancelled context or Abort, Close
// commits nothing, however much was uploaded already.
func TestAbandon(t *testing.T) {
	t.Run("resumable", func(t *testing.T) { testAbandon(t, resumable...) })
	t.Run("parallel", func(t *testing.T) { testAbandon(t) })
}

func testAbandon(t *testing.T, opts ...Option) {
	e := newEnv(t, false)
	s := e.store(t, 0, opts...)
	data := pattern(20 << 20)
	for _, c := range []struct {
		name string
		stop func(w io.WriteCloser, cancel context.CancelFunc)
	}{
		{"cancel", func(_ io.WriteCloser, cancel context.CancelFunc) { cancel() }},
		{"abort", func(w io.WriteCloser, _ context.CancelFunc) { w.(interface{ Abort() }).Abort() }},
	} {
		key := "abandon/" + c.name
		ctx, cancel := context.WithCancel(context.Background())
		w, err := s.NewWriter(ctx, key, compute.WriteOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(data); err != nil { // two chunks sent, one buffered
			t.Fatal(err)
		}
		c.stop(w, cancel)
		if _, err := w.Write([]byte("more")); err == nil {
			t.Errorf("%s: Write after stop succeeded", c.name)
		}
		if err := w.Close(); err == nil {
			t.Errorf("%s: Close succeeded", c.name)
		}
		if err := w.Close(); err == nil {
			t.Errorf("%s: second Close succeeded", c.name)
		}
		if _, ok := e.content(t, key); ok {
			t.Errorf("%s: object published", c.name)
		}
		cancel()
	}
	// Close twice; Abort after Close does nothing.
	w, _ := s.NewWriter(context.Background(), "abandon/closed", compute.WriteOptions{})
	w.Write([]byte("x"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w.(interface{ Abort() }).Abort()
	if err := w.Close(); err == nil {
		t.Error("second Close succeeded")
	}
	if got, _ := e.content(t, "abandon/closed"); got != "x" {
		t.Errorf("object is %q", got)
	}
	e.assertNoTemps(t)
}

// assertNoTemps fails the test if an object, of any generation, is left
// under TempPrefix.
func (e *env) assertNoTemps(t *testing.T) {
	t.Helper()
	if names := e.temps(t); len(names) > 0 {
		t.Errorf("temporary objects left behind: %v", names)
	}
}

// temps lists the objects under TempPrefix, of every generation, through
// the client.
func (e *env) temps(t *testing.T) []string {
	t.Helper()
	client, err := storage.NewClient(context.Background(),
		option.WithEndpoint(e.url+"/storage/v1/"), option.WithoutAuthentication(), storage.WithJSONReads())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	var names []string
	it := client.Bucket(bucket).Objects(context.Background(), &storage.Query{Prefix: TempPrefix, Versions: true})
	for {
		attrs, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return names
		}
		if err != nil {
			t.Fatalf("list %s: %v", TempPrefix, err)
		}
		names = append(names, fmt.Sprintf("%s#%d", attrs.Name, attrs.Generation))
	}
}

// TestErrorKinds: errors answered by the service keep their text and
// match their storage kind.
func TestErrorKinds(t *testing.T) {
	for _, c := range []struct {
		code int
		kind error
	}{
		{http.StatusUnauthorized, compute.ErrPermission},
		{http.StatusForbidden, compute.ErrPermission},
		{http.StatusNotFound, compute.ErrNotFound},
		{http.StatusTooManyRequests, compute.ErrTransient},
		{http.StatusServiceUnavailable, compute.ErrTransient},
		{http.StatusBadRequest, nil},
	} {
		e := newEnv(t, false)
		s := e.store(t, 2)
		e.put("kinds/a.csv", "a")
		e.faults.set(func(w http.ResponseWriter, r *http.Request, next http.Handler) bool {
			if strings.HasSuffix(r.URL.Path, "/b/"+bucket) {
				return false // the bucket is there: the 404 is the object's
			}
			fail(w, r, c.code)
			return true
		})
		_, _, err := storetest.Get(t, s, "kinds/a.csv", compute.ReadOptions{})
		checkKind(t, "read", c.code, err, c.kind)
		if c.code == http.StatusTooManyRequests || c.code >= 500 {
			continue // writes retry these until the context ends
		}
		_, err = write(context.Background(), s, "kinds/b.csv", []byte("b"), compute.WriteOptions{})
		checkKind(t, "write", c.code, err, c.kind)
	}
}

// TestMissingBucket: Cloud Storage answers a missing bucket and a missing
// object alike (404); the store tells them apart, and names the bucket.
func TestMissingBucket(t *testing.T) {
	e := newEnv(t, false)
	s := NewFromClient(e.store(t, 2).client, "no-such-bucket")
	_, _, rerr := storetest.Get(t, s, "a.csv", compute.ReadOptions{})
	_, werr := write(context.Background(), s, "b.csv", []byte("b"), compute.WriteOptions{})
	for op, err := range map[string]error{"read": rerr, "write": werr} {
		want := op + ` gs://no-such-bucket/` + map[string]string{"read": "a", "write": "b"}[op] +
			`.csv: bucket "no-such-bucket" does not exist: create it, or correct the name`
		if err == nil || err.Error() != want || !errors.Is(err, compute.ErrBucketNotFound) || errors.Is(err, compute.ErrNotFound) {
			t.Errorf("%s: err = %v, want %q of kind ErrBucketNotFound only", op, err, want)
		}
	}
	// A missing object in a bucket that exists is still just that.
	_, _, err := storetest.Get(t, e.store(t, 2), "no/such.csv", compute.ReadOptions{})
	if !errors.Is(err, compute.ErrNotFound) || errors.Is(err, compute.ErrBucketNotFound) {
		t.Errorf("missing object: err = %v, want ErrNotFound", err)
	}
}

func checkKind(t *testing.T, op string, code int, err, kind error) {
	t.Helper()
	if err == nil {
		t.Errorf("%s, %d: no error", op, code)
		return
	}
	if !strings.Contains(err.Error(), "injected") || !strings.Contains(err.Error(), "gs://"+bucket+"/kinds/") {
		t.Errorf("%s, %d: error text %q lacks the URL or the service's message", op, code, err)
	}
	var ge *googleapi.Error
	if !errors.As(err, &ge) || ge.Code != code {
		t.Errorf("%s, %d: %v does not wrap the googleapi.Error", op, code, err)
	}
	for _, k := range []error{compute.ErrNotFound, compute.ErrPermission, compute.ErrExists, compute.ErrTransient, compute.ErrInvalidKey} {
		if errors.Is(err, k) != (k == kind) {
			t.Errorf("%s, %d: errors.Is(%v, %v) = %v", op, code, err, k, !(k == kind))
		}
	}
}

// TestKindOf covers what the loopback server cannot produce: gRPC
// statuses, timeouts and socket errors.
func TestKindOf(t *testing.T) {
	timeout := &url.Error{Op: "Get", URL: "http://x", Err: &net.OpError{Op: "dial", Err: timeoutErr{}}}
	for _, c := range []struct {
		err     error
		writing bool
		want    error
	}{
		{fmt.Errorf("%w: %w", storage.ErrObjectNotExist, &googleapi.Error{Code: 404}), false, compute.ErrNotFound},
		{storage.ErrBucketNotExist, true, compute.ErrBucketNotFound},
		{&googleapi.Error{Code: 412}, true, compute.ErrExists},
		{&googleapi.Error{Code: 412}, false, compute.ErrNotFound},
		{&googleapi.Error{Code: 408}, false, compute.ErrTransient},
		{&googleapi.Error{Code: 502}, true, compute.ErrTransient},
		{&googleapi.Error{Code: 416}, false, nil},
		{status.Error(codes.PermissionDenied, "no"), false, compute.ErrPermission},
		{status.Error(codes.Unauthenticated, "no"), true, compute.ErrPermission},
		{status.Error(codes.FailedPrecondition, "exists"), true, compute.ErrExists},
		{status.Error(codes.Unavailable, "later"), false, compute.ErrTransient},
		{status.Error(codes.InvalidArgument, "bad"), false, nil},
		{context.DeadlineExceeded, false, compute.ErrTransient},
		{fmt.Errorf("read: %w", context.Canceled), true, nil},
		{timeout, false, compute.ErrTransient},
		{&url.Error{Op: "Put", URL: "http://x", Err: &net.OpError{Op: "write", Err: syscall.ECONNRESET}}, true, compute.ErrTransient},
		{&url.Error{Op: "Put", URL: "http://x", Err: &net.OpError{Op: "write", Err: syscall.EPIPE}}, true, compute.ErrTransient},
		{fmt.Errorf("read body: %w", io.ErrUnexpectedEOF), false, compute.ErrTransient},
		{errors.New("storage: bad CRC on read: got 1, want 2"), false, compute.ErrTransient},
		{errors.New("storage: object name is not valid"), true, nil},
	} {
		if got := kindOf(c.err, c.writing); got != c.want {
			t.Errorf("kindOf(%v, writing %v) = %v, want %v", c.err, c.writing, got, c.want)
		}
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }
