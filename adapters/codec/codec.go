// Package codec is compute.Codec over github.com/klauspost/compress: gzip
// (several members read as one stream, as `cat a.gz b.gz` makes) and zstd
// (several frames likewise), faster than the standard library's gzip and
// with no zstd there at all.
//
// Memory stays bounded whatever the input: gzip's window is 32 KiB, and a
// zstd frame that asks for a window over MaxWindow is refused.
package codec

import (
	"fmt"
	"io"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/momentum-run/momentum/compute"
)

// MaxWindow is the largest zstd window read, in bytes: zstd's levels up
// to 19 use 8 MiB at most, --long 128 MiB. A larger window is refused
// rather than allocated.
const MaxWindow = 64 << 20

// Codec reads and writes gzip and zstd. Its zero value is ready to use.
type Codec struct{}

var _ compute.Codec = Codec{}

// NewReader returns a reader of r decompressed as c.
func (Codec) NewReader(r io.Reader, c compute.Compression) (io.ReadCloser, error) {
	switch c {
	case compute.Gzip:
		return gzip.NewReader(r)
	case compute.Zstd:
		// Decoded in the reader's goroutine: the kernel's workers have the
		// other cores, and blocks decoded ahead would only take memory.
		d, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(MaxWindow),
			zstd.WithDecoderMaxMemory(MaxWindow))
		if err != nil {
			return nil, err
		}
		return d.IOReadCloser(), nil
	}
	return nil, fmt.Errorf("codec: cannot read %s", c)
}

// NewWriter returns a writer that compresses into w as c. The stream
// depends only on the bytes written: the gzip header has no time and no
// name, and zstd encodes on one goroutine, so two platforms write the
// same bytes.
func (Codec) NewWriter(w io.Writer, c compute.Compression) (io.WriteCloser, error) {
	switch c {
	case compute.Gzip:
		// Level 1: on rows of numbers six times level 6's speed, for the
		// same size (0.441 against 0.450 of the CSV), where level 6 took
		// four times the kernel's own time.
		zw, err := gzip.NewWriterLevel(w, gzip.BestSpeed)
		if err != nil {
			return nil, err
		}
		zw.ModTime = time.Unix(0, 0) // "no time"; the zero Time would write year 1's
		return zw, nil
	case compute.Zstd:
		// The fastest level: on rows of numbers it also compresses a
		// little better than the default (0.446 against 0.456).
		return zstd.NewWriter(w, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedFastest))
	}
	return nil, fmt.Errorf("codec: cannot write %s", c)
}
