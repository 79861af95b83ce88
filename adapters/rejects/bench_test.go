package rejects_test

import (
	"encoding/csv"
	"io"
	"strconv"
	"testing"

	"github.com/momentum-run/momentum/adapters/rejects"
	"github.com/momentum-run/momentum/compute"
)

// BenchmarkWrite is the cost of one reject, written by gocsv and, for
// reference, by encoding/csv alone, in batches of 100 as the kernel's
// chunks give them.
func BenchmarkWrite(b *testing.B) {
	batch := make([]compute.Reject, 100)
	for i := range batch {
		batch[i] = compute.Reject{Line: int64(1000 + 10*i), Column: "velocity", Reason: `not a decimal number: "abc"`,
			Record: strconv.Itoa(i) + `,12.5,abc,"bad, as every 10th row is"`}
	}
	b.Run("gocsv", func(b *testing.B) {
		w := rejects.NewWriter(io.Discard)
		b.ReportAllocs()
		for b.Loop() {
			if err := w.Write(batch); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(batch)), "ns/reject")
	})
	b.Run("encoding-csv", func(b *testing.B) {
		w := csv.NewWriter(io.Discard)
		b.ReportAllocs()
		for b.Loop() {
			for _, rj := range batch {
				w.Write([]string{strconv.FormatInt(rj.Line, 10), rj.Column, rj.Reason, rj.Record})
			}
			w.Flush()
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(batch)), "ns/reject")
	})
}
