package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
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

// BenchmarkCloudRead times the binary reading an S3 object and a Cloud
// Storage object into a local file through a simulated link (each
// connection MOMENTUM_BENCH_RATE bytes per second, default 16 MB/s;
// MOMENTUM_BENCH_LATENCY per request, default 20ms), with one connection
// and with eight; beside them, in the benchmark's own process through
// the same link and SDK client, compute.ReadAhead with eight connections
// into nothing (the reader without the kernel), and a plain download of
// the same bytes in eight ranged requests at once, pinned to the version
// like the binary's but in no order (the link's ceiling). It reports the
// binary's peak RSS, and prints a table of the lot.
//
// The object is MOMENTUM_BENCH_BYTES of CSV, 32 MiB by default, so that a
// run takes seconds; the figures in the README are for 256 MiB:
//
//	MOMENTUM_BENCH_BYTES=268435456 go test -tags disable_grpc_modules,lambda.norpc \
//	  -run '^$' -bench CloudRead -benchtime 1x ./cmd/momentum
func BenchmarkCloudRead(b *testing.B) {
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
	var out bytes.Buffer
	st, err := compute.Transform(context.Background(), io.Discard, &csvStream{size: size}, compute.Options{})
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	type row struct {
		name           string
		mbps, rss, cpu float64
	}
	var table []row
	for _, scheme := range []string{"s3", "gs"} {
		src := scheme + "://in/bench.csv"
		store, key := c.store(src)
		w, err := store.NewWriter(context.Background(), key, compute.WriteOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.CopyBuffer(w, &csvStream{size: size}, make([]byte, 1<<20)); err != nil {
			b.Fatal(err)
		}
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}

		for _, n := range []int{1, conns} {
			name := fmt.Sprintf("%s→local/momentum-%d", scheme, n)
			b.Run(name, func(b *testing.B) {
				b.SetBytes(size)
				var peak int64
				var cpu time.Duration
				dst := filepath.Join(dir, "out.csv")
				for b.Loop() {
					os.Remove(dst)
					cmd := exec.Command(bin, "--quiet", "--connections", strconv.Itoa(n), src, dst)
					cmd.Env = env
					var stderr bytes.Buffer
					cmd.Stderr = &stderr
					if err := cmd.Start(); err != nil {
						b.Fatal(err)
					}
					rss := watchPeakRSS(cmd.Process.Pid)
					if err := cmd.Wait(); err != nil {
						b.Fatalf("%v: %s", err, stderr.String())
					}
					peak = max(peak, rss())
					cpu += cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
				}
				if fi, err := os.Stat(dst); err != nil || fi.Size() != st.BytesOut {
					b.Fatalf("output: %v, %v; want %d bytes", fi, err, st.BytesOut)
				}
				b.ReportMetric(float64(peak)/(1<<20), "peak-MiB")
				b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op")
				table = append(table, row{name, float64(size) * float64(b.N) / 1e6 / b.Elapsed().Seconds(), float64(peak) / (1 << 20), cpu.Seconds() / float64(b.N)})
			})
		}

		linked := linkedStore(b, scheme, map[string]*link.Link{"s3": s3Link, "gs": gcsLink}[scheme])
		name := fmt.Sprintf("%s→discard/readahead-%d", scheme, conns)
		b.Run(name, func(b *testing.B) {
			b.SetBytes(size)
			for b.Loop() {
				r, _, err := compute.ReadAhead{Connections: conns}.NewReader(context.Background(), linked, key, compute.ReadOptions{})
				if err != nil {
					b.Fatal(err)
				}
				_, err = io.CopyBuffer(io.Discard, r, make([]byte, 512<<10))
				r.Close()
				if err != nil {
					b.Fatal(err)
				}
			}
			table = append(table, row{name, float64(size) * float64(b.N) / 1e6 / b.Elapsed().Seconds(), 0, 0})
		})
		name = fmt.Sprintf("%s→discard/download-%d", scheme, conns)
		b.Run(name, func(b *testing.B) {
			b.SetBytes(size)
			for b.Loop() {
				if err := parallelDownload(linked, key, size, conns); err != nil {
					b.Fatal(err)
				}
			}
			table = append(table, row{name, float64(size) * float64(b.N) / 1e6 / b.Elapsed().Seconds(), 0, 0})
		})
	}
	fmt.Fprintf(&out, "%d MiB, links of %.0f MB/s per connection, %v per request:\n", size>>20, float64(rate)/1e6, latency)
	one := map[string]float64{}
	for _, r := range table {
		scheme, _, _ := strings.Cut(r.name, "→")
		if strings.HasSuffix(r.name, "momentum-1") {
			one[scheme] = r.mbps
		}
		rss := ""
		if r.rss > 0 {
			rss = fmt.Sprintf("  peak RSS %4.0f MiB  CPU %4.1f s", r.rss, r.cpu)
		}
		fmt.Fprintf(&out, "  %-26s %6.1f MB/s  %4.1f× one connection%s\n", r.name, r.mbps, r.mbps/one[scheme], rss)
	}
	fmt.Print(out.String())
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

// linkedStore is a store on the bucket "in" of a scheme's server,
// through a link, with a client of the benchmark's own.
func linkedStore(b *testing.B, scheme string, l *link.Link) compute.Store {
	if scheme == "s3" {
		return s3.NewFromClient(awss3.New(awss3.Options{
			Region:       "us-east-1",
			BaseEndpoint: aws.String(l.URL),
			UsePathStyle: true,
			Credentials:  credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", ""),
		}), "in")
	}
	client, err := storage.NewClient(context.Background(), option.WithEndpoint(l.URL+"/storage/v1/"),
		option.WithoutAuthentication(), storage.WithJSONReads())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { client.Close() })
	return gcs.NewFromClient(client, "in")
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
