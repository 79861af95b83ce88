package compute

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
)

// A Job moves one object through the kernel, as the event-driven front
// ends need it: it reads the exact object an event named, writes the
// result create-only, and sorts failures into those worth retrying and
// those that are the input's fault.
type Job struct {
	Input    Store
	InputKey string
	Read     ReadOptions // the version or ETag the event named, if any
	// ReadAhead is how Input is read; its zero value reads one stream.
	ReadAhead ReadAhead

	Output    Store
	OutputKey string
	// RejectsKey receives the rejects in OnErrorSkip mode, in Output.
	RejectsKey string
	// ReportKey, when set, receives a JSON report (a JobReport) of a
	// permanent failure, in Output.
	ReportKey string

	Options Options // Rejects is set by the job
}

// Outcome is how a job ended.
type Outcome string

const (
	// Done: the output was written.
	Done Outcome = "done"
	// Duplicate: the output was already there, from an earlier delivery
	// of the same event; nothing was written.
	Duplicate Outcome = "duplicate"
	// AlreadyProcessed: the input has a momentum column, so it is an
	// output itself; nothing was written. This is the loop guard.
	AlreadyProcessed Outcome = "already-processed"
	// Failed: the input cannot be processed (bad data, object gone);
	// retrying would not help. Nothing but the report was written.
	Failed Outcome = "failed"
)

// JobResult is what a job did.
type JobResult struct {
	Outcome Outcome
	Stats   Stats
	Err     error // why a Failed job failed
}

// Describe is how an event front end logs a finished job: the level,
// the message and the attributes, which name the failure report or the
// rejects, given as the front end's own URLs, where they apply.
func (r JobResult) Describe(reportURL, rejectsURL string) (slog.Level, string, []any) {
	attrs := []any{"outcome", string(r.Outcome), "rows", r.Stats.RowsOut, "rejected", r.Stats.RowsRejected,
		"bytesIn", r.Stats.BytesIn, "bytesOut", r.Stats.BytesOut}
	switch r.Outcome {
	case Failed:
		var perr *ParseError
		if errors.As(r.Err, &perr) {
			attrs = append(attrs, "line", perr.Line, "column", perr.Column, "reason", perr.Reason())
		}
		return slog.LevelError, "the object cannot be processed", append(attrs, "report", reportURL, "error", r.Err.Error())
	case AlreadyProcessed:
		return slog.LevelInfo, "the object has a momentum column already: nothing written", attrs
	}
	if r.Stats.RowsRejected > 0 {
		attrs = append(attrs, "rejects", rejectsURL)
	}
	return slog.LevelInfo, "processed", attrs
}

// JobReport is the JSON document written to ReportKey when a job fails
// for good.
type JobReport struct {
	Input  string `json:"input"`
	Error  string `json:"error"`
	Line   int64  `json:"line,omitempty"`
	Column string `json:"column,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// Run runs the job. It returns an error only for failures worth retrying
// (a transient storage error, a permission not yet granted, the context
// ending): nothing is committed then, and a retry starts afresh. Failures
// that are the input's own end with Outcome Failed and a nil error, after
// the report is written.
func (j *Job) Run(ctx context.Context) (JobResult, error) {
	// A duplicate delivery finds the output there: no need to read on.
	if r, _, err := j.Output.NewReader(ctx, j.OutputKey, ReadOptions{Length: 1}); err == nil {
		r.Close()
		return JobResult{Outcome: Duplicate}, nil
	} else if !errors.Is(err, ErrNotFound) {
		return JobResult{}, err
	}

	in, _, err := j.ReadAhead.NewReader(ctx, j.Input, j.InputKey, j.Read)
	if err != nil {
		if errors.Is(err, ErrNotFound) || errors.Is(err, ErrInvalidKey) {
			return j.Fail(ctx, err)
		}
		return JobResult{}, err
	}
	defer in.Close()
	// The output's compression is known before it is created, for its
	// metadata: the input's first bytes tell the input's.
	src, inComp, err := Detect(in)
	if err != nil {
		return JobResult{}, err
	}
	o := j.Options
	if o.Compress == SameAsInput {
		// An output named .gz or .zst is so, whatever the input was: Cloud
		// Storage serves a.csv.gz stored with Content-Encoding gzip plain.
		o.Compress = inComp
		if c := CompressionOfName(j.OutputKey); c != Uncompressed {
			o.Compress = c
		}
	}

	create := WriteOptions{IfNotExists: true, ContentType: "text/csv", ContentEncoding: o.Compress.ContentEncoding()}
	rejectsKey := ""
	if j.Options.OnError == OnErrorSkip {
		rejectsKey = j.RejectsKey
	}
	w, err := openOutputs(ctx, j.Output, j.OutputKey, rejectsKey, create, WriteOptions{IfNotExists: true, ContentType: "text/csv"})
	if err != nil {
		return storageFailure(ctx, err, j.Fail)
	}
	defer w.abort()
	o.Rejects = w.rejects

	st, err := Transform(ctx, w.out, src, o)
	if err != nil {
		return sortFailure(ctx, st, err, j.Fail)
	}
	if err := w.commit(); err != nil {
		if errors.Is(err, ErrExists) {
			return JobResult{Outcome: Duplicate, Stats: st}, nil
		}
		return JobResult{Stats: st}, err
	}
	return JobResult{Outcome: Done, Stats: st}, nil
}

// outputs are the writers of one run: the output and, in skip mode, the
// rejects. Until committed they are aborted on the way out: their
// context is cancelled, then they are closed, which leaves nothing.
type outputs struct {
	out, rejects io.WriteCloser
	cancel       context.CancelFunc
	done         bool
}

// The rejects are plain CSV, written with rejectsOpts.
func openOutputs(ctx context.Context, s Store, outKey, rejectsKey string, opts, rejectsOpts WriteOptions) (*outputs, error) {
	wctx, cancel := context.WithCancel(ctx)
	w := &outputs{cancel: cancel, done: true}
	var err error
	if w.out, err = s.NewWriter(wctx, outKey, opts); err != nil {
		cancel()
		return nil, err
	}
	if rejectsKey != "" {
		if w.rejects, err = s.NewWriter(wctx, rejectsKey, rejectsOpts); err != nil {
			cancel()
			w.out.Close()
			return nil, err
		}
	}
	w.done = false
	return w, nil
}

// commit closes the rejects, then the output: an output without its
// rejects would hide rows. Rejects already there (ErrExists) are those
// of an earlier delivery. An output that exists already is ErrExists.
func (w *outputs) commit() error {
	w.done = true
	defer w.cancel()
	if w.rejects != nil {
		if err := w.rejects.Close(); err != nil && !errors.Is(err, ErrExists) {
			w.cancel()
			w.out.Close()
			return err
		}
	}
	return w.out.Close()
}

func (w *outputs) abort() {
	if w.done {
		return
	}
	w.done = true
	w.cancel()
	w.out.Close()
	if w.rejects != nil {
		w.rejects.Close()
	}
}

// sortFailure sorts the error that ended a transform: the loop guard, the
// input's own fault (reported through fail), or a failure worth a retry.
func sortFailure(ctx context.Context, st Stats, err error, fail func(context.Context, error) (JobResult, error)) (JobResult, error) {
	var perr *ParseError
	switch {
	case errors.Is(err, ErrAlreadyProcessed):
		return JobResult{Outcome: AlreadyProcessed, Stats: st}, nil
	case errors.As(err, &perr):
		res, ferr := fail(ctx, err)
		res.Stats = st
		return res, ferr
	}
	return JobResult{Stats: st}, err // storage or context: worth a retry
}

// storageFailure sorts an error from opening a writer: a key the store
// refuses is for good, anything else worth a retry.
func storageFailure(ctx context.Context, err error, fail func(context.Context, error) (JobResult, error)) (JobResult, error) {
	if errors.Is(err, ErrInvalidKey) {
		return fail(ctx, err)
	}
	return JobResult{}, err
}

// failureReport is the JSON document of a permanent failure.
func failureReport(input string, cause error) []byte {
	rep := JobReport{Input: input, Error: cause.Error()}
	var perr *ParseError
	if errors.As(cause, &perr) {
		rep.Line, rep.Column, rep.Reason = perr.Line, perr.Column, perr.Reason()
	}
	body, _ := json.MarshalIndent(rep, "", "  ") // cannot fail: strings and numbers
	return append(body, '\n')
}

// Fail records a permanent failure: it writes the report and returns the
// result of a Failed job. Run calls it; a front end calls it for an event
// that names no object it can read (a key that does not decode), for
// which only Output, InputKey and ReportKey need be set. A report that
// cannot be written is itself a reason to retry: without it, the failure
// would go unrecorded.
func (j *Job) Fail(ctx context.Context, cause error) (JobResult, error) {
	res := JobResult{Outcome: Failed, Err: cause}
	if j.ReportKey == "" {
		return res, nil
	}
	if err := put(ctx, j.Output, j.ReportKey, failureReport(j.InputKey, cause), WriteOptions{IfNotExists: true, ContentType: "application/json"}); err != nil && !errors.Is(err, ErrExists) {
		return res, fmt.Errorf("writing the failure report: %w", err)
	}
	return res, nil
}

// put writes a small object, leaving nothing on failure.
func put(ctx context.Context, s Store, key string, body []byte, opts WriteOptions) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := s.NewWriter(ctx, key, opts)
	if err != nil {
		return err
	}
	if _, err := w.Write(body); err != nil {
		cancel()
		w.Close()
		return err
	}
	return w.Close()
}
