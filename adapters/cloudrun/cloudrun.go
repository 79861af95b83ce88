// Package cloudrun runs momentum on Google Cloud Run, as a service.
//
// The service answers:
//
//	POST /             a CloudEvent from Eventarc, google.cloud.storage.object.v1.finalized,
//	                   in binary content mode (ce-* headers, the StorageObjectData as the
//	                   JSON body) or structured mode (application/cloudevents+json, the
//	                   event with its data inside); any other event type is ignored
//	POST /v1/momentum  a CSV body, answered with the result as text/csv; or a JSON body
//	                   ({"mass":…,"velocity":…} or an array of them), answered in JSON
//	GET  /healthz      200 "ok"
//
// # Events
//
// An event names an object, gs://bucket/name at a generation. That
// generation is read, processed, and written create-only under the
// route's output prefix, as the Lambda front end does it:
//
//	gs://data/incoming/2026/run.csv  →  gs://data/momentum/2026/run.csv
//
// The answer is what Eventarc needs to decide on a redelivery:
//   - 200 with a JSON summary (outcome, rows, rejected, bytes, output) when
//     the output was written (outcome "done"), or was already there from an
//     earlier delivery ("duplicate"). Concurrent deliveries of one event
//     leave one output: the write is create-only.
//   - 200, logged, nothing written, for an object under the output prefix
//     or one with a momentum column already (the loop guard,
//     "already-processed"), an object outside the input prefix or a folder
//     marker ("ignored"), and events of another type ("ignored").
//   - 200 after one ERROR log (bucket, object, generation, line, column,
//     reason) for a permanent failure, "failed": invalid data in fail mode,
//     the object or its generation gone. A JSON report is left beside
//     where the output would have gone (run.error.json).
//   - 503 for a failure worth retrying, "retry": a Cloud Storage 5xx or
//     timeout, a permission not granted yet, the service shutting down.
//     Nothing was committed, and Eventarc redelivers with backoff.
//   - 429 with Retry-After when MaxJobs events are in progress already;
//     Eventarc retries it.
//   - 400 for a malformed event (not JSON, no bucket or name, a
//     specversion other than 1.0, no type, id or source); 413 for one
//     over 1 MiB. Redelivering these cannot help: nothing permanent is
//     ever a 5xx, which Eventarc would redeliver for a day.
//
// # Synchronous requests
//
// POST /v1/momentum runs the kernel on the request body with the
// service's options, which these query parameters override, with the
// values the CLI's flags take:
//
//	decimals   -1 (the shortest exact form) or 0..100
//	delimiter  one byte, or "tab"
//	header     auto, yes or no
//	mass, velocity, momentum   the columns' names (distinct, not empty)
//	on_error   fail; skip is refused (see below)
//
// An unknown parameter, one given twice or a bad value is a 400, and so is
// a query that cannot be read whole: a bad %-escape, or a raw ';', which
// some clients take to separate parameters and which Go's url.ParseQuery
// would drop with its pair. A ';' inside a value is written %3B; the one
// raw ';' taken is "delimiter=;", which can mean nothing but the
// semicolon. The 400 names the parameter.
//
// The endpoint is always strict (fail mode), whatever the service's
// options: skipped rows would need a second body to be reported in, and a
// caller that wants them skipped can drop the file in the bucket instead;
// on_error=skip is a 400 that says so. The whole answer is computed before
// it starts, so invalid data is a 422 with a JSON body {"error", "line",
// "column", "reason"}, never a 200 with half a result. A CSV answer is
// byte for byte what the CLI writes for the same bytes and options.
//
// A JSON body (Content-Type application/json) is an object with the
// numbers mass and velocity, or an array of such objects; the field names
// are those of the mass, velocity and momentum columns, matched exactly
// (case and all, unlike a CSV header). Their numbers go through
// the kernel as the CSV rows "mass,velocity" in the numbers' own text, so
// that the momentum is the text the CSV path gives, and the answer is the
// same object or array, each object as it came (compacted, its fields in
// their order), with "momentum" appended as a JSON number:
//
//	{"mass":1.23,"velocity":4.56}  →  {"mass":1.23,"velocity":4.56,"momentum":5.6088}
//
// Invalid data is a 422 with {"error", "index" (0-based, in the array; 0
// for a lone object), "field", "reason"}: an element that is not an
// object, a number missing, given twice or not a JSON number, an object
// that has a momentum already, or a row the kernel refuses. A body that
// is not JSON, or neither an object nor an array, is a 400.
//
// A body over MaxBody is a 413, refused before it is read when its
// Content-Length says so; so is an answer that would exceed 2×MaxBody (the
// momentum column makes an answer larger than its request: up to a
// hundred times with decimals=100). An answer over 32 MiB goes without a
// Content-Length, chunked, as Cloud Run requires of large HTTP/1
// answers.
//
// A request's body is read whole before the request takes one of the
// MaxSync slots, so that slow clients hold none. The body must arrive
// within BodyTimeout (10 s by default) plus a second for each 256 KiB
// received, 138 s for 32 MiB; a slower one is answered 408 and its
// connection closed. Event bodies have the same bound. More than MaxSync
// requests processed at once get 503 with Retry-After, and so does a
// request whose body would take the bodies in memory past MaxSync×MaxBody
// bytes (bodies take their buffers as they arrive, not as their
// Content-Length announces).
//
// # Memory
//
// The kernel streams: an event job holds the kernel's chunks (512 KiB
// each, a few per worker; more only for a single record larger than
// that, up to Options.MaxRecordBytes), one 8 MiB upload chunk per
// object written (the output, and the rejects in skip mode) and, for an
// input larger than one range, the ReadAhead's buffers (Connections ×
// RangeSize), whatever the object's size; at most MaxJobs run at once.
// Synchronous bodies, being read or processed, hold at most
// MaxSync×MaxBody together. A synchronous request being processed also
// holds its answer (at most 2×MaxBody); a JSON one also the rows it gives
// the kernel, less than its body, and the momentum texts, less than its
// answer. At most MaxSync are processed at once. Size the container for about
//
//	MaxJobs×(16 MiB + chunks + read buffers) + MaxSync×4×MaxBody
//
// which, with the defaults on one CPU (and the 4 ranges of 8 MiB that
// momentum serve reads with), is 4×(16 MiB + 2 MiB + 32 MiB) + 2×128 MiB,
// about 460 MiB; lower MaxBody, MaxSync or the read-ahead for a smaller
// container.
//
// # Logs
//
// NewLogger writes the JSON lines Cloud Logging reads. Each request's
// lines carry its trace; event lines carry eventId, bucket, object,
// generation, and once settled outcome, rows, rejected, bytesIn, bytesOut
// and durationMs.
package cloudrun

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
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
	// DefaultMaxBody is the default limit of a synchronous request's body,
	// in bytes: Cloud Run's own limit on an HTTP/1 request.
	DefaultMaxBody = 32 << 20
	// maxEventBody is the limit of a CloudEvent's body, in bytes. A
	// StorageObjectData is about 1 KiB; custom metadata can add some.
	maxEventBody = 1 << 20
)

// Service is the Cloud Run service. Its fields are read by Handler, and
// must not change afterwards.
type Service struct {
	// Route maps input objects to outputs. Its buckets are Cloud Storage
	// buckets.
	Route compute.Route
	// Bucket returns the store of a bucket. It is called for each event,
	// so it should hand out stores on a shared client.
	Bucket func(ctx context.Context, name string) (compute.Store, error)
	// Options are the kernel's. Event jobs set Rejects for each object;
	// synchronous requests always run in OnErrorFail mode.
	Options compute.Options
	// ReadAhead is how event jobs read their input objects; its zero
	// value reads each in one stream.
	ReadAhead compute.ReadAhead
	// Logger receives the request logs; see NewLogger. Nil means
	// slog.Default().
	Logger *slog.Logger

	MaxBody int64 // synchronous request body limit, in bytes; 0 means DefaultMaxBody
	MaxJobs int   // events processed at once, more get 429; 0 means 4×GOMAXPROCS
	MaxSync int   // synchronous requests processed at once (once their bodies are read), more get 503; 0 means 2×GOMAXPROCS
	// BodyTimeout bounds how long a request body may take to arrive:
	// BodyTimeout from the start of the handler, plus a second for each
	// 256 KiB received. A slower body is answered 408. 0 means
	// DefaultBodyTimeout.
	BodyTimeout time.Duration
}

// Handler returns the service's HTTP handler. Each call makes a handler
// with limits of its own.
func (s *Service) Handler() http.Handler {
	jobs := make(chan struct{}, positive(s.MaxJobs, 4*runtime.GOMAXPROCS(0)))
	syncs := make(chan struct{}, positive(s.MaxSync, 2*runtime.GOMAXPROCS(0)))
	// Synchronous bodies, being read or processed, hold at most what
	// MaxSync bodies at the limit would.
	bodies := newBudget(s.maxBody() * int64(cap(syncs)))
	if s.maxBody() > math.MaxInt64/int64(cap(syncs)) {
		bodies = nil
	}
	mux := http.NewServeMux()
	// Method patterns make the mux answer other methods 405 with Allow.
	mux.HandleFunc("POST /{$}", func(w http.ResponseWriter, r *http.Request) { s.event(w, r, jobs) })
	mux.HandleFunc("POST /v1/momentum", func(w http.ResponseWriter, r *http.Request) { s.sync(w, r, syncs, bodies) })
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

// recoverer turns a panic into a 500 and an ERROR log line, the last
// resort: Eventarc redelivers a 500, which is right for a bug since
// fixed, and wrong for a bug that stays, hence the log.
func (s *Service) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				buf := make([]byte, 8<<10)
				buf = buf[:runtime.Stack(buf, false)]
				s.requestLogger(r).Error("panic", "panic", fmt.Sprint(v), "stack", string(buf), "method", r.Method, "path", r.URL.Path)
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
	DataBase64  string          `json:"data_base64"`
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

// flexNumber is a non-negative integer sent as a JSON number or string,
// in decimal; "" when absent.
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
	Outcome    string `json:"outcome"` // done, duplicate, already-processed, failed, ignored, retry, busy, malformed
	EventID    string `json:"eventId,omitempty"`
	Bucket     string `json:"bucket,omitempty"`
	Object     string `json:"object,omitempty"`
	Generation string `json:"generation,omitempty"`
	Output     string `json:"output,omitempty"` // gs:// URL of the result
	Rows       int64  `json:"rows"`
	Rejected   int64  `json:"rejected"`
	BytesIn    int64  `json:"bytesIn"`
	BytesOut   int64  `json:"bytesOut"`
	DurationMS int64  `json:"durationMs"`
	Error      string `json:"error,omitempty"`
	Line       int64  `json:"line,omitempty"`
	Column     string `json:"column,omitempty"`
}

// Outcomes of events that ran no job, or did not finish one.
const (
	outcomeIgnored   = "ignored"   // another event type, or not an input of the route
	outcomeRetry     = "retry"     // failed for now: 503
	outcomeBusy      = "busy"      // MaxJobs reached: 429
	outcomeMalformed = "malformed" // not a CloudEvent of the expected shape: 400 or 413
)

// readEvent reads a CloudEvent in either content mode. Its error comes
// with the status to answer.
func readEvent(w http.ResponseWriter, r *http.Request, timeout time.Duration) (cloudEvent, int, error) {
	body, _, err := readBody(w, r, maxEventBody, timeout, nil)
	if err != nil {
		return cloudEvent{}, statusOf(err), err
	}
	var ev cloudEvent
	media, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if media == "application/cloudevents+json" {
		if err := json.Unmarshal(body, &ev); err != nil {
			return ev, http.StatusBadRequest, fmt.Errorf("structured CloudEvent: %v", err)
		}
		if len(ev.Data) == 0 && ev.DataBase64 != "" {
			if ev.Data, err = base64.StdEncoding.DecodeString(ev.DataBase64); err != nil {
				return ev, http.StatusBadRequest, fmt.Errorf("structured CloudEvent: data_base64: %v", err)
			}
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

// event answers POST /: one CloudEvent.
func (s *Service) event(w http.ResponseWriter, r *http.Request, slots chan struct{}) {
	start := time.Now()
	log := s.requestLogger(r)
	ev, status, err := readEvent(w, r, s.bodyTimeout())
	switch {
	case status == http.StatusRequestTimeout || status == http.StatusServiceUnavailable:
		// The body did not arrive (too slow, or the service is shutting
		// down): Eventarc redelivers.
		log.Warn("event not received", "error", err.Error(), "status", status)
		writeJSON(w, status, eventResult{Outcome: outcomeRetry, Error: err.Error()})
		return
	case err != nil:
		log.Warn("malformed event", "error", err.Error(), "status", status)
		writeJSON(w, status, eventResult{Outcome: outcomeMalformed, Error: err.Error()})
		return
	}
	res := eventResult{EventID: ev.ID}
	log = log.With("eventId", ev.ID, "eventType", ev.Type)
	if ev.Type != finalized {
		res.Outcome = outcomeIgnored
		log.Info("not an object finalization: ignored")
		writeJSON(w, http.StatusOK, res)
		return
	}
	var obj objectData
	if err := json.Unmarshal(ev.Data, &obj); err != nil || obj.Bucket == "" || obj.Name == "" {
		if err == nil {
			err = errors.New("no bucket or name")
		}
		res.Outcome, res.Error = outcomeMalformed, "event data: "+err.Error()
		log.Warn("malformed event data", "error", err.Error())
		writeJSON(w, http.StatusBadRequest, res)
		return
	}
	res.Bucket, res.Object, res.Generation = obj.Bucket, obj.Name, string(obj.Generation)
	log = log.With("bucket", obj.Bucket, "object", obj.Name, "generation", res.Generation)
	targets, err := s.Route.Targets(obj.Bucket, obj.Name)
	targets = targets.CompressedAs(s.Options.Compress)
	switch {
	case errors.Is(err, compute.ErrIsOutput):
		res.Outcome = string(compute.AlreadyProcessed)
		log.Info("an output of this service: nothing to do", "outcome", res.Outcome)
		writeJSON(w, http.StatusOK, res)
		return
	case err != nil:
		res.Outcome = outcomeIgnored
		log.Warn("not under the service's input location: ignored", "outcome", res.Outcome, "input", "gs://"+s.Route.From.String())
		writeJSON(w, http.StatusOK, res)
		return
	}
	res.Output = "gs://" + s.Route.To.Bucket + "/" + targets.Output

	select {
	case slots <- struct{}{}:
		defer func() { <-slots }()
	default:
		res.Outcome = outcomeBusy
		log.Warn("busy: event refused for now", "outcome", res.Outcome, "maxJobs", cap(slots))
		w.Header().Set("Retry-After", "10")
		writeJSON(w, http.StatusTooManyRequests, res)
		return
	}

	retry := func(err error) {
		res.Outcome, res.Error = outcomeRetry, err.Error()
		res.DurationMS = time.Since(start).Milliseconds()
		log.Warn("failed, to be redelivered", "outcome", res.Outcome, "error", res.Error, "durationMs", res.DurationMS)
		writeJSON(w, http.StatusServiceUnavailable, res)
	}
	ctx := r.Context()
	in, err := s.Bucket(ctx, obj.Bucket)
	if err != nil {
		retry(err)
		return
	}
	out, err := s.Bucket(ctx, s.Route.To.Bucket)
	if err != nil {
		retry(err)
		return
	}
	job := compute.Job{
		Input: in, InputKey: obj.Name, Read: compute.ReadOptions{Version: res.Generation}, ReadAhead: s.ReadAhead,
		Output: out, OutputKey: targets.Output, RejectsKey: targets.Rejects, ReportKey: targets.Report,
		Options: s.Options,
	}
	jr, err := job.Run(ctx)
	res.Rows, res.Rejected = jr.Stats.RowsOut, jr.Stats.RowsRejected
	res.BytesIn, res.BytesOut = jr.Stats.BytesIn, jr.Stats.BytesOut
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("stopped (shutdown or client gone), upload aborted: %w", err)
		}
		retry(err)
		return
	}
	res.Outcome = string(jr.Outcome)
	res.DurationMS = time.Since(start).Milliseconds()
	if jr.Outcome == compute.Failed {
		res.Error = jr.Err.Error()
		var perr *compute.ParseError
		if errors.As(jr.Err, &perr) {
			res.Line, res.Column = perr.Line, perr.Column
		}
	}
	dir := "gs://" + s.Route.To.Bucket + "/"
	level, msg, attrs := jr.Describe(dir+targets.Report, dir+targets.Rejects)
	log.Log(ctx, level, msg, append(attrs, "output", res.Output, "durationMs", res.DurationMS)...)
	writeJSON(w, http.StatusOK, res)
}

// writeJSON answers v as JSON, one line.
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
