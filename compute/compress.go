package compute

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Compression is how a stream of CSV is compressed. The zero value is
// plain CSV.
type Compression string

const (
	Uncompressed Compression = ""
	Gzip         Compression = "gzip" // RFC 1952, one member or several
	Zstd         Compression = "zstd" // RFC 8878, one frame or several
	// SameAsInput, as Options.Compress, compresses the output as the
	// input was: what the event-driven modes do by default.
	SameAsInput Compression = "input"
)

// ParseCompression reads a compression as flags spell it: none, gzip,
// zstd, or input (the input's own).
func ParseCompression(s string) (Compression, error) {
	switch s {
	case "none":
		return Uncompressed, nil
	case "gzip", "zstd", "input":
		return Compression(s), nil
	}
	return Uncompressed, errors.New("want none, gzip, zstd or input")
}

func (c Compression) String() string {
	if c == Uncompressed {
		return "none"
	}
	return string(c)
}

// Ext is the file name suffix of c: ".gz", ".zst", or "" for plain CSV.
func (c Compression) Ext() string {
	switch c {
	case Gzip:
		return ".gz"
	case Zstd:
		return ".zst"
	}
	return ""
}

// ContentEncoding is the HTTP Content-Encoding of c, "" for plain CSV.
func (c Compression) ContentEncoding() string {
	if c == Gzip || c == Zstd {
		return string(c)
	}
	return ""
}

// CompressionOfName is the compression a name's suffix announces (.gz,
// .zst, in any case), Uncompressed for any other.
func CompressionOfName(name string) Compression {
	switch {
	case hasSuffixFold(name, ".gz"):
		return Gzip
	case hasSuffixFold(name, ".zst"):
		return Zstd
	}
	return Uncompressed
}

// NameFor returns name with its compression suffix (.gz, .zst) swapped
// for c's: a.csv.gz gives a.csv for Uncompressed, a.csv.zst for Zstd.
func NameFor(name string, c Compression) string {
	return name[:len(name)-len(CompressionOfName(name).Ext())] + c.Ext()
}

func hasSuffixFold(s, suffix string) bool {
	return len(s) >= len(suffix) && strings.EqualFold(s[len(s)-len(suffix):], suffix)
}

// Magic numbers, the first bytes of a stream.
var (
	gzipMagic = []byte{0x1f, 0x8b}
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// DetectCompression tells the compression of a stream from its first
// bytes (four suffice), never from a name.
func DetectCompression(head []byte) Compression {
	switch {
	case bytes.HasPrefix(head, gzipMagic):
		return Gzip
	case bytes.HasPrefix(head, zstdMagic):
		return Zstd
	}
	return Uncompressed
}

// A Codec decompresses and compresses streams in the formats above.
// compute reads and writes through one, so that it needs no library of
// its own; the binary gives it adapters/codec's.
type Codec interface {
	// NewReader returns a reader of r's decompressed bytes. Closing it
	// frees its resources, not r.
	NewReader(r io.Reader, c Compression) (io.ReadCloser, error)
	// NewWriter returns a writer that compresses into w; Close ends the
	// stream, not w. The same bytes written give the same stream.
	NewWriter(w io.Writer, c Compression) (io.WriteCloser, error)
}

// Compression errors: the input's fault, structural (they end the run in
// every mode), as a *ParseError at the line of the decompressed CSV where
// reading stopped.
var (
	// ErrCorruptStream: the compressed stream is truncated or corrupt.
	ErrCorruptStream = errors.New("compressed stream is corrupt or truncated")
	// ErrNoCodec: the input is compressed and Options.Codec is nil.
	ErrNoCodec = errors.New("compressed input, and no decompressor configured")
	// ErrCompressedShards: a compressed input cannot be cut into byte
	// ranges, so it cannot be run as shards.
	ErrCompressedShards = errors.New("a compressed input cannot be split into shards")
)

// peeker returns r as a *bufio.Reader, to look at its first bytes
// without consuming them; one already is returned as it is.
func peeker(r io.Reader) *bufio.Reader {
	if br, ok := r.(*bufio.Reader); ok && br.Size() >= len(zstdMagic) {
		return br
	}
	return bufio.NewReaderSize(r, 64<<10)
}

// Detect looks at the first bytes of r and returns a reader of all of
// them, and the compression they announce. An error is r's own.
func Detect(r io.Reader) (io.Reader, Compression, error) {
	br := peeker(r)
	head, err := br.Peek(len(zstdMagic))
	if err != nil && err != io.EOF && err != bufio.ErrBufferFull {
		return br, Uncompressed, err
	}
	return br, DetectCompression(head), nil
}

// decompress returns a reader of r's CSV: r itself when it is plain, else
// codec's decoder, whose errors become a *ParseError with ErrCorruptStream
// (r's own errors, a network's, pass through as they are). close frees
// the decoder.
func decompress(r io.Reader, codec Codec) (csv io.Reader, c Compression, close func(), err error) {
	r, c, err = Detect(r)
	if err != nil || c == Uncompressed {
		return r, c, func() {}, err
	}
	if codec == nil {
		return nil, c, nil, &ParseError{Line: 1, Err: fmt.Errorf("%w (%s)", ErrNoCodec, c)}
	}
	src := &sourceReader{r: r}
	dec, err := codec.NewReader(src, c)
	if err != nil {
		return nil, c, nil, corrupt(src, c, 0, err)
	}
	ahead := newAheadReader(&decodeReader{dec: dec, src: src, c: c}, dec.Close)
	return ahead, c, ahead.close, nil
}

// Decoding runs ahead of the kernel by up to aheadBlocks blocks of
// aheadBlockSize bytes, on a goroutine of its own, as zcat in a pipe
// would: the kernel's splitter does not wait for the decoder.
const (
	aheadBlocks    = 4
	aheadBlockSize = 256 << 10
)

// aheadReader reads r on its own goroutine into a few blocks. The
// goroutine owns r: once close is called, it frees r (done) when its
// read in progress returns, so that close never waits on a read that
// may block (a pipe, a stalled network).
type aheadReader struct {
	full  chan aheadBlock
	free  chan []byte
	stop  chan struct{}
	block []byte // the block being read, whole
	cur   []byte // what is left of it
	err   error
}

type aheadBlock struct {
	b   []byte
	err error
}

func newAheadReader(r io.Reader, done func() error) *aheadReader {
	a := &aheadReader{full: make(chan aheadBlock, aheadBlocks), free: make(chan []byte, aheadBlocks), stop: make(chan struct{})}
	for range aheadBlocks {
		a.free <- make([]byte, aheadBlockSize)
	}
	go func() {
		defer done()
		for {
			var b []byte
			select {
			case b = <-a.free:
			case <-a.stop:
				return
			}
			n, err := 0, error(nil)
			for n < len(b) && err == nil {
				var m int
				m, err = r.Read(b[n:])
				n += m
			}
			select {
			case a.full <- aheadBlock{b[:n], err}:
			case <-a.stop:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return a
}

func (a *aheadReader) Read(p []byte) (int, error) {
	for len(a.cur) == 0 {
		if a.err != nil {
			return 0, a.err
		}
		if a.block != nil {
			a.free <- a.block[:cap(a.block)]
			a.block = nil
		}
		blk := <-a.full
		a.block, a.cur, a.err = blk.b, blk.b, blk.err
		if len(a.cur) == 0 && a.err == nil {
			a.err = io.ErrNoProgress
		}
	}
	n := copy(p, a.cur)
	a.cur = a.cur[n:]
	return n, nil
}

// close stops the goroutine; it frees r on its way out.
func (a *aheadReader) close() { close(a.stop) }

// sourceReader keeps the last error of the compressed bytes' own reader,
// to tell it from the decoder's.
type sourceReader struct {
	r   io.Reader
	err error
}

func (s *sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		s.err = err
	}
	return n, err
}

// decodeReader counts the lines it passes, to place a broken stream.
type decodeReader struct {
	dec   io.Reader
	src   *sourceReader
	c     Compression
	lines int64
}

func (d *decodeReader) Read(p []byte) (int, error) {
	n, err := d.dec.Read(p)
	d.lines += int64(bytes.Count(p[:n], newline))
	if err != nil && err != io.EOF {
		err = corrupt(d.src, d.c, d.lines, err)
	}
	return n, err
}

var newline = []byte{'\n'}

// corrupt is a decoder's error as the input's fault, or the source's
// error when the source failed.
func corrupt(src *sourceReader, c Compression, lines int64, err error) error {
	if src.err != nil {
		return src.err
	}
	return &ParseError{Line: lines + 1, Err: &streamError{c: c, err: err}}
}

// streamError is ErrCorruptStream with the format and the decoder's words.
type streamError struct {
	c   Compression
	err error
}

func (e *streamError) Error() string {
	return fmt.Sprintf("%s %s: %v", e.c, ErrCorruptStream, e.err)
}

func (e *streamError) Is(target error) bool { return target == ErrCorruptStream }
func (e *streamError) Unwrap() error        { return e.err }

// compress wraps w in codec's encoder for c; plain output is w itself.
// finish ends the stream: call it once, after the last write.
func compress(w io.Writer, codec Codec, c Compression) (out io.Writer, finish func() error, err error) {
	if c == Uncompressed {
		return w, func() error { return nil }, nil
	}
	if codec == nil {
		return nil, nil, fmt.Errorf("compute: output compression %s needs Options.Codec", c)
	}
	enc, err := codec.NewWriter(w, c)
	if err != nil {
		return nil, nil, err
	}
	return enc, enc.Close, nil
}
