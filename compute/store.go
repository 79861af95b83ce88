package compute

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Store is where the objects a job reads and writes live: a folder, an S3
// bucket, a Cloud Storage bucket. Keys are the store's own names for
// objects ("runs/a.csv"), never URL-encoded.
//
// Implementations return errors that wrap one of the storage kinds below
// (ErrNotFound, ErrPermission, ErrExists, ErrTransient, ErrInvalidKey,
// ErrBucketNotFound) when
// one applies, so that front ends can choose between retrying, reporting
// and dropping without knowing the provider.
type Store interface {
	// NewReader opens the object at key for one streaming read. A read cut
	// short by the network fails; it never ends early with io.EOF.
	NewReader(ctx context.Context, key string, opts ReadOptions) (io.ReadCloser, ObjectInfo, error)

	// NewWriter starts writing the object at key. Nothing is visible until
	// Close returns nil; if ctx is done before that, Close fails and
	// nothing is left behind: no object, no partial upload.
	NewWriter(ctx context.Context, key string, opts WriteOptions) (io.WriteCloser, error)
}

// A Locator is a Store that can name its objects in full. Keys repeat
// from store to store (big.csv in two buckets); locations do not, so two
// objects are the same only when their locations are.
type Locator interface {
	// Location returns the full location of the object at key: a URL
	// such as s3://bucket/key or gs://bucket/object, or a file's
	// absolute path.
	Location(key string) string
}

// ReadOptions select what NewReader reads.
type ReadOptions struct {
	// Version, when set, reads exactly that version of the object (an S3
	// version id, a Cloud Storage generation) and fails with ErrNotFound
	// when it is gone.
	Version string
	// ETag, when set, reads the object only while its ETag is this one,
	// for stores without versions; otherwise ErrNotFound.
	ETag string
	// Offset and Length select a byte range; Length < 0 (or 0 with
	// Offset 0) means to the end.
	Offset, Length int64
}

// ObjectInfo describes an object opened for reading.
type ObjectInfo struct {
	Size    int64  // bytes in the whole object; -1 when unknown
	Version string // version id or generation; "" when the store has none
	ETag    string // entity tag; "" when the store has none
}

// WriteOptions shape what NewWriter creates.
type WriteOptions struct {
	// IfNotExists makes the write create-only: Close fails with ErrExists
	// when an object is already at the key, and leaves that object as it
	// was. Concurrent duplicate writers thus leave exactly one result.
	IfNotExists bool
	// ContentType is recorded with the object where the store keeps one.
	ContentType string
	// ContentEncoding, such as gzip, is recorded with the object where
	// the store keeps one: the object's bytes are compressed so.
	ContentEncoding string
}

// Storage error kinds.
var (
	ErrNotFound   = errors.New("object not found")
	ErrPermission = errors.New("permission denied")
	ErrExists     = errors.New("object already exists")
	ErrTransient  = errors.New("transient storage failure")
	ErrInvalidKey = errors.New("invalid object key")
	// ErrBucketNotFound is an operation on a bucket that does not exist: a
	// location given wrong, not an object gone, so it is not ErrNotFound.
	ErrBucketNotFound = errors.New("bucket not found")
)

// A BucketNotFoundError is the cause of a StoreError of kind
// ErrBucketNotFound: it names the bucket and says what to do.
type BucketNotFoundError struct {
	Bucket string
	Err    error // the store's answer
}

func (e *BucketNotFoundError) Error() string {
	return fmt.Sprintf("bucket %q does not exist: create it, or correct the name", e.Bucket)
}

func (e *BucketNotFoundError) Is(target error) bool { return target == ErrBucketNotFound }
func (e *BucketNotFoundError) Unwrap() error        { return e.Err }

// A StoreError is a failed operation on one object. errors.Is matches
// both its Kind and its cause; its text is one line.
type StoreError struct {
	Op     string // what was attempted: "read", "write"
	URL    string // the object, such as s3://bucket/key
	Kind   error  // one of the storage kinds above, or nil
	Err    error  // the cause
	Detail string // the cause in short, on one line; "" means Err's text
}

func (e *StoreError) Error() string {
	msg := e.Op + " " + e.URL + ": "
	if e.Kind != nil && !errors.Is(e.Err, e.Kind) {
		msg += e.Kind.Error() + ": "
	}
	detail := e.Detail
	if detail == "" {
		detail = e.Err.Error()
	}
	return msg + strings.Join(strings.Fields(detail), " ")
}

func (e *StoreError) Unwrap() []error {
	if e.Kind == nil {
		return []error{e.Err}
	}
	return []error{e.Kind, e.Err}
}

// Location returns the full location of the object at key in s when s is
// a Locator, and the key otherwise.
func Location(s Store, key string) string {
	if l, ok := s.(Locator); ok {
		return l.Location(key)
	}
	return key
}
