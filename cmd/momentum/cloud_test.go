package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/storage"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/fsouza/fake-gcs-server/fakestorage"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"google.golang.org/api/option"

	"github.com/momentum-run/momentum/adapters/gcs"
	"github.com/momentum-run/momentum/adapters/s3"
	"github.com/momentum-run/momentum/adapters/storetest"
	"github.com/momentum-run/momentum/compute"
)

// clouds is an S3 server (gofakes3) and a Cloud Storage server
// (fake-gcs-server), both in memory on loopback, with the buckets "in" and
// "out" on each (made on first use on the plain S3 one), and the real SDK
// clients the test uses to look at them.
// The binary under test reaches them through AWS_ENDPOINT_URL_S3 and
// STORAGE_EMULATOR_HOST, as it would any S3 or GCS endpoint.
type clouds struct {
	s3URL   string
	gcsHost string
	s3      *awss3.Client
	gcs     *storage.Client

	// commitNs is the nanoseconds the emulators have spent committing
	// uploads (commitRequest), work that S3 and Cloud Storage do in a
	// fraction of a second.
	commitNs atomic.Int64
}

// startClouds starts the two emulators, with gofakes3 wrapped in
// storetest.S3PartCopy: the UploadPartCopy that real S3 has and gofakes3
// v1.2.0 lacks, so merge takes the path it takes on S3.
func startClouds(t testing.TB) *clouds {
	t.Helper()
	backend := s3mem.New()
	for _, b := range []string{"in", "out"} {
		if err := backend.CreateBucket(b); err != nil {
			t.Fatal(err)
		}
	}
	return startCloudsWith(t, storetest.S3PartCopy(gofakes3.New(backend, gofakes3.WithLogger(gofakes3.DiscardLog())).Server()))
}

// startPlainClouds starts the two emulators with gofakes3 as
// docs/cloud-storage.md runs it (gofakes3 -backend memory -autobucket
// -quiet), and nothing in front of it: no UploadPartCopy.
func startPlainClouds(t *testing.T) *clouds {
	t.Helper()
	fake := gofakes3.New(s3mem.New(), gofakes3.WithAutoBucket(true), gofakes3.WithLogger(gofakes3.DiscardLog()))
	return startCloudsWith(t, fake.Server())
}

// startCloudsWith starts the Cloud Storage emulator, with the buckets "in"
// and "out", and serves the S3 one with s3Handler.
func startCloudsWith(t testing.TB, s3Handler http.Handler) *clouds {
	t.Helper()
	c := &clouds{}

	s3srv := httptest.NewServer(c.timeCommits(s3Handler))
	t.Cleanup(s3srv.Close)
	c.s3URL = s3srv.URL
	c.s3 = awss3.New(awss3.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(s3srv.URL),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", ""),
	})

	gsrv := httptest.NewUnstartedServer(nil)
	c.gcsHost = gsrv.Listener.Addr().String()
	fake, err := fakestorage.NewServerWithOptions(fakestorage.Options{
		Scheme: "http", Host: "127.0.0.1", PublicHost: c.gcsHost, NoListener: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{"in", "out"} {
		fake.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: b})
	}
	gsrv.Config.Handler = c.timeCommits(storetest.OneGenerationReadAtATime(fake.HTTPHandler()))
	gsrv.Start()
	t.Cleanup(func() { gsrv.Close(); fake.Stop() })
	c.gcs, err = storage.NewClient(context.Background(), option.WithEndpoint(gsrv.URL+"/storage/v1/"),
		option.WithoutAuthentication(), storage.WithJSONReads())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.gcs.Close() })
	return c
}

// timeCommits adds the time h takes over commit requests to c.commitNs.
func (c *clouds) timeCommits(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !commitRequest(r) {
			h.ServeHTTP(w, r)
			return
		}
		start := time.Now()
		h.ServeHTTP(w, r)
		c.commitNs.Add(int64(time.Since(start)))
	})
}

// commitRequest reports whether r commits an upload: S3's
// CompleteMultipartUpload and Cloud Storage's compose, or the last chunk
// of a resumable upload. gofakes3 copies and hashes the whole object to
// complete a multipart upload, fake-gcs-server to compose one or take its
// last chunk.
func commitRequest(r *http.Request) bool {
	q := r.URL.Query()
	switch {
	case r.Method == http.MethodPost && q.Has("uploadId"):
		return true
	case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/compose"):
		return true
	case strings.HasPrefix(r.URL.Path, "/upload/") && q.Has("upload_id"):
		return !strings.HasSuffix(r.Header.Get("Content-Range"), "/*")
	}
	return false
}

// env is the binary's environment: the two endpoints, test credentials,
// and nothing from the machine's own AWS or Google configuration.
func (c *clouds) env(extra ...string) []string {
	return cleanEnv(append([]string{
		"AWS_ENDPOINT_URL_S3=" + c.s3URL,
		"AWS_ACCESS_KEY_ID=AKIDTEST",
		"AWS_SECRET_ACCESS_KEY=secret",
		"AWS_REGION=us-east-1",
		"AWS_CONFIG_FILE=/dev/null",
		"AWS_SHARED_CREDENTIALS_FILE=/dev/null",
		"AWS_EC2_METADATA_DISABLED=true",
		"STORAGE_EMULATOR_HOST=" + c.gcsHost,
	}, extra...)...)
}

// store returns the test's own view of a location's bucket.
func (c *clouds) store(loc string) (compute.Store, string) {
	scheme, bucket, key, _ := splitURL(loc)
	if scheme == "s3" {
		return s3.NewFromClient(c.s3, bucket), key
	}
	return gcs.NewFromClient(c.gcs, bucket), key
}

// makeBucket creates the bucket of a location, unless it exists.
func (c *clouds) makeBucket(t *testing.T, loc string) {
	t.Helper()
	scheme, bucket, _, _ := splitURL(loc)
	ctx := context.Background()
	var err error
	if scheme == "s3" {
		if _, err = c.s3.HeadBucket(ctx, &awss3.HeadBucketInput{Bucket: &bucket}); err != nil {
			_, err = c.s3.CreateBucket(ctx, &awss3.CreateBucketInput{Bucket: &bucket})
		}
	} else if _, err = c.gcs.Bucket(bucket).Attrs(ctx); err != nil {
		err = c.gcs.Bucket(bucket).Create(ctx, "test", nil)
	}
	if err != nil {
		t.Fatalf("create the bucket of %s: %v", loc, err)
	}
}

func (c *clouds) put(t testing.TB, loc string, data []byte) {
	t.Helper()
	store, key := c.store(loc)
	storetest.Put(t, store, key, data)
}

func (c *clouds) get(t *testing.T, loc string) ([]byte, error) {
	t.Helper()
	store, key := c.store(loc)
	b, _, err := storetest.Get(t, store, key, compute.ReadOptions{})
	return b, err
}

// read reads a location of any kind: a cloud object or a local file.
func (c *clouds) read(t *testing.T, loc string) ([]byte, error) {
	t.Helper()
	if isURL(loc) {
		return c.get(t, loc)
	}
	return os.ReadFile(loc)
}

// TestCloudMixes moves the same file through every pairing of local,
// S3 and Cloud Storage locations and stdin/stdout, and gets the same bytes
// each time.
func TestCloudMixes(t *testing.T) {
	c := startClouds(t)
	in := readFile(t, testdata(t, "particles.csv"))
	golden := readFile(t, testdata(t, "particles.golden"))
	dir := t.TempDir()
	local := filepath.Join(dir, "particles.csv")
	writeFile(t, local, in)
	c.put(t, "s3://in/runs/particles.csv", in)
	c.put(t, "gs://in/runs/particles.csv", in)

	tests := []struct{ in, out string }{
		{local, "s3://out/a/particles.csv"},
		{local, "gs://out/a/particles.csv"},
		{"s3://in/runs/particles.csv", "gs://out/b/particles.csv"},
		{"gs://in/runs/particles.csv", "s3://out/b/particles.csv"},
		{"s3://in/runs/particles.csv", "s3://out/c/particles.csv"},
		{"gs://in/runs/particles.csv", "gs://out/c/particles.csv"},
		{"s3://in/runs/particles.csv", filepath.Join(dir, "from-s3.csv")},
		{"gs://in/runs/particles.csv", filepath.Join(dir, "from-gs.csv")},
		{"-", "gs://out/stdin/particles.csv"},
		{"s3://in/runs/particles.csv", "-"},
	}
	for _, tt := range tests {
		t.Run(tt.in+"→"+tt.out, func(t *testing.T) {
			var stdin io.Reader
			if tt.in == "-" {
				stdin = bytes.NewReader(in)
			}
			res := momentumEnv(t, c.env(), stdin, tt.in, tt.out)
			if res.code != 0 {
				t.Fatalf("exit %d: %s", res.code, res.stderr)
			}
			got := []byte(res.stdout)
			if tt.out != "-" {
				var err error
				if got, err = c.read(t, tt.out); err != nil {
					t.Fatal(err)
				}
			}
			if !bytes.Equal(got, golden) {
				t.Errorf("output differs from particles.golden:\n%s", got)
			}
			wantSummary(t, res.stderr, 12, 0)
		})
	}
}

// TestCloudKeys round-trips keys that URL encoding would mangle.
func TestCloudKeys(t *testing.T) {
	c := startClouds(t)
	in := readFile(t, testdata(t, "demo.csv"))
	golden := readFile(t, testdata(t, "demo.golden"))
	for _, key := range []string{"a b.csv", "a+b.csv", "100%.csv", "ünï/cödé.csv"} {
		for _, scheme := range []string{"s3", "gs"} {
			src, dst := scheme+"://in/"+key, scheme+"://out/"+key
			c.put(t, src, in)
			if res := momentumEnv(t, c.env(), nil, "--quiet", src, dst); res.code != 0 {
				t.Fatalf("%s: exit %d: %s", src, res.code, res.stderr)
			}
			if got, err := c.get(t, dst); err != nil || !bytes.Equal(got, golden) {
				t.Errorf("%s: %q, %v", dst, got, err)
			}
		}
	}
}

// TestCloudSkipRejects writes the output and the rejects as objects.
func TestCloudSkipRejects(t *testing.T) {
	c := startClouds(t)
	c.put(t, "s3://in/bad.csv", []byte("mass,velocity\n1,2\n3,x\n4,5\n"))
	res := momentumEnv(t, c.env("MOMENTUM_ON_ERROR=skip"), nil, "--rejects", "gs://out/bad.rejects.csv", "s3://in/bad.csv", "gs://out/bad.csv")
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	if got, _ := c.get(t, "gs://out/bad.csv"); string(got) != "mass,velocity,momentum\n1,2,2\n4,5,20\n" {
		t.Errorf("output %q", got)
	}
	if got, _ := c.get(t, "gs://out/bad.rejects.csv"); !strings.Contains(string(got), "3,velocity,") {
		t.Errorf("rejects %q", got)
	}
	// The default rejects location is beside the output, in the same bucket.
	res = momentumEnv(t, c.env(), nil, "--on-error", "skip", "s3://in/bad.csv", "s3://out/x/bad.csv")
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	if got, err := c.get(t, "s3://out/x/bad.rejects.csv"); err != nil || !strings.Contains(string(got), `not a decimal number: ""x""`) {
		t.Errorf("default rejects: %q, %v", got, err)
	}
}

// TestCloudMergeRejects: a sharded skip-mode job in each cloud; merge
// reads the parts' rejects back from the emulator, joins them into the
// single run's rejects, and refuses a part whose rejects do not match
// its manifest.
func TestCloudMergeRejects(t *testing.T) {
	c := startClouds(t)
	data := "mass,velocity\n1,2\n3,x\n4,5\n6,y\n7,8\n9,z\n"
	c.put(t, "s3://in/bad.csv", []byte(data))
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "bad.csv"), []byte(data))
	if r := momentum(t, nil, "--on-error", "skip", filepath.Join(dir, "bad.csv"), filepath.Join(dir, "out.csv")); r.code != 0 {
		t.Fatalf("single run: %+v", r)
	}
	wantRejects := string(readFile(t, filepath.Join(dir, "out.rejects.csv")))
	for _, cloud := range []string{"s3", "gs"} {
		folder := cloud + "://out/bad-parts/"
		for i := range 2 {
			if r := momentumEnv(t, c.env(), nil, "job", "--on-error", "skip", "--input", "s3://in/bad.csv", "--output", folder, "--shard", fmt.Sprintf("%d/2", i)); r.code != 0 {
				t.Fatalf("%s task %d: %+v", cloud, i, r)
			}
		}
		if r := momentumEnv(t, c.env(), nil, "merge", "--into", cloud+"://out/bad.csv", folder); r.code != 0 || !strings.Contains(r.stdout, "3 rows, 3 rejected") {
			t.Fatalf("%s merge: %+v", cloud, r)
		}
		if got, err := c.get(t, cloud+"://out/bad.rejects.csv"); err != nil || string(got) != wantRejects {
			t.Errorf("%s: joined rejects %q (%v), want %q", cloud, got, err, wantRejects)
		}
		part1, err := c.get(t, folder+"part-00001.rejects.csv")
		if err != nil {
			t.Fatal(err)
		}
		c.del(t, folder+"part-00001.rejects.csv")
		c.put(t, folder+"part-00001.rejects.csv", append(part1, "99,mass,x,\"99,x\"\n"...))
		if r := momentumEnv(t, c.env(), nil, "merge", folder); r.code != exitFailure || !strings.Contains(r.stderr, "part-00001.rejects.csv has ") {
			t.Errorf("%s merge of a changed part: %+v", cloud, r)
		}
	}
}

// TestCloudFailures leaves no object behind and says what went wrong.
func TestCloudFailures(t *testing.T) {
	c := startClouds(t)
	c.put(t, "s3://in/bad.csv", []byte("mass,velocity\n1,2\n3,x\n"))
	c.put(t, "gs://in/good.csv", []byte("mass,velocity\n1,2\n"))
	tests := []struct {
		name    string
		args    []string
		code    int
		stderr  string
		missing string // an object that must not exist afterwards
	}{
		{"bad data", []string{"s3://in/bad.csv", "gs://out/bad.csv"}, exitData, `momentum: s3://in/bad.csv: line 3, column velocity: not a decimal number: "x"`, "gs://out/bad.csv"},
		{"bad data to s3", []string{"s3://in/bad.csv", "s3://out/bad.csv"}, exitData, "line 3, column velocity", "s3://out/bad.csv"},
		{"no such object", []string{"s3://in/nothing.csv", "gs://out/nothing.csv"}, exitFailure, "object not found", "gs://out/nothing.csv"},
		{"no such gcs object", []string{"gs://in/nothing.csv", "s3://out/nothing.csv"}, exitFailure, "object not found", "s3://out/nothing.csv"},
		{"no such bucket", []string{"gs://in/good.csv", "s3://nobucket/x.csv"}, exitFailure, "", "s3://out/x.csv"},
		{"no key", []string{"s3://in", "-"}, exitUsage, `"s3://in": want s3://BUCKET/KEY`, ""},
		{"directory key", []string{"gs://in/good.csv", "gs://out/dir/"}, exitUsage, "want gs://BUCKET/KEY", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := momentumEnv(t, c.env(), nil, tt.args...)
			if res.code != tt.code || !strings.Contains(res.stderr, tt.stderr) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", res.code, res.stderr, tt.code, tt.stderr)
			}
			if tt.missing != "" {
				if _, err := c.get(t, tt.missing); !errors.Is(err, compute.ErrNotFound) {
					t.Errorf("%s: err = %v, want it absent", tt.missing, err)
				}
			}
		})
	}
	// Nothing partial either: no multipart upload was left open. (gofakes3
	// answers NoSuchUpload for a bucket that never had one.)
	for _, b := range []string{"in", "out"} {
		ups, err := c.s3.ListMultipartUploads(context.Background(), &awss3.ListMultipartUploadsInput{Bucket: aws.String(b)})
		if err != nil && !strings.Contains(err.Error(), "NoSuchUpload") || err == nil && len(ups.Uploads) != 0 {
			t.Errorf("bucket %s: multipart uploads left: %v, %v", b, ups, err)
		}
	}
}

// csvStream generates about size bytes of id,mass,velocity rows.
type csvStream struct {
	size, done int64
	i          int
	buf        []byte
}

func (s *csvStream) Read(p []byte) (int, error) {
	for len(s.buf) < len(p) && s.done+int64(len(s.buf)) < s.size {
		if s.i == 0 {
			s.buf = append(s.buf, "id,mass,velocity\n"...)
		}
		s.i++
		s.buf = strconv.AppendInt(s.buf, int64(s.i), 10)
		s.buf = append(s.buf, ',')
		s.buf = strconv.AppendInt(s.buf, int64(s.i%99991), 10)
		s.buf = append(s.buf, '.', byte('0'+s.i%10), byte('0'+s.i%7), ',', '-')
		s.buf = strconv.AppendInt(s.buf, int64(s.i%29989), 10)
		s.buf = append(s.buf, ".25\n"...)
	}
	if len(s.buf) == 0 {
		return 0, io.EOF
	}
	n := copy(p, s.buf)
	s.buf = s.buf[:copy(s.buf, s.buf[n:])]
	s.done += int64(n)
	return n, nil
}

// putCSV writes size bytes of generated CSV (csvStream) to key in store.
func putCSV(t testing.TB, store compute.Store, key string, size int64) {
	t.Helper()
	w, err := store.NewWriter(context.Background(), key, compute.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyBuffer(w, &csvStream{size: size}, make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// measured is one run of the binary: its wall time, peak resident set in
// bytes, and CPU time.
type measured struct {
	elapsed time.Duration
	peakRSS int64
	cpu     time.Duration
}

// runMeasured runs the binary with env and args, fails t unless it
// exits 0, and measures it.
func runMeasured(t testing.TB, env []string, args ...string) measured {
	t.Helper()
	start := time.Now()
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	peak := watchPeakRSS(cmd.Process.Pid)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("momentum %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return measured{time.Since(start), peak(), cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()}
}

// watchPeakRSS follows a process's peak resident set (VmHWM) until it
// exits, and returns a function that gives the last value seen, in bytes.
// (The rusage of a child is no use here: it counts the memory of this
// large test process, from which the child was forked.)
func watchPeakRSS(pid int) func() int64 {
	var peak atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
			if err != nil {
				return
			}
			for _, line := range strings.Split(string(status), "\n") {
				if kb, ok := strings.CutPrefix(line, "VmHWM:"); ok {
					n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(kb), "kB")), 10, 64)
					peak.Store(max(peak.Load(), n<<10))
				}
			}
			if strings.Contains(string(status), "State:\tZ") {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return func() int64 {
		<-done
		return peak.Load()
	}
}

// TestCloudLargeObjectMemory streams a large object S3→S3 and GCS→GCS
// through the binary with GOMEMLIMIT=96MiB, and checks that its peak RSS
// stays under 128 MiB. It logs the throughput beside a plain copy through
// the same server.
//
// The S3 object is 384 MiB, five times the 72 MiB of buffers in flight
// and three times the bound: a run that held the object, or any share of
// it that grows with it, would go over. A larger one tells no more and
// costs its size several times over in the in-process servers (input,
// copy, output). The Cloud Storage one is 256 MiB: the in-memory
// fake-gcs-server re-hashes (MD5 and CRC32C) the whole object on every
// 8 MiB chunk of a resumable upload, so its cost grows with the square of
// the size. MOMENTUM_BIG_MB sets both sizes. Each scheme has servers of
// its own, gone with its objects before the next starts.
func TestCloudLargeObjectMemory(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("streams a large object; the whole suite runs it after, without -race")
	}
	// The servers' garbage (parts, copies, hashes) would otherwise let
	// this process grow to several times what they hold.
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(2 << 30))
	sizes := map[string]int64{"s3": 384 << 20, "gs": 256 << 20}
	if mb, err := strconv.Atoi(os.Getenv("MOMENTUM_BIG_MB")); err == nil && mb > 0 {
		sizes["s3"], sizes["gs"] = int64(mb)<<20, int64(mb)<<20
	}
	for _, scheme := range []string{"s3", "gs"} {
		size := sizes[scheme]
		t.Run(scheme, func(t *testing.T) {
			c := startClouds(t)
			src, dst := scheme+"://in/big.csv", scheme+"://out/big.csv"
			store, key := c.store(src)
			putCSV(t, store, key, size)
			run := runMeasured(t, c.env("GOMEMLIMIT=96MiB"), "--quiet", src, dst)
			elapsed, rssMiB := run.elapsed, run.peakRSS>>20

			// A plain copy through the same server, for comparison.
			start := time.Now()
			r, _, err := store.NewReader(context.Background(), key, compute.ReadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			cw, err := store.NewWriter(context.Background(), "copy.csv", compute.WriteOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.CopyBuffer(cw, r, make([]byte, 1<<20)); err != nil {
				t.Fatal(err)
			}
			r.Close()
			if err := cw.Close(); err != nil {
				t.Fatal(err)
			}
			copyElapsed := time.Since(start)
			mb := float64(size) / 1e6
			t.Logf("%s→%s: %.0f MB in %.1fs = %.0f MB/s, peak RSS %d MiB; plain copy through the same server %.0f MB/s",
				scheme, scheme, mb, elapsed.Seconds(), mb/elapsed.Seconds(), rssMiB, mb/copyElapsed.Seconds())
			if rssMiB >= 128 {
				t.Errorf("peak RSS %d MiB, want under 128 MiB", rssMiB)
			}

			// The object is byte for byte what the kernel makes of the input.
			want := sha256.New()
			if _, err := compute.Transform(context.Background(), want, &csvStream{size: size}, compute.Options{}); err != nil {
				t.Fatal(err)
			}
			dstStore, dstKey := c.store(dst)
			or, _, err := dstStore.NewReader(context.Background(), dstKey, compute.ReadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer or.Close()
			got := sha256.New()
			if _, err := io.CopyBuffer(got, or, make([]byte, 1<<20)); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
				t.Error("output object differs from the kernel's output")
			}
		})
	}
}
