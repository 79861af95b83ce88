package cloudrun

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"time"

	"github.com/momentum-run/momentum/compute"
)

// errTooLarge is a body over the limit.
var errTooLarge = errors.New("request body too large")

// readBody reads a whole request body of at most limit bytes. A
// Content-Length over the limit is refused before anything is read, and
// the connection closed after the answer; a
// longer body without one is cut by http.MaxBytesReader, which also makes
// the server close the connection rather than read the rest.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if r.ContentLength > limit {
		// The body is not read: the connection cannot be reused, and the
		// server must not try to drain it before answering.
		w.Header().Set("Connection", "close")
		return nil, fmt.Errorf("%w: %d bytes, the limit is %d", errTooLarge, r.ContentLength, limit)
	}
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength))
	}
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, limit))
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return nil, fmt.Errorf("%w: the limit is %d bytes", errTooLarge, limit)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the request: %w", err)
	}
	return buf.Bytes(), nil
}

// statusOf is the status of a readBody error.
func statusOf(err error) int {
	if errors.Is(err, errTooLarge) {
		return http.StatusRequestEntityTooLarge
	}
	return http.StatusBadRequest
}

// syncError is the JSON body of a refused synchronous request.
type syncError struct {
	Error  string `json:"error"`
	Line   int64  `json:"line,omitempty"`
	Column string `json:"column,omitempty"`
	Index  *int   `json:"index,omitempty"` // of the array element, for JSON input
	Field  string `json:"field,omitempty"` // for JSON input
	Reason string `json:"reason,omitempty"`
}

// sync answers POST /v1/momentum. The result is computed whole before the
// answer starts, so invalid data is a 422 and never a 200 with half a
// body; the endpoint is always strict (fail mode): a rejects file would
// need a second body.
func (s *Service) sync(w http.ResponseWriter, r *http.Request, slots chan struct{}) {
	start := time.Now()
	log := s.requestLogger(r)
	select {
	case slots <- struct{}{}:
		defer func() { <-slots }()
	default:
		log.Warn("busy: synchronous request refused", "maxSync", cap(slots))
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusServiceUnavailable, syncError{Error: "busy: too many requests in progress"})
		return
	}
	opts, err := s.syncOptions(r)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, syncError{Error: err.Error()})
		return
	}
	body, err := readBody(w, r, s.maxBody())
	if err != nil {
		log.Info("synchronous request refused", "error", err.Error())
		writeJSON(w, statusOf(err), syncError{Error: err.Error()})
		return
	}
	media, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if media == "application/json" {
		s.syncJSON(w, r, log, start, body, opts)
		return
	}
	var out bytes.Buffer
	out.Grow(len(body) + len(body)/4)
	st, err := compute.Transform(r.Context(), &out, bytes.NewReader(body), opts)
	if err != nil {
		var perr *compute.ParseError
		if errors.As(err, &perr) {
			log.Info("synchronous request: invalid data", "bytesIn", len(body), "line", perr.Line, "column", perr.Column, "reason", perr.Reason())
			writeJSON(w, http.StatusUnprocessableEntity, syncError{Error: err.Error(), Line: perr.Line, Column: perr.Column, Reason: perr.Reason()})
			return
		}
		s.syncFailed(w, r, log, err)
		return
	}
	log.Info("synchronous request", "rows", st.RowsOut, "bytesIn", st.BytesIn, "bytesOut", st.BytesOut, "durationMs", time.Since(start).Milliseconds())
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(out.Len()))
	w.Write(out.Bytes())
}

// syncFailed answers a failure that is not the data's: the request's
// context ended (the client left, or the service is shutting down), or
// the service's options are wrong.
func (s *Service) syncFailed(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	if r.Context().Err() != nil {
		log.Warn("synchronous request stopped", "error", err.Error())
		writeJSON(w, http.StatusServiceUnavailable, syncError{Error: err.Error()})
		return
	}
	log.Error("synchronous request failed", "error", err.Error())
	writeJSON(w, http.StatusInternalServerError, syncError{Error: err.Error()})
}

func (s *Service) maxBody() int64 {
	if s.MaxBody > 0 {
		return s.MaxBody
	}
	return DefaultMaxBody
}

// syncOptions are the service's options, strict, with the request's
// decimals, delimiter and header query parameters.
func (s *Service) syncOptions(r *http.Request) (compute.Options, error) {
	o := s.Options
	o.OnError, o.Rejects = compute.OnErrorFail, nil
	q := r.URL.Query()
	if v := q.Get("decimals"); v != "" {
		n, err := strconv.Atoi(v)
		switch {
		case err != nil || n < -1 || n > 100:
			return o, fmt.Errorf("decimals=%q: want -1 or 0..100", v)
		case n == -1:
			o.FixedDecimals, o.Decimals = false, 0
		default:
			o.FixedDecimals, o.Decimals = true, n
		}
	}
	if v := q.Get("delimiter"); v != "" {
		if v == "tab" {
			v = "\t"
		}
		if len(v) != 1 || v == `"` || v == "\r" || v == "\n" {
			return o, fmt.Errorf("delimiter=%q: want one byte such as ';', or tab", v)
		}
		o.Delimiter = v[0]
	}
	switch v := q.Get("header"); v {
	case "":
	case "auto":
		o.Header = compute.HeaderAuto
	case "yes":
		o.Header = compute.HeaderPresent
	case "no":
		o.Header = compute.HeaderAbsent
	default:
		return o, fmt.Errorf("header=%q: want auto, yes or no", v)
	}
	return o, nil
}

// syncJSON answers a JSON body: an object {"mass":…,"velocity":…} or an
// array of them. The numbers go through the kernel as CSV rows with the
// numbers' own text, so the momentum is the text the CSV path gives; it
// is added to each object as a JSON number. Other fields are kept, and
// the keys come out sorted.
func (s *Service) syncJSON(w http.ResponseWriter, r *http.Request, log *slog.Logger, start time.Time, body []byte, opts compute.Options) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		writeJSON(w, http.StatusBadRequest, syncError{Error: "JSON: " + err.Error()})
		return
	}
	if _, err := dec.Token(); err != io.EOF {
		writeJSON(w, http.StatusBadRequest, syncError{Error: "JSON: more than one value"})
		return
	}
	invalid := func(i int, field, msg, reason string) {
		log.Info("synchronous request: invalid data", "index", i, "field", field, "reason", msg)
		writeJSON(w, http.StatusUnprocessableEntity, syncError{Error: msg, Index: &i, Field: field, Reason: reason})
	}
	items := []map[string]any{}
	single := false
	switch v := v.(type) {
	case map[string]any:
		items, single = []map[string]any{v}, true
	case []any:
		for i, e := range v {
			m, ok := e.(map[string]any)
			if !ok {
				invalid(i, "", fmt.Sprintf("element %d is not an object", i), "not an object")
				return
			}
			items = append(items, m)
		}
	default:
		writeJSON(w, http.StatusBadRequest, syncError{Error: "JSON: want an object or an array of objects"})
		return
	}

	var in bytes.Buffer
	in.Grow(len(body))
	in.WriteString("mass,velocity\n")
	for i, item := range items {
		if _, ok := item["momentum"]; ok {
			invalid(i, "momentum", fmt.Sprintf("element %d has a momentum already", i), "has a momentum already")
			return
		}
		for _, field := range []string{"mass", "velocity"} {
			if _, ok := item[field].(json.Number); !ok {
				reason := "not a number"
				if item[field] == nil {
					reason = "missing"
				}
				invalid(i, field, fmt.Sprintf("element %d: %s: %s", i, field, reason), reason)
				return
			}
		}
		// A json.Number is a JSON number's text: no comma, quote or line
		// break to escape.
		fmt.Fprintf(&in, "%s,%s\n", item["mass"], item["velocity"])
	}
	opts.Header, opts.Delimiter = compute.HeaderPresent, ','
	opts.MassColumn, opts.VelocityColumn, opts.MomentumColumn = "mass", "velocity", "momentum"
	var out bytes.Buffer
	out.Grow(in.Len() + in.Len()/2)
	st, err := compute.Transform(r.Context(), &out, &in, opts)
	if err != nil {
		var perr *compute.ParseError
		if errors.As(err, &perr) {
			i := int(perr.Line) - 2 // line 1 is the header, line 2 element 0
			invalid(i, perr.Column, fmt.Sprintf("element %d: %s: %s", i, perr.Column, perr.Reason()), perr.Reason())
			return
		}
		s.syncFailed(w, r, log, err)
		return
	}
	// The output is the header, then one line per element, each ending
	// with its momentum.
	lines := bytes.Split(bytes.TrimSuffix(out.Bytes(), []byte("\n")), []byte("\n"))[1:]
	for i, line := range lines {
		items[i]["momentum"] = json.Number(line[bytes.LastIndexByte(line, ',')+1:])
	}
	log.Info("synchronous request", "rows", st.RowsOut, "bytesIn", len(body), "durationMs", time.Since(start).Milliseconds())
	if single {
		writeJSON(w, http.StatusOK, items[0])
		return
	}
	writeJSON(w, http.StatusOK, items)
}
