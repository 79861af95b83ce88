package compute

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
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

// FuzzTransform feeds arbitrary bytes to the kernel. It must not panic or
// hang; serial and parallel runs must agree; stats must add up; every
// output row must carry a momentum that parses back to mass × velocity;
// and where encoding/csv reads the input, the rows written and rejected
// must be those it reads (see checkCSVReference).
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
		for _, quotes := range []string{"strict"} {
			o := Options{MaxRecordBytes: 1 << 10}
			if skip {
				o.OnError = OnErrorSkip
			}
			run := func(workers int) (string, string, Stats, error) {
				var out, rej bytes.Buffer
				o.Workers, o.Rejects = workers, &rej
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
				checkMomentum(t, out1, st1, quotes)
			}
			checkCSVReference(t, in, o, quotes, out1, st1, err1)
		}
	})
}

// checkMomentum checks that each output record ends with its momentum;
// the mass and velocity fields are found through the header, as the
// kernel found them.
func checkMomentum(t *testing.T, out string, st Stats, quotes string) {
	t.Helper()
	cr := csv.NewReader(strings.NewReader(out))
	cr.FieldsPerRecord = -1
	recs, err := cr.ReadAll()
	if err != nil {
		t.Fatalf("%v: output is not CSV: %v\n%q", quotes, err, out)
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
		t.Fatalf("%v: %d output rows, stats say %d", quotes, len(rows), st.RowsOut)
	}
	for _, rec := range rows {
		m, _ := strconv.ParseFloat(string(trimBlank([]byte(rec[mi]))), 64)
		v, _ := strconv.ParseFloat(string(trimBlank([]byte(rec[vi]))), 64)
		p, err := strconv.ParseFloat(rec[len(rec)-1], 64)
		if err != nil || math.Float64bits(p) != math.Float64bits(m*v) {
			t.Fatalf("%v: momentum %q, want %v × %v = %v", quotes, rec[len(rec)-1], m, v, m*v)
		}
	}
}

// checkCSVReference reads in with encoding/csv as the reference for a
// kernel run in mode o that wrote out, and checks the run against it: the
// same records, rows and rejects, and, for a run that stopped at a bad
// row, that row. Inputs encoding/csv refuses (quoting errors) are left to
// the other checks; so are runs that end in a structural error, which
// encoding/csv has no notion of.
func checkCSVReference(t *testing.T, in []byte, o Options, quotes, out string, st Stats, err error) {
	t.Helper()
	body := bytes.TrimPrefix(in, utf8BOM) // the kernel drops a BOM; encoding/csv keeps it as data
	if bytes.HasSuffix(body, []byte("\n\r")) || string(body) == "\r" {
		return // a lone CR at the end is a blank line to encoding/csv, a record of one empty field here
	}
	cr := csv.NewReader(bytes.NewReader(body))
	cr.FieldsPerRecord = -1
	recs, cerr := cr.ReadAll()
	var perr *ParseError
	if cerr != nil || err != nil && (!errors.As(err, &perr) || IsStructural(err)) {
		return
	}
	if len(recs) == 0 {
		t.Fatalf("%v: encoding/csv reads no record; the kernel: %+v, %v", quotes, st, err)
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
			t.Fatalf("%v: the kernel stopped after %d rows (%v); encoding/csv reads %d records, the first bad one at %d", quotes, st.RowsIn, err, len(data), bad)
		}
		return
	}
	if st.RowsIn != int64(len(data)) || st.RowsRejected != int64(rejected) {
		t.Fatalf("%v: the kernel read %d rows and rejected %d; encoding/csv reads %d records, %d of them bad", quotes, st.RowsIn, st.RowsRejected, len(data), rejected)
	}
	ocr := csv.NewReader(strings.NewReader(out))
	ocr.FieldsPerRecord = -1
	got, oerr := ocr.ReadAll()
	if oerr != nil {
		t.Fatalf("%v: output: %v", quotes, oerr)
	}
	if st.Header {
		if len(got) == 0 || !slices.Equal(got[0], append(recs[0][:len(recs[0]):len(recs[0])], DefaultMomentumColumn)) {
			t.Fatalf("%v: output header %q, input header %q", quotes, got, recs[0])
		}
		got = got[1:]
	}
	if len(got) != len(want) {
		t.Fatalf("%v: %d output rows, want %d", quotes, len(got), len(want))
	}
	for i := range want {
		if !slices.Equal(got[i], want[i]) {
			t.Fatalf("%v: output row %d is %q, want %q", quotes, i, got[i], want[i])
		}
	}
}
