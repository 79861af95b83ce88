// Package cloudrun runs momentum on Google Cloud Run, as a service.
//
// The service answers:
//
//	POST /             a CloudEvent from Eventarc: google.cloud.storage.object.v1.finalized,
//	                   in binary (ce-* headers) or structured (application/cloudevents+json) mode
//	POST /v1/momentum  a CSV body (or JSON: {"mass":…,"velocity":…} or an array of them),
//	                   answered with the result
//	GET  /healthz      ok
//
// An event's object, gs://bucket/name at the event's generation, is
// processed into the route's output prefix, create-only, with the same
// loop guard, idempotency and failure semantics as the Lambda front end:
// done, duplicate, loop guard and objects outside the input prefix are
// 200; a permanent failure (invalid data, the object gone) is 200 after
// one ERROR log and a JSON report beside where the output would be;
// a failure worth retrying (Cloud Storage 5xx, a timeout, shutdown) is 503,
// which Eventarc redelivers; a malformed event is 400. Nothing permanent
// is ever a 5xx, which Eventarc would redeliver for a day.
//
// Memory is bounded: the kernel streams; each event job holds the kernel's
// chunks and one 8 MiB upload chunk, and at most MaxJobs run at once (more
// get 429 with Retry-After, which Eventarc retries with backoff); a
// synchronous request holds its input and output in memory, at most
// MaxBody each, and at most MaxSync run at once (more get 503).
package cloudrun

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"runtime"
	"strconv"
	"time"

	"github.com/momentum-run/momentum/compute"
)

// The CloudEvent type of a new or overwritten Cloud Storage object.
const finalized = "google.cloud.storage.object.v1.finalized"

// Limits.
const (
	DefaultMaxBody = 32 << 20 // bytes: Cloud Run's own request limit
	maxEventBody   = 1 << 20  // bytes of a CloudEvent
)

// Service is the Cloud Run service.
type Service struct {
	// Route maps input objects to outputs. Its buckets are Cloud Storage
	// buckets.
	Route compute.Route
	// Bucket returns the store of a bucket.
	Bucket func(ctx context.Context, name string) (compute.Store, error)
	// Options are the kernel's; Rejects is set for each event job.
	Options compute.Options
	// Logger receives the request logs; see NewLogger.
	Logger *slog.Logger
	// Project is the Google Cloud project, for trace ids in logs.
	Project string

	MaxBody int64 // synchronous request body limit; 0 means DefaultMaxBody
	MaxJobs int   // events processed at once; 0 means 4 per CPU
	MaxSync int   // synchronous requests at once; 0 means 2 per CPU
}

// Handler returns the service's HTTP handler.
func (s *Service) Handler() http.Handler {
	jobs := make(chan struct{}, positive(s.MaxJobs, 4*runtime.GOMAXPROCS(0)))
	syncs := make(chan struct{}, positive(s.MaxSync, 2*runtime.GOMAXPROCS(0)))
	mux := http.NewServeMux()
	mux.HandleFunc("POST /{$}", func(w http.ResponseWriter, r *http.Request) { s.event(w, r, jobs) })
	mux.HandleFunc("POST /v1/momentum", func(w http.ResponseWriter, r *http.Request) { s.sync(w, r, syncs) })
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	return s.recoverer(mux)
}

func positive(n, otherwise int) int {
	if n > 0 {
		return n
	}
	return otherwise
}

// recoverer turns a panic into a 500 and a log line, the last resort.
func (s *Service) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				buf := make([]byte, 8<<10)
				buf = buf[:runtime.Stack(buf, false)]
				s.logger().Error("panic", "panic", fmt.Sprint(v), "stack", string(buf), "path", r.URL.Path)
				http.Error(w, "internal error", http.StatusInternalServerError)
			}
		}()
		next.ServeHTTP(w, r)
	})
}

func (s *Service) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

// cloudEvent is the part of a CloudEvent the service reads.
type cloudEvent struct {
	SpecVersion string          `json:"specversion"`
	Type        string          `json:"type"`
	Source      string          `json:"source"`
	ID          string          `json:"id"`
	Subject     string          `json:"subject"`
	Data        json.RawMessage `json:"data"`
}

// objectData is the part of a StorageObjectData the service reads.
// Cloud Storage sends generation and size as strings; numbers are taken
// too.
type objectData struct {
	Bucket     string     `json:"bucket"`
	Name       string     `json:"name"`
	Generation flexNumber `json:"generation"`
	Size       flexNumber `json:"size"`
}

// flexNumber is an integer sent as a JSON number or string.
type flexNumber string

func (f *flexNumber) UnmarshalJSON(b []byte) error {
	s := string(b)
	if s == "null" {
		return nil
	}
	if uq, err := strconv.Unquote(s); err == nil {
		s = uq
	}
	if s == "" {
		return nil
	}
	if _, err := strconv.ParseUint(s, 10, 64); err != nil {
		return fmt.Errorf("%s: want a non-negative integer", b)
	}
	*f = flexNumber(s)
	return nil
}

// eventResult is the JSON body of the answer to an event.
type eventResult struct {
	Outcome    string `json:"outcome"`
	Bucket     string `json:"bucket,omitempty"`
	Object     string `json:"object,omitempty"`
	Generation string `json:"generation,omitempty"`
	Output     string `json:"output,omitempty"`
	Rows       int64  `json:"rows"`
	Rejected   int64  `json:"rejected"`
	BytesIn    int64  `json:"bytesIn"`
	BytesOut   int64  `json:"bytesOut"`
	DurationMS int64  `json:"durationMs"`
	Error      string `json:"error,omitempty"`
	Line       int64  `json:"line,omitempty"`
	Column     string `json:"column,omitempty"`
}

// readEvent reads a CloudEvent in either content mode.
func readEvent(r *http.Request) (cloudEvent, int, error) {
	body, err := readBody(r, maxEventBody)
	if err != nil {
		return cloudEvent{}, statusOf(err), err
	}
	var ev cloudEvent
	media, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if media == "application/cloudevents+json" {
		if err := json.Unmarshal(body, &ev); err != nil {
			return ev, http.StatusBadRequest, fmt.Errorf("structured CloudEvent: %v", err)
		}
	} else {
		ev = cloudEvent{
			SpecVersion: r.Header.Get("Ce-Specversion"),
			Type:        r.Header.Get("Ce-Type"),
			Source:      r.Header.Get("Ce-Source"),
			ID:          r.Header.Get("Ce-Id"),
			Subject:     r.Header.Get("Ce-Subject"),
			Data:        body,
		}
	}
	switch {
	case ev.SpecVersion != "1.0":
		return ev, http.StatusBadRequest, fmt.Errorf("not a CloudEvent 1.0: specversion %q", ev.SpecVersion)
	case ev.Type == "" || ev.ID == "" || ev.Source == "":
		return ev, http.StatusBadRequest, errors.New("a CloudEvent needs a type, an id and a source")
	}
	return ev, 0, nil
}

func (s *Service) event(w http.ResponseWriter, r *http.Request, slots chan struct{}) {
	start := time.Now()
	log := s.requestLogger(r)
	ev, status, err := readEvent(r)
	if err != nil {
		log.Warn("malformed event", "error", err.Error())
		http.Error(w, err.Error(), status)
		return
	}
	log = log.With("eventId", ev.ID, "eventType", ev.Type)
	if ev.Type != finalized {
		log.Info("not an object creation: ignored")
		writeJSON(w, http.StatusOK, eventResult{Outcome: "ignored"})
		return
	}
	var obj objectData
	if err := json.Unmarshal(ev.Data, &obj); err != nil || obj.Bucket == "" || obj.Name == "" {
		if err == nil {
			err = errors.New("no bucket or name")
		}
		log.Warn("malformed event data", "error", err.Error())
		http.Error(w, "event data: "+err.Error(), http.StatusBadRequest)
		return
	}
	res := eventResult{Bucket: obj.Bucket, Object: obj.Name, Generation: string(obj.Generation)}
	log = log.With("bucket", obj.Bucket, "object", obj.Name, "generation", res.Generation)
	targets, err := s.Route.Targets(obj.Bucket, obj.Name)
	switch {
	case errors.Is(err, compute.ErrIsOutput):
		res.Outcome = string(compute.AlreadyProcessed)
		log.Info("an output of this service: nothing to do")
		writeJSON(w, http.StatusOK, res)
		return
	case err != nil:
		res.Outcome = "ignored"
		log.Warn("not under the service's input location: ignored", "input", "gs://"+s.Route.From.String())
		writeJSON(w, http.StatusOK, res)
		return
	}
	res.Output = "gs://" + s.Route.To.Bucket + "/" + targets.Output

	select {
	case slots <- struct{}{}:
		defer func() { <-slots }()
	default:
		log.Warn("busy: event refused for now", "maxJobs", cap(slots))
		w.Header().Set("Retry-After", "10")
		http.Error(w, "busy: too many events in progress", http.StatusTooManyRequests)
		return
	}

	retry := func(err error) {
		res.Outcome, res.Error = "retry", err.Error()
		res.DurationMS = time.Since(start).Milliseconds()
		log.Warn("failed, to be redelivered", "error", res.Error, "durationMs", res.DurationMS)
		writeJSON(w, http.StatusServiceUnavailable, res)
	}
	in, err := s.Bucket(r.Context(), obj.Bucket)
	if err != nil {
		retry(err)
		return
	}
	out, err := s.Bucket(r.Context(), s.Route.To.Bucket)
	if err != nil {
		retry(err)
		return
	}
	job := compute.Job{
		Input: in, InputKey: obj.Name, Read: compute.ReadOptions{Version: res.Generation},
		Output: out, OutputKey: targets.Output, RejectsKey: targets.Rejects, ReportKey: targets.Report,
		Options: s.Options,
	}
	jr, err := job.Run(r.Context())
	res.Rows, res.Rejected = jr.Stats.RowsOut, jr.Stats.RowsRejected
	res.BytesIn, res.BytesOut = jr.Stats.BytesIn, jr.Stats.BytesOut
	if err != nil {
		retry(err)
		return
	}
	res.Outcome = string(jr.Outcome)
	res.DurationMS = time.Since(start).Milliseconds()
	attrs := []any{"output", res.Output, "outcome", res.Outcome, "rows", res.Rows, "rejected", res.Rejected,
		"bytesIn", res.BytesIn, "bytesOut", res.BytesOut, "durationMs", res.DurationMS}
	switch jr.Outcome {
	case compute.Failed:
		res.Error = jr.Err.Error()
		var perr *compute.ParseError
		if errors.As(jr.Err, &perr) {
			res.Line, res.Column = perr.Line, perr.Column
			attrs = append(attrs, "line", perr.Line, "column", perr.Column, "reason", perr.Reason())
		}
		attrs = append(attrs, "report", "gs://"+s.Route.To.Bucket+"/"+targets.Report, "error", res.Error)
		log.Error("the object cannot be processed", attrs...)
	case compute.AlreadyProcessed:
		log.Info("the object has a momentum column already: nothing written", attrs...)
	default:
		if res.Rejected > 0 {
			attrs = append(attrs, "rejects", "gs://"+s.Route.To.Bucket+"/"+targets.Rejects)
		}
		log.Info("processed", attrs...)
	}
	writeJSON(w, http.StatusOK, res)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}
