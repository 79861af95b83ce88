package main

import (
	"bytes"
	"context"
	"flag"
	"io"
	"strconv"
	"testing"

	"github.com/momentum-run/momentum/compute"
)

// BenchmarkSkipRejects is skip mode with every 10th row bad, and with no
// bad row, serial and parallel, with the options the binary builds from
// --on-error skip: the cost of the rejects file on the kernel's path. On
// a busy machine, compare cpu-ns/op (the CPU time of all threads) rather
// than ns/op.
func BenchmarkSkipRejects(b *testing.B) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	kernel := addKernelFlags(fs)
	source, err := parseFlags(fs, []string{"--on-error", "skip"}, func(string) string { return "" })
	if err != nil {
		b.Fatal(err)
	}
	o, err := kernel.options(source)
	if err != nil {
		b.Fatal(err)
	}
	o.Rejects = io.Discard
	for _, bad := range []bool{true, false} {
		in := []byte("id,mass,velocity,note\n")
		for i := range 200_000 {
			in = strconv.AppendInt(in, int64(i), 10)
			if bad && i%10 == 9 {
				in = append(in, `,12.5,abc,"bad, as every 10th row is"`+"\n"...)
			} else {
				in = append(in, ",12.5,-3.25,ok\n"...)
			}
		}
		for _, workers := range []int{1, 0} {
			name := map[bool]string{true: "every-10th-bad", false: "none-bad"}[bad] + map[int]string{1: "/serial", 0: "/parallel"}[workers]
			b.Run(name, func(b *testing.B) {
				o.Workers = workers
				b.SetBytes(int64(len(in)))
				b.ReportAllocs()
				var st compute.Stats
				cpu := cpuTime()
				for b.Loop() {
					if st, err = compute.Transform(context.Background(), io.Discard, bytes.NewReader(in), o); err != nil {
						b.Fatal(err)
					}
				}
				if want := map[bool]int64{true: 20_000, false: 0}[bad]; st.RowsRejected != want {
					b.Fatalf("%d rejected, want %d", st.RowsRejected, want)
				}
				b.ReportMetric(float64(st.RowsIn)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
				if cpu := cpuTime() - cpu; cpu > 0 {
					b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
				}
			})
		}
	}
}
