package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/momentum-run/momentum/compute"
)

// jobConfig is the batch job's configuration: one input to one output.
type jobConfig struct {
	opts   compute.Options
	input  string
	output string
}

func parseJobConfig(args []string, getenv func(string) string, stdout io.Writer) (*jobConfig, error) {
	fs := flag.NewFlagSet("momentum job", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	kernel := addKernelFlags(fs)
	c := &jobConfig{}
	fs.StringVar(&c.input, "input", "", "the object to process: s3://BUCKET/KEY, gs://BUCKET/OBJECT or a path (required)")
	fs.StringVar(&c.output, "output", "", "where the result goes, written only if absent (required)")
	source, err := parseFlags(fs, args, getenv)
	if errors.Is(err, flag.ErrHelp) {
		printUsage(fs, stdout, jobUsage, "")
		return nil, err
	}
	if err != nil {
		return nil, err
	}
	if c.opts, err = kernel.options(source); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, &usageError{fmt.Sprintf("momentum job takes no arguments: %q", fs.Args())}
	}
	for _, f := range []struct{ name, v string }{{"input", c.input}, {"output", c.output}} {
		if f.v == "" || f.v == "-" {
			return nil, &usageError{source[f.name] + " is required: a cloud URL or a path"}
		}
	}
	if sameLocation(c.input, c.output) {
		return nil, &usageError{fmt.Sprintf("%s and %s name the same object %q", source["input"], source["output"], c.input)}
	}
	return c, nil
}

const jobUsage = `Usage: momentum job [flags]

Runs one batch job, as a Cloud Run job task (chosen when CLOUD_RUN_JOB is
set) or any batch engine does: reads --input, writes --output create-only,
with the rejects (skip mode) or a JSON failure report beside it. A task
that is run again after it succeeded finds its output and does nothing.
Logs are JSON lines on stderr. Exit status: 0 done (or done before), 65
invalid input data (the report says where), 2 bad configuration, 1 any
other failure, worth a retry.

Flags (each can also be set as MOMENTUM_<FLAG>, e.g. MOMENTUM_INPUT):
`

// runJob runs the batch job and returns the exit code.
func runJob(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer, log *slog.Logger) int {
	c, err := parseJobConfig(args, getenv, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		log.Error("bad configuration: " + err.Error())
		return exitUsage
	}
	start := time.Now()
	log = log.With("input", c.input, "output", c.output)
	stores := &storeSet{}
	defer stores.close()
	job, err := jobFor(ctx, stores, c)
	if err != nil {
		var uerr *usageError
		if errors.As(err, &uerr) {
			log.Error("bad configuration: " + err.Error())
			return exitUsage
		}
		log.Error("cannot open the stores", "error", err.Error())
		return exitFailure
	}
	res, err := job.Run(ctx)
	attrs := []any{"outcome", string(res.Outcome), "rows", res.Stats.RowsOut, "rejected", res.Stats.RowsRejected,
		"bytesIn", res.Stats.BytesIn, "bytesOut", res.Stats.BytesOut, "durationMs", time.Since(start).Milliseconds()}
	switch {
	case err != nil:
		log.Error("failed; a retry may succeed", append(attrs, "error", err.Error())...)
		return exitFailure
	case res.Outcome == compute.Failed:
		var perr *compute.ParseError
		if errors.As(res.Err, &perr) {
			attrs = append(attrs, "line", perr.Line, "column", perr.Column, "reason", perr.Reason())
		}
		log.Error("the input cannot be processed", append(attrs, "report", reportLocation(c.output), "error", res.Err.Error())...)
		if perr != nil {
			return exitData
		}
		return exitFailure // the input is gone: the report says so
	case res.Outcome == compute.AlreadyProcessed:
		log.Warn("the input has a momentum column already: nothing written", attrs...)
	default:
		if res.Stats.RowsRejected > 0 {
			attrs = append(attrs, "rejects", rejectsPath(c.output))
		}
		log.Info("job "+string(res.Outcome), attrs...)
	}
	return exitOK
}

// jobFor builds the compute.Job from the configuration.
func jobFor(ctx context.Context, stores *storeSet, c *jobConfig) (*compute.Job, error) {
	in, inKey, err := stores.locate(ctx, c.input)
	if err != nil {
		return nil, err
	}
	out, outKey, err := stores.locate(ctx, c.output)
	if err != nil {
		return nil, err
	}
	_, _, rejectsKey, _ := splitLocation(rejectsPath(c.output))
	_, _, reportKey, _ := splitLocation(reportLocation(c.output))
	return &compute.Job{
		Input: in, InputKey: inKey,
		Output: out, OutputKey: outKey, RejectsKey: rejectsKey, ReportKey: reportKey,
		Options: c.opts,
	}, nil
}

// splitLocation is splitURL for any location: a path is its own key.
func splitLocation(loc string) (scheme, bucket, key string, ok bool) {
	if scheme, bucket, key, ok = splitURL(loc); ok {
		return scheme, bucket, key, ok
	}
	return "", "", loc, true
}

// reportLocation is where a failure report goes: out.csv gives
// out.error.json.
func reportLocation(output string) string {
	r := rejectsPath(output) // out.rejects.csv, or out.x.rejects.csv
	return r[:len(r)-len(".rejects.csv")] + ".error.json"
}
