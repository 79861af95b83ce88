package compute

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"strconv"
)

// rowSpec is what a worker needs to turn data records into output rows.
// It is built once from the header and shared read-only.
type rowSpec struct {
	delim         byte
	mass, vel     int      // 0-based field indexes
	fields        int      // fields per record
	labels        []string // how messages name each field
	fixed         bool
	decimals      int
	skip          bool
	lazy          bool // quotes are read as encoding/csv's LazyQuotes reads them
	maxRecord     int
	stop          [256]bool // bytes that end an unquoted run: delimiter, '\n', '"'
	delimWord     uint64    // the delimiter in every byte of a word
	momentumField []byte    // the output header's extra field, quoted as needed
}

func newRowSpec(o Options) *rowSpec {
	s := &rowSpec{
		delim:     o.Delimiter,
		fixed:     o.FixedDecimals,
		decimals:  o.Decimals,
		skip:      o.OnError == OnErrorSkip,
		lazy:      o.Quotes == QuotesLazy,
		maxRecord: o.MaxRecordBytes,
	}
	s.stop[o.Delimiter] = true
	s.stop['\n'] = true
	s.stop['"'] = true
	s.delimWord = ones * uint64(o.Delimiter)
	return s
}

const (
	ones      = 0x0101010101010101
	highs     = 0x8080808080808080
	nlWord    = ones * '\n'
	quoteWord = ones * '"'
)

// skipUnquoted returns the index of the first delimiter, '\n' or '"' in
// in[i:], or len(in). It tests eight bytes at a time: a byte of w equal
// to c is a zero byte of w^c, and the lowest set bit of the zero-byte
// test is exact (false positives only arise above a true zero).
func (s *rowSpec) skipUnquoted(in []byte, i int) int {
	for ; i+8 <= len(in); i += 8 {
		w := binary.LittleEndian.Uint64(in[i:])
		a, b, c := w^s.delimWord, w^nlWord, w^quoteWord
		z := (a-ones)&^a | (b-ones)&^b | (c-ones)&^c
		if z &= highs; z != 0 {
			return i + bits.TrailingZeros64(z)/8
		}
	}
	for i < len(in) && !s.stop[in[i]] {
		i++
	}
	return i
}

// chunkResult is what processing one chunk produced.
type chunkResult struct {
	out      []byte
	rowsIn   int64
	rowsOut  int64
	rejected int64
	lines    int64       // physical lines the chunk spans ('\n' bytes consumed)
	rejects  []Reject    // Line relative to the chunk's first line
	err      *ParseError // Line relative to the chunk's first line

	// Set only when processing a partial chunk (see process).
	incomplete    bool
	openQuoteLine int64  // relative line of a quoted field the chunk ends in, or -1
	openQuoteCol  string // that field's column
}

// process turns the whole records in in into output rows appended to
// res.out. A chunk normally ends just after a record's '\n' or at the end
// of input; with partial set it may end inside its last record, which is
// then only checked for structure and reported through res.incomplete.
//
// Records are read by the grammar the splitter follows (see scanner). A
// quoting error makes its row bad, like a bad value: in fail mode the run
// ends there; in skip mode the row is rejected with the first such error
// in it, and reading goes on at the end of its record.
func (s *rowSpec) process(in []byte, partial bool, res *chunkResult) {
	out := res.out[:0]
	n := len(in)
	if want := 2*n + 64; cap(out) < want {
		// Output rows are the input plus a number: rarely twice as long.
		// One size for all full chunks keeps the buffers interchangeable.
		out = make([]byte, 0, max(want, 2*chunkSize+64))
	}
	var line int64
	i := 0
	for i < n {
		// Blank lines are skipped but counted.
		if in[i] == '\n' {
			line++
			i++
			continue
		}
		if in[i] == '\r' && i+1 < n && in[i+1] == '\n' {
			line++
			i += 2
			continue
		}
		start := i
		recLine := line
		field := 0
		var mv, vv []byte
		var mLine, vLine int64
		var qerr *ParseError // the record's first quoting error
		recEnd := -1
		for {
			fieldLine := line
			var content []byte
			fs := -1 // where the field's unquoted text starts, if it has any
			if i < n && in[i] == '"' {
				// Quoted field: find the quote that closes it, skipping ""
				// pairs (and, in lazy mode, quotes followed by text).
				j := i + 1
				bad := false
				for {
					q := bytes.IndexByte(in[j:], '"')
					if q < 0 {
						if partial {
							res.incomplete, res.openQuoteLine, res.openQuoteCol = true, fieldLine, s.label(field)
						} else {
							res.err = &ParseError{Line: fieldLine, Column: s.label(field), Err: ErrUnterminatedQuote}
						}
						res.out, res.lines = out, line
						return
					}
					j += q
					k := j + 1 // the byte after the quote
					if k < n && in[k] == '"' {
						j += 2
						continue
					}
					if k == n || k+1 == n && in[k] == '\r' {
						if partial { // the next byte decides
							res.incomplete, res.openQuoteLine, res.openQuoteCol = true, fieldLine, s.label(field)
							res.out, res.lines = out, line
							return
						}
						break // a quote at the end of input closes the field
					}
					if c := in[k]; c == s.delim || c == '\n' || c == '\r' && in[k+1] == '\n' {
						break
					}
					if s.lazy {
						j = k // the quote is data
						continue
					}
					bad = true
					break
				}
				content = in[i+1 : j]
				line += int64(bytes.Count(content, nl))
				i = j + 1
				if bad {
					if qerr == nil {
						qerr = &ParseError{Line: line, Column: s.label(field), Err: ErrQuote}
						if !s.skip {
							res.err = qerr
							res.out, res.lines = out, line
							return
						}
					}
					fs = i // the field goes on unquoted
				} else if i < n && in[i] == '\r' {
					recEnd = i // "\r\n", or '\r' at the end of input
					i++
				}
			} else {
				fs = i
			}
			if fs >= 0 {
				// Unquoted text, to the next delimiter or '\n'; a '"' in it
				// is a bare quote.
				i = s.skipUnquoted(in, fs)
				bare := false
				for i < n && in[i] == '"' {
					bare = true
					i = s.skipUnquoted(in, i+1)
				}
				if bare && !s.lazy && qerr == nil {
					qerr = &ParseError{Line: line, Column: s.label(field), Err: ErrBareQuote}
					if !s.skip {
						res.err = qerr
						res.out, res.lines = out, line
						return
					}
				}
				text := in[fs:i]
				// A '\r' before '\n' ends the line; so does one at the very
				// end of input, as in encoding/csv. Elsewhere it is data.
				if (i < n && in[i] == '\n' || i == n && !partial) && i > fs && in[i-1] == '\r' {
					text = text[:len(text)-1]
					recEnd = i - 1
				}
				if content == nil { // not the rest of a broken quoted field
					content = text
				}
			}
			switch field {
			case s.mass:
				mv, mLine = content, fieldLine
			case s.vel:
				vv, vLine = content, fieldLine
			}
			if i < n && in[i] == s.delim {
				field++
				i++
				continue
			}
			break
		}
		// i is at the record's '\n' or at the end of the chunk.
		if recEnd < 0 {
			recEnd = i
		}
		if i == n {
			if partial {
				res.incomplete, res.openQuoteLine = true, -1
				res.out, res.lines = out, line
				return
			}
		} else {
			i++
			line++
		}
		record := in[start:recEnd]
		if len(record) > s.maxRecord {
			res.err = &ParseError{Line: recLine, Err: ErrRecordTooLarge,
				Value: fmt.Sprintf("%d bytes, limit %d", len(record), s.maxRecord)}
			res.out, res.lines = out, line
			return
		}
		res.rowsIn++
		perr := qerr
		if perr != nil {
			// The quoting error is the row's.
		} else if field+1 != s.fields {
			perr = &ParseError{Line: recLine, Err: fmt.Errorf("%w: got %d, want %d", ErrFieldCount, field+1, s.fields)}
		} else {
			m, mm, me, merr := parseDecimal(mv)
			if merr == nil && m < 0 {
				merr = ErrNegativeMass
			}
			v, vm, ve, verr := parseDecimal(vv)
			switch {
			case merr != nil && (verr == nil || s.mass < s.vel):
				perr = &ParseError{Line: mLine, Column: s.labels[s.mass], Value: quoteValue(mv), Err: merr}
			case verr != nil:
				perr = &ParseError{Line: vLine, Column: s.labels[s.vel], Value: quoteValue(vv), Err: verr}
			default:
				p := m * v
				if math.IsInf(p, 0) {
					perr = &ParseError{Line: vLine, Column: s.labels[s.vel], Err: ErrOverflow,
						Value: quoteValue(mv) + " × " + quoteValue(vv)}
					break
				}
				out = append(out, record...)
				out = append(out, s.delim)
				if s.fixed {
					out = strconv.AppendFloat(out, p, 'f', s.decimals, 64)
				} else {
					out = appendProduct(out, p, mm, me, vm, ve)
				}
				out = append(out, '\n')
				res.rowsOut++
				continue
			}
		}
		if !s.skip {
			// The run ends here: the row is the error, not a reject, and
			// the counts are of the rows before it.
			res.err = perr
			res.rowsIn--
			res.out, res.lines = out, line
			return
		}
		res.rejected++
		res.rejects = append(res.rejects, Reject{Line: perr.Line, Column: perr.Column, Reason: perr.Reason(), Record: string(record)})
	}
	res.out, res.lines = out, line
}

var nl = []byte{'\n'}

// label names field i in messages.
func (s *rowSpec) label(i int) string {
	if i < len(s.labels) {
		return s.labels[i]
	}
	return strconv.Itoa(i + 1)
}
