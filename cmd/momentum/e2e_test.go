package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/momentum-run/momentum/adapters/rejects"
	"github.com/momentum-run/momentum/compute"
)

// bin is the momentum binary built by TestMain, as it ships.
var bin string

// buildTags are the tags the shipped binary is built with: without
// gRPC, which the Cloud Storage client would otherwise link in.
const buildTags = "disable_grpc_modules,lambda.norpc"

func TestMain(m *testing.M) {
	if os.Getenv(rootsChildEnv) != "" {
		os.Exit(m.Run()) // a child of TestFallbackRoots: no binary needed
	}
	dir, err := os.MkdirTemp("", "momentum-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := 1
	if bin, err = buildBinary(dir); err != nil {
		fmt.Fprintln(os.Stderr, "building momentum:", err)
	} else {
		code = m.Run()
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// buildBinary builds the command in the current directory into dir, as
// the README's go run line builds it (same tags, no -trimpath, cgo as the
// environment has it), so that it links packages already compiled for the
// tests and for a first go run. The shipped static build (-trimpath,
// CGO_ENABLED=0) is the image's, which TestDemo and cmd/momentum-image
// test.
func buildBinary(dir string) (string, error) {
	name := "momentum"
	if runtime.GOOS == "windows" {
		name += ".exe"
	}
	path := filepath.Join(dir, name)
	cmd := exec.Command(goTool(), "build", "-tags", buildTags, "-o", path, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("%v\n%s", err, out)
	}
	return path, nil
}

// goTool is the go command of the toolchain running the tests.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// result is what one run of the binary did.
type result struct {
	code           int
	stdout, stderr string
}

// cleanEnv is the test's environment without any MOMENTUM_ variable, so
// that the caller's settings do not leak into the runs.
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MOMENTUM_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// momentum runs the binary with args and stdin (nil: empty).
func momentum(t *testing.T, stdin io.Reader, args ...string) result {
	t.Helper()
	return momentumEnv(t, nil, stdin, args...)
}

// momentumEnv runs the binary with extra environment variables.
func momentumEnv(t *testing.T, env []string, stdin io.Reader, args ...string) result {
	t.Helper()
	return runCmd(t, exec.Command(bin, args...), env, stdin)
}

func runCmd(t *testing.T, cmd *exec.Cmd, env []string, stdin io.Reader) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd.Env = cleanEnv(env...)
	cmd.Stdin = stdin
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("running %q: %v", cmd.Args, err)
	}
	return result{cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()}
}

// waitReady polls ready until it returns nil, for at most 10 s, and then
// fails the test with what the process wrote to output.
func waitReady(t *testing.T, what string, ready func() error, output fmt.Stringer) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := ready()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited 10 s for %s: %v\n%s", what, err, output)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// testdata returns the path of a file in testdata/, which must exist.
func testdata(t *testing.T, name string) string {
	t.Helper()
	p := filepath.Join("..", "..", "testdata", name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s missing: %v", p, err)
	}
	return p
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// ioDirs returns a fresh input folder and a fresh, separate output folder.
func ioDirs(t *testing.T) (in, out string) {
	t.Helper()
	in, out = filepath.Join(t.TempDir(), "in"), filepath.Join(t.TempDir(), "out")
	if err := os.Mkdir(in, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	return in, out
}

// wantSummary checks that stderr is exactly one summary line for rows
// rows and rejected rejects.
func wantSummary(t *testing.T, stderr string, rows, rejected int) {
	t.Helper()
	re := regexp.MustCompile(fmt.Sprintf(`^momentum: %d rows, %d rejected, [0-9]+\.[0-9] MB in [0-9]+\.[0-9]{2}s \([0-9]+ MB/s\)\n$`, rows, rejected))
	if !re.MatchString(stderr) {
		t.Errorf("stderr %q, want the summary line for %d rows, %d rejected", stderr, rows, rejected)
	}
}

// TestE2EGolden runs the examples in testdata file to file and compares
// the output with the golden files.
func TestE2EGolden(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, input, golden string
		args                []string
		env                 []string
		rows                int
	}{
		{"particles", "particles.csv", "particles.golden", nil, nil, 12},
		{"particles one worker", "particles.csv", "particles.golden", []string{"--workers", "1"}, nil, 12},
		{"demo", "demo.csv", "demo.golden", nil, nil, 5},
		{"demo decimals 3", "demo.csv", "demo-decimals3.golden", []string{"--decimals", "3"}, nil, 5},
		{"demo decimals from env", "demo.csv", "demo-decimals3.golden", nil, []string{"MOMENTUM_DECIMALS=3"}, 5},
		{"demo flag overrides env", "demo.csv", "demo.golden", []string{"--decimals", "-1"}, []string{"MOMENTUM_DECIMALS=3"}, 5},
		{"semicolon", "semicolon.csv", "semicolon.golden", []string{"--delimiter", ";", "--mass", "Masse", "--velocity", "Geschwindigkeit"}, nil, 2},
		{"semicolon from env", "semicolon.csv", "semicolon.golden", nil,
			[]string{"MOMENTUM_DELIMITER=;", "MOMENTUM_MASS=masse", "MOMENTUM_VELOCITY=GESCHWINDIGKEIT"}, 2},
		{"lazy quotes", "lazy-quotes.csv", "lazy-quotes.golden", []string{"--quotes", "lazy"}, nil, 6},
		{"lazy quotes from env", "lazy-quotes.csv", "lazy-quotes.golden", []string{"--workers", "1"}, []string{"MOMENTUM_QUOTES=lazy"}, 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			in := testdata(t, tt.input)
			want := readFile(t, testdata(t, tt.golden))
			_, dir := ioDirs(t)
			out := filepath.Join(dir, "out.csv")
			r := momentumEnv(t, tt.env, nil, append(tt.args, in, out)...)
			if r.code != 0 {
				t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
			}
			if got := readFile(t, out); !bytes.Equal(got, want) {
				t.Errorf("output differs from %s\n got %q\nwant %q", tt.golden, got, want)
			}
			if r.stdout != "" {
				t.Errorf("stdout %q, want nothing", r.stdout)
			}
			wantSummary(t, r.stderr, tt.rows, 0)
			checkDirOnly(t, dir, "out.csv")
		})
	}
}

// TestE2EStdio reads stdin and writes stdout.
func TestE2EStdio(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{nil, {"-"}, {"-", "-"}, {"--workers", "1", "-", "-"}} {
		t.Run(fmt.Sprintf("%q", args), func(t *testing.T) {
			t.Parallel()
			in := readFile(t, testdata(t, "particles.csv"))
			want := readFile(t, testdata(t, "particles.golden"))

			// A pipe: exec copies a non-file reader through one.
			r := momentum(t, bytes.NewReader(in), args...)
			if r.code != 0 || r.stdout != string(want) {
				t.Errorf("from a pipe: exit %d\nstdout %q\nwant   %q\nstderr %q", r.code, r.stdout, want, r.stderr)
			}
			wantSummary(t, r.stderr, 12, 0)

			// A regular file as stdin.
			f, err := os.Open(testdata(t, "particles.csv"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			r = momentum(t, f, args...)
			if r.code != 0 || r.stdout != string(want) {
				t.Errorf("from a file: exit %d\nstdout %q\nwant   %q\nstderr %q", r.code, r.stdout, want, r.stderr)
			}
			wantSummary(t, r.stderr, 12, 0)
		})
	}
}

// TestE2EBadFiles runs testdata/bad/*.csv and compares the message with
// the matching testdata/bad-*.err.
func TestE2EBadFiles(t *testing.T) {
	t.Parallel()
	inputs, _ := filepath.Glob(filepath.Join("..", "..", "testdata", "bad", "*.csv"))
	if len(inputs) == 0 {
		t.Fatal("no testdata/bad/*.csv")
	}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".csv")
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			want := strings.TrimSuffix(string(readFile(t, testdata(t, "bad-"+name+".err"))), "\n")
			_, dir := ioDirs(t)
			r := momentum(t, nil, in, filepath.Join(dir, "out.csv"))
			if r.code != exitData {
				t.Errorf("exit %d, want %d", r.code, exitData)
			}
			if w := "momentum: " + in + ": " + want + "\n"; r.stderr != w {
				t.Errorf("stderr\n got %q\nwant %q", r.stderr, w)
			}
			checkDirOnly(t, dir)
		})
	}
}

// TestE2EDataErrors checks the exit status, the exact message and that
// nothing is left behind for invalid inputs.
func TestE2EDataErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, input string
		args        []string
		want        string // the message after "momentum: PATH: "
	}{
		{"bad value", "mass,velocity\n1,2\n1,abc\n", nil,
			`line 3, column velocity: not a decimal number: "abc"`},
		{"bad value one worker", "mass,velocity\n1,2\n1,abc\n", []string{"--workers", "1"},
			`line 3, column velocity: not a decimal number: "abc"`},
		{"bad value after blank line and CRLF", "mass,velocity\r\n1,2\r\n\r\n3,-\r\n", nil,
			`line 4, column velocity: not a decimal number: "-"`},
		{"bad field of a multi-line record", "note,mass,velocity\n\"x\ny\",1,2\n\"p\nq\",zz,3\n", nil,
			`line 5, column mass: not a decimal number: "zz"`},
		{"headerless column index", "1,2\n3,x\n", nil,
			`line 2, column 2: not a decimal number: "x"`},
		{"negative mass", "mass,velocity\n-0.5,3\n", nil,
			`line 2, column mass: negative mass: "-0.5"`},
		{"empty value", "mass,velocity\n1,\n", nil,
			`line 2, column velocity: empty value: ""`},
		{"decimal comma", "mass,velocity\n\"3,14\",2\n", nil,
			`line 2, column mass: decimal comma: use '.' as the decimal point: "3,14"`},
		{"field count", "mass,velocity\n1,2,3\n", nil,
			`line 2: wrong number of fields: got 3, want 2`},
		{"bare quote", "mass,velocity\n1,2\"x\n", nil,
			`line 2, column velocity: bare " in unquoted field`},
		{"unterminated quote", "mass,velocity,note\n1,2,ok\n3,4,\"open\nand\nmore\n5,6,x\n", nil,
			`line 3, column note: quoted field never closed`},
		{"unterminated quote after multi-line field and blank line", "mass,velocity,note\n\n1,2,\"a\nb\"\n3,4,\"open\n5,6,x\n", nil,
			`line 5, column note: quoted field never closed`},
		{"unterminated quote in header", "mass,velocity,\"note\nx,y,z\n", nil,
			`line 1, column 3: quoted field never closed`},
		{"record too large", "mass,velocity\n1,2\n12345678901234567890,1\n", []string{"--max-record", "16"},
			`line 3: record too large: 22 bytes, limit 16`},
		{"empty input", "", nil, `line 1: empty input`},
		{"only blank lines", "\n\n", nil, `line 1: empty input`},
		{"already processed", "mass,velocity,momentum\n1,2,2\n", nil,
			`line 1, column momentum: input already has a momentum column (already processed?)`},
		{"already processed, other name", "m,v,p\n1,2,2\n", []string{"--mass", "m", "--velocity", "v", "--momentum", "P"},
			`line 1, column p: input already has a momentum column (already processed?)`},
		{"missing column", "weight,speed\n1,2\n", nil,
			`line 1: missing column: no column named "mass" in header "weight,speed"`},
		{"header forced on numbers", "1,2\n", []string{"--header", "yes"},
			`line 1: missing column: no column named "mass" in header "1,2"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			inDir, outDir := ioDirs(t)
			in := filepath.Join(inDir, "in.csv")
			writeFile(t, in, []byte(tt.input))
			r := momentum(t, nil, append(tt.args, in, filepath.Join(outDir, "out.csv"))...)
			if r.code != exitData {
				t.Errorf("exit %d, want %d", r.code, exitData)
			}
			if want := "momentum: " + in + ": " + tt.want + "\n"; r.stderr != want {
				t.Errorf("stderr\n got %q\nwant %q", r.stderr, want)
			}
			if r.stdout != "" {
				t.Errorf("stdout %q, want nothing", r.stdout)
			}
			checkDirOnly(t, outDir)
			checkDirOnly(t, inDir, "in.csv")

			// The same from stdin to stdout names stdin.
			r = momentum(t, strings.NewReader(tt.input), tt.args...)
			if want := "momentum: stdin: " + tt.want + "\n"; r.code != exitData || r.stderr != want {
				t.Errorf("from stdin: exit %d, stderr %q; want %d, %q", r.code, r.stderr, exitData, want)
			}
		})
	}
}

// TestE2EProcessedOutput feeds an output back in: that is refused.
func TestE2EProcessedOutput(t *testing.T) {
	t.Parallel()
	golden := testdata(t, "particles.golden")
	_, dir := ioDirs(t)
	r := momentum(t, nil, golden, filepath.Join(dir, "out.csv"))
	if r.code != exitData || !strings.Contains(r.stderr, "already has a momentum column") {
		t.Errorf("exit %d stderr %q; want %d, already processed", r.code, r.stderr, exitData)
	}
	checkDirOnly(t, dir)
}

// TestE2EUnterminatedQuoteInLargeFile: a quote that never closes is
// reported at the line it opened, whether the rest of the file fits under
// --max-record or not.
func TestE2EUnterminatedQuoteInLargeFile(t *testing.T) {
	t.Parallel()
	inDir, _ := ioDirs(t)
	in := filepath.Join(inDir, "in.csv")
	var b bytes.Buffer
	b.WriteString("mass,velocity,note\n1,2,ok\n\n3,4,\"open\n")
	for i := range 30000 {
		fmt.Fprintf(&b, "%d,2,%s\n", i, strings.Repeat("x", 60))
	}
	writeFile(t, in, b.Bytes())
	for _, args := range [][]string{
		{"--workers", "1"}, {"--workers", "4"},
		{"--workers", "1", "--max-record", "64KiB"}, {"--workers", "4", "--max-record", "64KiB"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			t.Parallel()
			_, outDir := ioDirs(t)
			r := momentum(t, nil, append(args, in, filepath.Join(outDir, "out.csv"))...)
			prefix := "momentum: " + in + ": line 4"
			if r.code != exitData || !strings.HasPrefix(r.stderr, prefix) || !strings.Contains(r.stderr, "quoted field never closed") {
				t.Errorf("exit %d stderr %q; want %d, %q... quoted field never closed", r.code, r.stderr, exitData, prefix)
			}
			checkDirOnly(t, outDir)
		})
	}
}

// lineFile builds an input of many chunks with multi-line fields, blank
// lines and CRLF records, and a bad velocity on the record starting at
// line badAt (or at the end when badAt is 0); it returns the input and
// the line of the bad field.
func lineFile(rows, badAt int) ([]byte, int) {
	var b bytes.Buffer
	b.WriteString("id,note,mass,velocity\n")
	line, badLine := 2, 0
	bad := func() {
		b.WriteString("999999,\"bad\nrow\",1,abc\n")
		badLine = line + 1
		line += 2
	}
	for i := range rows {
		if line >= badAt && badAt > 0 && badLine == 0 {
			bad()
		}
		switch {
		case i%7 == 0:
			fmt.Fprintf(&b, "%d,\"multi\nline, \"\"quoted\"\"\",1.5,2\n", i)
			line += 2
		case i%11 == 0:
			fmt.Fprintf(&b, "%d,crlf,1,2\r\n", i)
			line++
		case i%13 == 0:
			b.WriteString("\n")
			line++
		default:
			fmt.Fprintf(&b, "%d,plain note here,%d.5,-%d\n", i, i, i%97)
			line++
		}
	}
	if badLine == 0 {
		bad()
	}
	return b.Bytes(), badLine
}

// TestE2ELineNumbersAcrossChunks checks the line of an error far into a
// file of many chunks, with each number of workers.
func TestE2ELineNumbersAcrossChunks(t *testing.T) {
	t.Parallel()
	for _, pos := range []struct {
		name  string
		badAt int
	}{{"middle", 40000}, {"end", 0}} {
		data, badLine := lineFile(60000, pos.badAt)
		inDir, _ := ioDirs(t)
		in := filepath.Join(inDir, "in.csv")
		writeFile(t, in, data)
		for _, w := range []string{"1", "2", "4"} {
			t.Run(pos.name+"/workers "+w, func(t *testing.T) {
				t.Parallel()
				_, outDir := ioDirs(t)
				r := momentum(t, nil, "--workers", w, in, filepath.Join(outDir, "out.csv"))
				want := fmt.Sprintf("momentum: %s: line %d, column velocity: not a decimal number: \"abc\"\n", in, badLine)
				if r.code != exitData || r.stderr != want {
					t.Errorf("exit %d stderr %q; want %d %q", r.code, r.stderr, exitData, want)
				}
				checkDirOnly(t, outDir)
			})
		}
	}
}

// TestE2EExistingOutput: a failed run leaves an existing output as it
// was; a successful one replaces it, keeping its mode.
func TestE2EExistingOutput(t *testing.T) {
	t.Parallel()
	good := testdata(t, "particles.csv")
	golden := readFile(t, testdata(t, "particles.golden"))
	inDir, outDir := ioDirs(t)
	bad := filepath.Join(inDir, "bad.csv")
	writeFile(t, bad, []byte("mass,velocity\n1,2\n1,abc\n"))
	out := filepath.Join(outDir, "out.csv")
	old := []byte("old,content\n\x00binary\xff and no final newline")
	if err := os.WriteFile(out, old, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(out, 0o640); err != nil {
		t.Fatal(err)
	}

	for _, args := range [][]string{
		{bad, out},
		{"--workers", "1", bad, out},
		{"--on-error", "skip", filepath.Join(inDir, "missing.csv"), out},
		{"--decimals", "999", good, out},
	} {
		r := momentum(t, nil, args...)
		if r.code == 0 {
			t.Errorf("%q: exit 0, want a failure", args)
		}
		if got := readFile(t, out); !bytes.Equal(got, old) {
			t.Errorf("%q: existing output changed by a failed run: %q", args, got)
		}
		if fi, err := os.Stat(out); err != nil || fi.Mode().Perm() != 0o640 {
			t.Errorf("%q: mode of the existing output changed: %v, %v", args, fi.Mode(), err)
		}
		checkDirOnly(t, outDir, "out.csv")
	}

	r := momentum(t, nil, good, out)
	if r.code != 0 {
		t.Fatalf("exit %d stderr %q", r.code, r.stderr)
	}
	if got := readFile(t, out); !bytes.Equal(got, golden) {
		t.Errorf("existing output not replaced by a successful run: %q", got)
	}
	if fi, err := os.Stat(out); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("mode after replacement %v, %v; want the old file's 0640", fi.Mode(), err)
	}
	checkDirOnly(t, outDir, "out.csv")
}

// TestE2EFileMode checks the mode of new and replaced output files under
// a given umask.
func TestE2EFileMode(t *testing.T) {
	t.Parallel()
	if runtime.GOOS == "windows" {
		t.Skip("no umask on windows")
	}
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh to set the umask")
	}
	good := testdata(t, "particles.csv")
	tests := []struct {
		name     string
		umask    os.FileMode
		existing os.FileMode // 0: no existing file
		want     os.FileMode // of the output; a new rejects file gets 0644 less the umask
	}{
		{"new, umask 022", 0o022, 0, 0o644},
		{"new, umask 077", 0o077, 0, 0o600},
		{"new, umask 002", 0o002, 0, 0o644},
		{"existing 0600, umask 022", 0o022, 0o600, 0o600},
		{"existing 0664, umask 077", 0o077, 0o664, 0o664},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, dir := ioDirs(t)
			out := filepath.Join(dir, "out.csv")
			if tt.existing != 0 {
				writeFile(t, out, []byte("old\n"))
				if err := os.Chmod(out, tt.existing); err != nil {
					t.Fatal(err)
				}
			}
			umask := fmt.Sprintf("%03o", uint32(tt.umask))
			cmd := exec.Command(sh, "-c", `umask "$1" && shift && exec "$@"`, "sh", umask, bin, "--on-error", "skip", good, out)
			r := runCmd(t, cmd, nil, nil)
			if r.code != 0 {
				t.Fatalf("exit %d stderr %q", r.code, r.stderr)
			}
			for _, f := range []struct {
				name string
				want os.FileMode
			}{{"out.csv", tt.want}, {"out.rejects.csv", 0o644 &^ tt.umask}} {
				fi, err := os.Stat(filepath.Join(dir, f.name))
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode().Perm() != f.want {
					t.Errorf("%s: mode %v, want %v (umask %s)", f.name, fi.Mode().Perm(), f.want, umask)
				}
			}
		})
	}
}

// readRejects reads a rejects file with the product's reader.
func readRejects(t *testing.T, path string) []compute.Reject {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := rejects.NewReader(f)
	if err != nil {
		t.Fatalf("decoding %s: %v", path, err)
	}
	var rows []compute.Reject
	for {
		rj, err := r.Read()
		if err == io.EOF {
			return rows
		}
		if err != nil {
			t.Fatalf("decoding %s: %v", path, err)
		}
		rows = append(rows, rj)
	}
}

// csvRecords reads CSV data, records of any length.
func csvRecords(t *testing.T, data []byte, delim rune) [][]string {
	t.Helper()
	r := csv.NewReader(bytes.NewReader(data))
	r.FieldsPerRecord = -1
	r.Comma = delim
	recs, err := r.ReadAll()
	if err != nil {
		t.Fatalf("reading CSV: %v", err)
	}
	return recs
}

// TestE2ESkip: --on-error skip writes the good rows to the output, the
// bad ones to the rejects file, and counts both.
func TestE2ESkip(t *testing.T) {
	t.Parallel()
	input := "id,mass,velocity,note\n" +
		"1,2,3,ok\n" +
		"2,abc,3,bad mass\n" +
		"\n" +
		"3,1,,empty velocity\n" +
		"4,-1,2,negative mass\n" +
		"5,1,2\n" +
		"6,\"1,5\",2,\"decimal\ncomma\"\n" +
		"7,1e200,1e200,overflow\n" +
		"8,0.5,-4,ok again\n" +
		"9,\"2\",\"x\ny\",\"multi-line bad velocity\"\n" +
		"10,1.5,2,\"ok, quoted\"\r\n"
	wantRejects := []compute.Reject{
		{Line: 3, Column: "mass", Reason: `not a decimal number: "abc"`, Record: "2,abc,3,bad mass"},
		{Line: 5, Column: "velocity", Reason: `empty value: ""`, Record: "3,1,,empty velocity"},
		{Line: 6, Column: "mass", Reason: `negative mass: "-1"`, Record: "4,-1,2,negative mass"},
		{Line: 7, Column: "", Reason: "wrong number of fields: got 3, want 4", Record: "5,1,2"},
		{Line: 8, Column: "mass", Reason: `decimal comma: use '.' as the decimal point: "1,5"`, Record: "6,\"1,5\",2,\"decimal\ncomma\""},
		{Line: 10, Column: "velocity", Reason: `momentum overflows float64: "1e200" × "1e200"`, Record: "7,1e200,1e200,overflow"},
		{Line: 12, Column: "velocity", Reason: `not a decimal number: "x\ny"`, Record: "9,\"2\",\"x\ny\",\"multi-line bad velocity\""},
	}
	wantOut := "id,mass,velocity,note,momentum\n" +
		"1,2,3,ok,6\n" +
		"8,0.5,-4,ok again,-2\n" +
		"10,1.5,2,\"ok, quoted\",3\n"

	for _, tt := range []struct {
		name    string
		args    []string
		env     []string
		rejects string // name in the output folder
	}{
		{"default rejects path", []string{"--on-error", "skip"}, nil, "out.rejects.csv"},
		{"one worker", []string{"--on-error", "skip", "--workers", "1"}, nil, "out.rejects.csv"},
		{"explicit rejects", []string{"--on-error", "skip", "--rejects", "REJECTS"}, nil, "bad-rows.csv"},
		{"from env", nil, []string{"MOMENTUM_ON_ERROR=skip"}, "out.rejects.csv"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			inDir, outDir := ioDirs(t)
			in := filepath.Join(inDir, "in.csv")
			writeFile(t, in, []byte(input))
			out := filepath.Join(outDir, "out.csv")
			rejects := filepath.Join(outDir, tt.rejects)
			args := append([]string(nil), tt.args...)
			for i, a := range args {
				if a == "REJECTS" {
					args[i] = rejects
				}
			}
			r := momentumEnv(t, tt.env, nil, append(args, in, out)...)
			if r.code != 0 {
				t.Fatalf("exit %d stderr %q", r.code, r.stderr)
			}
			wantSummary(t, r.stderr, 3, len(wantRejects))

			got := readFile(t, out)
			if string(got) != wantOut {
				t.Errorf("output\n got %q\nwant %q", got, wantOut)
			}
			rej := readRejects(t, rejects)
			if len(rej) != len(wantRejects) {
				t.Errorf("%d rejects, want %d: %+v", len(rej), len(wantRejects), rej)
			}
			for i := range min(len(rej), len(wantRejects)) {
				if rej[i] != wantRejects[i] {
					t.Errorf("reject %d\n got %+v\nwant %+v", i, rej[i], wantRejects[i])
				}
			}
			if head, _, _ := strings.Cut(string(readFile(t, rejects)), "\n"); head != "line,column,reason,record" {
				t.Errorf("rejects header %q", head)
			}

			// Nothing is dropped: rows in = rows out + rows rejected.
			rowsIn := len(csvRecords(t, []byte(input), ',')) - 1
			rowsOut := len(csvRecords(t, got, ',')) - 1
			if rowsIn != rowsOut+len(rej) {
				t.Errorf("rows in %d != rows out %d + rejected %d", rowsIn, rowsOut, len(rej))
			}
			checkDirOnly(t, outDir, "out.csv", tt.rejects)
		})
	}

	t.Run("no bad rows: header-only rejects file", func(t *testing.T) {
		t.Parallel()
		_, outDir := ioDirs(t)
		out := filepath.Join(outDir, "out.csv")
		r := momentum(t, nil, "--on-error", "skip", testdata(t, "particles.csv"), out)
		if r.code != 0 {
			t.Fatalf("exit %d stderr %q", r.code, r.stderr)
		}
		wantSummary(t, r.stderr, 12, 0)
		rejects := filepath.Join(outDir, "out.rejects.csv")
		if got := readFile(t, rejects); string(got) != "line,column,reason,record\n" {
			t.Errorf("rejects %q, want only the header", got)
		}
		if rej := readRejects(t, rejects); len(rej) != 0 {
			t.Errorf("rejects %+v, want none", rej)
		}
	})

	t.Run("strict quotes: rows rejected, reading goes on", func(t *testing.T) {
		t.Parallel()
		_, outDir := ioDirs(t)
		in, out := testdata(t, "lazy-quotes.csv"), filepath.Join(outDir, "out.csv")
		r := momentum(t, nil, "--on-error", "skip", in, out)
		if r.code != 0 {
			t.Fatalf("exit %d stderr %q", r.code, r.stderr)
		}
		wantSummary(t, r.stderr, 1, 5)
		if got, want := string(readFile(t, out)), "station,position,note,mass,velocity,momentum\nParis,48.8566 2.3522,decimal degrees,1,1,1\n"; got != want {
			t.Errorf("output %q, want %q", got, want)
		}
		rej := readRejects(t, filepath.Join(outDir, "out.rejects.csv"))
		if len(rej) != 5 {
			t.Fatalf("rejects %+v, want 5", rej)
		}
		for i, station := range []string{"Lyon", "Nantes", "Brest", "Dijon", "Metz"} {
			if rr := rej[i]; rr.Line != int64(i+2) || rr.Column != "position" || rr.Reason != `bare " in unquoted field` || !strings.HasPrefix(rr.Record, station+",") {
				t.Errorf("reject %d: %+v", i, rr)
			}
		}
	})

	t.Run("structural error: no output, no rejects", func(t *testing.T) {
		t.Parallel()
		inDir, outDir := ioDirs(t)
		in := filepath.Join(inDir, "in.csv")
		writeFile(t, in, []byte("mass,velocity\n1,x\n2,3\n4,\"open\n5,6\n"))
		r := momentum(t, nil, "--on-error", "skip", in, filepath.Join(outDir, "out.csv"))
		want := "momentum: " + in + ": line 4, column velocity: quoted field never closed\n"
		if r.code != exitData || r.stderr != want {
			t.Errorf("exit %d stderr %q; want %d %q", r.code, r.stderr, exitData, want)
		}
		checkDirOnly(t, outDir)
	})

	t.Run("existing rejects file kept by a failed run", func(t *testing.T) {
		t.Parallel()
		inDir, outDir := ioDirs(t)
		in := filepath.Join(inDir, "in.csv")
		writeFile(t, in, []byte("mass,velocity,momentum\n1,2,2\n"))
		rejects := filepath.Join(outDir, "out.rejects.csv")
		writeFile(t, rejects, []byte("old rejects\n"))
		r := momentum(t, nil, "--on-error", "skip", in, filepath.Join(outDir, "out.csv"))
		if r.code != exitData {
			t.Errorf("exit %d, want %d; stderr %q", r.code, exitData, r.stderr)
		}
		if got := readFile(t, rejects); string(got) != "old rejects\n" {
			t.Errorf("rejects file changed by a failed run: %q", got)
		}
		checkDirOnly(t, outDir, "out.rejects.csv")
	})

	t.Run("rejects folder missing", func(t *testing.T) {
		t.Parallel()
		_, outDir := ioDirs(t)
		r := momentum(t, nil, "--on-error", "skip", "--rejects", filepath.Join(outDir, "nope", "r.csv"),
			testdata(t, "particles.csv"), filepath.Join(outDir, "out.csv"))
		if r.code != exitFailure || !strings.Contains(r.stderr, "r.csv") {
			t.Errorf("exit %d stderr %q; want %d naming r.csv", r.code, r.stderr, exitFailure)
		}
		checkDirOnly(t, outDir)
	})
}

// TestE2EQuiet: --quiet drops the summary, not the errors.
func TestE2EQuiet(t *testing.T) {
	t.Parallel()
	in := testdata(t, "particles.csv")
	for _, run := range []struct {
		name string
		env  []string
		args []string
	}{
		{"flag", nil, []string{"--quiet"}},
		{"env", []string{"MOMENTUM_QUIET=true"}, nil},
	} {
		t.Run(run.name, func(t *testing.T) {
			t.Parallel()
			_, dir := ioDirs(t)
			r := momentumEnv(t, run.env, nil, append(run.args, in, filepath.Join(dir, "out.csv"))...)
			if r.code != 0 || r.stderr != "" || r.stdout != "" {
				t.Errorf("exit %d stdout %q stderr %q; want 0 and silence", r.code, r.stdout, r.stderr)
			}
			r = momentumEnv(t, run.env, strings.NewReader("mass,velocity\n1,2\n1,abc\n"), run.args...)
			if r.code != exitData || !strings.HasPrefix(r.stderr, "momentum: stdin: line 3") {
				t.Errorf("error with --quiet: exit %d stderr %q", r.code, r.stderr)
			}
		})
	}
	t.Run("summary without quiet", func(t *testing.T) {
		t.Parallel()
		_, dir := ioDirs(t)
		r := momentum(t, nil, in, filepath.Join(dir, "out.csv"))
		if r.code != 0 || !strings.HasPrefix(r.stderr, "momentum: 12 rows, 0 rejected, ") {
			t.Errorf("exit %d stderr %q", r.code, r.stderr)
		}
		wantSummary(t, r.stderr, 12, 0)
	})
}

// TestE2EUsage: usage errors exit 2 with a message naming the flag, and
// create nothing.
func TestE2EUsage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		env  []string
		want string
	}{
		{"unknown flag", []string{"--bogus"}, nil, "bogus"},
		{"bad header", []string{"--header", "maybe"}, nil, "--header"},
		{"bad delimiter", []string{"--delimiter", ";;"}, nil, "--delimiter"},
		{"quote delimiter", []string{"--delimiter", `"`}, nil, "--delimiter"},
		{"decimals out of range", []string{"--decimals", "101"}, nil, "--decimals"},
		{"bad on-error", []string{"--on-error", "ignore"}, nil, "--on-error"},
		{"bad max-record", []string{"--max-record", "5TB"}, nil, "--max-record"},
		{"zero max-record", []string{"--max-record", "0"}, nil, "--max-record"},
		{"too many args", []string{"in.csv", "out.csv", "third.csv"}, nil, "too many arguments"},
		{"skip to stdout", []string{"--on-error", "skip", "in.csv"}, nil, "--rejects"},
		{"rejects without skip", []string{"--rejects", "r.csv", "in.csv", "out.csv"}, nil, "--rejects"},
		{"rejects is output", []string{"--on-error", "skip", "--rejects", "out.csv", "in.csv", "out.csv"}, nil, "--rejects"},
		{"bad env", nil, []string{"MOMENTUM_DECIMALS=abc"}, "MOMENTUM_DECIMALS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			writeFile(t, filepath.Join(dir, "in.csv"), []byte("mass,velocity\n1,2\n"))
			cmd := exec.Command(bin, tt.args...)
			cmd.Dir = dir
			r := runCmd(t, cmd, tt.env, nil)
			if r.code != exitUsage {
				t.Errorf("exit %d, want %d; stderr %q", r.code, exitUsage, r.stderr)
			}
			if !strings.HasPrefix(r.stderr, "momentum: ") || !strings.Contains(r.stderr, tt.want) ||
				!strings.HasSuffix(r.stderr, "\nRun 'momentum --help' for usage.\n") {
				t.Errorf("stderr %q, want a message naming %q and the help hint", r.stderr, tt.want)
			}
			if r.stdout != "" {
				t.Errorf("stdout %q, want nothing", r.stdout)
			}
			checkDirOnly(t, dir, "in.csv")
		})
	}
}

// TestE2EFailures: files that cannot be read or written exit 1.
func TestE2EFailures(t *testing.T) {
	t.Parallel()
	inDir, outDir := ioDirs(t)
	good := testdata(t, "particles.csv")
	missing := filepath.Join(inDir, "missing.csv")
	noDir := filepath.Join(outDir, "no", "such", "dir", "out.csv")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"missing input", []string{missing, filepath.Join(outDir, "out.csv")}, "momentum: open " + missing + ": no such file or directory\n"},
		{"missing input to stdout", []string{missing}, "momentum: open " + missing + ": no such file or directory\n"},
		{"output folder missing", []string{good, noDir}, "momentum: create " + noDir + ": no such file or directory\n"},
		{"input is a folder", []string{inDir, filepath.Join(outDir, "out.csv")}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := momentum(t, nil, tt.args...)
			if r.code != exitFailure {
				t.Errorf("exit %d, want %d; stderr %q", r.code, exitFailure, r.stderr)
			}
			if tt.want != "" && r.stderr != tt.want {
				t.Errorf("stderr\n got %q\nwant %q", r.stderr, tt.want)
			}
			if !strings.HasPrefix(r.stderr, "momentum: ") || strings.Count(r.stderr, "\n") != 1 {
				t.Errorf("stderr %q, want one line starting momentum: ", r.stderr)
			}
			checkDirOnly(t, outDir)
			checkDirOnly(t, inDir)
		})
	}
}

func TestE2EVersion(t *testing.T) {
	t.Parallel()
	r := momentum(t, nil, "--version")
	if r.code != 0 || r.stderr != "" {
		t.Errorf("exit %d stderr %q", r.code, r.stderr)
	}
	if !regexp.MustCompile(`^momentum \S+ go\S+ \S+/\S+( \S+)?\n$`).MatchString(r.stdout) {
		t.Errorf("--version printed %q, want one line: momentum VERSION GOVERSION OS/ARCH", r.stdout)
	}
}

func TestE2EHelp(t *testing.T) {
	t.Parallel()
	for _, arg := range []string{"--help", "-h"} {
		r := momentum(t, nil, arg)
		if r.code != 0 || r.stderr != "" {
			t.Errorf("%s: exit %d stderr %q; want 0 and nothing on stderr", arg, r.code, r.stderr)
		}
		checkHelpText(t, r.stdout)
	}
}

// TestE2ESignal interrupts a run whose input comes slowly through a pipe:
// it must exit non-zero and leave neither the output nor a temporary file.
func TestE2ESignal(t *testing.T) {
	t.Parallel()
	if runtime.GOOS == "windows" {
		t.Skip("no SIGINT/SIGTERM delivery on windows")
	}
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		for _, closeInput := range []bool{true, false} {
			name := sig.String() + ", input closed after the signal"
			if !closeInput {
				name = sig.String() + ", input left open after the signal"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				testSignal(t, sig, closeInput)
			})
		}
	}
}

func testSignal(t *testing.T, sig syscall.Signal, closeInput bool) {
	_, dir := ioDirs(t)
	out := filepath.Join(dir, "out.csv")
	errFile, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer errFile.Close()
	cmd := exec.Command(bin, "-", out)
	cmd.Env = cleanEnv()
	cmd.Stderr = errFile
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(done) }()
	stderr := func() string {
		b, _ := os.ReadFile(errFile.Name())
		return string(b)
	}

	// Feed rows slowly until told to stop.
	stop := make(chan struct{})
	var fed atomic.Int64
	var feeding sync.WaitGroup
	feeding.Go(func() {
		if _, err := io.WriteString(stdin, "mass,velocity\n"); err != nil {
			return
		}
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
			if _, err := fmt.Fprintf(stdin, "%d,2\n", i); err != nil {
				return
			}
			fed.Add(1)
		}
	})
	var stopOnce sync.Once
	stopFeeding := func() {
		stopOnce.Do(func() { close(stop) })
		feeding.Wait()
	}
	t.Cleanup(func() {
		stopFeeding()
		stdin.Close()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})

	// The temporary output file shows that the run has started, so the
	// signal handler is installed; some rows have gone in.
	for deadline := time.Now().Add(30 * time.Second); len(dotFiles(t, dir)) == 0 || fed.Load() < 50; {
		if time.Now().After(deadline) {
			t.Fatalf("no temporary file in %s after 30s", dir)
		}
		select {
		case <-done:
			t.Fatalf("exited before the signal: %v; stderr %q", waitErr, stderr())
		case <-time.After(5 * time.Millisecond):
		}
	}
	if err := cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	stopFeeding()

	if closeInput {
		// Give the signal a moment to land before the input ends, so that
		// the run cannot complete first.
		time.Sleep(200 * time.Millisecond)
		stdin.Close()
		<-done
	} else {
		// The input stays open and no more comes: the signal alone must
		// end the run.
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Errorf("BUG: still running 10s after %v while stdin stays open: the signal is caught, "+
				"but the run goes on waiting for input that does not come", sig)
			stdin.Close()
			<-done
		}
	}

	var ee *exec.ExitError
	if !errors.As(waitErr, &ee) {
		t.Fatalf("after %v: exit error %v, want a non-zero exit; stderr %q", sig, waitErr, stderr())
	}
	if code := ee.ExitCode(); code != exitFailure {
		t.Errorf("after %v: exit code %d (%v), want %d", sig, code, ee, exitFailure)
	}
	if !strings.HasPrefix(stderr(), "momentum: ") {
		t.Errorf("stderr %q, want a message", stderr())
	}
	checkDirOnly(t, dir)
}

// dotFiles lists the names starting with "." in dir.
func dotFiles(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		if strings.HasPrefix(de.Name(), ".") {
			names = append(names, de.Name())
		}
	}
	return names
}

// genNumber returns a plain decimal number literal in one of many forms,
// never negative unless signed is set.
func genNumber(r *rand.Rand, signed bool) string {
	var s string
	switch r.IntN(6) {
	case 0:
		s = strconv.Itoa(r.IntN(1000000))
	case 1:
		s = strconv.FormatFloat(r.Float64()*1000, 'f', r.IntN(7), 64)
	case 2:
		s = strconv.Itoa(1+r.IntN(999)) + "e" + strconv.Itoa(r.IntN(41)-20)
	case 3:
		s = "." + strconv.Itoa(r.IntN(100000))
	case 4:
		s = strconv.FormatFloat(r.ExpFloat64(), 'g', -1, 64)
	default:
		s = strconv.Itoa(r.IntN(100)) + "."
	}
	if signed {
		switch r.IntN(4) {
		case 0:
			s = "-" + s
		case 1:
			s = "+" + s
		}
	}
	switch r.IntN(20) {
	case 0:
		s = `"` + s + `"`
	case 1:
		s = " " + s + "\t"
	}
	return s
}

// genLarge writes a deterministic input of at least size bytes, header
// id,mass,velocity, to path, and returns its number of data rows. The
// numbers are drawn from pools made by genNumber, which keeps this fast.
func genLarge(t *testing.T, path string, size int) int {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	r := rand.New(rand.NewPCG(2026, 11))
	masses, velocities := make([]string, 4093), make([]string, 4091)
	for i := range masses {
		masses[i] = genNumber(r, false)
	}
	for i := range velocities {
		velocities[i] = genNumber(r, true)
	}
	n, rows := 0, 0
	k, _ := w.WriteString("id,mass,velocity\n")
	n += k
	var line []byte
	for n < size {
		line = strconv.AppendInt(line[:0], int64(rows+1), 10)
		line = append(line, ',')
		line = append(line, masses[r.IntN(len(masses))]...)
		line = append(line, ',')
		line = append(line, velocities[r.IntN(len(velocities))]...)
		line = append(line, '\n')
		k, _ := w.Write(line)
		n += k
		rows++
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return rows
}

// shortest formats f as the output does: the shortest form that parses
// back, as encoding/json writes a float64.
func shortest(f float64) string {
	abs := math.Abs(f)
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		s := strconv.FormatFloat(f, 'e', -1, 64)
		if n := len(s); n >= 4 && s[n-4] == 'e' && s[n-3] == '-' && s[n-2] == '0' {
			s = s[:n-2] + s[n-1:]
		}
		return s
	}
	return strconv.FormatFloat(f, 'f', -1, 64)
}

// parseField reads a generated number field back.
func parseField(t *testing.T, s string) float64 {
	t.Helper()
	s = strings.Trim(s, " \t\"")
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatalf("generated field %q: %v", s, err)
	}
	return f
}

// TestE2ELarge runs a ~50 MB input with 1, 2 and 4 workers: the outputs
// are identical, the summary counts every row, and every momentum is the
// product of its row, in the shortest form.
func TestE2ELarge(t *testing.T) {
	t.Parallel()
	size := 50 << 20
	if testing.Short() {
		size = 5 << 20
	}
	inDir, outDir := ioDirs(t)
	in := filepath.Join(inDir, "large.csv")
	rows := genLarge(t, in, size)

	workers := []string{"1", "2", "4"}
	sums := make([][32]byte, len(workers))
	t.Run("workers", func(t *testing.T) {
		for i, w := range workers {
			t.Run(w, func(t *testing.T) {
				t.Parallel()
				out := filepath.Join(outDir, "out"+w+".csv")
				r := momentum(t, nil, "--workers", w, in, out)
				if r.code != 0 {
					t.Fatalf("exit %d stderr %q", r.code, r.stderr)
				}
				wantSummary(t, r.stderr, rows, 0)
				f, err := os.Open(out)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				h := sha256.New()
				if _, err := io.Copy(h, f); err != nil {
					t.Fatal(err)
				}
				h.Sum(sums[i][:0])
			})
		}
	})
	if t.Failed() {
		return
	}
	for i := range workers[1:] {
		if sums[i+1] != sums[0] {
			t.Errorf("output with --workers %s differs from --workers %s", workers[i+1], workers[0])
		}
	}

	// Check one output against the input: every row is passed through,
	// and the momentum of every 31st row is the product, in shortest form.
	fin, err := os.Open(in)
	if err != nil {
		t.Fatal(err)
	}
	defer fin.Close()
	fout, err := os.Open(filepath.Join(outDir, "out1.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer fout.Close()
	sin, sout := bufio.NewScanner(fin), bufio.NewScanner(fout)
	sin.Scan()
	sout.Scan()
	if sout.Text() != "id,mass,velocity,momentum" {
		t.Fatalf("output header %q", sout.Text())
	}
	n := 0
	for sin.Scan() {
		if !sout.Scan() {
			t.Fatalf("output ends after %d rows, input has %d", n, rows)
		}
		n++
		src, dst := sin.Text(), sout.Text()
		if len(dst) <= len(src) || dst[:len(src)] != src || dst[len(src)] != ',' {
			t.Fatalf("row %d: output %q does not start with the input %q and a comma", n, dst, src)
		}
		if n%31 != 0 {
			continue
		}
		fields := strings.Split(src, ",")
		want := shortest(parseField(t, fields[1]) * parseField(t, fields[2]))
		if got := dst[len(src)+1:]; got != want {
			t.Fatalf("row %d %q: momentum %q, want %q", n, src, got, want)
		}
	}
	if sout.Scan() {
		t.Errorf("output has more rows than the input's %d", rows)
	}
	if n != rows || sin.Err() != nil || sout.Err() != nil {
		t.Errorf("%d rows checked, want %d (%v, %v)", n, rows, sin.Err(), sout.Err())
	}
}

// TestE2ESkipWorkers: in skip mode the output and the rejects are the
// same with any number of workers, and each reject has its line.
func TestE2ESkipWorkers(t *testing.T) {
	t.Parallel()
	inDir, outDir := ioDirs(t)
	in := filepath.Join(inDir, "in.csv")
	var b bytes.Buffer
	b.WriteString("id,note,mass,velocity\n")
	line := 2
	var badLines, badIDs []int
	rows := 0
	for i := range 120000 {
		rows++
		switch {
		case i%997 == 0:
			fmt.Fprintf(&b, "%d,bad,1,v%d\n", i, i)
			badLines = append(badLines, line)
			badIDs = append(badIDs, i)
			line++
		case i%101 == 0:
			fmt.Fprintf(&b, "%d,\"two\nlines\",2,3\n", i)
			line += 2
		default:
			fmt.Fprintf(&b, "%d,n,%d,0.%d\n", i, i%1000, i)
			line++
		}
	}
	writeFile(t, in, b.Bytes())

	var outs, rejs [][]byte
	for _, w := range []string{"1", "2", "4"} {
		out := filepath.Join(outDir, "out"+w+".csv")
		r := momentum(t, nil, "--on-error", "skip", "--workers", w, in, out)
		if r.code != 0 {
			t.Fatalf("workers %s: exit %d stderr %q", w, r.code, r.stderr)
		}
		wantSummary(t, r.stderr, rows-len(badLines), len(badLines))
		rejects := filepath.Join(outDir, "out"+w+".rejects.csv")
		rej := readRejects(t, rejects)
		if len(rej) != len(badLines) {
			t.Fatalf("workers %s: %d rejects, want %d", w, len(rej), len(badLines))
		}
		for i, rj := range rej {
			want := compute.Reject{Line: int64(badLines[i]), Column: "velocity", Reason: fmt.Sprintf("not a decimal number: \"v%d\"", badIDs[i]), Record: fmt.Sprintf("%d,bad,1,v%d", badIDs[i], badIDs[i])}
			if rj != want {
				t.Fatalf("workers %s: reject %d\n got %+v\nwant %+v", w, i, rj, want)
			}
		}
		outs = append(outs, readFile(t, out))
		rejs = append(rejs, readFile(t, rejects))
	}
	for i := 1; i < len(outs); i++ {
		if !bytes.Equal(outs[i], outs[0]) || !bytes.Equal(rejs[i], rejs[0]) {
			t.Errorf("run %d: output or rejects differ from the one-worker run", i)
		}
	}
}
