// Package rejects writes and reads the rejects file of a skip-mode run,
// the CSV file of compute.Reject records (line, column, reason, record),
// with gocsv: its records are typed, and bad rows are few, so the
// reflection gocsv costs is not felt, where it would be on the kernel's
// own rows (see docs/development.md, "Where gocsv is used, and why").
//
// It is a package of its own, not part of adapters/local, because the
// rejects file goes to every store alike (a file, stdout, S3, Cloud
// Storage) and is read back by merge from any of them: it wraps a format,
// not a store. The binary wires NewWriter into compute.Options in every
// mode.
//
// The file is comma-separated whatever the input's delimiter, with LF
// line ends, quoted as encoding/csv quotes (gocsv writes through it).
package rejects

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/gocarina/gocsv"

	"github.com/momentum-run/momentum/compute"
)

// Header is the first record of a rejects file: the csv tags of
// compute.Reject.
var Header = []string{"line", "column", "reason", "record"}

// writer writes compute.Reject records as CSV.
type writer struct {
	w *gocsv.SafeCSVWriter
}

// NewWriter returns a compute.RejectWriter that writes a rejects file to
// w; it is compute.Options.NewRejectWriter in every mode of the binary.
func NewWriter(w io.Writer) compute.RejectWriter {
	return &writer{w: gocsv.NewSafeCSVWriter(csv.NewWriter(w))}
}

// WriteHeader writes the header record and flushes it.
func (w *writer) WriteHeader() error {
	return gocsv.MarshalCSV([]compute.Reject{}, w.w)
}

// Write writes rejects, one record each, and flushes them. It does not
// keep rejects.
func (w *writer) Write(rejects []compute.Reject) error {
	return gocsv.MarshalCSVWithoutHeaders(rejects, w.w)
}

// ErrHeader is returned by NewReader for a file that does not start with
// Header.
var ErrHeader = errors.New("not a rejects file: the header is not line,column,reason,record")

// Reader reads compute.Reject records from a rejects file.
type Reader struct {
	u *gocsv.Unmarshaller
}

// NewReader reads the header from r and returns a Reader of the records
// after it.
func NewReader(r io.Reader) (*Reader, error) {
	u, err := gocsv.NewUnmarshaller(csv.NewReader(r), compute.Reject{})
	if errors.Is(err, io.EOF) || err == nil && !slices.Equal(u.Headers, Header) {
		return nil, ErrHeader
	}
	if err != nil {
		return nil, err
	}
	return &Reader{u: u}, nil
}

// Read returns the next record, or io.EOF after the last. A record that
// is not CSV, has another number of fields or a line that is not a
// number is an error.
func (r *Reader) Read() (compute.Reject, error) {
	v, err := r.u.Read()
	if err != nil {
		return compute.Reject{}, err
	}
	rj, ok := v.(compute.Reject)
	if !ok {
		return compute.Reject{}, fmt.Errorf("rejects: decoded %T", v)
	}
	return rj, nil
}
