package cloudrun

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
)

// Keys of the log fields Cloud Logging reads from a JSON line.
const (
	traceKey   = "logging.googleapis.com/trace"
	spanKey    = "logging.googleapis.com/spanId"
	sampledKey = "logging.googleapis.com/trace_sampled"
)

// NewLogger returns a logger of JSON lines in the shape Cloud Logging
// reads from a container's output: "severity" (DEBUG, INFO, WARNING,
// ERROR), "message" and "time", then the record's own fields.
//
// Request logs carry the request's trace, when it has one, under
// "logging.googleapis.com/trace" and "logging.googleapis.com/spanId", so
// that Cloud Logging groups a request's lines under the request. The
// trace is "projects/PROJECT/traces/TRACE", which needs project; without
// one, the bare trace id goes in a "trace" field, which Cloud Logging
// keeps but does not link.
func NewLogger(w io.Writer, project string, level slog.Leveler) *slog.Logger {
	h := slog.NewJSONHandler(w, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) > 0 {
				return a
			}
			switch a.Key {
			case slog.LevelKey:
				if l, ok := a.Value.Any().(slog.Level); ok {
					return slog.String("severity", severity(l))
				}
				a.Key = "severity"
			case slog.MessageKey:
				a.Key = "message"
			case traceKey:
				t := a.Value.String()
				switch {
				case strings.HasPrefix(t, "projects/"):
				case project != "":
					return slog.String(traceKey, "projects/"+project+"/traces/"+t)
				default:
					// Cloud Logging reads the field only in its full form.
					return slog.String("trace", t)
				}
			}
			return a
		},
	})
	return slog.New(h)
}

// severity is Cloud Logging's name for a level.
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

// The trace headers' patterns, compiled at the first request rather than at
// every start of the binary, which is often not a service.
var (
	// X-Cloud-Trace-Context: TRACE_ID/SPAN_ID;o=OPTIONS, the span id in
	// decimal.
	cloudTrace = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`^([0-9a-fA-F]{32})(?:/([0-9]+))?(?:;o=([01]))?`)
	})
	// W3C traceparent: VERSION-TRACE_ID-SPAN_ID-FLAGS, in lower-case hex.
	traceparent = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})`)
	})
)

// requestLogger is the service's logger with the request's trace, from
// the W3C traceparent header or else X-Cloud-Trace-Context; Cloud Run
// sets both. The span id is written as 16 hex digits, as Cloud Logging
// wants it.
func (s *Service) requestLogger(r *http.Request) *slog.Logger {
	log := s.logger()
	var trace, span string
	sampled := false
	if m := traceparent().FindStringSubmatch(r.Header.Get("traceparent")); m != nil {
		trace, span = m[1], m[2]
		flags, _ := strconv.ParseUint(m[3], 16, 8)
		sampled = flags&1 == 1
	} else if m := cloudTrace().FindStringSubmatch(r.Header.Get("X-Cloud-Trace-Context")); m != nil {
		trace = strings.ToLower(m[1])
		if n, err := strconv.ParseUint(m[2], 10, 64); err == nil && n != 0 {
			span = fmt.Sprintf("%016x", n)
		}
		sampled = m[3] == "1"
	}
	if trace == "" || strings.Trim(trace, "0") == "" {
		return log
	}
	attrs := []any{traceKey, trace}
	if span != "" && strings.Trim(span, "0") != "" {
		attrs = append(attrs, spanKey, span)
	}
	if sampled {
		attrs = append(attrs, sampledKey, true)
	}
	return log.With(attrs...)
}
