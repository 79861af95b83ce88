// Package awslambda runs momentum on AWS Lambda, fired by S3 uploads.
//
// The function receives S3 event notifications (an events.S3Event: a
// "Records" list, as S3 sends for s3:ObjectCreated:*). For each record it
// reads s3://bucket/key at the version the record names, runs the kernel,
// and writes the result create-only under the route's output prefix:
//
//	s3://data/incoming/2026/run.csv  →  s3://data/momentum/2026/run.csv
//
// Records are settled one by one:
//   - Done, or Duplicate when an earlier delivery already wrote the output:
//     success.
//   - An object under the output prefix, or one that already has a
//     momentum column, writes nothing (the loop guard); an object outside
//     the input prefix, or an event that is not an object creation, is
//     ignored. Both are logged and succeed.
//   - A permanent failure (invalid data in fail mode, the object gone, a
//     key that cannot be decoded) logs one ERROR, leaves a JSON report
//     beside where the output would have gone (run.error.json) and
//     succeeds: retrying cannot help.
//   - A transient failure (S3 5xx, throttling, a timeout, the invocation
//     deadline) fails the invocation after the other records are done, so
//     Lambda retries the event and, after its retries, sends it to the
//     function's failure destination. Records already done are duplicates
//     on the retry; nothing is lost or written twice.
//
// A payload that is not an S3 event notification at all (not JSON, cut
// short, or JSON of another shape) is settled like a permanent failure:
// one ERROR log line with the request id and the payload's first bytes,
// and success with no objects. Handler implements lambda.Handler so that
// every payload reaches it: give it to lambda.Start as it is.
//
// The handler stops a little before the invocation deadline, aborting any
// upload, so a timeout never leaves a partial object.
package awslambda

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"

	"github.com/momentum-run/momentum/compute"
)

// Handler handles the S3 events of one function.
type Handler struct {
	// Route maps input objects to outputs. Its buckets are S3 buckets.
	Route compute.Route
	// Bucket returns the store of an S3 bucket.
	Bucket func(ctx context.Context, name string) (compute.Store, error)
	// Options are the kernel's; Rejects is set for each object.
	Options compute.Options
	// ReadAhead is how input objects are read; its zero value reads
	// each in one stream.
	ReadAhead compute.ReadAhead
	// Logger receives one line per record, in JSON on Lambda.
	Logger *slog.Logger
	// Reserve is the time kept before the invocation deadline to abort
	// uploads and answer; zero means a tenth of the time left, between
	// one and ten seconds.
	Reserve time.Duration
}

// Result is what an invocation returns: one entry per record.
type Result struct {
	Objects []ObjectResult `json:"objects"`
}

// ObjectResult is how one record was settled.
type ObjectResult struct {
	Bucket     string `json:"bucket"`
	Key        string `json:"key"`
	Version    string `json:"version,omitempty"`
	Output     string `json:"output,omitempty"` // s3:// URL of the result
	Outcome    string `json:"outcome"`          // done, duplicate, already-processed, failed, ignored, retry
	Rows       int64  `json:"rows"`
	Rejected   int64  `json:"rejected"`
	BytesIn    int64  `json:"bytesIn"`
	BytesOut   int64  `json:"bytesOut"`
	DurationMS int64  `json:"durationMs"`
	Error      string `json:"error,omitempty"`
	Line       int64  `json:"line,omitempty"`
	Column     string `json:"column,omitempty"`
}

// Outcomes of records that ran no job.
const (
	outcomeIgnored = "ignored" // not an input of the route, or not a creation
	outcomeRetry   = "retry"   // failed for now; the invocation fails
)

// event is the part of an S3 notification the handler reads. Records
// stay raw so that one bad record (a key that does not decode) fails
// alone.
type event struct {
	Records []json.RawMessage `json:"Records"`
	// An s3:TestEvent, sent when a notification is configured, has no
	// records but these.
	Service string `json:"Service"`
	Event   string `json:"Event"`
}

var _ lambda.Handler = (*Handler)(nil)

// Invoke handles one invocation's payload, as it came, and answers the
// Result in JSON. Give h itself to lambda.Start, rather than h.Handle:
// aws-lambda-go decodes the payload for a function before calling it and
// fails the invocation when it cannot, which would have Lambda retry a
// payload that is not JSON, while Invoke hands every payload to Handle.
func (h *Handler) Invoke(ctx context.Context, payload []byte) ([]byte, error) {
	res, err := h.Handle(ctx, payload)
	if err != nil {
		return nil, err
	}
	return json.Marshal(res)
}

// Handle handles one invocation. It returns an error only when a record
// failed in a way worth retrying. A payload that is not an S3 event
// notification (not JSON, cut short, or of another shape) is a permanent
// failure: one ERROR log line with its first bytes, and success with no
// objects.
func (h *Handler) Handle(ctx context.Context, payload json.RawMessage) (Result, error) {
	log := h.logger()
	if lc, ok := lambdacontext.FromContext(ctx); ok {
		log = log.With("requestId", lc.AwsRequestID)
	}
	var ev event
	if err := json.Unmarshal(payload, &ev); err != nil {
		// Not JSON, cut short, or JSON of another shape: whatever is
		// wrong, a retry would bring the same payload.
		log.Error("not an S3 event notification: ignored", "error", err.Error(),
			"payload", payloadStart(payload), "payloadBytes", len(payload))
		return Result{Objects: []ObjectResult{}}, nil
	}
	if len(ev.Records) == 0 {
		log.Info("event with no records", "service", ev.Service, "event", ev.Event)
		return Result{Objects: []ObjectResult{}}, nil
	}

	ctx, cancel := h.beforeDeadline(ctx)
	defer cancel()
	res := Result{Objects: make([]ObjectResult, 0, len(ev.Records))}
	var retry []error
	for i, raw := range ev.Records {
		r, err := h.record(ctx, log.With("record", i), raw)
		res.Objects = append(res.Objects, r)
		if err != nil {
			retry = append(retry, err)
		}
	}
	if len(retry) > 0 {
		return res, fmt.Errorf("%d of %d objects failed and will be retried: %w", len(retry), len(ev.Records), errors.Join(retry...))
	}
	return res, nil
}

// beforeDeadline returns a context that ends Reserve before ctx's
// deadline.
func (h *Handler) beforeDeadline(ctx context.Context) (context.Context, context.CancelFunc) {
	deadline, ok := ctx.Deadline()
	if !ok {
		return context.WithCancel(ctx)
	}
	reserve := h.Reserve
	if reserve == 0 {
		reserve = min(max(time.Until(deadline)/10, time.Second), 10*time.Second)
	}
	return context.WithDeadline(ctx, deadline.Add(-reserve))
}

// record settles one record; its error is worth a retry.
func (h *Handler) record(ctx context.Context, log *slog.Logger, raw json.RawMessage) (ObjectResult, error) {
	start := time.Now()
	var rec events.S3EventRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		// events.S3Object decodes the key while unmarshalling; a key that
		// is not valid URL encoding fails there.
		var bare struct {
			EventName string `json:"eventName"`
			S3        struct {
				Bucket struct{ Name string } `json:"bucket"`
				Object struct{ Key string }  `json:"object"`
			} `json:"s3"`
		}
		json.Unmarshal(raw, &bare)
		if bare.EventName != "" && !strings.HasPrefix(bare.EventName, "ObjectCreated:") {
			// Not a creation: ignored like any other, whatever its key.
			res := ObjectResult{Bucket: bare.S3.Bucket.Name, Key: bare.S3.Object.Key, Outcome: outcomeIgnored}
			log.Info("not an object creation: ignored", "bucket", res.Bucket, "key", res.Key, "eventName", bare.EventName)
			return res, nil
		}
		res := ObjectResult{Bucket: bare.S3.Bucket.Name, Key: bare.S3.Object.Key, Outcome: string(compute.Failed), Error: err.Error()}
		return h.badRecord(ctx, log, res, start, err)
	}
	obj := rec.S3.Object
	res := ObjectResult{Bucket: rec.S3.Bucket.Name, Key: obj.URLDecodedKey, Version: obj.VersionID}
	log = log.With("bucket", res.Bucket, "key", res.Key)
	if res.Version != "" {
		log = log.With("version", res.Version)
	}
	if !strings.HasPrefix(rec.EventName, "ObjectCreated:") {
		res.Outcome = outcomeIgnored
		log.Info("not an object creation: ignored", "eventName", rec.EventName)
		return res, nil
	}
	targets, err := h.Route.Targets(res.Bucket, res.Key)
	targets = targets.CompressedAs(h.Options.Compress)
	switch {
	case errors.Is(err, compute.ErrIsOutput):
		res.Outcome = string(compute.AlreadyProcessed)
		log.Info("an output of this function: nothing to do")
		return res, nil
	case err != nil:
		res.Outcome = outcomeIgnored
		log.Warn("not under the function's input location: ignored", "input", "s3://"+h.Route.From.String())
		return res, nil
	}
	res.Output = "s3://" + h.Route.To.Bucket + "/" + targets.Output

	in, err := h.Bucket(ctx, res.Bucket)
	if err != nil {
		return h.retry(log, res, start, err)
	}
	out, err := h.Bucket(ctx, h.Route.To.Bucket)
	if err != nil {
		return h.retry(log, res, start, err)
	}
	read := compute.ReadOptions{Version: obj.VersionID}
	if read.Version == "" && obj.ETag != "" {
		read.ETag = quoteETag(obj.ETag) // unversioned bucket: at least this content
	}
	job := compute.Job{
		Input: in, InputKey: res.Key, Read: read, ReadAhead: h.ReadAhead,
		Output: out, OutputKey: targets.Output, RejectsKey: targets.Rejects, ReportKey: targets.Report,
		Options: h.Options,
	}
	jr, err := job.Run(ctx)
	res.Rows, res.Rejected = jr.Stats.RowsOut, jr.Stats.RowsRejected
	res.BytesIn, res.BytesOut = jr.Stats.BytesIn, jr.Stats.BytesOut
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("stopped before the invocation deadline, upload aborted: %w", err)
		}
		return h.retry(log, res, start, err)
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
	dir := "s3://" + h.Route.To.Bucket + "/"
	level, msg, attrs := jr.Describe(dir+targets.Report, dir+targets.Rejects)
	log.Log(ctx, level, msg, append(attrs, "output", res.Output, "durationMs", res.DurationMS)...)
	return res, nil
}

// badRecord settles a record that names no object that can be read: it
// is reported, under its key decoded as far as it can be, if that is an
// input of the route.
func (h *Handler) badRecord(ctx context.Context, log *slog.Logger, res ObjectResult, start time.Time, cause error) (ObjectResult, error) {
	attrs := []any{"bucket", res.Bucket, "key", res.Key, "error", res.Error}
	key := lenientUnescape(res.Key)
	if targets, err := h.Route.Targets(res.Bucket, key); err == nil {
		out, err := h.Bucket(ctx, h.Route.To.Bucket)
		if err != nil {
			return h.retry(log, res, start, err)
		}
		job := compute.Job{InputKey: key, Output: out, ReportKey: targets.Report}
		if _, err := job.Fail(ctx, cause); err != nil {
			return h.retry(log, res, start, err)
		}
		attrs = append(attrs, "report", "s3://"+h.Route.To.Bucket+"/"+targets.Report)
	}
	res.DurationMS = time.Since(start).Milliseconds()
	log.Error("cannot read the event record", attrs...)
	return res, nil
}

// retry records a failure worth retrying.
func (h *Handler) retry(log *slog.Logger, res ObjectResult, start time.Time, err error) (ObjectResult, error) {
	res.Outcome = outcomeRetry
	res.Error = err.Error()
	res.DurationMS = time.Since(start).Milliseconds()
	log.Warn("failed, to be retried", "error", res.Error, "durationMs", res.DurationMS)
	return res, fmt.Errorf("s3://%s/%s: %w", res.Bucket, res.Key, err)
}

func (h *Handler) logger() *slog.Logger {
	if h.Logger != nil {
		return h.Logger
	}
	return slog.Default()
}

// lenientUnescape decodes an event's key as far as it goes: '+' is a
// space and a valid %XX its byte, while a '%' that starts no escape stays
// as it is. The input prefix of a route is matched against that, so an
// undecodable key under "my data/" (spelled "my+data/") is still an input.
func lenientUnescape(key string) string {
	var b strings.Builder
	for i := 0; i < len(key); i++ {
		switch c := key[i]; {
		case c == '+':
			b.WriteByte(' ')
		case c == '%' && i+2 < len(key) && isHex(key[i+1]) && isHex(key[i+2]):
			b.WriteByte(unhex(key[i+1])<<4 | unhex(key[i+2]))
			i += 2
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func isHex(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}

// payloadStart is the first 200 bytes of a payload, for a log line: its
// valid UTF-8 as it is, other bytes as \xNN.
func payloadStart(p []byte) string {
	const max = 200
	if len(p) > max {
		p = p[:max]
	}
	var b strings.Builder
	for len(p) > 0 {
		r, size := utf8.DecodeRune(p)
		if r == utf8.RuneError && size == 1 {
			fmt.Fprintf(&b, `\x%02x`, p[0])
		} else {
			b.Write(p[:size])
		}
		p = p[size:]
	}
	return b.String()
}

// quoteETag puts the quotes that an event leaves off an ETag back, as
// If-Match wants them.
func quoteETag(etag string) string {
	if strings.HasPrefix(etag, `"`) || strings.HasPrefix(etag, `W/"`) {
		return etag
	}
	return `"` + etag + `"`
}
