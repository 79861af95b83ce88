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

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"

	"github.com/momentum-run/momentum/adapters/awslambda"
	"github.com/momentum-run/momentum/adapters/codec"
	"github.com/momentum-run/momentum/adapters/local"
	"github.com/momentum-run/momentum/adapters/rejects"
	"github.com/momentum-run/momentum/compute"
)

// These tests drive the handler with the saved S3 event notifications of
// testdata/lambda, on local stores: one folder per bucket under a
// temporary directory, so that objects are real files. A thin wrapper
// around each store injects failures and slow reads and records what the
// handler asked to read. The S3 path itself is tested end to end in
// cmd/momentum, under the Lambda runtime interface emulator.
//
// Every test checks what Handle returned, the objects present afterwards
// (temporary files included) and the JSON log lines.

const (
	// putVersion is the versionId of the object in s3-put-versioned.json.
	putVersion = "3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY"
	// fixtureETag is the eTag of the objects in the other fixtures, whose
	// bucket is unversioned.
	fixtureETag = "b2d5f3a1c9e84e0f9d1c2b3a4f5e6d7c"
)

// lambdaEnv is a handler on a temporary folder of buckets, with its log.
type lambdaEnv struct {
	t   *testing.T
	dir string // holds one folder per bucket
	h   *awslambda.Handler

	mu          sync.Mutex
	log         bytes.Buffer
	readFaults  map[string]error               // key → error of opening it for reading
	writeFaults map[string]error               // key → error of creating it
	slowKey     string                         // reads of this key stall until their ctx is done
	checkETag   bool                           // pass the ETag the handler reads with to the local store
	reads       map[string]compute.ReadOptions // key → the options of its last NewReader
}

// newLambdaEnv returns a handler of the route data/incoming/ →
// data/momentum/.
func newLambdaEnv(t *testing.T, opts compute.Options) *lambdaEnv {
	e := &lambdaEnv{
		t: t, dir: t.TempDir(),
		readFaults: map[string]error{}, writeFaults: map[string]error{}, reads: map[string]compute.ReadOptions{},
	}
	e.h = &awslambda.Handler{
		Route: compute.Route{
			From: compute.Place{Bucket: "data", Prefix: "incoming/"},
			To:   compute.Place{Bucket: "data", Prefix: "momentum/"},
		},
		Bucket:  e.bucket,
		Options: opts,
		Logger:  slog.New(slog.NewJSONHandler(lockedWriter{&e.mu, &e.log}, nil)),
	}
	return e
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (e *lambdaEnv) bucket(ctx context.Context, name string) (compute.Store, error) {
	dir := filepath.Join(e.dir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	s, err := local.NewStore(dir)
	if err != nil {
		return nil, err
	}
	e.t.Cleanup(func() { s.Close() })
	return testStore{s, e}, nil
}

// testStore is a local store whose reads and writes fail or stall on
// demand.
type testStore struct {
	*local.Store
	env *lambdaEnv
}

func (s testStore) NewReader(ctx context.Context, key string, o compute.ReadOptions) (io.ReadCloser, compute.ObjectInfo, error) {
	e := s.env
	e.mu.Lock()
	e.reads[key] = o
	err, slow, checkETag := e.readFaults[key], e.slowKey == key, e.checkETag
	e.mu.Unlock()
	if err != nil {
		return nil, compute.ObjectInfo{}, fmt.Errorf("injected fault: %w", err)
	}
	// Files have no versions, and ETags of their own, without the quotes
	// of HTTP ones: the version and ETag that the handler took from the
	// event are recorded above and dropped, unless a test checks ETags
	// against the files' own.
	o.Version = ""
	if checkETag {
		o.ETag = strings.Trim(o.ETag, `"`)
	} else {
		o.ETag = ""
	}
	r, info, err := s.Store.NewReader(ctx, key, o)
	if err == nil && slow {
		r = &stallingReader{r: r, ctx: ctx}
	}
	return r, info, err
}

func (s testStore) NewWriter(ctx context.Context, key string, o compute.WriteOptions) (io.WriteCloser, error) {
	s.env.mu.Lock()
	err := s.env.writeFaults[key]
	s.env.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("injected fault: %w", err)
	}
	return s.Store.NewWriter(ctx, key, o)
}

// stallingReader gives a few bytes, then blocks until its context is
// done.
type stallingReader struct {
	r    io.ReadCloser
	ctx  context.Context
	read bool
}

func (s *stallingReader) Read(p []byte) (int, error) {
	if !s.read {
		s.read = true
		return s.r.Read(p[:min(len(p), 20)])
	}
	<-s.ctx.Done()
	return 0, s.ctx.Err()
}

func (s *stallingReader) Close() error { return s.r.Close() }

// setFault makes the operations on key that faults stands for
// (e.readFaults, e.writeFaults) fail with err; nil clears the fault.
func (e *lambdaEnv) setFault(faults map[string]error, key string, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err == nil {
		delete(faults, key)
	} else {
		faults[key] = err
	}
}

// readOf returns the options key was last opened for reading with.
func (e *lambdaEnv) readOf(key string) (compute.ReadOptions, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	o, ok := e.reads[key]
	return o, ok
}

// put writes the object bucket/key.
func (e *lambdaEnv) put(bucket, key string, data []byte) {
	e.t.Helper()
	p := filepath.Join(e.dir, bucket, filepath.FromSlash(key))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		e.t.Fatal(err)
	}
}

// get reads the object key of the bucket "data".
func (e *lambdaEnv) get(key string) ([]byte, bool) {
	b, err := os.ReadFile(filepath.Join(e.dir, "data", filepath.FromSlash(key)))
	return b, err == nil
}

// objects lists the files of every bucket, as bucket/key, temporary files
// included.
func (e *lambdaEnv) objects() []string {
	files := []string{}
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

// checkObjects checks that the buckets hold exactly want (bucket/key).
func (e *lambdaEnv) checkObjects(want ...string) {
	e.t.Helper()
	want = slices.Sorted(slices.Values(want))
	if got := e.objects(); !slices.Equal(got, want) {
		e.t.Errorf("objects\n  %q\nwant\n  %q", got, want)
	}
}

// logLines returns the JSON log lines so far.
func (e *lambdaEnv) logLines() []map[string]any {
	e.mu.Lock()
	defer e.mu.Unlock()
	lines := []map[string]any{}
	for line := range strings.Lines(e.log.String()) {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			e.t.Errorf("log line %q is not JSON: %v", line, err)
			continue
		}
		lines = append(lines, rec)
	}
	return lines
}

// present, as the value of an attribute in a logWant, asks only that the
// attribute be there.
var present = &struct{}{}

// logWant is an expected log line: its level, message and some of its
// attributes, compared as text.
type logWant struct {
	level, msg string
	attrs      map[string]any
}

// checkLogs checks that the log has exactly the lines of want, in order.
func (e *lambdaEnv) checkLogs(want ...logWant) {
	e.t.Helper()
	got := e.logLines()
	if len(got) != len(want) {
		e.t.Errorf("%d log lines, want %d:\n%s", len(got), len(want), e.logText())
		return
	}
	for i, w := range want {
		g := got[i]
		if g["level"] != w.level || g["msg"] != w.msg {
			e.t.Errorf("log line %d: %v %q, want %v %q", i, g["level"], g["msg"], w.level, w.msg)
		}
		for k, v := range w.attrs {
			gv, ok := g[k]
			switch {
			case !ok:
				e.t.Errorf("log line %d (%s) has no %q: %v", i, w.msg, k, g)
			case v != present && fmt.Sprint(gv) != fmt.Sprint(v):
				e.t.Errorf("log line %d (%s): %s = %v, want %v", i, w.msg, k, gv, v)
			}
		}
	}
}

func (e *lambdaEnv) logText() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.log.String()
}

// checkResult checks the objects of a Result. In want, an Error is a
// part of the expected text ("" wants none), and -1 in Rows, Rejected,
// BytesIn or BytesOut means any value.
func checkResult(t *testing.T, res awslambda.Result, want ...awslambda.ObjectResult) {
	t.Helper()
	if len(res.Objects) != len(want) {
		t.Errorf("result %+v: want %d objects", res, len(want))
		return
	}
	for i, w := range want {
		g := res.Objects[i]
		if g.DurationMS < 0 {
			t.Errorf("object %d: durationMs %d", i, g.DurationMS)
		}
		if w.Error == "" && g.Error != "" || !strings.Contains(g.Error, w.Error) {
			t.Errorf("object %d: error %q, want one with %q", i, g.Error, w.Error)
		}
		for _, f := range []struct {
			got  *int64
			want int64
		}{{&g.Rows, w.Rows}, {&g.Rejected, w.Rejected}, {&g.BytesIn, w.BytesIn}, {&g.BytesOut, w.BytesOut}} {
			if f.want == -1 {
				*f.got = -1
			}
		}
		g.DurationMS, g.Error, w.Error = 0, "", ""
		if g != w {
			t.Errorf("object %d:\n  %+v\nwant\n  %+v", i, g, w)
		}
	}
}

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// lambdaFixture reads an event of testdata/lambda.
func lambdaFixture(t *testing.T, name string) json.RawMessage {
	t.Helper()
	return readTestdata(t, filepath.Join("lambda", name))
}

// editRecords returns the event of a fixture after edit has changed each
// of its records; bucket and object are the record's s3.bucket and
// s3.object.
func editRecords(t *testing.T, name string, edit func(rec, bucket, object map[string]any)) json.RawMessage {
	t.Helper()
	var ev map[string]any
	if err := json.Unmarshal(lambdaFixture(t, name), &ev); err != nil {
		t.Fatal(err)
	}
	for _, r := range ev["Records"].([]any) {
		rec := r.(map[string]any)
		s3 := rec["s3"].(map[string]any)
		edit(rec, s3["bucket"].(map[string]any), s3["object"].(map[string]any))
	}
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// putOf is the event of s3-put-versioned.json (a versioned bucket) for
// the object bucket/key, its key encoded as S3 does.
func putOf(t *testing.T, bucket, encodedKey string) json.RawMessage {
	t.Helper()
	return editRecords(t, "s3-put-versioned.json", func(_, b, o map[string]any) {
		b["name"], b["arn"] = bucket, "arn:aws:s3:::"+bucket
		o["key"] = encodedKey
	})
}

// unversioned is the event of s3-put-versioned.json as S3 sends it for an
// unversioned bucket: without versionId, with etag as the eTag ("" for
// none).
func unversioned(t *testing.T, etag string) json.RawMessage {
	t.Helper()
	return editRecords(t, "s3-put-versioned.json", func(_, _, o map[string]any) {
		delete(o, "versionId")
		if etag == "" {
			delete(o, "eTag")
		} else {
			o["eTag"] = etag
		}
	})
}

func outcomes(r awslambda.Result) string {
	var s []string
	for _, o := range r.Objects {
		s = append(s, o.Outcome)
	}
	return strings.Join(s, ",")
}

func requestContext(id string) context.Context {
	return lambdacontext.NewContext(context.Background(), &lambdacontext.LambdaContext{AwsRequestID: id})
}

func TestPut(t *testing.T) {
	tests := []struct {
		input, golden string
		opts          compute.Options
	}{
		{"particles.csv", "particles.golden", compute.Options{}},
		{"demo.csv", "demo.golden", compute.Options{}},
		{"demo.csv", "demo-decimals3.golden", compute.Options{FixedDecimals: true, Decimals: 3}},
		{"semicolon.csv", "semicolon.golden", compute.Options{Delimiter: ';', MassColumn: "MASSE", VelocityColumn: "geschwindigkeit"}},
	}
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			e := newLambdaEnv(t, tt.opts)
			input := readTestdata(t, tt.input)
			key, outKey := "incoming/2026/"+tt.input, "momentum/2026/"+tt.input
			e.put("data", key, input)
			var want bytes.Buffer
			st, err := compute.Transform(context.Background(), &want, bytes.NewReader(input), tt.opts)
			if err != nil {
				t.Fatal(err)
			}

			res, err := e.h.Handle(requestContext("req-put"), putOf(t, "data", key))
			if err != nil {
				t.Fatalf("Handle: %v", err)
			}
			checkResult(t, res, awslambda.ObjectResult{
				Bucket: "data", Key: key, Version: putVersion, Output: "s3://data/" + outKey, Outcome: "done",
				Rows: st.RowsOut, BytesIn: int64(len(input)), BytesOut: int64(want.Len()),
			})
			got, _ := e.get(outKey)
			if !bytes.Equal(got, want.Bytes()) {
				t.Errorf("output differs from compute.Transform's:\n%s\nwant\n%s", got, want.Bytes())
			}
			if !bytes.Equal(got, readTestdata(t, tt.golden)) {
				t.Errorf("output differs from %s:\n%s", tt.golden, got)
			}
			e.checkObjects("data/"+key, "data/"+outKey)
			if o, _ := e.readOf(key); o != (compute.ReadOptions{Version: putVersion}) {
				t.Errorf("read the input with %+v, want the event's version", o)
			}
			e.checkLogs(logWant{"INFO", "processed", map[string]any{
				"requestId": "req-put", "record": 0, "bucket": "data", "key": key, "version": putVersion,
				"output": "s3://data/" + outKey, "outcome": "done", "rows": st.RowsOut, "rejected": 0,
				"bytesIn": len(input), "bytesOut": want.Len(), "durationMs": present,
			}})
		})
	}
}

// TestExampleEvent runs s3-put.json, the event that the local invocation
// in docs/lambda.md and sam local invoke send after replacing BUCKET, on the
// object it names.
func TestExampleEvent(t *testing.T) {
	e := newLambdaEnv(t, compute.Options{})
	demo := readTestdata(t, "demo.csv")
	e.put("data", "incoming/demo.csv", demo)
	event := bytes.ReplaceAll(lambdaFixture(t, "s3-put.json"), []byte("BUCKET"), []byte("data"))
	res, err := e.h.Handle(context.Background(), event)
	if err != nil {
		t.Fatalf("Handle: %v", err)
	}
	golden := readTestdata(t, "demo.golden")
	checkResult(t, res, awslambda.ObjectResult{Bucket: "data", Key: "incoming/demo.csv", Output: "s3://data/momentum/demo.csv", Outcome: "done",
		Rows: 5, BytesIn: int64(len(demo)), BytesOut: int64(len(golden))})
	if got, _ := e.get("momentum/demo.csv"); !bytes.Equal(got, golden) {
		t.Errorf("output differs from demo.golden:\n%s", got)
	}
	if o, _ := e.readOf("incoming/demo.csv"); o != (compute.ReadOptions{}) {
		t.Errorf("read with %+v: the event names no version or ETag", o)
	}
	e.checkObjects("data/incoming/demo.csv", "data/momentum/demo.csv")
	e.checkLogs(logWant{"INFO", "processed", map[string]any{"bucket": "data", "key": "incoming/demo.csv", "outcome": "done", "rows": 5}})
}

// TestReadOptions checks that the input is read at the version the
// record names or, in an unversioned bucket, only while it has the ETag
// the record names.
func TestReadOptions(t *testing.T) {
	tests := []struct {
		name  string
		event json.RawMessage
		want  compute.ReadOptions
	}{
		{"versioned", lambdaFixture(t, "s3-put-versioned.json"), compute.ReadOptions{Version: putVersion}},
		{"unversioned", unversioned(t, fixtureETag), compute.ReadOptions{ETag: `"` + fixtureETag + `"`}},
		{"unversioned, multipart ETag", unversioned(t, "9b2cf535f27731c974343645a3985328-2"), compute.ReadOptions{ETag: `"9b2cf535f27731c974343645a3985328-2"`}},
		{"unversioned, ETag quoted", unversioned(t, `"`+fixtureETag+`"`), compute.ReadOptions{ETag: `"` + fixtureETag + `"`}},
		{"unversioned, no ETag", unversioned(t, ""), compute.ReadOptions{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newLambdaEnv(t, compute.Options{})
			e.put("data", "incoming/particles.csv", readTestdata(t, "particles.csv"))
			res, err := e.h.Handle(context.Background(), tt.event)
			if err != nil || outcomes(res) != "done" || res.Objects[0].Version != tt.want.Version {
				t.Fatalf("Handle = %+v, %v", res, err)
			}
			if o, ok := e.readOf("incoming/particles.csv"); !ok || o != tt.want {
				t.Errorf("read the input with %+v, want %+v", o, tt.want)
			}
			e.checkObjects("data/incoming/particles.csv", "data/momentum/particles.csv")
			attrs := map[string]any{"key": "incoming/particles.csv", "outcome": "done"}
			if tt.want.Version != "" {
				attrs["version"] = tt.want.Version
			}
			e.checkLogs(logWant{"INFO", "processed", attrs})
			if tt.want.Version == "" && strings.Contains(e.logText(), `"version"`) {
				t.Errorf("a version logged for an unversioned bucket: %s", e.logText())
			}
		})
	}
}

// TestObjectChanged reads with the ETag of the record against the local
// files' own: an object replaced since the event is gone, for good.
func TestObjectChanged(t *testing.T) {
	e := newLambdaEnv(t, compute.Options{})
	e.checkETag = true
	particles := readTestdata(t, "particles.csv")
	e.put("data", "incoming/same.csv", particles)
	e.put("data", "incoming/changed.csv", particles)
	s, err := local.NewStore(filepath.Join(e.dir, "data"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	etags := map[string]string{}
	for _, key := range []string{"incoming/same.csv", "incoming/changed.csv"} {
		r, info, err := s.NewReader(context.Background(), key, compute.ReadOptions{})
		if err != nil || info.ETag == "" {
			t.Fatalf("%s: ETag %q, %v", key, info.ETag, err)
		}
		r.Close()
		etags[key] = info.ETag
	}
	// The upload that the event announced is replaced by another.
	time.Sleep(10 * time.Millisecond)
	os.Remove(filepath.Join(e.dir, "data", "incoming", "changed.csv"))
	e.put("data", "incoming/changed.csv", append(particles, "13,1,1,later\n"...))

	event := editRecords(t, "s3-multiple.json", func(_, _, o map[string]any) {
		switch o["key"] {
		case "incoming/one.csv":
			o["key"], o["eTag"] = "incoming/same.csv", etags["incoming/same.csv"]
		case "incoming/two.csv":
			o["key"], o["eTag"] = "incoming/changed.csv", etags["incoming/changed.csv"]
		case "incoming/three.csv":
			o["key"], o["eTag"] = "incoming/gone.csv", etags["incoming/same.csv"]
		}
	})
	res, err := e.h.Handle(requestContext("req-etag"), event)
	if err != nil {
		t.Fatalf("Handle: %v", err)
	}
	checkResult(t, res,
		awslambda.ObjectResult{Bucket: "data", Key: "incoming/same.csv", Output: "s3://data/momentum/same.csv", Outcome: "done", Rows: 12, BytesIn: int64(len(particles)), BytesOut: -1},
		awslambda.ObjectResult{Bucket: "data", Key: "incoming/changed.csv", Output: "s3://data/momentum/changed.csv", Outcome: "failed", Error: "changed"},
		awslambda.ObjectResult{Bucket: "data", Key: "incoming/gone.csv", Output: "s3://data/momentum/gone.csv", Outcome: "failed", Error: "no such file"},
	)
	if got, _ := e.get("momentum/same.csv"); !bytes.Equal(got, readTestdata(t, "particles.golden")) {
		t.Errorf("output of same.csv differs from particles.golden:\n%s", got)
	}
	for i, name := range []string{"changed", "gone"} {
		body, _ := e.get("momentum/" + name + ".error.json")
		var rep compute.JobReport
		if err := json.Unmarshal(body, &rep); err != nil || rep.Input != "incoming/"+name+".csv" || len(res.Objects) != 3 || rep.Error != res.Objects[i+1].Error {
			t.Errorf("report of %s: %s (%v)", name, body, err)
		}
	}
	e.checkObjects("data/incoming/same.csv", "data/incoming/changed.csv", "data/momentum/same.csv",
		"data/momentum/changed.error.json", "data/momentum/gone.error.json")
	e.checkLogs(
		logWant{"INFO", "processed", map[string]any{"requestId": "req-etag", "key": "incoming/same.csv", "outcome": "done"}},
		logWant{"ERROR", "the object cannot be processed", map[string]any{"requestId": "req-etag", "record": 1, "bucket": "data", "key": "incoming/changed.csv",
			"outcome": "failed", "report": "s3://data/momentum/changed.error.json", "error": present}},
		logWant{"ERROR", "the object cannot be processed", map[string]any{"requestId": "req-etag", "record": 2, "bucket": "data", "key": "incoming/gone.csv",
			"outcome": "failed", "report": "s3://data/momentum/gone.error.json", "error": present}},
	)
}

func TestEncodedKeys(t *testing.T) {
	e := newLambdaEnv(t, compute.Options{})
	particles := readTestdata(t, "particles.csv")
	names := []string{"a b.csv", "a+b.csv", "café.csv"} // as the fixture encodes them
	for _, name := range names {
		e.put("data", "incoming/"+name, particles)
	}
	res, err := e.h.Handle(context.Background(), lambdaFixture(t, "s3-encoded-keys.json"))
	if err != nil {
		t.Fatalf("Handle: %v", err)
	}
	var want []awslambda.ObjectResult
	var logs []logWant
	objects := []string{}
	for _, name := range names {
		want = append(want, awslambda.ObjectResult{
			Bucket: "data", Key: "incoming/" + name, Output: "s3://data/momentum/" + name, Outcome: "done",
			Rows: 12, BytesIn: int64(len(particles)), BytesOut: -1,
		})
		logs = append(logs, logWant{"INFO", "processed", map[string]any{"key": "incoming/" + name, "output": "s3://data/momentum/" + name}})
		objects = append(objects, "data/incoming/"+name, "data/momentum/"+name)
		if got, _ := e.get("momentum/" + name); !bytes.Equal(got, readTestdata(t, "particles.golden")) {
			t.Errorf("output of %q differs from particles.golden:\n%s", name, got)
		}
		if _, ok := e.readOf("incoming/" + name); !ok {
			t.Errorf("%q was not read", name)
		}
	}
	checkResult(t, res, want...)
	e.checkObjects(objects...)
	e.checkLogs(logs...)
}

func TestDuplicateDelivery(t *testing.T) {
	t.Run("again", func(t *testing.T) {
		e := newLambdaEnv(t, compute.Options{})
		e.put("data", "incoming/particles.csv", readTestdata(t, "particles.csv"))
		ev := putOf(t, "data", "incoming/particles.csv")
		if res, err := e.h.Handle(context.Background(), ev); err != nil || outcomes(res) != "done" {
			t.Fatalf("first delivery = %+v, %v", res, err)
		}
		outPath := filepath.Join(e.dir, "data", "momentum", "particles.csv")
		first, err := os.Stat(outPath)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond) // a rewrite would have another time
		res, err := e.h.Handle(context.Background(), ev)
		if err != nil {
			t.Fatalf("second delivery: %v", err)
		}
		checkResult(t, res, awslambda.ObjectResult{Bucket: "data", Key: "incoming/particles.csv", Version: putVersion, Output: "s3://data/momentum/particles.csv", Outcome: "duplicate"})
		if again, err := os.Stat(outPath); err != nil || !os.SameFile(first, again) || !again.ModTime().Equal(first.ModTime()) {
			t.Error("the second delivery replaced the output")
		}
		if got, _ := e.get("momentum/particles.csv"); !bytes.Equal(got, readTestdata(t, "particles.golden")) {
			t.Errorf("output after two deliveries differs from particles.golden:\n%s", got)
		}
		e.checkObjects("data/incoming/particles.csv", "data/momentum/particles.csv")
		e.checkLogs(
			logWant{"INFO", "processed", map[string]any{"key": "incoming/particles.csv", "outcome": "done"}},
			logWant{"INFO", "processed", map[string]any{"key": "incoming/particles.csv", "outcome": "duplicate", "rows": 0, "bytesOut": 0}},
		)
	})

	t.Run("concurrent", func(t *testing.T) {
		for round := range 5 {
			e := newLambdaEnv(t, compute.Options{})
			e.put("data", "incoming/particles.csv", readTestdata(t, "particles.csv"))
			ev := putOf(t, "data", "incoming/particles.csv")
			var wg sync.WaitGroup
			results := make([]string, 2)
			for i := range results {
				wg.Go(func() {
					res, err := e.h.Handle(context.Background(), ev)
					results[i] = fmt.Sprint(outcomes(res), " ", err)
				})
			}
			wg.Wait()
			slices.Sort(results)
			if !slices.Equal(results, []string{"done <nil>", "duplicate <nil>"}) {
				t.Errorf("round %d: two concurrent deliveries: %q, want one done, one duplicate, no error", round, results)
			}
			if got, _ := e.get("momentum/particles.csv"); !bytes.Equal(got, readTestdata(t, "particles.golden")) {
				t.Errorf("round %d: output differs from particles.golden:\n%s", round, got)
			}
			e.checkObjects("data/incoming/particles.csv", "data/momentum/particles.csv")
			lines := e.logLines()
			var got []string
			for _, l := range lines {
				got = append(got, fmt.Sprint(l["level"], " ", l["msg"], " ", l["outcome"]))
			}
			slices.Sort(got)
			if !slices.Equal(got, []string{"INFO processed done", "INFO processed duplicate"}) {
				t.Errorf("round %d: log lines %q", round, got)
			}
		}
	})
}

func TestNothingToDo(t *testing.T) {
	particlesIn := awslambda.ObjectResult{Bucket: "data", Key: "incoming/particles.csv", Version: putVersion, Outcome: "ignored"}
	tests := []struct {
		name  string
		event json.RawMessage
		want  []awslambda.ObjectResult // nil: an empty list
		log   logWant
	}{
		{
			"an output", putOf(t, "data", "momentum/particles.csv"),
			[]awslambda.ObjectResult{{Bucket: "data", Key: "momentum/particles.csv", Version: putVersion, Outcome: "already-processed"}},
			logWant{"INFO", "an output of this function: nothing to do", map[string]any{"bucket": "data", "key": "momentum/particles.csv"}},
		},
		{
			"an input with a momentum column", putOf(t, "data", "incoming/processed.csv"),
			[]awslambda.ObjectResult{{Bucket: "data", Key: "incoming/processed.csv", Version: putVersion, Output: "s3://data/momentum/processed.csv", Outcome: "already-processed", BytesIn: -1}},
			logWant{"INFO", "the object has a momentum column already: nothing written", map[string]any{"bucket": "data", "key": "incoming/processed.csv", "outcome": "already-processed"}},
		},
		{
			"outside the input prefix", putOf(t, "data", "elsewhere/particles.csv"),
			[]awslambda.ObjectResult{{Bucket: "data", Key: "elsewhere/particles.csv", Version: putVersion, Outcome: "ignored"}},
			logWant{"WARN", "not under the function's input location: ignored", map[string]any{"bucket": "data", "key": "elsewhere/particles.csv", "input": "s3://data/incoming/"}},
		},
		{
			"another bucket", putOf(t, "other", "incoming/particles.csv"),
			[]awslambda.ObjectResult{{Bucket: "other", Key: "incoming/particles.csv", Version: putVersion, Outcome: "ignored"}},
			logWant{"WARN", "not under the function's input location: ignored", map[string]any{"bucket": "other", "key": "incoming/particles.csv"}},
		},
		{
			"a folder marker", putOf(t, "data", "incoming/sub/"),
			[]awslambda.ObjectResult{{Bucket: "data", Key: "incoming/sub/", Version: putVersion, Outcome: "ignored"}},
			logWant{"WARN", "not under the function's input location: ignored", map[string]any{"key": "incoming/sub/"}},
		},
		{
			"a deletion", lambdaFixture(t, "s3-delete.json"),
			[]awslambda.ObjectResult{{Bucket: "data", Key: "incoming/particles.csv", Outcome: "ignored"}},
			logWant{"INFO", "not an object creation: ignored", map[string]any{"bucket": "data", "key": "incoming/particles.csv", "eventName": "ObjectRemoved:Delete"}},
		},
		{
			"a deletion of an undecodable key", deletionOf(t, "incoming/100%.csv"),
			[]awslambda.ObjectResult{{Bucket: "data", Key: "incoming/100%.csv", Outcome: "ignored"}},
			logWant{"INFO", "not an object creation: ignored", map[string]any{"bucket": "data", "key": "incoming/100%.csv", "eventName": "ObjectRemoved:Delete"}},
		},
		{
			"a restore", editRecords(t, "s3-put-versioned.json", func(rec, _, _ map[string]any) { rec["eventName"] = "ObjectRestore:Completed" }),
			[]awslambda.ObjectResult{particlesIn},
			logWant{"INFO", "not an object creation: ignored", map[string]any{"key": "incoming/particles.csv", "eventName": "ObjectRestore:Completed"}},
		},
		{
			"the test event", lambdaFixture(t, "s3-test-event.json"), nil,
			logWant{"INFO", "event with no records", map[string]any{"service": "Amazon S3", "event": "s3:TestEvent"}},
		},
		{
			"no records", lambdaFixture(t, "s3-empty.json"), nil,
			logWant{"INFO", "event with no records", nil},
		},
		{
			"null", json.RawMessage(`null`), nil,
			logWant{"INFO", "event with no records", nil},
		},
		{
			"a JSON string", json.RawMessage(`"hello"`), nil,
			logWant{"ERROR", "not an S3 event notification: ignored", map[string]any{"error": present, "payload": `"hello"`}},
		},
		{
			"not JSON", json.RawMessage(`Records: none`), nil,
			logWant{"ERROR", "not an S3 event notification: ignored", map[string]any{"error": present, "payload": "Records: none"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newLambdaEnv(t, compute.Options{})
			e.put("data", "incoming/particles.csv", readTestdata(t, "particles.csv"))
			e.put("data", "incoming/100%.csv", readTestdata(t, "particles.csv"))
			e.put("data", "incoming/processed.csv", readTestdata(t, "particles.golden"))
			e.put("data", "momentum/particles.csv", readTestdata(t, "particles.golden"))
			e.put("data", "elsewhere/particles.csv", readTestdata(t, "particles.csv"))
			e.put("other", "incoming/particles.csv", readTestdata(t, "particles.csv"))
			before := e.objects()
			res, err := e.h.Handle(requestContext("req-nothing"), tt.event)
			if err != nil {
				t.Errorf("Handle: %v", err)
			}
			checkResult(t, res, tt.want...)
			e.checkObjects(before...)
			if tt.log.attrs == nil {
				tt.log.attrs = map[string]any{}
			}
			tt.log.attrs["requestId"] = "req-nothing"
			e.checkLogs(tt.log)
		})
	}
}

// deletionOf is the event of s3-delete.json for key, encoded as S3 does.
func deletionOf(t *testing.T, encodedKey string) json.RawMessage {
	t.Helper()
	return bytes.Replace(lambdaFixture(t, "s3-delete.json"), []byte(`"incoming/particles.csv"`), []byte(strconv.Quote(encodedKey)), 1)
}

func TestMultipartUpload(t *testing.T) {
	e := newLambdaEnv(t, compute.Options{})
	particles := readTestdata(t, "particles.csv")
	e.put("data", "incoming/particles.csv", particles)
	res, err := e.h.Handle(context.Background(), lambdaFixture(t, "s3-multipart.json"))
	if err != nil {
		t.Fatalf("Handle: %v", err)
	}
	checkResult(t, res, awslambda.ObjectResult{Bucket: "data", Key: "incoming/particles.csv", Output: "s3://data/momentum/particles.csv", Outcome: "done",
		Rows: 12, BytesIn: int64(len(particles)), BytesOut: -1})
	if got, _ := e.get("momentum/particles.csv"); !bytes.Equal(got, readTestdata(t, "particles.golden")) {
		t.Errorf("output differs from particles.golden:\n%s", got)
	}
	e.checkObjects("data/incoming/particles.csv", "data/momentum/particles.csv")
	e.checkLogs(logWant{"INFO", "processed", map[string]any{"key": "incoming/particles.csv", "outcome": "done", "rows": 12}})
}

func TestPermanentFailures(t *testing.T) {
	tests := []struct {
		name, key string
		data      string // "" for no object
		line      int64
		column    string
		errorLike string // in the report's error
	}{
		{"bad value", "incoming/bad.csv", "mass,velocity\n1,2\n3,abc\n", 3, "velocity", "abc"},
		{"negative mass", "incoming/neg.csv", "mass,velocity\n-1,2\n", 2, "mass", "negative mass"},
		{"too few fields", "incoming/short.csv", "mass,velocity\n1,2\n3\n", 3, "", "wrong number of fields"},
		{"missing object", "incoming/gone.csv", "", 0, "", "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newLambdaEnv(t, compute.Options{})
			objects := []string{}
			if tt.data != "" {
				e.put("data", tt.key, []byte(tt.data))
				objects = append(objects, "data/"+tt.key)
			}
			res, err := e.h.Handle(requestContext("req-fail"), putOf(t, "data", tt.key))
			if err != nil {
				t.Fatalf("Handle: %v: want no error (a retry cannot help)", err)
			}
			name := strings.TrimSuffix(strings.TrimPrefix(tt.key, "incoming/"), ".csv")
			checkResult(t, res, awslambda.ObjectResult{
				Bucket: "data", Key: tt.key, Version: putVersion, Output: "s3://data/momentum/" + name + ".csv", Outcome: "failed",
				Line: tt.line, Column: tt.column, Error: tt.errorLike, Rows: -1, BytesIn: -1, BytesOut: -1,
				// The bad record stopped the run: it is the error, not a reject.
				Rejected: 0,
			})
			body, _ := e.get("momentum/" + name + ".error.json")
			var rep compute.JobReport
			if err := json.Unmarshal(body, &rep); err != nil {
				t.Fatalf("report %q: %v", body, err)
			}
			if rep.Input != tt.key || rep.Line != tt.line || rep.Column != tt.column || !strings.Contains(rep.Error, tt.errorLike) {
				t.Errorf("report %+v, want input %s, line %d, column %q, an error with %q", rep, tt.key, tt.line, tt.column, tt.errorLike)
			}
			e.checkObjects(append(objects, "data/momentum/"+name+".error.json")...)
			attrs := map[string]any{
				"requestId": "req-fail", "bucket": "data", "key": tt.key, "outcome": "failed",
				"report": "s3://data/momentum/" + name + ".error.json", "error": present,
			}
			if tt.line != 0 {
				attrs["line"], attrs["column"], attrs["reason"] = tt.line, tt.column, present
			}
			e.checkLogs(logWant{"ERROR", "the object cannot be processed", attrs})
			if tt.line == 0 && strings.Contains(e.logText(), `"line"`) {
				t.Errorf("a line logged for a failure without one: %s", e.logText())
			}

			// Delivered again, the object fails again; the report stays.
			res, err = e.h.Handle(requestContext("req-fail"), putOf(t, "data", tt.key))
			if err != nil || outcomes(res) != "failed" {
				t.Errorf("second delivery = %+v, %v: want failed, no error", res, err)
			}
			if again, _ := e.get("momentum/" + name + ".error.json"); !bytes.Equal(again, body) {
				t.Errorf("the second delivery changed the report: %s", again)
			}
			e.checkObjects(append(objects, "data/momentum/"+name+".error.json")...)
		})
	}
}

func TestUndecodableKey(t *testing.T) {
	e := newLambdaEnv(t, compute.Options{})
	particles := readTestdata(t, "particles.csv")
	e.put("data", "incoming/particles.csv", particles)
	res, err := e.h.Handle(requestContext("req-key"), lambdaFixture(t, "s3-bad-key.json"))
	if err != nil {
		t.Fatalf("Handle: %v: want no error (a retry cannot help)", err)
	}
	checkResult(t, res,
		awslambda.ObjectResult{Bucket: "data", Key: "incoming/100%.csv", Outcome: "failed", Error: "invalid URL escape"},
		awslambda.ObjectResult{Bucket: "data", Key: "incoming/particles.csv", Output: "s3://data/momentum/particles.csv", Outcome: "done",
			Rows: 12, BytesIn: int64(len(particles)), BytesOut: -1},
	)
	body, _ := e.get("momentum/100%.error.json")
	var rep compute.JobReport
	if err := json.Unmarshal(body, &rep); err != nil || rep.Input != "incoming/100%.csv" || !strings.Contains(rep.Error, "invalid URL escape") {
		t.Errorf("report %q: %v", body, err)
	}
	if got, _ := e.get("momentum/particles.csv"); !bytes.Equal(got, readTestdata(t, "particles.golden")) {
		t.Errorf("the good record's output differs from particles.golden:\n%s", got)
	}
	e.checkObjects("data/incoming/particles.csv", "data/momentum/100%.error.json", "data/momentum/particles.csv")
	e.checkLogs(
		logWant{"ERROR", "cannot read the event record", map[string]any{"requestId": "req-key", "record": 0, "bucket": "data", "key": "incoming/100%.csv",
			"report": "s3://data/momentum/100%.error.json", "error": present}},
		logWant{"INFO", "processed", map[string]any{"requestId": "req-key", "record": 1, "key": "incoming/particles.csv", "outcome": "done"}},
	)
}

// TestUndecodableKeyUnderEncodedPrefix is an undecodable key whose
// input prefix is itself encoded in the event ("in+coming/" for
// "in coming/"): it is still an input, reported under its decoded name.
func TestUndecodableKeyUnderEncodedPrefix(t *testing.T) {
	e := newLambdaEnv(t, compute.Options{})
	e.h.Route.From.Prefix = "in coming/"
	event := editRecords(t, "s3-bad-key.json", func(rec, _, obj map[string]any) {
		if obj["key"] == "incoming/100%.csv" {
			obj["key"] = "in+coming/caf%C3%A9+100%.csv"
		}
	})
	e.put("data", "in coming/particles.csv", readTestdata(t, "particles.csv"))
	res, err := e.h.Handle(requestContext("req-key2"), event)
	if err != nil {
		t.Fatalf("Handle: %v", err)
	}
	if len(res.Objects) != 2 || res.Objects[0].Outcome != "failed" || res.Objects[0].Key != "in+coming/caf%C3%A9+100%.csv" {
		t.Fatalf("result %+v", res)
	}
	body, _ := e.get("momentum/café 100%.error.json")
	var rep compute.JobReport
	if err := json.Unmarshal(body, &rep); err != nil || rep.Input != "in coming/café 100%.csv" {
		t.Errorf("report %q: %v", body, err)
	}
}

// TestUndecodablePayloads: a payload that is not an S3 event notification,
// whatever is wrong with it, is settled the one way the permanent
// failures are: one ERROR log line with the request id and the payload's
// first bytes, and success (an empty list of objects), since a retry
// cannot help. The payload goes through aws-lambda-go as lambda.Start
// hands it to the handler, where a payload that is not JSON at all would
// otherwise fail the invocation before the handler sees it.
func TestUndecodablePayloads(t *testing.T) {
	long := `{"Records":[{"eventSource":"aws:s3","s3":{"object":{"key":"` + strings.Repeat("k", 500)
	for _, tt := range []struct {
		name, payload, first string // first: the start of the payload the log shows
	}{
		{"not JSON", "Records: none", "Records: none"},
		{"truncated", `{"Records":[{"eventSource":"aws:s3",`, `{"Records":[{"eventSource":"aws:s3",`},
		{"empty", "", ""},
		{"an array", `[{"Records":[]}]`, `[{"Records":[]}]`},
		{"a string", `"s3:ObjectCreated:Put"`, `"s3:ObjectCreated:Put"`},
		{"records not a list", `{"Records":"incoming/a.csv"}`, `{"Records":"incoming/a.csv"}`},
		{"trailing data", `{"Records":[]} {"Records":[]}`, `{"Records":[]} {"Records":[]}`},
		{"long and cut", long, long[:200]},
		{"not UTF-8", "\xff\xfe{", `\xff\xfe{`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newLambdaEnv(t, compute.Options{})
			out, err := lambda.NewHandler(e.h).Invoke(requestContext("req-bad"), []byte(tt.payload))
			if err != nil {
				t.Fatalf("the invocation failed, so Lambda would retry it: %v", err)
			}
			var res awslambda.Result
			if err := json.Unmarshal(out, &res); err != nil || res.Objects == nil || len(res.Objects) != 0 {
				t.Errorf("answer %s (%v), want an empty list of objects", out, err)
			}
			e.checkLogs(logWant{"ERROR", "not an S3 event notification: ignored", map[string]any{
				"requestId": "req-bad", "payload": tt.first, "payloadBytes": len(tt.payload), "error": present,
			}})
			e.checkObjects()
		})
	}
}

func TestSkipMode(t *testing.T) {
	e := newLambdaEnv(t, compute.Options{OnError: compute.OnErrorSkip, NewRejectWriter: rejects.NewWriter})
	input := "mass,velocity\n1,2\n3,abc\n4,5\n"
	e.put("data", "incoming/mixed.csv", []byte(input))
	res, err := e.h.Handle(requestContext("req-skip"), putOf(t, "data", "incoming/mixed.csv"))
	if err != nil {
		t.Fatalf("Handle: %v", err)
	}
	const output = "mass,velocity,momentum\n1,2,2\n4,5,20\n"
	checkResult(t, res, awslambda.ObjectResult{Bucket: "data", Key: "incoming/mixed.csv", Version: putVersion, Output: "s3://data/momentum/mixed.csv", Outcome: "done",
		Rows: 2, Rejected: 1, BytesIn: int64(len(input)), BytesOut: int64(len(output))})
	if got, _ := e.get("momentum/mixed.csv"); string(got) != output {
		t.Errorf("output %q, want %q", got, output)
	}
	if got, _ := e.get("momentum/mixed.rejects.csv"); !strings.HasPrefix(string(got), "line,column,reason,record\n3,velocity,") || !strings.Contains(string(got), "abc") {
		t.Errorf("rejects %q", got)
	}
	e.checkObjects("data/incoming/mixed.csv", "data/momentum/mixed.csv", "data/momentum/mixed.rejects.csv")
	e.checkLogs(logWant{"INFO", "processed", map[string]any{"requestId": "req-skip", "key": "incoming/mixed.csv", "outcome": "done",
		"rows": 2, "rejected": 1, "rejects": "s3://data/momentum/mixed.rejects.csv"}})
}

func TestMultipleRecords(t *testing.T) {
	e := newLambdaEnv(t, compute.Options{})
	particles := readTestdata(t, "particles.csv")
	e.put("data", "incoming/one.csv", particles)
	e.put("data", "incoming/two.csv", []byte("mass,velocity\n1,2\nx,3\n"))
	e.put("data", "incoming/three.csv", particles)
	res, err := e.h.Handle(requestContext("req-multi"), lambdaFixture(t, "s3-multiple.json"))
	if err != nil {
		t.Fatalf("Handle: %v: bad data is no reason to retry", err)
	}
	checkResult(t, res,
		awslambda.ObjectResult{Bucket: "data", Key: "incoming/one.csv", Output: "s3://data/momentum/one.csv", Outcome: "done", Rows: 12, BytesIn: int64(len(particles)), BytesOut: -1},
		awslambda.ObjectResult{Bucket: "data", Key: "incoming/two.csv", Output: "s3://data/momentum/two.csv", Outcome: "failed", Line: 3, Column: "mass", Error: "line 3",
			Rows: -1, Rejected: 0, BytesIn: -1, BytesOut: -1},
		awslambda.ObjectResult{Bucket: "data", Key: "incoming/three.csv", Output: "s3://data/momentum/three.csv", Outcome: "done", Rows: 12, BytesIn: int64(len(particles)), BytesOut: -1},
	)
	for _, name := range []string{"one", "three"} {
		if got, _ := e.get("momentum/" + name + ".csv"); !bytes.Equal(got, readTestdata(t, "particles.golden")) {
			t.Errorf("output of %s differs from particles.golden:\n%s", name, got)
		}
	}
	e.checkObjects("data/incoming/one.csv", "data/incoming/two.csv", "data/incoming/three.csv",
		"data/momentum/one.csv", "data/momentum/two.error.json", "data/momentum/three.csv")
	e.checkLogs(
		logWant{"INFO", "processed", map[string]any{"record": 0, "key": "incoming/one.csv", "outcome": "done"}},
		logWant{"ERROR", "the object cannot be processed", map[string]any{"record": 1, "bucket": "data", "key": "incoming/two.csv", "line": 3, "column": "mass"}},
		logWant{"INFO", "processed", map[string]any{"record": 2, "key": "incoming/three.csv", "outcome": "done"}},
	)
}

func TestRetryableFailures(t *testing.T) {
	tests := []struct {
		name      string
		kind      error
		readFault bool // on reading the input two.csv, else on creating its output
	}{
		{"transient read", compute.ErrTransient, true},
		{"permission", compute.ErrPermission, true},
		{"transient write", compute.ErrTransient, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newLambdaEnv(t, compute.Options{})
			particles := readTestdata(t, "particles.csv")
			for _, name := range []string{"one", "two", "three"} {
				e.put("data", "incoming/"+name+".csv", particles)
			}
			faults, key := e.writeFaults, "momentum/two.csv"
			if tt.readFault {
				faults, key = e.readFaults, "incoming/two.csv"
			}
			e.setFault(faults, key, tt.kind)
			res, err := e.h.Handle(requestContext("req-retry"), lambdaFixture(t, "s3-multiple.json"))
			if err == nil || !errors.Is(err, tt.kind) || !strings.Contains(err.Error(), "s3://data/incoming/two.csv") {
				t.Errorf("Handle error %v: want one wrapping %v that names s3://data/incoming/two.csv", err, tt.kind)
			}
			done := func(name string) awslambda.ObjectResult {
				return awslambda.ObjectResult{Bucket: "data", Key: "incoming/" + name + ".csv", Output: "s3://data/momentum/" + name + ".csv", Outcome: "done",
					Rows: 12, BytesIn: int64(len(particles)), BytesOut: -1}
			}
			checkResult(t, res, done("one"),
				awslambda.ObjectResult{Bucket: "data", Key: "incoming/two.csv", Output: "s3://data/momentum/two.csv", Outcome: "retry", Error: tt.kind.Error()},
				done("three"))
			e.checkObjects("data/incoming/one.csv", "data/incoming/two.csv", "data/incoming/three.csv", "data/momentum/one.csv", "data/momentum/three.csv")
			e.checkLogs(
				logWant{"INFO", "processed", map[string]any{"requestId": "req-retry", "key": "incoming/one.csv", "outcome": "done"}},
				logWant{"WARN", "failed, to be retried", map[string]any{"requestId": "req-retry", "record": 1, "bucket": "data", "key": "incoming/two.csv", "error": present}},
				logWant{"INFO", "processed", map[string]any{"requestId": "req-retry", "key": "incoming/three.csv", "outcome": "done"}},
			)

			// Lambda delivers the whole event again once the fault has
			// cleared.
			e.setFault(faults, key, nil)
			e.mu.Lock()
			e.log.Reset()
			e.mu.Unlock()
			res, err = e.h.Handle(requestContext("req-retry-2"), lambdaFixture(t, "s3-multiple.json"))
			if err != nil {
				t.Fatalf("the retry: %v", err)
			}
			dup := func(name string) awslambda.ObjectResult {
				return awslambda.ObjectResult{Bucket: "data", Key: "incoming/" + name + ".csv", Output: "s3://data/momentum/" + name + ".csv", Outcome: "duplicate"}
			}
			checkResult(t, res, dup("one"), done("two"), dup("three"))
			for _, name := range []string{"one", "two", "three"} {
				if got, _ := e.get("momentum/" + name + ".csv"); !bytes.Equal(got, readTestdata(t, "particles.golden")) {
					t.Errorf("output of %s differs from particles.golden:\n%s", name, got)
				}
			}
			e.checkObjects("data/incoming/one.csv", "data/incoming/two.csv", "data/incoming/three.csv",
				"data/momentum/one.csv", "data/momentum/two.csv", "data/momentum/three.csv")
			e.checkLogs(
				logWant{"INFO", "processed", map[string]any{"key": "incoming/one.csv", "outcome": "duplicate"}},
				logWant{"INFO", "processed", map[string]any{"key": "incoming/two.csv", "outcome": "done"}},
				logWant{"INFO", "processed", map[string]any{"key": "incoming/three.csv", "outcome": "duplicate"}},
			)
		})
	}
}

func TestDeadline(t *testing.T) {
	tests := []struct {
		name     string
		timeout  time.Duration // of the invocation
		reserve  time.Duration // the handler's Reserve
		slow     bool          // the input stalls after a few bytes
		min, max time.Duration // how long Handle may take
	}{
		// The deadline falls in the middle of the run.
		{"mid-run", 300 * time.Millisecond, 200 * time.Millisecond, true, 80 * time.Millisecond, 290 * time.Millisecond},
		// No time left once the reserve is set aside: nothing is written,
		// though the input is small and quick.
		{"reserve exceeds the time left", 5 * time.Second, 6 * time.Second, false, 0, 4 * time.Second},
		// The default reserve is a tenth of the time left, at least a
		// second: the run stops 1s before the deadline.
		{"default reserve", 1500 * time.Millisecond, 0, true, 400 * time.Millisecond, 1200 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newLambdaEnv(t, compute.Options{})
			e.put("data", "incoming/slow.csv", readTestdata(t, "particles.csv"))
			if tt.slow {
				e.slowKey = "incoming/slow.csv"
			}
			e.h.Reserve = tt.reserve
			ctx, cancel := context.WithTimeout(requestContext("req-late"), tt.timeout)
			defer cancel()
			start := time.Now()
			res, err := e.h.Handle(ctx, putOf(t, "data", "incoming/slow.csv"))
			took := time.Since(start)
			if ctx.Err() != nil {
				t.Errorf("Handle returned after the invocation deadline (took %v)", took)
			}
			if took < tt.min || took > tt.max {
				t.Errorf("Handle took %v, want %v to %v", took, tt.min, tt.max)
			}
			if err == nil || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "s3://data/incoming/slow.csv") {
				t.Errorf("Handle error %v: want the deadline, for s3://data/incoming/slow.csv", err)
			}
			checkResult(t, res, awslambda.ObjectResult{Bucket: "data", Key: "incoming/slow.csv", Version: putVersion, Output: "s3://data/momentum/slow.csv",
				Outcome: "retry", Error: "stopped before the invocation deadline", Rows: -1, BytesIn: -1, BytesOut: -1})
			e.checkObjects("data/incoming/slow.csv") // no output, no temporary file
			e.checkLogs(logWant{"WARN", "failed, to be retried", map[string]any{"requestId": "req-late", "key": "incoming/slow.csv", "error": present}})
		})
	}
}

func TestRequestID(t *testing.T) {
	e := newLambdaEnv(t, compute.Options{})
	e.put("data", "incoming/particles.csv", readTestdata(t, "particles.csv"))
	ctx := requestContext("req-1")
	if _, err := e.h.Handle(ctx, lambdaFixture(t, "s3-bad-key.json")); err != nil {
		t.Fatal(err)
	}
	e.h.Handle(ctx, putOf(t, "data", "elsewhere/x.csv"))
	e.h.Handle(ctx, lambdaFixture(t, "s3-empty.json"))
	e.h.Handle(ctx, json.RawMessage(`nope`))
	e.h.Handle(context.Background(), lambdaFixture(t, "s3-empty.json")) // outside Lambda: no id
	lines := e.logLines()
	levels := map[any]bool{}
	for i, l := range lines[:max(len(lines)-1, 0)] {
		levels[l["level"]] = true
		if l["requestId"] != "req-1" {
			t.Errorf("log line %d without the request id req-1: %v", i, l)
		}
	}
	if len(lines) != 6 || !levels["INFO"] || !levels["WARN"] || !levels["ERROR"] {
		t.Fatalf("log lines:\n%s\nwant 6, at INFO, WARN and ERROR", e.logText())
	}
	if last := lines[len(lines)-1]; last["requestId"] != nil {
		t.Errorf("a request id without a Lambda context: %v", last)
	}
}

// TestCompressed: a gzip upload is read by its first bytes, and its output
// is compressed and named as Options.Compress says; the rejects are plain.
func TestCompressed(t *testing.T) {
	for _, tc := range []struct {
		compress compute.Compression
		output   string
	}{
		{compute.SameAsInput, "momentum/mixed.csv.gz"},
		{compute.Zstd, "momentum/mixed.csv.zst"},
		{compute.Uncompressed, "momentum/mixed.csv"},
	} {
		e := newLambdaEnv(t, compute.Options{Codec: codec.Codec{}, Compress: tc.compress, OnError: compute.OnErrorSkip, NewRejectWriter: rejects.NewWriter})
		var gz bytes.Buffer
		w, _ := codec.Codec{}.NewWriter(&gz, compute.Gzip)
		w.Write([]byte("mass,velocity\n1,2\n3,abc\n4,5\n"))
		w.Close()
		e.put("data", "incoming/mixed.csv.gz", gz.Bytes())
		res, err := e.h.Handle(requestContext("req-gz"), putOf(t, "data", "incoming/mixed.csv.gz"))
		if err != nil || outcomes(res) != "done" || res.Objects[0].Output != "s3://data/"+tc.output {
			t.Fatalf("compress %s: %+v, %v", tc.compress, res, err)
		}
		e.checkObjects("data/incoming/mixed.csv.gz", "data/"+tc.output, "data/momentum/mixed.rejects.csv")
		out, _ := e.get(tc.output)
		if c := compute.DetectCompression(out); c != compute.Uncompressed {
			r, _ := codec.Codec{}.NewReader(bytes.NewReader(out), c)
			out, _ = io.ReadAll(r)
		}
		if string(out) != "mass,velocity,momentum\n1,2,2\n4,5,20\n" {
			t.Errorf("compress %s: output %q", tc.compress, out)
		}
		if rejects, _ := e.get("momentum/mixed.rejects.csv"); !strings.HasPrefix(string(rejects), "line,column,reason,record\n3,velocity,") {
			t.Errorf("compress %s: rejects %q", tc.compress, rejects)
		}
	}
}
