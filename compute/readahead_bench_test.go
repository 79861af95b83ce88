package compute_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/momentum-run/momentum/adapters/local"
	"github.com/momentum-run/momentum/compute"
)

// BenchmarkReadAheadLocal reads a file of MOMENTUM_BENCH_BYTES (default
// 64 MiB, in the page cache after the first pass) through the local store
// in one stream and in ranges, into nothing and through the kernel: the
// case for reading files in one stream.
func BenchmarkReadAheadLocal(b *testing.B) {
	size := int64(64 << 20)
	if v := os.Getenv("MOMENTUM_BENCH_BYTES"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			b.Fatal(err)
		}
		size = n
	}
	dir := b.TempDir()
	f, err := os.Create(filepath.Join(dir, "in.csv"))
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	w.WriteString("id,mass,velocity\n")
	for i, n := 1, int64(17); n < size; i++ {
		k, _ := fmt.Fprintf(w, "%d,%d.%d,-%d.25\n", i, i%99991, i%7, i%29989)
		n += int64(k)
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	f.Close()
	s, err := local.NewStore(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	for _, conns := range []int{1, 8} {
		ra := compute.ReadAhead{Connections: conns, RangeSize: compute.DefaultRangeSize}
		for _, sink := range []string{"discard", "transform"} {
			b.Run(fmt.Sprintf("%d/%s", conns, sink), func(b *testing.B) {
				b.SetBytes(size)
				for b.Loop() {
					r, _, err := ra.NewReader(context.Background(), s, "in.csv", compute.ReadOptions{})
					if err != nil {
						b.Fatal(err)
					}
					if sink == "discard" {
						_, err = io.CopyBuffer(io.Discard, r, make([]byte, 512<<10))
					} else {
						_, err = compute.Transform(context.Background(), io.Discard, r, compute.Options{})
					}
					r.Close()
					if err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
