package compute

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
)

// shardFaults say what shardCSV breaks: some values (bad), and the
// quoting of some notes, with notes drawn from quotes.
type shardFaults struct {
	bad    bool
	quotes []string
}

// lazyFaults are notes that RFC 4180 does not allow but lazy mode reads
// without changing the fields: bare quotes, text after a closing quote,
// a space before an opening quote, a quote and CR in a quoted field. Each
// closes where it ends, in lazy mode too.
var lazyFaults = []string{
	`ab"c`, `5'10"`, `x""`, ` "ab"`, `"ab"c"`, `"a` + "\n" + `b"c"`, "\"ab\"\rx\"", `""a"`, `"a"" "b"`,
}

// badLazyFaults make rows bad in lazy mode too, their fields cut anew by
// a quote that is data; they close where they end.
var badLazyFaults = []string{` "a,b"`, ` "a` + "\n", `"a"b` + "\n" + `c",x,y"`}

// quoteFaultsFor are the faults a run in mode o reads without failing. In
// strict mode the record of a broken field ends at the next line break
// whatever follows; in lazy mode "ab" followed by a space would stay
// open, taking whatever follows into the field.
func quoteFaultsFor(o Options) []string {
	switch {
	case o.OnError == OnErrorSkip && o.Quotes == QuotesLazy:
		return append(badLazyFaults, lazyFaults...)
	case o.OnError == OnErrorSkip:
		return append([]string{`"ab" `, `"ab"c`, `"ab"c` + "\n"}, append(badLazyFaults, lazyFaults...)...)
	case o.Quotes == QuotesLazy:
		return lazyFaults
	}
	return nil
}

// shardCSV builds a random input for the shard tests: quoted fields with
// newlines, CRLF and escaped quotes, blank lines, CRLF records, tiny and
// large records, runs of records that read as valid CSV from either side
// of a quote, and the faults asked for.
func shardCSV(r *rand.Rand, rows, large int, faults shardFaults) []byte {
	var b bytes.Buffer
	if r.IntN(4) == 0 {
		b.Write(utf8BOM)
	}
	if r.IntN(4) == 0 {
		b.WriteString("\n\r\n")
	}
	b.WriteString("id,note,mass,velocity\n")
	ambiguous := r.IntN(3) == 0
	for i := range rows {
		fmt.Fprintf(&b, "%d,", i)
		switch k := r.IntN(10); {
		case len(faults.quotes) > 0 && r.IntN(8) == 0:
			b.WriteString(faults.quotes[r.IntN(len(faults.quotes))])
		case ambiguous && k < 5:
			b.WriteString("\"\n\"") // a,"\n"\n reads the same inside quotes
		case k == 0:
			b.WriteString("\"a,b \"\"q\"\" \n\r\nx\"")
		case k == 1:
			b.WriteString(strings.Repeat("z", r.IntN(300)))
		case k == 2:
			b.WriteString(`""`)
		case k == 3:
			b.WriteString("\"" + strings.Repeat("line\n", r.IntN(40)) + "\"")
		case k == 4 && r.IntN(20) == 0:
			b.WriteString(strings.Repeat("L", large))
		case k == 5 && r.IntN(10) == 0:
			b.WriteString("\"" + strings.Repeat("q\n,\"\"", large/5) + "\"")
		}
		mass := fmt.Sprintf("%d.%d", r.IntN(10000), r.IntN(1000))
		if faults.bad && r.IntN(25) == 0 {
			mass = "x" + mass
		}
		fmt.Fprintf(&b, ",%s,%de%d", mass, r.IntN(2000)-1000, r.IntN(6)-3)
		if i == rows-1 && r.IntN(3) == 0 {
			break // no line break at the end
		}
		if r.IntN(4) == 0 {
			b.WriteString("\r\n")
		} else {
			b.WriteString("\n")
		}
		if r.IntN(40) == 0 {
			b.WriteString("\n\r\n")
		}
	}
	return b.Bytes()
}

type shardRun struct {
	out, rejects []byte
	stats        ShardStats
	err          error
}

// runShards runs the n shards of in. With an even n, each reads through
// an objectReaderAt of a store with a ReadAhead of small ranges, as a
// ShardJob does: its own bytes in one stream of ranged requests.
func runShards(in []byte, n int, o Options) []shardRun {
	runs := make([]shardRun, n)
	for i := range runs {
		var out, rej bytes.Buffer
		oo := o
		if o.OnError == OnErrorSkip {
			oo.Rejects, oo.NewRejectWriter = &rej, newCSVRejects
		}
		var r io.ReaderAt = bytes.NewReader(in)
		if n%2 == 0 {
			ra := &objectReaderAt{ctx: context.Background(), store: &memStore{data: in}, key: "k", size: int64(len(in)),
				ahead: ReadAhead{Connections: 1 + n/2, RangeSize: 7 + 13*n}}
			defer ra.Close()
			r = ra
		}
		st, err := TransformShard(context.Background(), &out, r, int64(len(in)), Shard{i, n}, oo)
		runs[i] = shardRun{out.Bytes(), rej.Bytes(), st, err}
	}
	return runs
}

// TestShardsConcatenate is the property that makes sharding safe: for
// random inputs and every shard count from 1 to 16, the parts in order
// are the single run's output byte for byte, the rejects likewise, the
// counts add up and the byte ranges tile the input.
func TestShardsConcatenate(t *testing.T) {
	smallScanBlocks(t)
	restoreSearchBehind(t)
	trials := 30
	if testing.Short() {
		trials = 10
	}
	for trial := range trials {
		r := rand.New(rand.NewPCG(uint64(trial), 99))
		o := Options{Workers: 1 + r.IntN(3), Quotes: QuoteMode(r.IntN(2))}
		large := 2000 + r.IntN(6000)
		if r.IntN(2) == 0 {
			o.MaxRecordBytes = large + 200 // windows far smaller than the input
		}
		if r.IntN(2) == 0 {
			o.OnError = OnErrorSkip
		}
		in := shardCSV(r, 50+r.IntN(1500), large, shardFaults{bad: o.OnError == OnErrorSkip, quotes: quoteFaultsFor(o)})
		searchBehind = []int64{1, 100, 5000, 64 << 10}[trial%4]
		var want, wantRej bytes.Buffer
		so := o
		so.Rejects, so.NewRejectWriter = &wantRej, newCSVRejects
		wst, err := Transform(context.Background(), &want, bytes.NewReader(in), so)
		if err != nil {
			t.Fatalf("trial %d: single run: %v", trial, err)
		}
		for n := 1; n <= 16; n++ {
			runs := runShards(in, n, o)
			var got, gotRej bytes.Buffer
			var sum Stats
			for i, run := range runs {
				if run.err != nil {
					t.Fatalf("trial %d, shard %d/%d: %v", trial, i, n, run.err)
				}
				got.Write(run.out)
				gotRej.Write(run.rejects)
				sum.RowsIn += run.stats.RowsIn
				sum.RowsOut += run.stats.RowsOut
				sum.RowsRejected += run.stats.RowsRejected
				sum.BytesOut += run.stats.BytesOut
				if run.stats.Header != wst.Header {
					t.Errorf("trial %d, shard %d/%d: header %v, want %v", trial, i, n, run.stats.Header, wst.Header)
				}
				if i > 0 && run.stats.Start != runs[i-1].stats.End {
					t.Errorf("trial %d, shard %d/%d starts at %d, shard %d ends at %d", trial, i, n, run.stats.Start, i-1, runs[i-1].stats.End)
				}
			}
			if end := runs[n-1].stats.End; end != int64(len(in)) {
				t.Errorf("trial %d, %d shards: last ends at %d of %d", trial, n, end, len(in))
			}
			if !bytes.Equal(got.Bytes(), want.Bytes()) {
				t.Fatalf("trial %d, %d shards: output differs from the single run at byte %d", trial, n, firstDiff(got.Bytes(), want.Bytes()))
			}
			if !bytes.Equal(gotRej.Bytes(), wantRej.Bytes()) {
				t.Fatalf("trial %d, %d shards: rejects differ:\n%s\nwant:\n%s", trial, n, gotRej.Bytes(), wantRej.Bytes())
			}
			if sum.RowsIn != wst.RowsIn || sum.RowsOut != wst.RowsOut || sum.RowsRejected != wst.RowsRejected || sum.BytesOut != wst.BytesOut {
				t.Errorf("trial %d, %d shards: counts %+v, want %+v", trial, n, sum, wst)
			}
		}
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestShardsReportTheFirstError breaks a valid input in one place (a bad
// value, a stray quote, an unclosed quote) and checks that the earliest
// error the shards report is the single run's, line and column, and that
// a shard fails whenever the single run does.
func TestShardsReportTheFirstError(t *testing.T) {
	smallScanBlocks(t)
	restoreSearchBehind(t)
	breaks := []func(r *rand.Rand, in []byte) []byte{
		func(r *rand.Rand, in []byte) []byte { // a bad value
			i := bytes.LastIndex(in[:r.IntN(len(in))], []byte(",")) + 1
			return append(in[:i:i], append([]byte("oops"), in[i:]...)...)
		},
		func(r *rand.Rand, in []byte) []byte { // a stray quote
			i := r.IntN(len(in))
			return append(in[:i:i], append([]byte(`"`), in[i:]...)...)
		},
		func(r *rand.Rand, in []byte) []byte { // a quote in an unquoted field
			i := bytes.Index(in[r.IntN(len(in)):], []byte("e"))
			if i < 0 {
				return in
			}
			i += len(in) - len(in[i:])
			return append(in[:i:i], append([]byte(`x"y`), in[i:]...)...)
		},
	}
	trials := 90
	if testing.Short() {
		trials = 30 // every searchBehind still, by trial%3
	}
	for trial := range trials {
		r := rand.New(rand.NewPCG(uint64(trial), 7))
		large := 1000 + r.IntN(2000)
		o := Options{Workers: 1 + r.IntN(2), MaxRecordBytes: large + 200, Quotes: QuoteMode(r.IntN(2))}
		if r.IntN(2) == 0 {
			o.OnError = OnErrorSkip
		}
		in := breaks[trial%len(breaks)](r, shardCSV(r, 200+r.IntN(600), large, shardFaults{quotes: quoteFaultsFor(o)}))
		searchBehind = []int64{1, 300, 64 << 10}[trial%3]
		so := o
		so.Rejects, so.NewRejectWriter = &bytes.Buffer{}, newCSVRejects
		_, wantErr := Transform(context.Background(), &bytes.Buffer{}, bytes.NewReader(in), so)
		for _, n := range []int{2, 3, 5, 8, 13} {
			var first *ParseError
			failed := false
			for _, run := range runShards(in, n, o) {
				var perr *ParseError
				if run.err != nil {
					failed = true
				}
				if errors.As(run.err, &perr) && (first == nil || perr.Line < first.Line) {
					first = perr
				}
			}
			if wantErr == nil {
				if failed {
					t.Errorf("trial %d, %d shards: a shard failed where the single run did not", trial, n)
				}
				continue
			}
			var want *ParseError
			if !errors.As(wantErr, &want) {
				t.Fatalf("trial %d: single run: %v", trial, wantErr)
			}
			if first == nil || first.Error() != want.Error() {
				t.Errorf("trial %d, %d shards: first error %v, want %v", trial, n, first, want)
			}
		}
	}
}

// TestFindBoundary checks the boundary search at every offset of random
// inputs against reading everything before the offset, in every mode.
func TestFindBoundary(t *testing.T) {
	restoreSearchBehind(t)
	for trial := range 24 {
		if testing.Short() && trial%5 != 0 {
			continue // 0, 5, 10, 15, 20: each quote mode, OnError and searchBehind
		}
		r := rand.New(rand.NewPCG(uint64(trial), 3))
		large := 500 + r.IntN(1000)
		o := Options{MaxRecordBytes: large + 100, Quotes: QuoteMode(trial % 2)}
		if trial%3 == 0 {
			o.OnError = OnErrorSkip
		}
		in := shardCSV(r, 400, large, shardFaults{quotes: quoteFaultsFor(o)})
		searchBehind = []int64{1, 50, 2000, 64 << 10}[trial/6]
		so := o
		so.Rejects, so.NewRejectWriter = io.Discard, newCSVRejects
		if _, err := Transform(context.Background(), io.Discard, bytes.NewReader(in), so); err != nil {
			continue // a misjudged boundary is then possible, and caught by the shard before
		}
		o, _ = o.withDefaults()
		ra := bytes.NewReader(in)
		_, dataStart, err := shardHeader(context.Background(), ra, int64(len(in)), o)
		if err != nil {
			t.Fatal(err)
		}
		// The record starts, by following the grammar once from dataStart.
		starts := []int64{dataStart}
		sc := newScanner(o)
		for pos := dataStart; pos < int64(len(in)); {
			k := sc.first(in[pos:])
			if k < 0 {
				break
			}
			pos += int64(k) + 1
			starts = append(starts, pos)
		}
		starts = append(starts, int64(len(in)))
		next := 0
		for off := dataStart; off <= int64(len(in)); off++ {
			for starts[next] < off {
				next++
			}
			want := starts[next]
			got, err := findBoundary(context.Background(), ra, int64(len(in)), dataStart, off, o)
			if err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Fatalf("trial %d (%v, %v): boundary at or after %d: got %d, want %d", trial, o.Quotes, o.OnError, off, got, want)
			}
			if off%61 == 0 {
				if exact, _ := exactBoundary(context.Background(), ra, int64(len(in)), dataStart, off, o); exact != want {
					t.Fatalf("trial %d: exact boundary at or after %d: %d, want %d", trial, off, exact, want)
				}
			}
		}
	}
}

// TestShardAmbiguousInput is an input that reads as valid CSV from
// either side of every quote, so the boundary search cannot rule out
// either reading and falls back on reading all before the offset.
func TestShardAmbiguousInput(t *testing.T) {
	var b bytes.Buffer
	b.WriteString("mass,velocity,note\n")
	for i := range 5000 {
		fmt.Fprintf(&b, "%d,2,\"\n\"\n", i)
	}
	in := b.Bytes()
	dataStart := int64(len("mass,velocity,note\n"))
	for _, quotes := range []QuoteMode{QuotesStrict, QuotesLazy} {
		o, _ := Options{MaxRecordBytes: 64, Quotes: quotes}.withDefaults()
		ra := bytes.NewReader(in)
		off := int64(len(in) / 2)
		if _, ok, err := searchBoundary(context.Background(), ra, int64(len(in)), dataStart, off, 130, 130, o); ok || err != nil {
			t.Fatalf("%v: the search decided (%v) where it cannot", quotes, err)
		}
		got, err := findBoundary(context.Background(), ra, int64(len(in)), dataStart, off, o)
		want, _ := exactBoundary(context.Background(), ra, int64(len(in)), dataStart, off, o)
		if err != nil || got != want {
			t.Fatalf("%v: got %d, %v; want %d", quotes, got, err, want)
		}
		var single bytes.Buffer
		if _, err := Transform(context.Background(), &single, bytes.NewReader(in), o); err != nil {
			t.Fatal(err)
		}
		var all bytes.Buffer
		for _, run := range runShards(in, 7, o) {
			if run.err != nil {
				t.Fatal(run.err)
			}
			all.Write(run.out)
		}
		if !bytes.Equal(all.Bytes(), single.Bytes()) {
			t.Fatalf("%v: parts differ from the single run", quotes)
		}
	}
}

func TestParseShard(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Shard
		err  bool
	}{
		{"0/1", Shard{0, 1}, false},
		{"3/16", Shard{3, 16}, false},
		{"15/16", Shard{15, 16}, false},
		{"16/16", Shard{}, true},
		{"-1/4", Shard{}, true},
		{"0/0", Shard{}, true},
		{"1", Shard{}, true},
		{"a/b", Shard{}, true},
		{"0/100001", Shard{}, true},
	} {
		got, err := ParseShard(tc.in)
		if (err != nil) != tc.err || !tc.err && got != tc.want {
			t.Errorf("ParseShard(%q) = %v, %v", tc.in, got, err)
		}
	}
}

func TestShardNominalTiles(t *testing.T) {
	for _, size := range []int64{0, 1, 7, 1000, 1 << 62} {
		for n := 1; n <= 33; n++ {
			var prev int64
			for i := range n {
				s, e := Shard{i, n}.Nominal(size)
				if s != prev || e < s {
					t.Fatalf("size %d, shard %d/%d: [%d,%d) after %d", size, i, n, s, e, prev)
				}
				prev = e
			}
			if prev != size {
				t.Fatalf("size %d, %d shards end at %d", size, n, prev)
			}
		}
	}
}

// TestShardMisjudgedBoundary is invalid input that misleads the boundary
// search: the second shard starts inside a quoted field whose lines read
// as records, and the quote is closed wrongly, which rules out the true
// hypothesis. The first shard must notice that its end is inside quotes,
// and both must report the single run's error, not an artefact of the
// misplaced start (line 6's "a" as a mass).
func TestShardMisjudgedBoundary(t *testing.T) {
	in := []byte("mass,velocity,note\n" +
		"1,2,\"start\n" +
		"7,8,9\n" +
		"7,8,9\n" +
		"7,8,9\n" +
		"a,8,9\n" +
		"\"X\n" +
		"more\",z\n" +
		"10,20,n\n")
	o := Options{MaxRecordBytes: 100}
	restoreSearchBehind(t)
	searchBehind = 1
	_, want := Transform(context.Background(), io.Discard, bytes.NewReader(in), o)
	if want == nil || !strings.Contains(want.Error(), "line 7") {
		t.Fatalf("single run: %v", want)
	}
	for _, run := range runShards(in, 2, o) {
		if run.err == nil || run.err.Error() != want.Error() {
			t.Errorf("shard %v: %v, want %v", run.stats, run.err, want)
		}
	}
}

// FuzzShards: for any input, the shards succeed exactly when the single
// run does, and then their parts and rejects concatenate to its output;
// when it fails, the earliest error the shards report is its error. n
// gives the shard count (its low three bits), the quote mode (bit 3) and
// how far before its offset the boundary search starts (bits 4 and 5).
func FuzzShards(f *testing.F) {
	for _, s := range []string{
		"mass,velocity\n1,2\n3,4\n5,6\n", "a,mass,velocity\n\"x\ny\",1,2\r\n\"p\nq\",3,4\n", "mass,velocity\n1,\"2\n",
		"mass,velocity\n1,x\n2,3\n", "2,3\n\n\n4,5\r", "m,mass,velocity\n\"\n\",1,2\n\"\n\",3,4\n\"\n\",5,6\n",
		"mass,velocity,n\n1,2,\"a\n7,8,9\n\"X\nz\",q\n",
		"mass,velocity,n\n1,2,ab\"c\n3,4,\"x\"y\n5,6, \"q\n7,8,\"9\"\"\n\"\n1,1,\"a\"b\nc\"\n",
		"n,mass,velocity\n\"a\"\r\"\n\",1,2\n5'10\",3,4\n\"x\"\"y\"z\",5,6\n",
	} {
		for _, n := range []uint8{3, 3 | 8, 7 | 16, 5 | 8 | 48} {
			f.Add([]byte(s), n, false)
			f.Add([]byte(s), n, true)
		}
	}
	f.Fuzz(func(t *testing.T, in []byte, n uint8, skip bool) {
		o := Options{MaxRecordBytes: 64, Workers: 1}
		if skip {
			o.OnError = OnErrorSkip
		}
		if n&8 != 0 {
			o.Quotes = QuotesLazy
		}
		defer func(old int64) { searchBehind = old }(searchBehind)
		searchBehind = []int64{1, 3, 20, 64 << 10}[n>>4&3]
		var want, wantRej bytes.Buffer
		so := o
		so.Rejects, so.NewRejectWriter = &wantRej, newCSVRejects
		wst, werr := Transform(context.Background(), &want, bytes.NewReader(in), so)
		shards := 1 + int(n)%8
		var got, gotRej bytes.Buffer
		var rows int64
		var first *ParseError
		failed := false
		for _, run := range runShards(in, shards, o) {
			var perr *ParseError
			if errors.As(run.err, &perr) && (first == nil || perr.Line < first.Line) {
				first = perr
			}
			failed = failed || run.err != nil
			got.Write(run.out)
			gotRej.Write(run.rejects)
			rows += run.stats.RowsIn
		}
		var wantPerr *ParseError
		switch {
		case werr == nil && failed:
			t.Fatalf("%d shards failed where the single run did not: %v", shards, first)
		case werr == nil:
			if !bytes.Equal(got.Bytes(), want.Bytes()) || !bytes.Equal(gotRej.Bytes(), wantRej.Bytes()) || rows != wst.RowsIn {
				t.Fatalf("%d shards: parts %q, want %q", shards, got.Bytes(), want.Bytes())
			}
		case !failed:
			t.Fatalf("%d shards succeeded where the single run failed: %v", shards, werr)
		case errors.As(werr, &wantPerr) && (first == nil || first.Error() != wantPerr.Error()):
			t.Fatalf("%d shards: first error %v, want %v", shards, first, werr)
		}
	})
}

// restoreSearchBehind lets a test set searchBehind, which small inputs
// need for the boundary search to start after their header.
func restoreSearchBehind(t *testing.T) {
	old := searchBehind
	t.Cleanup(func() { searchBehind = old })
}

// smallScanBlocks makes long scans read in small blocks, so that the
// tests' inputs take the concurrent path.
func smallScanBlocks(t *testing.T) {
	old := scanBlock
	scanBlock = 1000
	t.Cleanup(func() { scanBlock = old })
}

// memStore is a Store over one object in memory that counts the
// requests made of it, for the logic of objectReaderAt.
type memStore struct {
	data  []byte
	mu    sync.Mutex
	opens int
}

func (m *memStore) NewReader(_ context.Context, _ string, o ReadOptions) (io.ReadCloser, ObjectInfo, error) {
	m.mu.Lock()
	m.opens++
	m.mu.Unlock()
	end := int64(len(m.data))
	if o.Length > 0 {
		end = min(end, o.Offset+o.Length)
	}
	return io.NopCloser(bytes.NewReader(m.data[min(o.Offset, end):end])), ObjectInfo{Size: int64(len(m.data)), ETag: `"m"`}, nil
}

func (m *memStore) NewWriter(context.Context, string, WriteOptions) (io.WriteCloser, error) {
	return nil, errors.New("read only")
}

// TestObjectReaderAt reads an object in sequence, which takes a request
// per doubling window, and from concurrent goroutines at once.
func TestObjectReaderAt(t *testing.T) {
	data := make([]byte, 100<<20+17)
	rng := rand.New(rand.NewPCG(1, 1))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	m := &memStore{data: data}
	ra := &objectReaderAt{ctx: context.Background(), store: m, key: "k", size: int64(len(data))}
	var got bytes.Buffer
	if _, err := io.Copy(&got, io.NewSectionReader(ra, 0, ra.size)); err != nil || !bytes.Equal(got.Bytes(), data) {
		t.Fatalf("sequential read: %v", err)
	}
	if m.opens != 7 { // 1, 2, 4, ..., 32 MiB, then 64 MiB for the rest
		t.Errorf("%d requests for a sequential read, want 7", m.opens)
	}
	smallScanBlocks(t)
	scanBlock = 3 << 20
	got.Reset()
	err := scanRangeParallel(context.Background(), ra, 5, ra.size, func(b []byte) { got.Write(b) })
	if err != nil || !bytes.Equal(got.Bytes(), data[5:]) {
		t.Fatalf("concurrent read: %v", err)
	}
	ra.Close()
}
