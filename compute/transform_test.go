package compute

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"io"
	"math"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
	"unicode/utf8"
)

// transformTests follow encoding/csv's readTests: an input, options, and
// either the whole output or the error's sentinel and position.
var transformTests = []struct {
	name    string
	in      string
	opts    Options
	out     string
	err     error  // sentinel the error wraps
	line    int64  // expected ParseError.Line
	column  string // expected ParseError.Column
	rowsIn  int64  // rows read; a run that fails at a bad row counts those before it
	noCheck bool   // skip the stats check
}{
	{name: "Simple", in: "mass,velocity\n2,3\n", out: "mass,velocity,momentum\n2,3,6\n", rowsIn: 1},
	{name: "NoFinalNewline", in: "mass,velocity\n2,3", out: "mass,velocity,momentum\n2,3,6\n", rowsIn: 1},
	{name: "CRLF", in: "mass,velocity\r\n2,3\r\n4,5\r\n", out: "mass,velocity,momentum\n2,3,6\n4,5,20\n", rowsIn: 2},
	{name: "CRAtEOF", in: "mass,velocity\n2,3\r", out: "mass,velocity,momentum\n2,3,6\n", rowsIn: 1},
	{name: "LoneCRIsData", in: "note,mass,velocity\na\rb,2,3\n", out: "note,mass,velocity,momentum\na\rb,2,3,6\n", rowsIn: 1},
	{name: "BlankLines", in: "\n\nmass,velocity\n\n2,3\r\n\r\n\n4,5\n\n", out: "mass,velocity,momentum\n2,3,6\n4,5,20\n", rowsIn: 2},
	{name: "BlankLinesCountForErrors", in: "\nmass,velocity\n\n2,x\n", err: ErrNotNumber, line: 4, column: "velocity", rowsIn: 0},
	{name: "HeaderOnly", in: "mass,velocity\n", out: "mass,velocity,momentum\n"},
	{name: "BOM", in: "\xEF\xBB\xBFmass,velocity\n2,3\n", out: "mass,velocity,momentum\n2,3,6\n", rowsIn: 1},
	{name: "BOMQuotedHeader", in: "\xEF\xBB\xBF\"mass\",\"velo\ncity\"\n2,3\n", opts: Options{VelocityColumn: "velo\ncity"}, out: "\"mass\",\"velo\ncity\",momentum\n2,3,6\n", rowsIn: 1},
	{name: "CaseAndBlanks", in: " MASS\t,\tVelocity \n2,3\n", out: " MASS\t,\tVelocity ,momentum\n2,3,6\n", rowsIn: 1},
	{name: "QuotedHeader", in: "\"mass\",\"velo\"\"city\"\n2,3\n", opts: Options{VelocityColumn: `velo"city`}, out: "\"mass\",\"velo\"\"city\",momentum\n2,3,6\n", rowsIn: 1},
	{name: "LookAlikesDoNotMatch", in: "maſs,velocity\n2,3\n", err: ErrMissingColumn, line: 1},
	{name: "KelvinSignDoesNotMatch", in: "mass,velocity,\u212Aind\n2,3,x\n", opts: Options{MomentumColumn: "kind"}, out: "mass,velocity,\u212Aind,kind\n2,3,x,6\n", rowsIn: 1},
	{name: "PassThroughOrder", in: "a,velocity,b,mass,c\n1,3,\"x,y\",2,\"\"\"q\"\"\"\n", out: "a,velocity,b,mass,c,momentum\n1,3,\"x,y\",2,\"\"\"q\"\"\",6\n", rowsIn: 1},
	{name: "PassThroughBytes", in: "a,mass,velocity\n\xff\x00\xfe,2,3\n", out: "a,mass,velocity,momentum\n\xff\x00\xfe,2,3,6\n", rowsIn: 1},
	{name: "QuotedNewlines", in: "a,mass,velocity\n\"1\n2\r\n3\",2,3\n", out: "a,mass,velocity,momentum\n\"1\n2\r\n3\",2,3,6\n", rowsIn: 1},
	{name: "LineAfterQuotedNewlines", in: "a,mass,velocity\n\"1\n2\",2,3\n,1,y\n", err: ErrNotNumber, line: 4, column: "velocity", rowsIn: 1},
	{name: "FieldLineInsideRecord", in: "mass,a,velocity\n1,\"x\ny\",z\n", err: ErrNotNumber, line: 3, column: "velocity", rowsIn: 0},
	{name: "QuotedNumbers", in: "mass,velocity\n\"2\",\" 3 \"\n", out: "mass,velocity,momentum\n\"2\",\" 3 \",6\n", rowsIn: 1},
	{name: "MomentumNameQuoted", in: "mass,velocity\n2,3\n", opts: Options{MomentumColumn: "p, kg·m/s"}, out: "mass,velocity,\"p, kg·m/s\"\n2,3,6\n", rowsIn: 1},
	{name: "Semicolon", in: "mass;velocity;x\n2;3;a,b\n", opts: Options{Delimiter: ';'}, out: "mass;velocity;x;momentum\n2;3;a,b;6\n", rowsIn: 1},
	{name: "Tab", in: "mass\tvelocity\n2\t3\n", opts: Options{Delimiter: '\t'}, out: "mass\tvelocity\tmomentum\n2\t3\t6\n", rowsIn: 1},
	{name: "CustomNames", in: "m,v\n2,3\n", opts: Options{MassColumn: "M", VelocityColumn: "V", MomentumColumn: "p"}, out: "m,v,p\n2,3,6\n", rowsIn: 1},
	{name: "Shortest", in: "mass,velocity\n0.1,0.2\n1e3,1e3\n1e11,1e10\n1e-4,1e-3\n-0,1\n", out: "mass,velocity,momentum\n0.1,0.2,0.020000000000000004\n1e3,1e3,1000000\n1e11,1e10,1e+21\n1e-4,1e-3,1.0000000000000001e-7\n-0,1,-0\n", rowsIn: 5},
	{name: "Decimals", in: "mass,velocity\n0.1,0.2\n1,-0.0004\n", opts: Options{FixedDecimals: true, Decimals: 3}, out: "mass,velocity,momentum\n0.1,0.2,0.020\n1,-0.0004,-0.000\n", rowsIn: 2},
	{name: "Underflow", in: "mass,velocity\n1e-200,1e-200\n", out: "mass,velocity,momentum\n1e-200,1e-200,0\n", rowsIn: 1},
	{name: "Subnormal", in: "mass,velocity\n1e-300,1e-20\n", out: "mass,velocity,momentum\n1e-300,1e-20,1e-320\n", rowsIn: 1},

	// Headerless input, as the original program read it.
	{name: "Headerless", in: "2,3\n4,5\n", out: "2,3,6\n4,5,20\n", rowsIn: 2},
	{name: "HeaderlessExtraFields", in: "2,3,x\n4,5,y\n", out: "2,3,x,6\n4,5,y,20\n", rowsIn: 2},
	{name: "HeaderlessError", in: "2,3\n4,x\n", err: ErrNotNumber, line: 2, column: "2", rowsIn: 1},
	{name: "ForcedHeader", in: "2,3\n4,5\n", opts: Options{Header: HeaderPresent}, err: ErrMissingColumn, line: 1},
	{name: "ForcedHeaderless", in: "mass,velocity\n4,5\n", opts: Options{Header: HeaderAbsent}, err: ErrNotNumber, line: 1, column: "1", rowsIn: 0},
	{name: "ForcedHeaderlessOneField", in: "4\n", opts: Options{Header: HeaderAbsent}, err: ErrMissingColumn, line: 1},
	{name: "NotHeaderNotNumbers", in: "a,b\n1,2\n", err: ErrMissingColumn, line: 1},

	// Bad values.
	{name: "Empty", in: "mass,velocity\n,3\n", err: ErrEmpty, line: 2, column: "mass", rowsIn: 0},
	{name: "NegativeMass", in: "mass,velocity\n-1,3\n", err: ErrNegativeMass, line: 2, column: "mass", rowsIn: 0},
	{name: "NegativeZeroMassIsFine", in: "mass,velocity\n-0,3\n", out: "mass,velocity,momentum\n-0,3,-0\n", rowsIn: 1},
	{name: "Overflow", in: "mass,velocity\n1e300,1e300\n", err: ErrOverflow, line: 2, column: "velocity", rowsIn: 0},
	{name: "Range", in: "mass,velocity\n1e400,1\n", err: ErrRange, line: 2, column: "mass", rowsIn: 0},
	{name: "Hex", in: "mass,velocity\n0x10,1\n", err: ErrHex, line: 2, column: "mass", rowsIn: 0},
	{name: "DecimalComma", in: "mass,velocity\n1,\"2,5\"\n", err: ErrDecimalComma, line: 2, column: "velocity", rowsIn: 0},
	{name: "LeftmostBadFieldFirst", in: "velocity,mass\nx,y\n", err: ErrNotNumber, line: 2, column: "velocity", rowsIn: 0},
	{name: "FieldCountShort", in: "mass,velocity,x\n1,2\n", err: ErrFieldCount, line: 2, rowsIn: 0},
	{name: "FieldCountLong", in: "mass,velocity\n1,2,3\n", err: ErrFieldCount, line: 2, rowsIn: 0},

	// Structural errors.
	{name: "EmptyInput", in: "", err: ErrEmptyInput, line: 1},
	{name: "OnlyBlankLines", in: "\n\r\n\n", err: ErrEmptyInput, line: 1},
	{name: "OnlyBOM", in: "\xEF\xBB\xBF", err: ErrEmptyInput, line: 1},
	{name: "UTF16LE", in: "\xFF\xFEm\x00", err: ErrUTF16, line: 1},
	{name: "UTF16BE", in: "\xFE\xFF\x00m", err: ErrUTF16, line: 1},
	{name: "UTF16NoBOM", in: "m\x00a\x00", err: ErrUTF16, line: 1},
	{name: "DuplicateMass", in: "mass,velocity,Mass\n", err: ErrDuplicateColumn, line: 1, column: "Mass"},
	{name: "DuplicateVelocity", in: "velocity,mass, velocity\n", err: ErrDuplicateColumn, line: 1, column: "velocity"},
	{name: "AlreadyProcessed", in: "mass,velocity,MOMENTUM\n", err: ErrAlreadyProcessed, line: 1, column: "MOMENTUM"},
	{name: "MissingVelocity", in: "mass,speed\n1,2\n", err: ErrMissingColumn, line: 1},
	{name: "BareQuote", in: "mass,velocity,a\n1,2,x\"y\n", err: ErrBareQuote, line: 2, column: "a"},
	{name: "BareQuoteInHeader", in: "mass,velo\"city\n", err: ErrBareQuote, line: 1, column: "2"},
	{name: "ExtraneousQuote", in: "mass,velocity,a\n1,2,\"x\"y\n", err: ErrQuote, line: 2, column: "a"},
	{name: "SpaceBeforeQuote", in: "mass,velocity,a\n1,2, \"x\"\n", err: ErrBareQuote, line: 2, column: "a"},
	{name: "ExtraneousQuoteAfterNewline", in: "mass,a,velocity\n1,\"x\ny\"z,2\n", err: ErrQuote, line: 3, column: "a"},
	{name: "ExtraneousQuoteCR", in: "mass,a,velocity\n1,\"x\"\ry,2\n", err: ErrQuote, line: 2, column: "a"},
	{name: "BareQuoteThenFine", in: "mass,velocity,a\n1,2,x\n1,2,x\"y\n", err: ErrBareQuote, line: 3, column: "a", rowsIn: 1},
	{name: "UnterminatedQuote", in: "mass,velocity,a\n1,2,x\n1,2,\"open\nmore\nlines\n", err: ErrUnterminatedQuote, line: 3, column: "a", noCheck: true},
	{name: "UnterminatedQuoteInHeader", in: "mass,\"velocity\n1,2\n", err: ErrUnterminatedQuote, line: 1, column: "2"},
	{name: "UnterminatedAfterBrokenQuote", in: "mass,velocity,a\n1,2,\"x\"y\n1,2,\"open\n", opts: Options{OnError: OnErrorSkip, Rejects: io.Discard, NewRejectWriter: newCSVRejects}, err: ErrUnterminatedQuote, line: 3, column: "a", noCheck: true},

	// Lazy quotes, as encoding/csv's LazyQuotes reads them.
	{name: "LazyBareQuote", in: "height,mass,velocity\n5'10\",2,3\n", opts: Options{Quotes: QuotesLazy}, out: "height,mass,velocity,momentum\n5'10\",2,3,6\n", rowsIn: 1},
	{name: "LazyTextAfterQuote", in: "a,mass,velocity\n\"x\"y\",2,3\n", opts: Options{Quotes: QuotesLazy}, out: "a,mass,velocity,momentum\n\"x\"y\",2,3,6\n", rowsIn: 1},
	{name: "LazyQuotedFieldStaysOpen", in: "a,mass,velocity\n\"x\" y,z\n\",2,3\n", opts: Options{Quotes: QuotesLazy}, out: "a,mass,velocity,momentum\n\"x\" y,z\n\",2,3,6\n", rowsIn: 1},
	{name: "LazySpaceBeforeQuote", in: "a,mass,velocity\n \"x\",2,3\r\n", opts: Options{Quotes: QuotesLazy}, out: "a,mass,velocity,momentum\n \"x\",2,3,6\n", rowsIn: 1},
	{name: "LazyQuoteCR", in: "a,mass,velocity\n\"x\"\ry\",2,3\n", opts: Options{Quotes: QuotesLazy}, out: "a,mass,velocity,momentum\n\"x\"\ry\",2,3,6\n", rowsIn: 1},
	{name: "LazyHeader", in: "n\"ote,mass,\"velo\"city\"\n1,2,3\n", opts: Options{Quotes: QuotesLazy, VelocityColumn: `velo"city`}, out: "n\"ote,mass,\"velo\"city\",momentum\n1,2,3,6\n", rowsIn: 1},
	{name: "LazyQuotedNumber", in: "mass,velocity\n\"2\",\"3\"\n", opts: Options{Quotes: QuotesLazy}, out: "mass,velocity,momentum\n\"2\",\"3\",6\n", rowsIn: 1},
	{name: "LazyQuoteInNumber", in: "mass,velocity\n2\",3\n", opts: Options{Quotes: QuotesLazy}, err: ErrNotNumber, line: 2, column: "mass"},
	{name: "LazyQuoteInQuotedNumber", in: "mass,velocity\n1,\"2\"5\"\n", opts: Options{Quotes: QuotesLazy}, err: ErrNotNumber, line: 2, column: "velocity"},
	{name: "LazyUnterminated", in: "mass,velocity,a\n1,2,\"ab\"c\n3,4,5\n", opts: Options{Quotes: QuotesLazy}, err: ErrUnterminatedQuote, line: 2, column: "a", noCheck: true},
	{name: "LazyFieldCount", in: "mass,velocity,a\n1,2, \"b,c\"\n", opts: Options{Quotes: QuotesLazy}, err: ErrFieldCount, line: 2},
	{name: "RecordTooLarge", in: "mass,velocity,a\n1,2,0123456789012345678901234567890123456789\n", opts: Options{MaxRecordBytes: 20}, err: ErrRecordTooLarge, line: 2},
	{name: "HeaderTooLarge", in: "mass,velocity,a0123456789012345678901234567890123456789\n", opts: Options{MaxRecordBytes: 20}, err: ErrRecordTooLarge, line: 1},
}

func TestTransform(t *testing.T) {
	for _, tt := range transformTests {
		for _, workers := range []int{1, 3} {
			t.Run(tt.name, func(t *testing.T) {
				opts := tt.opts
				opts.Workers = workers
				var out bytes.Buffer
				st, err := Transform(context.Background(), &out, strings.NewReader(tt.in), opts)
				if tt.err != nil {
					var perr *ParseError
					if !errors.As(err, &perr) || !errors.Is(err, tt.err) {
						t.Fatalf("error = %v, want a ParseError wrapping %v", err, tt.err)
					}
					if perr.Line != tt.line || perr.Column != tt.column {
						t.Errorf("error at line %d, column %q; want line %d, column %q (%v)", perr.Line, perr.Column, tt.line, tt.column, err)
					}
					checkMessage(t, err.Error())
				} else {
					if err != nil {
						t.Fatalf("unexpected error: %v", err)
					}
					if out.String() != tt.out {
						t.Errorf("output:\n%q\nwant:\n%q", out.String(), tt.out)
					}
				}
				if !tt.noCheck && st.RowsIn != tt.rowsIn {
					t.Errorf("RowsIn = %d, want %d", st.RowsIn, tt.rowsIn)
				}
				if st.RowsIn != st.RowsOut+st.RowsRejected {
					t.Errorf("stats do not add up: %+v", st)
				}
				if st.BytesIn != int64(len(tt.in)) && err == nil {
					t.Errorf("BytesIn = %d, want %d", st.BytesIn, len(tt.in))
				}
				if st.BytesOut != int64(out.Len()) {
					t.Errorf("BytesOut = %d, wrote %d", st.BytesOut, out.Len())
				}
			})
		}
	}
}

// checkMessage asserts an error text is one line of valid UTF-8.
func checkMessage(t *testing.T, msg string) {
	t.Helper()
	if !utf8.ValidString(msg) || strings.ContainsAny(msg, "\r\n") {
		t.Errorf("message is not one line of valid UTF-8: %q", msg)
	}
}

func TestMessagesEscapeAndCut(t *testing.T) {
	long := strings.Repeat("é", 100)
	in := "mass,velocity\n1,\"\xff\x00\r\n" + long + "\"\n"
	_, err := Transform(context.Background(), &bytes.Buffer{}, strings.NewReader(in), Options{})
	if !errors.Is(err, ErrNotNumber) {
		t.Fatalf("err = %v", err)
	}
	msg := err.Error()
	checkMessage(t, msg)
	if !strings.Contains(msg, `"\xff\x00\r\n`) || !strings.HasSuffix(msg, `"…`) || len(msg) > 120 {
		t.Errorf("message not escaped and cut: %s", msg)
	}
}

func TestSkipMode(t *testing.T) {
	in := "id,mass,velocity\n1,2,3\n2,x,3\n3,-1,2\n4,1\n5,\"1,5\",2\n6,4,5\n"
	for _, workers := range []int{1, 2} {
		var out, rej bytes.Buffer
		st, err := Transform(context.Background(), &out, strings.NewReader(in),
			Options{OnError: OnErrorSkip, Rejects: &rej, NewRejectWriter: newCSVRejects, Workers: workers})
		if err != nil {
			t.Fatal(err)
		}
		if want := "id,mass,velocity,momentum\n1,2,3,6\n6,4,5,20\n"; out.String() != want {
			t.Errorf("output %q, want %q", out.String(), want)
		}
		wantRej := "line,column,reason,record\n" +
			"3,mass,\"not a decimal number: \"\"x\"\"\",\"2,x,3\"\n" +
			"4,mass,\"negative mass: \"\"-1\"\"\",\"3,-1,2\"\n" +
			"5,,\"wrong number of fields: got 2, want 3\",\"4,1\"\n" +
			"6,mass,\"decimal comma: use '.' as the decimal point: \"\"1,5\"\"\",\"5,\"\"1,5\"\",2\"\n"
		if rej.String() != wantRej {
			t.Errorf("rejects:\n%s\nwant:\n%s", rej.String(), wantRej)
		}
		if st.RowsIn != 6 || st.RowsOut != 2 || st.RowsRejected != 4 {
			t.Errorf("stats %+v", st)
		}
	}
}

// TestSkipModeQuoteErrors: in skip mode a row with a quoting error is
// rejected like a row with a bad value, and reading goes on at the end of
// its record: the next line break, as the broken field goes on unquoted.
// Fail mode stops at the first, at the same line and column.
func TestSkipModeQuoteErrors(t *testing.T) {
	in := "id,mass,velocity\n" +
		"1,2,3\n" +
		"2,2,3\"\n" + // bare quote
		"3,\"4\"x,5\"\n" + // text after a closing quote; then a bare quote
		"4, \"6,7\"\n" + // a space before a quote makes it bare
		"5,\"1\n2\"z,3\n" + // the error is on the line of the closing quote
		"6,4,5\n" +
		"7,\"2\"\r8,1\n" +
		"8,1,x\"\r\n" + // a quoting error goes before a bad value
		"9,1,1\r\n"
	wantRej := [][]string{
		{"line", "column", "reason", "record"},
		{"3", "velocity", `bare " in unquoted field`, `2,2,3"`},
		{"4", "mass", `extraneous character after closing "`, `3,"4"x,5"`},
		{"5", "mass", `bare " in unquoted field`, `4, "6,7"`},
		{"7", "mass", `extraneous character after closing "`, "5,\"1\n2\"z,3"},
		{"9", "mass", `extraneous character after closing "`, "7,\"2\"\r8,1"},
		{"10", "velocity", `bare " in unquoted field`, `8,1,x"`},
	}
	for _, workers := range []int{1, 2} {
		var out, rej bytes.Buffer
		st, err := Transform(context.Background(), &out, strings.NewReader(in),
			Options{OnError: OnErrorSkip, Rejects: &rej, NewRejectWriter: newCSVRejects, Workers: workers})
		if err != nil {
			t.Fatal(err)
		}
		if want := "id,mass,velocity,momentum\n1,2,3,6\n6,4,5,20\n9,1,1,1\n"; out.String() != want {
			t.Errorf("output %q, want %q", out.String(), want)
		}
		got, err := csv.NewReader(&rej).ReadAll()
		if err != nil || !reflect.DeepEqual(got, wantRej) {
			t.Errorf("rejects %q (%v), want %q", got, err, wantRej)
		}
		if st.RowsIn != 9 || st.RowsOut != 3 || st.RowsRejected != 6 {
			t.Errorf("stats %+v", st)
		}

		st, err = Transform(context.Background(), io.Discard, strings.NewReader(in), Options{Workers: workers})
		var perr *ParseError
		if !errors.As(err, &perr) || !errors.Is(err, ErrBareQuote) || perr.Line != 3 || perr.Column != "velocity" || st.RowsIn != 1 {
			t.Errorf("fail mode: %v, %+v; want a bare quote at line 3, column velocity, after 1 row", err, st)
		}
	}
}

// TestQuoteErrorsAcrossChunks: records with broken quotes, where quote
// parity misleads, in an input of many chunks: each is read as it is
// alone, whatever the reader and the workers.
func TestQuoteErrorsAcrossChunks(t *testing.T) {
	rows := []string{`1,"4"x,5"`, `2, "a`, `3,2,3"`, `4,"1` + "\n" + `2"z,3`, "5,2,\"x\ny\"", `6,7,8`, `7,"2"` + "\r" + `8",1`, `8,"",""`}
	for _, quotes := range []QuoteMode{QuotesStrict, QuotesLazy} {
		o := Options{OnError: OnErrorSkip, Rejects: io.Discard, NewRejectWriter: newCSVRejects, Quotes: quotes}
		var in, want bytes.Buffer
		in.WriteString("id,mass,velocity\n")
		var wantSt Stats
		for i := range 150000 {
			row := rows[i%len(rows)]
			if quotes == QuotesLazy && (i%len(rows) == 1 || i%len(rows) == 3) {
				row = rows[5] // these stay open in lazy mode
			}
			in.WriteString(row + "\n")
			if i < len(rows) {
				var out bytes.Buffer
				st, err := Transform(context.Background(), &out, strings.NewReader("id,mass,velocity\n"+row+"\n"), o)
				if err != nil || st.RowsIn != 1 {
					t.Fatalf("%q alone: %v, %+v", row, err, st)
				}
				want.Write(bytes.TrimPrefix(out.Bytes(), []byte("id,mass,velocity,momentum\n")))
				wantSt.RowsOut += st.RowsOut
				wantSt.RowsRejected += st.RowsRejected
			}
		}
		wantOut := "id,mass,velocity,momentum\n" + strings.Repeat(want.String(), 150000/len(rows))
		for _, workers := range []int{1, 3} {
			var out bytes.Buffer
			o.Workers = workers
			st, err := Transform(context.Background(), &out, iotest.HalfReader(bytes.NewReader(in.Bytes())), o)
			if err != nil || st.BytesIn < 2*chunkSize || out.String() != wantOut ||
				st.RowsOut != wantSt.RowsOut*150000/int64(len(rows)) || st.RowsRejected != wantSt.RowsRejected*150000/int64(len(rows)) {
				t.Fatalf("%v, %d workers: %v, %+v; rows alone %+v", quotes, workers, err, st, wantSt)
			}
		}
	}
}

func TestSkipModeStructuralStaysFatal(t *testing.T) {
	for _, in := range []string{"mass,velocity\n1,x\n1,\"2\n", "mass,velocity\n1,x\n1,\"2\"x\n1,\"3\n", ""} {
		var rej bytes.Buffer
		_, err := Transform(context.Background(), &bytes.Buffer{}, strings.NewReader(in),
			Options{OnError: OnErrorSkip, Rejects: &rej, NewRejectWriter: newCSVRejects})
		if !IsStructural(err) {
			t.Errorf("%q: err = %v, want a structural error", in, err)
		}
	}
}

func TestOptionsValidation(t *testing.T) {
	for _, o := range []Options{
		{Delimiter: '"'},
		{Delimiter: '\n'},
		{FixedDecimals: true, Decimals: -1},
		{FixedDecimals: true, Decimals: 101},
		{OnError: OnErrorSkip},
		{OnError: OnErrorSkip, Rejects: io.Discard}, // no NewRejectWriter
		{MassColumn: "x", VelocityColumn: "X"},
		{MomentumColumn: "Mass"},
	} {
		if _, err := Transform(context.Background(), &bytes.Buffer{}, strings.NewReader("mass,velocity\n"), o); err == nil {
			t.Errorf("%+v: no error", o)
		}
	}
}

// TestWorkersCapped: a huge worker count is a typo or a misunderstanding,
// not a reason to hold gigabytes: it is capped at MaxWorkersPerCPU per CPU.
func TestWorkersCapped(t *testing.T) {
	limit := MaxWorkersPerCPU * runtime.GOMAXPROCS(0)
	for _, n := range []int{0, 1, limit, limit + 1, 1_000_000, math.MaxInt} {
		o, err := Options{Workers: n}.withDefaults()
		if err != nil {
			t.Fatal(err)
		}
		want := min(n, limit)
		if n == 0 {
			want = runtime.GOMAXPROCS(0)
		}
		if o.Workers != want {
			t.Errorf("Workers %d: got %d, want %d", n, o.Workers, want)
		}
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	var out bytes.Buffer
	if _, err := Transform(context.Background(), &out, strings.NewReader("mass,velocity\n1,2\n3,4\n"), Options{Workers: 1_000_000}); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if out.String() != "mass,velocity,momentum\n1,2,2\n3,4,12\n" {
		t.Errorf("output %q", out.String())
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64<<20 {
		t.Errorf("a 2-row file with Workers 1000000 allocated %d MiB", alloc>>20)
	}
}
