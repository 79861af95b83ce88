package codec

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/momentum-run/momentum/adapters/rejects"
	"github.com/momentum-run/momentum/compute"
)

var update = flag.Bool("update", false, "rewrite the compressed golden files in testdata/")

// compressed returns b compressed as c by the codec.
func compressed(t testing.TB, b []byte, c compute.Compression) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := Codec{}.NewWriter(&buf, c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// run is Transform with the codec; it returns the output or the error text.
func run(in []byte, o compute.Options) ([]byte, error) {
	o.Codec = Codec{}
	var out bytes.Buffer
	_, err := compute.Transform(context.Background(), &out, bytes.NewReader(in), o)
	return out.Bytes(), err
}

// corpus is every CSV of the repository's testdata, valid and not, and
// options that shape the output.
func corpus(t *testing.T) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	for _, pattern := range []string{"../../testdata/*.csv", "../../testdata/bad/*.csv"} {
		names, _ := filepath.Glob(pattern)
		for _, name := range names {
			b, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			files[name] = b
		}
	}
	if len(files) < 5 {
		t.Fatalf("corpus: only %d files", len(files))
	}
	return files
}

// TestCorpusCompressed: each file of the corpus gives the same output, or
// the same error at the same line, read plain, as gzip and as zstd.
func TestCorpusCompressed(t *testing.T) {
	options := []compute.Options{{}, {FixedDecimals: true, Decimals: 3}, {Quotes: compute.QuotesLazy}, {Workers: 1}}
	for name, plain := range corpus(t) {
		for _, o := range options {
			want, wantErr := run(plain, o)
			for _, c := range []compute.Compression{compute.Gzip, compute.Zstd} {
				got, err := run(compressed(t, plain, c), o)
				if !bytes.Equal(got, want) || (err == nil) != (wantErr == nil) || err != nil && err.Error() != wantErr.Error() {
					t.Errorf("%s as %s, %+v: got %q, %v; plain gave %q, %v", name, c, o, got, err, want, wantErr)
				}
			}
		}
	}
}

// TestOutputCompressed: the output compressed as asked decompresses to
// the plain output; SameAsInput follows the input.
func TestOutputCompressed(t *testing.T) {
	plain, err := os.ReadFile("../../testdata/particles.csv")
	if err != nil {
		t.Fatal(err)
	}
	want, err := run(plain, compute.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		in       compute.Compression
		compress compute.Compression
		want     compute.Compression
	}{
		{compute.Uncompressed, compute.Gzip, compute.Gzip},
		{compute.Uncompressed, compute.Zstd, compute.Zstd},
		{compute.Gzip, compute.SameAsInput, compute.Gzip},
		{compute.Zstd, compute.SameAsInput, compute.Zstd},
		{compute.Uncompressed, compute.SameAsInput, compute.Uncompressed},
		{compute.Zstd, compute.Uncompressed, compute.Uncompressed},
	} {
		in := plain
		if tc.in != compute.Uncompressed {
			in = compressed(t, plain, tc.in)
		}
		out, err := run(in, compute.Options{Compress: tc.compress})
		if err != nil {
			t.Fatal(err)
		}
		if got := compute.DetectCompression(out); got != tc.want {
			t.Errorf("%s input, Compress %s: output is %s, want %s", tc.in, tc.compress, got, tc.want)
		}
		if dec := decompressAll(t, out); !bytes.Equal(dec, want) {
			t.Errorf("%s input, Compress %s: output decompresses to %q, want %q", tc.in, tc.compress, dec, want)
		}
	}
}

func decompressAll(t *testing.T, b []byte) []byte {
	t.Helper()
	c := compute.DetectCompression(b)
	if c == compute.Uncompressed {
		return b
	}
	r, err := Codec{}.NewReader(bytes.NewReader(b), c)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestDeterministic: the compressed output depends only on the rows, not
// on the workers or how the writes fall, and matches the bytes in
// testdata, which the portable code (-tags noasm, as on other platforms)
// must write too.
func TestDeterministic(t *testing.T) {
	plain, err := os.ReadFile("../../testdata/particles.csv")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []compute.Compression{compute.Gzip, compute.Zstd} {
		var first []byte
		for _, workers := range []int{1, 2, 8} {
			out, err := run(plain, compute.Options{Compress: c, Workers: workers})
			if err != nil {
				t.Fatal(err)
			}
			if first == nil {
				first = out
			} else if !bytes.Equal(out, first) {
				t.Errorf("%s: %d workers write other bytes", c, workers)
			}
		}
		// Byte by byte, the same stream.
		var buf bytes.Buffer
		w, _ := Codec{}.NewWriter(&buf, c)
		for _, b := range decompressAll(t, first) {
			w.Write([]byte{b})
		}
		w.Close()
		if !bytes.Equal(buf.Bytes(), first) {
			t.Errorf("%s: written a byte at a time, other bytes", c)
		}
		if c == compute.Gzip && (first[3] != 0 || !bytes.Equal(first[4:8], []byte{0, 0, 0, 0})) {
			t.Errorf("gzip header has flags %#x, time % x: want neither name nor time", first[3], first[4:8])
		}
		golden := filepath.Join("testdata", "particles.golden"+c.Ext())
		if *update {
			if err := os.WriteFile(golden, first, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(first, want) {
			t.Errorf("%s: output differs from %s", c, golden)
		}
	}
}

// TestMultiMember: gzip members and zstd frames one after the other are
// one stream, as cat a.gz b.gz makes.
func TestMultiMember(t *testing.T) {
	head, rows := []byte("mass,velocity\n1,2\n"), []byte("3,4\n5,6\n")
	for _, c := range []compute.Compression{compute.Gzip, compute.Zstd} {
		in := append(compressed(t, head, c), compressed(t, rows, c)...)
		in = append(in, compressed(t, rows, c)...)
		out, err := run(in, compute.Options{})
		if err != nil {
			t.Fatalf("%s: %v", c, err)
		}
		if want := "mass,velocity,momentum\n1,2,2\n3,4,12\n5,6,30\n3,4,12\n5,6,30\n"; string(out) != want {
			t.Errorf("%s: got %q, want %q", c, out, want)
		}
	}
	// As gzip(1) writes them, with a name and a time in the header.
	var buf bytes.Buffer
	for _, part := range [][]byte{head, rows} {
		w := gzip.NewWriter(&buf)
		w.Name, w.ModTime = "a.csv", time.Unix(1e9, 0)
		w.Write(part)
		w.Close()
	}
	if out, err := run(buf.Bytes(), compute.Options{}); err != nil || string(out) != "mass,velocity,momentum\n1,2,2\n3,4,12\n5,6,30\n" {
		t.Errorf("gzip with names: got %q, %v", out, err)
	}
}

// TestBrokenStream: a truncated or corrupt stream is a structural
// ParseError at the line of the CSV where it broke, in either mode.
func TestBrokenStream(t *testing.T) {
	var plain bytes.Buffer
	plain.WriteString("mass,velocity\n")
	for i := 0; i < 200000; i++ {
		plain.WriteString("1.5,2.25\n")
	}
	for _, c := range []compute.Compression{compute.Gzip, compute.Zstd} {
		full := compressed(t, plain.Bytes(), c)
		corruptMid := bytes.Clone(full)
		for i := len(full) / 2; i < len(full)/2+64; i++ {
			corruptMid[i] ^= 0x5a
		}
		corruptEnd := bytes.Clone(full)
		corruptEnd[len(full)-2] ^= 0xff // the checksum
		for name, in := range map[string][]byte{
			"truncated header": full[:6],
			"truncated":        full[:len(full)/2],
			"no trailer":       full[:len(full)-4],
			"corrupt":          corruptMid,
			"bad checksum":     corruptEnd,
		} {
			for _, mode := range []compute.ErrorMode{compute.OnErrorFail, compute.OnErrorSkip} {
				_, err := run(in, compute.Options{OnError: mode, Rejects: io.Discard, NewRejectWriter: rejects.NewWriter})
				var perr *compute.ParseError
				if !errors.As(err, &perr) || !errors.Is(err, compute.ErrCorruptStream) || !compute.IsStructural(err) {
					t.Errorf("%s %s, %v: got %v, want a ParseError of ErrCorruptStream", c, name, mode, err)
					continue
				}
				if perr.Line < 1 || perr.Line > 200002 || !strings.Contains(err.Error(), string(c)) {
					t.Errorf("%s %s: %v: line or format wrong", c, name, err)
				}
			}
		}
	}
}

// TestSourceError: the compressed bytes' own read error (a network's)
// stays what it was, worth a retry, not the input's fault.
func TestSourceError(t *testing.T) {
	cut := errors.New("connection reset")
	for _, c := range []compute.Compression{compute.Gzip, compute.Zstd} {
		full := compressed(t, bytes.Repeat([]byte("1,2\n"), 100000), c)
		r := io.MultiReader(bytes.NewReader(full[:len(full)/2]), errReader{cut})
		_, err := compute.Transform(context.Background(), io.Discard, r, compute.Options{Codec: Codec{}})
		var perr *compute.ParseError
		if !errors.Is(err, cut) || errors.As(err, &perr) {
			t.Errorf("%s: got %v, want the source's error", c, err)
		}
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

// TestNoCodec: without a codec, compressed input is refused, by name.
func TestNoCodec(t *testing.T) {
	in := compressed(t, []byte("mass,velocity\n1,2\n"), compute.Zstd)
	_, err := compute.Transform(context.Background(), io.Discard, bytes.NewReader(in), compute.Options{})
	if !errors.Is(err, compute.ErrNoCodec) {
		t.Errorf("got %v, want ErrNoCodec", err)
	}
}

// TestZstdWindowLimit: a frame that asks for a window over MaxWindow is
// refused before any is allocated.
func TestZstdWindowLimit(t *testing.T) {
	var buf bytes.Buffer
	w, err := zstd.NewWriter(&buf, zstd.WithWindowSize(2*MaxWindow), zstd.WithEncoderConcurrency(1), zstd.WithSingleSegment(false))
	if err != nil {
		t.Fatal(err)
	}
	w.Write(bytes.Repeat([]byte("1,2\n"), 1<<20))
	w.Close()
	_, err = run(buf.Bytes(), compute.Options{})
	if !errors.Is(err, compute.ErrCorruptStream) {
		t.Errorf("got %v, want the window refused", err)
	}
}

// bomb is an endless reader of one compressed member repeated: a stream
// that decompresses to far more than memory.
type bomb struct {
	member []byte
	left   int // members
	r      bytes.Reader
}

func (b *bomb) Read(p []byte) (int, error) {
	if b.r.Len() == 0 {
		if b.left == 0 {
			return 0, io.EOF
		}
		b.left--
		b.r.Reset(b.member)
	}
	return b.r.Read(p)
}

// peakHeap samples the heap until stop is called, and returns its peak.
func peakHeap() (stop func() uint64) {
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	var peak uint64
	done, finished := make(chan struct{}), make(chan struct{})
	var once sync.Once
	go func() {
		defer close(finished)
		for {
			metrics.Read(sample)
			peak = max(peak, sample[0].Value.Uint64())
			select {
			case <-done:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	return func() uint64 {
		once.Do(func() { close(done) })
		<-finished
		return peak
	}
}

// heapPeak runs f and returns the heap's peak meanwhile.
func heapPeak(f func()) uint64 {
	runtime.GC()
	stop := peakHeap()
	f()
	return stop()
}

// zeros is an endless reader of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// TestBomb: 10 GiB of zeros, compressed to a few MiB, is one huge record
// with no line break: --max-record stops it, as it stops the same bytes
// read plain, holding no more memory than they do.
func TestBomb(t *testing.T) {
	o := compute.Options{Codec: Codec{}, MaxRecordBytes: 4 << 20}
	var plainErr error
	plain := heapPeak(func() {
		_, plainErr = compute.Transform(context.Background(), io.Discard, io.LimitReader(zeros{}, 10<<30), o)
	})
	if !errors.Is(plainErr, compute.ErrRecordTooLarge) {
		t.Fatalf("plain: got %v, want ErrRecordTooLarge", plainErr)
	}
	for _, c := range []compute.Compression{compute.Gzip, compute.Zstd} {
		member := compressed(t, make([]byte, 1<<20), c)
		var st compute.Stats
		var err error
		peak := heapPeak(func() {
			st, err = compute.Transform(context.Background(), io.Discard, &bomb{member: member, left: 10 << 10}, o)
		})
		if !errors.Is(err, compute.ErrRecordTooLarge) {
			t.Errorf("%s: got %v, want ErrRecordTooLarge", c, err)
		}
		if peak > plain+32<<20 {
			t.Errorf("%s: heap peaked at %d MiB, plain zeros at %d MiB", c, peak>>20, plain>>20)
		}
		t.Logf("%s: %d-byte members, stopped after %d bytes, heap peak %d MiB (plain %d MiB)", c, len(member), st.BytesIn, peak>>20, plain>>20)
	}
}

// TestBombOfRows: rows that decompress to many times their size are read
// through at the memory of the same rows read plain.
func TestBombOfRows(t *testing.T) {
	const members = 96 // MiB
	rows := bytes.Repeat([]byte("1.5,2\n"), (1<<20)/6)
	header := []byte("mass,velocity\n")
	o := compute.Options{Codec: Codec{}}
	var plainErr error
	plain := heapPeak(func() {
		in := io.MultiReader(bytes.NewReader(header), &bomb{member: rows, left: members})
		_, plainErr = compute.Transform(context.Background(), io.Discard, in, o)
	})
	if plainErr != nil {
		t.Fatal(plainErr)
	}
	for _, c := range []compute.Compression{compute.Gzip, compute.Zstd} {
		in := io.MultiReader(bytes.NewReader(compressed(t, header, c)), &bomb{member: compressed(t, rows, c), left: members})
		var st compute.Stats
		var err error
		peak := heapPeak(func() { st, err = compute.Transform(context.Background(), io.Discard, in, o) })
		if err != nil {
			t.Fatal(err)
		}
		if want := int64(members * ((1 << 20) / 6)); st.RowsOut != want {
			t.Errorf("%s: %d rows, want %d", c, st.RowsOut, want)
		}
		if peak > plain+32<<20 {
			t.Errorf("%s: heap peaked at %d MiB reading %d MiB, plain at %d MiB", c, peak>>20, st.BytesIn>>20, plain>>20)
		}
		t.Logf("%s: %d MiB read, heap peak %d MiB (plain %d MiB)", c, st.BytesIn>>20, peak>>20, plain>>20)
	}
}

// benchRows is about 32 MiB of id,mass,velocity rows, as the bench
// harness makes them: varied numbers, so that compression is realistic.
func benchRows() []byte {
	var b bytes.Buffer
	b.WriteString("id,mass,velocity\n")
	x := uint64(88172645463325252)
	for i := 0; b.Len() < 32<<20; i++ {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		fmt.Fprintf(&b, "%d,%d.%03d,%d.%04d\n", i, x%1000, (x>>10)%1000, (x>>20)%100, (x>>30)%10000)
	}
	return b.Bytes()
}

// BenchmarkTransform is the kernel on the same rows read plain, as gzip
// and as zstd: b.SetBytes counts the CSV bytes, so the MB/s compare the
// cost of decompression directly.
func BenchmarkTransform(b *testing.B) {
	plain := benchRows()
	for _, c := range []compute.Compression{compute.Uncompressed, compute.Gzip, compute.Zstd} {
		in := plain
		if c != compute.Uncompressed {
			in = compressed(b, plain, c)
		}
		b.Run(c.String(), func(b *testing.B) {
			b.SetBytes(int64(len(plain)))
			b.ReportAllocs()
			var rows int64
			for b.Loop() {
				st, err := compute.Transform(context.Background(), io.Discard, bytes.NewReader(in), compute.Options{Codec: Codec{}})
				if err != nil {
					b.Fatal(err)
				}
				rows += st.RowsOut
			}
			b.ReportMetric(float64(rows)/b.Elapsed().Seconds(), "rows/s")
			b.ReportMetric(float64(len(in))/float64(len(plain)), "ratio")
		})
	}
}

// BenchmarkDecompress is decompression alone, for comparison.
func BenchmarkDecompress(b *testing.B) {
	plain := benchRows()
	for _, c := range []compute.Compression{compute.Gzip, compute.Zstd} {
		in := compressed(b, plain, c)
		b.Run(c.String(), func(b *testing.B) {
			b.SetBytes(int64(len(plain)))
			for b.Loop() {
				r, err := Codec{}.NewReader(bytes.NewReader(in), c)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.Copy(io.Discard, r); err != nil {
					b.Fatal(err)
				}
				r.Close()
			}
		})
	}
}

// blockingReader gives its bytes, then blocks until released.
type blockingReader struct {
	r       io.Reader
	release chan struct{}
}

func (b *blockingReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.EOF {
		<-b.release
		return 0, errors.New("closed")
	}
	return n, err
}

// TestStopWhileReadBlocks: a run that ends (here at a bad header) while
// the decoder waits on its source returns at once; the decoder is freed
// when the source lets go.
func TestStopWhileReadBlocks(t *testing.T) {
	rows := append([]byte("no such columns\n"), bytes.Repeat([]byte("1,2\n"), 1<<20)...)
	for _, c := range []compute.Compression{compute.Gzip, compute.Zstd} {
		// Most of a stream, then a source that waits.
		whole := compressed(t, rows, c)
		src := &blockingReader{r: bytes.NewReader(whole[:len(whole)/2]), release: make(chan struct{})}
		_, err := compute.Transform(context.Background(), io.Discard, src, compute.Options{Codec: Codec{}})
		close(src.release)
		if !errors.Is(err, compute.ErrMissingColumn) {
			t.Errorf("%s: got %v, want ErrMissingColumn", c, err)
		}
	}
}
