package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"cloud.google.com/go/storage"
	"github.com/fsouza/fake-gcs-server/fakestorage"
	"google.golang.org/api/option"

	"github.com/momentum-run/momentum/adapters/storetest"
	"github.com/momentum-run/momentum/compute"
)

// These tests run the built binary as Cloud Run runs the image: K_SERVICE
// and PORT set, Cloud Storage reached through STORAGE_EMULATOR_HOST (a
// fake-gcs-server on loopback), and CloudEvents POSTed as Eventarc sends
// them.

// gcsFake is a Cloud Storage server on loopback with the bucket "data",
// whose reads of chosen objects can be made to stall.
type gcsFake struct {
	host   string
	client *storage.Client

	mu      sync.Mutex
	stallAt map[string]int64 // object → bytes of a read after which it stalls
	stalled chan struct{}    // closed when a read first stalls
	chunks  int              // requests carrying upload data so far
}

func startGCSFake(t *testing.T) *gcsFake {
	t.Helper()
	g := &gcsFake{stallAt: map[string]int64{}, stalled: make(chan struct{})}
	var stallOnce sync.Once
	srv := httptest.NewUnstartedServer(nil)
	g.host = srv.Listener.Addr().String()
	fake, err := fakestorage.NewServerWithOptions(fakestorage.Options{
		Scheme: "http", Host: "127.0.0.1", PublicHost: g.host, NoListener: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	fake.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: "data", VersioningEnabled: true})
	handler := storetest.OneGenerationReadAtATime(fake.HTTPHandler())
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && r.URL.Query().Get("alt") == "media" {
			name := r.URL.Path[strings.LastIndex(r.URL.Path, "/o/")+3:]
			g.mu.Lock()
			at, stalls := g.stallAt[name]
			g.mu.Unlock()
			if stalls {
				w = &stallingWriter{ResponseWriter: w, left: at - rangeStart(r), stall: time.Hour, done: r.Context().Done(),
					onStall: func() { stallOnce.Do(func() { close(g.stalled) }) }}
			}
		}
		// A chunk of a resumable upload, or a part of a parallel one.
		if strings.HasPrefix(r.URL.Path, "/upload/") && (r.URL.Query().Has("upload_id") && r.Header.Get("Content-Range") != "" ||
			r.URL.Query().Get("uploadType") == "multipart") {
			g.mu.Lock()
			g.chunks++
			g.mu.Unlock()
		}
		handler.ServeHTTP(w, r)
	})
	srv.Start()
	t.Cleanup(func() { srv.Close(); fake.Stop() })
	g.client, err = storage.NewClient(context.Background(), option.WithEndpoint(srv.URL+"/storage/v1/"),
		option.WithoutAuthentication(), storage.WithJSONReads())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.client.Close() })
	return g
}

// upload writes an object with the real client and returns the
// CloudEvent data (StorageObjectData) Cloud Storage sends for it.
func (g *gcsFake) upload(t *testing.T, name string, body []byte) map[string]any {
	t.Helper()
	w := g.client.Bucket("data").Object(name).NewWriter(context.Background())
	w.ContentType = "text/csv"
	if _, err := w.Write(body); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("uploading %s: %v", name, err)
	}
	a := w.Attrs()
	return storageObjectData(name, a.Generation, a.Size)
}

func storageObjectData(name string, generation, size int64) map[string]any {
	return map[string]any{
		"kind":           "storage#object",
		"id":             fmt.Sprintf("data/%s/%d", name, generation),
		"selfLink":       "https://www.googleapis.com/storage/v1/b/data/o/" + strings.ReplaceAll(name, "/", "%2F"),
		"name":           name,
		"bucket":         "data",
		"generation":     strconv.FormatInt(generation, 10),
		"metageneration": "1",
		"contentType":    "text/csv",
		"timeCreated":    "2026-11-28T10:00:00.000Z",
		"updated":        "2026-11-28T10:00:00.000Z",
		"storageClass":   "STANDARD",
		"size":           strconv.FormatInt(size, 10),
		"md5Hash":        "1B2M2Y8AsgTpgAmY7PhCfg==",
		"mediaLink":      "https://storage.googleapis.com/download/storage/v1/b/data/o/x?generation=1&alt=media",
		"crc32c":         "AAAAAA==",
		"etag":           "CKih16GjycICEAE=",
	}
}

func (g *gcsFake) get(t *testing.T, name string) ([]byte, bool) {
	t.Helper()
	r, err := g.client.Bucket("data").Object(name).NewReader(context.Background())
	if errors.Is(err, storage.ErrObjectNotExist) {
		return nil, false
	}
	if err != nil {
		t.Fatalf("reading %s: %v", name, err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b, true
}

// service is the binary serving as a Cloud Run service.
type service struct {
	url    string
	cmd    *exec.Cmd
	stderr *syncBuffer
	peak   func() int64
}

func startService(t *testing.T, g *gcsFake, env ...string) *service {
	t.Helper()
	return startServer(t, g, bin, env...)
}

// startServer starts a binary of its own as the service.
func startServer(t *testing.T, g *gcsFake, binary string, env ...string) *service {
	t.Helper()
	addr := freeAddr(t)
	_, port, _ := strings.Cut(addr, ":")
	s := &service{url: "http://" + addr, stderr: &syncBuffer{}}
	s.cmd = exec.Command(binary)
	s.cmd.Env = cleanEnv(append([]string{
		"K_SERVICE=momentum", "K_REVISION=momentum-00001-abc", "K_CONFIGURATION=momentum",
		"PORT=" + port, "MOMENTUM_LISTEN=" + addr,
		"STORAGE_EMULATOR_HOST=" + g.host,
		"GOOGLE_CLOUD_PROJECT=test-project",
		"MOMENTUM_INPUT=gs://data/incoming/",
		"MOMENTUM_OUTPUT=gs://data/momentum/",
	}, env...)...)
	s.cmd.Stderr = s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.peak = watchPeakRSS(s.cmd.Process.Pid)
	t.Cleanup(func() {
		s.cmd.Process.Kill()
		s.cmd.Wait()
		if t.Failed() {
			t.Logf("service log:\n%s", s.stderr)
		}
	})
	waitReady(t, "the service healthy", func() error {
		resp, err := http.Get(s.url + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/healthz: %s", resp.Status)
		}
		return nil
	}, s.stderr)
	return s
}

// event POSTs a finalized CloudEvent in binary content mode and returns
// the status and body.
func (s *service) event(t *testing.T, data map[string]any) (int, string) {
	t.Helper()
	body, _ := json.Marshal(data)
	req, _ := http.NewRequest(http.MethodPost, s.url+"/", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Ce-Specversion", "1.0")
	req.Header.Set("Ce-Type", "google.cloud.storage.object.v1.finalized")
	req.Header.Set("Ce-Source", "//storage.googleapis.com/projects/_/buckets/data")
	req.Header.Set("Ce-Subject", "objects/"+data["name"].(string))
	req.Header.Set("Ce-Id", fmt.Sprintf("%v-%v", data["name"], data["generation"]))
	req.Header.Set("Ce-Time", "2026-11-28T10:00:00.000Z")
	return s.do(t, req)
}

// structuredEvent POSTs the same event in structured content mode.
func (s *service) structuredEvent(t *testing.T, data map[string]any) (int, string) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{
		"specversion":     "1.0",
		"id":              "structured-1",
		"source":          "//storage.googleapis.com/projects/_/buckets/data",
		"type":            "google.cloud.storage.object.v1.finalized",
		"subject":         "objects/" + data["name"].(string),
		"time":            "2026-11-28T10:00:00.000Z",
		"datacontenttype": "application/json",
		"data":            data,
	})
	req, _ := http.NewRequest(http.MethodPost, s.url+"/", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/cloudevents+json; charset=utf-8")
	return s.do(t, req)
}

func (s *service) do(t *testing.T, req *http.Request) (int, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestCloudRunService(t *testing.T) {
	g := startGCSFake(t)
	s := startService(t, g)
	particles := readFile(t, testdata(t, "particles.csv"))
	cli := momentum(t, nil, "--quiet", testdata(t, "particles.csv"))

	t.Run("binary mode", func(t *testing.T) {
		code, body := s.event(t, g.upload(t, "incoming/particles.csv", particles))
		if code != http.StatusOK || !strings.Contains(body, `"done"`) {
			t.Fatalf("event: %d %s", code, body)
		}
		if got, ok := g.get(t, "momentum/particles.csv"); !ok || string(got) != cli.stdout {
			t.Fatalf("output object:\n%s\nwant the CLI's:\n%s", got, cli.stdout)
		}
	})

	t.Run("structured mode", func(t *testing.T) {
		code, body := s.structuredEvent(t, g.upload(t, "incoming/structured.csv", particles))
		if code != http.StatusOK || !strings.Contains(body, `"done"`) {
			t.Fatalf("event: %d %s", code, body)
		}
		if got, ok := g.get(t, "momentum/structured.csv"); !ok || string(got) != cli.stdout {
			t.Fatalf("output object differs from the CLI's")
		}
	})

	t.Run("duplicate event", func(t *testing.T) {
		data := g.upload(t, "incoming/twice.csv", particles)
		var wg sync.WaitGroup
		codes := make([]int, 3)
		for i := range codes {
			wg.Go(func() { codes[i], _ = s.event(t, data) })
		}
		wg.Wait()
		code, body := s.event(t, data)
		if code != http.StatusOK || !strings.Contains(body, `"duplicate"`) {
			t.Errorf("redelivery: %d %s", code, body)
		}
		for _, c := range codes {
			if c != http.StatusOK {
				t.Errorf("concurrent deliveries answered %v", codes)
			}
		}
		if got, _ := g.get(t, "momentum/twice.csv"); string(got) != cli.stdout {
			t.Errorf("output differs from the CLI's")
		}
	})

	t.Run("loop guard", func(t *testing.T) {
		code, _ := s.event(t, storageObjectData("momentum/particles.csv", 1, 10))
		if code != http.StatusOK {
			t.Errorf("event for an output: %d", code)
		}
		code, body := s.event(t, g.upload(t, "incoming/processed.csv", []byte(cli.stdout)))
		if code != http.StatusOK || !strings.Contains(body, "already-processed") {
			t.Errorf("event for a processed file: %d %s", code, body)
		}
		if _, ok := g.get(t, "momentum/processed.csv"); ok {
			t.Error("a processed file was processed again")
		}
	})

	t.Run("exact generation", func(t *testing.T) {
		first := g.upload(t, "incoming/generations.csv", readFile(t, testdata(t, "demo.csv")))
		g.upload(t, "incoming/generations.csv", []byte("mass,velocity\n1,1\n"))
		if code, body := s.event(t, first); code != http.StatusOK {
			t.Fatalf("event: %d %s", code, body)
		}
		if got, _ := g.get(t, "momentum/generations.csv"); !bytes.Equal(got, readFile(t, testdata(t, "demo.golden"))) {
			t.Errorf("output is not that of the generation the event named: %q", got)
		}
	})

	t.Run("bad data", func(t *testing.T) {
		code, _ := s.event(t, g.upload(t, "incoming/bad.csv", []byte("mass,velocity\n1,2\n3,abc\n")))
		if code != http.StatusOK {
			t.Errorf("bad data answered %d, which Eventarc would redeliver", code)
		}
		if _, ok := g.get(t, "momentum/bad.csv"); ok {
			t.Error("an output was written for bad data")
		}
		if rep, ok := g.get(t, "momentum/bad.error.json"); !ok || !strings.Contains(string(rep), `"line": 3`) {
			t.Errorf("report: %s", rep)
		}
		var errs int
		for _, line := range strings.Split(s.stderr.String(), "\n") {
			var rec map[string]any
			if json.Unmarshal([]byte(line), &rec) == nil && rec["severity"] == "ERROR" && strings.Contains(line, "incoming/bad.csv") {
				errs++
				if !strings.Contains(line, `"line":3`) || !strings.Contains(line, `"velocity"`) {
					t.Errorf("ERROR line does not name line and column: %s", line)
				}
			}
		}
		if errs != 1 {
			t.Errorf("%d ERROR lines for bad.csv, want 1", errs)
		}
	})

	t.Run("synchronous", func(t *testing.T) {
		resp, err := http.Post(s.url+"/v1/momentum", "text/csv", bytes.NewReader(particles))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(b) != cli.stdout {
			t.Errorf("sync: %d\n%s\nwant the CLI's output", resp.StatusCode, b)
		}
		resp, err = http.Post(s.url+"/v1/momentum", "text/csv", strings.NewReader("mass,velocity\n1,2\n3,x\n"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(string(b), `"line":3`) || strings.Contains(string(b), "1,2,2") {
			t.Errorf("sync bad data: %d %s", resp.StatusCode, b)
		}
	})

	t.Run("compressed object", func(t *testing.T) {
		for _, c := range []compute.Compression{compute.Gzip, compute.Zstd} {
			name := "particles.csv" + c.Ext()
			code, body := s.event(t, g.upload(t, "incoming/"+name, compressAs(t, particles, c)))
			if code != http.StatusOK || !strings.Contains(body, `"done"`) {
				t.Fatalf("%s: event: %d %s", c, code, body)
			}
			attrs, err := g.client.Bucket("data").Object("momentum/" + name).Attrs(context.Background())
			if err != nil || attrs.ContentEncoding != string(c) || attrs.ContentType != "text/csv" {
				t.Fatalf("%s: output attributes %+v, %v", c, attrs, err)
			}
			// gzip is served decompressed, as Cloud Storage does.
			if got, ok := g.get(t, "momentum/"+name); !ok || string(decompressed(t, got)) != cli.stdout {
				t.Errorf("%s: output object differs from the CLI's output", c)
			}
		}
		data := g.upload(t, "incoming/cut.csv.gz", compressAs(t, particles, compute.Gzip)[:40])
		if code, body := s.event(t, data); code != http.StatusOK || !strings.Contains(body, `"failed"`) {
			t.Errorf("truncated: %d %s", code, body)
		}
		if _, ok := g.get(t, "momentum/cut.csv.gz"); ok {
			t.Error("truncated: output written")
		}
		if report, ok := g.get(t, "momentum/cut.error.json"); !ok || !strings.Contains(string(report), "corrupt or truncated") {
			t.Errorf("truncated: report %s", report)
		}
	})

	t.Run("synchronous compressed", func(t *testing.T) {
		for _, c := range []compute.Compression{compute.Gzip, compute.Zstd} {
			req, _ := http.NewRequest(http.MethodPost, s.url+"/v1/momentum", bytes.NewReader(compressAs(t, particles, c)))
			req.Header.Set("Content-Type", "text/csv")
			req.Header.Set("Content-Encoding", string(c))
			code, body := s.do(t, req)
			if code != http.StatusOK || body != cli.stdout {
				t.Errorf("%s body: %d\n%s\nwant the CLI's output", c, code, body)
			}
		}
		req, _ := http.NewRequest(http.MethodPost, s.url+"/v1/momentum", bytes.NewReader(compressAs(t, particles, compute.Gzip)[:60]))
		req.Header.Set("Content-Encoding", "gzip")
		if code, body := s.do(t, req); code != http.StatusUnprocessableEntity || !strings.Contains(body, "corrupt or truncated") {
			t.Errorf("truncated body: %d %s", code, body)
		}
		req, _ = http.NewRequest(http.MethodPost, s.url+"/v1/momentum", bytes.NewReader(particles))
		req.Header.Set("Content-Encoding", "br")
		if code, body := s.do(t, req); code != http.StatusUnsupportedMediaType {
			t.Errorf("br body: %d %s", code, body)
		}
	})

	t.Run("oversize body", func(t *testing.T) {
		big := bytes.Repeat([]byte("1,2\n"), (32<<20)/4+1)
		resp, err := http.Post(s.url+"/v1/momentum", "text/csv", bytes.NewReader(big))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("33 MiB body: %d, want 413", resp.StatusCode)
		}
	})

	t.Run("80 concurrent events", func(t *testing.T) {
		var datas []map[string]any
		for i := range 80 {
			datas = append(datas, g.upload(t, fmt.Sprintf("incoming/many/%02d.csv", i), particles))
		}
		var wg sync.WaitGroup
		codes := make([]int, len(datas))
		for i, d := range datas {
			wg.Go(func() { codes[i], _ = s.event(t, d) })
		}
		wg.Wait()
		counts := map[int]int{}
		for i, code := range codes {
			counts[code]++
			// Eventarc redelivers what was refused for load.
			for attempt := 0; code == http.StatusTooManyRequests && attempt < 50; attempt++ {
				time.Sleep(20 * time.Millisecond)
				code, _ = s.event(t, datas[i])
			}
			if code != http.StatusOK {
				t.Errorf("event %d: %d", i, code)
			}
		}
		t.Logf("first answers: %v", counts)
		if counts[http.StatusOK]+counts[http.StatusTooManyRequests] != len(datas) {
			t.Errorf("answers %v: want only 200 and 429", counts)
		}
		for i := range datas {
			if got, ok := g.get(t, fmt.Sprintf("momentum/many/%02d.csv", i)); !ok || string(got) != cli.stdout {
				t.Errorf("output %d missing or wrong", i)
			}
		}
	})

	s.cmd.Process.Signal(syscall.SIGTERM)
	if err := s.cmd.Wait(); err != nil {
		t.Errorf("after SIGTERM: %v", err)
	}
	peak := s.peak()
	t.Logf("peak RSS of the service: %.1f MiB", float64(peak)/(1<<20))
	if peak > 256<<20 {
		t.Errorf("peak RSS %d MiB, want under 256 MiB", peak>>20)
	}
}

// TestCloudRunServiceSIGTERM: SIGTERM while an event is being processed
// (its read stalls) stops the service within the grace period and
// commits no output.
func TestCloudRunServiceSIGTERM(t *testing.T) {
	g := startGCSFake(t)
	s := startService(t, g, "MOMENTUM_SHUTDOWN_GRACE=1s")
	answered := postStallingEvent(t, g, s)
	time.Sleep(1500 * time.Millisecond) // the job is now stalled mid-read
	start := time.Now()
	s.cmd.Process.Signal(syscall.SIGTERM)
	err := s.cmd.Wait()
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the service took %v to stop after SIGTERM, with a 1 s grace", took)
	}
	if err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}
	if code := <-answered; code == http.StatusOK {
		t.Errorf("the interrupted event was answered 200: Eventarc would not redeliver it")
	}
	if _, ok := g.get(t, "momentum/slow.csv"); ok {
		t.Error("a partial output was committed")
	}
}

// slowBody is a request whose body comes a byte at a time.
type slowBody struct {
	conn net.Conn
	resp *bufio.Reader
	done chan struct{}
}

// sendSlowBody sends to the service the header of a CSV request with
// Expect: 100-continue, waits for the 100 Continue (its handler is reading
// the body), then sends the body a byte every interval, in the
// background, until the connection is closed.
func (s *service) sendSlowBody(t *testing.T, path string) *slowBody {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	b := &slowBody{conn: conn, resp: bufio.NewReader(conn), done: make(chan struct{})}
	t.Cleanup(func() { conn.Close(); <-b.done })
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\nContent-Length: 100000\r\nExpect: 100-continue\r\n\r\n", path)
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	status, err := b.resp.ReadString('\n')
	if err != nil || !strings.HasPrefix(status, "HTTP/1.1 100 ") {
		close(b.done)
		t.Fatalf("a slow request, before its body: %q, %v; want 100 Continue", status, err)
	}
	b.resp.ReadString('\n')
	conn.SetReadDeadline(time.Time{})
	go func() {
		defer close(b.done)
		body := "mass,velocity\n" + strings.Repeat("1,2\n", 25000)
		for i := 0; i < len(body); i++ {
			if _, err := io.WriteString(conn, body[i:i+1]); err != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	return b
}

// TestCloudRunServiceSlowClients: 8 connections trickling request bodies
// to /v1/momentum (twice the service's synchronous slots on 2 CPUs) do
// not keep other requests from being answered.
func TestCloudRunServiceSlowClients(t *testing.T) {
	g := startGCSFake(t)
	s := startService(t, g)
	for range 8 {
		s.sendSlowBody(t, "/v1/momentum")
	}
	particles := readFile(t, testdata(t, "particles.csv"))
	cli := momentum(t, nil, "--quiet", testdata(t, "particles.csv"))
	for i := range 3 {
		start := time.Now()
		resp, err := (&http.Client{Timeout: 30 * time.Second}).Post(s.url+"/v1/momentum", "text/csv", bytes.NewReader(particles))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		took := time.Since(start)
		t.Logf("request %d while 8 bodies trickle in: %d in %v", i, resp.StatusCode, took.Round(time.Millisecond))
		if resp.StatusCode != http.StatusOK || string(b) != cli.stdout {
			t.Errorf("request %d while 8 bodies trickle in: %d %s", i, resp.StatusCode, b)
		}
		// It takes milliseconds; the status is what tells a held slot (an
		// immediate 503). The bound is generous for a loaded machine.
		if took > 5*time.Second {
			t.Errorf("request %d took %v", i, took)
		}
	}
}

// TestCloudRunServiceSIGTERMBudget: with its default settings the service
// exits within 8 s of SIGTERM, 2 s before Cloud Run kills it, whatever
// is in flight: nothing, a body still arriving, or an event job whose
// output is being uploaded, which is aborted and commits nothing. The
// budget is 6 s for requests to finish, then their cancellation, then at
// most 1 s for their handlers; these cases take just over 6 s, which
// leaves the 8 s bound close to 2 s for a loaded machine.
func TestCloudRunServiceSIGTERMBudget(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out shutdown budgets; TestCloudRunServiceSIGTERM stays")
	}
	const bound = 8 * time.Second
	stop := func(t *testing.T, s *service) {
		t.Helper()
		start := time.Now()
		s.cmd.Process.Signal(syscall.SIGTERM)
		err := s.cmd.Wait()
		took := time.Since(start)
		t.Logf("exited %v after SIGTERM", took.Round(10*time.Millisecond))
		if err != nil {
			t.Errorf("exit after SIGTERM: %v", err)
		}
		if took > bound {
			t.Errorf("exited %v after SIGTERM, want within %v", took, bound)
		}
	}

	t.Run("idle", func(t *testing.T) {
		s := startService(t, startGCSFake(t))
		stop(t, s)
	})

	t.Run("slow synchronous body", func(t *testing.T) {
		s := startService(t, startGCSFake(t))
		b := s.sendSlowBody(t, "/v1/momentum")
		stop(t, s)
		b.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if status, _ := b.resp.ReadString('\n'); strings.Contains(status, " 200 ") {
			t.Errorf("the cut request was answered %q", status)
		}
	})

	t.Run("event mid-upload", func(t *testing.T) {
		g := startGCSFake(t)
		s := startService(t, g)
		answered := postStallingEvent(t, g, s)
		select {
		case <-g.stalled:
		case <-time.After(60 * time.Second):
			t.Fatal("the job's read never stalled")
		}
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			g.mu.Lock()
			chunks := g.chunks
			g.mu.Unlock()
			if chunks > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("no chunk of the output was uploaded")
			}
		}
		stop(t, s)
		if code := <-answered; code == http.StatusOK {
			t.Errorf("the interrupted event was answered 200: Eventarc would not redeliver it")
		}
		if _, ok := g.get(t, "momentum/slow.csv"); ok {
			t.Error("a partial output was committed")
		}
		if !strings.Contains(s.stderr.String(), "upload aborted") {
			t.Error("the service did not log the upload's abort")
		}
	})
}

// postStallingEvent uploads a CSV of 12 MiB whose read stalls at 10 MiB,
// past the first 8 MiB chunk of the output's upload, and posts its
// finalized event to the service; the channel gets the answer's status,
// or 0 if the request failed.
func postStallingEvent(t *testing.T, g *gcsFake, s *service) <-chan int {
	t.Helper()
	var big bytes.Buffer
	big.WriteString("mass,velocity\n")
	for i := 0; big.Len() < 12<<20; i++ {
		fmt.Fprintf(&big, "%d.5,%d.25\n", i, i%1000)
	}
	data := g.upload(t, "incoming/slow.csv", big.Bytes())
	g.mu.Lock()
	g.stallAt["incoming/slow.csv"] = 10 << 20 // past the first 8 MiB chunk of the output's upload
	g.mu.Unlock()
	answered := make(chan int, 1)
	go func() {
		body, _ := json.Marshal(data)
		req, _ := http.NewRequest(http.MethodPost, s.url+"/", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Ce-Specversion", "1.0")
		req.Header.Set("Ce-Type", "google.cloud.storage.object.v1.finalized")
		req.Header.Set("Ce-Source", "//storage.googleapis.com/projects/_/buckets/data")
		req.Header.Set("Ce-Id", "slow-1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			answered <- 0
			return
		}
		resp.Body.Close()
		answered <- resp.StatusCode
	}()
	return answered
}
