package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/momentum-run/momentum/compute"
)

// These tests run the built binary as AWS runs it: as the bootstrap of a
// provided.al2023 function, under AWS's runtime interface emulator
// (aws-lambda-rie), against an S3 server on loopback. They invoke it with
// the S3 event notifications that uploads made with the real SDK produce.

// rieTool is AWS's runtime interface emulator, pinned by the tool
// directive in go.mod.
const rieTool = "aws-lambda-rie"

var rie struct {
	once sync.Once
	path string
	err  error
}

// rieBinary is the emulator's executable, built from the module cache by
// "go tool -n", once per test binary. go keeps the executable in its build
// cache, so a later run finds it built. Nothing is installed and nothing
// skips: a failed build fails the test.
func rieBinary(t *testing.T) string {
	t.Helper()
	rie.once.Do(func() {
		cmd := exec.Command(goTool(), "tool", "-n", rieTool)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			rie.err = fmt.Errorf("go tool -n %s: %v\n%s", rieTool, err, stderr.String())
			return
		}
		rie.path = strings.TrimSpace(string(out))
	})
	if rie.err != nil {
		t.Fatal(rie.err)
	}
	return rie.path
}

// s3Faults makes the S3 server misbehave for chosen keys.
type s3Faults struct {
	mu       sync.Mutex
	fail     map[string]int   // key → GETs still to answer with 503
	stallAt  map[string]int64 // key → bytes of a GET body after which to stall
	stallFor time.Duration
	uploads  int // multipart uploads started
}

func (f *s3Faults) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := strings.TrimPrefix(r.URL.Path, "/data/")
		if r.Method == http.MethodPost && r.URL.Query().Has("uploads") {
			f.mu.Lock()
			f.uploads++
			f.mu.Unlock()
		}
		if r.Method == http.MethodGet {
			f.mu.Lock()
			n := f.fail[key]
			if n > 0 {
				f.fail[key] = n - 1
			}
			stall, stalls := f.stallAt[key]
			f.mu.Unlock()
			if n > 0 {
				w.Header().Set("Content-Type", "application/xml")
				w.WriteHeader(http.StatusServiceUnavailable)
				io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>`)
				return
			}
			if stalls {
				w = &stallingWriter{ResponseWriter: w, left: stall - rangeStart(r), stall: f.stallFor, done: r.Context().Done()}
			}
		}
		next.ServeHTTP(w, r)
	})
}

// stallingWriter sends the first bytes of a body, then waits; onStall,
// if set, is called as it starts waiting.
// rangeStart is the first byte a GET asks for: its Range header's start,
// or 0. A stall set at an offset of the object thus holds up whichever
// ranged read reaches it, as it would a single stream.
func rangeStart(r *http.Request) int64 {
	spec, ok := strings.CutPrefix(r.Header.Get("Range"), "bytes=")
	if !ok {
		return 0
	}
	start, _, _ := strings.Cut(spec, "-")
	n, err := strconv.ParseInt(start, 10, 64)
	if err != nil {
		return 0
	}
	return n
}

type stallingWriter struct {
	http.ResponseWriter
	left    int64
	stall   time.Duration
	done    <-chan struct{}
	onStall func()
}

func (s *stallingWriter) Write(p []byte) (int, error) {
	if s.left <= 0 {
		if s.onStall != nil {
			s.onStall()
			s.onStall = nil
		}
		select {
		case <-time.After(s.stall):
		case <-s.done:
			return 0, io.ErrClosedPipe
		}
		return s.ResponseWriter.Write(p)
	}
	if int64(len(p)) > s.left {
		p = p[:s.left]
	}
	n, err := s.ResponseWriter.Write(p)
	s.left -= int64(n)
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
	return n, err
}

// lambdaS3 is a versioned S3 bucket "data" on loopback, with faults.
type lambdaS3 struct {
	url    string
	client *awss3.Client
	faults *s3Faults
}

func startLambdaS3(t *testing.T) *lambdaS3 {
	t.Helper()
	backend := s3mem.New()
	if err := backend.CreateBucket("data"); err != nil {
		t.Fatal(err)
	}
	if err := backend.SetVersioningConfiguration("data", gofakes3.VersioningConfiguration{Status: gofakes3.VersioningEnabled}); err != nil {
		t.Fatal(err)
	}
	faults := &s3Faults{fail: map[string]int{}, stallAt: map[string]int64{}, stallFor: time.Minute}
	srv := httptest.NewServer(faults.wrap(gofakes3.New(backend, gofakes3.WithLogger(gofakes3.DiscardLog())).Server()))
	t.Cleanup(srv.Close)
	client := awss3.New(awss3.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(srv.URL),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", ""),
	})
	return &lambdaS3{url: srv.URL, client: client, faults: faults}
}

// upload puts an object with the SDK and returns the S3 event
// notification that the upload produces.
func (s *lambdaS3) upload(t *testing.T, key string, body []byte) []byte {
	t.Helper()
	out, err := s.client.PutObject(context.Background(), &awss3.PutObjectInput{
		Bucket: aws.String("data"), Key: aws.String(key), Body: bytes.NewReader(body),
	})
	if err != nil {
		t.Fatalf("uploading %s: %v", key, err)
	}
	return s3Event(t, s3Record(key, int64(len(body)), aws.ToString(out.VersionId), aws.ToString(out.ETag)))
}

func (s *lambdaS3) get(t *testing.T, key string) ([]byte, bool) {
	t.Helper()
	out, err := s.client.GetObject(context.Background(), &awss3.GetObjectInput{Bucket: aws.String("data"), Key: aws.String(key)})
	if err != nil {
		var nsk *types.NoSuchKey
		if errors.As(err, &nsk) || strings.Contains(err.Error(), "NoSuchKey") {
			return nil, false
		}
		t.Fatalf("reading %s: %v", key, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b, true
}

// keys lists the bucket under prefix.
func (s *lambdaS3) keys(t *testing.T, prefix string) []string {
	t.Helper()
	out, err := s.client.ListObjectsV2(context.Background(), &awss3.ListObjectsV2Input{Bucket: aws.String("data"), Prefix: aws.String(prefix)})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, o := range out.Contents {
		keys = append(keys, aws.ToString(o.Key))
	}
	slices.Sort(keys)
	return keys
}

// s3Record is one record of an S3 event notification, shaped as S3 sends
// it: the key form-encoded, the ETag without quotes.
func s3Record(key string, size int64, version, etag string) map[string]any {
	object := map[string]any{
		"key":       url.QueryEscape(key),
		"size":      size,
		"eTag":      strings.Trim(etag, `"`),
		"sequencer": "0A1B2C3D4E5F678901",
	}
	if version != "" {
		object["versionId"] = version
	}
	return map[string]any{
		"eventVersion":      "2.1",
		"eventSource":       "aws:s3",
		"awsRegion":         "us-east-1",
		"eventTime":         time.Now().UTC().Format("2006-01-02T15:04:05.000Z"),
		"eventName":         "ObjectCreated:Put",
		"userIdentity":      map[string]any{"principalId": "AWS:AIDAEXAMPLE"},
		"requestParameters": map[string]any{"sourceIPAddress": "127.0.0.1"},
		"responseElements":  map[string]any{"x-amz-request-id": "C3D13FE58DE4C810", "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD"},
		"s3": map[string]any{
			"s3SchemaVersion": "1.0",
			"configurationId": "momentum-uploads",
			"bucket":          map[string]any{"name": "data", "ownerIdentity": map[string]any{"principalId": "A3NL1KOZZKExample"}, "arn": "arn:aws:s3:::data"},
			"object":          object,
		},
	}
}

func s3Event(t *testing.T, records ...map[string]any) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{"Records": records})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// function is the binary running under the emulator.
type function struct {
	url    string
	output *syncBuffer // the emulator's and the function's logs
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

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startFunction starts the emulator with the binary as its bootstrap.
func startFunction(t *testing.T, s *lambdaS3, env ...string) *function {
	t.Helper()
	return startBootstrap(t, s, bin, env...)
}

// startBootstrap starts the emulator with a bootstrap of its own.
func startBootstrap(t *testing.T, s *lambdaS3, bootstrap string, env ...string) *function {
	t.Helper()
	rie := rieBinary(t)
	addr, api := freeAddr(t), freeAddr(t)
	cmd := exec.Command(rie, "--runtime-interface-emulator-address", addr, "--runtime-api-address", api, bootstrap)
	cmd.Env = cleanEnv(append([]string{
		"AWS_ENDPOINT_URL_S3=" + s.url,
		"AWS_ACCESS_KEY_ID=AKIDTEST",
		"AWS_SECRET_ACCESS_KEY=secret",
		"AWS_REGION=us-east-1",
		"AWS_CONFIG_FILE=/dev/null",
		"AWS_SHARED_CREDENTIALS_FILE=/dev/null",
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_LAMBDA_FUNCTION_NAME=momentum",
		"AWS_LAMBDA_FUNCTION_TIMEOUT=60",
		"MOMENTUM_INPUT=s3://data/incoming/",
		"MOMENTUM_OUTPUT=s3://data/momentum/",
	}, env...)...)
	f := &function{url: "http://" + addr + "/2015-03-31/functions/function/invocations", output: &syncBuffer{}}
	cmd.Stdout, cmd.Stderr = f.output, f.output
	// A group of its own, so that the bootstrap it starts goes with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
		if t.Failed() {
			t.Logf("emulator output:\n%s", f.output)
		}
	})
	waitReady(t, "the emulator listening on "+addr, func() error {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err
	}, f.output)
	return f
}

// invocation is what the emulator answered.
type invocation struct {
	Objects []struct {
		Key, Output, Outcome, Error string
		Rows, Rejected, Line        int64
		Column                      string
	} `json:"objects"`
	ErrorType    string `json:"errorType"`
	ErrorMessage string `json:"errorMessage"`
}

func (f *function) invoke(t *testing.T, event []byte) invocation {
	t.Helper()
	resp, err := http.Post(f.url, "application/json", bytes.NewReader(event))
	if err != nil {
		t.Fatalf("invoking: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("invoke: HTTP %d: %s", resp.StatusCode, body)
	}
	var inv invocation
	if err := json.Unmarshal(body, &inv); err != nil {
		t.Fatalf("invoke answered %q: %v", body, err)
	}
	return inv
}

// outcomes lists each object's outcome, or the error type.
func (inv invocation) outcomes() string {
	if inv.ErrorType != "" {
		return "error " + inv.ErrorType
	}
	var s []string
	for _, o := range inv.Objects {
		s = append(s, o.Outcome)
	}
	return strings.Join(s, ",")
}

func TestLambdaUnderEmulator(t *testing.T) {
	s := startLambdaS3(t)
	f := startFunction(t, s)
	particles := readFile(t, testdata(t, "particles.csv"))
	cli := momentum(t, nil, "--quiet", testdata(t, "particles.csv"))
	if cli.code != 0 {
		t.Fatalf("CLI: %+v", cli)
	}

	t.Run("upload", func(t *testing.T) {
		inv := f.invoke(t, s.upload(t, "incoming/particles.csv", particles))
		if inv.outcomes() != "done" || inv.Objects[0].Output != "s3://data/momentum/particles.csv" || inv.Objects[0].Rows != 12 {
			t.Fatalf("invocation = %+v, want one object done with 12 rows", inv)
		}
		got, ok := s.get(t, "momentum/particles.csv")
		if !ok || string(got) != cli.stdout {
			t.Fatalf("output object:\n%s\nwant the CLI's output:\n%s", got, cli.stdout)
		}
		if want := string(readFile(t, testdata(t, "particles.golden"))); string(got) != want {
			t.Errorf("output object differs from particles.golden")
		}
	})

	t.Run("compressed upload", func(t *testing.T) {
		for _, c := range []compute.Compression{compute.Gzip, compute.Zstd} {
			key := "particles.csv" + c.Ext()
			inv := f.invoke(t, s.upload(t, "incoming/"+key, compressAs(t, particles, c)))
			if inv.outcomes() != "done" || inv.Objects[0].Output != "s3://data/momentum/"+key || inv.Objects[0].Rows != 12 {
				t.Fatalf("%s: invocation = %+v, want one object done with 12 rows", c, inv)
			}
			got, ok := s.get(t, "momentum/"+key)
			if !ok || compute.DetectCompression(got) != c || string(decompressed(t, got)) != cli.stdout {
				t.Fatalf("%s: output object is not the CLI's output compressed as its input", c)
			}
			head, err := s.client.HeadObject(context.Background(), &awss3.HeadObjectInput{Bucket: aws.String("data"), Key: aws.String("momentum/" + key)})
			if err != nil || aws.ToString(head.ContentEncoding) != string(c) || aws.ToString(head.ContentType) != "text/csv" {
				t.Errorf("%s: output metadata %v, %v", c, head, err)
			}
		}
		inv := f.invoke(t, s.upload(t, "incoming/cut.csv.zst", compressAs(t, particles, compute.Zstd)[:30]))
		if inv.outcomes() != "failed" {
			t.Errorf("truncated: %+v", inv)
		}
		if _, ok := s.get(t, "momentum/cut.csv.zst"); ok {
			t.Error("truncated: output written")
		}
		if report, ok := s.get(t, "momentum/cut.error.json"); !ok || !strings.Contains(string(report), "corrupt or truncated") {
			t.Errorf("truncated: report %s", report)
		}
	})

	t.Run("duplicate delivery", func(t *testing.T) {
		before := s.keys(t, "")
		event := s3Event(t, s3Record("incoming/particles.csv", int64(len(particles)), "", ""))
		inv := f.invoke(t, event)
		if inv.outcomes() != "duplicate" {
			t.Fatalf("second delivery: %+v, want duplicate", inv)
		}
		if after := s.keys(t, ""); !slices.Equal(before, after) {
			t.Errorf("objects changed: %q → %q", before, after)
		}
		if got, _ := s.get(t, "momentum/particles.csv"); string(got) != cli.stdout {
			t.Errorf("output changed by the duplicate delivery")
		}
	})

	t.Run("encoded key", func(t *testing.T) {
		key := "incoming/runs 2026/a+b=c é.csv"
		event := s.upload(t, key, particles)
		if !bytes.Contains(event, []byte(`runs+2026%2Fa%2Bb%3Dc+%C3%A9.csv`)) {
			t.Fatalf("the event does not encode the key as S3 does: %s", event)
		}
		inv := f.invoke(t, event)
		if inv.outcomes() != "done" {
			t.Fatalf("invocation = %+v", inv)
		}
		if got, ok := s.get(t, "momentum/runs 2026/a+b=c é.csv"); !ok || string(got) != cli.stdout {
			t.Errorf("output of the encoded key: %q, %v", got, ok)
		}
	})

	t.Run("loop guard", func(t *testing.T) {
		before := s.keys(t, "")
		// The event of our own output, were the trigger too wide.
		inv := f.invoke(t, s3Event(t, s3Record("momentum/particles.csv", 1, "", "")))
		if inv.outcomes() != "already-processed" {
			t.Errorf("event for an output: %+v, want already-processed", inv)
		}
		// An input that is itself an output (has a momentum column).
		processed := []byte(cli.stdout)
		event := s.upload(t, "incoming/processed.csv", processed)
		before = append(before, "incoming/processed.csv")
		slices.Sort(before)
		inv = f.invoke(t, event)
		if inv.outcomes() != "already-processed" {
			t.Errorf("event for a processed file: %+v, want already-processed", inv)
		}
		if after := s.keys(t, ""); !slices.Equal(before, after) {
			t.Errorf("objects changed: %q → %q", before, after)
		}
	})

	t.Run("exact version", func(t *testing.T) {
		demo := readFile(t, testdata(t, "demo.csv"))
		first := s.upload(t, "incoming/versions.csv", demo)
		s.upload(t, "incoming/versions.csv", []byte("mass,velocity\n1,1\n"))
		if inv := f.invoke(t, first); inv.outcomes() != "done" {
			t.Fatalf("invocation = %+v", inv)
		}
		got, _ := s.get(t, "momentum/versions.csv")
		if want := readFile(t, testdata(t, "demo.golden")); !bytes.Equal(got, want) {
			t.Errorf("output of the first version:\n%s\nwant:\n%s", got, want)
		}
	})

	t.Run("bad data", func(t *testing.T) {
		event := s.upload(t, "incoming/bad.csv", []byte("mass,velocity\n1,2\n3,abc\n"))
		inv := f.invoke(t, event)
		if inv.outcomes() != "failed" || inv.Objects[0].Line != 3 || inv.Objects[0].Column != "velocity" {
			t.Fatalf("invocation = %+v, want failed at line 3, column velocity", inv)
		}
		if _, ok := s.get(t, "momentum/bad.csv"); ok {
			t.Error("an output was written for bad data")
		}
		report, ok := s.get(t, "momentum/bad.error.json")
		var rep struct {
			Input, Column, Reason string
			Line                  int
		}
		if !ok || json.Unmarshal(report, &rep) != nil || rep.Line != 3 || rep.Column != "velocity" || rep.Input != "incoming/bad.csv" {
			t.Errorf("report: %s", report)
		}
		// One structured ERROR naming bucket, key, line and column.
		var errs []map[string]any
		for _, line := range strings.Split(f.output.String(), "\n") {
			var rec map[string]any
			if json.Unmarshal([]byte(line), &rec) == nil && rec["level"] == "ERROR" && rec["key"] == "incoming/bad.csv" {
				errs = append(errs, rec)
			}
		}
		if len(errs) != 1 || errs[0]["bucket"] != "data" || errs[0]["line"] != 3.0 || errs[0]["column"] != "velocity" || errs[0]["requestId"] == "" {
			t.Errorf("ERROR log lines for bad.csv: %v, want one naming bucket, key, line, column and request", errs)
		}
	})

	t.Run("transient failure retried", func(t *testing.T) {
		event := s.upload(t, "incoming/flaky.csv", particles)
		s.faults.mu.Lock()
		s.faults.fail["incoming/flaky.csv"] = 100 // beyond the SDK's own retries
		s.faults.mu.Unlock()
		inv := f.invoke(t, event)
		if inv.ErrorType == "" || !strings.Contains(inv.ErrorMessage, "incoming/flaky.csv") {
			t.Fatalf("invocation during an S3 outage = %+v, want a function error naming the object", inv)
		}
		if _, ok := s.get(t, "momentum/flaky.csv"); ok {
			t.Fatal("an output was written during the outage")
		}
		if _, ok := s.get(t, "momentum/flaky.error.json"); ok {
			t.Fatal("a transient failure was reported as permanent")
		}
		s.faults.mu.Lock()
		s.faults.fail["incoming/flaky.csv"] = 0
		s.faults.mu.Unlock()
		// Lambda retries the same event.
		if inv := f.invoke(t, event); inv.outcomes() != "done" {
			t.Fatalf("retry = %+v, want done", inv)
		}
		if got, _ := s.get(t, "momentum/flaky.csv"); string(got) != cli.stdout {
			t.Errorf("output after the retry differs from the CLI's")
		}
	})

	t.Run("several records", func(t *testing.T) {
		var records []map[string]any
		for _, name := range []string{"one", "two", "three"} {
			key := "incoming/many/" + name + ".csv"
			out, err := s.client.PutObject(context.Background(), &awss3.PutObjectInput{
				Bucket: aws.String("data"), Key: aws.String(key), Body: bytes.NewReader(particles),
			})
			if err != nil {
				t.Fatal(err)
			}
			records = append(records, s3Record(key, int64(len(particles)), aws.ToString(out.VersionId), aws.ToString(out.ETag)))
		}
		if inv := f.invoke(t, s3Event(t, records...)); inv.outcomes() != "done,done,done" {
			t.Fatalf("invocation = %+v", inv)
		}
		if got := s.keys(t, "momentum/many/"); !slices.Equal(got, []string{"momentum/many/one.csv", "momentum/many/three.csv", "momentum/many/two.csv"}) {
			t.Errorf("outputs: %q", got)
		}
	})

	t.Run("test event and no records", func(t *testing.T) {
		before := s.keys(t, "")
		for _, ev := range []string{
			`{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-11-28T10:00:00.000Z","Bucket":"data","RequestId":"5582815E1AEA5ADF","HostId":"8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE"}`,
			`{"Records":[]}`,
		} {
			if inv := f.invoke(t, []byte(ev)); inv.ErrorType != "" || len(inv.Objects) != 0 {
				t.Errorf("%s: %+v, want success with no objects", ev, inv)
			}
		}
		if after := s.keys(t, ""); !slices.Equal(before, after) {
			t.Errorf("objects changed: %q → %q", before, after)
		}
	})

	t.Run("undecodable payloads", func(t *testing.T) {
		// Lambda retries a failed invocation twice, then sends it to the
		// failure queue; none of these can get better.
		before := s.keys(t, "")
		for _, payload := range []string{
			`Records: none`,
			`{"Records":[{"eventSource":"aws:s3",`,
			`{"Records":"incoming/particles.csv"}`,
		} {
			inv := f.invoke(t, []byte(payload))
			if inv.ErrorType != "" || inv.Objects == nil || len(inv.Objects) != 0 {
				t.Errorf("%s: %+v, want success with an empty list of objects", payload, inv)
			}
			// The emulator relays the function's log after it answers:
			// wait for the line a little.
			var errs []map[string]any
			for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
				errs = errs[:0]
				for _, line := range strings.Split(f.output.String(), "\n") {
					var rec map[string]any
					if json.Unmarshal([]byte(line), &rec) == nil && rec["level"] == "ERROR" && rec["payload"] == payload {
						errs = append(errs, rec)
					}
				}
				if len(errs) > 0 || time.Now().After(deadline) {
					break
				}
			}
			if len(errs) != 1 || errs[0]["requestId"] == "" || errs[0]["requestId"] == nil {
				t.Errorf("%s: ERROR log lines %v, want one with the request id and the payload", payload, errs)
			}
		}
		if after := s.keys(t, ""); !slices.Equal(before, after) {
			t.Errorf("objects changed: %q → %q", before, after)
		}
	})
}

func TestLambdaUnderEmulatorSkipMode(t *testing.T) {
	s := startLambdaS3(t)
	f := startFunction(t, s, "MOMENTUM_ON_ERROR=skip")
	input := []byte("mass,velocity\n1,2\n3,abc\n4,5\n-1,2\n")
	inv := f.invoke(t, s.upload(t, "incoming/mixed.csv", input))
	if inv.outcomes() != "done" || inv.Objects[0].Rows != 2 || inv.Objects[0].Rejected != 2 {
		t.Fatalf("invocation = %+v, want done with 2 rows and 2 rejected", inv)
	}
	local := t.TempDir()
	in := filepath.Join(local, "mixed.csv")
	if err := os.WriteFile(in, input, 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(local, "out.csv")
	if r := momentum(t, nil, "--quiet", "--on-error", "skip", in, out); r.code != 0 {
		t.Fatalf("CLI: %+v", r)
	}
	for key, file := range map[string]string{"momentum/mixed.csv": out, "momentum/mixed.rejects.csv": filepath.Join(local, "out.rejects.csv")} {
		got, ok := s.get(t, key)
		if want := readFile(t, file); !ok || !bytes.Equal(got, want) {
			t.Errorf("%s:\n%s\nwant the CLI's:\n%s", key, got, want)
		}
	}
}

// TestLambdaUnderEmulatorDeadline: an object too slow to read within the
// function's timeout is abandoned before the deadline, its multipart
// upload aborted, and the invocation fails so that Lambda retries it.
func TestLambdaUnderEmulatorDeadline(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for a 4 s function timeout")
	}
	s := startLambdaS3(t)
	f := startFunction(t, s, "AWS_LAMBDA_FUNCTION_TIMEOUT=4")
	var big bytes.Buffer
	big.WriteString("mass,velocity\n")
	for i := 0; big.Len() < 24<<20; i++ {
		fmt.Fprintf(&big, "%d.5,%d.25\n", i, i%1000)
	}
	event := s.upload(t, "incoming/slow.csv", big.Bytes())
	// Enough for the output to start a multipart upload (8 MiB parts),
	// then the read stalls.
	s.faults.mu.Lock()
	s.faults.stallAt["incoming/slow.csv"] = 20 << 20
	s.faults.mu.Unlock()

	start := time.Now()
	inv := f.invoke(t, event)
	elapsed := time.Since(start)
	if inv.ErrorType == "" || !strings.Contains(inv.ErrorMessage, "deadline") {
		t.Fatalf("invocation = %+v, want a function error about the deadline", inv)
	}
	if elapsed > 4*time.Second {
		t.Errorf("the function answered after %v, past its 4 s timeout", elapsed)
	}
	if _, ok := s.get(t, "momentum/slow.csv"); ok {
		t.Error("a partial output was committed")
	}
	s.faults.mu.Lock()
	started := s.faults.uploads
	s.faults.mu.Unlock()
	if started == 0 {
		t.Error("no multipart upload was started: the test does not test an abort")
	}
	uploads, err := s.client.ListMultipartUploads(context.Background(), &awss3.ListMultipartUploadsInput{Bucket: aws.String("data")})
	if err == nil && len(uploads.Uploads) > 0 {
		t.Errorf("multipart uploads left behind: %d", len(uploads.Uploads))
	} else if err != nil && !strings.Contains(err.Error(), "NoSuchUpload") {
		// gofakes3 answers NoSuchUpload when there are none.
		t.Fatal(err)
	}
}
