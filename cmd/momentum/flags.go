package main

import (
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"

	"github.com/momentum-run/momentum/adapters/codec"
	"github.com/momentum-run/momentum/adapters/rejects"
	"github.com/momentum-run/momentum/compute"
)

// kernelFlags are the kernel's options as flags, the same in every mode.
type kernelFlags struct {
	opts      compute.Options
	header    string
	delimiter string
	quotes    string
	onError   string
	maxRecord string
	compress  string // "" until set, for the mode's default
	decimals  int
	// connections is --connections: 0 until set, for the mode's default.
	connections int
}

// maxConnections bounds --connections: 64 ranges of 8 MiB in memory.
const maxConnections = 64

func addKernelFlags(fs *flag.FlagSet) *kernelFlags {
	k := &kernelFlags{header: "auto", delimiter: ",", quotes: "strict", onError: "fail", maxRecord: "16MiB", decimals: -1}
	fs.StringVar(&k.opts.MassColumn, "mass", compute.DefaultMassColumn, "header name of the mass column (ASCII case-insensitive)")
	fs.StringVar(&k.opts.VelocityColumn, "velocity", compute.DefaultVelocityColumn, "header name of the velocity column")
	fs.StringVar(&k.opts.MomentumColumn, "momentum", compute.DefaultMomentumColumn, "name of the added column")
	fs.StringVar(&k.header, "header", k.header, "whether the first record is a header: auto, yes or no\n(auto: headerless when it names no column and starts with two numbers)")
	fs.StringVar(&k.delimiter, "delimiter", k.delimiter, "field delimiter: one byte such as ';', or 'tab'")
	fs.StringVar(&k.quotes, "quotes", k.quotes, "how quotes RFC 4180 does not allow are read: strict (the row is bad)\nor lazy (as data, as Go's encoding/csv LazyQuotes: 5'10\" passes)")
	fs.IntVar(&k.decimals, "decimals", k.decimals, "print momentum with N fixed decimals; -1 prints the shortest exact form")
	fs.StringVar(&k.onError, "on-error", k.onError, "what a bad row does: fail (stop at the first) or skip (write it to the rejects file)")
	fs.StringVar(&k.maxRecord, "max-record", k.maxRecord, "largest record accepted, e.g. 1048576, 512KiB, 64MiB")
	fs.StringVar(&k.compress, "compress", "", "compress the output: gzip, zstd, none, or input (as the input is); compressed\ninput is read whatever this says (default: by OUTPUT's suffix .gz or .zst,\nelse none; input in momentum job, on AWS Lambda and Cloud Run)")
	fs.IntVar(&k.opts.Workers, "workers", 0, "goroutines computing rows (default: one per CPU;\nat most 4 per CPU are used, as more only cost memory)")
	fs.IntVar(&k.connections, "connections", 0, "requests in flight per object: ranged reads of 8 MiB of an s3:// or gs://\ninput, parts of 8 MiB of an s3:// or gs:// output; 1 is one stream each way\n(default: 8, of 4 MiB and 5 MiB when both are in the cloud; on AWS Lambda\n1 to 8 by memory)")
	return k
}

// Transfer sizes. Alone, a range read ahead or a part uploaded is 8 MiB.
// When the input and the output are both in the cloud, each connection
// holds a range and a part: both are smaller then, so that 8 connections
// each way hold about what 8 one way do, 8 ranges of 4 MiB and 9 parts of
// 5 MiB (S3's smallest), 77 MiB. A request of 4 MiB still spends most of
// its time moving bytes: at 16 MB/s, 20 ms of latency is 8% of it.
const (
	partSize        = 8 << 20
	sharedRangeSize = 4 << 20
	sharedPartSize  = 5 << 20
)

// readAhead is how cloud inputs are read: --connections ranged requests
// at once, or auto when it is not set, and the size of each part of a
// cloud output, uploaded as many at once. bothCloud is whether the input
// and the output are both in the cloud, where the two share the memory.
func (k *kernelFlags) readAhead(source map[string]string, auto int, bothCloud bool) (compute.ReadAhead, int, error) {
	n := k.connections
	switch {
	case n < 0 || n > maxConnections:
		return compute.ReadAhead{}, 0, &usageError{fmt.Sprintf("%s %d: want 1 to %d", source["connections"], n, maxConnections)}
	case n == 0:
		n = auto
	}
	if bothCloud && n > 1 {
		return compute.ReadAhead{Connections: n, RangeSize: sharedRangeSize}, sharedPartSize, nil
	}
	return compute.ReadAhead{Connections: n, RangeSize: compute.DefaultRangeSize}, partSize, nil
}

// lambdaConnections is the default --connections of a Lambda function
// with AWS_LAMBDA_FUNCTION_MEMORY_SIZE megabytes. Its input and output
// are both in S3: each connection holds one range read ahead and one part
// uploaded, and the buffers take at most half its memory (6 at 128 MB,
// 8 from 192 MB).
func lambdaConnections(getenv func(string) string) int {
	mb, err := strconv.Atoi(getenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE"))
	if err != nil || mb <= 0 {
		return compute.DefaultConnections
	}
	perConnection := (sharedRangeSize + sharedPartSize) >> 20 // MiB
	return min(max((mb/2-sharedPartSize>>20)/perConnection, 1), compute.DefaultConnections)
}

// parseFlags parses args, then sets each flag not on the command line
// from its MOMENTUM_<FLAG> variable. It returns, for each flag, the name
// the user gave it (--flag or the variable), for error messages; with
// -h or --help it returns flag.ErrHelp.
func parseFlags(fs *flag.FlagSet, args []string, getenv func(string) string) (map[string]string, error) {
	help := fs.Bool("help", false, "print this help and exit")
	fs.BoolVar(help, "h", false, "print this help and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, flagError(fs, err)
	}
	if *help {
		return nil, flag.ErrHelp
	}
	source := map[string]string{}
	fs.Visit(func(f *flag.Flag) { source[f.Name] = "--" + f.Name })
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if _, set := source[f.Name]; set || envErr != nil || f.Name == "help" || f.Name == "h" || f.Name == "version" {
			return
		}
		name := envName(f.Name)
		source[f.Name] = name
		if v := getenv(name); v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				envErr = &usageError{fmt.Sprintf("%s=%q: %s", name, v, badValue(f, err))}
			}
		}
	})
	return source, envErr
}

// options checks the kernel flags and returns them as compute.Options.
func (k *kernelFlags) options(source map[string]string) (compute.Options, error) {
	o := k.opts
	bad := func(flagName, format string, a ...any) error {
		return &usageError{source[flagName] + " " + fmt.Sprintf(format, a...)}
	}
	var err error
	if o.Header, err = compute.ParseHeaderMode(k.header); err != nil {
		return o, bad("header", "%q: %v", k.header, err)
	}
	if o.Delimiter, err = compute.ParseDelimiter(k.delimiter); err != nil {
		return o, bad("delimiter", "%q: %v", k.delimiter, err)
	}
	if o.Quotes, err = compute.ParseQuoteMode(k.quotes); err != nil {
		return o, bad("quotes", "%q: %v", k.quotes, err)
	}
	switch {
	case k.decimals == -1:
	case k.decimals >= 0 && k.decimals <= 100:
		o.FixedDecimals, o.Decimals = true, k.decimals
	default:
		return o, bad("decimals", "%d: want -1 or 0..100", k.decimals)
	}
	switch k.onError {
	case "fail":
		o.OnError = compute.OnErrorFail
	case "skip":
		o.OnError = compute.OnErrorSkip
		o.NewRejectWriter = rejects.NewWriter
	default:
		return o, bad("on-error", "%q: want fail or skip", k.onError)
	}
	o.Codec, o.Compress = codec.Codec{}, compute.SameAsInput
	if k.compress != "" {
		if o.Compress, err = compute.ParseCompression(k.compress); err != nil {
			return o, bad("compress", "%q: %v", k.compress, err)
		}
	}
	n, err := parseSize(k.maxRecord)
	if err != nil {
		return o, bad("max-record", "%q: %v", k.maxRecord, err)
	}
	o.MaxRecordBytes = n
	if o.Workers < 0 {
		return o, bad("workers", "%d: want 0 (one per CPU) or more", o.Workers)
	}
	cols := []struct{ flag, v string }{{"mass", o.MassColumn}, {"velocity", o.VelocityColumn}, {"momentum", o.MomentumColumn}}
	for i, col := range cols {
		if strings.TrimSpace(col.v) == "" {
			return o, bad(col.flag, "%q: a column name cannot be empty", col.v)
		}
		for _, other := range cols[:i] {
			if strings.EqualFold(strings.TrimSpace(col.v), strings.TrimSpace(other.v)) {
				return o, &usageError{fmt.Sprintf("%s %q and %s %q name the same column",
					source[other.flag], other.v, source[col.flag], col.v)}
			}
		}
	}
	return o, nil
}

// flagError rewrites an error of fs.Parse in the words of the help, which
// spells flags with two dashes: the flag package's own messages spell
// them with one and say only "parse error" of a bad number.
func flagError(fs *flag.FlagSet, err error) error {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		return &usageError{fmt.Sprintf("unknown flag --%s", name)}
	}
	if name, ok := strings.CutPrefix(msg, "flag needs an argument: -"); ok {
		return &usageError{fmt.Sprintf("--%s needs a value", name)}
	}
	for _, form := range []struct{ prefix, middle string }{
		{"invalid value ", " for flag -"},
		{"invalid boolean value ", " for -"},
	} {
		rest, ok := strings.CutPrefix(msg, form.prefix)
		if !ok {
			continue
		}
		value, verr := strconv.QuotedPrefix(rest)
		if verr != nil {
			break
		}
		rest, ok = strings.CutPrefix(rest[len(value):], form.middle)
		name, _, _ := strings.Cut(rest, ":")
		if f := fs.Lookup(name); ok && f != nil {
			return &usageError{fmt.Sprintf("--%s %s: %s", name, value, badValue(f, errors.Unwrap(err)))}
		}
	}
	return &usageError{msg}
}

// badValue says what a flag wants, for a value its Set refused.
func badValue(f *flag.Flag, err error) string {
	if g, ok := f.Value.(flag.Getter); ok {
		switch g.Get().(type) {
		case bool:
			return "want true or false"
		case int:
			return "want a whole number"
		}
	}
	if err == nil {
		return "invalid value"
	}
	return err.Error()
}
