package cloudrun_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
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
	"google.golang.org/api/option"

	"github.com/momentum-run/momentum/adapters/cloudrun"
	"github.com/momentum-run/momentum/adapters/gcs"
	"github.com/momentum-run/momentum/compute"
)

// fixture is the service on an in-process Cloud Storage server (the
// bucket "data"), reached through the real client, whose requests can be
// made to fail with 503.
type fixture struct {
	t      *testing.T
	client *storage.Client
	srv    *httptest.Server
	svc    *cloudrun.Service
	log    *syncBuffer
	fail   atomic.Int64 // requests to the storage server still to fail
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

// lines are the JSON log lines at a severity.
func (b *syncBuffer) lines(severity string) []map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(b.buf.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["severity"] == severity {
			out = append(out, rec)
		}
	}
	return out
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
	h := fake.HTTPHandler()
	gsrv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f.fail.Load() > 0 {
			f.fail.Add(-1)
			http.Error(w, `{"error":{"code":503,"message":"backend unavailable"}}`, http.StatusServiceUnavailable)
			return
		}
		h.ServeHTTP(w, r)
	})
	gsrv.Start()
	t.Cleanup(func() { gsrv.Close(); fake.Stop() })
	f.client, err = storage.NewClient(context.Background(), option.WithEndpoint(gsrv.URL+"/storage/v1/"),
		option.WithoutAuthentication(), storage.WithJSONReads())
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
		Logger:  cloudrun.NewLogger(f.log, slog.LevelInfo),
		Project: "test-project",
	}
	f.srv = httptest.NewServer(f.svc.Handler())
	t.Cleanup(f.srv.Close)
	return f
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
	}{
		{"binary, generation a string", func(f *fixture) *http.Request {
			return f.binaryEvent("google.cloud.storage.object.v1.finalized", data(t, "incoming/p.csv", f.upload("incoming/p.csv", particles), false))
		}, 200, "done", "momentum/p.csv"},
		{"binary, generation a number", func(f *fixture) *http.Request {
			return f.binaryEvent("google.cloud.storage.object.v1.finalized", data(t, "incoming/p.csv", f.upload("incoming/p.csv", particles), true))
		}, 200, "done", "momentum/p.csv"},
		{"structured", func(f *fixture) *http.Request {
			return f.structuredEvent(t, "incoming/dir/p q.csv", f.upload("incoming/dir/p q.csv", particles))
		}, 200, "done", "momentum/dir/p q.csv"},
		{"an output", func(f *fixture) *http.Request {
			return f.binaryEvent("google.cloud.storage.object.v1.finalized", data(t, "momentum/p.csv", f.upload("momentum/p.csv", golden), false))
		}, 200, "already-processed", ""},
		{"a processed file", func(f *fixture) *http.Request {
			return f.binaryEvent("google.cloud.storage.object.v1.finalized", data(t, "incoming/p.csv", f.upload("incoming/p.csv", golden), false))
		}, 200, "already-processed", ""},
		{"outside the input prefix", func(f *fixture) *http.Request {
			return f.binaryEvent("google.cloud.storage.object.v1.finalized", data(t, "other/p.csv", f.upload("other/p.csv", particles), false))
		}, 200, "ignored", ""},
		{"a deletion", func(f *fixture) *http.Request {
			return f.binaryEvent("google.cloud.storage.object.v1.deleted", data(t, "incoming/p.csv", 1, false))
		}, 200, "ignored", ""},
		{"not JSON", func(f *fixture) *http.Request {
			return f.binaryEvent("google.cloud.storage.object.v1.finalized", []byte("{"))
		}, 400, "", ""},
		{"no bucket", func(f *fixture) *http.Request {
			return f.binaryEvent("google.cloud.storage.object.v1.finalized", []byte(`{"name":"incoming/p.csv"}`))
		}, 400, "", ""},
		{"a bad generation", func(f *fixture) *http.Request {
			return f.binaryEvent("google.cloud.storage.object.v1.finalized", []byte(`{"bucket":"data","name":"incoming/p.csv","generation":"soon"}`))
		}, 400, "", ""},
		{"not a CloudEvent", func(f *fixture) *http.Request {
			req := f.binaryEvent("google.cloud.storage.object.v1.finalized", data(t, "incoming/p.csv", 1, false))
			req.Header.Del("Ce-Specversion")
			return req
		}, 400, "", ""},
		{"structured, not JSON", func(f *fixture) *http.Request {
			req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/", strings.NewReader("{"))
			req.Header.Set("Content-Type", "application/cloudevents+json")
			return req
		}, 400, "", ""},
		{"an event too large", func(f *fixture) *http.Request {
			return f.binaryEvent("google.cloud.storage.object.v1.finalized", bytes.Repeat([]byte(" "), 2<<20))
		}, 413, "", ""},
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
			} else if got, ok := f.get("momentum/p.csv"); ok && tt.name != "an output" {
				t.Errorf("an output was written: %q", got)
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
	t.Run("transient", func(t *testing.T) {
		f := newFixture(t, compute.Options{})
		gen := f.upload("incoming/flaky.csv", testdata(t, "particles.csv"))
		f.fail.Store(1000)
		req := f.binaryEvent("google.cloud.storage.object.v1.finalized", data(t, "incoming/flaky.csv", gen, false))
		status, body := do(t, req)
		if status != http.StatusServiceUnavailable {
			t.Fatalf("during an outage: %d %s, want 503", status, body)
		}
		f.fail.Store(0)
		if _, ok := f.get("momentum/flaky.error.json"); ok {
			t.Error("a transient failure was reported as permanent")
		}
		req = f.binaryEvent("google.cloud.storage.object.v1.finalized", data(t, "incoming/flaky.csv", gen, false))
		if status, body := do(t, req); status != 200 || !strings.Contains(body, `"done"`) {
			t.Errorf("redelivery: %d %s", status, body)
		}
	})
	t.Run("skip mode", func(t *testing.T) {
		f := newFixture(t, compute.Options{OnError: compute.OnErrorSkip})
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
	resp, err := http.DefaultClient.Do(event())
	if err != nil {
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
		{"csv, bad data", "/v1/momentum", "text/csv", []byte("mass,velocity\n1,2\n3,x\n"), 422, `~"line":3,"column":"velocity"`},
		{"csv, bad option", "/v1/momentum?decimals=many", "text/csv", []byte("mass,velocity\n1,2\n"), 400, "~decimals"},
		{"json object", "/v1/momentum", "application/json", []byte(`{"mass":1.23,"velocity":4.56}`), 200, `{"mass":1.23,"momentum":5.6088,"velocity":4.56}` + "\n"},
		{"json array", "/v1/momentum", "application/json", []byte(`[{"mass":2,"velocity":3,"id":"a"},{"mass":0.1,"velocity":0.2}]`), 200,
			`[{"id":"a","mass":2,"momentum":6,"velocity":3},{"mass":0.1,"momentum":0.020000000000000004,"velocity":0.2}]` + "\n"},
		{"json, negative mass", "/v1/momentum", "application/json", []byte(`[{"mass":2,"velocity":3},{"mass":-1,"velocity":3}]`), 422, `~"index":1,"field":"mass"`},
		{"json, a string", "/v1/momentum", "application/json", []byte(`{"mass":"2","velocity":3}`), 422, `~"index":0,"field":"mass"`},
		{"json, not JSON", "/v1/momentum", "application/json", []byte(`{"mass":`), 400, "~JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body, _ := post(tt.path, tt.contentType, tt.body)
			ok := body == tt.want
			if part, found := strings.CutPrefix(tt.want, "~"); found {
				ok = strings.Contains(body, part)
			}
			if status != tt.status || !ok {
				t.Errorf("%d %q, want %d %q", status, body, tt.status, tt.want)
			}
		})
	}
	t.Run("too large", func(t *testing.T) {
		f.svc.MaxBody = 1 << 10
		srv := httptest.NewServer(f.svc.Handler())
		defer srv.Close()
		resp, err := http.Post(srv.URL+"/v1/momentum", "text/csv", bytes.NewReader(bytes.Repeat([]byte("1,2\n"), 1<<10)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("%d, want 413", resp.StatusCode)
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
