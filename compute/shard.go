package compute

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"strconv"
	"strings"
)

// A Shard is one of Count parts of an input, numbered from 0. Shard I owns
// the records that start in bytes [I·size/Count, (I+1)·size/Count) of the
// input, so Count tasks can each process their part of one large object
// and the parts, concatenated in order, are the output of a single run.
type Shard struct {
	Index, Count int
}

// MaxShards bounds Count; part names have five digits.
const MaxShards = 100000

// ParseShard parses "I/N", as in --shard 3/16.
func ParseShard(s string) (Shard, error) {
	i, n, ok := strings.Cut(s, "/")
	if !ok {
		return Shard{}, fmt.Errorf("shard %q: want INDEX/COUNT, such as 0/4", s)
	}
	idx, err1 := strconv.Atoi(i)
	cnt, err2 := strconv.Atoi(n)
	if err1 != nil || err2 != nil {
		return Shard{}, fmt.Errorf("shard %q: want INDEX/COUNT, such as 0/4", s)
	}
	sh := Shard{Index: idx, Count: cnt}
	return sh, sh.Check()
}

// Check reports whether the shard is well formed.
func (s Shard) Check() error {
	if s.Count < 1 || s.Count > MaxShards {
		return fmt.Errorf("shard count %d out of range 1..%d", s.Count, MaxShards)
	}
	if s.Index < 0 || s.Index >= s.Count {
		return fmt.Errorf("shard index %d out of range 0..%d", s.Index, s.Count-1)
	}
	return nil
}

func (s Shard) String() string { return strconv.Itoa(s.Index) + "/" + strconv.Itoa(s.Count) }

// Nominal returns the byte range [start, end) of a size-byte input in
// which the shard's records start.
func (s Shard) Nominal(size int64) (start, end int64) {
	return mulDiv(size, s.Index, s.Count), mulDiv(size, s.Index+1, s.Count)
}

// mulDiv returns size·i/n without overflow.
func mulDiv(size int64, i, n int) int64 {
	hi, lo := bits.Mul64(uint64(size), uint64(i))
	q, _ := bits.Div64(hi, lo, uint64(n))
	return int64(q)
}

// ShardStats describe the run of one shard.
type ShardStats struct {
	Stats
	// Start and End delimit the bytes of the input whose records the
	// shard processed: consecutive shards meet exactly, the first starts
	// after the header and the last ends at the end of the input.
	Start, End int64
}

// TransformShard is Transform for one shard of an input of size bytes
// read through r. It reads the header from the start of the input, so
// every shard maps columns alike, but writes it only in shard 0; then it
// processes the records that start in the shard's nominal range, reading
// past its end only to finish the last one. Line numbers in errors and
// rejects are those of the whole input.
//
// Quoted fields may hold newlines, so a newline found at an arbitrary
// offset need not end a record. A shard's first record boundary is found
// by reading ahead under both hypotheses (inside or outside quotes) until
// the CSV rules rule one out; when neither is ruled out within twice
// MaxRecordBytes, the quote parity of everything before the offset
// decides. The shard before checks the boundary as it reaches it, so a
// misjudged boundary, possible only in invalid input, fails the run
// rather than splitting or repeating a record.
func TransformShard(ctx context.Context, w io.Writer, r io.ReaderAt, size int64, s Shard, o Options) (ShardStats, error) {
	if err := s.Check(); err != nil {
		return ShardStats{}, fmt.Errorf("compute: %w", err)
	}
	o, err := o.withDefaults()
	if err != nil {
		return ShardStats{}, err
	}

	// The header, read from the start, decides the layout for every shard.
	var head bytes.Buffer
	h := &transform{o: o, w: &head, sp: newSplitter(io.NewSectionReader(r, 0, size), o.MaxRecordBytes), spec: newRowSpec(o), line: 1}
	h.spec.mass, h.spec.vel = -1, -1
	h.sp.spec = h.spec
	chunk, next, err := h.header(ctx)
	if err != nil {
		return ShardStats{}, err
	}
	dataStart := h.sp.bytesIn - int64(len(h.sp.pending)) - int64(len(chunk)) + int64(next)

	var st ShardStats
	st.Header = h.stats.Header
	nomStart, nomEnd := s.Nominal(size)
	st.Start, st.End = dataStart, size
	if s.Index > 0 {
		if st.Start, err = findBoundary(ctx, r, size, max(nomStart, dataStart), o); err != nil {
			return st, err
		}
	}
	if s.Index < s.Count-1 {
		if st.End, err = findBoundary(ctx, r, size, max(nomEnd, dataStart), o); err != nil {
			return st, err
		}
	}
	// The next shard's start before this one's is misjudged, in input that
	// is invalid near it: read on, as past any misjudged boundary.
	misjudged := st.End < st.Start
	st.End = max(st.End, st.Start)

	t := &transform{o: o, w: w, spec: h.spec, line: 1}
	sr := &shardReader{r: r, off: st.Start, end: st.End, size: size, misjudged: misjudged}
	if ro, ok := r.(rangeOpener); ok && st.End > st.Start {
		// The shard's own bytes, the bulk of its reading, in one stream.
		rc, err := ro.openRange(st.Start, st.End)
		if err != nil {
			return st, err
		}
		if rc != nil {
			defer rc.Close()
			sr.stream, sr.streamEnd = rc, st.End
		}
	}
	t.sp = newSplitter(sr, o.MaxRecordBytes)
	t.sp.spec = t.spec
	// Shards after the first learn their first line number, and the quote
	// parity at their nominal start, only when an error or a reject needs
	// them: that means reading everything before the shard.
	from := max(nomStart, dataStart)
	pre := &prefix{r: r, at: max(from-1, 0), end: st.Start}
	if s.Index == 0 {
		t.line = h.line
		if err := t.write(head.Bytes()); err != nil {
			return st, err
		}
	} else {
		t.firstLine = func() (int64, error) {
			err := pre.read(ctx)
			return pre.linesAtEnd, err
		}
	}
	if o.OnError == OnErrorSkip {
		t.rejects = csv.NewWriter(o.Rejects)
		if s.Index == 0 {
			t.rejects.Write([]string{"line", "column", "reason", "record"})
		}
	}
	err = t.body(ctx, nil, 0)
	if err == nil && sr.overrun {
		err = fmt.Errorf("compute: shard %v: byte %d, where the next shard starts, is not a record boundary", s, st.End)
	}
	if t.rejects != nil {
		t.rejects.Flush()
		if err == nil {
			err = t.rejects.Error()
		}
	}
	st.Stats, st.BytesIn = t.stats, t.sp.bytesIn
	st.Header = h.stats.Header
	var perr *ParseError
	if !errors.As(err, &perr) || s.Index == 0 {
		return st, err
	}
	if rerr := pre.read(ctx); rerr != nil {
		return st, rerr
	}
	perr.Line += pre.linesAtEnd
	// A shard's start is misjudged only in input that is invalid just
	// after its nominal start, and then its own errors may be artefacts:
	// report the first error met from the true boundary instead.
	exact, xerr := exactBoundaryFrom(ctx, r, size, from, pre.oddAt)
	if xerr != nil || exact == st.Start {
		return st, err
	}
	return st, revalidate(ctx, r, size, dataStart, pre, t.spec, o, err)
}

// prefix reads the bytes before a shard, once, for its line count, the
// quote parity at its nominal start and the last record boundary before.
type prefix struct {
	r          io.ReaderAt
	at, end    int64 // parity before at, lines before end; at <= end
	done       bool
	err        error
	oddAt      bool  // an odd number of '"' before at
	linesAt    int64 // '\n' bytes before at
	linesAtEnd int64 // '\n' bytes before end
	lastStart  int64 // the last record start before at: after a '\n' outside quotes; -1 if none
	linesLast  int64 // '\n' bytes before lastStart
}

func (p *prefix) read(ctx context.Context) error {
	if p.done {
		return p.err
	}
	p.done, p.lastStart = true, -1
	pos := int64(0)
	p.err = scanRangeParallel(ctx, p.r, 0, p.at, func(b []byte) {
		last, odd := scanBoundary(b, 0, p.oddAt, -1)
		if last >= 0 {
			p.lastStart, p.linesLast = pos+int64(last)+1, p.linesAt+int64(bytes.Count(b[:last+1], nl))
		}
		p.linesAt += int64(bytes.Count(b, nl))
		p.oddAt, pos = odd, pos+int64(len(b))
	})
	p.linesAtEnd = p.linesAt
	if p.err == nil {
		p.err = scanRange(ctx, p.r, p.at, p.end, func(b []byte) bool {
			p.linesAtEnd += int64(bytes.Count(b, nl))
			return true
		})
	}
	return p.err
}

// revalidate parses in the true quote state from the record that spans
// the shard's nominal start, as the shard before does, and returns the
// first error it meets; err when there is none.
func revalidate(ctx context.Context, r io.ReaderAt, size, dataStart int64, pre *prefix, spec *rowSpec, o Options, err error) error {
	start, lines := pre.lastStart, pre.linesLast
	if start < dataStart {
		start, lines = dataStart, 0
		if serr := scanRange(ctx, r, 0, dataStart, func(b []byte) bool {
			lines += int64(bytes.Count(b, nl))
			return true
		}); serr != nil {
			return err
		}
	}
	t := &transform{o: o, w: io.Discard, spec: spec, line: 1}
	t.sp = newSplitter(io.NewSectionReader(r, start, size-start), o.MaxRecordBytes)
	t.sp.spec = spec
	if o.OnError == OnErrorSkip {
		t.rejects = csv.NewWriter(io.Discard)
	}
	verr := t.body(ctx, nil, 0)
	var perr *ParseError
	if !errors.As(verr, &perr) {
		return err
	}
	perr.Line += lines
	return verr
}

// scanRange passes the bytes [from, to) of r to f in blocks, while f
// returns true.
func scanRange(ctx context.Context, r io.ReaderAt, from, to int64, f func([]byte) bool) error {
	buf := make([]byte, 256<<10)
	for from < to {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := int(min(int64(len(buf)), to-from))
		m, err := r.ReadAt(buf[:n], from)
		if m < n {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		from += int64(n)
		if !f(buf[:n]) {
			return nil
		}
	}
	return nil
}

// Long scans read ahead in scanBlock blocks, scanReaders at once: a
// shard's line number in a large object is one pass over everything
// before it, and one ranged request at a time would be slow.
var (
	scanBlock   = 8 << 20
	scanReaders = 4
)

// scanRangeParallel passes the bytes [from, to) of r to f in order, in
// blocks read concurrently. r must allow concurrent ReadAt calls, as
// io.ReaderAt's contract says. Memory is bounded by scanReaders blocks.
func scanRangeParallel(ctx context.Context, r io.ReaderAt, from, to int64, f func([]byte)) error {
	block := int64(scanBlock)
	if to-from <= 2*block {
		return scanRange(ctx, r, from, to, func(b []byte) bool { f(b); return true })
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		buf []byte
		err error
	}
	n := int((to - from + block - 1) / block)
	results := make([]chan result, n)
	for k := range results {
		results[k] = make(chan result, 1)
	}
	free := make(chan []byte, scanReaders) // buffers, and the right to read
	for range scanReaders {
		free <- make([]byte, block)
	}
	go func() {
		for k := range n {
			var buf []byte
			select {
			case buf = <-free:
			case <-ctx.Done():
				return
			}
			go func() {
				off := from + int64(k)*block
				buf = buf[:min(block, to-off)]
				m, err := r.ReadAt(buf, off)
				if m == len(buf) {
					err = nil
				} else if err == nil || err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				results[k] <- result{buf, err}
			}()
		}
	}()
	for k := range n {
		select {
		case res := <-results[k]:
			if res.err != nil {
				return res.err
			}
			f(res.buf)
			free <- res.buf[:cap(res.buf)]
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// A rangeOpener opens a span of its bytes as one sequential stream, for
// a shard to read its own bytes through rather than ReadAt; it returns
// nil when it has nothing better than ReadAt.
type rangeOpener interface {
	openRange(off, end int64) (io.ReadCloser, error)
}

// shardReader reads a shard's bytes [off, end) of r, or of stream up to
// streamEnd. Their quote parity tells whether end, the next shard's
// start, is really a record boundary; if it is not, the reader goes on to
// the end of the input, so that the parser meets the error that misled
// the boundary search.
type shardReader struct {
	r              io.ReaderAt
	stream         io.Reader // the bytes [off, streamEnd), when not nil
	streamEnd      int64
	off, end, size int64
	quotes         int
	misjudged      bool // end is known not to be a record boundary
	overrun        bool
}

func (s *shardReader) Read(p []byte) (int, error) {
	if s.off >= s.end {
		if s.overrun || s.end >= s.size || s.quotes%2 == 0 && !s.misjudged {
			return 0, io.EOF
		}
		s.overrun, s.end = true, s.size
	}
	n := int(min(int64(len(p)), s.end-s.off))
	var m int
	var err error
	if s.off < s.streamEnd {
		m, err = s.stream.Read(p[:min(int64(n), s.streamEnd-s.off)])
		switch {
		case err == io.EOF && s.off+int64(m) < s.streamEnd:
			err = io.ErrUnexpectedEOF // the input is shorter than its size
		case err == io.EOF:
			err = nil
		}
	} else {
		m, err = s.r.ReadAt(p[:n], s.off)
		switch {
		case m == n:
			err = nil
		case err == nil || err == io.EOF:
			err = io.ErrUnexpectedEOF // the input is shorter than its size
		}
	}
	s.off += int64(m)
	if !s.overrun {
		s.quotes += bytes.Count(p[:m], quote)
	}
	return m, err
}

var quote = []byte{'"'}

// findBoundary returns the first record start at or after off: the byte
// after a '\n' that ends a record, or size. It reads ahead from off-1
// under two hypotheses, outside and inside a quoted field, and drops each
// that breaks a rule the parser enforces: a '"' inside an unquoted field,
// a closing quote followed by anything but a delimiter or line end, a
// quoted field open at the end of input, a record longer than
// MaxRecordBytes. In valid input the true hypothesis survives, so when
// exactly one does, it is the truth. In quote-free data the inside
// hypothesis dies when its field would outgrow MaxRecordBytes. The rules
// are a lenient subset of the parser's, so that the true hypothesis
// never dies in valid input.
func findBoundary(ctx context.Context, r io.ReaderAt, size, off int64, o Options) (int64, error) {
	if off <= 0 || off >= size {
		return min(max(off, 0), size), nil
	}
	limit := int64(o.MaxRecordBytes) + 1 // lenient: a '\r' before '\n' is not content
	hyps := [2]hypothesis{{state: hOut, fieldStart: true, boundary: -1}, {state: hIn, boundary: -1}}
	from := off - 1
	window := min(size-from, 2*limit+2)
	decided := false
	err := scanRange(ctx, r, from, from+window, func(b []byte) bool {
		for i := range hyps {
			hyps[i].scan(b, from, o.Delimiter, limit)
		}
		from += int64(len(b))
		if from == size {
			for i := range hyps {
				hyps[i].atEOF(size)
			}
		}
		switch {
		case hyps[0].dead && hyps[1].dead:
			return false
		case hyps[0].dead:
			decided = hyps[1].boundary >= 0
		case hyps[1].dead:
			decided = hyps[0].boundary >= 0
		}
		return !decided
	})
	if err != nil {
		return 0, err
	}
	if decided {
		if hyps[0].dead {
			return hyps[1].boundary, nil
		}
		return hyps[0].boundary, nil
	}
	return exactBoundary(ctx, r, size, off)
}

// exactBoundary is findBoundary by quote parity: in valid CSV every '"'
// opens, closes or is half of an escaped pair, so an odd count before a
// '\n' puts it inside quotes. It reads everything before off.
func exactBoundary(ctx context.Context, r io.ReaderAt, size, off int64) (int64, error) {
	if off <= 0 || off >= size {
		return min(max(off, 0), size), nil
	}
	odd := false
	if err := scanRangeParallel(ctx, r, 0, off-1, func(b []byte) {
		odd = odd != (bytes.Count(b, quote)%2 == 1)
	}); err != nil {
		return 0, err
	}
	return exactBoundaryFrom(ctx, r, size, off, odd)
}

// exactBoundaryFrom is exactBoundary given the parity before off-1.
func exactBoundaryFrom(ctx context.Context, r io.ReaderAt, size, off int64, odd bool) (int64, error) {
	if off <= 0 || off >= size {
		return min(max(off, 0), size), nil
	}
	pos, found := off-1, int64(-1)
	err := scanRange(ctx, r, off-1, size, func(b []byte) bool {
		if i := firstBoundary(b, odd); i >= 0 {
			found = pos + int64(i) + 1
			return false
		}
		odd = odd != (bytes.Count(b, quote)%2 == 1)
		pos += int64(len(b))
		return true
	})
	if err != nil {
		return 0, err
	}
	if found < 0 {
		return size, nil
	}
	return found, nil
}

// firstBoundary returns the index of the first '\n' outside quotes in b,
// where the quote state at b[0] is inQuote, or -1.
func firstBoundary(b []byte, inQuote bool) int {
	for i, c := range b {
		switch {
		case c == '"':
			inQuote = !inQuote
		case c == '\n' && !inQuote:
			return i
		}
	}
	return -1
}

// Hypothesis states.
const (
	hOut    = iota // outside quotes
	hIn            // inside a quoted field
	hClosed        // after a '"' inside quotes: half of a pair, or the close
	hCR            // after a closing quote and '\r': only '\n' may follow
)

// hypothesis is one reading of the bytes after an arbitrary offset.
type hypothesis struct {
	state      int
	fieldStart bool  // outside quotes, at the start of a field
	recLen     int64 // bytes of the current record so far
	boundary   int64 // offset of the first record start; -1 until found
	dead       bool  // broke a rule valid input keeps
}

func (h *hypothesis) endRecord(at int64) {
	if h.boundary < 0 {
		h.boundary = at
	}
	h.state, h.fieldStart, h.recLen = hOut, true, 0
}

// scan reads b, which starts at offset pos.
func (h *hypothesis) scan(b []byte, pos int64, delim byte, limit int64) {
	if h.dead {
		return
	}
	if bytes.IndexByte(b, '"') < 0 && (h.state == hIn || h.state == hOut) {
		h.scanQuoteFree(b, pos, delim, limit)
		return
	}
	for i, c := range b {
		switch h.state {
		case hIn:
			if c == '"' {
				h.state = hClosed
			}
			h.recLen++
		case hClosed:
			switch c {
			case '"':
				h.state = hIn
				h.recLen++
			case delim:
				h.state, h.fieldStart = hOut, true
				h.recLen++
			case '\n':
				h.endRecord(pos + int64(i) + 1)
			case '\r':
				h.state = hCR
			default:
				h.dead = true
				return
			}
		case hCR:
			if c != '\n' {
				h.dead = true
				return
			}
			h.endRecord(pos + int64(i) + 1)
		default:
			switch c {
			case '\n':
				h.endRecord(pos + int64(i) + 1)
			case '"':
				if !h.fieldStart {
					h.dead = true
					return
				}
				h.state, h.fieldStart = hIn, false
				h.recLen++
			case delim:
				h.fieldStart = true
				h.recLen++
			default:
				h.fieldStart = false
				h.recLen++
			}
		}
		// Only a quoted field can make a record too long to be valid here:
		// outside quotes any newline ends it.
		if h.recLen > limit && h.state != hOut {
			h.dead = true
			return
		}
	}
}

// scanQuoteFree is scan for a block without quotes, in state hIn or hOut.
func (h *hypothesis) scanQuoteFree(b []byte, pos int64, delim byte, limit int64) {
	if len(b) == 0 {
		return
	}
	if h.state == hIn {
		if h.recLen += int64(len(b)); h.recLen > limit {
			h.dead = true
		}
		return
	}
	last := bytes.LastIndexByte(b, '\n')
	if last < 0 {
		h.recLen += int64(len(b))
		h.fieldStart = b[len(b)-1] == delim
		return
	}
	if h.boundary < 0 {
		h.endRecord(pos + int64(bytes.IndexByte(b, '\n')) + 1)
	}
	h.recLen = int64(len(b) - last - 1)
	h.fieldStart = last == len(b)-1 || b[len(b)-1] == delim
}

// atEOF applies the end of input: a quoted field still open is an error;
// a record still going ends there.
func (h *hypothesis) atEOF(size int64) {
	if h.dead {
		return
	}
	if h.state == hIn {
		h.dead = true
		return
	}
	if h.boundary < 0 {
		h.boundary = size
	}
}
