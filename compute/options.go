package compute

import (
	"errors"
	"fmt"
	"io"
	"runtime"
)

// HeaderMode says whether the first record is a header.
type HeaderMode int

const (
	// HeaderAuto treats the first record as data when it names neither
	// column and its first two fields are numbers, as header otherwise.
	HeaderAuto HeaderMode = iota
	HeaderPresent
	HeaderAbsent
)

// ParseHeaderMode reads a header mode as flags and query parameters
// spell it: auto; yes, true or present; no, false or absent.
func ParseHeaderMode(s string) (HeaderMode, error) {
	switch s {
	case "auto":
		return HeaderAuto, nil
	case "yes", "true", "present":
		return HeaderPresent, nil
	case "no", "false", "absent":
		return HeaderAbsent, nil
	}
	return HeaderAuto, errors.New("want auto, yes or no")
}

func (m HeaderMode) String() string {
	switch m {
	case HeaderPresent:
		return "yes"
	case HeaderAbsent:
		return "no"
	}
	return "auto"
}

// ParseDelimiter reads a field delimiter: one byte, or "tab" (also
// written \t); never a quote or a line break.
func ParseDelimiter(s string) (byte, error) {
	switch s {
	case "tab", `\t`, "\t":
		return '\t', nil
	}
	if len(s) != 1 {
		return 0, errors.New("want one byte, such as ';' or tab")
	}
	switch s[0] {
	case '"', '\r', '\n':
		return 0, errors.New("cannot be a quote or a line break")
	}
	return s[0], nil
}

// QuoteMode says how quotes that RFC 4180 does not allow are read. Both
// modes read valid CSV alike, and both find a record's end by the same
// rules outside quoted fields (see Transform).
type QuoteMode int

const (
	// QuotesStrict reads RFC 4180 quoting: a '"' in an unquoted field (a
	// bare quote, as in 5'10" or in a field that starts with a space
	// before its quote) or text after a closing quote ("ab"c) makes the
	// row bad. The field goes on unquoted to the next delimiter or line
	// break, where the next field or record starts.
	QuotesStrict QuoteMode = iota
	// QuotesLazy reads quotes as encoding/csv's LazyQuotes does: a '"' in
	// an unquoted field is data, and so is a '"' in a quoted field that is
	// not followed by a delimiter or a line break (the field stays
	// quoted). Fields pass through with their bytes as in strict mode.
	QuotesLazy
)

// ParseQuoteMode reads a quote mode as flags and query parameters spell
// it: strict or lazy.
func ParseQuoteMode(s string) (QuoteMode, error) {
	switch s {
	case "strict":
		return QuotesStrict, nil
	case "lazy":
		return QuotesLazy, nil
	}
	return QuotesStrict, errors.New("want strict or lazy")
}

func (m QuoteMode) String() string {
	if m == QuotesLazy {
		return "lazy"
	}
	return "strict"
}

// ErrorMode says what a bad row does to the run.
type ErrorMode int

const (
	// OnErrorFail ends the run at the first bad row.
	OnErrorFail ErrorMode = iota
	// OnErrorSkip writes bad rows to Options.Rejects and goes on.
	// Structural errors still end the run.
	OnErrorSkip
)

func (m ErrorMode) String() string {
	if m == OnErrorSkip {
		return "skip"
	}
	return "fail"
}

// Defaults.
const (
	DefaultMaxRecordBytes = 16 << 20
	DefaultMassColumn     = "mass"
	DefaultVelocityColumn = "velocity"
	DefaultMomentumColumn = "momentum"
)

// Options configure a Transform. The zero value is ready to use.
type Options struct {
	MassColumn     string // header name of the mass column; default "mass"
	VelocityColumn string // header name of the velocity column; default "velocity"
	MomentumColumn string // name of the added column; default "momentum"
	Header         HeaderMode
	Delimiter      byte      // field separator; default ','
	Quotes         QuoteMode // how quotes RFC 4180 does not allow are read
	// FixedDecimals prints momentum with Decimals fixed decimals (0..100)
	// instead of the shortest form that parses back to the same float64.
	FixedDecimals bool
	Decimals      int
	OnError       ErrorMode
	// Rejects receives the rejects file in OnErrorSkip mode, written by
	// the RejectWriter that NewRejectWriter makes of it.
	Rejects         io.Writer
	NewRejectWriter func(io.Writer) RejectWriter
	MaxRecordBytes  int // largest record accepted, in bytes; default 16 MiB
	// Workers is the number of goroutines computing rows: by default
	// GOMAXPROCS, and at most MaxWorkersPerCPU×GOMAXPROCS, since the work
	// is bound by the CPU and each worker holds chunks in memory.
	Workers int
	// Codec reads gzip and zstd input and writes compressed output; nil
	// refuses compressed input (ErrNoCodec).
	Codec Codec
	// Compress is how the output is compressed: Uncompressed (the
	// default), Gzip, Zstd, or SameAsInput.
	Compress Compression
}

// MaxWorkersPerCPU bounds Options.Workers.
const MaxWorkersPerCPU = 4

func (o Options) withDefaults() (Options, error) {
	if o.MassColumn == "" {
		o.MassColumn = DefaultMassColumn
	}
	if o.VelocityColumn == "" {
		o.VelocityColumn = DefaultVelocityColumn
	}
	if o.MomentumColumn == "" {
		o.MomentumColumn = DefaultMomentumColumn
	}
	if o.Delimiter == 0 {
		o.Delimiter = ','
	}
	if o.MaxRecordBytes <= 0 {
		o.MaxRecordBytes = DefaultMaxRecordBytes
	}
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	o.Workers = min(o.Workers, MaxWorkersPerCPU*runtime.GOMAXPROCS(0))
	switch o.Delimiter {
	case '"', '\r', '\n':
		return o, fmt.Errorf("compute: invalid delimiter %q", o.Delimiter)
	}
	if o.Quotes != QuotesStrict && o.Quotes != QuotesLazy {
		return o, fmt.Errorf("compute: invalid quote mode %d", o.Quotes)
	}
	if o.FixedDecimals && (o.Decimals < 0 || o.Decimals > 100) {
		return o, fmt.Errorf("compute: decimals %d out of range 0..100", o.Decimals)
	}
	switch o.Compress {
	case Uncompressed, Gzip, Zstd, SameAsInput:
	default:
		return o, fmt.Errorf("compute: invalid output compression %q", string(o.Compress))
	}
	if o.OnError == OnErrorSkip && (o.Rejects == nil || o.NewRejectWriter == nil) {
		return o, errors.New("compute: OnErrorSkip needs Rejects and NewRejectWriter")
	}
	if equalFoldASCII([]byte(o.MassColumn), []byte(o.VelocityColumn)) ||
		equalFoldASCII([]byte(o.MassColumn), []byte(o.MomentumColumn)) ||
		equalFoldASCII([]byte(o.VelocityColumn), []byte(o.MomentumColumn)) {
		return o, errors.New("compute: mass, velocity and momentum columns need distinct names")
	}
	return o, nil
}

// Stats describe a run.
type Stats struct {
	RowsIn       int64 // data records read (header and blank lines excluded)
	RowsOut      int64 // records written with a momentum
	RowsRejected int64 // records reported as bad
	BytesIn      int64 // bytes read
	BytesOut     int64 // bytes written to the output
	Header       bool  // whether the input had a header
}
