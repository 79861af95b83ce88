package cloudrun

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"strings"
)

// NewLogger returns a logger of JSON lines in the shape Cloud Logging
// reads from a container's output: "severity" (DEBUG, INFO, WARNING,
// ERROR), "message" and "time". Request logs add the request's trace (see
// Service.Project).
func NewLogger(w io.Writer, level slog.Leveler) *slog.Logger {
	h := slog.NewJSONHandler(w, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) > 0 {
				return a
			}
			switch a.Key {
			case slog.LevelKey:
				return slog.String("severity", severity(a.Value.Any().(slog.Level)))
			case slog.MessageKey:
				a.Key = "message"
			}
			return a
		},
	})
	return slog.New(h)
}

func severity(l slog.Level) string {
	switch {
	case l >= slog.LevelError:
		return "ERROR"
	case l >= slog.LevelWarn:
		return "WARNING"
	case l >= slog.LevelInfo:
		return "INFO"
	}
	return "DEBUG"
}

var (
	cloudTrace  = regexp.MustCompile(`^([0-9a-fA-F]{32})(?:/([0-9]+))?`)
	traceparent = regexp.MustCompile(`^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$`)
)

// requestLogger is the service's logger with the request's trace, from
// X-Cloud-Trace-Context (TRACE/SPAN;o=1) or W3C traceparent.
func (s *Service) requestLogger(r *http.Request) *slog.Logger {
	log := s.logger()
	var trace, span string
	if m := traceparent.FindStringSubmatch(r.Header.Get("traceparent")); m != nil {
		trace, span = m[1], m[2]
	} else if m := cloudTrace.FindStringSubmatch(r.Header.Get("X-Cloud-Trace-Context")); m != nil {
		trace = strings.ToLower(m[1])
		if n, err := strconv.ParseUint(m[2], 10, 64); err == nil {
			span = fmt.Sprintf("%016x", n) // decimal there, hex in Cloud Logging
		}
	}
	if trace == "" {
		return log
	}
	if s.Project != "" {
		trace = "projects/" + s.Project + "/traces/" + trace
	}
	log = log.With("logging.googleapis.com/trace", trace)
	if span != "" {
		log = log.With("logging.googleapis.com/spanId", span)
	}
	return log
}
