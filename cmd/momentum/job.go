package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/momentum-run/momentum/compute"
)

// jobConfig is the batch job's configuration: one input to one output.
type jobConfig struct {
	opts      compute.Options
	readAhead compute.ReadAhead
	partSize  int // bytes in each part of a cloud output
	input     string
	output    string
	// shard is set when the job is one task of an array: the output is
	// then a folder of parts.
	shard       *compute.Shard
	shardSource string // where the shard came from, for messages
}

func parseJobConfig(args []string, getenv func(string) string, stdout io.Writer) (*jobConfig, error) {
	fs := flag.NewFlagSet("momentum job", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	kernel := addKernelFlags(fs)
	c := &jobConfig{}
	fs.StringVar(&c.input, "input", "", "the object to process: s3://BUCKET/KEY, gs://BUCKET/OBJECT or a path (required)")
	fs.StringVar(&c.output, "output", "", "where the result goes, written only if absent (required);\na folder (ending in /) for the parts of a sharded job")
	shard := fs.String("shard", "", "process shard `I/N` of the input (0-based), writing OUTPUT/part-NNNNN.csv;\nby default from CLOUD_RUN_TASK_INDEX/COUNT, JOB_COMPLETION_INDEX with\nMOMENTUM_SHARDS, or AWS_BATCH_JOB_ARRAY_INDEX/SIZE")
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
	if c.readAhead, c.partSize, err = kernel.readAhead(source, compute.DefaultConnections, isURL(c.input) && isURL(c.output)); err != nil {
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
	if *shard != "" {
		sh, err := compute.ParseShard(*shard)
		if err != nil {
			return nil, &usageError{source["shard"] + ": " + err.Error()}
		}
		c.shard, c.shardSource = &sh, source["shard"]
	} else if c.shard, c.shardSource, err = shardFromEnv(getenv); err != nil {
		return nil, err
	}
	folder := strings.HasSuffix(c.output, "/")
	switch {
	case c.shard != nil && c.shard.Count > 1 && !folder:
		return nil, &usageError{fmt.Sprintf("%s gives shard %v, so %s must be a folder for the parts: end it with /", c.shardSource, *c.shard, source["output"])}
	case c.shard == nil && folder:
		c.shard, c.shardSource = &compute.Shard{Index: 0, Count: 1}, "the output folder"
	case c.shard != nil && !folder:
		c.shard = nil // one task of one: the output is the object named
	}
	return c, nil
}

// shardFromEnv finds the task's shard in the variables an array job's
// engine sets: Cloud Run jobs, Kubernetes indexed jobs (which give no
// count: MOMENTUM_SHARDS does), AWS Batch array jobs.
func shardFromEnv(getenv func(string) string) (*compute.Shard, string, error) {
	for _, v := range [][2]string{
		{"CLOUD_RUN_TASK_INDEX", "CLOUD_RUN_TASK_COUNT"},
		{"JOB_COMPLETION_INDEX", "MOMENTUM_SHARDS"},
		{"AWS_BATCH_JOB_ARRAY_INDEX", "AWS_BATCH_JOB_ARRAY_SIZE"},
	} {
		index := getenv(v[0])
		if index == "" {
			continue
		}
		count, countVar := getenv(v[1]), v[1]
		if count == "" && v[1] != "MOMENTUM_SHARDS" {
			count, countVar = getenv("MOMENTUM_SHARDS"), "MOMENTUM_SHARDS"
		}
		if count == "" {
			return nil, "", &usageError{fmt.Sprintf("%s is set but %s is not: set it to the number of tasks", v[0], v[1])}
		}
		sh, err := compute.ParseShard(index + "/" + count)
		if err != nil {
			return nil, "", &usageError{fmt.Sprintf("%s=%s, %s=%s: %v", v[0], index, countVar, count, err)}
		}
		return &sh, v[0] + "/" + countVar, nil
	}
	return nil, "", nil
}

const jobUsage = `Usage: momentum job [flags]

Runs one batch job, as a Cloud Run job task (chosen when CLOUD_RUN_JOB is
set) or any batch engine does: reads --input, writes --output create-only,
with the rejects (skip mode) or a JSON failure report beside it. A task
that is run again after it succeeded finds its output and does nothing.
In an array job, each task processes one shard of the input: the records
that start in its share of the bytes. --shard I/N says which, or the
engine's variables do (CLOUD_RUN_TASK_INDEX and CLOUD_RUN_TASK_COUNT;
JOB_COMPLETION_INDEX and MOMENTUM_SHARDS; AWS_BATCH_JOB_ARRAY_INDEX and
AWS_BATCH_JOB_ARRAY_SIZE). --output is then a folder: task I writes
part-NNNNN.csv, I in five digits (the header only in part 0, so the parts
in order are the single run's output), then part-NNNNN.json, its manifest. A task run again
rewrites its part. "momentum merge FOLDER/" checks, and can join, the parts.

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
	if c.shard != nil {
		log = log.With("shard", c.shard.String())
	}
	stores := &storeSet{readAhead: c.readAhead, partSize: c.partSize}
	defer stores.close()
	job, err := jobFor(ctx, stores, c)
	if err != nil {
		var uerr *usageError
		if errors.As(err, &uerr) || permanentFileError(err) || errors.Is(err, compute.ErrBucketNotFound) {
			log.Error("bad configuration: " + err.Error())
			return exitUsage
		}
		log.Error("cannot open the stores", "error", err.Error())
		return exitFailure
	}
	res, err := job.Run(ctx)
	report := reportLocation(c.output)
	if c.shard != nil {
		report = compute.ReportKey(c.output, c.shard.Index)
	}
	attrs := []any{"outcome", string(res.Outcome), "rows", res.Stats.RowsOut, "rejected", res.Stats.RowsRejected,
		"bytesIn", res.Stats.BytesIn, "bytesOut", res.Stats.BytesOut, "durationMs", time.Since(start).Milliseconds()}
	switch {
	case err != nil && (permanentFileError(err) || errors.Is(err, compute.ErrBucketNotFound)):
		log.Error("bad configuration: a retry cannot help", append(attrs, "error", err.Error())...)
		return exitUsage
	case err != nil:
		log.Error("failed; a retry may succeed", append(attrs, "error", err.Error())...)
		return exitFailure
	case res.Outcome == compute.Failed:
		var perr *compute.ParseError
		if errors.As(res.Err, &perr) {
			attrs = append(attrs, "line", perr.Line, "column", perr.Column, "reason", perr.Reason())
		}
		if errors.Is(res.Err, compute.ErrCompressedShards) {
			log.Error("bad configuration: a retry cannot help", append(attrs, "report", report, "error", res.Err.Error())...)
			return exitUsage
		}
		log.Error("the input cannot be processed", append(attrs, "report", report, "error", res.Err.Error())...)
		if perr != nil {
			return exitData
		}
		return exitFailure // the input is gone: the report says so
	case res.Outcome == compute.AlreadyProcessed:
		log.Warn("the input has a momentum column already: nothing written", attrs...)
	default:
		if res.Stats.RowsRejected > 0 && c.shard == nil {
			attrs = append(attrs, "rejects", rejectsPath(c.output))
		} else if res.Stats.RowsRejected > 0 {
			attrs = append(attrs, "rejects", compute.RejectsKey(c.output, c.shard.Index))
		}
		log.Info("job "+string(res.Outcome), attrs...)
	}
	return exitOK
}

// runner is a compute.Job or a compute.ShardJob.
type runner interface {
	Run(ctx context.Context) (compute.JobResult, error)
}

// jobFor builds the job from the configuration.
func jobFor(ctx context.Context, stores *storeSet, c *jobConfig) (runner, error) {
	in, inKey, err := stores.locate(ctx, c.input)
	if err != nil {
		return nil, err
	}
	if c.shard != nil {
		out, prefix, err := stores.locateOutputFolder(ctx, c.output)
		if err != nil {
			return nil, err
		}
		return &compute.ShardJob{Input: in, InputKey: inKey, ReadAhead: stores.readAheadFor(in),
			Output: out, Prefix: prefix, Shard: *c.shard, Options: c.opts}, nil
	}
	out, outKey, err := stores.locate(ctx, c.output)
	if err != nil {
		return nil, err
	}
	if !isURL(c.output) {
		// A folder is made as needed, as an object store implies it, and
		// as the parts of a sharded job get theirs.
		if err := os.MkdirAll(filepath.Dir(c.output), 0o777); err != nil {
			return nil, err
		}
	}
	_, _, rejectsKey, _ := splitLocation(rejectsPath(c.output))
	_, _, reportKey, _ := splitLocation(reportLocation(c.output))
	return &compute.Job{
		Input: in, InputKey: inKey, ReadAhead: stores.readAheadFor(in),
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

// permanentFileError reports whether err is a local file system error
// that a retry cannot mend: a path that cannot be written as given (no
// permission, a read-only file system, a file where a folder should be, a
// folder where a file should be). A full disk or an I/O error may pass.
func permanentFileError(err error) bool {
	var pe *fs.PathError
	var le *os.LinkError
	if !errors.As(err, &pe) && !errors.As(err, &le) {
		return false // not the file system's: a cloud store's errors are its own
	}
	for _, errno := range []syscall.Errno{syscall.EACCES, syscall.EPERM, syscall.EROFS,
		syscall.ENOTDIR, syscall.EISDIR, syscall.ELOOP, syscall.ENAMETOOLONG, syscall.ENOENT} {
		if errors.Is(err, errno) {
			return true
		}
	}
	return false
}
