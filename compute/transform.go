package compute

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
)

var (
	utf8BOM    = []byte{0xEF, 0xBB, 0xBF}
	utf16LEBOM = []byte{0xFF, 0xFE}
	utf16BEBOM = []byte{0xFE, 0xFF}
)

// Transform reads CSV from r and writes to w the same records, each with a
// momentum field (mass × velocity) appended, and the header, if any, with
// the momentum column's name appended.
//
// It streams: memory stays bounded whatever the input size, and records
// are computed in parallel by o.Workers goroutines but written in input
// order. It stops early when ctx is done.
//
// Bad input is reported as a *ParseError. In OnErrorFail mode the first
// bad row ends the run; rows before it may already have been written to
// w. In OnErrorSkip mode bad rows go to o.Rejects as CSV records
// (line, column, reason, record) and only structural errors end the run;
// a row with a quoting error is a bad row, and reading goes on at the end
// of its record (see QuoteMode for where that is). Whatever the mode,
// Stats.RowsIn = Stats.RowsOut + Stats.RowsRejected; RowsRejected counts
// the rows written to Rejects, so a run that stops at a bad row in
// OnErrorFail mode counts only the rows before it.
//
// A gzip or zstd input, told by its first bytes, is read through
// o.Codec; line numbers are those of the decompressed CSV. The output is
// compressed as o.Compress says, and its stream ended only when the run
// succeeds.
func Transform(ctx context.Context, w io.Writer, r io.Reader, o Options) (Stats, error) {
	o, err := o.withDefaults()
	if err != nil {
		return Stats{}, err
	}
	r, inComp, closeInput, err := decompress(r, o.Codec)
	if err != nil {
		return Stats{}, err
	}
	defer closeInput()
	outComp := o.Compress
	if outComp == SameAsInput {
		outComp = inComp
	}
	w, finish, err := compress(w, o.Codec, outComp)
	if err != nil {
		return Stats{}, err
	}
	st, err := transformPlain(ctx, w, r, o)
	if err == nil {
		err = finish()
	}
	return st, err
}

// transformPlain is Transform from plain CSV to plain CSV.
func transformPlain(ctx context.Context, w io.Writer, r io.Reader, o Options) (Stats, error) {
	t := &transform{o: o, w: w, sp: newSplitter(r, o), spec: newRowSpec(o), line: 1}
	t.spec.mass, t.spec.vel = -1, -1
	t.sp.spec, t.sp.bom = t.spec, true
	if o.OnError == OnErrorSkip {
		t.rejects = o.NewRejectWriter(o.Rejects)
		if err := t.rejects.WriteHeader(); err != nil {
			return Stats{}, err
		}
	}
	err := t.run(ctx)
	t.stats.BytesIn = t.sp.bytesIn
	return t.stats, err
}

type transform struct {
	o       Options
	w       io.Writer
	sp      *splitter
	spec    *rowSpec
	rejects RejectWriter
	stats   Stats
	line    int64 // 1-based line at which the next chunk starts

	// lineOffset is added to line numbers in the rejects; a shard learns
	// it from firstLine, once, on its first reject (see TransformShard).
	lineOffset int64
	firstLine  func() (int64, error)
}

// job is one chunk on its way through the workers to the writer.
type job struct {
	buf  []byte // the chunk's buffer, released after writing
	in   []byte // the records to process, within buf
	res  chunkResult
	err  error // set instead of in when the splitter failed
	done chan struct{}
}

func (t *transform) run(ctx context.Context) error {
	first, start, err := t.header(ctx)
	if err != nil {
		return err
	}
	return t.body(ctx, first, start)
}

// body processes the records from first[start:] to the end of input.
func (t *transform) body(ctx context.Context, first []byte, start int) error {
	if first == nil {
		var err error
		if first, err = t.sp.next(); err == io.EOF {
			return nil
		} else if err != nil {
			return t.fixLine(err)
		}
	}
	if t.o.Workers == 1 {
		return t.serial(ctx, first, start)
	}
	return t.parallel(ctx, first, start)
}

// header reads up to the first record, decides the layout and writes the
// output header. It returns the first chunk and where its data rows start.
func (t *transform) header(ctx context.Context) ([]byte, int, error) {
	firstRead := true
	for {
		if err := ctx.Err(); err != nil {
			return nil, 0, err
		}
		chunk, err := t.sp.next()
		if err == io.EOF {
			return nil, 0, &ParseError{Line: 1, Err: ErrEmptyInput} // the file as a whole, where a header was due
		}
		if err != nil {
			return nil, 0, t.fixLine(err)
		}
		i := 0
		if firstRead {
			firstRead = false
			if bytes.HasPrefix(chunk, utf16LEBOM) || bytes.HasPrefix(chunk, utf16BEBOM) ||
				len(chunk) >= 2 && (chunk[0] == 0 || chunk[1] == 0) {
				return nil, 0, &ParseError{Line: 1, Err: ErrUTF16}
			}
			if bytes.HasPrefix(chunk, utf8BOM) {
				i = len(utf8BOM)
			}
		}
		for i < len(chunk) {
			if chunk[i] == '\n' {
				i++
				t.line++
			} else if chunk[i] == '\r' && i+1 < len(chunk) && chunk[i+1] == '\n' {
				i += 2
				t.line++
			} else {
				break
			}
		}
		if i == len(chunk) {
			t.sp.release(chunk)
			continue
		}
		fields, recEnd, next, lines, qerr, perr := splitRecord(chunk, i, t.o.Delimiter, t.o.Quotes == QuotesLazy)
		if perr != nil {
			perr.Line += t.line
			return nil, 0, perr
		}
		if qerr != nil {
			// The first record decides the layout (the columns, or the
			// number of fields): with a quoting error it cannot, in any mode.
			qerr.Line += t.line
			return nil, 0, qerr
		}
		l, perr := readLayout(fields, t.o)
		if perr != nil {
			perr.Line = t.line
			return nil, 0, perr
		}
		t.spec.mass, t.spec.vel, t.spec.fields, t.spec.labels = l.mass, l.vel, len(fields), l.labels
		t.stats.Header = l.header
		if !l.header {
			return chunk, i, nil
		}
		if recEnd-i > t.o.MaxRecordBytes {
			return nil, 0, &ParseError{Line: t.line, Err: ErrRecordTooLarge}
		}
		out := make([]byte, 0, recEnd-i+len(t.o.MomentumColumn)+8)
		out = append(out, chunk[i:recEnd]...)
		out = append(out, t.o.Delimiter)
		out = append(out, csvField(t.o.MomentumColumn, t.o.Delimiter)...)
		out = append(out, '\n')
		if err := t.write(out); err != nil {
			return nil, 0, err
		}
		t.line += lines
		return chunk, next, nil
	}
}

// fixLine turns a splitter's diagnosis, positioned relative to the chunk
// it would have been, into an absolute *ParseError.
func (t *transform) fixLine(err error) error {
	var se *splitError
	if errors.As(err, &se) {
		se.perr.Line += t.line
		return se.perr
	}
	return err
}

func (t *transform) write(b []byte) error {
	n, err := t.w.Write(b)
	t.stats.BytesOut += int64(n)
	return err
}

// finish writes one processed chunk and its rejects, in input order.
func (t *transform) finish(j *job) error {
	if j.err != nil {
		return t.fixLine(j.err)
	}
	res := &j.res
	if err := t.write(res.out); err != nil {
		return err
	}
	t.stats.RowsIn += res.rowsIn
	t.stats.RowsOut += res.rowsOut
	t.stats.RowsRejected += res.rejected
	if len(res.rejects) > 0 && t.firstLine != nil {
		off, err := t.firstLine()
		if err != nil {
			return err
		}
		t.lineOffset, t.firstLine = off, nil
	}
	if len(res.rejects) > 0 {
		for i := range res.rejects {
			res.rejects[i].Line += t.line + t.lineOffset
		}
		if err := t.rejects.Write(res.rejects); err != nil {
			return err
		}
	}
	if res.err != nil {
		res.err.Line += t.line
		return res.err
	}
	t.line += res.lines
	return nil
}

func (t *transform) serial(ctx context.Context, buf []byte, start int) error {
	var out []byte
	for {
		j := &job{buf: buf, in: buf[start:]}
		j.res.out = out
		t.spec.process(j.in, false, &j.res)
		err := t.finish(j)
		out = j.res.out
		t.sp.release(buf)
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		buf, err = t.sp.next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return t.fixLine(err)
		}
		start = 0
	}
}

// parallel runs the splitter, o.Workers workers and the ordered writer.
// At most 2×Workers chunks are in flight, which bounds memory.
func (t *transform) parallel(ctx context.Context, buf []byte, start int) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	workers := t.o.Workers
	jobs := make(chan *job, workers)
	order := make(chan *job, 2*workers)
	outs := make(chan []byte, 4*workers) // spare output buffers

	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for j := range jobs {
				if ctx.Err() == nil {
					select {
					case j.res.out = <-outs:
					default:
					}
					t.spec.process(j.in, false, &j.res)
				}
				close(j.done)
			}
		})
	}
	wg.Go(func() {
		defer close(jobs)
		defer close(order)
		j := &job{buf: buf, in: buf[start:], done: make(chan struct{})}
		for {
			if ctx.Err() != nil {
				return
			}
			if j.err != nil {
				close(j.done)
				order <- j
				return
			}
			select {
			case order <- j:
			case <-ctx.Done():
				return
			}
			jobs <- j
			b, err := t.sp.next()
			if err == io.EOF {
				return
			}
			j = &job{buf: b, in: b, err: err, done: make(chan struct{})}
		}
	})

	var err error
	for j := range order {
		<-j.done
		if err == nil {
			if err = ctx.Err(); err == nil {
				err = t.finish(j)
			}
			if err != nil {
				cancel()
			}
		}
		t.sp.release(j.buf)
		select {
		case outs <- j.res.out:
		default:
		}
	}
	wg.Wait()
	if err == nil {
		err = ctx.Err()
	}
	return err
}
