package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/momentum-run/momentum/adapters/codec"
	"github.com/momentum-run/momentum/compute"
)

// envMap returns a getenv function backed by m.
func envMap(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// allFlags are the flags the help must list, each as --name.
var allFlags = []string{
	"mass", "velocity", "momentum", "header", "delimiter", "quotes", "decimals",
	"on-error", "rejects", "max-record", "compress", "workers", "connections", "quiet", "version", "help",
}

// envFlags are the flags that can come from the environment: all but
// help, h and version.
var envFlags = []string{
	"mass", "velocity", "momentum", "header", "delimiter", "quotes", "decimals",
	"on-error", "rejects", "max-record", "compress", "workers", "connections", "quiet",
}

// parseOK parses args with env and fails the test on any error.
func parseOK(t *testing.T, args []string, env map[string]string) *cliConfig {
	t.Helper()
	var stdout bytes.Buffer
	c, err := parseCLI(args, envMap(env), &stdout)
	if err != nil {
		t.Fatalf("parseCLI(%q, env %v): unexpected error %v", args, env, err)
	}
	if stdout.Len() != 0 {
		t.Errorf("parseCLI(%q) wrote to stdout: %q", args, stdout.String())
	}
	return c
}

func TestParseCLIDefaults(t *testing.T) {
	t.Parallel()
	c := parseOK(t, nil, nil)
	want := compute.Options{
		MassColumn:     "mass",
		VelocityColumn: "velocity",
		MomentumColumn: "momentum",
		Header:         compute.HeaderAuto,
		Delimiter:      ',',
		OnError:        compute.OnErrorFail,
		MaxRecordBytes: 16 << 20,
		Codec:          codec.Codec{},
		Compress:       compute.Uncompressed,
	}
	if !reflect.DeepEqual(c.opts, want) { // Options has a func field: nil in both
		t.Errorf("default options\n got %+v\nwant %+v", c.opts, want)
	}
	if c.input != "-" || c.output != "-" || c.rejects != "" || c.quiet || c.showVersion {
		t.Errorf("defaults: input %q output %q rejects %q quiet %v version %v; want -, -, \"\", false, false",
			c.input, c.output, c.rejects, c.quiet, c.showVersion)
	}
}

func TestParseCLIFlags(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		args  []string
		check func(t *testing.T, c *cliConfig)
	}{
		{"header auto", []string{"--header", "auto"}, func(t *testing.T, c *cliConfig) { wantHeader(t, c, compute.HeaderAuto) }},
		{"header yes", []string{"--header", "yes"}, func(t *testing.T, c *cliConfig) { wantHeader(t, c, compute.HeaderPresent) }},
		{"header true", []string{"--header=true"}, func(t *testing.T, c *cliConfig) { wantHeader(t, c, compute.HeaderPresent) }},
		{"header present", []string{"--header", "present"}, func(t *testing.T, c *cliConfig) { wantHeader(t, c, compute.HeaderPresent) }},
		{"header no", []string{"--header", "no"}, func(t *testing.T, c *cliConfig) { wantHeader(t, c, compute.HeaderAbsent) }},
		{"header false", []string{"--header", "false"}, func(t *testing.T, c *cliConfig) { wantHeader(t, c, compute.HeaderAbsent) }},
		{"header absent", []string{"--header", "absent"}, func(t *testing.T, c *cliConfig) { wantHeader(t, c, compute.HeaderAbsent) }},
		{"delimiter semicolon", []string{"--delimiter", ";"}, func(t *testing.T, c *cliConfig) { wantDelim(t, c, ';') }},
		{"delimiter pipe", []string{"--delimiter=|"}, func(t *testing.T, c *cliConfig) { wantDelim(t, c, '|') }},
		{"delimiter word tab", []string{"--delimiter", "tab"}, func(t *testing.T, c *cliConfig) { wantDelim(t, c, '\t') }},
		{"delimiter backslash t", []string{"--delimiter", `\t`}, func(t *testing.T, c *cliConfig) { wantDelim(t, c, '\t') }},
		{"delimiter literal tab", []string{"--delimiter", "\t"}, func(t *testing.T, c *cliConfig) { wantDelim(t, c, '\t') }},
		{"quotes strict", []string{"--quotes", "strict"}, func(t *testing.T, c *cliConfig) { wantQuotes(t, c, compute.QuotesStrict) }},
		{"quotes lazy", []string{"--quotes=lazy"}, func(t *testing.T, c *cliConfig) { wantQuotes(t, c, compute.QuotesLazy) }},
		{"decimals -1", []string{"--decimals", "-1"}, func(t *testing.T, c *cliConfig) { wantDecimals(t, c, false, 0) }},
		{"decimals 0", []string{"--decimals", "0"}, func(t *testing.T, c *cliConfig) { wantDecimals(t, c, true, 0) }},
		{"decimals 3", []string{"--decimals=3"}, func(t *testing.T, c *cliConfig) { wantDecimals(t, c, true, 3) }},
		{"decimals 100", []string{"--decimals", "100"}, func(t *testing.T, c *cliConfig) { wantDecimals(t, c, true, 100) }},
		{"on-error fail", []string{"--on-error", "fail"}, func(t *testing.T, c *cliConfig) {
			if c.opts.OnError != compute.OnErrorFail || c.rejects != "" {
				t.Errorf("OnError %v rejects %q, want fail and none", c.opts.OnError, c.rejects)
			}
		}},
		{"on-error skip default rejects", []string{"--on-error", "skip", "in.csv", "dir/out.csv"}, func(t *testing.T, c *cliConfig) {
			if c.opts.OnError != compute.OnErrorSkip || c.opts.NewRejectWriter == nil || c.rejects != "dir/out.rejects.csv" {
				t.Errorf("OnError %v rejects %q, want skip and dir/out.rejects.csv", c.opts.OnError, c.rejects)
			}
		}},
		{"on-error skip explicit rejects to stdout", []string{"--on-error", "skip", "--rejects", "r.csv"}, func(t *testing.T, c *cliConfig) {
			if c.opts.OnError != compute.OnErrorSkip || c.rejects != "r.csv" || c.output != "-" {
				t.Errorf("OnError %v rejects %q output %q, want skip, r.csv, -", c.opts.OnError, c.rejects, c.output)
			}
		}},
		{"max-record bytes", []string{"--max-record", "1048576"}, func(t *testing.T, c *cliConfig) { wantMaxRecord(t, c, 1048576) }},
		{"max-record KiB", []string{"--max-record", "512KiB"}, func(t *testing.T, c *cliConfig) { wantMaxRecord(t, c, 512<<10) }},
		{"max-record MiB", []string{"--max-record", "64MiB"}, func(t *testing.T, c *cliConfig) { wantMaxRecord(t, c, 64<<20) }},
		{"max-record G", []string{"--max-record", "1G"}, func(t *testing.T, c *cliConfig) { wantMaxRecord(t, c, 1<<30) }},
		{"workers", []string{"--workers", "3"}, func(t *testing.T, c *cliConfig) {
			if c.opts.Workers != 3 {
				t.Errorf("Workers %d, want 3", c.opts.Workers)
			}
		}},
		{"connections default", []string{"s3://b/in.csv", "out.csv"}, func(t *testing.T, c *cliConfig) {
			if c.readAhead != (compute.ReadAhead{Connections: 8, RangeSize: 8 << 20}) || c.partSize != 8<<20 {
				t.Errorf("read-ahead %+v, parts of %d; want 8 ranges of 8 MiB", c.readAhead, c.partSize)
			}
		}},
		{"connections default uploading", []string{"in.csv", "s3://b/out.csv"}, func(t *testing.T, c *cliConfig) {
			if c.readAhead.Connections != 8 || c.partSize != 8<<20 {
				t.Errorf("read-ahead %+v, parts of %d; want 8 parts of 8 MiB", c.readAhead, c.partSize)
			}
		}},
		{"connections default both in the cloud", []string{"s3://b/in.csv", "gs://b/out.csv"}, func(t *testing.T, c *cliConfig) {
			if c.readAhead != (compute.ReadAhead{Connections: 8, RangeSize: 4 << 20}) || c.partSize != 5<<20 {
				t.Errorf("read-ahead %+v, parts of %d; want 8 ranges of 4 MiB, parts of 5 MiB", c.readAhead, c.partSize)
			}
		}},
		{"connections one", []string{"--connections", "1", "s3://b/in.csv", "gs://b/out.csv"}, func(t *testing.T, c *cliConfig) {
			if c.readAhead.Connections != 1 || c.partSize != 8<<20 {
				t.Errorf("read-ahead %+v, parts of %d; want one stream, parts of 8 MiB as alone", c.readAhead, c.partSize)
			}
		}},
		{"connections", []string{"--connections", "16"}, func(t *testing.T, c *cliConfig) {
			if c.readAhead.Connections != 16 {
				t.Errorf("read-ahead %+v, want 16", c.readAhead)
			}
		}},
		{"columns", []string{"--mass", "Masse", "--velocity", "Geschwindigkeit", "--momentum", "Impuls"}, func(t *testing.T, c *cliConfig) {
			if c.opts.MassColumn != "Masse" || c.opts.VelocityColumn != "Geschwindigkeit" || c.opts.MomentumColumn != "Impuls" {
				t.Errorf("columns %q %q %q", c.opts.MassColumn, c.opts.VelocityColumn, c.opts.MomentumColumn)
			}
		}},
		{"quiet", []string{"--quiet"}, func(t *testing.T, c *cliConfig) {
			if !c.quiet {
				t.Error("quiet not set")
			}
		}},
		{"single dash flags", []string{"-quiet", "-decimals", "2"}, func(t *testing.T, c *cliConfig) {
			if !c.quiet || c.opts.Decimals != 2 || !c.opts.FixedDecimals {
				t.Errorf("quiet %v decimals %v/%d", c.quiet, c.opts.FixedDecimals, c.opts.Decimals)
			}
		}},
		{"version", []string{"--version"}, func(t *testing.T, c *cliConfig) {
			if !c.showVersion {
				t.Error("showVersion not set")
			}
		}},
		{"version ignores other problems", []string{"--version", "--header", "maybe", "a", "b", "c"}, func(t *testing.T, c *cliConfig) {
			if !c.showVersion {
				t.Error("showVersion not set")
			}
		}},
		{"no args", nil, func(t *testing.T, c *cliConfig) { wantIO(t, c, "-", "-") }},
		{"input only", []string{"in.csv"}, func(t *testing.T, c *cliConfig) { wantIO(t, c, "in.csv", "-") }},
		{"input and output", []string{"in.csv", "out.csv"}, func(t *testing.T, c *cliConfig) { wantIO(t, c, "in.csv", "out.csv") }},
		{"dashes", []string{"-", "-"}, func(t *testing.T, c *cliConfig) { wantIO(t, c, "-", "-") }},
		{"double dash ends flags", []string{"--quiet", "--", "-in.csv", "--out.csv"}, func(t *testing.T, c *cliConfig) {
			wantIO(t, c, "-in.csv", "--out.csv")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.check(t, parseOK(t, tt.args, nil))
		})
	}
}

func wantHeader(t *testing.T, c *cliConfig, want compute.HeaderMode) {
	t.Helper()
	if c.opts.Header != want {
		t.Errorf("Header %v, want %v", c.opts.Header, want)
	}
}

func wantDelim(t *testing.T, c *cliConfig, want byte) {
	t.Helper()
	if c.opts.Delimiter != want {
		t.Errorf("Delimiter %q, want %q", c.opts.Delimiter, want)
	}
}

func wantQuotes(t *testing.T, c *cliConfig, want compute.QuoteMode) {
	t.Helper()
	if c.opts.Quotes != want {
		t.Errorf("Quotes %v, want %v", c.opts.Quotes, want)
	}
}

func wantDecimals(t *testing.T, c *cliConfig, fixed bool, n int) {
	t.Helper()
	if c.opts.FixedDecimals != fixed || c.opts.Decimals != n {
		t.Errorf("FixedDecimals %v Decimals %d, want %v %d", c.opts.FixedDecimals, c.opts.Decimals, fixed, n)
	}
}

func wantMaxRecord(t *testing.T, c *cliConfig, n int) {
	t.Helper()
	if c.opts.MaxRecordBytes != n {
		t.Errorf("MaxRecordBytes %d, want %d", c.opts.MaxRecordBytes, n)
	}
}

func wantIO(t *testing.T, c *cliConfig, in, out string) {
	t.Helper()
	if c.input != in || c.output != out {
		t.Errorf("input %q output %q, want %q %q", c.input, c.output, in, out)
	}
}

// checkUsageError checks that args and env are rejected as a usage error
// whose message contains every string in want, both by parseCLI and by
// runCLI (exit 2, the message on stderr, nothing on stdout).
func checkUsageError(t *testing.T, args []string, env map[string]string, want ...string) {
	t.Helper()
	var stdout bytes.Buffer
	c, err := parseCLI(args, envMap(env), &stdout)
	var uerr *usageError
	if !errors.As(err, &uerr) {
		t.Fatalf("parseCLI(%q, env %v) = %+v, %v; want a *usageError", args, env, c, err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("parseCLI(%q, env %v): error %q does not contain %q", args, env, err, w)
		}
	}
	if stdout.Len() != 0 {
		t.Errorf("parseCLI wrote to stdout: %q", stdout.String())
	}

	var stderr bytes.Buffer
	stdout.Reset()
	code := runCLI(context.Background(), args, envMap(env), strings.NewReader("mass,velocity\n1,2\n"), &stdout, &stderr)
	if code != exitUsage {
		t.Errorf("runCLI(%q, env %v) exit %d, want %d (usage); stderr %q", args, env, code, exitUsage, stderr.String())
	}
	wantStderr := "momentum: " + err.Error() + "\nRun 'momentum --help' for usage.\n"
	if stderr.String() != wantStderr {
		t.Errorf("runCLI stderr\n got %q\nwant %q", stderr.String(), wantStderr)
	}
	if stdout.Len() != 0 {
		t.Errorf("runCLI wrote to stdout on a usage error: %q", stdout.String())
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want []string // substrings of the message
	}{
		{"unknown flag", []string{"--bogus"}, []string{"bogus"}},
		{"flag without value", []string{"--decimals"}, []string{"decimals"}},
		{"bad header", []string{"--header", "maybe"}, []string{"--header", `"maybe"`}},
		{"empty header", []string{"--header", ""}, []string{"--header"}},
		{"delimiter two bytes", []string{"--delimiter", ";;"}, []string{"--delimiter"}},
		{"delimiter multi-byte rune", []string{"--delimiter", "é"}, []string{"--delimiter"}},
		{"delimiter word", []string{"--delimiter", "comma"}, []string{"--delimiter"}},
		{"delimiter empty", []string{"--delimiter", ""}, []string{"--delimiter"}},
		{"delimiter quote", []string{"--delimiter", `"`}, []string{"--delimiter"}},
		{"delimiter newline", []string{"--delimiter", "\n"}, []string{"--delimiter"}},
		{"delimiter carriage return", []string{"--delimiter", "\r"}, []string{"--delimiter"}},
		{"quotes bad", []string{"--quotes", "loose"}, []string{"--quotes", `"loose"`, "strict or lazy"}},
		{"quotes empty", []string{"--quotes", ""}, []string{"--quotes"}},
		{"decimals too large", []string{"--decimals", "101"}, []string{"--decimals", "101"}},
		{"decimals below -1", []string{"--decimals", "-2"}, []string{"--decimals", "-2"}},
		{"decimals not a number", []string{"--decimals", "three"}, []string{"decimals"}},
		{"on-error bad", []string{"--on-error", "ignore"}, []string{"--on-error", `"ignore"`}},
		{"on-error empty", []string{"--on-error", ""}, []string{"--on-error"}},
		{"max-record bad unit", []string{"--max-record", "5TB"}, []string{"--max-record", "5TB"}},
		{"max-record unknown suffix", []string{"--max-record", "10XB"}, []string{"--max-record"}},
		{"max-record zero", []string{"--max-record", "0"}, []string{"--max-record"}},
		{"max-record zero with unit", []string{"--max-record", "0MiB"}, []string{"--max-record"}},
		{"max-record negative", []string{"--max-record", "-1"}, []string{"--max-record"}},
		{"max-record fraction", []string{"--max-record", "1.5MiB"}, []string{"--max-record"}},
		{"max-record over 2GiB", []string{"--max-record", "3G"}, []string{"--max-record"}},
		{"max-record empty", []string{"--max-record", ""}, []string{"--max-record"}},
		{"workers negative", []string{"--workers", "-1"}, []string{"--workers"}},
		{"connections negative", []string{"--connections", "-1"}, []string{"--connections -1: want 1 to 64"}},
		{"connections too many", []string{"--connections", "65"}, []string{"--connections 65: want 1 to 64"}},
		{"workers not a number", []string{"--workers", "many"}, []string{"workers"}},
		{"empty mass column", []string{"--mass", ""}, []string{"--mass"}},
		{"blank velocity column", []string{"--velocity", "  "}, []string{"--velocity"}},
		{"empty momentum column", []string{"--momentum", ""}, []string{"--momentum"}},
		{"too many args", []string{"a.csv", "b.csv", "c.csv"}, []string{"too many arguments", "c.csv"}},
		{"flag after args is an arg", []string{"a.csv", "b.csv", "--quiet"}, []string{"too many arguments", "--quiet"}},
		{"skip to implicit stdout without rejects", []string{"--on-error", "skip"}, []string{"--on-error skip", "--rejects"}},
		{"skip to explicit stdout without rejects", []string{"--on-error", "skip", "in.csv", "-"}, []string{"--on-error skip", "--rejects"}},
		{"rejects without skip", []string{"--rejects", "r.csv", "in.csv", "out.csv"}, []string{"--rejects", "--on-error skip"}},
		{"rejects with on-error fail", []string{"--on-error", "fail", "--rejects", "r.csv", "in.csv", "out.csv"}, []string{"--rejects"}},
		{"rejects equal to output", []string{"--on-error", "skip", "--rejects", "out.csv", "in.csv", "out.csv"}, []string{"--rejects", "OUTPUT"}},
		{"rejects and output both stdout", []string{"--on-error", "skip", "--rejects", "-", "in.csv", "-"}, []string{"--rejects"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			checkUsageError(t, tt.args, nil, tt.want...)
		})
	}
}

// TestRejectsSameFileAsOutput: the rejects file and the output cannot be
// the same file, however the two paths are spelled. When they are, the
// output (committed after the rejects) silently replaces the rejects file
// and every rejected row is lost.
func TestRejectsSameFileAsOutput(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name            string
		rejects, output string
	}{
		{"dot slash", "./out.csv", "out.csv"},
		{"double slash", "dir//out.csv", "dir/out.csv"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			args := []string{"--on-error", "skip", "--rejects", tt.rejects, "in.csv", tt.output}
			_, err := parseCLI(args, envMap(nil), &bytes.Buffer{})
			var uerr *usageError
			if !errors.As(err, &uerr) {
				t.Errorf("BUG: parseCLI(%q) = %v: accepted --rejects %q with OUTPUT %q, the same file; "+
					"the output is renamed over the rejects file and the rejected rows are lost",
					args, err, tt.rejects, tt.output)
			}
		})
	}

	// The consequence, end to end in process: one bad row, reported as
	// rejected by the summary, is found nowhere.
	t.Run("rejected row is lost", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		in := filepath.Join(dir, "in.csv")
		if err := os.WriteFile(in, []byte("mass,velocity\n1,2\n1,abc\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(dir, "out.csv")
		sep := string(filepath.Separator)
		rej := dir + sep + "." + sep + "out.csv" // not cleaned: the same file as out
		var stdout, stderr bytes.Buffer
		code := runCLI(context.Background(), []string{"--on-error", "skip", "--rejects", rej, in, out},
			envMap(nil), nil, &stdout, &stderr)
		if code == exitUsage {
			return // fixed: refused as a usage error
		}
		got, _ := os.ReadFile(out)
		if !bytes.Contains(got, []byte("abc")) {
			t.Errorf("BUG: exit %d, stderr %q, but the rejected row 1,abc is in no file: %s holds %q",
				code, stderr.String(), out, got)
		}
	})
}

// TestDistinctColumnNamesIsUsageError: naming the same column for two
// roles is a mistake on the command line, so it is a usage error (exit 2,
// message naming the flags), reported before any input is read.
func TestDistinctColumnNamesIsUsageError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
	}{
		{"mass and velocity", []string{"--mass", "speed", "--velocity", "speed"}},
		{"case-insensitive", []string{"--mass", "speed", "--velocity", "SPEED"}},
		{"velocity and momentum", []string{"--momentum", "velocity"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			code := runCLI(context.Background(), tt.args, envMap(nil),
				strings.NewReader("speed,velocity\n1,2\n"), &stdout, &stderr)
			if code != exitUsage {
				t.Errorf("BUG: runCLI(%q) exit %d, want %d (usage error); stderr %q",
					tt.args, code, exitUsage, stderr.String())
			}
			if !strings.Contains(stderr.String(), "--") {
				t.Errorf("stderr %q names no flag", stderr.String())
			}
		})
	}
}

func TestEnv(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		env   map[string]string
		args  []string
		check func(t *testing.T, c *cliConfig)
	}{
		{"on-error skip", map[string]string{"MOMENTUM_ON_ERROR": "skip"}, []string{"in.csv", "out.csv"}, func(t *testing.T, c *cliConfig) {
			if c.opts.OnError != compute.OnErrorSkip || c.rejects != "out.rejects.csv" {
				t.Errorf("OnError %v rejects %q", c.opts.OnError, c.rejects)
			}
		}},
		{"max-record", map[string]string{"MOMENTUM_MAX_RECORD": "64MiB"}, nil, func(t *testing.T, c *cliConfig) { wantMaxRecord(t, c, 64<<20) }},
		{"decimals", map[string]string{"MOMENTUM_DECIMALS": "3"}, nil, func(t *testing.T, c *cliConfig) { wantDecimals(t, c, true, 3) }},
		{"delimiter", map[string]string{"MOMENTUM_DELIMITER": ";"}, nil, func(t *testing.T, c *cliConfig) { wantDelim(t, c, ';') }},
		{"delimiter tab", map[string]string{"MOMENTUM_DELIMITER": "tab"}, nil, func(t *testing.T, c *cliConfig) { wantDelim(t, c, '\t') }},
		{"header", map[string]string{"MOMENTUM_HEADER": "no"}, nil, func(t *testing.T, c *cliConfig) { wantHeader(t, c, compute.HeaderAbsent) }},
		{"quotes", map[string]string{"MOMENTUM_QUOTES": "lazy"}, nil, func(t *testing.T, c *cliConfig) { wantQuotes(t, c, compute.QuotesLazy) }},
		{"workers", map[string]string{"MOMENTUM_WORKERS": "2"}, nil, func(t *testing.T, c *cliConfig) {
			if c.opts.Workers != 2 {
				t.Errorf("Workers %d", c.opts.Workers)
			}
		}},
		{"connections", map[string]string{"MOMENTUM_CONNECTIONS": "1"}, nil, func(t *testing.T, c *cliConfig) {
			if c.readAhead.Connections != 1 {
				t.Errorf("Connections %d", c.readAhead.Connections)
			}
		}},
		{"quiet", map[string]string{"MOMENTUM_QUIET": "true"}, nil, func(t *testing.T, c *cliConfig) {
			if !c.quiet {
				t.Error("quiet not set")
			}
		}},
		{"columns", map[string]string{"MOMENTUM_MASS": "m", "MOMENTUM_VELOCITY": "v", "MOMENTUM_MOMENTUM": "p"}, nil, func(t *testing.T, c *cliConfig) {
			if c.opts.MassColumn != "m" || c.opts.VelocityColumn != "v" || c.opts.MomentumColumn != "p" {
				t.Errorf("columns %q %q %q", c.opts.MassColumn, c.opts.VelocityColumn, c.opts.MomentumColumn)
			}
		}},
		{"rejects", map[string]string{"MOMENTUM_ON_ERROR": "skip", "MOMENTUM_REJECTS": "bad.csv"}, nil, func(t *testing.T, c *cliConfig) {
			if c.rejects != "bad.csv" || c.output != "-" {
				t.Errorf("rejects %q output %q", c.rejects, c.output)
			}
		}},
		{"empty value is unset", map[string]string{"MOMENTUM_DECIMALS": "", "MOMENTUM_ON_ERROR": ""}, nil, func(t *testing.T, c *cliConfig) {
			wantDecimals(t, c, false, 0)
			if c.opts.OnError != compute.OnErrorFail {
				t.Errorf("OnError %v", c.opts.OnError)
			}
		}},
		{"help, h and version are not read", map[string]string{"MOMENTUM_HELP": "true", "MOMENTUM_H": "true", "MOMENTUM_VERSION": "true"}, nil, func(t *testing.T, c *cliConfig) {
			if c.showVersion {
				t.Error("MOMENTUM_VERSION set showVersion")
			}
		}},
		{"flag overrides decimals", map[string]string{"MOMENTUM_DECIMALS": "3"}, []string{"--decimals", "5"}, func(t *testing.T, c *cliConfig) { wantDecimals(t, c, true, 5) }},
		{"flag overrides decimals back to shortest", map[string]string{"MOMENTUM_DECIMALS": "3"}, []string{"--decimals", "-1"}, func(t *testing.T, c *cliConfig) { wantDecimals(t, c, false, 0) }},
		{"flag overrides on-error", map[string]string{"MOMENTUM_ON_ERROR": "skip"}, []string{"--on-error", "fail"}, func(t *testing.T, c *cliConfig) {
			if c.opts.OnError != compute.OnErrorFail || c.rejects != "" {
				t.Errorf("OnError %v rejects %q", c.opts.OnError, c.rejects)
			}
		}},
		{"flag overrides max-record", map[string]string{"MOMENTUM_MAX_RECORD": "64MiB"}, []string{"--max-record", "1KiB"}, func(t *testing.T, c *cliConfig) { wantMaxRecord(t, c, 1024) }},
		{"flag overrides delimiter", map[string]string{"MOMENTUM_DELIMITER": ";"}, []string{"--delimiter", ","}, func(t *testing.T, c *cliConfig) { wantDelim(t, c, ',') }},
		{"flag overrides bad string env", map[string]string{"MOMENTUM_ON_ERROR": "bogus"}, []string{"--on-error", "fail"}, func(t *testing.T, c *cliConfig) {
			if c.opts.OnError != compute.OnErrorFail {
				t.Errorf("OnError %v", c.opts.OnError)
			}
		}},
		{"flag overrides quiet", map[string]string{"MOMENTUM_QUIET": "true"}, []string{"--quiet=false"}, func(t *testing.T, c *cliConfig) {
			if c.quiet {
				t.Error("quiet set")
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.check(t, parseOK(t, tt.args, tt.env))
		})
	}
}

// TestEnvNames checks which variables are looked up: MOMENTUM_ and the
// flag name upper-cased with '-' as '_', for every flag but help, h and
// version.
// TestParseCLICompress: --compress, MOMENTUM_COMPRESS, or else the
// output's suffix, say how the output is compressed.
func TestParseCLICompress(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		env  map[string]string
		want compute.Compression
	}{
		{[]string{"in.csv", "out.csv"}, nil, compute.Uncompressed},
		{[]string{"in.csv.gz", "out.csv"}, nil, compute.Uncompressed},
		{[]string{"in.csv", "out.csv.gz"}, nil, compute.Gzip},
		{[]string{"in.csv", "out.CSV.ZST"}, nil, compute.Zstd},
		{[]string{"in.csv.gz"}, nil, compute.Uncompressed},
		{[]string{"--compress", "none", "in.csv", "out.csv.gz"}, nil, compute.Uncompressed},
		{[]string{"--compress", "zstd", "in.csv", "out.csv"}, nil, compute.Zstd},
		{[]string{"--compress", "input", "in.csv"}, nil, compute.SameAsInput},
		{[]string{"in.csv", "out.csv"}, map[string]string{"MOMENTUM_COMPRESS": "gzip"}, compute.Gzip},
		{[]string{"--compress", "none", "in.csv", "out.csv"}, map[string]string{"MOMENTUM_COMPRESS": "gzip"}, compute.Uncompressed},
	}
	for _, tt := range tests {
		c, err := parseCLI(tt.args, envMap(tt.env), &bytes.Buffer{})
		if err != nil {
			t.Fatalf("%q: %v", tt.args, err)
		}
		if c.opts.Compress != tt.want || c.opts.Codec == nil {
			t.Errorf("%q %v: compress %s, codec %v; want %s", tt.args, tt.env, c.opts.Compress, c.opts.Codec, tt.want)
		}
	}
}

func TestEnvNames(t *testing.T) {
	t.Parallel()
	var asked []string
	getenv := func(k string) string { asked = append(asked, k); return "" }
	if _, err := parseCLI(nil, getenv, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, f := range envFlags {
		want = append(want, "MOMENTUM_"+strings.ToUpper(strings.ReplaceAll(f, "-", "_")))
	}
	slices.Sort(asked)
	slices.Sort(want)
	if !slices.Equal(asked, want) {
		t.Errorf("variables looked up\n got %q\nwant %q", asked, want)
	}
}

// TestEnvUsageErrors: a bad value in the environment is a usage error
// whose message names the variable, since no flag was typed.
func TestEnvUsageErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, key, value string
		args             []string
	}{
		{"decimals not a number", "MOMENTUM_DECIMALS", "abc", nil},
		{"workers not a number", "MOMENTUM_WORKERS", "x", nil},
		{"quiet not a bool", "MOMENTUM_QUIET", "maybe", nil},
		{"on-error bad", "MOMENTUM_ON_ERROR", "bogus", nil},
		{"decimals out of range", "MOMENTUM_DECIMALS", "500", nil},
		{"max-record bad unit", "MOMENTUM_MAX_RECORD", "5TB", nil},
		{"max-record zero", "MOMENTUM_MAX_RECORD", "0", nil},
		{"delimiter two bytes", "MOMENTUM_DELIMITER", "ab", nil},
		{"header bad", "MOMENTUM_HEADER", "maybe", nil},
		{"quotes bad", "MOMENTUM_QUOTES", "loose", nil},
		{"compress bad", "MOMENTUM_COMPRESS", "brotli", nil},
		{"workers negative", "MOMENTUM_WORKERS", "-1", nil},
		{"blank mass", "MOMENTUM_MASS", "  ", nil},
		{"rejects without skip", "MOMENTUM_REJECTS", "r.csv", []string{"in.csv", "out.csv"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := map[string]string{tt.key: tt.value}
			c, err := parseCLI(tt.args, envMap(env), &bytes.Buffer{})
			var uerr *usageError
			if !errors.As(err, &uerr) {
				t.Fatalf("%s=%q: parseCLI = %+v, %v; want a usage error", tt.key, tt.value, c, err)
			}
			if !strings.Contains(err.Error(), tt.key) {
				t.Errorf("BUG: %s=%q: usage error %q does not name the variable %s (it names a flag that was never typed)",
					tt.key, tt.value, err, tt.key)
			}
			var stderr bytes.Buffer
			if code := runCLI(context.Background(), tt.args, envMap(env), strings.NewReader(""), &bytes.Buffer{}, &stderr); code != exitUsage {
				t.Errorf("%s=%q: exit %d, want %d; stderr %q", tt.key, tt.value, code, exitUsage, stderr.String())
			}
		})
	}
}

func TestRejectsPath(t *testing.T) {
	t.Parallel()
	tests := []struct{ output, want string }{
		{"out.csv", "out.rejects.csv"},
		{"OUT.CSV", "OUT.rejects.CSV"},
		{"out.Csv", "out.rejects.Csv"},
		{"out.txt", "out.txt.rejects.csv"},
		{"out", "out.rejects.csv"},
		{"dir/out", "dir/out.rejects.csv"},
		{"dir/out.csv", "dir/out.rejects.csv"},
		{"dir.csv/out", "dir.csv/out.rejects.csv"},
		{"/abs/path/data.v2.csv", "/abs/path/data.v2.rejects.csv"},
		{"out.csv.gz", "out.rejects.csv"},
		{"out.CSV.ZST", "out.rejects.CSV"},
		{"out.gz", "out.rejects.csv"},
	}
	for _, tt := range tests {
		if got := rejectsPath(tt.output); got != tt.want {
			t.Errorf("rejectsPath(%q) = %q, want %q", tt.output, got, tt.want)
		}
	}
}

func TestParseSize(t *testing.T) {
	t.Parallel()
	good := []struct {
		in   string
		want int
	}{
		{"1", 1},
		{"1048576", 1048576},
		{"512KiB", 512 << 10},
		{"512K", 512 << 10},
		{"512KB", 512 << 10},
		{"512kib", 512 << 10},
		{"512k", 512 << 10},
		{"64MiB", 64 << 20},
		{"64M", 64 << 20},
		{"64mb", 64 << 20},
		{"1G", 1 << 30},
		{"1GiB", 1 << 30},
		{"2GiB", 2 << 30},
		{"2048MiB", 2 << 30},
		{"2147483648", 1 << 31},
		{"16 MiB", 16 << 20},
		{" 7 ", 7},
		{"5B", 5},
	}
	for _, tt := range good {
		got, err := parseSize(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
	bad := []string{
		"", "0", "0K", "0MiB", "-1", "-1K", "1.5MiB", "1e6", "abc", "MiB", "K",
		"5TB", "5T", "10XB", "1KK", "1MiBB", "1 2", "3G", "2049MiB", "2147483649", "0x10",
		"99999999999999999999",
	}
	for _, in := range bad {
		if got, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) = %d, want an error", in, got)
		}
	}
}

func TestProgressLine(t *testing.T) {
	t.Parallel()
	tests := []struct {
		done, size int64
		elapsed    time.Duration
		want       string
	}{
		{0, 100e6, time.Second, "[                              ]   0% 0.0/100.0 MB 0 MB/s\033[K"},
		{50e6, 100e6, 2 * time.Second, "[===============               ]  50% 50.0/100.0 MB 25 MB/s\033[K"},
		{100e6, 100e6, 4 * time.Second, "[==============================] 100% 100.0/100.0 MB 25 MB/s\033[K"},
		{150e6, 100e6, 5 * time.Second, "[==============================] 100% 150.0/100.0 MB 30 MB/s\033[K"}, // more than the size: capped
		{1e6, 4e6, 0, "[=======                       ]  25% 1.0/4.0 MB 1000000000 MB/s\033[K"},               // zero elapsed: no division by zero
	}
	shape := regexp.MustCompile(`^\[[= ]{30}\] [ 0-9]{3}% [0-9]+\.[0-9]/[0-9]+\.[0-9] MB [0-9]+ MB/s\x1b\[K$`)
	for _, tt := range tests {
		got := progressLine(tt.done, tt.size, tt.elapsed)
		if got != tt.want {
			t.Errorf("progressLine(%d, %d, %v)\n got %q\nwant %q", tt.done, tt.size, tt.elapsed, got, tt.want)
		}
		if !shape.MatchString(got) {
			t.Errorf("progressLine(%d, %d, %v) = %q: not the shape [bar] pct done/size MB rate MB/s ESC[K", tt.done, tt.size, tt.elapsed, got)
		}
	}
	// The bar only grows.
	prev := -1
	for done := int64(0); done <= 1000; done += 7 {
		n := strings.Count(progressLine(done, 1000, time.Second), "=")
		if n < prev || n > 30 {
			t.Fatalf("progressLine(%d, 1000): %d '=' after %d", done, n, prev)
		}
		prev = n
	}
}

func TestSummary(t *testing.T) {
	t.Parallel()
	tests := []struct {
		st      compute.Stats
		elapsed time.Duration
		want    string
	}{
		{compute.Stats{RowsIn: 12, RowsOut: 12, BytesIn: 4e6}, 2 * time.Second,
			"momentum: 12 rows, 0 rejected, 4.0 MB in 2.00s (2 MB/s)"},
		{compute.Stats{RowsIn: 10, RowsOut: 7, RowsRejected: 3, BytesIn: 250e6}, 500 * time.Millisecond,
			"momentum: 7 rows, 3 rejected, 250.0 MB in 0.50s (500 MB/s)"},
		{compute.Stats{}, 0, "momentum: 0 rows, 0 rejected, 0.0 MB in 0.00s (0 MB/s)"},
	}
	for _, tt := range tests {
		if got := summary(tt.st, tt.elapsed); got != tt.want {
			t.Errorf("summary(%+v, %v)\n got %q\nwant %q", tt.st, tt.elapsed, got, tt.want)
		}
	}
}

// TestVersionString is not parallel: it sets the package's version.
func TestVersionString(t *testing.T) {
	s := versionString()
	if !strings.HasPrefix(s, "momentum ") {
		t.Errorf("versionString() = %q, want the prefix \"momentum \"", s)
	}
	if strings.ContainsAny(s, "\n\r") {
		t.Errorf("versionString() = %q is not one line", s)
	}
	for _, w := range []string{runtime.Version(), runtime.GOOS + "/" + runtime.GOARCH} {
		if !strings.Contains(s, w) {
			t.Errorf("versionString() = %q lacks %q", s, w)
		}
	}
	old := version
	defer func() { version = old }()
	version = "v1.2.3"
	if s := versionString(); !strings.HasPrefix(s, "momentum v1.2.3 ") {
		t.Errorf("with version v1.2.3: versionString() = %q", s)
	}
}

func TestRunVersion(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	code := runCLI(context.Background(), []string{"--version"}, envMap(nil), nil, &stdout, &stderr)
	if code != exitOK || stdout.String() != versionString()+"\n" || stderr.Len() != 0 {
		t.Errorf("--version: exit %d stdout %q stderr %q; want 0, %q, nothing", code, stdout.String(), versionString()+"\n", stderr.String())
	}
}

func TestHelp(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"--help"}, {"-h"}, {"-help"}, {"--quiet", "--help"}, {"--help", "in.csv", "out.csv"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			code := runCLI(context.Background(), args, envMap(nil), nil, &stdout, &stderr)
			if code != exitOK {
				t.Errorf("exit %d, want 0", code)
			}
			if stderr.Len() != 0 {
				t.Errorf("help wrote to stderr: %q", stderr.String())
			}
			checkHelpText(t, stdout.String())

			_, err := parseCLI(args, envMap(nil), &bytes.Buffer{})
			if !errors.Is(err, flag.ErrHelp) {
				t.Errorf("parseCLI(%q) error %v, want flag.ErrHelp", args, err)
			}
		})
	}
}

// checkHelpText checks that help lists every flag as --name, and nothing
// else as a flag.
func checkHelpText(t *testing.T, help string) {
	t.Helper()
	if !strings.HasPrefix(help, "Usage: momentum [flags] [INPUT [OUTPUT]]") {
		t.Errorf("help does not start with the usage line: %.80q", help)
	}
	listed := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^  --([a-z-]+)`).FindAllStringSubmatch(help, -1) {
		listed[m[1]] = true
	}
	for _, f := range allFlags {
		if !listed[f] {
			t.Errorf("help does not list --%s", f)
		}
		if regexp.MustCompile(`(?m)^\s+-` + f + `\b`).MatchString(help) {
			t.Errorf("help lists -%s with a single dash", f)
		}
	}
	for f := range listed {
		if !slices.Contains(allFlags, f) {
			t.Errorf("help lists --%s, which this test does not know", f)
		}
	}
	for _, w := range []string{"MOMENTUM_", "Exit status", "(default 16MiB)"} {
		if !strings.Contains(help, w) {
			t.Errorf("help lacks %q", w)
		}
	}
}

// TestRunInProcess runs whole jobs through runCLI.
func TestRunInProcess(t *testing.T) {
	t.Parallel()
	demo, err := os.ReadFile("../../testdata/demo.csv")
	if err != nil {
		t.Fatal(err)
	}
	golden, err := os.ReadFile("../../testdata/demo.golden")
	if err != nil {
		t.Fatalf("golden file missing: %v", err)
	}

	t.Run("stdin to stdout", func(t *testing.T) {
		t.Parallel()
		var stdout, stderr bytes.Buffer
		code := runCLI(context.Background(), nil, envMap(nil), bytes.NewReader(demo), &stdout, &stderr)
		if code != exitOK {
			t.Fatalf("exit %d, stderr %q", code, stderr.String())
		}
		if !bytes.Equal(stdout.Bytes(), golden) {
			t.Errorf("stdout\n%s\nwant\n%s", stdout.Bytes(), golden)
		}
		if !strings.HasPrefix(stderr.String(), "momentum: 5 rows, 0 rejected, ") || strings.Count(stderr.String(), "\n") != 1 {
			t.Errorf("stderr %q, want one summary line", stderr.String())
		}
	})

	t.Run("quiet", func(t *testing.T) {
		t.Parallel()
		var stdout, stderr bytes.Buffer
		code := runCLI(context.Background(), []string{"--quiet", "-", "-"}, envMap(nil), bytes.NewReader(demo), &stdout, &stderr)
		if code != exitOK || !bytes.Equal(stdout.Bytes(), golden) || stderr.Len() != 0 {
			t.Errorf("exit %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
		}
	})

	t.Run("quiet from env", func(t *testing.T) {
		t.Parallel()
		var stdout, stderr bytes.Buffer
		code := runCLI(context.Background(), nil, envMap(map[string]string{"MOMENTUM_QUIET": "1"}), bytes.NewReader(demo), &stdout, &stderr)
		if code != exitOK || stderr.Len() != 0 {
			t.Errorf("exit %d, stderr %q", code, stderr.String())
		}
	})

	t.Run("file to file", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		out := filepath.Join(dir, "out.csv")
		var stdout, stderr bytes.Buffer
		code := runCLI(context.Background(), []string{"../../testdata/demo.csv", out}, envMap(nil), nil, &stdout, &stderr)
		if code != exitOK {
			t.Fatalf("exit %d, stderr %q", code, stderr.String())
		}
		got, err := os.ReadFile(out)
		if err != nil || !bytes.Equal(got, golden) {
			t.Errorf("output %q, %v; want %q", got, err, golden)
		}
		if stdout.Len() != 0 {
			t.Errorf("stdout %q, want nothing", stdout.String())
		}
		checkDirOnly(t, dir, "out.csv")
	})

	t.Run("bad value on stdin", func(t *testing.T) {
		t.Parallel()
		var stdout, stderr bytes.Buffer
		code := runCLI(context.Background(), nil, envMap(nil), strings.NewReader("mass,velocity\n1,2\n1,abc\n"), &stdout, &stderr)
		want := "momentum: stdin: line 3, column velocity: not a decimal number: \"abc\"\n"
		if code != exitData || stderr.String() != want {
			t.Errorf("exit %d stderr %q; want %d %q", code, stderr.String(), exitData, want)
		}
	})

	t.Run("missing input", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		var stderr bytes.Buffer
		code := runCLI(context.Background(), []string{filepath.Join(dir, "nope.csv"), filepath.Join(dir, "out.csv")},
			envMap(nil), nil, &bytes.Buffer{}, &stderr)
		if code != exitFailure || !strings.Contains(stderr.String(), "nope.csv") {
			t.Errorf("exit %d stderr %q; want %d naming the file", code, stderr.String(), exitFailure)
		}
		checkDirOnly(t, dir)
	})

	t.Run("canceled context", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		var stderr bytes.Buffer
		code := runCLI(ctx, []string{"-", filepath.Join(dir, "out.csv")}, envMap(nil), bytes.NewReader(demo), &bytes.Buffer{}, &stderr)
		if code != exitFailure {
			t.Errorf("exit %d, want %d; stderr %q", code, exitFailure, stderr.String())
		}
		checkDirOnly(t, dir)
	})

	t.Run("skip", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		out := filepath.Join(dir, "out.csv")
		var stderr bytes.Buffer
		code := runCLI(context.Background(), []string{"--on-error", "skip", "-", out}, envMap(nil),
			strings.NewReader("mass,velocity\n1,2\n-1,2\n3,x\n4,5\n"), &bytes.Buffer{}, &stderr)
		if code != exitOK || !strings.HasPrefix(stderr.String(), "momentum: 2 rows, 2 rejected, ") {
			t.Fatalf("exit %d stderr %q", code, stderr.String())
		}
		got, _ := os.ReadFile(out)
		if string(got) != "mass,velocity,momentum\n1,2,2\n4,5,20\n" {
			t.Errorf("output %q", got)
		}
		rej, _ := os.ReadFile(filepath.Join(dir, "out.rejects.csv"))
		want := "line,column,reason,record\n" +
			"3,mass,\"negative mass: \"\"-1\"\"\",\"-1,2\"\n" +
			"4,velocity,\"not a decimal number: \"\"x\"\"\",\"3,x\"\n"
		if string(rej) != want {
			t.Errorf("rejects\n got %q\nwant %q", rej, want)
		}
		checkDirOnly(t, dir, "out.csv", "out.rejects.csv")
	})
}

// checkDirOnly checks that dir holds exactly the named entries: nothing
// else, and in particular no temporary file.
func checkDirOnly(t *testing.T, dir string, names ...string) {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, de := range des {
		got = append(got, de.Name())
	}
	slices.Sort(names)
	if !slices.Equal(got, names) {
		t.Errorf("directory %s holds %q, want %q", dir, got, names)
	}
}

// TestHelpNamesEveryMode checks that the CLI's help names each other
// mode, and that each of them answers --help.
func TestHelpNamesEveryMode(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"--help"}, func(string) string { return "" }, strings.NewReader(""), &out, &errOut); code != 0 {
		t.Fatalf("--help: %d", code)
	}
	for _, mode := range [][]string{{"job"}, {"merge"}, {"serve"}, {"package", "lambda"}} {
		if !strings.Contains(out.String(), "momentum "+strings.Join(mode, " ")) {
			t.Errorf("--help does not name %q", mode)
		}
		var mout, merr bytes.Buffer
		code := run(context.Background(), append(mode, "--help"), func(string) string { return "" }, strings.NewReader(""), &mout, &merr)
		if code != 0 || !strings.Contains(mout.String()+merr.String(), "Usage: momentum "+mode[0]) {
			t.Errorf("%q --help: code %d, %q %q", mode, code, mout.String(), merr.String())
		}
	}
}

// TestLambdaConnections: a function's transfer buffers take at most
// half of its memory.
func TestLambdaConnections(t *testing.T) {
	for mem, want := range map[string]int{"": 8, "x": 8, "128": 6, "160": 8, "192": 8, "10240": 8, "64": 3, "16": 1} {
		if got := lambdaConnections(envMap(map[string]string{"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": mem})); got != want {
			t.Errorf("%q MB: %d connections, want %d", mem, got, want)
		}
	}
	c, err := parseEventConfig("on AWS Lambda", "s3", 4, "", "", nil, envMap(map[string]string{
		"MOMENTUM_INPUT": "s3://b/in/", "MOMENTUM_OUTPUT": "s3://b/out/"}), &bytes.Buffer{})
	if err != nil || c.readAhead.Connections != 4 || c.readAhead.RangeSize != 4<<20 || c.partSize != 5<<20 {
		t.Fatalf("%+v, %v; want the mode's default of 4, ranges of 4 MiB and parts of 5 MiB", c, err)
	}
	c, err = parseEventConfig("on AWS Lambda", "s3", 4, "", "", nil, envMap(map[string]string{
		"MOMENTUM_INPUT": "s3://b/in/", "MOMENTUM_OUTPUT": "s3://b/out/", "MOMENTUM_CONNECTIONS": "2"}), &bytes.Buffer{})
	if err != nil || c.readAhead.Connections != 2 {
		t.Fatalf("%+v, %v; want MOMENTUM_CONNECTIONS", c, err)
	}
}

// TestJobConnections: the job reads ahead 8 ranges, into a file or
// uploading its output, or as many as it is told.
func TestJobConnections(t *testing.T) {
	for _, tc := range []struct {
		out, env string
		want     int
	}{{"out.csv", "", 8}, {"gs://b/out.csv", "", 8}, {"s3://b/parts/", "", 8}, {"gs://b/out.csv", "2", 2}} {
		c, err := parseJobConfig([]string{"--input", "s3://b/in.csv", "--output", tc.out}, envMap(map[string]string{"MOMENTUM_CONNECTIONS": tc.env}), &bytes.Buffer{})
		if err != nil || c.readAhead.Connections != tc.want {
			t.Errorf("output %s, MOMENTUM_CONNECTIONS=%q: %+v, %v; want %d connections", tc.out, tc.env, c, err, tc.want)
		}
	}
}
