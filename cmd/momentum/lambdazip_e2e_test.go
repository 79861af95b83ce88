package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/momentum-run/momentum/adapters/awslambda/lambdazip"
)

// TestMakeLambdaZip checks that "make lambda-zip" and "momentum package
// lambda" give the same zip, byte for byte, around the same bootstrap:
// from the binary, and from an image holding it. ARCH takes Lambda's
// x86_64 and names the zip with Go's amd64.
func TestMakeLambdaZip(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the Lambda binary")
	}
	makeTool, err := exec.LookPath("make")
	if err != nil {
		t.Skip("no make on PATH")
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	cmd := exec.Command(makeTool, "-C", root, "lambda-zip", "ARCH=x86_64", "OUT="+out, "MOMENTUM="+bin)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make lambda-zip: %v\n%s", err, b)
	}
	fromMake := readFile(t, filepath.Join(out, "function-amd64.zip"))
	bootstrap := readFile(t, filepath.Join(out, "bootstrap"))
	if !bytes.Equal(pkgBootstrap(t, fromMake), bootstrap) {
		t.Fatal("the zip of make lambda-zip does not hold its bootstrap")
	}

	dir := t.TempDir()
	fromBinary, fromImage := filepath.Join(dir, "binary.zip"), filepath.Join(dir, "image.zip")
	if r := pkgRun(t, false, "--binary", filepath.Join(out, "bootstrap"), "-o", fromBinary); r.code != exitOK {
		t.Fatalf("--binary: exit %d: %s", r.code, r.stderr)
	}
	layoutDir := pkgLayout(t, pkgSimple(t, "amd64", bootstrap))
	r := pkgRun(t, false, "--image", layoutDir, "--arch", "amd64", "-o", fromImage)
	if r.code != exitOK {
		t.Fatalf("--image: exit %d: %s", r.code, r.stderr)
	}
	inProcess, err := lambdazip.Zip(bootstrap)
	if err != nil {
		t.Fatal(err)
	}
	for what, zipped := range map[string][]byte{
		"package lambda --binary": readFile(t, fromBinary),
		"package lambda --image":  readFile(t, fromImage),
		"lambdazip.Zip":           inProcess,
	} {
		if !bytes.Equal(zipped, fromMake) {
			t.Errorf("%s: sha256:%s, make lambda-zip: sha256:%s", what, sha256Hex(zipped), sha256Hex(fromMake))
		}
	}
	if want := "zip       " + fromImage + " sha256:" + sha256Hex(fromMake) + " "; !strings.Contains(r.stdout, want) {
		t.Errorf("the report lacks %q:\n%s", want, r.stdout)
	}
}

// TestPackageBinary checks --binary: the report, the architecture's two
// spellings, and the refusals.
func TestPackageBinary(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "bootstrap")
	tiny := pkgTinyELF(0)
	if err := os.WriteFile(exe, tiny, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, arch := range []string{"amd64", "x86_64"} {
		out := filepath.Join(dir, arch+".zip")
		r := pkgRun(t, true, "--binary", exe, "--arch", arch, "-o", out)
		if r.code != exitOK || !strings.Contains(r.stdout, "binary    "+exe+" sha256:"+sha256Hex(tiny)) ||
			!strings.Contains(r.stderr, "(linux/amd64)") || strings.Contains(r.stdout, "image") {
			t.Errorf("--arch %s: %+v", arch, r)
		}
		if !bytes.Equal(pkgBootstrap(t, readFile(t, out)), tiny) {
			t.Errorf("--arch %s: bootstrap is not the binary", arch)
		}
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--binary", exe, "--arch", "arm64"}, exe + ": an ELF file for amd64 (EM_X86_64), not arm64 (EM_AARCH64)"},
		{[]string{"--binary", filepath.Join(dir, "missing")}, "no such file or directory"},
	} {
		out := filepath.Join(dir, "refused.zip")
		r := pkgRun(t, false, append(tt.args, "-o", out)...)
		if r.code != exitFailure || !strings.Contains(r.stderr, tt.want) {
			t.Errorf("%q: exit %d, stderr %q; want 1 and %q", tt.args, r.code, r.stderr, tt.want)
		}
		if _, err := os.Stat(out); err == nil {
			t.Errorf("%q: left a zip behind", tt.args)
		}
	}
}
