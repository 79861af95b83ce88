package compute

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// goldenCases map a file in testdata/ to the options it is run with. Each
// case's expected output is testdata/<name>.golden; a case that must fail
// has testdata/<name>.err holding the error text instead.
var goldenCases = []struct {
	name, input string
	opts        Options
}{
	{"particles", "particles.csv", Options{}},
	{"demo", "demo.csv", Options{}},
	{"demo-decimals3", "demo.csv", Options{FixedDecimals: true, Decimals: 3}},
	{"semicolon", "semicolon.csv", Options{Delimiter: ';', MassColumn: "MASSE", VelocityColumn: "geschwindigkeit"}},
	{"lazy-quotes", "lazy-quotes.csv", Options{Quotes: QuotesLazy}},
	{"lazy-quotes-strict", "lazy-quotes.csv", Options{}},
	{"bad-value", "bad/value.csv", Options{}},
	{"bad-negative-mass", "bad/negative-mass.csv", Options{}},
	{"bad-field-count", "bad/field-count.csv", Options{}},
	{"bad-unterminated", "bad/unterminated.csv", Options{}},
	{"bad-missing-column", "bad/missing-column.csv", Options{}},
	{"bad-processed", "bad/processed.csv", Options{}},
	{"bad-utf16", "bad/utf16.csv", Options{}},
	{"bad-overflow", "bad/overflow.csv", Options{}},
}

func TestGolden(t *testing.T) {
	for _, c := range goldenCases {
		t.Run(c.name, func(t *testing.T) {
			in, err := os.ReadFile(filepath.Join("..", "testdata", c.input))
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			_, err = Transform(context.Background(), &out, bytes.NewReader(in), c.opts)
			got, golden := out.Bytes(), filepath.Join("..", "testdata", c.name+".golden")
			if err != nil {
				got, golden = []byte(err.Error()+"\n"), strings.TrimSuffix(golden, ".golden")+".err"
			}
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, rerr := os.ReadFile(golden)
			if rerr != nil {
				t.Fatalf("%v (run go test -update to create it); got:\n%s", rerr, got)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs (err %v)\ngot:\n%s\nwant:\n%s", golden, err, got, want)
			}
		})
	}
}
