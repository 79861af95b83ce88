// Command momentum reads a CSV of masses and velocities and writes the same
// rows with momentum = mass × velocity appended.
//
//	momentum [flags] [INPUT [OUTPUT]]
//
// The one binary runs everywhere; the environment says how:
//
//   - AWS_LAMBDA_RUNTIME_API set (AWS Lambda): handle S3 upload events.
//   - "momentum job", or CLOUD_RUN_JOB set (a Cloud Run job): one batch job,
//     MOMENTUM_INPUT to MOMENTUM_OUTPUT, or one shard of it in an array
//     job's task (Cloud Run, Kubernetes indexed, AWS Batch).
//   - "momentum serve", or K_SERVICE set (a Cloud Run service): Cloud
//     Storage upload events and synchronous requests over HTTP on $PORT.
//   - "momentum package lambda": a container image's binary, zipped for
//     AWS Lambda.
//   - "momentum merge FOLDER/": check, and join, the parts of a sharded job.
//   - otherwise, the command line.
//
// Run momentum --help for the flags and examples.
package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run picks the platform from the environment, once, and returns the
// exit code.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	switch {
	case getenv("AWS_LAMBDA_RUNTIME_API") != "":
		return runLambda(ctx, args, getenv, stdout, stderr)
	case len(args) > 0 && args[0] == "job":
		return runJob(ctx, args[1:], getenv, stdout, cloudLogger(stderr, getenv))
	case len(args) > 0 && args[0] == "package":
		return runPackage(ctx, args[1:], stdout, stderr, isTerminal(stderr))
	case len(args) > 0 && args[0] == "merge":
		return runMerge(ctx, args[1:], stdout, stderr)
	case len(args) > 0 && args[0] == "serve":
		return runServe(ctx, args[1:], getenv, stdout, stderr)
	case getenv("CLOUD_RUN_JOB") != "":
		return runJob(ctx, args, getenv, stdout, cloudLogger(stderr, getenv))
	case getenv("K_SERVICE") != "":
		return runServe(ctx, args, getenv, stdout, stderr)
	}
	return runCLI(ctx, args, getenv, stdin, stdout, stderr)
}
