package main

import (
	"bytes"
	"flag"
	"fmt"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden rejects files in ../../testdata/rejects/")

// rejectsCases are the inputs in testdata/rejects/ and the flags each is
// run with; each one's rejects file is <name>.rejects.golden beside it.
var rejectsCases = []struct {
	name  string
	flags []string
}{
	{"bad-number", nil},
	{"missing-field", nil},
	{"broken-quote", nil},
	{"quoted-record", nil},
	{"semicolon", []string{"--delimiter", ";"}},
	{"crlf", nil},
	{"headerless", []string{"--header", "no"}},
	{"lazy-quotes", []string{"--quotes", "lazy"}},
}

// TestRejectsGolden: the rejects file, written by a single run and joined
// by merge from a sharded job's parts, is byte for byte the golden one.
func TestRejectsGolden(t *testing.T) {
	t.Parallel()
	for _, c := range rejectsCases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			in := filepath.Join("..", "..", "testdata", "rejects", c.name+".csv")
			golden := filepath.Join("..", "..", "testdata", "rejects", c.name+".rejects.golden")
			dir := t.TempDir()
			rejects := filepath.Join(dir, "single.rejects.csv")
			args := append([]string{"--on-error", "skip", "--rejects", rejects}, c.flags...)
			if r := momentum(t, nil, append(args, in, filepath.Join(dir, "single.csv"))...); r.code != 0 {
				t.Fatalf("single run: %+v", r)
			}
			got := readFile(t, rejects)
			if *update {
				writeFile(t, golden, got)
			}
			want := readFile(t, golden)
			if !bytes.Equal(got, want) {
				t.Errorf("single run's rejects:\n%q\nwant:\n%q", got, want)
			}

			parts := filepath.Join(dir, "parts") + "/"
			for i := range 3 {
				args := append([]string{"job", "--on-error", "skip", "--input", in, "--output", parts, "--shard", fmt.Sprintf("%d/3", i)}, c.flags...)
				if r := momentum(t, nil, args...); r.code != 0 {
					t.Fatalf("task %d: %+v", i, r)
				}
			}
			joined := filepath.Join(dir, "joined.csv")
			if r := momentum(t, nil, "merge", "--into", joined, parts); r.code != 0 {
				t.Fatalf("merge: %+v", r)
			}
			if got := readFile(t, filepath.Join(dir, "joined.rejects.csv")); !bytes.Equal(got, want) {
				t.Errorf("merged rejects:\n%q\nwant:\n%q", got, want)
			}
		})
	}
}
