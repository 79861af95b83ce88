package compute

import (
	"bytes"
	"fmt"
	"io"
)

// chunkSize is how much input a chunk holds before it is cut at the last
// record boundary. Large enough to amortise syscalls and hand-offs, small
// enough that a few chunks in flight keep memory low.
const chunkSize = 512 << 10

// splitter cuts a stream into chunks of whole records. A record boundary
// is a '\n' outside quotes, found by a scanner that follows the record
// grammar (see scanner) with vectorised byte searches; the parser then
// reads each chunk by the same rules, so it meets every record end where
// the splitter did.
type splitter struct {
	r         io.Reader
	maxRecord int
	spec      *rowSpec // for diagnosing a record that outgrows maxRecord
	pending   []byte   // bytes after the last boundary, carried over
	sc        scanner  // the grammar's state at the end of pending
	bom       bool     // the stream is the input's start: a UTF-8 BOM there is not data
	first     bool     // no chunk returned yet
	eof       bool
	bytesIn   int64
	free      chan []byte
}

func newSplitter(r io.Reader, o Options) *splitter {
	return &splitter{r: r, maxRecord: o.MaxRecordBytes, sc: newScanner(o), first: true, free: make(chan []byte, 16)}
}

// splitError carries a diagnosis made by the splitter; its line is
// relative to the start of the chunk it would have been.
type splitError struct{ perr *ParseError }

func (e *splitError) Error() string { return e.perr.Error() }

// release gives a chunk's buffer back for reuse.
func (s *splitter) release(buf []byte) {
	if cap(buf) != chunkSize {
		return
	}
	select {
	case s.free <- buf[:0]:
	default:
	}
}

func (s *splitter) buffer(min int) []byte {
	if min <= chunkSize {
		select {
		case b := <-s.free:
			return b
		default:
		}
		return make([]byte, 0, chunkSize)
	}
	return make([]byte, 0, min)
}

// next returns the next chunk: whole records ending with '\n', or at the
// end of input whatever is left. It returns io.EOF when nothing is left.
// The chunk is the caller's until it passes it to release.
func (s *splitter) next() ([]byte, error) {
	if s.eof && len(s.pending) == 0 {
		return nil, io.EOF
	}
	buf := s.buffer(len(s.pending) * 2)
	buf = append(buf, s.pending...)
	scanned, last := len(s.pending), -1
	for {
		for len(buf) < cap(buf) && !s.eof {
			n, err := s.r.Read(buf[len(buf):cap(buf)])
			buf = buf[:len(buf)+n]
			s.bytesIn += int64(n)
			if err == io.EOF {
				s.eof = true
			} else if err != nil {
				return nil, err
			}
		}
		if scanned == 0 && s.first && s.bom && bytes.HasPrefix(buf, utf8BOM) {
			scanned = len(utf8BOM) // the first record starts after it
		}
		if k := s.sc.scan(buf[scanned:]); k >= 0 {
			last = scanned + k
		}
		scanned = len(buf)
		if s.eof {
			s.pending = s.pending[:0]
			s.first = false
			return buf, nil
		}
		if last >= 0 {
			s.pending = append(s.pending[:0], buf[last+1:]...)
			s.first = false
			return buf[:last+1], nil
		}
		if len(buf) > s.maxRecord {
			return nil, s.diagnose(buf)
		}
		grown := make([]byte, len(buf), min(2*cap(buf), s.maxRecord+chunkSize))
		copy(grown, buf)
		s.release(buf)
		buf = grown
	}
}

// Quote states of the record grammar, between two bytes.
type qstate uint8

const (
	qOut     qstate = iota // outside quotes: at a field's start or in an unquoted field, as the byte before tells
	qIn                    // in a quoted field
	qQuote                 // in a quoted field, just after a '"' that closes it or starts a "" pair
	qQuoteCR               // after such a '"' and a '\r'
)

// scanner follows the record grammar through a stream, to find where
// records end without decoding their fields. The parser (rowSpec.process,
// splitRecord) reads records by the same rules:
//
//   - A '"' opens a quoted field only at the start of a field: the first
//     byte of a record, or the byte after a delimiter. Anywhere else
//     outside quotes it is a bare quote: data in lazy mode; in strict mode
//     it makes the row bad (ErrBareQuote) and the field goes on, unquoted,
//     to the next delimiter or line break. A space before a quote makes it
//     bare too.
//   - In a quoted field, "" is an escaped quote, and a '"' followed by a
//     delimiter, '\n', "\r\n" or the end of input closes the field. A '"'
//     followed by anything else is data in lazy mode, and the field stays
//     quoted; in strict mode it makes the row bad (ErrQuote), the quoted
//     part ends there and the field goes on unquoted to the next
//     delimiter or line break.
//   - A '\n' outside quotes ends the record; inside quotes it is data.
//
// In valid CSV the two modes agree and a boundary is where quote parity
// says. A quoted field still open at the end of input is an error in
// both modes, as it takes the rest of the input with it.
//
// The state between calls is the quote state and the last byte read,
// which tells whether a '"' after it opens a field.
type scanner struct {
	delim byte
	lazy  bool
	state qstate
	prev  byte // the last byte read; '\n' at a record start
	bad   bool // met a quote that strict mode rejects (the row is bad)
}

// newScanner returns a scanner at the start of a record.
func newScanner(o Options) scanner {
	return scanner{delim: o.Delimiter, lazy: o.Quotes == QuotesLazy, prev: '\n'}
}

// atRecordStart reports whether the bytes read so far end with a record.
func (s *scanner) atRecordStart() bool { return s.state == qOut && s.prev == '\n' }

// scan reads b and returns the index of the last '\n' in it that ends a
// record, or -1. Outside quotes it jumps from quote to quote, so a
// quote-free stretch costs one vectorised search for '"' and one for the
// last '\n'.
func (s *scanner) scan(b []byte) int {
	last, i := -1, 0
	for i < len(b) {
		if s.state != qOut {
			i = s.quoted(b, i)
			continue
		}
		q := bytes.IndexByte(b[i:], '"')
		if q < 0 {
			if k := bytes.LastIndexByte(b[i:], '\n'); k >= 0 {
				last = i + k
			}
			break
		}
		if k := bytes.LastIndexByte(b[i:i+q], '\n'); k >= 0 {
			last = i + k
		}
		i = s.quote(b, i+q)
	}
	if len(b) > 0 {
		s.prev = b[len(b)-1]
	}
	return last
}

// first reads b up to and including the first '\n' that ends a record,
// and returns its index; or it reads all of b and returns -1.
func (s *scanner) first(b []byte) int {
	i := 0
	for i < len(b) {
		if s.state != qOut {
			i = s.quoted(b, i)
			continue
		}
		seg := b[i:]
		k := bytes.IndexByte(seg, '\n')
		if k >= 0 {
			seg = seg[:k]
		}
		q := bytes.IndexByte(seg, '"')
		if q < 0 {
			if k < 0 {
				break
			}
			s.prev = '\n'
			return i + k
		}
		i = s.quote(b, i+q)
	}
	if len(b) > 0 {
		s.prev = b[len(b)-1]
	}
	return -1
}

// quote reads the '"' at b[q], outside quotes, and returns q+1.
func (s *scanner) quote(b []byte, q int) int {
	p := s.prev
	if q > 0 {
		p = b[q-1]
	}
	switch {
	case p == s.delim || p == '\n':
		s.state = qIn
	case !s.lazy:
		s.bad = true
	}
	return q + 1
}

// quoted reads b[i:] inside a quoted field and returns the index of the
// first byte after the field, leaving state qOut, or len(b).
func (s *scanner) quoted(b []byte, i int) int {
	for i < len(b) {
		switch s.state {
		case qOut:
			return i
		case qIn:
			q := bytes.IndexByte(b[i:], '"')
			if q < 0 {
				return len(b)
			}
			i += q + 1
			s.state = qQuote
		case qQuote:
			switch b[i] {
			case '"':
				s.state = qIn
				i++
			case '\r':
				s.state = qQuoteCR
				i++
			case s.delim, '\n':
				s.state = qOut
			default:
				s.textAfterQuote()
			}
		case qQuoteCR:
			if b[i] == '\n' {
				s.state = qOut
			} else {
				s.textAfterQuote()
			}
		}
	}
	return i
}

// textAfterQuote applies a '"' followed by text in a quoted field: data
// in lazy mode; in strict mode the quoted part ends and the field goes on
// unquoted.
func (s *scanner) textAfterQuote() {
	if s.lazy {
		s.state = qIn
	} else {
		s.state, s.bad = qOut, true
	}
}

// diagnose explains why buf, the start of one record longer than
// maxRecord, cannot be read: a quoting error in it (in fail mode), a
// quoted field that is never closed (found by reading on, without
// keeping, to the end of input), or a record that is simply too large.
func (s *splitter) diagnose(buf []byte) error {
	var res chunkResult
	spec := *s.spec
	spec.maxRecord = len(buf) // the limit is reported below, not here
	in := buf
	if s.first && s.bom && bytes.HasPrefix(in, utf8BOM) {
		in = in[len(utf8BOM):]
	}
	spec.process(in, true, &res)
	if res.err != nil {
		return &splitError{res.err}
	}
	tooLarge := &ParseError{Line: 0, Err: ErrRecordTooLarge,
		Value: fmt.Sprintf("more than %d bytes", s.maxRecord)}
	if s.sc.state == qOut || !res.incomplete || res.openQuoteLine < 0 {
		return &splitError{tooLarge}
	}
	// Read on, keeping nothing, to see whether the quoted field ever
	// closes; if it does, the record is too large.
	sc := s.sc
	for !s.eof {
		n, err := s.r.Read(buf[:cap(buf)])
		s.bytesIn += int64(n)
		if err == io.EOF {
			s.eof = true
		} else if err != nil {
			return err
		}
		if sc.quoted(buf[:n], 0) < n || sc.state == qOut {
			return &splitError{tooLarge}
		}
	}
	if sc.state != qIn { // a '"' at the end of input closes it
		return &splitError{tooLarge}
	}
	return &splitError{&ParseError{Line: res.openQuoteLine, Column: res.openQuoteCol, Err: ErrUnterminatedQuote}}
}
