package rejects_test

import (
	"bytes"
	"encoding/csv"
	"errors"
	"io"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/momentum-run/momentum/adapters/rejects"
	"github.com/momentum-run/momentum/compute"
)

// awkward are records whose quoting gocsv and encoding/csv could differ on.
var awkward = []compute.Reject{
	{Line: 1, Column: "mass", Reason: `not a decimal number: "abc"`, Record: "2,abc,3"},
	{Line: 22, Column: "", Reason: "wrong number of fields: got 1, want 2", Record: "4"},
	{Line: 333, Column: "note", Reason: "r", Record: " leading space"},
	{Line: 4, Column: "2", Reason: "", Record: ""},
	{Line: 5, Column: "velocity", Reason: "x", Record: "cr\r\nlf and \"quotes\"\nnewline"},
	{Line: 6, Column: "v", Reason: "x", Record: "\ttab;semi;colon"},
	{Line: 7, Column: "v", Reason: "x", Record: "trailing cr\r"},
	{Line: 8, Column: "v", Reason: "x", Record: `\.`},
}

// TestWriterAsEncodingCSV: the bytes are encoding/csv's, as the rejects
// file has always been written.
func TestWriterAsEncodingCSV(t *testing.T) {
	var got, want bytes.Buffer
	w := rejects.NewWriter(&got)
	if err := w.WriteHeader(); err != nil {
		t.Fatal(err)
	}
	if err := w.Write(awkward[:3]); err != nil {
		t.Fatal(err)
	}
	if err := w.Write(awkward[3:]); err != nil {
		t.Fatal(err)
	}
	cw := csv.NewWriter(&want)
	cw.Write(rejects.Header)
	for _, rj := range awkward {
		cw.Write([]string{strconv.FormatInt(rj.Line, 10), rj.Column, rj.Reason, rj.Record})
	}
	cw.Flush()
	if got.String() != want.String() {
		t.Errorf("got\n%q\nwant\n%q", got.String(), want.String())
	}
}

// TestRoundTrip reads back what the writer wrote: the same records,
// but for "\r\n" inside a field, which CSV reads as "\n".
func TestRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	w := rejects.NewWriter(&buf)
	if err := w.WriteHeader(); err != nil {
		t.Fatal(err)
	}
	if err := w.Write(awkward); err != nil {
		t.Fatal(err)
	}
	r, err := rejects.NewReader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	var got []compute.Reject
	for {
		rj, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, rj)
	}
	want := slices.Clone(awkward)
	for i := range want {
		want[i].Record = strings.ReplaceAll(want[i].Record, "\r\n", "\n")
	}
	if !slices.Equal(got, want) {
		t.Errorf("got\n%+v\nwant\n%+v", got, want)
	}
}

func TestReaderRejectsOtherFiles(t *testing.T) {
	for _, c := range []struct{ name, in string }{
		{"empty", ""},
		{"other header", "mass,velocity\n1,2\n"},
		{"header reordered", "line,reason,column,record\n"},
		{"header and more", "line,column,reason,record,x\n"},
	} {
		if _, err := rejects.NewReader(strings.NewReader(c.in)); !errors.Is(err, rejects.ErrHeader) {
			t.Errorf("%s: %v, want ErrHeader", c.name, err)
		}
	}
	for _, c := range []struct{ name, in string }{
		{"line not a number", "line,column,reason,record\nx,mass,r,\"1,x\"\n"},
		{"too few fields", "line,column,reason,record\n3,mass,r\n"},
		{"quote never closed", "line,column,reason,record\n3,mass,r,\"1,x\n"},
	} {
		r, err := rejects.NewReader(strings.NewReader(c.in))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if _, err := r.Read(); err == nil || err == io.EOF {
			t.Errorf("%s: %v, want an error", c.name, err)
		}
	}
}
