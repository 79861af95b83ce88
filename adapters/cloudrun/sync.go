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
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/momentum-run/momentum/compute"
)

// errAnswerTooLarge is an answer over the limit: 413, as for a body.
var errAnswerTooLarge = errors.New("answer too large")

// maxLengthAnswer is the largest answer sent with a Content-Length, in
// bytes: Cloud Run refuses a larger HTTP/1 response unless it is chunked,
// which a response without a Content-Length is.
const maxLengthAnswer = 32 << 20

// limitedBuffer is a bytes.Buffer that refuses to grow past limit bytes.
type limitedBuffer struct {
	bytes.Buffer
	limit int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if b.Len()+len(p) > b.limit {
		return 0, fmt.Errorf("%w: over %d bytes", errAnswerTooLarge, b.limit)
	}
	return b.Buffer.Write(p)
}

// syncError is the JSON body of a refused synchronous request.
type syncError struct {
	Error  string `json:"error"`
	Line   int64  `json:"line,omitempty"`
	Column string `json:"column,omitempty"`
	Index  *int   `json:"index,omitempty"` // of the array element, for JSON input; 0 for a lone object
	Field  string `json:"field,omitempty"` // for JSON input
	Reason string `json:"reason,omitempty"`
}

// sync answers POST /v1/momentum. The body is read before a slot is
// taken, so that slow clients hold no slot: bodies draw on bodies, a
// budget of their bytes, instead. The result is computed whole before the
// answer starts, so invalid data is a 422 and never a 200 with half a
// body; the endpoint is always strict (fail mode): a rejects file would
// need a second body.
func (s *Service) sync(w http.ResponseWriter, r *http.Request, slots chan struct{}, bodies *budget) {
	start := time.Now()
	log := s.requestLogger(r)
	opts, err := s.syncOptions(r)
	if err != nil {
		log.Info("synchronous request refused", "error", err.Error())
		writeJSON(w, http.StatusBadRequest, syncError{Error: err.Error()})
		return
	}
	media, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if enc := contentEncoding(r); enc != "" && (enc != "gzip" && enc != "zstd" || media == "application/json") {
		log.Info("synchronous request refused", "contentEncoding", enc)
		writeJSON(w, http.StatusUnsupportedMediaType, syncError{Error: fmt.Sprintf("Content-Encoding %q: a CSV body may be sent as gzip or zstd, a JSON body only plain", enc)})
		return
	}
	body, release, err := readBody(w, r, s.maxBody(), s.bodyTimeout(), bodies)
	if err != nil {
		status := statusOf(err)
		if errors.Is(err, errBodiesBusy) {
			w.Header().Set("Retry-After", "1")
		}
		log.Info("synchronous request refused", "error", err.Error(), "status", status)
		writeJSON(w, status, syncError{Error: err.Error()})
		return
	}
	defer release()
	select {
	case slots <- struct{}{}:
		defer func() { <-slots }()
	default:
		log.Warn("busy: synchronous request refused", "maxSync", cap(slots))
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusServiceUnavailable, syncError{Error: "busy: too many requests in progress"})
		return
	}
	if media == "application/json" {
		s.syncJSON(w, r, log, start, body, opts)
		return
	}
	out := &limitedBuffer{limit: s.maxAnswer()}
	out.Grow(min(len(body)+len(body)/2, out.limit))
	st, err := compute.Transform(r.Context(), out, bytes.NewReader(body), opts)
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
	writeAnswer(w, out.Bytes())
}

// writeAnswer writes a successful answer, whose headers are set but for
// its length.
func writeAnswer(w http.ResponseWriter, b []byte) {
	if len(b) <= maxLengthAnswer {
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	}
	w.WriteHeader(http.StatusOK)
	w.Write(b)
}

// syncFailed answers a failure that is not the data's: an answer over the
// limit, the request's context ended (the client left, or the service is
// shutting down), or the service's options are wrong.
func (s *Service) syncFailed(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	switch {
	case errors.Is(err, errAnswerTooLarge):
		log.Info("synchronous request refused", "error", err.Error())
		writeJSON(w, http.StatusRequestEntityTooLarge, syncError{Error: err.Error() + ": send less at a time, or drop the file in the bucket"})
	case r.Context().Err() != nil:
		log.Warn("synchronous request stopped", "error", err.Error())
		writeJSON(w, http.StatusServiceUnavailable, syncError{Error: err.Error()})
	default:
		log.Error("synchronous request failed", "error", err.Error())
		writeJSON(w, http.StatusInternalServerError, syncError{Error: err.Error()})
	}
}

func (s *Service) maxBody() int64 {
	if s.MaxBody > 0 {
		return s.MaxBody
	}
	return DefaultMaxBody
}

func (s *Service) bodyTimeout() time.Duration {
	if s.BodyTimeout > 0 {
		return s.BodyTimeout
	}
	return DefaultBodyTimeout
}

// maxAnswer is the limit of a synchronous answer, in bytes: twice the
// body's, for the momentum column makes an answer larger than its
// request, up to a hundred times with decimals=100.
func (s *Service) maxAnswer() int {
	return int(min(2*s.maxBody(), 1<<40))
}

// syncParams are the query parameters of POST /v1/momentum.
var syncParams = []string{"decimals", "delimiter", "header", "quotes", "mass", "velocity", "momentum", "on_error"}

// contentEncoding is the request body's Content-Encoding, lower case;
// "" for none or identity. The kernel tells gzip and zstd by their first
// bytes, so this only refuses what it cannot read.
func contentEncoding(r *http.Request) string {
	enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding")))
	switch enc {
	case "identity":
		return ""
	case "x-gzip":
		return "gzip"
	}
	return enc
}

// syncOptions are the service's options, strict, with the request's
// query parameters applied. A parameter it does not know, or given
// twice, or with a bad value, is an error.
func (s *Service) syncOptions(r *http.Request) (compute.Options, error) {
	o := s.Options
	o.OnError, o.Rejects = compute.OnErrorFail, nil
	o.Compress = compute.Uncompressed // the answer is plain CSV, whatever the body
	q, err := parseQuery(r.URL.RawQuery)
	if err != nil {
		return o, err
	}
	names := make([]string, 0, len(q))
	for name := range q {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if !containsString(syncParams, name) {
			return o, fmt.Errorf("unknown query parameter %q: want %s", name, strings.Join(syncParams, ", "))
		}
		if len(q[name]) > 1 {
			return o, fmt.Errorf("query parameter %s given %d times", name, len(q[name]))
		}
	}
	if q.Has("decimals") {
		v := q.Get("decimals")
		n, err := strconv.Atoi(v)
		switch {
		case err != nil || n < -1 || n > 100:
			return o, fmt.Errorf("decimals=%q: want -1 (the shortest exact form) or 0..100", v)
		case n == -1:
			o.FixedDecimals, o.Decimals = false, 0
		default:
			o.FixedDecimals, o.Decimals = true, n
		}
	}
	if q.Has("delimiter") {
		d, err := compute.ParseDelimiter(q.Get("delimiter"))
		if err != nil {
			return o, fmt.Errorf("delimiter=%q: %v", q.Get("delimiter"), err)
		}
		o.Delimiter = d
	}
	if q.Has("header") {
		h, err := compute.ParseHeaderMode(q.Get("header"))
		if err != nil {
			return o, fmt.Errorf("header=%q: %v", q.Get("header"), err)
		}
		o.Header = h
	}
	if q.Has("quotes") {
		m, err := compute.ParseQuoteMode(q.Get("quotes"))
		if err != nil {
			return o, fmt.Errorf("quotes=%q: %v", q.Get("quotes"), err)
		}
		o.Quotes = m
	}
	if q.Has("on_error") {
		switch v := q.Get("on_error"); v {
		case "fail":
		case "skip":
			return o, errors.New("on_error=skip: the synchronous endpoint is always strict (a bad row is a 422); to skip bad rows, drop the file in the bucket")
		default:
			return o, fmt.Errorf("on_error=%q: want fail", v)
		}
	}
	for _, c := range []struct {
		name string
		dst  *string
	}{{"mass", &o.MassColumn}, {"velocity", &o.VelocityColumn}, {"momentum", &o.MomentumColumn}} {
		if !q.Has(c.name) {
			continue
		}
		v := q.Get(c.name)
		if strings.TrimSpace(v) == "" {
			return o, fmt.Errorf("%s=%q: a column name cannot be empty", c.name, v)
		}
		*c.dst = v
	}
	cols := []struct{ name, v string }{
		{"mass", columnOr(o.MassColumn, compute.DefaultMassColumn)},
		{"velocity", columnOr(o.VelocityColumn, compute.DefaultVelocityColumn)},
		{"momentum", columnOr(o.MomentumColumn, compute.DefaultMomentumColumn)},
	}
	for i, c := range cols {
		for _, other := range cols[:i] {
			if strings.EqualFold(strings.TrimSpace(c.v), strings.TrimSpace(other.v)) {
				return o, fmt.Errorf("%s %q and %s %q name the same column", other.name, other.v, c.name, c.v)
			}
		}
	}
	return o, nil
}

// parseQuery is url.ParseQuery, one pair at a time so that an error names
// its parameter, where an error ends the parsing rather than drop the
// pair. A raw ';' is an error, for it is ambiguous: some clients
// separate parameters with it, url.ParseQuery drops the pair, and a
// user may mean it literally. The one exception is the pair
// "delimiter=;", which only means the semicolon: European CSV uses it,
// and a parameter with an empty name after it means nothing.
func parseQuery(raw string) (url.Values, error) {
	q := url.Values{}
	for _, pair := range strings.Split(raw, "&") {
		if pair == "delimiter=;" {
			q.Add("delimiter", ";")
			continue
		}
		v, err := url.ParseQuery(pair)
		if err == nil {
			for name, values := range v {
				q[name] = append(q[name], values...)
			}
			continue
		}
		name, _, _ := strings.Cut(pair, "=")
		if n, uerr := url.QueryUnescape(name); uerr == nil {
			name = n
		}
		if strings.Contains(pair, ";") {
			return nil, fmt.Errorf("query parameter %q: a raw ';' in %q: separate parameters with '&', and write a ';' that is part of a value as %%3B", name, pair)
		}
		return nil, fmt.Errorf("query parameter %q: %v", name, err)
	}
	return q, nil
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// columnOr is a column name, or its default when unset.
func columnOr(name, otherwise string) string {
	if name == "" {
		return otherwise
	}
	return name
}

// A jsonInvalid is a JSON element the kernel cannot take, or refused.
type jsonInvalid struct {
	index         int
	field, reason string
}

func (e *jsonInvalid) Error() string {
	if e.field == "" {
		return fmt.Sprintf("element %d: %s", e.index, e.reason)
	}
	return fmt.Sprintf("element %d: %s: %s", e.index, e.field, e.reason)
}

// jsonFields are the names of the fields of a JSON element, those of the
// options' columns.
type jsonFields struct{ mass, velocity, momentum string }

// syncJSON answers a JSON body: an object {"mass":…,"velocity":…} or an
// array of them, the field names those of the mass, velocity and
// momentum columns. The numbers go through the kernel as CSV rows with
// the numbers' own text, so the momentum is the text the CSV path gives;
// it is appended to each object as a JSON number, after the object's own
// fields, which are kept as they came (compacted).
//
// Memory: besides the body, it holds the rows given to the kernel (less
// than the body), the momentum texts and the answer, both bounded by
// maxAnswer; never a decoded tree of the body.
func (s *Service) syncJSON(w http.ResponseWriter, r *http.Request, log *slog.Logger, start time.Time, body []byte, opts compute.Options) {
	fields := jsonFields{
		mass:     columnOr(opts.MassColumn, compute.DefaultMassColumn),
		velocity: columnOr(opts.VelocityColumn, compute.DefaultVelocityColumn),
		momentum: columnOr(opts.MomentumColumn, compute.DefaultMomentumColumn),
	}
	invalid := func(e *jsonInvalid) {
		log.Info("synchronous request: invalid data", "index", e.index, "field", e.field, "reason", e.reason)
		writeJSON(w, http.StatusUnprocessableEntity, syncError{Error: e.Error(), Index: &e.index, Field: e.field, Reason: e.reason})
	}
	fail := func(err error) {
		var inv *jsonInvalid
		if errors.As(err, &inv) {
			invalid(inv)
			return
		}
		log.Info("synchronous request: not JSON of the expected shape", "error", err.Error())
		writeJSON(w, http.StatusBadRequest, syncError{Error: "JSON: " + err.Error()})
	}

	// The rows, for the kernel: the fields' text, which JSON numbers
	// leave free of commas, quotes and line breaks.
	var in bytes.Buffer
	in.Grow(len(body) / 2)
	in.WriteString("mass,velocity\n")
	count := 0
	single, err := eachElement(body, func(i int, elem []byte) error {
		count++
		m, v, err := numbers(i, elem, fields)
		if err != nil {
			return err
		}
		in.Write(m)
		in.WriteByte(',')
		in.Write(v)
		in.WriteByte('\n')
		return nil
	})
	if err != nil {
		fail(err)
		return
	}

	kopts := opts
	kopts.Header, kopts.Delimiter = compute.HeaderPresent, ','
	kopts.MassColumn, kopts.VelocityColumn, kopts.MomentumColumn = "mass", "velocity", "momentum"
	moms := &lastFields{header: true, limit: s.maxAnswer()}
	st, err := compute.Transform(r.Context(), moms, &in, kopts)
	if err != nil {
		var perr *compute.ParseError
		if errors.As(err, &perr) {
			e := &jsonInvalid{index: int(perr.Line) - 2, reason: perr.Reason()} // line 1 is the header, line 2 element 0
			switch perr.Column {
			case "mass":
				e.field = fields.mass
			case "velocity":
				e.field = fields.velocity
			}
			invalid(e)
			return
		}
		s.syncFailed(w, r, log, err)
		return
	}

	if len(moms.ends) != count {
		s.syncFailed(w, r, log, fmt.Errorf("the kernel gave %d rows for %d elements", len(moms.ends), count))
		return
	}

	// The answer: each element as it came, with the momentum appended.
	key, _ := json.Marshal(fields.momentum)
	out := &limitedBuffer{limit: s.maxAnswer()}
	out.Grow(min(len(body)+len(moms.text)+len(moms.ends)*(len(key)+2), out.limit))
	if !single {
		out.WriteString("[")
	}
	var obj bytes.Buffer
	_, err = eachElement(body, func(i int, elem []byte) error {
		obj.Reset()
		if i > 0 {
			obj.WriteByte(',')
		}
		if err := json.Compact(&obj, elem); err != nil {
			return err
		}
		obj.Truncate(obj.Len() - 1) // the closing brace; the object has fields, mass and velocity at least
		obj.WriteByte(',')
		obj.Write(key)
		obj.WriteByte(':')
		obj.Write(moms.field(i))
		obj.WriteByte('}')
		_, err := out.Write(obj.Bytes())
		return err
	})
	if err == nil && !single {
		_, err = out.WriteString("]")
	}
	if err == nil {
		_, err = out.WriteString("\n")
	}
	if err != nil {
		s.syncFailed(w, r, log, err)
		return
	}
	log.Info("synchronous request", "rows", st.RowsOut, "bytesIn", len(body), "bytesOut", out.Len(), "durationMs", time.Since(start).Milliseconds())
	w.Header().Set("Content-Type", "application/json")
	writeAnswer(w, out.Bytes())
}

// WriteString is Write for strings, within the limit.
func (b *limitedBuffer) WriteString(s string) (int, error) { return b.Write([]byte(s)) }

// eachElement calls fn for each element of a JSON body, a lone value or
// an array, with the element's text (without the space around it) and
// its index: 0 for a lone value. It reports whether the body is a lone
// value. It stops at fn's first error, or at a syntax error.
func eachElement(body []byte, fn func(i int, elem []byte) error) (single bool, err error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	first := bytes.TrimLeft(body, " \t\r\n")
	switch {
	case len(first) == 0:
		return false, errors.New("empty body: want an object or an array of objects")
	case first[0] == '{':
		var elem json.RawMessage
		if err := dec.Decode(&elem); err != nil {
			return true, err
		}
		if err := fn(0, elem); err != nil {
			return true, err
		}
	case first[0] == '[':
		dec.Token() // '['
		for i := 0; dec.More(); i++ {
			var elem json.RawMessage
			if err := dec.Decode(&elem); err != nil {
				return false, err
			}
			if err := fn(i, elem); err != nil {
				return false, err
			}
		}
		if _, err := dec.Token(); err != nil { // ']'
			return false, err
		}
	default:
		return false, errors.New("want an object or an array of objects")
	}
	if _, err := dec.Token(); err != io.EOF {
		if err == nil {
			err = errors.New("more than one value")
		}
		return single, err
	}
	return first[0] == '{', nil
}

// numbers returns the text of the mass and velocity of one element: an
// object with each of them once, as JSON numbers, and no momentum yet.
func numbers(i int, elem []byte, f jsonFields) (mass, velocity []byte, err error) {
	if elem[0] != '{' {
		return nil, nil, &jsonInvalid{index: i, reason: "not an object"}
	}
	dec := json.NewDecoder(bytes.NewReader(elem))
	dec.Token() // '{'
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, nil, err
		}
		name, _ := t.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, nil, err
		}
		var dst *[]byte
		switch name {
		case f.momentum:
			return nil, nil, &jsonInvalid{index: i, field: name, reason: "has a momentum already"}
		case f.mass:
			dst = &mass
		case f.velocity:
			dst = &velocity
		default:
			continue
		}
		if *dst != nil {
			return nil, nil, &jsonInvalid{index: i, field: name, reason: "given twice"}
		}
		if c := v[0]; c != '-' && (c < '0' || c > '9') {
			return nil, nil, &jsonInvalid{index: i, field: name, reason: "not a number"}
		}
		*dst = v
	}
	for _, c := range []struct {
		name string
		v    []byte
	}{{f.mass, mass}, {f.velocity, velocity}} {
		if c.v == nil {
			return nil, nil, &jsonInvalid{index: i, field: c.name, reason: "missing"}
		}
	}
	return mass, velocity, nil
}

// lastFields is the kernel's output as the JSON path needs it: the last
// field of each line after the header, the momentum, in text, whose
// total is bounded by limit.
type lastFields struct {
	header bool   // the header line is still to skip
	cur    []byte // the last field of the current line so far
	text   []byte // the fields, end to end
	ends   []int  // where each field ends in text
	limit  int
}

func (l *lastFields) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		line := p
		if i >= 0 {
			line = p[:i]
		}
		if c := bytes.LastIndexByte(line, ','); c >= 0 {
			l.cur = append(l.cur[:0], line[c+1:]...)
		} else {
			l.cur = append(l.cur, line...)
		}
		if i < 0 {
			break
		}
		if l.header {
			l.header = false
		} else {
			if len(l.text)+len(l.cur) > l.limit {
				return 0, fmt.Errorf("%w: over %d bytes", errAnswerTooLarge, l.limit)
			}
			l.text = append(l.text, bytes.TrimSuffix(l.cur, []byte("\r"))...)
			l.ends = append(l.ends, len(l.text))
		}
		l.cur = l.cur[:0]
		p = p[i+1:]
	}
	return n, nil
}

// field is the i-th field.
func (l *lastFields) field(i int) []byte {
	start := 0
	if i > 0 {
		start = l.ends[i-1]
	}
	return l.text[start:l.ends[i]]
}
