package compute

import (
	"bytes"
	"context"
	"io"
	"math"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
)

// benchInput builds rows shaped like the shared benchmark's generator:
// id, a log-uniform mass with 1-6 decimals, a velocity in ±3e4.
func benchInput(rows int) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	b := []byte("id,mass,velocity\n")
	for i := range rows {
		b = strconv.AppendInt(b, int64(i+1), 10)
		b = append(b, ',')
		b = strconv.AppendFloat(b, math.Pow(10, -3+7*r.Float64()), 'f', 1+r.IntN(6), 64)
		b = append(b, ',')
		b = strconv.AppendFloat(b, -3e4+6e4*r.Float64(), 'f', 1+r.IntN(6), 64)
		b = append(b, '\n')
	}
	return b
}

// quotedBenchInput is benchInput with a quoted note in every row, with a
// delimiter, an escaped quote and now and then a line break in it.
func quotedBenchInput(rows int) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	b := []byte("id,note,mass,velocity\n")
	for i := range rows {
		b = strconv.AppendInt(b, int64(i+1), 10)
		b = append(b, `,"a ""quoted"", note`...)
		if i%10 == 0 {
			b = append(b, "\non two lines"...)
		}
		b = append(b, `",`...)
		b = strconv.AppendFloat(b, math.Pow(10, -3+7*r.Float64()), 'f', 1+r.IntN(6), 64)
		b = append(b, ',')
		b = strconv.AppendFloat(b, -3e4+6e4*r.Float64(), 'f', 1+r.IntN(6), 64)
		b = append(b, '\n')
	}
	return b
}

func benchmarkTransform(b *testing.B, in []byte, o Options) {
	rows := bytes.Count(in, []byte("\n")) - 1
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := Transform(context.Background(), io.Discard, bytes.NewReader(in), o); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}

func BenchmarkTransformSerial(b *testing.B) {
	benchmarkTransform(b, benchInput(200_000), Options{Workers: 1})
}
func BenchmarkTransformParallel(b *testing.B) {
	benchmarkTransform(b, benchInput(200_000), Options{})
}

// BenchmarkTransformQuoted is the cost of quoted fields, in either mode.
func BenchmarkTransformQuoted(b *testing.B) {
	in := quotedBenchInput(150_000)
	for _, quotes := range []QuoteMode{QuotesStrict, QuotesLazy} {
		b.Run(quotes.String(), func(b *testing.B) { benchmarkTransform(b, in, Options{Workers: 1, Quotes: quotes}) })
	}
}

// BenchmarkSplit is the splitter alone, which finds record boundaries,
// on quote-free and quoted input.
func BenchmarkSplit(b *testing.B) {
	for _, c := range []struct {
		name string
		in   []byte
	}{{"plain", benchInput(200_000)}, {"quoted", quotedBenchInput(150_000)}} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(c.in)))
			b.ReportAllocs()
			for b.Loop() {
				sp := newSplitter(bytes.NewReader(c.in), Options{Delimiter: ',', MaxRecordBytes: DefaultMaxRecordBytes})
				for {
					chunk, err := sp.next()
					if err == io.EOF {
						break
					} else if err != nil {
						b.Fatal(err)
					}
					sp.release(chunk)
				}
			}
		})
	}
}

var shardBenchInput = sync.OnceValue(func() []byte { return benchInput(2_000_000) })

// BenchmarkTransformShards runs the N shards of one 70 MB input one
// after the other: against BenchmarkTransformParallel, it is the cost of
// sharding (the header read by every shard, the boundary read-ahead).
func BenchmarkTransformShards(b *testing.B) {
	in := shardBenchInput()
	rows := bytes.Count(in, []byte("\n")) - 1
	for _, n := range []int{1, 4, 16} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			b.SetBytes(int64(len(in)))
			b.ReportAllocs()
			for b.Loop() {
				for i := range n {
					_, err := TransformShard(context.Background(), io.Discard, bytes.NewReader(in), int64(len(in)), Shard{i, n}, Options{})
					if err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}

// BenchmarkFindBoundary is one shard's search for its first record, in
// the middle of a 70 MB input: quote-free, where the reading inside
// quotes dies only at MaxRecordBytes, and quoted, in each mode.
func BenchmarkFindBoundary(b *testing.B) {
	for _, c := range []struct {
		name string
		in   []byte
		o    Options
	}{
		{"plain", shardBenchInput(), Options{}},
		{"quoted", quotedBenchInput(1_500_000), Options{}},
		{"quoted-skip", quotedBenchInput(1_500_000), Options{OnError: OnErrorSkip}},
		{"quoted-lazy", quotedBenchInput(1_500_000), Options{Quotes: QuotesLazy}},
	} {
		b.Run(c.name, func(b *testing.B) {
			o, _ := c.o.withDefaults()
			ra := bytes.NewReader(c.in)
			dataStart := int64(bytes.IndexByte(c.in, '\n') + 1)
			for b.Loop() {
				if _, err := findBoundary(context.Background(), ra, int64(len(c.in)), dataStart, int64(len(c.in)/2), o); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
