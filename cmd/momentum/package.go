package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/momentum-run/momentum/adapters/awslambda/lambdazip"
	"github.com/momentum-run/momentum/adapters/image"
)

const packageUsage = `Usage: momentum package lambda (--image IMAGE | --binary FILE) -o ZIP [--arch amd64|arm64] [--quiet]

Takes the binary out of a container image (or a binary already built)
and zips it as an AWS Lambda function for the provided.al2023 runtime:
one entry, bootstrap, mode 0755, dated 1980-01-01, so the same binary
always gives the same zip, byte for byte, whichever way it came. No
Docker engine is needed.

IMAGE is one of:
  DIR, DIR:TAG, oci:DIR[:TAG]   an OCI image layout; TAG picks an image by
                                its org.opencontainers.image.ref.name (a
                                layout holding one image needs none)
  FILE, FILE:TAG                a "docker save" tarball, or an OCI archive
                                (an OCI layout in a tar)
  REF, docker://REF             an image in a registry, e.g.
                                ghcr.io/OWNER/momentum:v1, with the
                                credentials of docker login

The binary is the image's entrypoint (or, without one, its command), read
through the image's layers as a container sees it: later layers replace
files, whiteouts delete them, symbolic links are followed. It must be a
statically linked 64-bit ELF executable for the architecture: Lambda's
provided.al2023 does not promise the image's libraries. From a
multi-platform image, the linux/amd64 or linux/arm64 image is taken.
ARCH is amd64 or arm64 as Go names them; Lambda's x86_64 is amd64.

stdout gets the image's digests, the sha256 of the binary and of the zip:
the function runs the very bytes of the image. With -o - the zip goes to
stdout and that report to stderr. On a terminal a one-line greeting goes
to stderr first; --quiet leaves stderr to errors.

Examples:
  go run ./cmd/momentum-image --platform linux/amd64,linux/arm64 --layout build/image --tag momentum:dev
  momentum package lambda --image build/image:momentum:dev -o function.zip
  momentum package lambda --image ghcr.io/OWNER/momentum:v1 --arch arm64 -o function.zip
  momentum package lambda --binary build/lambda/bootstrap -o function.zip
  aws lambda update-function-code --function-name momentum --zip-file fileb://function.zip

Flags:
`

const packageFooter = `
Exit status: 0 success, 2 usage error, 1 any other failure (the image
cannot be read, or its binary cannot run on Lambda); no zip is left behind
then.
`

// runPackage runs "momentum package ..." and returns the exit code.
// stderrIsTerminal says whether to greet.
func runPackage(ctx context.Context, args []string, stdout, stderr io.Writer, stderrIsTerminal bool) int {
	fs := flag.NewFlagSet("momentum package lambda", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	ref := fs.String("image", "", "the `IMAGE` to take the binary from (see above)")
	binFile := fs.String("binary", "", "zip this built `FILE` instead of an image's binary")
	out := fs.String("o", "", "write the zip to `ZIP`, replacing it whole or not at all; - for standard output")
	archName := fs.String("arch", "amd64", "the `ARCH`: amd64 (Lambda's x86_64) or arm64")
	quiet := fs.Bool("quiet", false, "print nothing on stderr but errors")
	help := fs.Bool("help", false, "print this help and exit")
	fs.BoolVar(help, "h", false, "print this help and exit")
	usageErr := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "momentum: package lambda: "+format+"\nRun 'momentum package lambda --help' for usage.\n", a...)
		return exitUsage
	}
	if len(args) > 0 && args[0] == "lambda" {
		args = args[1:]
	} else if len(args) == 0 || !strings.HasPrefix(args[0], "-") {
		fmt.Fprint(stderr, "momentum: package: want 'momentum package lambda' (Lambda is the one target)\nRun 'momentum package lambda --help' for usage.\n")
		return exitUsage
	}
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) || (err == nil && *help) {
		printPackageUsage(fs, stdout)
		return exitOK
	} else if err != nil {
		return usageErr("%v", err)
	}
	arch, archErr := lambdazip.ParseArch(*archName)
	source, sourceKind := *ref, "image"
	if *binFile != "" {
		source, sourceKind = *binFile, "binary"
	}
	switch {
	case *ref == "" && *binFile == "":
		return usageErr("--image or --binary is required")
	case *ref != "" && *binFile != "":
		return usageErr("--image and --binary: give one")
	case *out == "":
		return usageErr("-o is required (- for standard output)")
	case fs.NArg() > 0:
		return usageErr("unexpected arguments %q", fs.Args())
	case archErr != nil:
		return usageErr("--arch %v", archErr)
	case *out != "-" && sameLocation(*out, source):
		return usageErr("-o %q would replace the %s", *out, sourceKind)
	}
	fail := func(err error) int {
		if ctx.Err() != nil {
			err = errors.New("interrupted")
		}
		fmt.Fprintf(stderr, "momentum: package lambda: %v\n", err)
		return exitFailure
	}
	if err := checkOutput(*out); err != nil {
		return fail(err)
	}

	var src *image.Source
	var bin *image.Binary
	platform := image.Linux(arch.GOARCH)
	if *ref != "" {
		useFallbackRootsIfNone() // the image may be in a registry
		var err error
		if src, err = image.Open(ctx, *ref, platform); err != nil {
			return fail(err)
		}
		defer src.Close()
		if bin, err = image.ReadEntrypoint(ctx, src.Image); err != nil {
			return fail(fmt.Errorf("%s: %w", *ref, err))
		}
		if err := lambdazip.CheckBinary(bin.Data, arch); err != nil {
			return fail(fmt.Errorf("%s in %s: %w", bin.Path, *ref, err))
		}
	} else {
		data, err := os.ReadFile(*binFile)
		if err != nil {
			return fail(err)
		}
		bin = &image.Binary{Entrypoint: *binFile, Path: *binFile, Data: data}
		if err := lambdazip.CheckBinary(data, arch); err != nil {
			return fail(fmt.Errorf("%s: %w", *binFile, err))
		}
	}
	zipped, err := lambdazip.Zip(bin.Data)
	if err != nil {
		return fail(err)
	}

	shown := *out
	if *out == "-" {
		shown = "standard output"
	}
	if stderrIsTerminal && !*quiet {
		if src != nil {
			fmt.Fprintf(stderr, "I'm coming out… %s from %s (%s) → %s\n", bin.Entrypoint, *ref, platform, shown)
		} else {
			fmt.Fprintf(stderr, "I'm coming out… %s (%s) → %s\n", *binFile, platform, shown)
		}
	}
	if *out == "-" {
		if _, err := stdout.Write(zipped); err != nil {
			return fail(err)
		}
	} else if err := writeFileAtomic(ctx, *out, zipped); err != nil {
		return fail(err)
	}
	report := stdout
	if *out == "-" {
		if *quiet {
			return exitOK
		}
		report = stderr
	}
	if src != nil {
		fmt.Fprintf(report, "image     %s\n", *ref)
		reportImage(report, src)
	}
	binary := bin.Path
	if bin.Path != bin.Entrypoint {
		binary += " (entrypoint " + bin.Entrypoint + ")"
	}
	fmt.Fprintf(report, "binary    %s sha256:%s %d bytes\n", binary, sha256Hex(bin.Data), len(bin.Data))
	fmt.Fprintf(report, "zip       %s sha256:%s %d bytes, bootstrap 0755\n", shown, sha256Hex(zipped), len(zipped))
	return exitOK
}

// reportImage writes the digests of the image src found to w.
func reportImage(w io.Writer, src *image.Source) {
	if src.Index != (v1.Hash{}) {
		fmt.Fprintf(w, "index     %s\n", src.Index)
	}
	if src.Manifest != (v1.Hash{}) {
		fmt.Fprintf(w, "manifest  %s %s\n", src.Manifest, src.Platform)
	}
	fmt.Fprintf(w, "config    %s %s\n", src.Config, src.Platform)
}

// printPackageUsage prints the help: flags of one letter with one dash,
// the others with two.
func printPackageUsage(fs *flag.FlagSet, w io.Writer) {
	fmt.Fprint(w, packageUsage)
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name == "h" {
			return
		}
		arg, text := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if len(f.Name) == 1 {
			line = "  -" + f.Name
		}
		if arg != "" {
			line += " " + arg
		}
		if f.DefValue != "" && f.DefValue != "false" {
			text += " (default " + f.DefValue + ")"
		}
		fmt.Fprintf(w, "%s\n      %s\n", line, text)
	})
	fmt.Fprint(w, packageFooter)
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// checkOutput fails early, before any image is read, when the zip could
// not be written: -o names a directory, or a file in no directory.
func checkOutput(out string) error {
	if out == "-" {
		return nil
	}
	if fi, err := os.Stat(out); err == nil && fi.IsDir() {
		return fmt.Errorf("-o %s: is a directory", out)
	}
	dir := filepath.Dir(out)
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("-o %s: %w", out, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("-o %s: %s is not a directory", out, dir)
	}
	return nil
}

// writeFileAtomic writes a file whole or not at all: a temporary file in
// the same directory, renamed over name once written and synced. A
// cancelled ctx leaves nothing behind.
func writeFileAtomic(ctx context.Context, name string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".*.tmp")
	if err != nil {
		return err
	}
	committed := false
	defer func() {
		if !committed {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if fi, err := os.Stat(name); err == nil && fi.IsDir() {
		return fmt.Errorf("%s: is a directory", name)
	}
	if err := os.Rename(tmp.Name(), name); err != nil {
		return err
	}
	committed = true
	return nil
}
