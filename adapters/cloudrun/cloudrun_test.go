package cloudrun_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/storage"
	"github.com/fsouza/fake-gcs-server/fakestorage"
	"github.com/googleapis/gax-go/v2"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"

	"github.com/momentum-run/momentum/adapters/cloudrun"
	"github.com/momentum-run/momentum/adapters/codec"
	"github.com/momentum-run/momentum/adapters/gcs"
	"github.com/momentum-run/momentum/adapters/rejects"
	"github.com/momentum-run/momentum/adapters/storetest"
	"github.com/momentum-run/momentum/compute"
)

// fixture is the service on an in-process Cloud Storage server
// (fake-gcs-server on loopback, the versioned bucket "data"), reached
// through the real client, whose transport can be made to answer 503.
type fixture struct {
	t      *testing.T
	client *storage.Client
	srv    *httptest.Server
	svc    *cloudrun.Service
	log    *syncBuffer
	fail   atomic.Int64 // storage requests still to fail
	failed atomic.Int64 // storage requests failed so far
	// Set before fail, when the default will not do:
	failStatus int                      // the status of a failed request; 0 means 503
	failOnly   func(*http.Request) bool // the requests that can fail; nil means all
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// lines are the JSON log lines at a severity, or all of them for "".
func (b *syncBuffer) lines(severity string) []map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(b.buf.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && (severity == "" || rec["severity"] == severity) {
			out = append(out, rec)
		}
	}
	return out
}

// flaky is the storage client's transport: while f.fail is positive,
// each request is answered 503 (or f.failStatus) on the client's side of
// the connection, as a Cloud Storage front end would in an outage.
type flaky struct {
	f    *fixture
	next http.RoundTripper
}

func (t flaky) RoundTrip(req *http.Request) (*http.Response, error) {
	if (t.f.failOnly == nil || t.f.failOnly(req)) && t.f.takeFailure() {
		status := t.f.failStatus
		if status == 0 {
			status = http.StatusServiceUnavailable
		}
		if req.Body != nil {
			req.Body.Close()
		}
		body := fmt.Sprintf(`{"error":{"code":%d,"message":"%s","errors":[{"reason":"refused"}]}}`, status, http.StatusText(status))
		return &http.Response{
			StatusCode: status, Status: fmt.Sprintf("%d %s", status, http.StatusText(status)),
			Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header:        http.Header{"Content-Type": {"application/json"}},
			Body:          io.NopCloser(strings.NewReader(body)),
			ContentLength: int64(len(body)),
			Request:       req,
		}, nil
	}
	return t.next.RoundTrip(req)
}

// takeFailure reports whether the next storage request is to fail.
func (f *fixture) takeFailure() bool {
	for {
		n := f.fail.Load()
		if n <= 0 {
			return false
		}
		if f.fail.CompareAndSwap(n, n-1) {
			f.failed.Add(1)
			return true
		}
	}
}

func newFixture(t *testing.T, opts compute.Options) *fixture {
	t.Helper()
	f := &fixture{t: t, log: &syncBuffer{}}
	gsrv := httptest.NewUnstartedServer(nil)
	fake, err := fakestorage.NewServerWithOptions(fakestorage.Options{
		Scheme: "http", Host: "127.0.0.1", PublicHost: gsrv.Listener.Addr().String(), NoListener: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	fake.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: "data", VersioningEnabled: true})
	gsrv.Config.Handler = storetest.GCSCompose(storetest.OneGenerationReadAtATime(fake.HTTPHandler()))
	gsrv.Start()
	t.Cleanup(func() { gsrv.Close(); fake.Stop() })
	hc := &http.Client{Transport: flaky{f: f, next: http.DefaultTransport.(*http.Transport).Clone()}}
	f.client, err = storage.NewClient(context.Background(), option.WithEndpoint(gsrv.URL+"/storage/v1/"),
		option.WithHTTPClient(hc), storage.WithJSONReads())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.client.Close() })
	// Quick retries, so that an outage shows in milliseconds.
	f.client.SetRetry(storage.WithBackoff(gax.Backoff{Initial: time.Millisecond, Max: 10 * time.Millisecond}))
	f.svc = &cloudrun.Service{
		Route: compute.Route{From: compute.Place{Bucket: "data", Prefix: "incoming/"}, To: compute.Place{Bucket: "data", Prefix: "momentum/"}},
		Bucket: func(ctx context.Context, name string) (compute.Store, error) {
			return gcs.NewFromClient(f.client, name), nil
		},
		Options: opts,
		Logger:  cloudrun.NewLogger(f.log, "test-project", slog.LevelInfo),
	}
	f.srv = httptest.NewServer(f.svc.Handler())
	t.Cleanup(f.srv.Close)
	return f
}

// outputs are the names of the objects under the output prefix.
func (f *fixture) outputs() []string {
	f.t.Helper()
	return f.list("momentum/", false)
}

// list names the objects under prefix, with versions those of every
// generation.
func (f *fixture) list(prefix string, versions bool) []string {
	f.t.Helper()
	var names []string
	it := f.client.Bucket("data").Objects(context.Background(), &storage.Query{Prefix: prefix, Versions: versions})
	for {
		attrs, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return names
		}
		if err != nil {
			f.t.Fatal(err)
		}
		names = append(names, attrs.Name)
	}
}

func (f *fixture) upload(name string, body []byte) int64 {
	f.t.Helper()
	w := f.client.Bucket("data").Object(name).NewWriter(context.Background())
	w.Write(body)
	if err := w.Close(); err != nil {
		f.t.Fatal(err)
	}
	return w.Attrs().Generation
}

func (f *fixture) get(name string) ([]byte, bool) {
	f.t.Helper()
	r, err := f.client.Bucket("data").Object(name).NewReader(context.Background())
	if errors.Is(err, storage.ErrObjectNotExist) {
		return nil, false
	}
	if err != nil {
		f.t.Fatal(err)
	}
	defer r.Close()
	b, _ := io.ReadAll(r)
	return b, true
}

// data is the StorageObjectData of an object, from the saved fixture;
// generation "" leaves it a string, as Cloud Storage sends it, and a
// numeric generation with asNumber makes it a JSON number.
func data(t *testing.T, name string, generation int64, asNumber bool) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "cloudrun", "finalized-data.json"))
	if err != nil {
		t.Fatal(err)
	}
	gen := strconv.FormatInt(generation, 10)
	if asNumber {
		b = bytes.Replace(b, []byte(`"generation": "GENERATION"`), []byte(`"generation": `+gen), 1)
	}
	return []byte(strings.NewReplacer("BUCKET", "data", "NAME", name, "GENERATION", gen).Replace(string(b)))
}

// binaryEvent is a request in binary content mode.
func (f *fixture) binaryEvent(ceType string, body []byte) *http.Request {
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Ce-Specversion", "1.0")
	req.Header.Set("Ce-Type", ceType)
	req.Header.Set("Ce-Source", "//storage.googleapis.com/projects/_/buckets/data")
	req.Header.Set("Ce-Id", "1234567890")
	req.Header.Set("Ce-Subject", "objects/x")
	return req
}

// structuredEvent is a request in structured content mode, from the saved
// fixture.
func (f *fixture) structuredEvent(t *testing.T, name string, generation int64) *http.Request {
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "cloudrun", "finalized-structured.json"))
	if err != nil {
		t.Fatal(err)
	}
	b = []byte(strings.NewReplacer("BUCKET", "data", "NAME", name, "GENERATION", strconv.FormatInt(generation, 10)).Replace(string(b)))
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/", bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/cloudevents+json; charset=utf-8")
	return req
}

func do(t *testing.T, req *http.Request) (int, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func testdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestEvents(t *testing.T) {
	particles, golden := testdata(t, "particles.csv"), testdata(t, "particles.golden")
	tests := []struct {
		name    string
		request func(f *fixture) *http.Request
		status  int
		outcome string
		output  string // object expected, with golden content
		outputs string // the objects under the output prefix afterwards, space-separated
	}{
		{"binary, generation a string", func(f *fixture) *http.Request {
			return f.binaryEvent("google.cloud.storage.object.v1.finalized", data(t, "incoming/p.csv", f.upload("incoming/p.csv", particles), false))
		}, 200, "done", "momentum/p.csv", "momentum/p.csv"},
		{"binary, generation a number", func(f *fixture) *http.Request {
			return f.binaryEvent("google.cloud.storage.object.v1.finalized", data(t, "incoming/p.csv", f.upload("incoming/p.csv", particles), true))
		}, 200, "done", "momentum/p.csv", "momentum/p.csv"},
		{"structured", func(f *fixture) *http.Request {
			return f.structuredEvent(t, "incoming/dir/p q.csv", f.upload("incoming/dir/p q.csv", particles))
		}, 200, "done", "momentum/dir/p q.csv", "momentum/dir/p q.csv"},
		{"an output", func(f *fixture) *http.Request {
			return f.binaryEvent("google.cloud.storage.object.v1.finalized", data(t, "momentum/p.csv", f.upload("momentum/p.csv", golden), false))
		}, 200, "already-processed", "", "momentum/p.csv"},
		{"a processed file", func(f *fixture) *http.Request {
			return f.binaryEvent("google.cloud.storage.object.v1.finalized", data(t, "incoming/p.csv", f.upload("incoming/p.csv", golden), false))
		}, 200, "already-processed", "", ""},
		{"outside the input prefix", func(f *fixture) *http.Request {
			return f.binaryEvent("google.cloud.storage.object.v1.finalized", data(t, "other/p.csv", f.upload("other/p.csv", particles), false))
		}, 200, "ignored", "", ""},
		{"a deletion", func(f *fixture) *http.Request {
			return f.binaryEvent("google.cloud.storage.object.v1.deleted", data(t, "incoming/p.csv", 1, false))
		}, 200, "ignored", "", ""},
		{"not JSON", func(f *fixture) *http.Request {
			return f.binaryEvent("google.cloud.storage.object.v1.finalized", []byte("{"))
		}, 400, "malformed", "", ""},
		{"no bucket", func(f *fixture) *http.Request {
			return f.binaryEvent("google.cloud.storage.object.v1.finalized", []byte(`{"name":"incoming/p.csv"}`))
		}, 400, "malformed", "", ""},
		{"a bad generation", func(f *fixture) *http.Request {
			return f.binaryEvent("google.cloud.storage.object.v1.finalized", []byte(`{"bucket":"data","name":"incoming/p.csv","generation":"soon"}`))
		}, 400, "malformed", "", ""},
		{"not a CloudEvent", func(f *fixture) *http.Request {
			req := f.binaryEvent("google.cloud.storage.object.v1.finalized", data(t, "incoming/p.csv", 1, false))
			req.Header.Del("Ce-Specversion")
			return req
		}, 400, "malformed", "", ""},
		{"specversion 0.3", func(f *fixture) *http.Request {
			req := f.binaryEvent("google.cloud.storage.object.v1.finalized", data(t, "incoming/p.csv", 1, false))
			req.Header.Set("Ce-Specversion", "0.3")
			return req
		}, 400, "malformed", "", ""},
		{"no ce-type", func(f *fixture) *http.Request {
			req := f.binaryEvent("google.cloud.storage.object.v1.finalized", data(t, "incoming/p.csv", 1, false))
			req.Header.Del("Ce-Type")
			return req
		}, 400, "malformed", "", ""},
		{"structured, no name", func(f *fixture) *http.Request {
			req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/", strings.NewReader(
				`{"specversion":"1.0","id":"1","source":"//storage.googleapis.com/projects/_/buckets/data","type":"google.cloud.storage.object.v1.finalized","data":{"bucket":"data"}}`))
			req.Header.Set("Content-Type", "application/cloudevents+json")
			return req
		}, 400, "malformed", "", ""},
		{"structured, another type", func(f *fixture) *http.Request {
			req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/", strings.NewReader(
				`{"specversion":"1.0","id":"1","source":"//storage.googleapis.com/projects/_/buckets/data","type":"google.cloud.storage.object.v1.archived","data":{}}`))
			req.Header.Set("Content-Type", "application/cloudevents+json")
			return req
		}, 200, "ignored", "", ""},
		{"structured, data_base64", func(f *fixture) *http.Request {
			gen := f.upload("incoming/p.csv", particles)
			ev, _ := json.Marshal(map[string]any{
				"specversion": "1.0", "id": "1", "source": "//storage.googleapis.com/projects/_/buckets/data",
				"type": "google.cloud.storage.object.v1.finalized", "datacontenttype": "application/json",
				"data_base64": data(t, "incoming/p.csv", gen, false), // a []byte, in base64
			})
			req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/", bytes.NewReader(ev))
			req.Header.Set("Content-Type", "application/cloudevents+json")
			return req
		}, 200, "done", "momentum/p.csv", "momentum/p.csv"},
		{"a folder marker", func(f *fixture) *http.Request {
			return f.binaryEvent("google.cloud.storage.object.v1.finalized", data(t, "incoming/dir/", f.upload("incoming/dir/", nil), false))
		}, 200, "ignored", "", ""},
		{"an event too large, chunked", func(f *fixture) *http.Request {
			req := f.binaryEvent("google.cloud.storage.object.v1.finalized", nil)
			req.Body = io.NopCloser(io.MultiReader(strings.NewReader("{"), bytes.NewReader(bytes.Repeat([]byte(" "), 2<<20))))
			req.ContentLength = -1
			return req
		}, 413, "malformed", "", ""},
		{"structured, not JSON", func(f *fixture) *http.Request {
			req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/", strings.NewReader("{"))
			req.Header.Set("Content-Type", "application/cloudevents+json")
			return req
		}, 400, "malformed", "", ""},
		{"an event too large", func(f *fixture) *http.Request {
			return f.binaryEvent("google.cloud.storage.object.v1.finalized", bytes.Repeat([]byte(" "), 2<<20))
		}, 413, "malformed", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, compute.Options{})
			status, body := do(t, tt.request(f))
			if status != tt.status {
				t.Fatalf("status %d, want %d: %s", status, tt.status, body)
			}
			if tt.outcome != "" && !strings.Contains(body, `"outcome":"`+tt.outcome+`"`) {
				t.Errorf("answer %s, want outcome %s", body, tt.outcome)
			}
			if tt.output != "" {
				if got, ok := f.get(tt.output); !ok || !bytes.Equal(got, golden) {
					t.Errorf("output %s: %q", tt.output, got)
				}
			}
			if got := strings.Join(f.outputs(), " "); got != tt.outputs {
				t.Errorf("objects under momentum/: %q, want %q", got, tt.outputs)
			}
			if errs := f.log.lines("ERROR"); len(errs) != 0 {
				t.Errorf("ERROR lines: %v", errs)
			}
		})
	}
}

func TestEventFailures(t *testing.T) {
	t.Run("bad data", func(t *testing.T) {
		f := newFixture(t, compute.Options{})
		gen := f.upload("incoming/bad.csv", []byte("mass,velocity\n1,2\n3,abc\n"))
		req := f.binaryEvent("google.cloud.storage.object.v1.finalized", data(t, "incoming/bad.csv", gen, false))
		req.Header.Set("X-Cloud-Trace-Context", "105445aa7843bc8bf206b12000100000/255;o=1")
		if status, body := do(t, req); status != 200 || !strings.Contains(body, `"failed"`) {
			t.Fatalf("%d %s", status, body)
		}
		if _, ok := f.get("momentum/bad.csv"); ok {
			t.Error("output written")
		}
		if rep, ok := f.get("momentum/bad.error.json"); !ok || !strings.Contains(string(rep), `"line": 3`) {
			t.Errorf("report %s", rep)
		}
		errs := f.log.lines("ERROR")
		if len(errs) != 1 || errs[0]["object"] != "incoming/bad.csv" || errs[0]["line"] != 3.0 || errs[0]["column"] != "velocity" ||
			errs[0]["generation"] != strconv.FormatInt(gen, 10) || errs[0]["message"] == nil {
			t.Errorf("ERROR lines %v", errs)
		}
		if len(errs) == 1 && (errs[0]["logging.googleapis.com/trace"] != "projects/test-project/traces/105445aa7843bc8bf206b12000100000" ||
			errs[0]["logging.googleapis.com/spanId"] != "00000000000000ff") {
			t.Errorf("trace fields %v", errs[0])
		}
	})
	t.Run("object gone", func(t *testing.T) {
		f := newFixture(t, compute.Options{})
		gen := f.upload("incoming/gone.csv", []byte("mass,velocity\n1,2\n"))
		f.upload("incoming/gone.csv", []byte("mass,velocity\n3,4\n")) // the event's generation is no longer live
		f.client.Bucket("data").Object("incoming/gone.csv").Generation(gen).Delete(context.Background())
		status, body := do(t, f.binaryEvent("google.cloud.storage.object.v1.finalized", data(t, "incoming/gone.csv", gen, false)))
		if status != 200 || !strings.Contains(body, `"failed"`) {
			t.Fatalf("%d %s", status, body)
		}
		if _, ok := f.get("momentum/gone.error.json"); !ok {
			t.Error("no report")
		}
	})
	t.Run("wrong generation", func(t *testing.T) {
		f := newFixture(t, compute.Options{})
		gen := f.upload("incoming/wrong.csv", []byte("mass,velocity\n1,2\n"))
		status, body := do(t, f.binaryEvent("google.cloud.storage.object.v1.finalized", data(t, "incoming/wrong.csv", gen+1000, true)))
		if status != 200 || !strings.Contains(body, `"failed"`) {
			t.Fatalf("%d %s", status, body)
		}
		if rep, ok := f.get("momentum/wrong.error.json"); !ok || !strings.Contains(string(rep), "not found") {
			t.Errorf("report %q", rep)
		}
		if got := f.outputs(); len(got) != 1 {
			t.Errorf("objects under momentum/: %q, want only the report", got)
		}
		if errs := f.log.lines("ERROR"); len(errs) != 1 || errs[0]["generation"] != strconv.FormatInt(gen+1000, 10) {
			t.Errorf("ERROR lines %v", errs)
		}
	})
	t.Run("transient", func(t *testing.T) {
		f := newFixture(t, compute.Options{})
		gen := f.upload("incoming/flaky.csv", testdata(t, "particles.csv"))
		f.fail.Store(1000) // more than the client's retries of a request
		req := f.binaryEvent("google.cloud.storage.object.v1.finalized", data(t, "incoming/flaky.csv", gen, false))
		status, body := do(t, req)
		if status != http.StatusServiceUnavailable || !strings.Contains(body, `"retry"`) {
			t.Fatalf("during an outage: %d %s, want 503", status, body)
		}
		if f.failed.Load() == 0 {
			t.Fatal("no storage request failed")
		}
		f.fail.Store(0)
		if got := f.outputs(); len(got) != 0 {
			t.Errorf("objects under momentum/ after a transient failure: %q", got)
		}
		if errs := f.log.lines("ERROR"); len(errs) != 0 {
			t.Errorf("a transient failure logged ERROR: %v", errs)
		}
		// Eventarc redelivers the same event.
		req = f.binaryEvent("google.cloud.storage.object.v1.finalized", data(t, "incoming/flaky.csv", gen, false))
		if status, body := do(t, req); status != 200 || !strings.Contains(body, `"done"`) {
			t.Errorf("redelivery: %d %s", status, body)
		}
		if got, _ := f.get("momentum/flaky.csv"); !bytes.Equal(got, testdata(t, "particles.golden")) {
			t.Errorf("output after redelivery %q", got)
		}
	})
	t.Run("upload refused", func(t *testing.T) {
		// The duplicate check and the read succeed, the upload is refused
		// with 403 (a permission not granted yet): nothing is committed,
		// the answer is 503, and the redelivery works.
		f := newFixture(t, compute.Options{})
		gen := f.upload("incoming/mid.csv", testdata(t, "particles.csv"))
		f.failStatus = http.StatusForbidden
		f.failOnly = func(r *http.Request) bool { return strings.HasPrefix(r.URL.Path, "/upload/") }
		f.fail.Store(1000)
		event := func() *http.Request {
			return f.binaryEvent("google.cloud.storage.object.v1.finalized", data(t, "incoming/mid.csv", gen, false))
		}
		if status, body := do(t, event()); status != http.StatusServiceUnavailable || !strings.Contains(body, "permission denied") {
			t.Fatalf("%d %s, want 503 for a permission denied", status, body)
		}
		if f.failed.Load() == 0 {
			t.Fatal("no upload was refused")
		}
		f.fail.Store(0)
		if got := f.outputs(); len(got) != 0 {
			t.Errorf("objects under momentum/: %q", got)
		}
		if status, body := do(t, event()); status != 200 || !strings.Contains(body, `"done"`) {
			t.Errorf("redelivery: %d %s", status, body)
		}
	})
	t.Run("skip mode", func(t *testing.T) {
		f := newFixture(t, compute.Options{OnError: compute.OnErrorSkip, NewRejectWriter: rejects.NewWriter})
		gen := f.upload("incoming/mixed.csv", []byte("mass,velocity\n1,2\n3,abc\n"))
		if status, body := do(t, f.binaryEvent("google.cloud.storage.object.v1.finalized", data(t, "incoming/mixed.csv", gen, false))); status != 200 {
			t.Fatalf("%d %s", status, body)
		}
		if got, _ := f.get("momentum/mixed.csv"); string(got) != "mass,velocity,momentum\n1,2,2\n" {
			t.Errorf("output %q", got)
		}
		if got, _ := f.get("momentum/mixed.rejects.csv"); !strings.Contains(string(got), "3,velocity") {
			t.Errorf("rejects %q", got)
		}
	})
}

func TestBusy(t *testing.T) {
	f := newFixture(t, compute.Options{})
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	store := f.svc.Bucket
	f.svc.Bucket = func(ctx context.Context, name string) (compute.Store, error) {
		entered <- struct{}{}
		<-release
		return store(ctx, name)
	}
	f.svc.MaxJobs = 1
	srv := httptest.NewServer(f.svc.Handler())
	defer srv.Close()
	gen := f.upload("incoming/a.csv", testdata(t, "particles.csv"))
	event := func() *http.Request {
		req := f.binaryEvent("google.cloud.storage.object.v1.finalized", data(t, "incoming/a.csv", gen, false))
		req.URL.Host = strings.TrimPrefix(srv.URL, "http://")
		return req
	}
	first := make(chan int)
	go func() { s, _ := do(t, event()); first <- s }()
	<-entered
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(event()) // not queued: refused at once
	if err != nil {
		close(release)
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Errorf("second event while busy: %d, Retry-After %q; want 429 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	close(release)
	if s := <-first; s != 200 {
		t.Errorf("first event: %d", s)
	}
}

func TestSync(t *testing.T) {
	f := newFixture(t, compute.Options{})
	post := func(path, contentType string, body []byte) (int, string, http.Header) {
		resp, err := http.Post(f.srv.URL+path, contentType, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header
	}
	tests := []struct {
		name, path, contentType string
		body                    []byte
		status                  int
		want                    string // the whole body, or a part of it after "~"
	}{
		{"csv", "/v1/momentum", "text/csv", testdata(t, "particles.csv"), 200, string(testdata(t, "particles.golden"))},
		{"csv, no type", "/v1/momentum", "", testdata(t, "demo.csv"), 200, string(testdata(t, "demo.golden"))},
		{"csv, options", "/v1/momentum?decimals=3&delimiter=%3B", "text/csv", []byte("mass;velocity\n1;2\n"), 200, "mass;velocity;momentum\n1;2;2.000\n"},
		{"csv, bad data", "/v1/momentum", "text/csv", []byte("mass,velocity\n1,2\n3,x\n"), 422, `~"line":3,"column":"velocity","reason":"not a decimal number: \"x\""`},
		{"csv, bad option", "/v1/momentum?decimals=many", "text/csv", []byte("mass,velocity\n1,2\n"), 400, "~decimals"},
		{"json object", "/v1/momentum", "application/json", []byte(`{"mass":1.23,"velocity":4.56}`), 200, `{"mass":1.23,"velocity":4.56,"momentum":5.6088}` + "\n"},
		{"json array", "/v1/momentum", "application/json", []byte(`[{"mass":2,"velocity":3,"id":"a"},{"mass":0.1,"velocity":0.2}]`), 200,
			`[{"mass":2,"velocity":3,"id":"a","momentum":6},{"mass":0.1,"velocity":0.2,"momentum":0.020000000000000004}]` + "\n"},
		{"json, negative mass", "/v1/momentum", "application/json", []byte(`[{"mass":2,"velocity":3},{"mass":-1,"velocity":3}]`), 422, `~"index":1,"field":"mass"`},
		{"json, a string", "/v1/momentum", "application/json", []byte(`{"mass":"2","velocity":3}`), 422, `~"index":0,"field":"mass"`},
		{"json, not JSON", "/v1/momentum", "application/json", []byte(`{"mass":`), 400, "~JSON"},
		{"json, empty array", "/v1/momentum", "application/json", []byte(`[]`), 200, "[]\n"},
		{"json, options", "/v1/momentum?decimals=2&delimiter=%3B&header=no", "application/json; charset=utf-8", []byte(`[{"mass":1e3,"velocity":-0.5}]`), 200,
			`[{"mass":1e3,"velocity":-0.5,"momentum":-500.00}]` + "\n"},
		{"json, missing velocity", "/v1/momentum", "application/json", []byte(`[{"mass":1}]`), 422, `~"index":0,"field":"velocity","reason":"missing"`},
		{"json, has momentum", "/v1/momentum", "application/json", []byte(`{"mass":1,"velocity":2,"momentum":2}`), 422, `~"field":"momentum"`},
		{"json, not objects", "/v1/momentum", "application/json", []byte(`[{"mass":1,"velocity":2},3]`), 422, `~"index":1`},
		{"json, a string", "/v1/momentum", "application/json", []byte(`"mass"`), 400, "~JSON"},
		{"json, out of range", "/v1/momentum", "application/json", []byte(`{"mass":1e400,"velocity":2}`), 422, `~"field":"mass","reason":"number out of float64 range`},
		{"csv, headerless", "/v1/momentum?header=no", "text/csv; charset=utf-8", []byte("1,2\n3,4\n"), 200, "1,2,2\n3,4,12\n"},
		{"csv, tab", "/v1/momentum?delimiter=tab", "text/csv", []byte("mass\tvelocity\n1\t2\n"), 200, "mass\tvelocity\tmomentum\n1\t2\t2\n"},
		{"csv, empty", "/v1/momentum", "text/csv", nil, 422, `~"line":1,"reason":"empty input"`},
		{"csv, processed", "/v1/momentum", "text/csv", testdata(t, "particles.golden"), 422, `~already processed`},
		{"csv, bad header option", "/v1/momentum?header=maybe", "text/csv", []byte("mass,velocity\n1,2\n"), 400, "~header"},
		{"csv, bad delimiter", "/v1/momentum?delimiter=%22", "text/csv", []byte("mass,velocity\n1,2\n"), 400, "~delimiter"},
		{"csv, quotes=lazy", "/v1/momentum?quotes=lazy", "text/csv", []byte("height,mass,velocity\n5'10\",1,2\n"), 200, "height,mass,velocity,momentum\n5'10\",1,2,2\n"},
		{"csv, strict quotes", "/v1/momentum?quotes=strict", "text/csv", []byte("height,mass,velocity\n5'10\",1,2\n"), 422, `~"line":2,"column":"height","reason":"bare \" in unquoted field"`},
		{"csv, bad quotes", "/v1/momentum?quotes=loose", "text/csv", []byte("mass,velocity\n1,2\n"), 400, "~quotes"},
		{"csv, decimals out of range", "/v1/momentum?decimals=101", "text/csv", []byte("mass,velocity\n1,2\n"), 400, "~decimals"},
		{"csv, decimals golden", "/v1/momentum?decimals=3", "text/csv", testdata(t, "demo.csv"), 200, string(testdata(t, "demo-decimals3.golden"))},
		{"csv, columns golden", "/v1/momentum?delimiter=%3B&mass=MASSE&velocity=geschwindigkeit", "text/csv", testdata(t, "semicolon.csv"), 200, string(testdata(t, "semicolon.golden"))},
		{"csv, columns", "/v1/momentum?mass=m&velocity=v&momentum=p", "text/csv", []byte("v,m\n3,2\n"), 200, "v,m,p\n3,2,6\n"},
		{"csv, raw semicolon delimiter", "/v1/momentum?delimiter=;&mass=MASSE&velocity=geschwindigkeit", "text/csv", testdata(t, "semicolon.csv"), 200, string(testdata(t, "semicolon.golden"))},
		{"csv, raw semicolon delimiter last", "/v1/momentum?decimals=1&delimiter=;", "text/csv", []byte("mass;velocity\n1;2\n"), 200, "mass;velocity;momentum\n1;2;2.0\n"},
		{"csv, on_error=fail", "/v1/momentum?on_error=fail", "text/csv", []byte("mass,velocity\n1,2\n"), 200, "mass,velocity,momentum\n1,2,2\n"},
		{"csv, on_error=skip", "/v1/momentum?on_error=skip", "text/csv", []byte("mass,velocity\n1,2\n"), 400, "~always strict"},
		{"csv, empty column name", "/v1/momentum?mass=", "text/csv", []byte("mass,velocity\n1,2\n"), 400, "~mass"},
		{"csv, same column twice", "/v1/momentum?momentum=MASS", "text/csv", []byte("mass,velocity\n1,2\n"), 400, "~same column"},
		{"csv, unknown parameter", "/v1/momentum?decimal=3", "text/csv", []byte("mass,velocity\n1,2\n"), 400, "~unknown query parameter"},
		{"csv, parameter twice", "/v1/momentum?decimals=3&decimals=4", "text/csv", []byte("mass,velocity\n1,2\n"), 400, "~given 2 times"},
		{"csv, header=yes", "/v1/momentum?header=yes", "text/csv", []byte("mass,velocity\n1,2\n"), 200, "mass,velocity,momentum\n1,2,2\n"},
		{"json, order and space", "/v1/momentum", "application/json", []byte(" [ {\"velocity\": 4.56 , \"mass\": 1.23, \"note\": \"a, b\\n\"} ]\n"), 200,
			`[{"velocity":4.56,"mass":1.23,"note":"a, b\n","momentum":5.6088}]` + "\n"},
		{"json, columns", "/v1/momentum?mass=m&velocity=v&momentum=p", "application/json", []byte(`{"v":3,"m":2,"mass":"kg"}`), 200, `{"v":3,"m":2,"mass":"kg","p":6}` + "\n"},
		{"json, given twice", "/v1/momentum", "application/json", []byte(`[{"mass":1,"velocity":2,"mass":3}]`), 422, `~"index":0,"field":"mass","reason":"given twice"`},
		{"json, null", "/v1/momentum", "application/json", []byte(`[{"mass":1,"velocity":2},{"mass":1,"velocity":null}]`), 422, `~"index":1,"field":"velocity","reason":"not a number"`},
		{"json, trailing data", "/v1/momentum", "application/json", []byte(`{"mass":1,"velocity":2} {}`), 400, "~JSON"},
		{"json, empty", "/v1/momentum", "application/json", nil, 400, "~JSON"},
		{"json, cut short", "/v1/momentum", "application/json", []byte(`[{"mass":1,"velocity":2},`), 400, "~JSON"},
		{"json, overflow", "/v1/momentum", "application/json", []byte(`[{"mass":1e200,"velocity":1e200}]`), 422, `~"index":0,"field":"velocity","reason":"momentum overflows float64`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body, header := post(tt.path, tt.contentType, tt.body)
			ok := body == tt.want
			if part, found := strings.CutPrefix(tt.want, "~"); found {
				ok = strings.Contains(body, part)
			}
			if status != tt.status || !ok {
				t.Errorf("%d %q, want %d %q", status, body, tt.status, tt.want)
			}
			// Only a success is CSV; errors and JSON answers are JSON.
			ctype := "application/json"
			if status == 200 && !strings.HasPrefix(tt.contentType, "application/json") {
				ctype = "text/csv; charset=utf-8"
			}
			if got := header.Get("Content-Type"); got != ctype {
				t.Errorf("Content-Type %q, want %q", got, ctype)
			}
			if ctype == "application/json" && !json.Valid([]byte(body)) {
				t.Errorf("not JSON: %q", body)
			}
			if status != 200 && strings.Contains(body, "1,2,2") {
				t.Errorf("a refusal with a partial result: %q", body)
			}
		})
	}
	t.Run("too large", func(t *testing.T) {
		f.svc.MaxBody = 1 << 10
		srv := httptest.NewServer(f.svc.Handler())
		defer srv.Close()
		defer srv.CloseClientConnections() // should a server wait for a body that never comes
		resp, err := http.Post(srv.URL+"/v1/momentum", "text/csv", bytes.NewReader(bytes.Repeat([]byte("1,2\n"), 1<<10)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("%d, want 413", resp.StatusCode)
		}
		// A Content-Length over the limit is refused before the body is
		// read: this body never comes.
		pr, pw := io.Pipe()
		defer pw.Close()
		// The client waits for its body to be read before giving up: end
		// it, should the server wait for it.
		timer := time.AfterFunc(5*time.Second, func() { pw.CloseWithError(errors.New("the server waited for the body")) })
		defer timer.Stop()
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/momentum", pr)
		req.ContentLength = 1<<10 + 1
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("Content-Length over the limit: %d, want 413", resp.StatusCode)
		}
		// Without a Content-Length, the limit still holds.
		resp, err = http.Post(srv.URL+"/v1/momentum", "text/csv", io.MultiReader(strings.NewReader("mass,velocity\n"), bytes.NewReader(bytes.Repeat([]byte("1,2\n"), 1<<10))))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("chunked: %d, want 413", resp.StatusCode)
		}
	})
	t.Run("methods", func(t *testing.T) {
		resp, err := http.Get(f.srv.URL + "/v1/momentum")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed || !strings.Contains(resp.Header.Get("Allow"), "POST") {
			t.Errorf("GET /v1/momentum: %d, Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
		}
		for _, m := range []string{http.MethodGet, http.MethodPut} {
			req, _ := http.NewRequest(m, f.srv.URL+"/", nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "POST" {
				t.Errorf("%s /: %d, Allow %q", m, resp.StatusCode, resp.Header.Get("Allow"))
			}
		}
		req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/healthz", nil)
		if resp, err = http.DefaultClient.Do(req); err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("POST /healthz: %d", resp.StatusCode)
		}
		resp, err = http.Get(f.srv.URL + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "ok\n" {
			t.Errorf("healthz: %d %q", resp.StatusCode, b)
		}
	})
}

// TestSyncQuery: a query the endpoint cannot read whole is a 400 naming
// the parameter, never a request run with part of its options. A raw ';'
// is taken literally only as "delimiter=;", where it cannot be a
// separator (Go's url.ParseQuery drops any pair holding one, and some
// clients separate parameters with it).
func TestSyncQuery(t *testing.T) {
	f := newFixture(t, compute.Options{})
	for _, tt := range []struct {
		query string
		name  string // the parameter the 400 names
		hint  string // and a part of its message
	}{
		{"delimiter=x;y", "delimiter", "%3B"},
		{"delimiter=;;", "delimiter", "%3B"},
		{"delimiter=%3B;", "delimiter", "%3B"},
		{"decimals=3;delimiter=tab", "decimals", "%3B"},
		{"delimiter=;&mass=Masse;kg", "mass", "%3B"},
		{"mass=m;velocity=v", "mass", "%3B"},
		{"a;b=1", "a;b", "%3B"},
		{"mass=%zz", "mass", "invalid URL escape"},
		{"velocity%zz=v", "velocity%zz", "invalid URL escape"},
	} {
		t.Run(tt.query, func(t *testing.T) {
			resp, err := http.Post(f.srv.URL+"/v1/momentum?"+tt.query, "text/csv", strings.NewReader("mass,velocity\n1,2\n"))
			if err != nil {
				t.Fatal(err)
			}
			var e struct{ Error string }
			err = json.NewDecoder(resp.Body).Decode(&e)
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest || err != nil || !strings.Contains(e.Error, tt.hint) ||
				!strings.Contains(e.Error, "query parameter "+strconv.Quote(tt.name)) {
				t.Errorf("%d %q (%v), want 400 naming %q with %q", resp.StatusCode, e.Error, err, tt.name, tt.hint)
			}
		})
	}
}

// heldLogs is a slog.Handler that holds each record with the message
// msg, telling held, until release is closed.
type heldLogs struct {
	slog.Handler
	msg     string
	held    chan<- struct{}
	release <-chan struct{}
}

func (h heldLogs) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.held <- struct{}{}
		<-h.release
	}
	return h.Handler.Handle(ctx, r)
}

func (h heldLogs) WithAttrs(attrs []slog.Attr) slog.Handler {
	h.Handler = h.Handler.WithAttrs(attrs)
	return h
}

func (h heldLogs) WithGroup(name string) slog.Handler {
	h.Handler = h.Handler.WithGroup(name)
	return h
}

// TestSyncBusy: a synchronous request over MaxSync is 503 with
// Retry-After, while events still go through.
func TestSyncBusy(t *testing.T) {
	f := newFixture(t, compute.Options{})
	f.svc.MaxSync = 1
	// The first request is held in its slot, at its log line once its
	// answer is computed.
	held, release := make(chan struct{}), make(chan struct{})
	f.svc.Logger = slog.New(heldLogs{Handler: f.svc.Logger.Handler(), msg: "synchronous request", held: held, release: release})
	srv := httptest.NewServer(f.svc.Handler())
	defer srv.Close()
	first := make(chan int, 1)
	go func() {
		resp, err := http.Post(srv.URL+"/v1/momentum", "text/csv", strings.NewReader("mass,velocity\n1,2\n"))
		if err != nil {
			first <- 0
			return
		}
		resp.Body.Close()
		first <- resp.StatusCode
	}()
	<-held
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Post(srv.URL+"/v1/momentum", "text/csv", strings.NewReader("mass,velocity\n1,2\n"))
	if err != nil {
		close(release)
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("second request: %d, Retry-After %q; want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	gen := f.upload("incoming/p.csv", testdata(t, "particles.csv"))
	req := f.binaryEvent("google.cloud.storage.object.v1.finalized", data(t, "incoming/p.csv", gen, false))
	req.URL.Host = strings.TrimPrefix(srv.URL, "http://")
	if status, body := do(t, req); status != 200 {
		t.Errorf("an event meanwhile: %d %s", status, body)
	}
	close(release)
	if s := <-first; s != 200 {
		t.Errorf("first request: %d", s)
	}
}

// TestServeShutdown: when its context ends, Serve stops accepting, waits
// the grace period for a request in flight, then cancels it, and returns.
func TestServeShutdown(t *testing.T) {
	f := newFixture(t, compute.Options{})
	entered := make(chan struct{})
	cancelled := make(chan struct{})
	store := f.svc.Bucket
	f.svc.Bucket = func(ctx context.Context, name string) (compute.Store, error) {
		close(entered)
		<-ctx.Done() // stands for a job that would outlast the grace period
		close(cancelled)
		return store(ctx, name)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- cloudrun.Serve(ctx, l, f.svc.Handler(), f.svc.Logger, 300*time.Millisecond) }()
	gen := f.upload("incoming/a.csv", testdata(t, "particles.csv"))
	answered := make(chan int, 1)
	go func() {
		req := f.binaryEvent("google.cloud.storage.object.v1.finalized", data(t, "incoming/a.csv", gen, false))
		req.URL.Host = l.Addr().String()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			answered <- 0
			return
		}
		resp.Body.Close()
		answered <- resp.StatusCode
	}()
	<-entered
	start := time.Now()
	stop()
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return")
	}
	if took := time.Since(start); took < 300*time.Millisecond || took > time.Second {
		t.Errorf("Serve returned %v after the stop, want just after the 300ms grace", took)
	}
	select {
	case <-cancelled:
	default:
		t.Error("the request's context was not cancelled")
	}
	if s := <-answered; s == 200 {
		t.Error("the cancelled request was answered 200")
	}
	if _, err := net.DialTimeout("tcp", l.Addr().String(), time.Second); err == nil {
		t.Error("still accepting connections")
	}
	if _, ok := f.get("momentum/a.csv"); ok {
		t.Error("an output was written")
	}
}

func TestDuplicates(t *testing.T) {
	golden := testdata(t, "particles.golden")
	t.Run("redelivered", func(t *testing.T) {
		f := newFixture(t, compute.Options{})
		gen := f.upload("incoming/p.csv", testdata(t, "particles.csv"))
		event := func() *http.Request {
			return f.binaryEvent("google.cloud.storage.object.v1.finalized", data(t, "incoming/p.csv", gen, false))
		}
		if status, body := do(t, event()); status != 200 || !strings.Contains(body, `"done"`) {
			t.Fatalf("first delivery: %d %s", status, body)
		}
		attrs, err := f.client.Bucket("data").Object("momentum/p.csv").Attrs(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if status, body := do(t, event()); status != 200 || !strings.Contains(body, `"duplicate"`) {
			t.Fatalf("second delivery: %d %s", status, body)
		}
		again, err := f.client.Bucket("data").Object("momentum/p.csv").Attrs(context.Background())
		if err != nil || again.Generation != attrs.Generation {
			t.Errorf("the output was rewritten: generation %d, then %d (%v)", attrs.Generation, again.Generation, err)
		}
		if got := f.outputs(); len(got) != 1 {
			t.Errorf("objects under momentum/: %q", got)
		}
	})
	t.Run("concurrent", func(t *testing.T) {
		f := newFixture(t, compute.Options{})
		gen := f.upload("incoming/p.csv", testdata(t, "particles.csv"))
		// Both deliveries are past the duplicate check before either
		// writes: the create-only write settles it.
		var ready sync.WaitGroup
		ready.Add(2)
		store := f.svc.Bucket
		f.svc.Bucket = func(ctx context.Context, name string) (compute.Store, error) {
			st, err := store(ctx, name)
			return &barrier{Store: st, ready: &ready}, err
		}
		srv := httptest.NewServer(f.svc.Handler())
		defer srv.Close()
		bodies := make([]string, 2)
		statuses := make([]int, 2)
		var wg sync.WaitGroup
		for i := range 2 {
			wg.Go(func() {
				req := f.binaryEvent("google.cloud.storage.object.v1.finalized", data(t, "incoming/p.csv", gen, false))
				req.URL.Host = strings.TrimPrefix(srv.URL, "http://")
				statuses[i], bodies[i] = do(t, req)
			})
		}
		wg.Wait()
		outcomes := map[string]int{}
		for i := range 2 {
			if statuses[i] != 200 {
				t.Errorf("delivery %d: %d %s", i, statuses[i], bodies[i])
			}
			var res struct{ Outcome string }
			json.Unmarshal([]byte(bodies[i]), &res)
			outcomes[res.Outcome]++
		}
		if outcomes["done"] != 1 || outcomes["duplicate"] != 1 {
			t.Errorf("outcomes %v, want one done and one duplicate", outcomes)
		}
		if got := f.outputs(); len(got) != 1 {
			t.Errorf("objects under momentum/: %q", got)
		}
		if got, _ := f.get("momentum/p.csv"); !bytes.Equal(got, golden) {
			t.Errorf("output %q", got)
		}
	})
}

// barrier is a store whose writers wait, before writing, until two
// writers exist.
type barrier struct {
	compute.Store
	ready *sync.WaitGroup
	once  sync.Once
}

func (b *barrier) NewWriter(ctx context.Context, key string, o compute.WriteOptions) (io.WriteCloser, error) {
	b.once.Do(func() {
		b.ready.Done()
		b.ready.Wait()
	})
	return b.Store.NewWriter(ctx, key, o)
}

func TestPanic(t *testing.T) {
	f := newFixture(t, compute.Options{})
	f.svc.Bucket = func(ctx context.Context, name string) (compute.Store, error) { panic("a bug") }
	srv := httptest.NewServer(f.svc.Handler())
	defer srv.Close()
	gen := f.upload("incoming/p.csv", testdata(t, "particles.csv"))
	req := f.binaryEvent("google.cloud.storage.object.v1.finalized", data(t, "incoming/p.csv", gen, false))
	req.URL.Host = strings.TrimPrefix(srv.URL, "http://")
	if status, body := do(t, req); status != http.StatusInternalServerError {
		t.Errorf("%d %s, want 500", status, body)
	}
	if errs := f.log.lines("ERROR"); len(errs) != 1 || errs[0]["panic"] != "a bug" {
		t.Errorf("ERROR lines %v", errs)
	}
}

func TestTrace(t *testing.T) {
	tests := []struct {
		name, project, header, value string
		trace, span                  string
	}{
		{"cloud trace, project", "p1", "X-Cloud-Trace-Context", "105445AA7843BC8BF206B12000100000/255;o=1",
			"projects/p1/traces/105445aa7843bc8bf206b12000100000", "00000000000000ff"},
		{"traceparent, project", "p1", "traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
			"projects/p1/traces/4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"},
		{"traceparent, no project", "", "traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
			"4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"},
		{"cloud trace, no span", "", "X-Cloud-Trace-Context", "105445aa7843bc8bf206b12000100000",
			"105445aa7843bc8bf206b12000100000", ""},
		{"garbage", "p1", "traceparent", "zz", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, compute.Options{})
			f.svc.Logger = cloudrun.NewLogger(f.log, tt.project, slog.LevelInfo)
			srv := httptest.NewServer(f.svc.Handler())
			defer srv.Close()
			req := f.binaryEvent("google.cloud.storage.object.v1.deleted", data(t, "incoming/p.csv", 1, false))
			req.URL.Host = strings.TrimPrefix(srv.URL, "http://")
			req.Header.Set(tt.header, tt.value)
			if status, body := do(t, req); status != 200 {
				t.Fatalf("%d %s", status, body)
			}
			lines := f.log.lines("INFO")
			if len(lines) != 1 {
				t.Fatalf("INFO lines %v", lines)
			}
			got := lines[0]
			trace, _ := got["logging.googleapis.com/trace"].(string)
			if tt.project == "" {
				if trace != "" {
					t.Errorf("logging.googleapis.com/trace %q without a project", trace)
				}
				trace, _ = got["trace"].(string)
			}
			span, _ := got["logging.googleapis.com/spanId"].(string)
			if trace != tt.trace || span != tt.span {
				t.Errorf("trace %q span %q, want %q %q", trace, span, tt.trace, tt.span)
			}
			if got["eventId"] != "1234567890" || got["message"] == nil || got["time"] == nil {
				t.Errorf("log line %v", got)
			}
		})
	}
}

func TestLoggerSeverity(t *testing.T) {
	var buf syncBuffer
	log := cloudrun.NewLogger(&buf, "", slog.LevelDebug)
	log.Debug("d")
	log.Info("i")
	log.Warn("w")
	log.Error("e")
	log.Log(context.Background(), slog.LevelError+4, "worse")
	want := [][2]string{{"DEBUG", "d"}, {"INFO", "i"}, {"WARNING", "w"}, {"ERROR", "e"}, {"ERROR", "worse"}}
	lines := buf.lines("")
	if len(lines) != len(want) {
		t.Fatalf("lines %v", lines)
	}
	for i, l := range lines {
		if l["severity"] != want[i][0] || l["message"] != want[i][1] || l["time"] == nil || l["level"] != nil || l["msg"] != nil {
			t.Errorf("line %d: %v, want severity %s message %s", i, l, want[i][0], want[i][1])
		}
	}
}

// TestServeDrain: a request in flight when the context ends finishes
// within the grace period and is answered; Serve returns once it has,
// without waiting for the rest of the grace period.
func TestServeDrain(t *testing.T) {
	f := newFixture(t, compute.Options{})
	entered := make(chan struct{})
	release := make(chan struct{})
	store := f.svc.Bucket
	var once sync.Once
	f.svc.Bucket = func(ctx context.Context, name string) (compute.Store, error) {
		once.Do(func() { close(entered) })
		<-release
		return store(ctx, name)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	served := make(chan error, 1)
	go func() { served <- cloudrun.Serve(ctx, l, f.svc.Handler(), nil, 10*time.Second) }()
	gen := f.upload("incoming/a.csv", testdata(t, "particles.csv"))
	answered := make(chan string, 1)
	go func() {
		req := f.binaryEvent("google.cloud.storage.object.v1.finalized", data(t, "incoming/a.csv", gen, false))
		req.URL.Host = l.Addr().String()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			answered <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		answered <- strconv.Itoa(resp.StatusCode) + " " + string(b)
	}()
	<-entered
	start := time.Now()
	stop()
	time.Sleep(100 * time.Millisecond)
	if _, err := net.DialTimeout("tcp", l.Addr().String(), time.Second); err == nil {
		t.Error("still accepting connections while draining")
	}
	close(release)
	if got := <-answered; !strings.HasPrefix(got, "200 ") || !strings.Contains(got, `"done"`) {
		t.Errorf("the request in flight: %s", got)
	}
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return")
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Serve returned %v after the stop, want as soon as the request was done", took)
	}
	if got, ok := f.get("momentum/a.csv"); !ok || !bytes.Equal(got, testdata(t, "particles.golden")) {
		t.Errorf("output %q", got)
	}
}

// TestSyncAnswerTooLarge: an answer over 2×MaxBody is refused with 413,
// CSV or JSON, rather than held in memory.
func TestSyncAnswerTooLarge(t *testing.T) {
	f := newFixture(t, compute.Options{})
	f.svc.MaxBody = 1 << 10
	srv := httptest.NewServer(f.svc.Handler())
	defer srv.Close()
	csvBody := "mass,velocity\n" + strings.Repeat("0,0\n", 200)
	jsonBody := "[" + strings.Repeat(`{"mass":0,"velocity":0},`, 30) + `{"mass":0,"velocity":0}]`
	tests := []struct {
		name, query, contentType, body string
		status                         int
	}{
		{"csv", "", "text/csv", csvBody, 200},
		{"csv, 100 decimals", "?decimals=100", "text/csv", csvBody, 413},
		{"json", "", "application/json", jsonBody, 200},
		{"json, 100 decimals", "?decimals=100", "application/json", jsonBody, 413},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if len(tt.body) > 1<<10 {
				t.Fatalf("body of %d bytes, over MaxBody", len(tt.body))
			}
			resp, err := http.Post(srv.URL+"/v1/momentum"+tt.query, tt.contentType, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("%d %q, want %d", resp.StatusCode, b, tt.status)
			}
			if tt.status == 413 && (!strings.Contains(string(b), "answer too large") || !json.Valid(b)) {
				t.Errorf("answer %q", b)
			}
		})
	}
}

// TestSyncJSONMatchesCSV: the JSON path gives, for the same numbers, the
// momentum text the CSV path gives, whatever the decimals.
func TestSyncJSONMatchesCSV(t *testing.T) {
	f := newFixture(t, compute.Options{})
	pairs := [][2]string{
		{"1.23", "4.56"}, {"0.1", "0.2"}, {"0", "-0"}, {"1e3", "-0.5"}, {"12345678901234567890", "3"},
		{"2.5E-3", "4e+2"}, {"9007199254740993", "1"}, {"1.7976931348623157e308", "1"}, {"5e-324", "0.5"},
		{"3.141592653589793238462643383279", "2.718281828459045235360287"}, {"0.000001", "1000000"},
	}
	var csvIn, jsonIn strings.Builder
	csvIn.WriteString("mass,velocity\n")
	jsonIn.WriteString("[")
	for i, p := range pairs {
		fmt.Fprintf(&csvIn, "%s,%s\n", p[0], p[1])
		if i > 0 {
			jsonIn.WriteString(",")
		}
		fmt.Fprintf(&jsonIn, `{"mass":%s,"velocity":%s}`, p[0], p[1])
	}
	jsonIn.WriteString("]")
	post := func(query, contentType, body string) string {
		t.Helper()
		resp, err := http.Post(f.srv.URL+"/v1/momentum"+query, contentType, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("%s %s: %d %s", contentType, query, resp.StatusCode, b)
		}
		return string(b)
	}
	for _, query := range []string{"", "?decimals=0", "?decimals=3", "?decimals=30"} {
		lines := strings.Split(strings.TrimSuffix(post(query, "text/csv", csvIn.String()), "\n"), "\n")[1:]
		dec := json.NewDecoder(strings.NewReader(post(query, "application/json", jsonIn.String())))
		dec.UseNumber()
		var got []struct{ Mass, Velocity, Momentum json.Number }
		if err := dec.Decode(&got); err != nil {
			t.Fatal(err)
		}
		if len(got) != len(pairs) || len(lines) != len(pairs) {
			t.Fatalf("%s: %d CSV rows, %d JSON objects, want %d", query, len(lines), len(got), len(pairs))
		}
		for i, line := range lines {
			want := line[strings.LastIndexByte(line, ',')+1:]
			if string(got[i].Momentum) != want || string(got[i].Mass) != pairs[i][0] || string(got[i].Velocity) != pairs[i][1] {
				t.Errorf("%s: %s × %s: JSON %v, CSV momentum %s", query, pairs[i][0], pairs[i][1], got[i], want)
			}
		}
	}
}

// stallingStore is a store whose writers stall once they have taken
// more than after bytes, until their context ends, and then go on; the
// first to stall closes stalled.
type stallingStore struct {
	compute.Store
	after   int64
	stalled chan struct{}
	once    sync.Once
}

func (s *stallingStore) NewWriter(ctx context.Context, key string, o compute.WriteOptions) (io.WriteCloser, error) {
	w, err := s.Store.NewWriter(ctx, key, o)
	if err != nil {
		return nil, err
	}
	return &stallingWriter{WriteCloser: w, ctx: ctx, s: s}, nil
}

type stallingWriter struct {
	io.WriteCloser
	ctx     context.Context
	s       *stallingStore
	written int64
}

func (w *stallingWriter) Write(p []byte) (int, error) {
	n, err := w.WriteCloser.Write(p)
	w.written += int64(n)
	if err == nil && w.written > w.s.after {
		w.s.once.Do(func() { close(w.s.stalled) })
		<-w.ctx.Done()
	}
	return n, err
}

// TestServeShutdownMidUpload: an event job whose upload is under way,
// past its first 8 MiB part, when the grace period ends is cancelled:
// Serve returns soon after the grace period, the upload is abandoned and
// no output appears, not even once the job has returned, and no
// temporary object is left.
func TestServeShutdownMidUpload(t *testing.T) {
	f := newFixture(t, compute.Options{})
	stalled := make(chan struct{})
	store := f.svc.Bucket
	f.svc.Bucket = func(ctx context.Context, name string) (compute.Store, error) {
		st, err := store(ctx, name)
		return &stallingStore{Store: st, after: 9 << 20, stalled: stalled}, err
	}
	// About 16 MiB of output: two parts and some.
	in := "mass,velocity\n" + strings.Repeat("1,2\n", 11<<18)
	gen := f.upload("incoming/big.csv", []byte(in))
	var chunks atomic.Int64 // part uploads, or requests of resumable uploads carrying data
	f.failOnly = func(r *http.Request) bool {
		if strings.HasPrefix(r.URL.Path, "/upload/") && (strings.HasPrefix(r.Header.Get("Content-Range"), "bytes 0-") ||
			strings.HasPrefix(r.URL.Query().Get("name"), gcs.TempPrefix)) {
			chunks.Add(1)
		}
		return false
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	served := make(chan error, 1)
	const grace = 200 * time.Millisecond
	go func() { served <- cloudrun.Serve(ctx, l, f.svc.Handler(), f.svc.Logger, grace) }()
	answered := make(chan int, 1)
	go func() {
		req := f.binaryEvent("google.cloud.storage.object.v1.finalized", data(t, "incoming/big.csv", gen, false))
		req.URL.Host = l.Addr().String()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			answered <- 0
			return
		}
		resp.Body.Close()
		answered <- resp.StatusCode
	}()
	select {
	case <-stalled:
	case <-time.After(30 * time.Second):
		t.Fatal("the upload never got past 9 MiB")
	}
	for deadline := time.Now().Add(10 * time.Second); chunks.Load() == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no chunk of the upload was sent")
		}
	}
	start := time.Now()
	stop()
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
	}
	if took := time.Since(start); took < grace || took > grace+2*time.Second {
		t.Errorf("Serve returned %v after the stop, want between the grace period and a second or so more", took)
	}
	if s := <-answered; s == 200 {
		t.Error("the cancelled job was answered 200")
	}
	if _, err := net.DialTimeout("tcp", l.Addr().String(), time.Second); err == nil {
		t.Error("still accepting connections")
	}
	// The handler may still be closing its writers: give it time to do
	// the wrong thing.
	time.Sleep(500 * time.Millisecond)
	if got := f.outputs(); len(got) != 0 {
		t.Errorf("objects under momentum/ after a cancelled job: %q", got)
	}
	if got := f.list(gcs.TempPrefix, true); len(got) != 0 {
		t.Errorf("temporary objects after a cancelled job: %q", got)
	}
	if lines := f.log.lines("ERROR"); len(lines) != 0 {
		t.Errorf("a cancelled job logged ERROR: %v", lines)
	}
}

// TestServeShutdownSlowBody: a synchronous request whose body is still
// coming when the grace period ends does not hold Serve up: the read is
// cut when its context is cancelled, the request answered 503 and its
// connection closed.
func TestServeShutdownSlowBody(t *testing.T) {
	f := newFixture(t, compute.Options{})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	served := make(chan error, 1)
	const grace = 200 * time.Millisecond
	go func() { served <- cloudrun.Serve(ctx, l, f.svc.Handler(), f.svc.Logger, grace) }()
	conn, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// The header, and part of a body that never ends.
	fmt.Fprintf(conn, "POST /v1/momentum HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\nContent-Length: 1000\r\n\r\nmass,velocity\n1,2\n")
	time.Sleep(100 * time.Millisecond) // the handler is reading the body
	start := time.Now()
	stop()
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
	}
	if took := time.Since(start); took > grace+2*time.Second {
		t.Errorf("Serve returned %v after the stop", took)
	}
	// The server closed the connection, rather than leave the handler
	// waiting for the rest of the body.
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(conn)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Error("the connection is still open")
	}
	if !strings.HasPrefix(string(b), "HTTP/1.1 503 ") {
		t.Errorf("the cut request was answered %q, want 503", b)
	}
	if _, err := net.DialTimeout("tcp", l.Addr().String(), time.Second); err == nil {
		t.Error("still accepting connections")
	}
}

// TestSyncStrict: the synchronous endpoint is strict even when the
// service skips bad rows in its event jobs.
func TestSyncStrict(t *testing.T) {
	f := newFixture(t, compute.Options{OnError: compute.OnErrorSkip, NewRejectWriter: rejects.NewWriter})
	for _, tt := range []struct{ contentType, body, want string }{
		{"text/csv", "mass,velocity\n1,2\n3,x\n", `"line":3,"column":"velocity"`},
		{"application/json", `[{"mass":1,"velocity":2},{"mass":-3,"velocity":2}]`, `"index":1,"field":"mass","reason":"negative mass`},
	} {
		resp, err := http.Post(f.srv.URL+"/v1/momentum", tt.contentType, strings.NewReader(tt.body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(string(b), tt.want) {
			t.Errorf("%s: %d %s, want 422 with %s", tt.contentType, resp.StatusCode, b, tt.want)
		}
	}
}

// TestSyncLargeAnswer: an answer over 32 MiB, more than Cloud Run passes
// with a Content-Length, goes chunked; a smaller one has its length.
func TestSyncLargeAnswer(t *testing.T) {
	if testing.Short() {
		t.Skip("60 MiB through the service")
	}
	f := newFixture(t, compute.Options{})
	for _, tt := range []struct {
		rows    int
		chunked bool
	}{{1000, false}, {6 << 20, true}} { // 24 MiB in, 36 MiB out
		in := "mass,velocity\n" + strings.Repeat("1,2\n", tt.rows)
		resp, err := http.Post(f.srv.URL+"/v1/momentum", "text/csv", strings.NewReader(in))
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%d rows: %d, %v", tt.rows, resp.StatusCode, err)
		}
		if want := "mass,velocity,momentum\n" + strings.Repeat("1,2,2\n", tt.rows); string(b) != want {
			t.Errorf("%d rows: %d bytes, want %d", tt.rows, len(b), len(want))
		}
		if chunked := resp.ContentLength < 0; chunked != tt.chunked {
			t.Errorf("%d rows: Content-Length %d, want chunked %v", tt.rows, resp.ContentLength, tt.chunked)
		}
	}
}

// trickler is a request whose body comes a byte at a time.
type trickler struct {
	conn net.Conn
	resp *bufio.Reader
	stop chan struct{}
	done chan struct{}
}

// trickle sends the header of a request to addr with Expect:
// 100-continue and a Content-Length of length bytes, waits for the
// server's 100 Continue (the handler has begun reading the body), then
// sends a CSV body a byte every interval, in the background, until it is
// stopped or the server closes the connection. header adds header lines.
func trickle(t *testing.T, addr, path string, length int, interval time.Duration, header ...string) *trickler {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	tr := &trickler{conn: conn, resp: bufio.NewReader(conn), stop: make(chan struct{}), done: make(chan struct{})}
	t.Cleanup(func() { tr.close() })
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\nContent-Length: %d\r\nExpect: 100-continue\r\n", path, length)
	for _, h := range header {
		fmt.Fprintf(conn, "%s\r\n", h)
	}
	io.WriteString(conn, "\r\n")
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	status, err := tr.resp.ReadString('\n')
	if err != nil || !strings.HasPrefix(status, "HTTP/1.1 100 ") {
		close(tr.done)
		t.Fatalf("a slow request, before its body: %q, %v; want 100 Continue", status, err)
	}
	tr.resp.ReadString('\n') // the blank line after it
	conn.SetReadDeadline(time.Time{})
	go func() {
		defer close(tr.done)
		body := "mass,velocity\n" + strings.Repeat("1,2\n", length)
		for i := 0; ; i++ {
			if _, err := io.WriteString(conn, body[i:i+1]); err != nil {
				return
			}
			select {
			case <-tr.stop:
				return
			case <-time.After(interval):
			}
		}
	}()
	return tr
}

func (tr *trickler) close() {
	select {
	case <-tr.stop:
	default:
		close(tr.stop)
	}
	tr.conn.Close()
	<-tr.done
}

// status reads the status line of the answer, waiting up to limit for it.
func (tr *trickler) status(limit time.Duration) (string, error) {
	tr.conn.SetReadDeadline(time.Now().Add(limit))
	line, err := tr.resp.ReadString('\n')
	return strings.TrimSpace(line), err
}

// TestSyncSlowBodies: requests whose bodies trickle in do not hold the
// synchronous slots: a slot is taken once a body has arrived, so other
// requests are answered meanwhile.
func TestSyncSlowBodies(t *testing.T) {
	f := newFixture(t, compute.Options{})
	f.svc.MaxSync = 2
	srv := httptest.NewServer(f.svc.Handler())
	t.Cleanup(srv.Close) // after the slow requests' connections are closed
	addr := strings.TrimPrefix(srv.URL, "http://")
	var slow []*trickler
	for range 8 {
		slow = append(slow, trickle(t, addr, "/v1/momentum", 1000, 50*time.Millisecond))
	}
	client := &http.Client{Timeout: 30 * time.Second} // a guard against a hang, not a bound under test
	for _, c := range []struct{ contentType, body, want string }{
		{"text/csv", string(testdata(t, "particles.csv")), string(testdata(t, "particles.golden"))},
		{"application/json", `{"mass":2,"velocity":3}`, `{"mass":2,"velocity":3,"momentum":6}` + "\n"},
	} {
		resp, err := client.Post(srv.URL+"/v1/momentum", c.contentType, strings.NewReader(c.body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(b) != c.want {
			t.Errorf("%s while 8 bodies trickle in: %d %s", c.contentType, resp.StatusCode, b)
		}
	}
	for i, tr := range slow {
		select {
		case <-tr.done:
			t.Errorf("slow request %d stopped before the others were answered", i)
		default:
		}
	}
}

// TestSyncBodyTimeout: a body that arrives slower than the bound is
// answered 408 and its connection closed, on either endpoint, while other
// requests are served.
func TestSyncBodyTimeout(t *testing.T) {
	f := newFixture(t, compute.Options{})
	f.svc.MaxSync = 2
	f.svc.BodyTimeout = 300 * time.Millisecond
	srv := httptest.NewServer(f.svc.Handler())
	t.Cleanup(srv.Close) // after the slow requests' connections are closed
	addr := strings.TrimPrefix(srv.URL, "http://")
	var slow []*trickler
	for range 8 {
		slow = append(slow, trickle(t, addr, "/v1/momentum", 1000, 20*time.Millisecond))
	}
	event := trickle(t, addr, "/", 1000, 20*time.Millisecond,
		"Ce-Specversion: 1.0", "Ce-Type: google.cloud.storage.object.v1.finalized", "Ce-Source: //storage.googleapis.com/projects/_/buckets/data", "Ce-Id: 1")
	resp, err := http.Post(srv.URL+"/v1/momentum", "text/csv", strings.NewReader("mass,velocity\n1,2\n"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("a request meanwhile: %d", resp.StatusCode)
	}
	// The bound is 300 ms; 30 s only keeps a broken server from hanging the test.
	for i, tr := range append(slow, event) {
		status, err := tr.status(30 * time.Second)
		if status != "HTTP/1.1 408 Request Timeout" {
			t.Errorf("slow request %d: %q, %v; want 408", i, status, err)
			continue
		}
		// The server closes the connection after the answer; as the
		// client is still sending, the close may come as a reset, which
		// can take the rest of the answer with it.
		rest, err := io.ReadAll(tr.resp)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Errorf("slow request %d: the connection is still open after the 408", i)
		}
		if err == nil && !strings.Contains(string(rest), "request body too slow") {
			t.Errorf("slow request %d: %q", i, rest)
		}
	}
	if lines := f.log.lines("ERROR"); len(lines) != 0 {
		t.Errorf("slow bodies logged ERROR: %v", lines)
	}
}

// TestEventCompressAs: an event for a.csv.gz, with the output's compression
// set, gives an output named after it: plain a.csv for none, a.csv.zst for
// zstd; by default a.csv.gz, gzip.
func TestEventCompressAs(t *testing.T) {
	particles, golden := testdata(t, "particles.csv"), testdata(t, "particles.golden")
	for _, tc := range []struct {
		compress compute.Compression
		output   string
	}{
		{compute.SameAsInput, "momentum/p.csv.gz"},
		{compute.Uncompressed, "momentum/p.csv"},
		{compute.Zstd, "momentum/p.csv.zst"},
	} {
		f := newFixture(t, compute.Options{Codec: codec.Codec{}, Compress: tc.compress})
		var gz bytes.Buffer
		w, _ := codec.Codec{}.NewWriter(&gz, compute.Gzip)
		w.Write(particles)
		w.Close()
		gen := f.upload("incoming/p.csv.gz", gz.Bytes())
		resp, err := http.DefaultClient.Do(f.binaryEvent("google.cloud.storage.object.v1.finalized", data(t, "incoming/p.csv.gz", gen, false)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := f.outputs(); len(got) != 1 || got[0] != tc.output {
			t.Errorf("compress %s: outputs %q, want %s", tc.compress, got, tc.output)
			continue
		}
		out, _ := f.get(tc.output)
		if c := compute.DetectCompression(out); c != compute.Uncompressed {
			r, _ := codec.Codec{}.NewReader(bytes.NewReader(out), c)
			out, _ = io.ReadAll(r)
		}
		if !bytes.Equal(out, golden) {
			t.Errorf("compress %s: output differs from particles.golden", tc.compress)
		}
	}
}
