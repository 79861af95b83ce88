package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/momentum-run/momentum/compute"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
	exitData    = 65 // EX_DATAERR: the input is not valid
)

// version is set at build time with -ldflags "-X main.version=v1.2.3".
var version = ""

const usageText = `Usage: momentum [flags] [INPUT [OUTPUT]]

Reads a CSV of masses and velocities and writes the same rows with a
momentum column (mass × velocity) appended. INPUT and OUTPUT are files;
absent or "-" means standard input and output. An output file appears only
when the run succeeds: a failed run leaves no partial file behind.

Examples:
  momentum testdata/particles.csv out.csv
  momentum --decimals 3 < testdata/demo.csv
  momentum --delimiter ';' --mass Masse --velocity Geschwindigkeit in.csv out.csv
  momentum --on-error skip in.csv out.csv          # bad rows go to out.rejects.csv
  MOMENTUM_ON_ERROR=skip momentum in.csv out.csv   # any flag, from the environment

Flags (each can also be set as MOMENTUM_<FLAG>, e.g. MOMENTUM_MAX_RECORD=64MiB):
`

const usageFooter = `
Exit status: 0 success, 2 usage error, 65 invalid input data, 1 any other
failure. When writing to standard output, rows before an error may already
have been written: the exit status is what counts.

Other modes, each with its own --help:
  momentum job --input LOC --output LOC [--shard I/N]  one batch job, or one shard of it
  momentum merge [--into OBJECT] FOLDER/                check, and join, a sharded job's parts
  momentum serve                                        the Cloud Run service
  momentum package lambda --image IMAGE -o ZIP          an image's binary, zipped for AWS Lambda
`

// usageError is a mistake in the command line or environment.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// cliConfig is everything a CLI run needs, read once from flags and env.
type cliConfig struct {
	opts        compute.Options
	readAhead   compute.ReadAhead
	partSize    int // bytes in each part of a cloud output
	input       string
	output      string
	rejects     string
	quiet       bool
	showVersion bool
}

func parseCLI(args []string, getenv func(string) string, stdout io.Writer) (*cliConfig, error) {
	c := &cliConfig{}
	fs := flag.NewFlagSet("momentum", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	kernel := addKernelFlags(fs)
	fs.StringVar(&c.rejects, "rejects", "", "rejects file for --on-error skip (default: OUTPUT with .rejects.csv)")
	fs.BoolVar(&c.quiet, "quiet", false, "print no progress and no summary, only errors")
	fs.BoolVar(&c.showVersion, "version", false, "print the version and exit")

	source, err := parseFlags(fs, args, getenv)
	if errors.Is(err, flag.ErrHelp) {
		printUsage(fs, stdout, usageText, usageFooter)
		return nil, err
	}
	if err != nil {
		return nil, err
	}
	if c.showVersion {
		return c, nil
	}
	if c.opts, err = kernel.options(source); err != nil {
		return nil, err
	}
	bad := func(flagName, format string, a ...any) error {
		return &usageError{source[flagName] + " " + fmt.Sprintf(format, a...)}
	}

	switch rest := fs.Args(); len(rest) {
	case 0:
		c.input, c.output = "-", "-"
	case 1:
		c.input, c.output = rest[0], "-"
	case 2:
		c.input, c.output = rest[0], rest[1]
	default:
		return nil, &usageError{fmt.Sprintf("too many arguments: %q", rest[2:])}
	}
	if kernel.compress == "" {
		// out.csv.gz means gzip, as tar -a reads a name.
		c.opts.Compress = compute.CompressionOfName(c.output)
	}
	if c.input != "-" && sameLocation(c.input, c.output) {
		return nil, &usageError{fmt.Sprintf("INPUT %q and OUTPUT %q are the same file: the output would overwrite its input", c.input, c.output)}
	}
	if c.readAhead, c.partSize, err = kernel.readAhead(source, compute.DefaultConnections, isURL(c.input) && isURL(c.output)); err != nil {
		return nil, err
	}
	if c.rejects != "" && c.opts.OnError != compute.OnErrorSkip {
		return nil, bad("rejects", "needs --on-error skip")
	}
	if c.opts.OnError == compute.OnErrorSkip && c.rejects == "" {
		if c.output == "-" {
			return nil, &usageError{source["on-error"] + " skip with output to stdout needs --rejects PATH"}
		}
		c.rejects = rejectsPath(c.output)
	}
	if c.rejects != "" {
		switch {
		case sameLocation(c.rejects, c.output):
			return nil, bad("rejects", "%q and OUTPUT %q are the same file", c.rejects, c.output)
		case sameLocation(c.rejects, c.input):
			return nil, bad("rejects", "%q and INPUT %q are the same file", c.rejects, c.input)
		}
	}
	return c, nil
}

// envName is the environment variable that can set a flag.
func envName(flagName string) string {
	return "MOMENTUM_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// sameLocation reports whether two command-line locations name the same
// file or object, however spelled: relative or absolute, through a
// symbolic link or a hard link. A device, FIFO or socket named twice
// (/dev/null, /dev/stdout) is not a file one write could clobber.
func sameLocation(a, b string) bool {
	if a == "-" || b == "-" || isURL(a) || isURL(b) {
		return a == b
	}
	fa, errA := os.Stat(a)
	fb, errB := os.Stat(b)
	if errA == nil && errB == nil {
		if !fa.Mode().IsRegular() || !fb.Mode().IsRegular() {
			return false
		}
		return os.SameFile(fa, fb)
	}
	absA, errA := filepath.Abs(a)
	absB, errB := filepath.Abs(b)
	return errA == nil && errB == nil && absA == absB
}

func printUsage(fs *flag.FlagSet, w io.Writer, text, footer string) {
	fmt.Fprint(w, text)
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name == "h" {
			return
		}
		arg, text := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if arg != "" {
			line += " " + strings.ToUpper(arg)
		}
		text = strings.ReplaceAll(text, "\n", "\n      ")
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
			text += " (default " + f.DefValue + ")"
		}
		fmt.Fprintf(w, "%s\n      %s\n", line, text)
	})
	fmt.Fprint(w, footer)
}

// rejectsPath puts the rejects file beside the output: out.csv (or
// out.csv.gz) gives out.rejects.csv.
func rejectsPath(output string) string {
	output = compute.NameFor(output, compute.Uncompressed) // out.csv.gz's are plain: out.rejects.csv
	ext := filepath.Ext(output)
	if !strings.EqualFold(ext, ".csv") {
		return output + ".rejects.csv"
	}
	return strings.TrimSuffix(output, ext) + ".rejects" + ext
}

// parseSize reads a byte count with an optional binary suffix (KiB, MiB,
// GiB; K, M, G mean the same).
func parseSize(s string) (int, error) {
	num := strings.TrimRight(s, "KMGiBkmgb")
	mult := 1
	switch strings.ToUpper(strings.TrimSpace(s[len(num):])) {
	case "", "B":
	case "K", "KB", "KIB":
		mult = 1 << 10
	case "M", "MB", "MIB":
		mult = 1 << 20
	case "G", "GB", "GIB":
		mult = 1 << 30
	default:
		return 0, errors.New("unknown unit")
	}
	n, err := strconv.Atoi(strings.TrimSpace(num))
	if err != nil || n <= 0 || n > (1<<31)/mult {
		return 0, errors.New("want a positive size up to 2GiB")
	}
	return n * mult, nil
}

func versionString() string {
	v := version
	commit := ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v == "" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					commit += "-dirty"
				}
			}
		}
	}
	if v == "" {
		v = "(devel)"
	}
	s := fmt.Sprintf("momentum %s %s %s/%s", v, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	if commit != "" {
		s += " " + commit
	}
	return s
}

// runCLI runs the command line and returns the exit code.
func runCLI(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	c, err := parseCLI(args, getenv, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "momentum: %v\nRun 'momentum --help' for usage.\n", err)
		return exitUsage
	}
	if c.showVersion {
		fmt.Fprintln(stdout, versionString())
		return exitOK
	}
	st, elapsed, err := transformFiles(ctx, c, stdin, stdout, stderr)
	if err != nil && ctx.Err() != nil {
		fmt.Fprintln(stderr, "momentum: interrupted")
		return exitFailure
	}
	if err != nil {
		fmt.Fprintf(stderr, "momentum: %v\n", err)
		var perr *compute.ParseError
		var uerr *usageError
		switch {
		case errors.As(err, &perr):
			return exitData
		case errors.As(err, &uerr):
			return exitUsage
		}
		return exitFailure
	}
	if !c.quiet {
		fmt.Fprintln(stderr, summary(st, elapsed))
	}
	return exitOK
}

// summary is the one line printed at the end of a run.
func summary(st compute.Stats, elapsed time.Duration) string {
	secs := elapsed.Seconds()
	return fmt.Sprintf("momentum: %d rows, %d rejected, %.1f MB in %.2fs (%.0f MB/s)",
		st.RowsOut, st.RowsRejected, float64(st.BytesIn)/1e6, secs, float64(st.BytesIn)/1e6/max(secs, 1e-9))
}

// transformFiles runs the kernel from c.input to c.output (and the
// rejects file), committing the outputs only when the whole run succeeds.
func transformFiles(ctx context.Context, c *cliConfig, stdin io.Reader, stdout, stderr io.Writer) (compute.Stats, time.Duration, error) {
	start := time.Now()
	// A run that fails cancels ctx, which makes the writers abort.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stores := &storeSet{readAhead: c.readAhead, partSize: c.partSize}
	defer stores.close()

	in, size, err := stores.open(ctx, c.input, stdin)
	if err != nil {
		return compute.Stats{}, 0, err
	}
	defer in.Close()
	// The output's compression is known before it is created, for its
	// metadata: the input's first bytes tell the input's.
	counter := &countingReader{r: in}
	src, inComp, err := compute.Detect(counter)
	if err != nil {
		return compute.Stats{}, 0, err
	}
	if c.opts.Compress == compute.SameAsInput {
		c.opts.Compress = inComp
	}
	out, err := stores.create(ctx, c.output, stdout, c.opts.Compress.ContentEncoding())
	if err != nil {
		return compute.Stats{}, 0, err
	}
	// Until committed, writers are aborted on the way out: cancelled, then
	// closed, which leaves nothing behind.
	committed := false
	var rejects io.WriteCloser
	defer func() {
		if !committed {
			cancel()
			out.Close()
			if rejects != nil {
				rejects.Close()
			}
		}
	}()
	if c.rejects != "" {
		if rejects, err = stores.create(ctx, c.rejects, stdout, ""); err != nil {
			return compute.Stats{}, 0, err
		}
		c.opts.Rejects = rejects
	}

	stopProgress := startProgress(ctx, c.quiet, stderr, size, counter)
	st, err := compute.Transform(ctx, out, src, c.opts)
	stopProgress()
	if err != nil {
		return st, 0, inputError(c.input, err)
	}
	// Commit the rejects first: an output without its rejects would hide
	// rows; rejects without the output are merely a failed run.
	committed = true
	if rejects != nil {
		if err := rejects.Close(); err != nil {
			cancel()
			out.Close()
			return st, 0, err
		}
	}
	if err := out.Close(); err != nil {
		return st, 0, err
	}
	return st, time.Since(start), nil
}

// inputError names the input in a data error.
func inputError(input string, err error) error {
	var perr *compute.ParseError
	if errors.As(err, &perr) {
		if input == "-" {
			input = "stdin"
		}
		return fmt.Errorf("%s: %w", input, err)
	}
	return err
}
