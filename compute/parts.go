package compute

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
)

// A ShardJob runs one shard of one input, as a task of an array job does
// (a Cloud Run job task, a Kubernetes indexed pod, an AWS Batch child):
// it writes Prefix+"part-NNNNN.csv" with the shard's records (the header
// only in part 0), then, last, Prefix+"part-NNNNN.json", its manifest.
// A task run again rewrites its part; one whose manifest already matches
// the input does nothing.
type ShardJob struct {
	Input    Store
	InputKey string
	Read     ReadOptions // the version or ETag to read, if any
	// ReadAhead is how the shard's own bytes are read; its zero value
	// reads them in one stream of windows that grow.
	ReadAhead ReadAhead

	Output Store
	Prefix string // "" or ends with "/"

	Shard   Shard
	Options Options // Rejects is set by the job
}

// PartKey returns the key of part i under prefix.
func PartKey(prefix string, i int) string { return fmt.Sprintf("%spart-%05d.csv", prefix, i) }

// ManifestKey returns the key of part i's manifest under prefix.
func ManifestKey(prefix string, i int) string { return fmt.Sprintf("%spart-%05d.json", prefix, i) }

// RejectsKey returns the key of part i's rejects (skip mode) under prefix.
func RejectsKey(prefix string, i int) string {
	return fmt.Sprintf("%spart-%05d.rejects.csv", prefix, i)
}

// ReportKey returns the key of part i's failure report under prefix.
func ReportKey(prefix string, i int) string { return fmt.Sprintf("%spart-%05d.error.json", prefix, i) }

// A Manifest describes one written part. Merge checks that the parts'
// manifests agree and tile the input.
type Manifest struct {
	Input string `json:"input"` // the input's key in its store
	// InputLocation is the input's full location (see Locator): keys
	// repeat from bucket to bucket. Empty when the input's store is not
	// a Locator, and in manifests written before it was recorded.
	InputLocation string `json:"inputLocation,omitempty"`
	Version       string `json:"version,omitempty"` // the input version read
	ETag          string `json:"etag,omitempty"`
	Size          int64  `json:"size"` // the input's size
	Shard         int    `json:"shard"`
	Shards        int    `json:"shards"`
	Start         int64  `json:"start"` // the input bytes whose records the part holds
	End           int64  `json:"end"`
	Part          string `json:"part"`
	Bytes         int64  `json:"bytes"` // the part's size
	Header        bool   `json:"header"`
	Rows          int64  `json:"rows"`
	Rejected      int64  `json:"rejected"`
	Rejects       string `json:"rejects,omitempty"`
	Settings      string `json:"settings"` // the options that shape the output
}

// settings is the canonical text of the options that shape the output,
// so that Merge can refuse parts written with different ones.
func (o Options) settings() string {
	o, _ = o.withDefaults()
	var b strings.Builder
	fmt.Fprintf(&b, "mass=%q velocity=%q momentum=%q header=%v delimiter=%q", o.MassColumn, o.VelocityColumn, o.MomentumColumn, o.Header, o.Delimiter)
	if o.FixedDecimals {
		fmt.Fprintf(&b, " decimals=%d", o.Decimals)
	}
	if o.Quotes != QuotesStrict {
		fmt.Fprintf(&b, " quotes=%v", o.Quotes)
	}
	fmt.Fprintf(&b, " on-error=%v max-record=%d", o.OnError, o.MaxRecordBytes)
	return b.String()
}

// Run runs the shard. Like Job.Run, it returns an error only for failures
// worth retrying; bad input ends with Outcome Failed, after the report is
// written to ReportKey.
func (j *ShardJob) Run(ctx context.Context) (JobResult, error) {
	if err := j.Shard.Check(); err != nil {
		return JobResult{}, err
	}
	if j.Prefix != "" && !strings.HasSuffix(j.Prefix, "/") {
		return JobResult{}, fmt.Errorf("compute: the parts' prefix %q must end with /", j.Prefix)
	}
	i := j.Shard.Index
	probe := j.Read
	probe.Offset, probe.Length = 0, int64(len(zstdMagic))
	r, info, err := j.Input.NewReader(ctx, j.InputKey, probe)
	if err != nil {
		if errors.Is(err, ErrNotFound) || errors.Is(err, ErrInvalidKey) {
			return j.fail(ctx, err)
		}
		return JobResult{}, err
	}
	head, err := io.ReadAll(r)
	r.Close()
	if err != nil {
		return JobResult{}, err
	}
	if c := DetectCompression(head); c != Uncompressed {
		// No part could be right: a byte range of a compressed stream is
		// no stream. That does not change on a retry.
		return j.fail(ctx, fmt.Errorf("%w: %s is %s-compressed; run it as one task, with an output that is not a folder", ErrCompressedShards, j.InputKey, c))
	}
	if info.Size < 0 {
		// Such as a compressed object served decompressed: byte ranges
		// of it mean nothing. That does not change on a retry.
		return j.fail(ctx, fmt.Errorf("%s cannot be split into shards: its store gives no size (is it served decompressed?); run it as one task", j.InputKey))
	}
	pin := ReadOptions{Version: info.Version}
	if pin.Version == "" {
		pin.ETag = info.ETag
	}
	if j.Read.Version != "" {
		pin = ReadOptions{Version: j.Read.Version}
	}
	want := Manifest{Input: j.InputKey, Version: info.Version, ETag: info.ETag, Size: info.Size,
		Shard: i, Shards: j.Shard.Count, Settings: j.Options.settings()}
	if l, ok := j.Input.(Locator); ok {
		want.InputLocation = l.Location(j.InputKey)
	}

	// A retried task whose part was complete finds its manifest.
	if m, err := ReadManifest(ctx, j.Output, ManifestKey(j.Prefix, i)); err == nil {
		if m.sameRun(want) {
			return JobResult{Outcome: Duplicate, Stats: Stats{RowsIn: m.Rows + m.Rejected, RowsOut: m.Rows,
				RowsRejected: m.Rejected, BytesOut: m.Bytes, Header: m.Header}}, nil
		}
	} else if !errors.Is(err, ErrNotFound) {
		return JobResult{}, err
	}

	// Parts are overwritten, not created: a task that died between its
	// part and its manifest must be able to finish on a retry.
	rejectsKey := ""
	if j.Options.OnError == OnErrorSkip {
		rejectsKey = RejectsKey(j.Prefix, i)
	}
	plain := WriteOptions{ContentType: "text/csv"}
	w, err := openOutputs(ctx, j.Output, PartKey(j.Prefix, i), rejectsKey, plain, plain)
	if err != nil {
		return storageFailure(ctx, err, j.fail)
	}
	defer w.abort()
	o := j.Options
	o.Rejects = w.rejects
	o.Compress = Uncompressed // parts are plain CSV, joined by merge
	ra := &objectReaderAt{ctx: ctx, store: j.Input, key: j.InputKey, pin: pin, size: info.Size, ahead: j.ReadAhead}
	defer ra.Close()
	st, err := TransformShard(ctx, w.out, ra, info.Size, j.Shard, o)
	if err != nil {
		if errors.Is(err, ErrAlreadyProcessed) {
			// A job pointed at an output writes no part: the report tells
			// merge, and whoever reads it, why.
			if _, ferr := j.fail(ctx, err); ferr != nil {
				return JobResult{Stats: st.Stats}, ferr
			}
		}
		return sortFailure(ctx, st.Stats, err, j.fail)
	}
	if err := w.commit(); err != nil {
		return JobResult{Stats: st.Stats}, err
	}
	m := want
	m.Start, m.End, m.Part, m.Bytes, m.Header = st.Start, st.End, PartKey(j.Prefix, i), st.BytesOut, st.Header
	m.Rows, m.Rejected = st.RowsOut, st.RowsRejected
	if rejectsKey != "" {
		m.Rejects = rejectsKey
	}
	body, _ := json.MarshalIndent(m, "", "  ")
	if err := put(ctx, j.Output, ManifestKey(j.Prefix, i), append(body, '\n'), WriteOptions{ContentType: "application/json"}); err != nil {
		return JobResult{Stats: st.Stats}, err
	}
	return JobResult{Outcome: Done, Stats: st.Stats}, nil
}

// fail writes the part's failure report, replacing an earlier one.
func (j *ShardJob) fail(ctx context.Context, cause error) (JobResult, error) {
	res := JobResult{Outcome: Failed, Err: cause}
	if err := put(ctx, j.Output, ReportKey(j.Prefix, j.Shard.Index), failureReport(j.InputKey, cause), WriteOptions{ContentType: "application/json"}); err != nil {
		return res, fmt.Errorf("writing the failure report: %w", err)
	}
	return res, nil
}

// sameRun reports whether m is the manifest want would become: the same
// input version, shard and settings.
func (m *Manifest) sameRun(want Manifest) bool {
	return m.sameInput(&want) && m.Shard == want.Shard && m.Shards == want.Shards && m.Settings == want.Settings
}

// sameInput reports whether m and o describe one version of one input.
func (m *Manifest) sameInput(o *Manifest) bool {
	return m.Input == o.Input && m.InputLocation == o.InputLocation && m.Version == o.Version &&
		m.ETag == o.ETag && m.Size == o.Size
}

// InputName names the manifest's input: its location, or its key when
// the manifest records no location.
func (m *Manifest) InputName() string {
	if m.InputLocation != "" {
		return m.InputLocation
	}
	return m.Input
}

// isInput reports whether the object at key in s may be the manifest's
// input. Without both locations to compare, s is taken to be the input's
// store, so that a key alike is refused rather than overwritten.
func (m *Manifest) isInput(s Store, key string) bool {
	if l, ok := s.(Locator); ok && m.InputLocation != "" {
		return l.Location(key) == m.InputLocation
	}
	return key == m.Input
}

// ReadManifest reads the manifest at key.
func ReadManifest(ctx context.Context, s Store, key string) (*Manifest, error) {
	r, _, err := s.NewReader(ctx, key, ReadOptions{})
	if err != nil {
		return nil, err
	}
	defer r.Close()
	body, err := io.ReadAll(io.LimitReader(r, 1<<20))
	if err != nil {
		return nil, err
	}
	var m Manifest
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, fmt.Errorf("manifest %s: %w", key, err)
	}
	return &m, nil
}

// objectReaderAt reads an object of a Store at any offset, safely from
// several goroutines. Each run of reads at increasing offsets, as a shard
// makes, shares one streaming request; reads elsewhere open their own.
// With a ReadAhead of more than one connection, it also opens a shard's
// own bytes as one stream of ranged requests (openRange).
type objectReaderAt struct {
	ctx   context.Context
	store Store
	key   string
	pin   ReadOptions
	size  int64
	ahead ReadAhead

	mu   sync.Mutex
	idle []*stream // streams between reads, the most recent last
}

// A stream is one ranged request, read in sequence.
type stream struct {
	rc     io.ReadCloser
	pos    int64 // where rc is
	end    int64 // where rc ends
	window int64 // the length of rc's request
}

// Requests read windows that start small, for the reads of a header or a
// boundary, and double while reads go on in sequence, up to maxWindow.
const (
	minWindow = 1 << 20
	maxWindow = 64 << 20
	maxIdle   = 4 // streams kept open between reads
)

func (o *objectReaderAt) ReadAt(p []byte, off int64) (int, error) {
	s := o.take(off)
	total := 0
	for len(p) > 0 {
		if off >= o.size {
			o.give(s)
			return total, io.EOF
		}
		if s.rc == nil || off >= s.end {
			next := int64(minWindow)
			if s.rc != nil {
				next = min(2*s.window, maxWindow) // going on in sequence
			}
			s.close()
			ro := o.pin
			ro.Offset, ro.Length = off, min(max(next, int64(len(p))), o.size-off)
			rc, err := sameSize(o.key, o.size)(o.store.NewReader(o.ctx, o.key, ro))
			if err != nil {
				return total, err
			}
			s.rc, s.pos, s.end, s.window = rc, off, off+ro.Length, next
		}
		n := int(min(int64(len(p)), s.end-off))
		m, err := io.ReadFull(s.rc, p[:n])
		s.pos, off, total, p = s.pos+int64(m), off+int64(m), total+m, p[m:]
		if err != nil {
			s.close()
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return total, err
		}
	}
	o.give(s)
	return total, nil
}

// openRange opens the bytes [off, end) as one stream read through the
// ReadAhead, or returns nil when it reads one stream only: ReadAt's
// windows are that already.
func (o *objectReaderAt) openRange(off, end int64) (io.ReadCloser, error) {
	if o.ahead.Connections <= 1 {
		return nil, nil
	}
	ro := o.pin
	ro.Offset, ro.Length = off, end-off
	return sameSize(o.key, o.size)(o.ahead.NewReader(o.ctx, o.store, o.key, ro))
}

// take returns the idle stream at off, or a new one.
func (o *objectReaderAt) take(off int64) *stream {
	o.mu.Lock()
	defer o.mu.Unlock()
	for i := len(o.idle) - 1; i >= 0; i-- {
		if s := o.idle[i]; s.pos == off {
			o.idle = append(o.idle[:i], o.idle[i+1:]...)
			return s
		}
	}
	return &stream{}
}

// give puts a stream back for the next read. When too many are idle it
// closes one: the oldest that has nothing left to read, else the oldest.
func (o *objectReaderAt) give(s *stream) {
	if s.rc == nil {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.idle = append(o.idle, s)
	if len(o.idle) > maxIdle {
		drop := 0
		for i, s := range o.idle {
			if s.pos >= s.end {
				drop = i
				break
			}
		}
		o.idle[drop].close()
		o.idle = append(o.idle[:drop], o.idle[drop+1:]...)
	}
}

func (s *stream) close() {
	if s.rc != nil {
		s.rc.Close()
		s.rc = nil
	}
}

func (o *objectReaderAt) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, s := range o.idle {
		s.close()
	}
	o.idle = nil
	return nil
}

// A Composer concatenates objects of its store into one without passing
// their bytes through the caller where the store can: Cloud Storage
// compose, S3 multipart copy, a local file copy.
type Composer interface {
	Compose(ctx context.Context, dst string, srcs []string, opts WriteOptions) error
}

// MergeResult describes a checked set of parts.
type MergeResult struct {
	Manifests []Manifest
	Rows      int64
	Rejected  int64
	Bytes     int64 // the parts' total size
	Rejects   []string
	// RejectsInto is where Merge joined the rejects, if it did.
	RejectsInto string
}

// A MergeError says why a set of parts is not complete and consistent.
type MergeError struct {
	Problems []string
}

func (e *MergeError) Error() string {
	if len(e.Problems) == 1 {
		return e.Problems[0]
	}
	return fmt.Sprintf("%d problems: %s", len(e.Problems), strings.Join(e.Problems, "; "))
}

// CheckParts reads the manifests of the parts under prefix and checks
// that they are all there, come from one run over one version of one
// input with the same settings, tile the input, and that every part has
// the size its manifest gives.
func CheckParts(ctx context.Context, s Store, prefix string) (MergeResult, error) {
	var res MergeResult
	first, err := ReadManifest(ctx, s, ManifestKey(prefix, 0))
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return res, &MergeError{[]string{fmt.Sprintf("no %s: part 0 is missing%s", ManifestKey(prefix, 0), partFailure(ctx, s, prefix, 0))}}
		}
		return res, err
	}
	n := first.Shards
	if n < 1 || n > MaxShards {
		return res, &MergeError{[]string{fmt.Sprintf("%s: shard count %d out of range", ManifestKey(prefix, 0), n)}}
	}
	var problems, missing []string
	res.Manifests = make([]Manifest, n)
	for i := range n {
		m := first
		if i > 0 {
			if m, err = ReadManifest(ctx, s, ManifestKey(prefix, i)); errors.Is(err, ErrNotFound) {
				missing = append(missing, strconv.Itoa(i)+partFailure(ctx, s, prefix, i))
				continue
			} else if err != nil {
				return res, err
			}
		}
		res.Manifests[i] = *m
		switch {
		case m.Shard != i || m.Shards != n:
			problems = append(problems, fmt.Sprintf("part %d: manifest says shard %d of %d", i, m.Shard, m.Shards))
			continue
		case !m.sameInput(first):
			problems = append(problems, fmt.Sprintf("part %d: read %s version %q (%d bytes), part 0 read %s version %q (%d bytes): the input changed between tasks", i, m.InputName(), m.Version+m.ETag, m.Size, first.InputName(), first.Version+first.ETag, first.Size))
			continue
		case m.Settings != first.Settings:
			problems = append(problems, fmt.Sprintf("part %d: written with settings %s, part 0 with %s", i, m.Settings, first.Settings))
			continue
		}
		if i > 0 && res.Manifests[i-1].Part != "" && res.Manifests[i-1].End != m.Start {
			problems = append(problems, fmt.Sprintf("part %d starts at byte %d, part %d ends at %d", i, m.Start, i-1, res.Manifests[i-1].End))
		}
		if i == n-1 && m.End != m.Size {
			problems = append(problems, fmt.Sprintf("the last part ends at byte %d of %d", m.End, m.Size))
		}
		if size, err := objectSize(ctx, s, m.Part); err != nil {
			if !errors.Is(err, ErrNotFound) {
				return res, err
			}
			problems = append(problems, fmt.Sprintf("part %d: %s is missing", i, m.Part))
		} else if size != m.Bytes {
			problems = append(problems, fmt.Sprintf("part %d: %s has %d bytes, its manifest says %d", i, m.Part, size, m.Bytes))
		}
		res.Rows += m.Rows
		res.Rejected += m.Rejected
		res.Bytes += m.Bytes
		if m.Rejected > 0 {
			res.Rejects = append(res.Rejects, m.Rejects)
		}
	}
	if len(missing) > 0 {
		problems = append([]string{fmt.Sprintf("%d of %d parts missing: %s", len(missing), n, strings.Join(missing, ", "))}, problems...)
	}
	// A manifest past the last part is left from a run with more shards.
	if m, err := ReadManifest(ctx, s, ManifestKey(prefix, n)); err == nil {
		problems = append(problems, fmt.Sprintf("%s is left from an earlier run of %d shards: remove the parts of that run", ManifestKey(prefix, n), m.Shards))
	}
	if len(problems) > 0 {
		return res, &MergeError{problems}
	}
	return res, nil
}

// partFailure explains a missing part from its failure report, if any.
func partFailure(ctx context.Context, s Store, prefix string, i int) string {
	r, _, err := s.NewReader(ctx, ReportKey(prefix, i), ReadOptions{})
	if err != nil {
		return ""
	}
	defer r.Close()
	var rep JobReport
	if json.NewDecoder(io.LimitReader(r, 1<<20)).Decode(&rep) != nil || rep.Error == "" {
		return ""
	}
	return " (failed: " + rep.Error + ")"
}

// objectSize returns the size of the object at key.
func objectSize(ctx context.Context, s Store, key string) (int64, error) {
	r, info, err := s.NewReader(ctx, key, ReadOptions{Length: 1})
	if err != nil {
		return 0, err
	}
	r.Close()
	return info.Size, nil
}

// Merge checks the parts under prefix with CheckParts and, when into is
// set, concatenates them into that object of the same store, which
// must be a Composer: the single run's output. In skip mode, when
// rejectsInto is set, the parts' rejects are joined there likewise: the
// single run's rejects.
func Merge(ctx context.Context, s Store, prefix, into, rejectsInto string) (MergeResult, error) {
	res, err := CheckParts(ctx, s, prefix)
	if err != nil || into == "" {
		return res, err
	}
	return Join(ctx, s, prefix, res, into, rejectsInto)
}

// Join is the second half of Merge, for callers that check more than
// CheckParts does in between: it joins the parts of res, which
// CheckParts returned for prefix, into into, and their rejects into
// rejectsInto.
func Join(ctx context.Context, s Store, prefix string, res MergeResult, into, rejectsInto string) (MergeResult, error) {
	c, ok := s.(Composer)
	if !ok {
		return res, errors.New("compute: this store cannot compose objects")
	}
	parts := make([]string, len(res.Manifests))
	var rejects []string
	for i, m := range res.Manifests {
		for _, dst := range []string{into, rejectsInto} {
			switch {
			case dst == "":
			case dst == m.Part || dst == ManifestKey(prefix, i) || dst == m.Rejects:
				return res, fmt.Errorf("compute: merging into %s would overwrite part %d", Location(s, dst), i)
			case m.isInput(s, dst) && m.InputLocation == "":
				return res, fmt.Errorf("compute: merging into %s might overwrite the input: the parts' manifests name it by its key alone, %s, not its bucket; run the tasks again with this version of momentum to record it, or merge into another name", Location(s, dst), m.Input)
			case m.isInput(s, dst):
				return res, fmt.Errorf("compute: merging into %s would overwrite the input", Location(s, dst))
			}
		}
		parts[i] = m.Part
		if m.Rejects != "" {
			rejects = append(rejects, m.Rejects)
		}
	}
	if err := c.Compose(ctx, into, parts, WriteOptions{ContentType: "text/csv"}); err != nil {
		return res, err
	}
	// In skip mode every part has its rejects, the header in part 0's.
	if rejectsInto != "" && len(rejects) == len(parts) {
		if err := c.Compose(ctx, rejectsInto, rejects, WriteOptions{ContentType: "text/csv"}); err != nil {
			return res, err
		}
		res.RejectsInto = rejectsInto
	}
	return res, nil
}

// ComposeByCopy is Compose for stores that cannot concatenate objects
// themselves: it streams the sources, in order, into one new object.
func ComposeByCopy(ctx context.Context, s Store, dst string, srcs []string, opts WriteOptions) error {
	return CopyInto(ctx, s, dst, opts, s, srcs, nil)
}

// CopyInto streams the sources of from, in order, into the new object dst
// of to; srcOpts, if not nil, gives the options of each source's read (a
// version pin). A failed read or write cancels the writer, so nothing is
// left behind.
func CopyInto(ctx context.Context, to Store, dst string, opts WriteOptions, from Store, srcs []string, srcOpts []ReadOptions) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := to.NewWriter(wctx, dst, opts)
	if err != nil {
		return err
	}
	for i, src := range srcs {
		var ro ReadOptions
		if srcOpts != nil {
			ro = srcOpts[i]
		}
		r, _, err := from.NewReader(ctx, src, ro)
		if err == nil {
			_, err = io.Copy(w, r)
			r.Close()
		}
		if err != nil {
			cancel()
			w.Close()
			return err
		}
	}
	return w.Close()
}
