package compute

import (
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"regexp"
	"strconv"
	"testing"
)

func TestParseNumber(t *testing.T) {
	tests := []struct {
		in   string
		want float64
		err  error
	}{
		{"12", 12, nil},
		{"-3.5", -3.5, nil},
		{"+.5", 0.5, nil},
		{"5.", 5, nil},
		{"6.02e23", 6.02e23, nil},
		{"6.02E+23", 6.02e23, nil},
		{"1e-3", 0.001, nil},
		{"017", 17, nil},
		{"  42\t", 42, nil},
		{"\t-0", math.Copysign(0, -1), nil},
		{"0.1", 0.1, nil},
		{"123456789012345678901234567890", 123456789012345678901234567890, nil},
		{"0.000000000000000000000000000001", 1e-30, nil},
		{"9007199254740993", 9007199254740993, nil}, // 2^53+1 rounds to even
		{"4.9e-324", 5e-324, nil},
		{"2.2250738585072011e-308", 2.2250738585072011e-308, nil},
		{"1e-400", 0, nil}, // underflow is fine
		{"1.7976931348623157e308", math.MaxFloat64, nil},
		{"1e99999999999", 0, ErrRange},
		{"1.8e308", 0, ErrRange},
		{"-1.8e308", 0, ErrRange},
		{"", 0, ErrEmpty},
		{"   ", 0, ErrEmpty},
		{"abc", 0, ErrNotNumber},
		{"1.2.3", 0, ErrNotNumber},
		{"1e", 0, ErrNotNumber},
		{"e5", 0, ErrNotNumber},
		{".", 0, ErrNotNumber},
		{"+", 0, ErrNotNumber},
		{"--1", 0, ErrNotNumber},
		{"1 2", 0, ErrNotNumber},
		{"1e+", 0, ErrNotNumber},
		{"１２", 0, ErrNotNumber}, // fullwidth digits
		{"0x1p-2", 0, ErrHex},
		{"0X1A", 0, ErrHex},
		{"-0x10", 0, ErrHex},
		{"1_000", 0, ErrUnderscore},
		{"1_0.5", 0, ErrUnderscore},
		{"NaN", 0, ErrNaNInf},
		{"nan", 0, ErrNaNInf},
		{"Inf", 0, ErrNaNInf},
		{"-inf", 0, ErrNaNInf},
		{"+Infinity", 0, ErrNaNInf},
		{"1,000", 0, ErrThousands},
		{"1,000,000.25", 0, ErrThousands},
		{"1 000", 0, ErrThousands},
		{"1'000", 0, ErrThousands},
		{"1.000.000", 0, ErrThousands},
		{"1.000,5", 0, ErrThousands},
		{"3,14", 0, ErrDecimalComma},
		{"-0,5", 0, ErrDecimalComma},
		{"1,0000", 0, ErrDecimalComma},
	}
	for _, tt := range tests {
		got, err := parseNumber([]byte(tt.in))
		if !errors.Is(err, tt.err) || (err == nil) != (tt.err == nil) {
			t.Errorf("parseNumber(%q) error = %v, want %v", tt.in, err, tt.err)
			continue
		}
		if err == nil && math.Float64bits(got) != math.Float64bits(tt.want) {
			t.Errorf("parseNumber(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

// plainNumber is the accepted grammar, written independently of the parser.
var plainNumber = regexp.MustCompile(`^[ \t]*[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?[ \t]*$`)

// FuzzParseNumber checks parseNumber against the grammar and
// strconv.ParseFloat: it accepts exactly the plain decimal numbers, with
// the same float64 ParseFloat gives, and never panics.
func FuzzParseNumber(f *testing.F) {
	for _, s := range []string{"12", "-3.5", "+.5", "5.", "6.02e23", "017", " 1 ", "0x1p3", "1_0", "NaN",
		"1,5", "1e400", "1e-400", "9007199254740993", "0.1e-22", "123456789012345678901e-5"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseNumber([]byte(s))
		if !plainNumber.MatchString(s) {
			if err == nil {
				t.Fatalf("parseNumber(%q) accepted a value outside the grammar: %v", s, got)
			}
			return
		}
		want, perr := strconv.ParseFloat(string(trimBlank([]byte(s))), 64)
		if perr != nil && math.IsInf(want, 0) {
			if !errors.Is(err, ErrRange) {
				t.Fatalf("parseNumber(%q) = %v, %v; want ErrRange", s, got, err)
			}
			return
		}
		if err != nil || math.Float64bits(got) != math.Float64bits(want) {
			t.Fatalf("parseNumber(%q) = %v, %v; want %v", s, got, err, want)
		}
	})
}

func TestAppendShortestMatchesJSON(t *testing.T) {
	values := []float64{0, 1, -1, 1e6, 1e20, 1e21, 1e-6, 1e-7, 0.020000000000000004, 1.5e-7,
		123456789.123, -1e300, 5e-324, math.MaxFloat64, 1e21 - 65536, 0.000001, 0.0000009999999}
	r := rand.New(rand.NewPCG(3, 4))
	for range 20000 {
		values = append(values, math.Float64frombits(r.Uint64()))
	}
	for _, v := range values {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			continue
		}
		want, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendShortest(nil, v); string(got) != string(want) {
			t.Errorf("appendShortest(%v) = %s, want %s", v, got, want)
		}
	}
	if got := appendShortest(nil, math.Copysign(0, -1)); string(got) != "-0" {
		t.Errorf("appendShortest(-0) = %s, want -0", got)
	}
}

// TestAppendProduct checks the exact-decimal fast path against the
// general one on products of short decimals, where it applies most.
func TestAppendProduct(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	lit := func() string {
		switch r.IntN(4) {
		case 0:
			return strconv.Itoa(r.IntN(100000) - 50000)
		case 1:
			return strconv.FormatFloat(r.Float64()*math.Pow(10, float64(r.IntN(12)-6)), 'f', r.IntN(8), 64)
		case 2:
			return strconv.FormatFloat(r.NormFloat64()*1e4, 'e', r.IntN(6), 64)
		}
		return strconv.FormatFloat(r.Float64(), 'f', -1, 64)
	}
	cases := [][2]string{{"0.1", "0.2"}, {"0.1", "3"}, {"1.1", "1.1"}, {"-0", "5"}, {"0", "-5"},
		{"1e-3", "1e-4"}, {"999999999999999", "1"}, {"1e10", "1e10"}, {"1.50", "2.0"}, {"0.001", "299792458"}}
	for range 200000 {
		cases = append(cases, [2]string{lit(), lit()})
	}
	for _, c := range cases {
		m, mm, me, err1 := parseDecimal([]byte(c[0]))
		v, vm, ve, err2 := parseDecimal([]byte(c[1]))
		if err1 != nil || err2 != nil {
			t.Fatalf("bad case %q: %v %v", c, err1, err2)
		}
		p := m * v
		got := appendProduct(nil, p, mm, me, vm, ve)
		if want := appendShortest(nil, p); string(got) != string(want) {
			t.Fatalf("%s × %s: appendProduct = %s, want %s", c[0], c[1], got, want)
		}
	}
}
