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
// is a '\n' outside quotes; in valid CSV every '"' opens, closes or is half
// of an escaped pair, so quote parity since the last boundary tells
// whether a '\n' is one. Invalid quoting is then caught by the parser,
// which meets the bad quote before any boundary it could have misplaced.
type splitter struct {
	r         io.Reader
	maxRecord int
	spec      *rowSpec // for diagnosing a record that outgrows maxRecord
	pending   []byte   // bytes after the last boundary, carried over
	inQuote   bool     // quote state at the end of pending
	eof       bool
	bytesIn   int64
	free      chan []byte
}

func newSplitter(r io.Reader, maxRecord int) *splitter {
	return &splitter{r: r, maxRecord: maxRecord, free: make(chan []byte, 16)}
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
	scanned, inQuote, last := len(s.pending), s.inQuote, -1
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
		last, inQuote = scanBoundary(buf, scanned, inQuote, last)
		scanned = len(buf)
		if s.eof {
			s.pending = s.pending[:0]
			return buf, nil
		}
		if last >= 0 {
			s.pending = append(s.pending[:0], buf[last+1:]...)
			s.inQuote = inQuote
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

// scanBoundary scans b[from:], where the quote state at from is inQuote,
// and returns the index of the last record-ending '\n' (or last, when
// there is none past from) and the quote state at the end of b.
func scanBoundary(b []byte, from int, inQuote bool, last int) (int, bool) {
	for from < len(b) {
		q := bytes.IndexByte(b[from:], '"')
		if inQuote {
			if q < 0 {
				return last, true
			}
			from += q + 1
			inQuote = false
			continue
		}
		seg := b[from:]
		if q >= 0 {
			seg = seg[:q]
		}
		if k := bytes.LastIndexByte(seg, '\n'); k >= 0 {
			last = from + k
		}
		if q < 0 {
			return last, false
		}
		from += q + 1
		inQuote = true
	}
	return last, inQuote
}

// diagnose explains why buf, the start of one record longer than
// maxRecord, cannot be read: a quoting error in it, a quoted field that is
// never closed (found by reading on, without keeping, to the end of
// input), or a record that is simply too large.
func (s *splitter) diagnose(buf []byte) error {
	var res chunkResult
	spec := *s.spec
	spec.maxRecord = len(buf) // the limit is reported below, not here
	spec.process(buf, true, &res)
	if res.err != nil {
		return &splitError{res.err}
	}
	tooLarge := &ParseError{Line: 0, Err: ErrRecordTooLarge,
		Value: fmt.Sprintf("more than %d bytes", s.maxRecord)}
	if !res.incomplete || res.openQuoteLine < 0 {
		return &splitError{tooLarge}
	}
	// Read on, keeping nothing, to see whether the quote ever closes: at a
	// '"' that is not the first half of an escaped "" pair.
	quoteAtEnd := res.quoteAtEnd // the bytes so far end with a lone '"'
	for !s.eof {
		n, err := s.r.Read(buf[:cap(buf)])
		s.bytesIn += int64(n)
		if err == io.EOF {
			s.eof = true
		} else if err != nil {
			return err
		}
		b := buf[:n]
		if quoteAtEnd && n > 0 {
			if b[0] != '"' {
				return &splitError{tooLarge}
			}
			b, quoteAtEnd = b[1:], false
		}
		for {
			q := bytes.IndexByte(b, '"')
			if q < 0 {
				break
			}
			if q+1 == len(b) {
				quoteAtEnd = true
				break
			}
			if b[q+1] != '"' {
				return &splitError{tooLarge}
			}
			b = b[q+2:]
		}
	}
	if quoteAtEnd {
		return &splitError{tooLarge}
	}
	return &splitError{&ParseError{Line: res.openQuoteLine, Column: res.openQuoteCol, Err: ErrUnterminatedQuote}}
}
