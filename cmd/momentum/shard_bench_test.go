package main

import (
	"bufio"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

// BenchmarkShardedJob times an array job of N tasks, N processes of the
// binary on one machine, over one local file of MOMENTUM_BENCH_BYTES
// (default 256 MiB; the figures in docs/scale-out.md are for 2 GiB), shaped like
// the shared benchmark's data. MOMENTUM_BENCH_WORKERS sets --workers per
// task. The slowest task's time ("task-s") is what an engine with a
// machine per task would wait for.
//
//	go test -tags disable_grpc_modules,lambda.norpc -run '^$' -bench ShardedJob -benchtime 3x ./cmd/momentum
func BenchmarkShardedJob(b *testing.B) {
	size := int64(256 << 20)
	if s := os.Getenv("MOMENTUM_BENCH_BYTES"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			b.Fatal(err)
		}
		size = n
	}
	dir := b.TempDir()
	in := filepath.Join(dir, "in.csv")
	rows := writeBenchInput(b, in, size)
	workers := os.Getenv("MOMENTUM_BENCH_WORKERS")
	for _, n := range []int{1, 2, 4} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			b.SetBytes(size)
			var slowest time.Duration
			for i := 0; b.Loop(); i++ {
				out := filepath.Join(dir, fmt.Sprintf("out-%d-%d", n, i)) + "/"
				var wg sync.WaitGroup
				times := make([]time.Duration, n)
				for s := range n {
					args := []string{"job", "--input", in, "--output", out, "--shard", fmt.Sprintf("%d/%d", s, n)}
					if workers != "" {
						args = append(args, "--workers", workers)
					}
					cmd := exec.Command(bin, args...)
					cmd.Env = cleanEnv()
					wg.Go(func() {
						start := time.Now()
						if outb, err := cmd.CombinedOutput(); err != nil {
							b.Errorf("task %d: %v: %s", s, err, outb)
						}
						times[s] = time.Since(start)
					})
				}
				wg.Wait()
				for _, t := range times {
					slowest = max(slowest, t)
				}
				os.RemoveAll(out)
			}
			b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
			b.ReportMetric(slowest.Seconds(), "task-s")
		})
	}
}

// writeBenchInput writes about size bytes of id,mass,velocity rows and
// returns how many.
func writeBenchInput(b *testing.B, name string, size int64) int64 {
	f, err := os.Create(name)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	r := rand.New(rand.NewPCG(1, 2))
	n, _ := w.WriteString("id,mass,velocity\n")
	written, rows := int64(n), int64(0)
	var line []byte
	for written < size {
		rows++
		line = strconv.AppendInt(line[:0], rows, 10)
		line = append(line, ',')
		line = strconv.AppendFloat(line, math.Pow(10, -3+7*r.Float64()), 'f', 1+r.IntN(6), 64)
		line = append(line, ',')
		line = strconv.AppendFloat(line, -3e4+6e4*r.Float64(), 'f', 1+r.IntN(6), 64)
		line = append(line, '\n')
		n, _ := w.Write(line)
		written += int64(n)
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	return rows
}
