package compute

import (
	"bytes"
	"math"
	"math/bits"
	"strconv"
	"unsafe"
)

// pow10 holds the powers of ten that float64 represents exactly.
var pow10 = [...]float64{
	1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
	1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
}

// parseNumber parses a plain decimal number, ignoring spaces and tabs
// around it. The grammar is [+-]? (D+ (. D*)? | . D+) ([eE] [+-]? D+)?.
// The result is the float64 nearest to the literal, exactly as
// strconv.ParseFloat rounds it; on failure the error is one of the
// value sentinels (ErrEmpty, ErrNotNumber, ...).
func parseNumber(s []byte) (float64, error) {
	f, _, _, err := parseDecimal(s)
	return f, err
}

// parseDecimal is parseNumber that also returns, when exact is set, the
// literal as mant × 10^exp with mant < 2^53: the float64 is then exact
// arithmetic on those two, which formatting can take advantage of.
func parseDecimal(s []byte) (f float64, mant uint64, exp int, err error) {
	// Trim spaces and tabs.
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	if len(s) == 0 {
		return 0, 0, 0, ErrEmpty
	}
	i := 0
	neg := false
	if s[0] == '+' || s[0] == '-' {
		neg = s[0] == '-'
		i++
	}
	digits := 0  // significant digits accumulated into mant
	dropped := 0 // digits not accumulated (mant full)
	sawDigit := false
	if len(s)-i <= 19 {
		// Too short to overflow mant: no digit counting needed.
		j := i
		for ; i < len(s) && s[i]-'0' <= 9; i++ {
			mant = mant*10 + uint64(s[i]-'0')
		}
		sawDigit = i > j
		if i < len(s) && s[i] == '.' {
			i++
			j = i
			for ; i < len(s) && s[i]-'0' <= 9; i++ {
				mant = mant*10 + uint64(s[i]-'0')
			}
			exp = j - i
			sawDigit = sawDigit || i > j
		}
	} else {
		for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
			sawDigit = true
			if digits < 19 {
				mant = mant*10 + uint64(s[i]-'0')
				if mant != 0 {
					digits++
				}
			} else {
				dropped++
				exp++
			}
		}
		if i < len(s) && s[i] == '.' {
			i++
			for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
				sawDigit = true
				if digits < 19 {
					mant = mant*10 + uint64(s[i]-'0')
					if mant != 0 {
						digits++
					}
					exp--
				} else {
					dropped++
				}
			}
		}
	}
	if !sawDigit {
		return 0, 0, 0, classify(s)
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		eneg := false
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			eneg = s[i] == '-'
			i++
		}
		if i == len(s) || s[i] < '0' || s[i] > '9' {
			return 0, 0, 0, classify(s)
		}
		e := 0
		for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
			if e < 100000 {
				e = e*10 + int(s[i]-'0')
			}
		}
		if eneg {
			e = -e
		}
		exp += e
	}
	if i != len(s) {
		return 0, 0, 0, classify(s)
	}
	// Exact fast path (Clinger): an integer below 2^53 and a power of ten
	// that float64 holds exactly give a correctly rounded quotient/product.
	if dropped == 0 && mant <= 1<<53 {
		f = float64(mant)
		switch {
		case exp == 0:
		case exp < 0 && exp >= -22:
			f /= pow10[-exp]
		case exp > 0 && exp <= 22:
			f *= pow10[exp]
		default:
			f, err = slowParse(s)
			return f, 0, 0, err
		}
		if neg {
			f = -f
		}
		return f, mant, exp, nil
	}
	f, err = slowParse(s)
	return f, 0, 0, err
}

// slowParse handles what the fast path cannot; s is already validated.
func slowParse(s []byte) (float64, error) {
	f, err := strconv.ParseFloat(unsafe.String(unsafe.SliceData(s), len(s)), 64)
	if err != nil || math.IsInf(f, 0) {
		return 0, ErrRange
	}
	return f, nil
}

// classify explains why s (trimmed, non-empty) is not a plain decimal number.
func classify(s []byte) error {
	body := s
	if body[0] == '+' || body[0] == '-' {
		body = body[1:]
	}
	lower := bytes.ToLower(body)
	switch {
	case bytes.Equal(lower, []byte("nan")) || bytes.Equal(lower, []byte("inf")) ||
		bytes.Equal(lower, []byte("infinity")):
		return ErrNaNInf
	case len(lower) > 1 && lower[0] == '0' && lower[1] == 'x':
		return ErrHex
	case bytes.IndexByte(body, '_') >= 0 && onlyNumberBytes(body, '_'):
		return ErrUnderscore
	case isGrouped(body, ',', '.') || isGrouped(body, '.', ',') || isGrouped(body, ' ', '.') ||
		isGrouped(body, '\'', '.'):
		return ErrThousands
	case isDecimalComma(body):
		return ErrDecimalComma
	}
	return ErrNotNumber
}

// onlyNumberBytes reports whether s holds only digits, '.', exponent
// characters and extra.
func onlyNumberBytes(s []byte, extra byte) bool {
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-' || c == extra) {
			return false
		}
	}
	return true
}

// isGrouped reports whether s looks like 1,234,567 (sep ',') with an
// optional fraction after point: one to three digits, then groups of
// exactly three.
func isGrouped(s []byte, sep, point byte) bool {
	if p := bytes.IndexByte(s, point); p >= 0 {
		if !allDigits(s[p+1:]) || p+1 == len(s) {
			return false
		}
		s = s[:p]
	}
	groups := bytes.Split(s, []byte{sep})
	if len(groups) < 2 || len(groups[0]) < 1 || len(groups[0]) > 3 || !allDigits(groups[0]) {
		return false
	}
	for _, g := range groups[1:] {
		if len(g) != 3 || !allDigits(g) {
			return false
		}
	}
	return true
}

// isDecimalComma reports whether s looks like 3,14 (digits, one comma,
// digits), possibly with '.' thousands separators before the comma.
func isDecimalComma(s []byte) bool {
	c := bytes.IndexByte(s, ',')
	if c <= 0 || c == len(s)-1 || !allDigits(s[c+1:]) {
		return false
	}
	intPart := s[:c]
	return allDigits(intPart) || isGrouped(intPart, '.', 0)
}

func allDigits(s []byte) bool {
	if len(s) == 0 {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// appendShortest appends f in the shortest form that parses back to f,
// styled as encoding/json writes a float64: plain notation for
// magnitudes in [1e-6, 1e21), otherwise an exponent without leading
// zeros (1e+21, 1.5e-7). Negative zero is written as -0.
func appendShortest(b []byte, f float64) []byte {
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// Turn e-07 into e-7, as encoding/json does.
		n := len(b)
		if n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

// appendProduct appends p = m×v, where m = mm×10^me and v = vm×10^ve as
// parseDecimal returned them, in the form appendShortest gives. When the
// exact decimal product has at most 15 significant digits and rounds to p,
// it is the only such decimal that does (float64 tells 15-digit decimals
// apart), hence the shortest form of p, and is written directly.
func appendProduct(b []byte, p float64, mm uint64, me int, vm uint64, ve int) []byte {
	hi, d := bits.Mul64(mm, vm)
	e := me + ve
	abs := math.Abs(p)
	if hi != 0 || d >= 1e15 || e < -22 || e > 22 || abs < 1e-6 || abs >= 1e21 {
		return appendShortest(b, p)
	}
	q := float64(d)
	if e < 0 {
		q /= pow10[-e]
	} else {
		q *= pow10[e]
	}
	if q != abs {
		return appendShortest(b, p)
	}
	if math.Signbit(p) {
		b = append(b, '-')
	}
	// Strip trailing zeros: d×10^e stays the same value.
	for d != 0 && d%10 == 0 {
		d /= 10
		e++
	}
	if d == 0 {
		return append(b, '0')
	}
	// d has at most 15 digits: write them two at a time, backwards.
	var buf [16]byte
	k := len(buf)
	for d >= 100 {
		q := d / 100
		r := d - q*100
		k -= 2
		buf[k], buf[k+1] = digitPairs[2*r], digitPairs[2*r+1]
		d = q
	}
	if d >= 10 {
		k -= 2
		buf[k], buf[k+1] = digitPairs[2*d], digitPairs[2*d+1]
	} else {
		k--
		buf[k] = byte('0' + d)
	}
	digits := buf[k:]
	if e >= 0 {
		b = append(b, digits...)
		for ; e > 0; e-- {
			b = append(b, '0')
		}
		return b
	}
	point := len(digits) + e // digits before the point
	if point <= 0 {
		b = append(b, '0', '.')
		for ; point < 0; point++ {
			b = append(b, '0')
		}
		return append(b, digits...)
	}
	b = append(b, digits[:point]...)
	b = append(b, '.')
	return append(b, digits[point:]...)
}

const digitPairs = "00010203040506070809" +
	"10111213141516171819" +
	"20212223242526272829" +
	"30313233343536373839" +
	"40414243444546474849" +
	"50515253545556575859" +
	"60616263646566676869" +
	"70717273747576777879" +
	"80818283848586878889" +
	"90919293949596979899"
