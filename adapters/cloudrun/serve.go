package cloudrun

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// DefaultGrace is the grace period to give Serve on Cloud Run, which
// kills the container 10 s after SIGTERM. The budget: 6 s for requests
// in flight to finish; then those left are cancelled (their uploads
// aborted, their body reads cut) and have up to a second to return;
// then their connections are closed and Serve returns. The process exits
// within 7 s of SIGTERM, 3 s before the kill.
const DefaultGrace = 6 * time.Second

// Timeouts of the server Serve runs. There is no write timeout: an event
// job takes as long as its object does, and Cloud Run's request timeout
// bounds it.
const (
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 2 * time.Minute
	// afterGrace is how long Serve waits, once the grace period is over
	// and the requests' contexts are cancelled, for their handlers to
	// return (an event job aborting its upload, a body read cut short)
	// before it closes their connections.
	afterGrace = time.Second
)

// Serve serves h on l until ctx is done (SIGTERM, on Cloud Run), then
// shuts down: it stops accepting, lets requests in flight finish for up
// to grace, then cancels their contexts, so that unfinished jobs abort
// their uploads and commit nothing (Eventarc redelivers their events)
// and bodies still arriving are cut, waits up to a second for their
// handlers, closes what is left and returns nil: within grace + 1 s. A
// grace of 0 cancels them at once; DefaultGrace suits Cloud Run. Serve
// closes l; taking a listener rather than an address lets the caller
// report a port in use before anything else, and tests listen on port 0.
// It returns an error only when serving fails before ctx is done. logger
// may be nil.
func Serve(ctx context.Context, l net.Listener, h http.Handler, logger *slog.Logger, grace time.Duration) error {
	if logger == nil {
		logger = slog.Default()
	}
	base, cancelRequests := context.WithCancel(context.Background())
	defer cancelRequests()
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		BaseContext:       func(net.Listener) context.Context { return base },
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	logger.Info("shutting down", "grace", grace.String())
	graceCtx, cancel := context.WithTimeout(context.Background(), grace)
	err := srv.Shutdown(graceCtx)
	cancel()
	if err != nil {
		logger.Warn("requests still running after the grace period: cancelling them")
		cancelRequests()
		waitCtx, cancel := context.WithTimeout(context.Background(), afterGrace)
		err = srv.Shutdown(waitCtx)
		cancel()
		if err != nil {
			logger.Warn("requests still running after cancellation: closing their connections")
			srv.Close()
		}
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
