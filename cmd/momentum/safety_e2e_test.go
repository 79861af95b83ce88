//go:build unix

package main

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestE2EOutputKinds: what is at the output path decides how it is
// written. A device, FIFO or descriptor is written in place and stays
// what it was; a link is followed and its target replaced atomically; a
// directory is refused with the path the user gave.
func TestE2EOutputKinds(t *testing.T) {
	t.Parallel()
	particles := testdata(t, "particles.csv")
	golden := string(readFile(t, testdata(t, "particles.golden")))

	t.Run("dev null", func(t *testing.T) {
		r := momentum(t, nil, "--quiet", particles, "/dev/null")
		fi, err := os.Lstat("/dev/null")
		if r.code != 0 || err != nil || fi.Mode()&fs.ModeCharDevice == 0 {
			t.Fatalf("%+v; /dev/null is now %v (%v)", r, fi.Mode(), err)
		}
	})

	t.Run("dev stdout", func(t *testing.T) {
		r := momentum(t, nil, "--quiet", particles, "/dev/stdout")
		if r.code != 0 || r.stdout != golden {
			t.Fatalf("%+v", r)
		}
	})

	t.Run("fifo", func(t *testing.T) {
		fifo := filepath.Join(t.TempDir(), "out.fifo")
		if err := syscall.Mkfifo(fifo, 0o600); err != nil {
			t.Fatal(err)
		}
		got := make(chan string, 1)
		go func() {
			f, err := os.Open(fifo) // blocks until momentum opens it to write
			if err != nil {
				got <- err.Error()
				return
			}
			defer f.Close()
			b, _ := io.ReadAll(f)
			got <- string(b)
		}()
		r := momentum(t, nil, "--quiet", particles, fifo)
		if g := <-got; r.code != 0 || g != golden {
			t.Fatalf("%+v; the FIFO's reader got %q", r, g)
		}
		if fi, err := os.Lstat(fifo); err != nil || fi.Mode()&fs.ModeNamedPipe == 0 {
			t.Fatalf("the FIFO is now %v (%v)", fi.Mode(), err)
		}
	})

	t.Run("symbolic link", func(t *testing.T) {
		dir := t.TempDir()
		target := filepath.Join(dir, "target.csv")
		writeFile(t, target, []byte("stale"))
		link := filepath.Join(dir, "link.csv")
		os.Symlink("target.csv", link)
		r := momentum(t, nil, "--quiet", particles, link)
		if r.code != 0 {
			t.Fatalf("%+v", r)
		}
		if dest, err := os.Readlink(link); err != nil || dest != "target.csv" {
			t.Errorf("link.csv is no longer a link to target.csv: %q, %v", dest, err)
		}
		if got := string(readFile(t, target)); got != golden {
			t.Errorf("the link's target holds %q", got)
		}
		checkDirOnly(t, dir, "link.csv", "target.csv")
	})

	t.Run("skip mode rejects through a link", func(t *testing.T) {
		dir := t.TempDir()
		in := filepath.Join(dir, "in.csv")
		writeFile(t, in, []byte("mass,velocity\n1,2\n1,x\n"))
		os.Mkdir(filepath.Join(dir, "data"), 0o755)
		os.Symlink(filepath.Join("data", "real.csv"), filepath.Join(dir, "out.csv"))
		r := momentum(t, nil, "--quiet", "--on-error", "skip", in, filepath.Join(dir, "out.csv"))
		if r.code != 0 {
			t.Fatalf("%+v", r)
		}
		if got := string(readFile(t, filepath.Join(dir, "data", "real.csv"))); got != "mass,velocity,momentum\n1,2,2\n" {
			t.Errorf("target: %q", got)
		}
		if got := string(readFile(t, filepath.Join(dir, "out.rejects.csv"))); !strings.Contains(got, "1,x") {
			t.Errorf("rejects: %q", got)
		}
	})

	t.Run("directory", func(t *testing.T) {
		dir := t.TempDir()
		out := filepath.Join(dir, "out")
		os.Mkdir(out, 0o755)
		r := momentum(t, nil, particles, out)
		want := "momentum: create " + out + ": is a directory\n"
		if r.code != exitFailure || r.stderr != want {
			t.Fatalf("%+v, want exit 1 and %q", r, want)
		}
		checkDirOnly(t, dir, "out")
		checkDirOnly(t, out)
	})
}

// TestE2ESameInputAndOutput: however the two are spelled, a run whose
// output is its input is refused before anything is read or written.
func TestE2ESameInputAndOutput(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	in := filepath.Join(dir, "same.csv")
	data := readFile(t, testdata(t, "particles.csv"))
	writeFile(t, in, data)
	os.Symlink("same.csv", filepath.Join(dir, "link.csv"))
	os.Link(in, filepath.Join(dir, "hard.csv"))
	for _, out := range []string{"same.csv", "./same.csv", in, "../" + filepath.Base(dir) + "/same.csv", "link.csv", "hard.csv", dir + "//same.csv"} {
		cmd := exec.Command(bin, "same.csv", out)
		cmd.Dir = dir
		r := runCmd(t, cmd, nil, nil)
		want := fmt.Sprintf("momentum: INPUT \"same.csv\" and OUTPUT %q are the same file", out)
		if r.code != exitUsage || !strings.HasPrefix(r.stderr, want) {
			t.Errorf("momentum same.csv %s: %+v, want exit 2 and %q", out, r, want)
		}
	}
	if got := readFile(t, in); string(got) != string(data) {
		t.Errorf("the input changed")
	}
	checkDirOnly(t, dir, "hard.csv", "link.csv", "same.csv")
	// The same device twice is no file to clobber.
	if r := momentum(t, nil, "--quiet", "/dev/null", "/dev/null"); r.code != exitData || !strings.Contains(r.stderr, "empty") {
		t.Errorf("momentum /dev/null /dev/null: %+v, want the empty input's data error", r)
	}
}

// TestE2EJobLocalOutputs: a job's local output folder is made as needed,
// as a bucket's prefix and a sharded job's folder are; a path that cannot
// be written is a configuration error (exit 2), not worth a retry.
func TestE2EJobLocalOutputs(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	in := testdata(t, "particles.csv")
	golden := string(readFile(t, testdata(t, "particles.golden")))

	r := momentum(t, nil, "job", "--input", in, "--output", filepath.Join(dir, "new", "deeper", "out.csv"))
	if l := lastJobLog(t, r.stderr); r.code != 0 || l.Outcome != "done" {
		t.Fatalf("%+v", r)
	}
	if got := string(readFile(t, filepath.Join(dir, "new", "deeper", "out.csv"))); got != golden {
		t.Errorf("output %q", got)
	}

	writeFile(t, filepath.Join(dir, "afile"), nil)
	os.MkdirAll(filepath.Join(dir, "adir", "out.csv"), 0o755)
	for _, tt := range []struct{ output, want string }{
		{filepath.Join(dir, "afile", "out.csv"), "not a directory"},
		{filepath.Join(dir, "adir", "out.csv"), "is a directory"},
	} {
		r := momentum(t, nil, "job", "--input", in, "--output", tt.output)
		l := lastJobLog(t, r.stderr)
		if r.code != exitUsage || l.Level != "ERROR" || !strings.HasPrefix(l.Msg, "bad configuration") || !strings.Contains(r.stderr, tt.want) {
			t.Errorf("job --output %s: %+v, want exit 2, bad configuration: %s", tt.output, r, tt.want)
		}
	}
}

// TestE2EFailModeCounts: a job that stops at its first bad row rejected
// nothing: the row is the error, named by line and column.
func TestE2EFailModeCounts(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	in := filepath.Join(dir, "bad.csv")
	writeFile(t, in, []byte("mass,velocity\n1,2\n3,x\n4,5\n"))
	r := momentum(t, nil, "job", "--input", in, "--output", filepath.Join(dir, "out.csv"))
	l := lastJobLog(t, r.stderr)
	if r.code != exitData || l.Rows != 1 || l.Rejected != 0 || l.Line != 3 || l.Column != "velocity" {
		t.Fatalf("%+v: log %+v, want 1 row, 0 rejected, the error at line 3, column velocity", r, l)
	}
}

// TestE2EMessages: what a user reads names what they gave, with two
// dashes as the help spells flags.
func TestE2EMessages(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, tt := range []struct {
		env  []string
		args []string
		want string
	}{
		{nil, []string{"--bogus"}, "momentum: unknown flag --bogus\n"},
		{nil, []string{"--workers", "x"}, "momentum: --workers \"x\": want a whole number\n"},
		{nil, []string{"--quiet=maybe"}, "momentum: --quiet \"maybe\": want true or false\n"},
		{nil, []string{"--mass"}, "momentum: --mass needs a value\n"},
		{[]string{"MOMENTUM_QUIET=yes"}, nil, "momentum: MOMENTUM_QUIET=\"yes\": want true or false\n"},
		{nil, []string{"job", "--bogus"}, "unknown flag --bogus"},
		{nil, []string{"merge", "--bogus"}, "momentum merge: unknown flag --bogus\n"},
		{nil, []string{dir}, "momentum: " + dir + " is a directory, not a file\n"},
	} {
		r := momentumEnv(t, tt.env, nil, tt.args...)
		if !strings.Contains(r.stderr, tt.want) || r.code == 0 {
			t.Errorf("%v momentum %q: %+v, want %q", tt.env, tt.args, r, tt.want)
		}
	}
}

// TestE2EWorkersBounded: a huge --workers is capped, not honoured with
// gigabytes of buffers.
func TestE2EWorkersBounded(t *testing.T) {
	t.Parallel()
	r := momentum(t, nil, "--quiet", "--workers", "100000000", testdata(t, "particles.csv"))
	if golden := string(readFile(t, testdata(t, "particles.golden"))); r.code != 0 || r.stdout != golden {
		t.Fatalf("%+v", r)
	}
}

// TestE2EMissingBucket: a bucket that does not exist is named as such,
// not as a missing object, and a job given one is badly configured
// (exit 2), not worth a retry.
func TestE2EMissingBucket(t *testing.T) {
	c := startClouds(t)
	c.put(t, "gs://in/a.csv", []byte("mass,velocity\n1,2\n"))
	c.put(t, "s3://in/a.csv", []byte("mass,velocity\n1,2\n"))
	for _, scheme := range []string{"gs", "s3"} {
		hint := `bucket "nosuch" does not exist: create it, or correct the name`
		for _, tt := range []struct {
			args []string
			want string
		}{
			{[]string{scheme + "://nosuch/a.csv"}, "momentum: read " + scheme + "://nosuch/a.csv: " + hint + "\n"},
			{[]string{scheme + "://in/a.csv", scheme + "://nosuch/b.csv"}, "momentum: write " + scheme + "://nosuch/b.csv: " + hint + "\n"},
		} {
			r := momentumEnv(t, c.env(), nil, tt.args...)
			if r.code != exitFailure || r.stderr != tt.want {
				t.Errorf("momentum %q: %+v, want exit 1 and %q", tt.args, r, tt.want)
			}
		}
		for _, args := range [][]string{
			{"job", "--input", scheme + "://nosuch/a.csv", "--output", scheme + "://out/x.csv"},
			{"job", "--input", scheme + "://in/a.csv", "--output", scheme + "://nosuch/x.csv"},
		} {
			r := momentumEnv(t, c.env(), nil, args...)
			if l := lastJobLog(t, r.stderr); r.code != exitUsage || !strings.HasPrefix(l.Msg, "bad configuration") || !strings.Contains(r.stderr, strings.ReplaceAll(hint, `"`, `\"`)) {
				t.Errorf("momentum %q: %+v, want exit 2, a bad configuration naming the bucket", args, r)
			}
		}
	}
}

// TestPermanentFileError: how a job sorts the local file system's errors.
// Those of a path that cannot be written as given are a configuration to
// mend (exit 2); a full disk or an I/O error may pass (exit 1); a cloud
// store's errors are sorted by their kinds, not here.
func TestPermanentFileError(t *testing.T) {
	pathErr := func(op string, errno syscall.Errno) error {
		return &fs.PathError{Op: op, Path: "out/x.csv", Err: errno}
	}
	for _, tt := range []struct {
		err  error
		want bool
	}{
		{pathErr("open", syscall.ENOENT), true},
		{pathErr("open", syscall.EACCES), true},
		{pathErr("open", syscall.EPERM), true},
		{pathErr("mkdir", syscall.ENOTDIR), true},
		{pathErr("create", syscall.EISDIR), true},
		{pathErr("open", syscall.EROFS), true},
		{pathErr("open", syscall.ELOOP), true},
		{&os.LinkError{Op: "link", Old: "a", New: "b", Err: syscall.EROFS}, true},
		{fmt.Errorf("commit: %w", pathErr("sync", syscall.EACCES)), true},
		{pathErr("write", syscall.ENOSPC), false},
		{pathErr("write", syscall.EDQUOT), false},
		{pathErr("sync", syscall.EIO), false},
		{fmt.Errorf("write s3://b/k: %w", syscall.EACCES), false}, // not the file system's
		{os.ErrPermission, false},
	} {
		if got := permanentFileError(tt.err); got != tt.want {
			t.Errorf("permanentFileError(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}
