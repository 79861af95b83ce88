package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/storage"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"google.golang.org/api/option"

	"github.com/momentum-run/momentum/adapters/gcs"
	"github.com/momentum-run/momentum/adapters/s3"
	"github.com/momentum-run/momentum/adapters/storetest/link"
	"github.com/momentum-run/momentum/compute"
)

// BenchmarkCloudPaths times the binary moving a generated CSV along each
// cloud path, s3→local, gs→local, s3→s3, gs→gs, local→s3 and local→gs,
// through simulated links (each connection MOMENTUM_BENCH_RATE bytes per
// second each way, default 16 MB/s; MOMENTUM_BENCH_LATENCY per request,
// default 20ms), with --connections 1 and with 8, the default.
// Beside each path is its transfer bound, measured in the benchmark's own
// process through the same links with the same SDK clients: a plain
// parallel download of the input (8 ranged requests at once, pinned to
// its version like the binary's but kept in no order) and a plain
// parallel upload of the output (8 single-request uploads of an eighth of
// it at once); the bound is the slower of the two. The reader alone
// (compute.ReadAhead into nothing) is measured too.
//
// It reports the binary's peak RSS and CPU time, and the time the
// emulators spent committing its output (clouds.commitNs), which S3 and
// Cloud Storage spend no such time on, and prints a table of the lot:
// seconds, MB/s, the time over the bound (÷bound), the speed over one
// connection's (×one), peak RSS, CPU seconds, the emulators' commit
// seconds, and the time less the commit over the bound (÷bound−c).
//
// The object is MOMENTUM_BENCH_BYTES of CSV, 32 MiB by default, so that a
// run takes seconds; the figures in docs/cloud-storage.md are for 256 MiB:
//
//	MOMENTUM_BENCH_BYTES=268435456 go test -tags disable_grpc_modules,lambda.norpc \
//	  -run '^$' -bench CloudPaths -benchtime 1x ./cmd/momentum
func BenchmarkCloudPaths(b *testing.B) {
	size := benchEnv(b, "MOMENTUM_BENCH_BYTES", 32<<20)
	rate := benchEnv(b, "MOMENTUM_BENCH_RATE", 16e6)
	latency := 20 * time.Millisecond
	if v := os.Getenv("MOMENTUM_BENCH_LATENCY"); v != "" {
		var err error
		if latency, err = time.ParseDuration(v); err != nil {
			b.Fatalf("MOMENTUM_BENCH_LATENCY=%q: %v", v, err)
		}
	}
	const conns = 8

	c := startClouds(b)
	s3Link, gcsLink, env := c.linked(b, link.Config{Rate: rate, Latency: latency})
	linked := map[string]compute.Store{
		"s3": linkedStore(b, "s3", "in", s3Link),
		"gs": linkedStore(b, "gs", "in", gcsLink),
	}
	var output bytes.Buffer
	if _, err := compute.Transform(context.Background(), &output, &csvStream{size: size}, compute.Options{}); err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	input := filepath.Join(dir, "bench.csv")
	f, err := os.Create(input)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.Copy(f, &csvStream{size: size}); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	for _, scheme := range []string{"s3", "gs"} {
		store, key := c.store(scheme + "://in/bench.csv")
		putCSV(b, store, key, size)
	}

	// The transfer bounds: seconds to download the input, or upload the
	// output, through one scheme's link.
	download, upload := map[string]float64{}, map[string]float64{}
	var table []benchRow
	for _, scheme := range []string{"s3", "gs"} {
		b.Run(scheme+"/download-8", func(b *testing.B) {
			b.SetBytes(size)
			for b.Loop() {
				if err := parallelDownload(linked[scheme], "bench.csv", size, conns); err != nil {
					b.Fatal(err)
				}
			}
			download[scheme] = b.Elapsed().Seconds() / float64(b.N)
			table = append(table, benchRow{name: scheme + " plain download, 8", seconds: download[scheme]})
		})
		b.Run(scheme+"/upload-8", func(b *testing.B) {
			b.SetBytes(int64(output.Len()))
			for b.Loop() {
				if err := parallelUpload(scheme, s3Link, gcsLink, output.Bytes(), conns); err != nil {
					b.Fatal(err)
				}
			}
			upload[scheme] = b.Elapsed().Seconds() / float64(b.N)
			table = append(table, benchRow{name: scheme + " plain upload, 8", bytes: int64(output.Len()), seconds: upload[scheme]})
		})
		b.Run(scheme+"/readahead-8", func(b *testing.B) {
			b.SetBytes(size)
			for b.Loop() {
				r, _, err := compute.ReadAhead{Connections: conns}.NewReader(context.Background(), linked[scheme], "bench.csv", compute.ReadOptions{})
				if err != nil {
					b.Fatal(err)
				}
				_, err = io.CopyBuffer(io.Discard, r, make([]byte, 512<<10))
				r.Close()
				if err != nil {
					b.Fatal(err)
				}
			}
			table = append(table, benchRow{name: scheme + " compute.ReadAhead alone, 8", seconds: b.Elapsed().Seconds() / float64(b.N)})
		})
	}

	for _, path := range []struct{ from, to string }{
		{"s3", "local"}, {"gs", "local"}, {"s3", "s3"}, {"gs", "gs"}, {"local", "s3"}, {"local", "gs"},
	} {
		var bound float64
		src := input
		if path.from != "local" {
			src = path.from + "://in/bench.csv"
			bound = download[path.from]
		}
		if path.to != "local" {
			bound = max(bound, upload[path.to])
		}
		var one float64
		for _, n := range []int{1, conns} {
			name := fmt.Sprintf("%s→%s/connections-%d", path.from, path.to, n)
			b.Run(name, func(b *testing.B) {
				b.SetBytes(size)
				var row benchRow
				for i := 0; b.Loop(); i++ {
					dst := filepath.Join(dir, "out.csv")
					os.Remove(dst)
					if path.to != "local" {
						dst = fmt.Sprintf("%s://out/bench-%d-%d.csv", path.to, n, i)
					}
					args := []string{"--quiet", "--connections", strconv.Itoa(n), src, dst}
					c.commitNs.Store(0)
					run := runMeasured(b, env, args...)
					row.seconds += run.elapsed.Seconds()
					row.commit += time.Duration(c.commitNs.Load()).Seconds()
					row.cpu += run.cpu.Seconds()
					row.rss = max(row.rss, run.peakRSS)
					checkBenchOutput(b, c, dst, output.Len())
				}
				row.seconds /= float64(b.N)
				row.commit /= float64(b.N)
				row.cpu /= float64(b.N)
				row.name, row.bound = name, bound
				if n == 1 {
					one = row.seconds
				}
				row.one = one
				b.ReportMetric(float64(row.rss)/(1<<20), "peak-MiB")
				b.ReportMetric(row.cpu, "cpu-s/op")
				b.ReportMetric(row.commit, "commit-s/op")
				b.ReportMetric(row.bound/row.seconds, "×bound")
				table = append(table, row)
			})
		}
	}

	fmt.Printf("%d MiB, links of %.0f MB/s per connection, %v per request:\n", size>>20, float64(rate)/1e6, latency)
	fmt.Printf("  %-30s %7s %7s %7s %7s %8s %8s %7s %8s\n", "", "s", "MB/s", "÷bound", "×one", "peak", "CPU s", "commit", "÷bound−c")
	for _, r := range table {
		if r.bytes == 0 {
			r.bytes = size
		}
		fmt.Printf("  %-30s %7.2f %7.1f", r.name, r.seconds, float64(r.bytes)/1e6/r.seconds)
		if r.bound > 0 {
			fmt.Printf(" %7.2f %7.1f %4d MiB %8.1f %7.2f %8.2f", r.seconds/r.bound, r.one/r.seconds, r.rss>>20, r.cpu, r.commit, (r.seconds-r.commit)/r.bound)
		}
		fmt.Println()
	}
}

// benchRow is a line of BenchmarkCloudPaths' table, in seconds per run
// of bytes moved (0 for the input's size).
type benchRow struct {
	name                string
	bytes               int64
	seconds, bound, one float64
	cpu, commit         float64
	rss                 int64
}

// checkBenchOutput fails b unless the output at dst has size bytes, and then
// removes it.
func checkBenchOutput(b *testing.B, c *clouds, dst string, size int) {
	b.Helper()
	if !isURL(dst) {
		if fi, err := os.Stat(dst); err != nil || fi.Size() != int64(size) {
			b.Fatalf("output: %v, %v; want %d bytes", fi, err, size)
		}
		return
	}
	store, key := c.store(dst)
	r, info, err := store.NewReader(context.Background(), key, compute.ReadOptions{Length: 1})
	if err != nil || info.Size != int64(size) {
		b.Fatalf("output %s: %+v, %v; want %d bytes", dst, info, err, size)
	}
	r.Close()
	if scheme, bucket, _, _ := splitURL(dst); scheme == "s3" {
		_, err = c.s3.DeleteObject(context.Background(), &awss3.DeleteObjectInput{Bucket: &bucket, Key: &key})
	} else {
		err = c.gcs.Bucket(bucket).Object(key).Delete(context.Background())
	}
	if err != nil {
		b.Fatal(err)
	}
}

func benchEnv(b *testing.B, name string, def int64) int64 {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		b.Fatalf("%s=%q: want a positive number", name, v)
	}
	return n
}

// linkedStore is a store on a bucket of a scheme's server, through a
// link, with a client of the benchmark's own.
func linkedStore(b *testing.B, scheme, bucket string, l *link.Link) compute.Store {
	if scheme == "s3" {
		return s3.NewFromClient(linkedS3(l), bucket)
	}
	return gcs.NewFromClient(linkedGCS(b, l), bucket)
}

func linkedS3(l *link.Link) *awss3.Client {
	return awss3.New(awss3.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(l.URL),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", ""),
	})
}

func linkedGCS(b *testing.B, l *link.Link) *storage.Client {
	client, err := storage.NewClient(context.Background(), option.WithEndpoint(l.URL+"/storage/v1/"),
		option.WithoutAuthentication(), storage.WithJSONReads())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { client.Close() })
	return client
}

// parallelDownload reads size bytes of key in ranges of
// compute.DefaultRangeSize, conns requests at a time, pinned to the
// version (or ETag) a first request finds, as the binary's are, and
// drops them.
func parallelDownload(s compute.Store, key string, size int64, conns int) error {
	r, info, err := s.NewReader(context.Background(), key, compute.ReadOptions{Length: 1})
	if err != nil {
		return err
	}
	r.Close()
	pin := compute.ReadOptions{Version: info.Version}
	if pin.Version == "" {
		pin.ETag = info.ETag
	}
	var (
		mu    sync.Mutex
		next  int64
		first error
		wg    sync.WaitGroup
	)
	for range conns {
		wg.Go(func() {
			for {
				mu.Lock()
				off := next
				next += compute.DefaultRangeSize
				mu.Unlock()
				if off >= size {
					return
				}
				o := pin
				o.Offset, o.Length = off, min(compute.DefaultRangeSize, size-off)
				r, _, err := s.NewReader(context.Background(), key, o)
				if err == nil {
					_, err = io.Copy(io.Discard, r)
					r.Close()
				}
				if err != nil {
					mu.Lock()
					first = err
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	return first
}

// parallelUpload writes data to the bucket "out" of a scheme's server
// through its link as conns objects of an equal share each, uploaded at
// once, each in a single request with the SDK's own client (S3
// PutObject, a Cloud Storage upload of one chunk): the most conns
// connections carry, with no commit to wait for. Each run replaces the
// last one's objects.
func parallelUpload(scheme string, s3Link, gcsLink *link.Link, data []byte, conns int) error {
	ctx := context.Background()
	var (
		wg   sync.WaitGroup
		errs = make([]error, conns)
		s3c  *awss3.Client
		gcsc *storage.Client
	)
	if scheme == "s3" {
		s3c = linkedS3(s3Link)
	} else {
		var err error
		if gcsc, err = storage.NewClient(ctx, option.WithEndpoint(gcsLink.URL+"/storage/v1/"), option.WithoutAuthentication()); err != nil {
			return err
		}
		defer gcsc.Close()
	}
	for i := range conns {
		part := data[i*len(data)/conns : (i+1)*len(data)/conns]
		key := fmt.Sprintf("plain/%d", i)
		wg.Go(func() {
			if s3c != nil {
				_, errs[i] = s3c.PutObject(ctx, &awss3.PutObjectInput{Bucket: aws.String("out"), Key: &key, Body: bytes.NewReader(part)})
				return
			}
			w := gcsc.Bucket("out").Object(key).NewWriter(ctx)
			w.ChunkSize = 0
			if _, errs[i] = w.Write(part); errs[i] == nil {
				errs[i] = w.Close()
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
