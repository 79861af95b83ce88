package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"cloud.google.com/go/compute/metadata"

	"github.com/momentum-run/momentum/adapters/cloudrun"
	"github.com/momentum-run/momentum/adapters/gcs"
	"github.com/momentum-run/momentum/compute"
)

// serveConnections is the service's default --connections. Its input
// and output are both in the cloud, so each event holds ranges of 4 MiB
// and parts of 5 MiB (sharedRangeSize, sharedPartSize), 77 MiB at most;
// it runs up to four events per CPU at once, each with buffers of its own.
const serveConnections = compute.DefaultConnections

// serveAbout begins the help of momentum serve.
const serveAbout = `Runs the Cloud Run service (chosen when K_SERVICE is set), an HTTP server:
  POST /             a google.cloud.storage.object.v1.finalized CloudEvent from
                     Eventarc: the object, if under --input, is processed and
                     written create-only under --output at the same relative
                     key (gs://B/incoming/run.csv -> gs://B/momentum/run.csv)
  POST /v1/momentum  a CSV or JSON body, answered with the result
  GET  /healthz      200 ok
A permanent failure answers 200 and leaves a JSON report beside the output;
one worth retrying answers 503, so Eventarc redelivers the event.

Logs are JSON lines on stderr, in the shape Cloud Logging reads. Exit
status: 0 stopped by SIGTERM or interrupt after the requests in flight
finished or their grace ran out, 2 bad configuration, 1 cannot listen or
the server failed.

`

// serveEnvironment ends the help of momentum serve.
const serveEnvironment = `
Environment:
  PORT                     the port to listen on, every interface (default 8080)
  MOMENTUM_LISTEN          HOST:PORT to listen on instead, such as 127.0.0.1:8080 to
                           try the service out on loopback only; unset on Cloud Run
  MOMENTUM_SHUTDOWN_GRACE  after SIGTERM, how long requests may finish before they
                           are cancelled; the exit follows within a second (default 6s)
`

// runServe runs the Cloud Run service until ctx is done.
func runServe(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	log := cloudLogger(stderr, getenv)
	c, err := parseEventConfig("serve", "gs", serveConnections, serveAbout, serveEnvironment, args, getenv, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		log.Error("bad configuration: " + err.Error())
		return exitUsage
	}
	// MOMENTUM_LISTEN, HOST:PORT, is for trying the service out on
	// loopback; Cloud Run wants every interface, on $PORT.
	addr := getenv("MOMENTUM_LISTEN")
	if addr == "" {
		port := getenv("PORT")
		if port == "" {
			port = "8080"
		}
		addr = ":" + port
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		log.Error("cannot listen", "address", addr, "error", err.Error())
		return exitFailure
	}
	// How long requests in flight may run after SIGTERM, before they are
	// cancelled; the service exits at most a second later. Cloud Run
	// kills the container 10 s after SIGTERM.
	grace := cloudrun.DefaultGrace
	if v := getenv("MOMENTUM_SHUTDOWN_GRACE"); v != "" {
		if grace, err = time.ParseDuration(v); err != nil || grace < 0 {
			log.Error(fmt.Sprintf("bad configuration: MOMENTUM_SHUTDOWN_GRACE=%q: want a duration such as 6s", v))
			return exitUsage
		}
	}
	svc := &cloudrun.Service{
		Route: c.route,
		Bucket: cachedBuckets(func(ctx context.Context, name string) (compute.Store, error) {
			useFallbackRootsIfNone()
			return gcs.New(ctx, name, gcs.WithUploadConcurrency(c.readAhead.Connections), gcs.WithPartSize(c.partSize))
		}),
		Options:   c.opts,
		ReadAhead: c.readAhead,
		Logger:    log,
	}
	log.Info("serving", "address", l.Addr().String(), "input", "gs://"+c.route.From.String(), "output", "gs://"+c.route.To.String(), "version", versionString())
	if err := cloudrun.Serve(ctx, l, svc.Handler(), log, grace); err != nil {
		log.Error("server failed", "error", err.Error())
		return exitFailure
	}
	log.Info("stopped")
	return exitOK
}

// cloudLogger logs JSON lines in the shape Google Cloud Logging reads,
// with traces named in the project when it is known.
func cloudLogger(w io.Writer, getenv func(string) string) *slog.Logger {
	level := slog.LevelInfo
	if v := getenv("MOMENTUM_LOG_LEVEL"); v != "" {
		if err := level.UnmarshalText([]byte(v)); err != nil {
			fmt.Fprintf(w, "momentum: MOMENTUM_LOG_LEVEL=%q: want debug, info, warn or error\n", v)
		}
	}
	return cloudrun.NewLogger(w, projectID(getenv), level)
}

// projectID is the Google Cloud project: from the environment, or on
// Cloud Run from the metadata server, which answers in a few
// milliseconds there; elsewhere nothing is asked.
func projectID(getenv func(string) string) string {
	for _, name := range []string{"GOOGLE_CLOUD_PROJECT", "GCP_PROJECT", "CLOUDSDK_CORE_PROJECT"} {
		if p := getenv(name); p != "" {
			return p
		}
	}
	if getenv("K_SERVICE") == "" && getenv("CLOUD_RUN_JOB") == "" {
		return ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	p, err := metadata.ProjectIDWithContext(ctx)
	if err != nil {
		return ""
	}
	return p
}
