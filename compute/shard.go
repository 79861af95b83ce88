package compute

import (
	"bytes"
	"context"
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
// offset need not end a record. A shard's first record boundary is the
// one a single run finds, by the grammar its splitter follows (see
// scanner): it is found by reading from a little before the offset under
// every quote state possible there, until the readings agree on the first
// record start at or after it (see findBoundary); when they do not within
// twice MaxRecordBytes, reading everything before the offset decides.
// The shard before follows the grammar through its own bytes and checks
// that its end is a record start, so a misjudged boundary, possible only
// in input a single run fails on, fails the run rather than splitting or
// repeating a record.
func TransformShard(ctx context.Context, w io.Writer, r io.ReaderAt, size int64, s Shard, o Options) (ShardStats, error) {
	if err := s.Check(); err != nil {
		return ShardStats{}, fmt.Errorf("compute: %w", err)
	}
	o, err := o.withDefaults()
	if err != nil {
		return ShardStats{}, err
	}

	// The header, read from the start, decides the layout for every shard.
	h, dataStart, err := shardHeader(ctx, r, size, o)
	if err != nil {
		return ShardStats{}, err
	}
	head := h.w.(*bytes.Buffer)

	var st ShardStats
	st.Header = h.stats.Header
	nomStart, nomEnd := s.Nominal(size)
	st.Start, st.End = dataStart, size
	if s.Index > 0 {
		if st.Start, err = findBoundary(ctx, r, size, dataStart, nomStart, o); err != nil {
			return st, err
		}
	}
	if s.Index < s.Count-1 {
		if st.End, err = findBoundary(ctx, r, size, dataStart, nomEnd, o); err != nil {
			return st, err
		}
	}
	// The next shard's start before this one's is misjudged, in input that
	// is invalid near it: read on, as past any misjudged boundary.
	misjudged := st.End < st.Start
	st.End = max(st.End, st.Start)

	t := &transform{o: o, w: w, spec: h.spec, line: 1}
	sr := &shardReader{r: r, off: st.Start, end: st.End, size: size, sc: newScanner(o), misjudged: misjudged}
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
	t.sp = newSplitter(sr, o)
	t.sp.spec = t.spec
	// Shards after the first learn their first line number, and the quote
	// state at their nominal start, only when an error or a reject needs
	// them: that means reading everything before the shard.
	from := max(nomStart, dataStart)
	pre := &prefix{r: r, o: o, dataStart: dataStart, at: from, end: st.Start}
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
		t.rejects = o.NewRejectWriter(o.Rejects)
		if s.Index == 0 {
			if err := t.rejects.WriteHeader(); err != nil {
				return st, err
			}
		}
	}
	err = t.body(ctx, nil, 0)
	if err == nil && sr.overrun {
		err = fmt.Errorf("compute: shard %v: byte %d, where the next shard starts, is not a record boundary", s, st.End)
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
	exact, xerr := boundaryFrom(ctx, r, size, from, pre.sc)
	if xerr != nil || exact == st.Start {
		return st, err
	}
	return st, revalidate(ctx, r, size, pre, t.spec, o, err)
}

// shardHeader reads the input's first record, as a single run does, and
// returns the transform that read it, with the layout in its spec and the
// output header in its writer (a *bytes.Buffer), and where the data
// records start.
func shardHeader(ctx context.Context, r io.ReaderAt, size int64, o Options) (*transform, int64, error) {
	h := &transform{o: o, w: &bytes.Buffer{}, sp: newSplitter(io.NewSectionReader(r, 0, size), o), spec: newRowSpec(o), line: 1}
	h.spec.mass, h.spec.vel = -1, -1
	h.sp.spec, h.sp.bom = h.spec, true
	chunk, next, err := h.header(ctx)
	if err != nil {
		return nil, 0, err
	}
	return h, h.sp.bytesIn - int64(len(h.sp.pending)) - int64(len(chunk)) + int64(next), nil
}

// prefix reads the bytes before a shard, once, for its line count, the
// quote state at its nominal start and the last record start before.
type prefix struct {
	r                  io.ReaderAt
	o                  Options
	dataStart, at, end int64 // the state at at, lines before end; dataStart <= at <= end
	done               bool
	err                error
	sc                 scanner // the grammar's state at at
	linesAtEnd         int64   // '\n' bytes before end
	lastStart          int64   // the last record start at or before at
	linesLast          int64   // '\n' bytes before lastStart
}

func (p *prefix) read(ctx context.Context) error {
	if p.done {
		return p.err
	}
	p.done, p.sc, p.lastStart = true, newScanner(p.o), p.dataStart
	if p.err = scanRangeParallel(ctx, p.r, 0, p.dataStart, func(b []byte) {
		p.linesLast += int64(bytes.Count(b, nl))
	}); p.err != nil {
		return p.err
	}
	lines, pos := p.linesLast, p.dataStart
	p.err = scanRangeParallel(ctx, p.r, p.dataStart, p.at, func(b []byte) {
		if last := p.sc.scan(b); last >= 0 {
			p.lastStart, p.linesLast = pos+int64(last)+1, lines+int64(bytes.Count(b[:last+1], nl))
		}
		lines += int64(bytes.Count(b, nl))
		pos += int64(len(b))
	})
	p.linesAtEnd = lines
	if p.err == nil {
		p.err = scanRange(ctx, p.r, p.at, p.end, func(b []byte) bool {
			p.linesAtEnd += int64(bytes.Count(b, nl))
			return true
		})
	}
	return p.err
}

// revalidate parses from the record that spans the shard's nominal start,
// as the shard before does, and returns the first error it meets; err
// when there is none.
func revalidate(ctx context.Context, r io.ReaderAt, size int64, pre *prefix, spec *rowSpec, o Options, err error) error {
	start := pre.lastStart
	t := &transform{o: o, w: io.Discard, spec: spec, line: 1}
	t.sp = newSplitter(io.NewSectionReader(r, start, size-start), o)
	t.sp.spec = spec
	if o.OnError == OnErrorSkip {
		t.rejects = discardRejects{}
	}
	verr := t.body(ctx, nil, 0)
	var perr *ParseError
	if !errors.As(verr, &perr) {
		return err
	}
	perr.Line += pre.linesLast
	return verr
}

// scanRange passes the bytes [from, to) of r to f in blocks, while f
// returns true.
func scanRange(ctx context.Context, r io.ReaderAt, from, to int64, f func([]byte) bool) error {
	buf := make([]byte, min(256<<10, max(to-from, 0)))
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
// streamEnd, following the grammar through them from the shard's start.
// If end, the next shard's start, is not a record start by it, the
// boundary was misjudged, and the reader goes on to the end of the input,
// so that the parser meets the error that misled the boundary search.
type shardReader struct {
	r              io.ReaderAt
	stream         io.Reader // the bytes [off, streamEnd), when not nil
	streamEnd      int64
	off, end, size int64
	sc             scanner // the state at off
	misjudged      bool    // end is known not to be a record boundary
	overrun        bool
}

func (s *shardReader) Read(p []byte) (int, error) {
	if s.off >= s.end {
		if s.overrun || s.end >= s.size || s.sc.atRecordStart() && !s.misjudged {
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
		s.sc.scan(p[:m])
	}
	return m, err
}

// findBoundary returns the first record start at or after off, as a
// single run's splitter finds it: the byte after a '\n' that ends a
// record, or size. dataStart, where the data records start, is one.
//
// It reads from a little before off (behind bytes, at most dataStart)
// under every quote state possible there, as the bytes just before allow:
// outside quotes, inside a quoted field, or just after a quote in one.
// Each reading follows the grammar and records its first record start at
// or after off; a reading dies when it breaks a rule whose breach ends a
// single run: a record longer than MaxRecordBytes, a quoted field open
// at the end of input, and, in strict fail mode, any quoting error. The
// readings that survive and reach the same state at the same byte are
// one from there on. The search ends when all survivors agree on the
// record start; that is then the truth, unless the truth died, which
// only input a single run fails on can make happen. When survivors merge
// that disagree, or none is left, or the window of twice MaxRecordBytes
// ends first, it tries again from further back, and then reads from
// dataStart.
func findBoundary(ctx context.Context, r io.ReaderAt, size, dataStart, off int64, o Options) (int64, error) {
	if off <= dataStart || off >= size {
		return min(max(off, dataStart), size), nil
	}
	window := 2 * (int64(o.MaxRecordBytes) + 1)
	for _, behind := range []int64{min(searchBehind, window), window} {
		b, ok, err := searchBoundary(ctx, r, size, dataStart, off, behind, window, o)
		if err != nil || ok {
			return b, err
		}
		if behind >= window {
			break
		}
	}
	return exactBoundary(ctx, r, size, dataStart, off, o)
}

// searchBehind is how far before its offset a boundary search starts
// first: enough for the readings of quoted text to merge, most often.
var searchBehind int64 = 64 << 10

// searchBoundary is one try of findBoundary, from behind bytes before
// off; ok is false when it cannot decide.
func searchBoundary(ctx context.Context, r io.ReaderAt, size, dataStart, off, behind, window int64, o Options) (int64, bool, error) {
	limit := int64(o.MaxRecordBytes) + 1 // lenient: a '\r' before '\n' is not content
	quoteKills := o.Quotes == QuotesStrict && o.OnError == OnErrorFail
	start := max(off-behind, dataStart)
	var hyps []hypothesis
	if start == dataStart {
		hyps = []hypothesis{{sc: newScanner(o), boundary: -1}}
	}
	// The reading starts with the two bytes before start, which say what
	// states are possible there.
	pos, end := max(start-2, dataStart), min(size, off+window)
	found, decided := int64(0), false
	err := scanRange(ctx, r, pos, end, func(b []byte) bool {
		if hyps == nil {
			var b2 [2]byte
			copy(b2[2-(start-pos):], b[:start-pos])
			b, pos = b[start-pos:], start
			for _, st := range []qstate{qOut, qIn, qQuote, qQuoteCR} {
				if st == qQuote && b2[1] != '"' || st == qQuoteCR && (b2[1] != '\r' || b2[0] != '"') {
					continue
				}
				sc := newScanner(o)
				sc.state, sc.prev = st, b2[1]
				hyps = append(hyps, hypothesis{sc: sc, boundary: -1})
			}
		}
		for i := range hyps {
			hyps[i].read(b, pos, off, limit, quoteKills)
		}
		pos += int64(len(b))
		if pos == size {
			for i := range hyps {
				hyps[i].atEOF(size)
			}
		}
		// Drop the dead, and readings that became one.
		alive := hyps[:0]
		for _, h := range hyps {
			if h.dead {
				continue
			}
			dup := false
			for k, a := range alive {
				if a.sc.state == h.sc.state && a.sc.prev == h.sc.prev && a.recLen == h.recLen {
					if a.boundary != h.boundary {
						alive[k].boundary = -2 // they can no longer be told apart
					}
					dup = true
					break
				}
			}
			if !dup {
				alive = append(alive, h)
			}
		}
		hyps = alive
		if len(hyps) == 0 {
			return false
		}
		found, decided = hyps[0].boundary, hyps[0].boundary >= 0
		for _, h := range hyps {
			if h.boundary == -2 {
				decided = false
				return false
			}
			decided = decided && h.boundary == found
		}
		return !decided
	})
	if err != nil {
		return 0, false, err
	}
	return found, decided, nil
}

// exactBoundary is findBoundary by reading everything from dataStart, a
// record start, to off.
func exactBoundary(ctx context.Context, r io.ReaderAt, size, dataStart, off int64, o Options) (int64, error) {
	if off <= dataStart || off >= size {
		return min(max(off, dataStart), size), nil
	}
	sc := newScanner(o)
	if err := scanRangeParallel(ctx, r, dataStart, off, func(b []byte) { sc.scan(b) }); err != nil {
		return 0, err
	}
	return boundaryFrom(ctx, r, size, off, sc)
}

// boundaryFrom is exactBoundary given the grammar's state at off.
func boundaryFrom(ctx context.Context, r io.ReaderAt, size, off int64, sc scanner) (int64, error) {
	if off >= size || sc.atRecordStart() {
		return min(off, size), nil
	}
	pos, found := off, size
	err := scanRange(ctx, r, off, size, func(b []byte) bool {
		if k := sc.first(b); k >= 0 {
			found = pos + int64(k) + 1
			return false
		}
		pos += int64(len(b))
		return true
	})
	if err != nil {
		return 0, err
	}
	return found, nil
}

// hypothesis is one reading of the bytes from where a boundary search
// starts.
type hypothesis struct {
	sc       scanner
	recLen   int64 // bytes of the current record so far
	boundary int64 // the first record start at or after off; -1 until found, -2 when ambiguous
	dead     bool  // broke a rule whose breach ends a single run
}

// read reads b, which starts at offset pos of the input.
func (h *hypothesis) read(b []byte, pos, off, limit int64, quoteKills bool) {
	if h.dead {
		return
	}
	if pos < off {
		n := min(int64(len(b)), off-pos)
		h.advance(b[:n])
		b, pos = b[n:], pos+n
		if pos == off && h.sc.atRecordStart() {
			h.boundary = off
		}
	}
	if len(b) > 0 && h.boundary == -1 {
		k := h.sc.first(b)
		if k < 0 {
			h.recLen += int64(len(b))
			b = nil
		} else {
			h.boundary = pos + int64(k) + 1
			if h.recLen+int64(k) > limit {
				h.dead = true
			}
			h.recLen, b = 0, b[k+1:]
		}
	}
	h.advance(b)
	if h.recLen > limit || quoteKills && h.sc.bad {
		h.dead = true
	}
}

// advance follows the grammar through b and keeps the length of the
// record going on at its end. Only that record and the one going on
// before it are measured, which is lenient when b holds more.
func (h *hypothesis) advance(b []byte) {
	if last := h.sc.scan(b); last >= 0 {
		h.recLen = int64(len(b) - last - 1)
	} else {
		h.recLen += int64(len(b))
	}
}

// atEOF applies the end of input: a quoted field still open is an error;
// a record still going ends there.
func (h *hypothesis) atEOF(size int64) {
	if h.dead {
		return
	}
	if h.sc.state == qIn {
		h.dead = true
		return
	}
	if h.boundary == -1 {
		h.boundary = size
	}
}
