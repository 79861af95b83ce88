package compute

import (
	"errors"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Row errors: a row whose mass or velocity is not acceptable, whose
// fields are too few or too many, or whose quoting is invalid (strict
// mode). In OnErrorSkip mode such a row goes to the rejects and the run
// goes on.
var (
	ErrEmpty        = errors.New("empty value")
	ErrNotNumber    = errors.New("not a decimal number")
	ErrHex          = errors.New("hexadecimal numbers are not accepted")
	ErrUnderscore   = errors.New("underscores are not accepted in numbers")
	ErrNaNInf       = errors.New("NaN and infinity are not accepted")
	ErrThousands    = errors.New("thousands separators are not accepted")
	ErrDecimalComma = errors.New("decimal comma: use '.' as the decimal point")
	ErrRange        = errors.New("number out of float64 range")
	ErrOverflow     = errors.New("momentum overflows float64")
	ErrNegativeMass = errors.New("negative mass")
	ErrFieldCount   = errors.New("wrong number of fields")
	ErrBareQuote    = errors.New(`bare " in unquoted field`)
	ErrQuote        = errors.New(`extraneous character after closing "`)
)

// Structural errors: the file as a whole cannot be read as intended. They
// end the run in every mode.
var (
	ErrEmptyInput        = errors.New("empty input")
	ErrUTF16             = errors.New("input is UTF-16; convert it to UTF-8")
	ErrMissingColumn     = errors.New("missing column")
	ErrDuplicateColumn   = errors.New("duplicate column")
	ErrAlreadyProcessed  = errors.New("input already has a momentum column (already processed?)")
	ErrUnterminatedQuote = errors.New(`quoted field never closed`)
	ErrRecordTooLarge    = errors.New("record too large")
)

// IsStructural reports whether err is a structural error, one that ends a
// run even in OnErrorSkip mode. A quoting error in the first record ends
// it too, as that record decides the layout, but is a row error anywhere
// else.
func IsStructural(err error) bool {
	for _, s := range []error{ErrEmptyInput, ErrUTF16, ErrMissingColumn, ErrDuplicateColumn,
		ErrAlreadyProcessed, ErrUnterminatedQuote, ErrRecordTooLarge, ErrCorruptStream, ErrNoCodec} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// A ParseError reports bad input and where it is. Its text is always one
// line of valid UTF-8.
type ParseError struct {
	Line   int64  // 1-based physical line where the bad field or record starts
	Column string // header name, or the 1-based index when headerless; "" for the whole record
	Value  string // the offending value, escaped and cut short; "" when none
	Err    error  // the kind of error, one of the Err* sentinels
}

func (e *ParseError) Error() string {
	var b strings.Builder
	b.WriteString("line ")
	b.WriteString(strconv.FormatInt(e.Line, 10))
	if e.Column != "" {
		b.WriteString(", column ")
		b.WriteString(e.Column)
	}
	b.WriteString(": ")
	b.WriteString(e.Reason())
	return b.String()
}

// Reason is the error text without its position.
func (e *ParseError) Reason() string {
	if e.Value == "" {
		return e.Err.Error()
	}
	return e.Err.Error() + ": " + e.Value
}

func (e *ParseError) Unwrap() error { return e.Err }

// maxQuoted is how many bytes of a value an error message shows.
const maxQuoted = 40

// quoteValue returns v as a Go-quoted string, cut to maxQuoted bytes at a
// rune boundary, so it is one line of valid UTF-8 whatever v holds.
func quoteValue(v []byte) string {
	cut := false
	if len(v) > maxQuoted {
		n := maxQuoted
		for n > maxQuoted-utf8.UTFMax && !utf8.RuneStart(v[n]) {
			n--
		}
		v, cut = v[:n], true
	}
	q := strconv.Quote(string(v))
	if cut {
		q += "…"
	}
	return q
}

// columnLabel is how messages name a column: its header name, quoted when
// it needs to be, or its 1-based index.
func columnLabel(name []byte, index int) string {
	if name == nil {
		return strconv.Itoa(index + 1)
	}
	s := string(name)
	if s == "" || !utf8.ValidString(s) || strings.ContainsAny(s, "\"\r\n\t ,;") || strconv.Quote(s) != `"`+s+`"` {
		return quoteValue(name)
	}
	return s
}
