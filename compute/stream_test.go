package compute

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
)

// randomCSV builds a valid CSV with a header and rows records, mixing
// quoted fields with delimiters, quotes, CR and newlines, CRLF and LF
// records, blank lines and records of very different sizes.
func randomCSV(r *rand.Rand, rows int) []byte {
	var b bytes.Buffer
	b.WriteString("id,note,mass,velocity\n")
	for i := range rows {
		fmt.Fprintf(&b, "%d,", i)
		switch r.IntN(6) {
		case 0:
			b.WriteString(`"a,b ""q"" ` + "\n\r\n" + `x"`)
		case 1:
			b.WriteString(strings.Repeat("z", r.IntN(3000)))
		case 2:
			b.WriteString(`""`)
		case 3:
			b.WriteString("lone\rcr")
		}
		fmt.Fprintf(&b, ",%d.%d,%de%d", r.IntN(10000), r.IntN(1000), r.IntN(2000)-1000, r.IntN(6)-3)
		if r.IntN(4) == 0 {
			b.WriteString("\r\n")
		} else {
			b.WriteString("\n")
		}
		if r.IntN(50) == 0 {
			b.WriteString("\n")
		}
	}
	return b.Bytes()
}

func mustTransform(t *testing.T, r io.Reader, o Options) ([]byte, Stats) {
	t.Helper()
	var out bytes.Buffer
	st, err := Transform(context.Background(), &out, r, o)
	if err != nil {
		t.Fatal(err)
	}
	return out.Bytes(), st
}

// TestStreamingReaders feeds the same input through readers that return
// one byte, half the request, or data with io.EOF, and through several
// worker counts: the output must not change.
func TestStreamingReaders(t *testing.T) {
	in := randomCSV(rand.New(rand.NewPCG(7, 8)), 3000)
	want, wst := mustTransform(t, bytes.NewReader(in), Options{Workers: 1})
	readers := map[string]func() io.Reader{
		"OneByte":  func() io.Reader { return iotest.OneByteReader(bytes.NewReader(in)) },
		"Half":     func() io.Reader { return iotest.HalfReader(bytes.NewReader(in)) },
		"DataErr":  func() io.Reader { return iotest.DataErrReader(bytes.NewReader(in)) },
		"Timeout1": func() io.Reader { return iotest.HalfReader(iotest.DataErrReader(bytes.NewReader(in))) },
	}
	for name, mk := range readers {
		for _, workers := range []int{1, 2, 5} {
			got, st := mustTransform(t, mk(), Options{Workers: workers})
			if !bytes.Equal(got, want) || st != wst {
				t.Errorf("%s reader, %d workers: output or stats differ (%+v vs %+v)", name, workers, st, wst)
			}
		}
	}
}

// TestChunkBoundaries crosses the chunk size with many record layouts, so
// records, quoted newlines and CRLF pairs straddle chunk boundaries.
func TestChunkBoundaries(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	for round := range 4 {
		in := randomCSV(r, 2000+round*1500)
		want, wst := mustTransform(t, iotest.OneByteReader(bytes.NewReader(in)), Options{Workers: 1})
		for _, workers := range []int{1, 2, 4} {
			got, st := mustTransform(t, bytes.NewReader(in), Options{Workers: workers})
			if !bytes.Equal(got, want) || st != wst {
				t.Fatalf("round %d, %d workers: output differs", round, workers)
			}
		}
		if wst.RowsOut != int64(2000+round*1500) {
			t.Fatalf("rows out %d", wst.RowsOut)
		}
	}
}

// TestLargeRecord accepts a record much larger than a chunk and refuses
// one over the limit.
func TestLargeRecord(t *testing.T) {
	big := strings.Repeat("x", 3*chunkSize)
	in := "note,mass,velocity\n\"" + big + "\",2,3\n" + big + ",1,1\n"
	got, _ := mustTransform(t, strings.NewReader(in), Options{Workers: 2})
	if want := "note,mass,velocity,momentum\n\"" + big + "\",2,3,6\n" + big + ",1,1,1\n"; string(got) != want {
		t.Fatal("large records not passed through")
	}
	for _, workers := range []int{1, 2} {
		_, err := Transform(context.Background(), io.Discard, strings.NewReader(in), Options{MaxRecordBytes: chunkSize, Workers: workers})
		var perr *ParseError
		if !errors.As(err, &perr) || !errors.Is(err, ErrRecordTooLarge) || perr.Line != 2 {
			t.Fatalf("err = %v, want record too large at line 2", err)
		}
	}
}

// endless yields a header, a few rows, then an unbounded stream of bytes.
type endless struct {
	prefix []byte
	fill   byte
	n      int64 // bytes left after prefix
}

func (e *endless) Read(p []byte) (int, error) {
	if len(e.prefix) > 0 {
		n := copy(p, e.prefix)
		e.prefix = e.prefix[n:]
		return n, nil
	}
	if e.n <= 0 {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), e.n))
	for i := range p[:n] {
		p[i] = e.fill
	}
	e.n -= int64(n)
	return n, nil
}

// TestUnterminatedQuoteInHugeInput reports an open quote at the line where
// it opened, reading the rest of a large stream without keeping it.
func TestUnterminatedQuoteInHugeInput(t *testing.T) {
	for _, workers := range []int{1, 2} {
		r := &endless{prefix: []byte("mass,velocity,note\n1,2,a\n1,2,\"open\nstill open\n"), fill: 'x', n: 200 << 20}
		_, err := Transform(context.Background(), io.Discard, r, Options{Workers: workers, MaxRecordBytes: 1 << 20})
		var perr *ParseError
		if !errors.As(err, &perr) || !errors.Is(err, ErrUnterminatedQuote) || perr.Line != 3 || perr.Column != "note" {
			t.Fatalf("err = %v, want an unterminated quote at line 3, column note", err)
		}
		if r.n != 0 {
			t.Fatalf("stopped reading %d bytes before the end", r.n)
		}
	}
	// After a byte order mark, the header's first field can be quoted.
	r := &endless{prefix: []byte("\xEF\xBB\xBF\"mass,velocity\n"), fill: 'x', n: 4 << 20}
	_, err := Transform(context.Background(), io.Discard, r, Options{MaxRecordBytes: 1 << 20})
	var perr *ParseError
	if !errors.As(err, &perr) || !errors.Is(err, ErrUnterminatedQuote) || perr.Line != 1 || perr.Column != "1" {
		t.Fatalf("err = %v, want an unterminated quote at line 1, column 1", err)
	}
	// A quote that does close, but too late, is a record too large.
	mr := io.MultiReader(strings.NewReader("mass,velocity,note\n1,2,\""), &endless{fill: 'y', n: 3 << 20}, strings.NewReader("\"\n"))
	_, err = Transform(context.Background(), io.Discard, mr, Options{MaxRecordBytes: 1 << 20})
	if !errors.Is(err, ErrRecordTooLarge) {
		t.Fatalf("err = %v, want record too large", err)
	}
	// So is a huge unquoted line.
	_, err = Transform(context.Background(), io.Discard, &endless{prefix: []byte("mass,velocity\n"), fill: '7', n: 8 << 20}, Options{MaxRecordBytes: 1 << 20})
	if !errors.Is(err, ErrRecordTooLarge) {
		t.Fatalf("err = %v, want record too large", err)
	}
}

func TestReadError(t *testing.T) {
	boom := errors.New("boom")
	for _, workers := range []int{1, 2} {
		r := io.MultiReader(strings.NewReader("mass,velocity\n1,2\n"), iotest.ErrReader(boom))
		_, err := Transform(context.Background(), io.Discard, r, Options{Workers: workers})
		if !errors.Is(err, boom) {
			t.Errorf("err = %v, want %v", err, boom)
		}
	}
}

type failingWriter struct{ after int }

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.after <= 0 {
		return 0, errors.New("disk full")
	}
	w.after--
	return len(p), nil
}

func TestWriteError(t *testing.T) {
	in := randomCSV(rand.New(rand.NewPCG(1, 1)), 20000)
	for _, workers := range []int{1, 2} {
		_, err := Transform(context.Background(), &failingWriter{after: 2}, bytes.NewReader(in), Options{Workers: workers})
		if err == nil || err.Error() != "disk full" {
			t.Errorf("err = %v, want disk full", err)
		}
	}
}

// TestCancel stops at once on a done context, even on endless input.
func TestCancel(t *testing.T) {
	for _, workers := range []int{1, 2} {
		ctx, cancel := context.WithCancel(context.Background())
		r := &endless{prefix: []byte("mass,velocity\n"), fill: '\n', n: 1 << 40}
		cancel()
		_, err := Transform(ctx, io.Discard, r, Options{Workers: workers})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
	}
}

// TestCancelMidStream cancels while rows flow and expects the run to stop.
func TestCancelMidStream(t *testing.T) {
	for _, workers := range []int{1, 2} {
		ctx, cancel := context.WithCancel(context.Background())
		pr, pw := io.Pipe()
		go func() {
			pw.Write([]byte("mass,velocity\n"))
			for i := 0; ; i++ {
				if _, err := pw.Write(bytes.Repeat([]byte("1,2\n"), 1<<16)); err != nil {
					return
				}
				if i == 10 {
					cancel()
				}
			}
		}()
		_, err := Transform(ctx, io.Discard, pr, Options{Workers: workers})
		pr.Close()
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
	}
}

// rowSource generates n valid rows on the fly, so a test can stream far
// more data than it keeps.
type rowSource struct {
	n, i int
	buf  []byte
}

func (s *rowSource) Read(p []byte) (int, error) {
	for len(s.buf) < len(p) && s.i < s.n {
		if s.i == 0 {
			s.buf = append(s.buf, "id,mass,velocity\n"...)
		}
		s.buf = strconv.AppendInt(s.buf, int64(s.i), 10)
		s.buf = append(s.buf, ',')
		s.buf = strconv.AppendInt(s.buf, int64(s.i%9973), 10)
		s.buf = append(s.buf, '.', byte('0'+s.i%10), ',', '-')
		s.buf = strconv.AppendInt(s.buf, int64(s.i%29989), 10)
		s.buf = append(s.buf, ".5\n"...)
		s.i++
	}
	if len(s.buf) == 0 {
		return 0, io.EOF
	}
	n := copy(p, s.buf)
	s.buf = s.buf[:copy(s.buf, s.buf[n:])]
	return n, nil
}

// TestConstantMemory streams about 250 MB through the kernel and checks
// that it allocated only a few megabytes in all: buffers are reused, so
// memory does not grow with the input.
func TestConstantMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 250 MB")
	}
	for _, workers := range []int{1, 4} {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		st, err := Transform(context.Background(), io.Discard, &rowSource{n: 10_000_000}, Options{Workers: workers})
		runtime.ReadMemStats(&after)
		if err != nil || st.RowsOut != 10_000_000 {
			t.Fatalf("%v, %+v", err, st)
		}
		allocated := after.TotalAlloc - before.TotalAlloc
		t.Logf("%d workers: %d MB in, %.1f MB allocated", workers, st.BytesIn>>20, float64(allocated)/(1<<20))
		if allocated > 32<<20 {
			t.Errorf("%d workers: allocated %d MB for %d MB of input", workers, allocated>>20, st.BytesIn>>20)
		}
	}
}

// TestScannerAgreesWithParser: on random bytes rich in quotes, delimiters
// and line breaks, the records the parser reads are those the scanner
// (which the splitter and the shards use) finds, in both modes.
func TestScannerAgreesWithParser(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	alphabet := []byte("\"\",,\n\r a")
	for trial := range 20000 {
		in := make([]byte, r.IntN(40))
		for i := range in {
			in[i] = alphabet[r.IntN(len(alphabet))]
		}
		for _, quotes := range []QuoteMode{QuotesStrict, QuotesLazy} {
			o, _ := Options{Quotes: quotes, OnError: OnErrorSkip, Rejects: io.Discard, NewRejectWriter: newCSVRejects}.withDefaults()
			spec := newRowSpec(o)
			spec.mass, spec.vel, spec.fields = 0, 1, 1000 // every record is rejected, with its bytes
			res := chunkResult{out: make([]byte, 0, 256)} // no chunk-sized buffer for each
			spec.process(in, false, &res)
			var got []string
			for _, rj := range res.rejects {
				got = append(got, rj.Record)
			}
			var want []string
			sc := newScanner(o)
			for pos := 0; pos < len(in); {
				k := sc.first(in[pos:])
				end := len(in)
				if k >= 0 {
					end = pos + k + 1
				}
				if rec := in[pos:end]; string(rec) != "\n" && string(rec) != "\r\n" {
					rec = bytes.TrimSuffix(bytes.TrimSuffix(rec, nl), []byte{'\r'})
					want = append(want, string(rec))
				}
				pos = end
			}
			if res.err != nil { // a quote open at the end: the last record is not read
				want = want[:len(want)-1]
			}
			if !slices.Equal(got, want) {
				t.Fatalf("trial %d, %v: %q: the parser reads records %q, the scanner finds %q (%v)", trial, quotes, in, got, want, res.err)
			}
		}
	}
}
