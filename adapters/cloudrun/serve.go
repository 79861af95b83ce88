package cloudrun

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Serve serves h on l until ctx is done (SIGTERM, on Cloud Run), then
// shuts down: it stops accepting, lets requests in flight finish for up
// to grace, then cancels their contexts, so that unfinished jobs abort
// their uploads and commit nothing, and returns once they have. Cloud Run
// kills the container 10 s after SIGTERM; a grace of 8 s leaves time for
// the rest.
func Serve(ctx context.Context, l net.Listener, h http.Handler, logger *slog.Logger, grace time.Duration) error {
	base, cancelRequests := context.WithCancel(context.Background())
	defer cancelRequests()
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
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
		waitCtx, cancel := context.WithTimeout(context.Background(), time.Second)
		err = srv.Shutdown(waitCtx)
		cancel()
		if err != nil {
			srv.Close()
		}
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
