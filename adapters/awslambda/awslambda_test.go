package awslambda_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/lambdacontext"

	"github.com/momentum-run/momentum/adapters/awslambda"
	"github.com/momentum-run/momentum/adapters/local"
	"github.com/momentum-run/momentum/compute"
)

// These tests drive the handler with saved S3 event notifications, on
// local stores (one folder per bucket). The S3 path itself is tested end
// to end in cmd/momentum, under the Lambda runtime interface emulator.

// env is a handler on a temporary folder of buckets, with its log.
type env struct {
	t       *testing.T
	dir     string
	h       *awslambda.Handler
	log     *bytes.Buffer
	faults  map[string]error // key → error of reading it
	slowKey string           // reads of this key block until ctx is done
	mu      sync.Mutex
}

func newEnv(t *testing.T, opts compute.Options) *env {
	e := &env{t: t, dir: t.TempDir(), log: &bytes.Buffer{}, faults: map[string]error{}}
	e.h = &awslambda.Handler{
		Route:   compute.Route{From: compute.Place{Bucket: "data", Prefix: "incoming/"}, To: compute.Place{Bucket: "data", Prefix: "momentum/"}},
		Bucket:  e.bucket,
		Options: opts,
		Logger:  slog.New(slog.NewJSONHandler(syncWriter{&e.mu, e.log}, nil)),
	}
	return e
}

type syncWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (s syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func (e *env) bucket(ctx context.Context, name string) (compute.Store, error) {
	dir := filepath.Join(e.dir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	s, err := local.NewStore(dir)
	if err != nil {
		return nil, err
	}
	e.t.Cleanup(func() { s.Close() })
	return &faultyStore{Store: s, env: e}, nil
}

// faultyStore is a local store whose reads fail or stall on demand. Local
// files have no S3 ETag, so the one an event names is not checked.
type faultyStore struct {
	compute.Store
	env *env
}

func (f *faultyStore) NewReader(ctx context.Context, key string, o compute.ReadOptions) (io.ReadCloser, compute.ObjectInfo, error) {
	f.env.mu.Lock()
	err, slow := f.env.faults[key], f.env.slowKey == key
	f.env.mu.Unlock()
	if err != nil {
		return nil, compute.ObjectInfo{}, fmt.Errorf("read %s: %w", key, err)
	}
	o.ETag = ""
	r, info, err := f.Store.NewReader(ctx, key, o)
	if err == nil && slow {
		r = &stalling{r: r, ctx: ctx}
	}
	return r, info, err
}

// stalling gives a few bytes, then blocks until its context is done.
type stalling struct {
	r    io.ReadCloser
	ctx  context.Context
	read bool
}

func (s *stalling) Read(p []byte) (int, error) {
	if !s.read {
		s.read = true
		return s.r.Read(p[:min(len(p), 20)])
	}
	<-s.ctx.Done()
	return 0, s.ctx.Err()
}

func (s *stalling) Close() error { return s.r.Close() }

func (e *env) put(key string, data []byte) {
	e.t.Helper()
	p := filepath.Join(e.dir, "data", filepath.FromSlash(key))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) get(key string) ([]byte, bool) {
	b, err := os.ReadFile(filepath.Join(e.dir, "data", filepath.FromSlash(key)))
	return b, err == nil
}

// keys lists the objects of the bucket "data".
func (e *env) keys() []string {
	var keys []string
	root := filepath.Join(e.dir, "data")
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(root, p)
			keys = append(keys, filepath.ToSlash(rel))
		}
		return nil
	})
	slices.Sort(keys)
	return keys
}

// files lists the objects of every bucket, as bucket/key.
func (e *env) files() []string {
	var files []string
	filepath.WalkDir(e.dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(e.dir, p)
			files = append(files, filepath.ToSlash(rel))
		}
		return nil
	})
	slices.Sort(files)
	return files
}

// lines returns every JSON log line.
func (e *env) lines() []map[string]any {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(e.log.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil {
			out = append(out, rec)
		}
	}
	return out
}

// logs returns the JSON log lines at a level.
func (e *env) logs(level string) []map[string]any {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(e.log.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["level"] == level {
			out = append(out, rec)
		}
	}
	return out
}

func fixture(t *testing.T, name string) json.RawMessage {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "lambda", name))
	if err != nil {
		t.Fatal(err)
	}
	return bytes.ReplaceAll(b, []byte("BUCKET"), []byte("data"))
}

// event is a one-record put event for key (as S3 encodes it) in the
// bucket "data".
func event(t *testing.T, encodedKey string) json.RawMessage {
	t.Helper()
	return eventIn(t, "data", encodedKey)
}

// eventIn is a one-record put event for bucket/key.
func eventIn(t *testing.T, bucket, encodedKey string) json.RawMessage {
	t.Helper()
	var ev map[string]any
	if err := json.Unmarshal(fixture(t, "s3-put.json"), &ev); err != nil {
		t.Fatal(err)
	}
	s3 := ev["Records"].([]any)[0].(map[string]any)["s3"].(map[string]any)
	s3["object"].(map[string]any)["key"] = encodedKey
	s3["bucket"].(map[string]any)["name"] = bucket
	s3["bucket"].(map[string]any)["arn"] = "arn:aws:s3:::" + bucket
	b, _ := json.Marshal(ev)
	return b
}

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func outcomes(r awslambda.Result) string {
	var s []string
	for _, o := range r.Objects {
		s = append(s, o.Outcome)
	}
	return strings.Join(s, ",")
}

func TestPut(t *testing.T) {
	e := newEnv(t, compute.Options{})
	e.put("incoming/particles.csv", readTestdata(t, "particles.csv"))
	ctx := lambdacontext.NewContext(context.Background(), &lambdacontext.LambdaContext{AwsRequestID: "req-1"})
	res, err := e.h.Handle(ctx, event(t, "incoming/particles.csv"))
	if err != nil || outcomes(res) != "done" {
		t.Fatalf("Handle = %+v, %v", res, err)
	}
	o := res.Objects[0]
	if o.Output != "s3://data/momentum/particles.csv" || o.Rows != 12 || o.BytesIn != int64(len(readTestdata(t, "particles.csv"))) {
		t.Errorf("summary %+v", o)
	}
	if got, _ := e.get("momentum/particles.csv"); !bytes.Equal(got, readTestdata(t, "particles.golden")) {
		t.Errorf("output differs from particles.golden:\n%s", got)
	}
	infos := e.logs("INFO")
	if len(infos) != 1 || infos[0]["msg"] != "processed" || infos[0]["requestId"] != "req-1" || infos[0]["bucket"] != "data" ||
		infos[0]["key"] != "incoming/particles.csv" || infos[0]["rows"] != 12.0 {
		t.Errorf("INFO log lines %v", infos)
	}
}

func TestEncodedKeys(t *testing.T) {
	e := newEnv(t, compute.Options{})
	particles := readTestdata(t, "particles.csv")
	for _, name := range []string{"a b.csv", "a+b.csv", "café.csv"} {
		e.put("incoming/"+name, particles)
	}
	res, err := e.h.Handle(context.Background(), fixture(t, "s3-encoded-keys.json"))
	if err != nil || outcomes(res) != "done,done,done" {
		t.Fatalf("Handle = %+v, %v", res, err)
	}
	want := []string{"incoming/a b.csv", "incoming/a+b.csv", "incoming/café.csv", "momentum/a b.csv", "momentum/a+b.csv", "momentum/café.csv"}
	if got := e.keys(); !slices.Equal(got, want) {
		t.Errorf("objects %q, want %q", got, want)
	}
}

func TestNothingToDo(t *testing.T) {
	tests := []struct {
		name    string
		event   json.RawMessage
		outcome string
		errors  int // ERROR log lines
	}{
		{"an output", event(t, "momentum/particles.csv"), "already-processed", 0},
		{"outside the input prefix", event(t, "elsewhere/particles.csv"), "ignored", 0},
		{"another bucket", eventIn(t, "other", "incoming/particles.csv"), "ignored", 0},
		{"a folder marker", event(t, "incoming/sub/"), "ignored", 0},
		{"a deletion", fixture(t, "s3-delete.json"), "ignored", 0},
		{"a deletion with an undecodable key", deletionOf(t, "incoming/100%.csv"), "ignored", 0},
		{"a processed file", event(t, "incoming/processed.csv"), "already-processed", 0},
		{"the test event", fixture(t, "s3-test-event.json"), "", 0},
		{"no records", fixture(t, "s3-empty.json"), "", 0},
		{"a JSON string", json.RawMessage(`"hello"`), "", 1},
		{"not JSON", json.RawMessage(`Records: none`), "", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, compute.Options{})
			e.put("incoming/particles.csv", readTestdata(t, "particles.csv"))
			e.put("momentum/particles.csv", readTestdata(t, "particles.golden"))
			e.put("incoming/processed.csv", readTestdata(t, "particles.golden"))
			e.put("incoming/100%.csv", readTestdata(t, "particles.csv"))
			os.MkdirAll(filepath.Join(e.dir, "other", "incoming"), 0o755)
			os.WriteFile(filepath.Join(e.dir, "other", "incoming", "particles.csv"), readTestdata(t, "particles.csv"), 0o644)
			before := e.files()
			res, err := e.h.Handle(context.Background(), tt.event)
			if err != nil || outcomes(res) != tt.outcome {
				t.Errorf("Handle = %+v, %v; want outcome %q", res, err, tt.outcome)
			}
			if after := e.files(); !slices.Equal(before, after) {
				t.Errorf("objects changed: %q → %q", before, after)
			}
			if errs := e.logs("ERROR"); len(errs) != tt.errors {
				t.Errorf("ERROR lines %v, want %d", errs, tt.errors)
			}
		})
	}
}

// deletionOf is a deletion event for key (as S3 encodes it).
func deletionOf(t *testing.T, encodedKey string) json.RawMessage {
	t.Helper()
	return bytes.Replace(fixture(t, "s3-delete.json"), []byte(`"incoming/particles.csv"`), []byte(strconv.Quote(encodedKey)), 1)
}

func TestMultipartUploadEvent(t *testing.T) {
	e := newEnv(t, compute.Options{})
	e.put("incoming/particles.csv", readTestdata(t, "particles.csv"))
	if res, err := e.h.Handle(context.Background(), fixture(t, "s3-multipart.json")); err != nil || outcomes(res) != "done" {
		t.Fatalf("Handle = %+v, %v", res, err)
	}
}

func TestDuplicateDelivery(t *testing.T) {
	e := newEnv(t, compute.Options{})
	e.put("incoming/particles.csv", readTestdata(t, "particles.csv"))
	ev := event(t, "incoming/particles.csv")
	var wg sync.WaitGroup
	results := make([]string, 4)
	for i := range results {
		wg.Go(func() {
			res, err := e.h.Handle(context.Background(), ev)
			results[i] = fmt.Sprint(outcomes(res), err)
		})
	}
	wg.Wait()
	done := 0
	for _, r := range results {
		switch r {
		case "done<nil>":
			done++
		case "duplicate<nil>":
		default:
			t.Errorf("a concurrent delivery: %s", r)
		}
	}
	if done != 1 {
		t.Errorf("concurrent deliveries %q: want exactly one done", results)
	}
	outPath := filepath.Join(e.dir, "data", "momentum", "particles.csv")
	first, err := os.Stat(outPath)
	if err != nil {
		t.Fatal(err)
	}
	if res, err := e.h.Handle(context.Background(), ev); err != nil || outcomes(res) != "duplicate" || res.Objects[0].BytesOut != 0 {
		t.Errorf("redelivery = %+v, %v", res, err)
	}
	if again, err := os.Stat(outPath); err != nil || !os.SameFile(first, again) || !again.ModTime().Equal(first.ModTime()) {
		t.Error("the redelivery replaced the output")
	}
	if got, _ := e.get("momentum/particles.csv"); !bytes.Equal(got, readTestdata(t, "particles.golden")) {
		t.Error("output wrong after duplicate deliveries")
	}
	if got := e.keys(); !slices.Equal(got, []string{"incoming/particles.csv", "momentum/particles.csv"}) {
		t.Errorf("objects %q", got)
	}
}

func TestPermanentFailures(t *testing.T) {
	tests := []struct {
		name, key string
		data      string
		line      float64
		column    string
		errorLike string // in the report's error
	}{
		{"bad value", "incoming/bad.csv", "mass,velocity\n1,2\n3,abc\n", 3, "velocity", "abc"},
		{"negative mass", "incoming/neg.csv", "mass,velocity\n-1,2\n", 2, "mass", "-1"},
		{"missing object", "incoming/gone.csv", "", 0, "", "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, compute.Options{})
			if tt.data != "" {
				e.put(tt.key, []byte(tt.data))
			}
			res, err := e.h.Handle(context.Background(), event(t, tt.key))
			if err != nil || outcomes(res) != "failed" {
				t.Fatalf("Handle = %+v, %v: want failed, no error (no retry)", res, err)
			}
			name := strings.TrimSuffix(strings.TrimPrefix(tt.key, "incoming/"), ".csv")
			if _, ok := e.get("momentum/" + name + ".csv"); ok {
				t.Error("an output was written")
			}
			body, ok := e.get("momentum/" + name + ".error.json")
			var rep compute.JobReport
			if err := json.Unmarshal(body, &rep); !ok || err != nil {
				t.Fatalf("report %q: %v", body, err)
			}
			if rep.Input != tt.key || float64(rep.Line) != tt.line || rep.Column != tt.column || !strings.Contains(rep.Error, tt.errorLike) {
				t.Errorf("report %+v, want input %s, line %v, column %q, an error about %q", rep, tt.key, tt.line, tt.column, tt.errorLike)
			}
			if o := res.Objects[0]; float64(o.Line) != tt.line || o.Column != tt.column || o.Error == "" {
				t.Errorf("result %+v, want line %v, column %q", o, tt.line, tt.column)
			}
			if got := e.keys(); !slices.Equal(got, slices.Sorted(slices.Values(nonEmpty(tt.data, tt.key, "momentum/"+name+".error.json")))) {
				t.Errorf("objects %q", got)
			}
			errs := e.logs("ERROR")
			if len(errs) != 1 || errs[0]["bucket"] != "data" || errs[0]["key"] != tt.key {
				t.Fatalf("ERROR lines %v, want one naming the bucket and key", errs)
			}
			if tt.line != 0 && (errs[0]["line"] != tt.line || errs[0]["column"] != tt.column) {
				t.Errorf("ERROR line %v, want line %v column %s", errs[0], tt.line, tt.column)
			}
		})
	}
}

// nonEmpty lists key when data is not empty, and then the others.
func nonEmpty(data, key string, others ...string) []string {
	if data == "" {
		return others
	}
	return append([]string{key}, others...)
}

func TestUndecodableKey(t *testing.T) {
	e := newEnv(t, compute.Options{})
	e.put("incoming/particles.csv", readTestdata(t, "particles.csv"))
	res, err := e.h.Handle(context.Background(), fixture(t, "s3-bad-key.json"))
	if err != nil || outcomes(res) != "failed,done" {
		t.Fatalf("Handle = %+v, %v", res, err)
	}
	if rep, ok := e.get("momentum/100%.error.json"); !ok || !strings.Contains(string(rep), "incoming/100%.csv") {
		t.Errorf("report: %s", rep)
	}
	if errs := e.logs("ERROR"); len(errs) != 1 || errs[0]["key"] != "incoming/100%.csv" || errs[0]["bucket"] != "data" {
		t.Errorf("ERROR lines %v", errs)
	}
	if o := res.Objects[0]; o.Bucket != "data" || o.Key != "incoming/100%.csv" || !strings.Contains(o.Error, "escape") {
		t.Errorf("result of the bad record %+v", o)
	}
	if got, _ := e.get("momentum/particles.csv"); !bytes.Equal(got, readTestdata(t, "particles.golden")) {
		t.Errorf("the good record's output differs from particles.golden:\n%s", got)
	}
}

func TestSkipMode(t *testing.T) {
	e := newEnv(t, compute.Options{OnError: compute.OnErrorSkip})
	e.put("incoming/mixed.csv", []byte("mass,velocity\n1,2\n3,abc\n4,5\n"))
	res, err := e.h.Handle(context.Background(), event(t, "incoming/mixed.csv"))
	if err != nil || outcomes(res) != "done" || res.Objects[0].Rows != 2 || res.Objects[0].Rejected != 1 {
		t.Fatalf("Handle = %+v, %v", res, err)
	}
	if got, _ := e.get("momentum/mixed.csv"); string(got) != "mass,velocity,momentum\n1,2,2\n4,5,20\n" {
		t.Errorf("output %q", got)
	}
	if got, _ := e.get("momentum/mixed.rejects.csv"); !strings.Contains(string(got), "3,velocity") {
		t.Errorf("rejects %q", got)
	}
}

func TestRetryableFailures(t *testing.T) {
	for _, kind := range []error{compute.ErrTransient, compute.ErrPermission} {
		t.Run(kind.Error(), func(t *testing.T) {
			e := newEnv(t, compute.Options{})
			for _, name := range []string{"one", "two", "three"} {
				e.put("incoming/"+name+".csv", readTestdata(t, "particles.csv"))
			}
			e.faults["incoming/two.csv"] = kind
			res, err := e.h.Handle(context.Background(), fixture(t, "s3-multiple.json"))
			if err == nil || !errors.Is(err, kind) || !strings.Contains(err.Error(), "incoming/two.csv") || outcomes(res) != "done,retry,done" {
				t.Fatalf("Handle = %+v, %v: want an error naming two.csv, the others done", res, err)
			}
			if o := res.Objects[1]; o.Key != "incoming/two.csv" || !strings.Contains(o.Error, kind.Error()) {
				t.Errorf("result of the failed record %+v", o)
			}
			want := []string{"incoming/one.csv", "incoming/three.csv", "incoming/two.csv", "momentum/one.csv", "momentum/three.csv"}
			if got := e.keys(); !slices.Equal(got, want) {
				t.Errorf("objects %q, want %q: no output or report for two.csv", got, want)
			}
			if warns := e.logs("WARN"); len(warns) != 1 || warns[0]["key"] != "incoming/two.csv" || len(e.logs("ERROR")) != 0 {
				t.Errorf("WARN lines %v, ERROR lines %v: want one WARN for two.csv", warns, e.logs("ERROR"))
			}
			// Lambda retries the whole event once the fault has cleared.
			e.mu.Lock()
			delete(e.faults, "incoming/two.csv")
			e.mu.Unlock()
			res, err = e.h.Handle(context.Background(), fixture(t, "s3-multiple.json"))
			if err != nil || outcomes(res) != "duplicate,done,duplicate" {
				t.Fatalf("retry = %+v, %v", res, err)
			}
			if got, _ := e.get("momentum/two.csv"); !bytes.Equal(got, readTestdata(t, "particles.golden")) {
				t.Errorf("two.csv's output after the retry differs from particles.golden:\n%s", got)
			}
		})
	}
}

func TestDeadline(t *testing.T) {
	e := newEnv(t, compute.Options{})
	e.put("incoming/slow.csv", readTestdata(t, "particles.csv"))
	e.slowKey = "incoming/slow.csv"
	e.h.Reserve = 100 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	res, err := e.h.Handle(ctx, event(t, "incoming/slow.csv"))
	took := time.Since(start)
	if ctx.Err() != nil {
		t.Errorf("Handle returned after the invocation deadline (took %v)", took)
	}
	if err == nil || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "before the invocation deadline") ||
		!strings.Contains(err.Error(), "incoming/slow.csv") || outcomes(res) != "retry" {
		t.Fatalf("Handle = %+v, %v: want an error about the deadline", res, err)
	}
	if took < 150*time.Millisecond {
		t.Errorf("Handle took %v: it stopped before its reserve", took)
	}
	if got := e.files(); !slices.Equal(got, []string{"data/incoming/slow.csv"}) {
		t.Errorf("objects %q: want no output, no temporary file after the deadline", got)
	}
}

func TestRequestID(t *testing.T) {
	e := newEnv(t, compute.Options{})
	e.put("incoming/particles.csv", readTestdata(t, "particles.csv"))
	ctx := lambdacontext.NewContext(context.Background(), &lambdacontext.LambdaContext{AwsRequestID: "req-1"})
	if _, err := e.h.Handle(ctx, fixture(t, "s3-bad-key.json")); err != nil {
		t.Fatal(err)
	}
	e.h.Handle(ctx, event(t, "elsewhere/x.csv"))
	e.h.Handle(ctx, fixture(t, "s3-empty.json"))
	e.h.Handle(ctx, json.RawMessage(`nope`))
	lines := e.lines()
	levels := map[string]bool{}
	for _, l := range lines {
		levels[l["level"].(string)] = true
		if l["requestId"] != "req-1" {
			t.Errorf("log line without the request id: %v", l)
		}
	}
	if len(lines) != 5 || !levels["INFO"] || !levels["WARN"] || !levels["ERROR"] {
		t.Errorf("log lines %v: want 5, at INFO, WARN and ERROR", lines)
	}
}
