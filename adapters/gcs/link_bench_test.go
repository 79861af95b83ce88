package gcs

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/storage"
	"github.com/fsouza/fake-gcs-server/fakestorage"
	"google.golang.org/api/option"

	"github.com/momentum-run/momentum/adapters/storetest"
	"github.com/momentum-run/momentum/adapters/storetest/link"
	"github.com/momentum-run/momentum/compute"
)

// BenchmarkUploadLink writes an object of 256 MiB (MOMENTUM_LINK_MB)
// through a simulated link of 16 MB/s per connection each way and 20 ms
// per request, to fake-gcs-server in memory: as one resumable upload (an
// upload concurrency of 1), as a parallel composite upload of 8 parts in
// flight, and, for comparison, as 8 single-request uploads of an eighth
// of it at once, the most that 8 connections carry. The same runs
// straight to the emulator (link=off) show what the emulator itself
// costs: it hashes the whole object again on every chunk of a resumable
// upload. commit-s is the time the emulator took over the composes, or
// the last chunk of a resumable upload, which copy and hash the whole
// object (Cloud Storage takes a fraction of a second), and link-MB/s the
// throughput without it.
//
//	go test -tags disable_grpc_modules -run '^$' -bench UploadLink -benchtime 1x ./adapters/gcs
func BenchmarkUploadLink(b *testing.B) {
	size := 256 << 20
	if mb, err := strconv.Atoi(os.Getenv("MOMENTUM_LINK_MB")); err == nil && mb > 0 {
		size = mb << 20
	}
	ts := httptest.NewUnstartedServer(nil)
	fake, err := fakestorage.NewServerWithOptions(fakestorage.Options{
		Scheme: "http", Host: "127.0.0.1", PublicHost: ts.Listener.Addr().String(), NoListener: true})
	if err != nil {
		b.Fatal(err)
	}
	fake.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: bucket})
	handler := storetest.GCSCompose(storetest.OneGenerationReadAtATime(fake.HTTPHandler()))
	var commit atomic.Int64 // nanoseconds the emulator spent composing, or on the last chunk
	ts.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		handler.ServeHTTP(w, r)
		if kind(r) == "compose" || kind(r) == "chunk" && !strings.HasSuffix(r.Header.Get("Content-Range"), "/*") {
			commit.Add(int64(time.Since(start)))
		}
	})
	ts.Start()
	defer func() { ts.Close(); fake.Stop() }()
	l, err := link.Start(ts.URL, link.Config{Rate: 16e6, Latency: 20 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	data := pattern(size)
	ctx := context.Background()
	for _, via := range []struct{ name, url string }{{"on", l.URL}, {"off", ts.URL}} {
		client, err := storage.NewClient(ctx, option.WithEndpoint(via.url+"/storage/v1/"),
			option.WithoutAuthentication(), storage.WithJSONReads())
		if err != nil {
			b.Fatal(err)
		}
		defer client.Close()
		for _, n := range []int{1, 8} {
			b.Run(fmt.Sprintf("link=%s/in-flight=%d", via.name, n), func(b *testing.B) {
				st := NewFromClient(client, bucket, WithUploadConcurrency(n))
				b.SetBytes(int64(size))
				commit.Store(0)
				for b.Loop() {
					w, err := st.NewWriter(ctx, "bench/a", compute.WriteOptions{})
					if err != nil {
						b.Fatal(err)
					}
					// Writes of 512 KiB, as the kernel's output comes.
					if _, err := io.CopyBuffer(w, struct{ io.Reader }{bytes.NewReader(data)}, make([]byte, 512<<10)); err != nil {
						b.Fatal(err)
					}
					if err := w.Close(); err != nil {
						b.Fatal(err)
					}
				}
				commitNs := commit.Load() / int64(b.N)
				b.ReportMetric(time.Duration(commitNs).Seconds(), "commit-s")
				if rest := b.Elapsed()/time.Duration(b.N) - time.Duration(commitNs); rest > 0 {
					b.ReportMetric(float64(size)/1e6/rest.Seconds(), "link-MB/s")
				}
			})
		}
		b.Run(fmt.Sprintf("link=%s/plain-8", via.name), func(b *testing.B) {
			b.SetBytes(int64(size))
			for b.Loop() {
				var wg sync.WaitGroup
				errs := make([]error, 8)
				for i := range 8 {
					part := data[i*size/8 : (i+1)*size/8]
					wg.Go(func() {
						w := client.Bucket(bucket).Object(fmt.Sprintf("bench/plain-%d", i)).NewWriter(ctx)
						w.ChunkSize = 0
						if _, errs[i] = w.Write(part); errs[i] == nil {
							errs[i] = w.Close()
						}
					})
				}
				wg.Wait()
				for _, err := range errs {
					if err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
