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

// BenchmarkSkipManyRejects is skip mode with every 10th row bad, with the
// options the binary builds from --on-error skip: the cost of writing the
// rejects file on the kernel's path.
func BenchmarkSkipManyRejects(b *testing.B) {
	in := []byte("id,mass,velocity,note\n")
	for i := range 200_000 {
		in = strconv.AppendInt(in, int64(i), 10)
		if i%10 == 9 {
			in = append(in, `,12.5,abc,"bad, as every 10th row is"`+"\n"...)
		} else {
			in = append(in, ",12.5,-3.25,ok\n"...)
		}
	}
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
	for _, workers := range []int{1, 0} {
		name := "serial"
		if workers == 0 {
			name = "parallel"
		}
		b.Run(name, func(b *testing.B) {
			o.Workers = workers
			b.SetBytes(int64(len(in)))
			b.ReportAllocs()
			var st compute.Stats
			for b.Loop() {
				if st, err = compute.Transform(context.Background(), io.Discard, bytes.NewReader(in), o); err != nil {
					b.Fatal(err)
				}
			}
			if st.RowsRejected != 20_000 {
				b.Fatalf("%d rejected, want 20000", st.RowsRejected)
			}
			b.ReportMetric(float64(st.RowsIn)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}
