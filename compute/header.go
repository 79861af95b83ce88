package compute

import (
	"bytes"
	"strings"
)

// splitRecord parses the record at in[i:] into unescaped fields. It is for
// the first record; data records take the faster path in process. It
// reads by the same grammar (see scanner) and returns the fields, where
// the record's content ends (before its line break), where the next
// record starts, the '\n' bytes it spans, and the record's first quoting
// error (strict mode), if any; perr is an unterminated quote.
func splitRecord(in []byte, i int, delim byte, lazy bool) (fields [][]byte, recEnd, next int, lines int64, qerr, perr *ParseError) {
	n := len(in)
	recEnd = -1
	for {
		col := len(fields)
		var f []byte
		fs := -1 // where the field's unquoted text starts, if it has any
		if i < n && in[i] == '"' {
			open := lines
			j := i + 1
			bad := false
			for {
				q := bytes.IndexByte(in[j:], '"')
				if q < 0 {
					return nil, 0, 0, 0, nil, &ParseError{Line: open, Column: columnLabel(nil, col), Err: ErrUnterminatedQuote}
				}
				f = append(f, in[j:j+q]...)
				j += q
				k := j + 1 // the byte after the quote
				if k < n && in[k] == '"' {
					f = append(f, '"')
					j += 2
					continue
				}
				if k == n || in[k] == delim || in[k] == '\n' || in[k] == '\r' && (k+1 == n || in[k+1] == '\n') {
					break
				}
				if !lazy {
					bad = true
					break
				}
				f = append(f, '"') // the quote is data
				j = k
			}
			lines += int64(bytes.Count(in[i+1:j], nl))
			i = j + 1
			if bad {
				if qerr == nil {
					qerr = &ParseError{Line: lines, Column: columnLabel(nil, col), Err: ErrQuote}
				}
				fs = i // the field goes on unquoted
			} else if i < n && in[i] == '\r' {
				recEnd = i
				i++
			}
			if f == nil {
				f = []byte{}
			}
		} else {
			fs = i
		}
		if fs >= 0 {
			for i < n && in[i] != delim && in[i] != '\n' {
				if in[i] == '"' && !lazy && qerr == nil {
					qerr = &ParseError{Line: lines, Column: columnLabel(nil, col), Err: ErrBareQuote}
				}
				i++
			}
			text := in[fs:i]
			if (i == n || in[i] == '\n') && i > fs && in[i-1] == '\r' {
				text = text[:len(text)-1]
				recEnd = i - 1
			}
			if f == nil {
				f = text
			} else {
				f = append(f, text...)
			}
		}
		fields = append(fields, f)
		if i < n && in[i] == delim {
			i++
			continue
		}
		if recEnd < 0 {
			recEnd = i
		}
		if i < n {
			i++
			lines++
		}
		return fields, recEnd, i, lines, qerr, nil
	}
}

// trimBlank trims the spaces and tabs around s.
func trimBlank(s []byte) []byte {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// equalFoldASCII is bytes.EqualFold limited to ASCII, so that look-alikes
// such as the Kelvin sign (K) never match a plain 'k'.
func equalFoldASCII(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// matchColumn reports whether header field f names the column want.
func matchColumn(f []byte, want string) bool {
	return equalFoldASCII(trimBlank(f), []byte(want))
}

// layout is what the first record says about the input.
type layout struct {
	header    bool
	mass, vel int
	labels    []string
}

// readLayout decides, from the first record's fields, whether it is a
// header and where mass and velocity are.
func readLayout(fields [][]byte, o Options) (layout, *ParseError) {
	mode := o.Header
	if mode == HeaderAuto {
		mode = HeaderPresent
		named := false
		for _, f := range fields {
			if matchColumn(f, o.MassColumn) || matchColumn(f, o.VelocityColumn) || matchColumn(f, o.MomentumColumn) {
				named = true
			}
		}
		if !named && len(fields) >= 2 {
			if _, err := parseNumber(fields[0]); err == nil {
				if _, err := parseNumber(fields[1]); err == nil {
					mode = HeaderAbsent
				}
			}
		}
	}
	if mode == HeaderAbsent {
		if len(fields) < 2 {
			return layout{}, &ParseError{Err: ErrMissingColumn,
				Value: "a headerless record needs mass and velocity as its first two fields"}
		}
		l := layout{mass: 0, vel: 1}
		for i := range fields {
			l.labels = append(l.labels, columnLabel(nil, i))
		}
		return l, nil
	}
	l := layout{header: true, mass: -1, vel: -1}
	for i, f := range fields {
		l.labels = append(l.labels, columnLabel(trimBlank(f), i))
	}
	for i, f := range fields {
		switch {
		case matchColumn(f, o.MassColumn):
			if l.mass >= 0 {
				return layout{}, &ParseError{Column: l.labels[i], Err: ErrDuplicateColumn,
					Value: "also column " + columnLabel(nil, l.mass)}
			}
			l.mass = i
		case matchColumn(f, o.VelocityColumn):
			if l.vel >= 0 {
				return layout{}, &ParseError{Column: l.labels[i], Err: ErrDuplicateColumn,
					Value: "also column " + columnLabel(nil, l.vel)}
			}
			l.vel = i
		case matchColumn(f, o.MomentumColumn):
			return layout{}, &ParseError{Column: l.labels[i], Err: ErrAlreadyProcessed}
		}
	}
	for _, c := range []struct {
		idx  int
		name string
	}{{l.mass, o.MassColumn}, {l.vel, o.VelocityColumn}} {
		if c.idx < 0 {
			return layout{}, &ParseError{Err: ErrMissingColumn,
				Value: "no column named " + quoteValue([]byte(c.name)) + " in header " + quoteValue(bytes.Join(fields, []byte{o.Delimiter}))}
		}
	}
	return l, nil
}

// csvField returns s as one CSV field, quoted if it must be.
func csvField(s string, delim byte) []byte {
	if s == "" || strings.ContainsAny(s, "\"\r\n") || strings.IndexByte(s, delim) >= 0 || s[0] == ' ' || s[0] == '\t' {
		return []byte(`"` + strings.ReplaceAll(s, `"`, `""`) + `"`)
	}
	return []byte(s)
}
