package compute

import (
	"errors"
	"testing"
)

func TestRouteTargets(t *testing.T) {
	sameBucket := Route{From: Place{"data", "incoming/"}, To: Place{"data", "momentum/"}}
	twoBuckets := Route{From: Place{"uploads", ""}, To: Place{"results", "momentum/"}}
	tests := []struct {
		route       Route
		bucket, key string
		want        Targets
		err         error
	}{
		{sameBucket, "data", "incoming/a.csv", Targets{"momentum/a.csv", "momentum/a.rejects.csv", "momentum/a.error.json"}, nil},
		{sameBucket, "data", "incoming/x/y/a b+c.CSV", Targets{"momentum/x/y/a b+c.CSV", "momentum/x/y/a b+c.rejects.CSV", "momentum/x/y/a b+c.error.json"}, nil},
		// Keys are kept as they are: no cleaning of "//", "." or "..".
		{sameBucket, "data", "incoming/a//./../b.csv", Targets{"momentum/a//./../b.csv", "momentum/a//./../b.rejects.csv", "momentum/a//./../b.error.json"}, nil},
		{sameBucket, "data", "incoming/dir.d/data", Targets{"momentum/dir.d/data", "momentum/dir.d/data.rejects.csv", "momentum/dir.d/data.error.json"}, nil},
		{sameBucket, "data", "incoming/a.tsv", Targets{"momentum/a.tsv", "momentum/a.tsv.rejects.csv", "momentum/a.tsv.error.json"}, nil},
		// The rejects and the report of a compressed input are plain.
		{sameBucket, "data", "incoming/a.csv.gz", Targets{"momentum/a.csv.gz", "momentum/a.rejects.csv", "momentum/a.error.json"}, nil},
		{sameBucket, "data", "incoming/a.CSV.ZST", Targets{"momentum/a.CSV.ZST", "momentum/a.rejects.CSV", "momentum/a.error.json"}, nil},
		{sameBucket, "data", "momentum/a.csv", Targets{}, ErrIsOutput},
		{sameBucket, "data", "momentum/a.csv.gz", Targets{}, ErrIsOutput},
		{sameBucket, "data", "other/a.csv", Targets{}, ErrNotInput},
		{sameBucket, "elsewhere", "incoming/a.csv", Targets{}, ErrNotInput},
		{sameBucket, "data", "incoming/", Targets{}, ErrNotInput},
		{sameBucket, "data", "incoming/sub/", Targets{}, ErrNotInput},
		{twoBuckets, "uploads", "a.csv", Targets{"momentum/a.csv", "momentum/a.rejects.csv", "momentum/a.error.json"}, nil},
		{twoBuckets, "results", "momentum/a.csv", Targets{}, ErrIsOutput},
		{twoBuckets, "results", "a.csv", Targets{}, ErrNotInput},
		{twoBuckets, "uploads", "", Targets{}, ErrNotInput},
	}
	for _, tt := range tests {
		got, err := tt.route.Targets(tt.bucket, tt.key)
		if !errors.Is(err, tt.err) || got != tt.want {
			t.Errorf("%v.Targets(%q, %q) = %+v, %v; want %+v, %v", tt.route, tt.bucket, tt.key, got, err, tt.want, tt.err)
		}
	}
}

func TestRouteCheck(t *testing.T) {
	tests := []struct {
		route Route
		ok    bool
	}{
		{Route{Place{"data", "incoming/"}, Place{"data", "momentum/"}}, true},
		{Route{Place{"data", ""}, Place{"results", ""}}, true},
		{Route{Place{"", "incoming/"}, Place{"results", "momentum/"}}, true},
		{Route{Place{"data", "incoming/"}, Place{"data", "incoming/out/"}}, false},
		{Route{Place{"data", "incoming/out/"}, Place{"data", "incoming/"}}, false},
		{Route{Place{"data", ""}, Place{"data", "momentum/"}}, false},
		{Route{Place{"", ""}, Place{"results", "momentum/"}}, false},
		{Route{Place{"data", "in"}, Place{"data", "input/"}}, false}, // "in" is a prefix of "input/..."
		{Route{Place{"data", "in/"}, Place{"", "out/"}}, false},      // no output bucket
	}
	for _, tt := range tests {
		err := tt.route.Check()
		if (err == nil) != tt.ok {
			t.Errorf("%v.Check() = %v, want ok=%v", tt.route, err, tt.ok)
		}
	}
}

func TestTargetsCompressedAs(t *testing.T) {
	tg := Targets{Output: "momentum/a.csv.gz", Rejects: "momentum/a.rejects.csv", Report: "momentum/a.error.json"}
	for c, want := range map[Compression]string{
		SameAsInput:  "momentum/a.csv.gz",
		Gzip:         "momentum/a.csv.gz",
		Zstd:         "momentum/a.csv.zst",
		Uncompressed: "momentum/a.csv",
	} {
		got := tg.CompressedAs(c)
		if got.Output != want || got.Rejects != tg.Rejects || got.Report != tg.Report {
			t.Errorf("CompressedAs(%s) = %+v, want output %q", c, got, want)
		}
	}
	if got := (Targets{Output: "out/b.csv"}).CompressedAs(Zstd).Output; got != "out/b.csv.zst" {
		t.Errorf("b.csv as zstd: %q", got)
	}
}
