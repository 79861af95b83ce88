package compute

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/gocarina/gocsv"
)

// particle is the reference decoder's typed record.
type particle struct {
	ID       string  `csv:"id"`
	Note     string  `csv:"note"`
	Mass     float64 `csv:"mass"`
	Velocity float64 `csv:"velocity"`
}

// TestDifferentialGocsv decodes random valid input with gocsv, an
// independent CSV and number decoder, and checks every output record
// against it: same fields, momentum = mass × velocity in the shortest
// form, bit for bit.
func TestDifferentialGocsv(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	num := func() string {
		switch r.IntN(5) {
		case 0:
			return strconv.Itoa(r.IntN(200000))
		case 1:
			return strconv.FormatFloat(r.Float64()*math.Pow(10, float64(r.IntN(40)-20)), 'g', -1, 64)
		case 2:
			return strconv.FormatFloat(r.Float64()*1e4, 'f', r.IntN(9), 64)
		case 3:
			return strconv.FormatFloat(r.ExpFloat64(), 'e', r.IntN(17), 64)
		}
		return "0" + strconv.FormatFloat(r.Float64(), 'f', -1, 64)[1:] // ".123"
	}
	var in bytes.Buffer
	w := csv.NewWriter(&in)
	w.Write([]string{"id", "note", "mass", "velocity"})
	notes := []string{"", "plain", "with, comma", `with "quotes"`, "multi\nline", "crlf\r\ninside", "ünïcödé"}
	for i := range 20000 {
		v := num()
		if r.IntN(2) == 0 {
			v = "-" + v
		}
		w.Write([]string{strconv.Itoa(i), notes[r.IntN(len(notes))], num(), v})
	}
	w.Flush()

	var ref []particle
	if err := gocsv.UnmarshalBytes(in.Bytes(), &ref); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	st, err := Transform(context.Background(), &out, bytes.NewReader(in.Bytes()), Options{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := csv.NewReader(&out).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(ref)+1 || st.RowsOut != int64(len(ref)) {
		t.Fatalf("%d output records, %d reference rows", len(got), len(ref))
	}
	if strings.Join(got[0], ",") != "id,note,mass,velocity,momentum" {
		t.Fatalf("header %q", got[0])
	}
	for i, p := range ref {
		rec := got[i+1]
		want := string(appendShortest(nil, p.Mass*p.Velocity))
		if rec[0] != p.ID || rec[1] != p.Note || rec[4] != want {
			t.Fatalf("row %d: got %q, want id %s note %q momentum %s", i, rec, p.ID, p.Note, want)
		}
		f, err := strconv.ParseFloat(rec[4], 64)
		if err != nil || f != p.Mass*p.Velocity {
			t.Fatalf("row %d: momentum %s does not parse back to %v", i, rec[4], p.Mass*p.Velocity)
		}
	}
}

// FuzzTransform feeds arbitrary bytes to the kernel, in both quote
// modes. It must not panic or hang; serial and parallel runs must agree;
// stats must add up; every output row must carry a momentum that parses
// back to mass × velocity; and where encoding/csv reads the input (with
// LazyQuotes in lazy mode), the rows written and rejected must be those
// it reads (see checkCSVReference).
func FuzzTransform(f *testing.F) {
	for _, s := range []string{
		"mass,velocity\n1,2\n", "1,2\n3,4", "a,mass,velocity\n\"x\ny\",1,2\r\n", "mass,velocity\n1,\"2\n",
		"mass,velocity\n1,x\n", "\xEF\xBB\xBFmass;velocity\n1;2\n", "mass,velocity,momentum\n", "",
		"mass,velocity\n1e308,1e308\n", "mass,velocity\n\"1\"\"\",2\n", "2,3\n\n\n4,5\r",
		"h,mass,velocity\n5'10\",1,2\n\"ab\"c\",3,4\n \"x\",5,6\n\"q\"\rz\",7,8\n",
		"mass,velocity\n\"1\"x,2\n3,\"4\" \n5,6\n", "mass,velocity\n1,2\"\n3,4\n",
	} {
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, in []byte, skip bool) {
		for _, quotes := range []QuoteMode{QuotesStrict, QuotesLazy} {
			o := Options{MaxRecordBytes: 1 << 10, Quotes: quotes}
			if skip {
				o.OnError = OnErrorSkip
			}
			run := func(workers int) (string, string, Stats, error) {
				var out, rej bytes.Buffer
				o.Workers, o.Rejects, o.NewRejectWriter = workers, &rej, newCSVRejects
				st, err := Transform(context.Background(), &out, bytes.NewReader(in), o)
				return out.String(), rej.String(), st, err
			}
			out1, rej1, st1, err1 := run(1)
			out2, rej2, st2, err2 := run(3)
			if out1 != out2 || rej1 != rej2 || st1 != st2 || (err1 == nil) != (err2 == nil) ||
				err1 != nil && err1.Error() != err2.Error() {
				t.Fatalf("%v: serial and parallel runs differ:\n%q %v %+v\n%q %v %+v", quotes, out1, err1, st1, out2, err2, st2)
			}
			if st1.RowsIn != st1.RowsOut+st1.RowsRejected {
				t.Fatalf("%v: stats do not add up: %+v", quotes, st1)
			}
			if err1 != nil {
				checkMessage(t, err1.Error())
			} else {
				checkMomentum(t, out1, st1, o)
			}
			checkCSVReference(t, in, o, out1, st1, err1)
		}
	})
}

// checkMomentum checks that each output record ends with its momentum;
// the mass and velocity fields are found through the header, as the
// kernel found them.
func checkMomentum(t *testing.T, out string, st Stats, o Options) {
	t.Helper()
	cr := csv.NewReader(strings.NewReader(out))
	cr.FieldsPerRecord = -1
	cr.LazyQuotes = o.Quotes == QuotesLazy
	recs, err := cr.ReadAll()
	if err != nil {
		t.Fatalf("%v: output is not CSV: %v\n%q", o.Quotes, err, out)
	}
	rows := recs
	mi, vi := 0, 1
	if st.Header {
		hdr := recs[0]
		rows = recs[1:]
		for i, h := range hdr[:len(hdr)-1] {
			if matchColumn([]byte(h), "mass") {
				mi = i
			}
			if matchColumn([]byte(h), "velocity") {
				vi = i
			}
		}
	}
	if int64(len(rows)) != st.RowsOut {
		t.Fatalf("%v: %d output rows, stats say %d", o.Quotes, len(rows), st.RowsOut)
	}
	for _, rec := range rows {
		m, _ := strconv.ParseFloat(string(trimBlank([]byte(rec[mi]))), 64)
		v, _ := strconv.ParseFloat(string(trimBlank([]byte(rec[vi]))), 64)
		p, err := strconv.ParseFloat(rec[len(rec)-1], 64)
		if err != nil || math.Float64bits(p) != math.Float64bits(m*v) {
			t.Fatalf("%v: momentum %q, want %v × %v = %v", o.Quotes, rec[len(rec)-1], m, v, m*v)
		}
	}
}

// checkCSVReference reads in with encoding/csv, with LazyQuotes in lazy
// mode, as the reference for a kernel run in mode o that wrote out, and
// checks the run against it: the same records, rows and rejects, and,
// for a run that stopped at a bad row, that row. Inputs encoding/csv
// refuses (quoting errors in strict mode) are left to the other checks;
// so are runs that end in a structural error, which encoding/csv has no
// notion of (in lazy mode it accepts a quoted field open at the end of
// input, which the kernel refuses, as it takes the rest of the input).
func checkCSVReference(t *testing.T, in []byte, o Options, out string, st Stats, err error) {
	t.Helper()
	body := bytes.TrimPrefix(in, utf8BOM) // the kernel drops a BOM; encoding/csv keeps it as data
	if bytes.HasSuffix(body, []byte("\n\r")) || string(body) == "\r" {
		return // a lone CR at the end is a blank line to encoding/csv, a record of one empty field here
	}
	cr := csv.NewReader(bytes.NewReader(body))
	cr.LazyQuotes = o.Quotes == QuotesLazy
	cr.FieldsPerRecord = -1
	recs, cerr := cr.ReadAll()
	var perr *ParseError
	if cerr != nil || err != nil && (!errors.As(err, &perr) || IsStructural(err)) {
		return
	}
	if len(recs) == 0 {
		t.Fatalf("%v: encoding/csv reads no record; the kernel: %+v, %v", o.Quotes, st, err)
	}
	mi, vi := 0, 1
	data := recs
	if st.Header {
		data = recs[1:]
		for i, h := range recs[0] {
			if matchColumn([]byte(h), "mass") {
				mi = i
			}
			if matchColumn([]byte(h), "velocity") {
				vi = i
			}
		}
	}
	var want [][]string
	bad, rejected := -1, 0
	for i, rec := range data {
		ok := len(rec) == len(recs[0])
		if ok {
			m, merr := parseNumber([]byte(rec[mi]))
			v, verr := parseNumber([]byte(rec[vi]))
			ok = merr == nil && verr == nil && !(m < 0) && !math.IsInf(m*v, 0)
			if ok {
				want = append(want, append(rec[:len(rec):len(rec)], string(appendShortest(nil, m*v))))
			}
		}
		if !ok {
			rejected++
			if bad < 0 {
				bad = i
			}
		}
	}
	if err != nil {
		if o.OnError != OnErrorFail || bad < 0 || st.RowsIn != int64(bad) {
			t.Fatalf("%v: the kernel stopped after %d rows (%v); encoding/csv reads %d records, the first bad one at %d", o.Quotes, st.RowsIn, err, len(data), bad)
		}
		return
	}
	if st.RowsIn != int64(len(data)) || st.RowsRejected != int64(rejected) {
		t.Fatalf("%v: the kernel read %d rows and rejected %d; encoding/csv reads %d records, %d of them bad", o.Quotes, st.RowsIn, st.RowsRejected, len(data), rejected)
	}
	ocr := csv.NewReader(strings.NewReader(out))
	ocr.LazyQuotes = o.Quotes == QuotesLazy
	ocr.FieldsPerRecord = -1
	got, oerr := ocr.ReadAll()
	if oerr != nil {
		t.Fatalf("%v: output: %v", o.Quotes, oerr)
	}
	if st.Header {
		if len(got) == 0 || !slices.Equal(got[0], append(recs[0][:len(recs[0]):len(recs[0])], DefaultMomentumColumn)) {
			t.Fatalf("%v: output header %q, input header %q", o.Quotes, got, recs[0])
		}
		got = got[1:]
	}
	if len(got) != len(want) {
		t.Fatalf("%v: %d output rows, want %d", o.Quotes, len(got), len(want))
	}
	for i := range want {
		if !slices.Equal(got[i], want[i]) {
			t.Fatalf("%v: output row %d is %q, want %q", o.Quotes, i, got[i], want[i])
		}
	}
}

// TestQuotesMatchEncodingCSV runs random input with quotes RFC 4180 does
// not allow, in numbers too, through the kernel in lazy mode and checks
// it against encoding/csv with LazyQuotes; valid input, against
// encoding/csv in strict mode too.
func TestQuotesMatchEncodingCSV(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	nums := []string{"1", " 2.5", `"3"`, `"4"""`, `5"`, `"6"7"`, `"-1"`, "1e400", `""`, `"1""0"`, `" 8 "`, `9 "`}
	for trial := range 60 {
		lazy := trial%3 != 0
		faults := lazyFaults
		if trial%2 == 0 {
			faults = append(badLazyFaults, lazyFaults...)
		}
		var b bytes.Buffer
		switch trial % 3 {
		case 0:
			b.WriteString("id,note,mass,velocity\r\n")
		case 1:
			b.WriteString("id,note,\"velocity\",mass\n")
		default:
			b.WriteString("\"id\",\"no\"\"te\",\"mass\",velocity\n")
		}
		for i := range 200 {
			note := `"a,b` + "\n" + `"`
			switch k := r.IntN(4); {
			case lazy && k == 0:
				note = faults[r.IntN(len(faults))]
			case k == 1:
				note = "plain"
			}
			m, v := strconv.Itoa(r.IntN(100)), strconv.Itoa(r.IntN(100)-50)
			if lazy && r.IntN(6) == 0 {
				m = nums[r.IntN(len(nums))]
			}
			if lazy && r.IntN(6) == 0 {
				v = nums[r.IntN(len(nums))]
			}
			fmt.Fprintf(&b, "%d,%s,%s,%s", i, note, m, v)
			if r.IntN(3) == 0 {
				b.WriteString("\r\n")
			} else {
				b.WriteString("\n")
			}
		}
		o := Options{OnError: OnErrorSkip, Rejects: io.Discard, NewRejectWriter: newCSVRejects, Workers: 1 + trial%3}
		if lazy {
			o.Quotes = QuotesLazy
		}
		var out bytes.Buffer
		st, err := Transform(context.Background(), &out, bytes.NewReader(b.Bytes()), o)
		if err != nil {
			t.Fatalf("trial %d: %v", trial, err)
		}
		if lazy && st.RowsRejected == 0 || st.RowsOut == 0 {
			t.Fatalf("trial %d: %+v: the input does not test much", trial, st)
		}
		checkCSVReference(t, b.Bytes(), o, out.String(), st, err)
	}
}
