package s3

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/momentum-run/momentum/adapters/storetest/link"
	"github.com/momentum-run/momentum/compute"
)

// BenchmarkUploadLink writes an object of 256 MiB (MOMENTUM_LINK_MB)
// through a simulated link of 16 MB/s per connection each way and 20 ms
// per request, to gofakes3 in memory: with 1 and 8 parts in flight, and,
// for comparison, as 8 PutObjects of an eighth of it at once, the most
// that 8 connections carry. The same runs straight to the emulator
// (link=off) show what the emulator itself costs. commit-s is the time
// the emulator took to complete the upload, which it does by copying and
// hashing the whole object (S3 takes a fraction of a second), and link-MB/s
// the throughput without it.
//
//	go test -tags disable_grpc_modules -run '^$' -bench UploadLink -benchtime 1x ./adapters/s3
func BenchmarkUploadLink(b *testing.B) {
	size := 256 << 20
	if mb, err := strconv.Atoi(os.Getenv("MOMENTUM_LINK_MB")); err == nil && mb > 0 {
		size = mb << 20
	}
	backend := s3mem.New()
	if err := backend.CreateBucket(testBucket); err != nil {
		b.Fatal(err)
	}
	fake := gofakes3.New(backend, gofakes3.WithLogger(gofakes3.DiscardLog())).Server()
	var commit atomic.Int64 // nanoseconds the emulator spent completing uploads
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		fake.ServeHTTP(w, r)
		if operation(r) == "CompleteMultipartUpload" {
			commit.Add(int64(time.Since(start)))
		}
	}))
	defer srv.Close()
	l, err := link.Start(srv.URL, link.Config{Rate: 16e6, Latency: 20 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	data := randBytes(size, 1)
	ctx := context.Background()
	for _, via := range []struct{ name, url string }{{"on", l.URL}, {"off", srv.URL}} {
		client := newClient(via.url)
		for _, n := range []int{1, 8} {
			b.Run(fmt.Sprintf("link=%s/in-flight=%d", via.name, n), func(b *testing.B) {
				st := NewFromClient(client, testBucket, WithUploadConcurrency(n))
				b.SetBytes(int64(size))
				commit.Store(0)
				for b.Loop() {
					if err := put(ctx, st, "bench/a", data, 512<<10, compute.WriteOptions{}); err != nil {
						b.Fatal(err)
					}
				}
				reportCommit(b, commit.Load(), size)
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
						_, errs[i] = client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(testBucket),
							Key: aws.String(fmt.Sprintf("bench/plain-%d", i)), Body: bytes.NewReader(part)})
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

// reportCommit reports the time the emulator spent committing an object
// of size bytes, commitNs in all over b.N of them, and the throughput
// without it.
func reportCommit(b *testing.B, commitNs int64, size int) {
	commit := time.Duration(commitNs / int64(b.N))
	b.ReportMetric(commit.Seconds(), "commit-s")
	if rest := b.Elapsed()/time.Duration(b.N) - commit; rest > 0 {
		b.ReportMetric(float64(size)/1e6/rest.Seconds(), "link-MB/s")
	}
}
