package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/momentum-run/momentum/adapters/awslambda"
	"github.com/momentum-run/momentum/adapters/s3"
	"github.com/momentum-run/momentum/compute"
)

// eventConfig is what the event-driven modes read from their flags and
// environment: the kernel's options and the route.
type eventConfig struct {
	opts      compute.Options
	readAhead compute.ReadAhead
	partSize  int // bytes in each part of an output
	route     compute.Route
}

// parseEventConfig reads MOMENTUM_INPUT, MOMENTUM_OUTPUT and the kernel's
// options, for locations with the given scheme; connections is the
// mode's default --connections. The help says about before the flags and
// ends with footer.
func parseEventConfig(mode, scheme string, connections int, about, footer string, args []string, getenv func(string) string, stdout io.Writer) (*eventConfig, error) {
	fs := flag.NewFlagSet("momentum "+mode, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	kernel := addKernelFlags(fs)
	input := fs.String("input", "", "where the uploads arrive: "+scheme+"://BUCKET/PREFIX (required)")
	output := fs.String("output", "", "where the results go: "+scheme+"://BUCKET/PREFIX (required)")
	source, err := parseFlags(fs, args, getenv)
	if errors.Is(err, flag.ErrHelp) {
		printUsage(fs, stdout, "Usage: momentum "+mode+" [flags]\n\n"+about+"Flags (each can also be set as MOMENTUM_<FLAG>):\n", footer)
		return nil, err
	}
	if err != nil {
		return nil, err
	}
	c := &eventConfig{}
	if c.opts, err = kernel.options(source); err != nil {
		return nil, err
	}
	if c.readAhead, c.partSize, err = kernel.readAhead(source, connections, true); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, &usageError{fmt.Sprintf("momentum %s takes no arguments: %q", mode, fs.Args())}
	}
	place := func(name, loc string) (compute.Place, error) {
		s, bucket, prefix, ok := splitURL(loc)
		if !ok || s != scheme || bucket == "" {
			return compute.Place{}, &usageError{fmt.Sprintf("%s=%q: want %s://BUCKET/PREFIX", source[name], loc, scheme)}
		}
		return compute.Place{Bucket: bucket, Prefix: prefix}, nil
	}
	if c.route.From, err = place("input", *input); err != nil {
		return nil, err
	}
	if c.route.To, err = place("output", *output); err != nil {
		return nil, err
	}
	if err := c.route.Check(); err != nil {
		return nil, &usageError{fmt.Sprintf("%s=%q and %s=%q: %v", source["input"], *input, source["output"], *output,
			strings.TrimPrefix(err.Error(), "route: "))}
	}
	return c, nil
}

// runLambda serves Lambda invocations until the process is stopped.
func runLambda(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	c, err := parseEventConfig("on AWS Lambda", "s3", lambdaConnections(getenv), "", "", args, getenv, stdout)
	if err != nil {
		// The function cannot start; Lambda reports the exit and this line.
		fmt.Fprintf(stderr, "momentum: %v\n", err)
		return exitUsage
	}
	level := slog.LevelInfo
	level.UnmarshalText([]byte(getenv("AWS_LAMBDA_LOG_LEVEL"))) // Lambda's own setting; a bad one keeps INFO
	h := &awslambda.Handler{
		Route: c.route,
		Bucket: cachedBuckets(func(ctx context.Context, name string) (compute.Store, error) {
			useFallbackRootsIfNone()
			return s3.New(ctx, name, s3.WithUploadConcurrency(c.readAhead.Connections), s3.WithPartSize(c.partSize))
		}),
		Options:   c.opts,
		ReadAhead: c.readAhead,
		Logger:    slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level})),
	}
	// h, not h.Handle: every payload reaches the handler, even one that
	// is not JSON.
	lambda.StartWithOptions(h, lambda.WithContext(ctx))
	return exitFailure // not reached: Start exits when the Runtime API fails
}

// cachedBuckets opens each bucket's store once.
func cachedBuckets(open func(ctx context.Context, name string) (compute.Store, error)) func(context.Context, string) (compute.Store, error) {
	var mu sync.Mutex
	stores := map[string]compute.Store{}
	return func(ctx context.Context, name string) (compute.Store, error) {
		mu.Lock()
		defer mu.Unlock()
		if s, ok := stores[name]; ok {
			return s, nil
		}
		s, err := open(ctx, name)
		if err != nil {
			return nil, err
		}
		stores[name] = s
		return s, nil
	}
}
