package compute

import (
	"errors"
	"fmt"
	"strings"
)

// A Place is a set of objects: those of one bucket whose keys start with
// Prefix. An empty Bucket stands for every bucket.
type Place struct {
	Bucket string
	Prefix string // of the keys; "" is the whole bucket
}

// Contains reports whether the object bucket/key is in p.
func (p Place) Contains(bucket, key string) bool {
	return (p.Bucket == "" || p.Bucket == bucket) && strings.HasPrefix(key, p.Prefix)
}

// Overlaps reports whether some object could be in both p and q.
func (p Place) Overlaps(q Place) bool {
	if p.Bucket != "" && q.Bucket != "" && p.Bucket != q.Bucket {
		return false
	}
	return strings.HasPrefix(p.Prefix, q.Prefix) || strings.HasPrefix(q.Prefix, p.Prefix)
}

func (p Place) String() string {
	b := p.Bucket
	if b == "" {
		b = "*"
	}
	return b + "/" + p.Prefix
}

// A Route is the configuration of the event-driven modes: the objects
// that arrive in From are processed into To, each output at the input's
// key with From's prefix swapped for To's. The keys are used as they are,
// never cleaned: "in/a//b.csv" gives "out/a//b.csv".
type Route struct {
	From Place // where inputs arrive
	To   Place // where outputs go; its Bucket is required
}

// Reasons an event's object is not processed.
var (
	// ErrNotInput: the object is outside the route's From, or is a folder
	// marker (a key ending in "/").
	ErrNotInput = errors.New("not an input of this route")
	// ErrIsOutput: the object is in the route's To; processing it would
	// start a loop.
	ErrIsOutput = errors.New("an output of this route")
)

// Check refuses a route whose outputs could trigger it again.
func (r Route) Check() error {
	if r.To.Bucket == "" {
		return errors.New("route: no output bucket")
	}
	if r.From.Overlaps(r.To) {
		return fmt.Errorf("route: the output location %s overlaps the inputs %s: each output would be processed again", r.To, r.From)
	}
	return nil
}

// Targets are the keys, in the route's To bucket, that a job writes.
type Targets struct {
	Output  string // the result
	Rejects string // the rejected rows, in OnErrorSkip mode
	Report  string // the JSON report of a permanent failure
}

// Targets returns where the results of bucket/key go. It fails with
// ErrIsOutput for an object in To (whatever From says: the loop guard
// comes first) and with ErrNotInput for one outside From.
func (r Route) Targets(bucket, key string) (Targets, error) {
	switch {
	case r.To.Contains(bucket, key):
		return Targets{}, ErrIsOutput
	case !r.From.Contains(bucket, key), key == "", strings.HasSuffix(key, "/"):
		return Targets{}, ErrNotInput
	}
	out := r.To.Prefix + key[len(r.From.Prefix):]
	// The rejects and the report are plain, named without a.csv.gz's .gz.
	base, ext := NameFor(out, Uncompressed), ""
	if i := strings.LastIndexByte(base, '.'); i > strings.LastIndexByte(base, '/') && strings.EqualFold(base[i:], ".csv") {
		base, ext = base[:i], base[i:]
	}
	if ext == "" {
		ext = ".csv"
	}
	return Targets{Output: out, Rejects: base + ".rejects" + ext, Report: base + ".error.json"}, nil
}

// CompressedAs returns the targets of an output compressed as c: its
// name gets c's suffix (.gz, .zst, none) in place of the input's.
// SameAsInput, the default, keeps the input's name: a.csv.gz gives
// a.csv.gz.
func (t Targets) CompressedAs(c Compression) Targets {
	if c != SameAsInput {
		t.Output = NameFor(t.Output, c)
	}
	return t
}
