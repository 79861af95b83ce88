// Package gcs is a compute.Store on a Google Cloud Storage bucket.
//
// Objects are named by URLs of the form
//
//	gs://bucket/object
//
// where the object name is taken as it stands, never URL-decoded:
// gs://b/runs/100%.csv is the object "runs/100%.csv" in bucket "b". A Store
// serves one bucket and its keys are object names.
//
// Reads stream one object, or a byte range of it, pinned to the generation
// the first response came from, so a read resumed after a network failure
// never mixes two versions; ReadOptions.Version is a generation.
//
// A writer uploads parts of 8 MiB (WithPartSize), up to eight at once
// (WithUploadConcurrency), each as a temporary object under TempPrefix,
// and Close composes them into the object (a parallel composite upload;
// see ParallelWriter); an object of one part goes up in one request, as
// it is. With an upload concurrency of 1, or when the store may not
// delete objects under TempPrefix, a writer instead streams one resumable
// upload in chunks of 8 MiB (see Writer), through one connection and with
// no temporary objects. Either way memory stays
// bounded however large the object is, the object appears only when Close
// returns nil, and a failure or the writer's context ending leaves
// nothing behind.
//
// The client honours STORAGE_EMULATOR_HOST, so New reaches an emulator
// such as fake-gcs-server when it is set.
//
// Errors wrap the compute storage kinds: a missing object, bucket or
// generation is compute.ErrNotFound, 401 and 403 compute.ErrPermission, a
// create-only write that finds an object compute.ErrExists, and 408, 429,
// 5xx, timeouts, resets and reads cut short compute.ErrTransient; the
// original error stays in the chain and in the text.
package gcs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"cloud.google.com/go/storage"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/momentum-run/momentum/compute"
)

// chunkSize is the size of each request of a resumable upload, and so the
// memory a writer holds: the client buffers one chunk to resend it after a
// transient failure. Objects smaller than this go up in one request. It is
// a multiple of 256 KiB, as Cloud Storage requires.
const chunkSize = 8 << 20

// maxAttempts bounds the client's retries of a request, which are
// otherwise endless: a front end must see an outage as an error, worth a
// retry of its own (an event redelivered), rather than wait for ever.
const maxAttempts = 5

// Defaults of a Store's writers.
const (
	DefaultPartSize          = 8 << 20 // bytes in each part of a parallel upload
	DefaultUploadConcurrency = 8       // parts a writer uploads at once
	minPartSize              = 256 << 10
	maxPartSize              = 1 << 30
)

// Store reads and writes the objects of one bucket. Its methods are safe
// for concurrent use. Its zero value is not usable: use New or
// NewFromClient.
type Store struct {
	client *storage.Client
	name   string // the bucket's
	owned  bool   // Close closes client

	concurrency int           // parts a writer uploads at once; 1 streams one resumable upload
	partSize    int           // bytes in each part of a parallel upload
	maxSources  int           // of a compose: composeLimit; less in tests
	retryPause  time.Duration // before the first retry of a part's upload
	answerGrace time.Duration // answerGrace; less in tests

	// sourcesDeleted is whether the server honours a compose's request to
	// delete its sources (as Cloud Storage does and some emulators do
	// not): 0 until a writer has found out, then honoured or ignored.
	sourcesDeleted atomic.Int32
	// deletes is whether the store may delete temporary objects: 0 until
	// a writer has found out, then allowed or refused.
	deletes atomic.Int32
}

var (
	_ compute.Store   = (*Store)(nil)
	_ compute.Locator = (*Store)(nil)
)

// An Option tunes a Store.
type Option func(*config)

type config struct {
	client      []option.ClientOption
	concurrency int
	partSize    int
}

// WithClientOptions passes opts (credentials, endpoint, HTTP client) to
// the client that New makes; NewFromClient ignores them.
func WithClientOptions(opts ...option.ClientOption) Option {
	return func(c *config) { c.client = append(c.client, opts...) }
}

// WithUploadConcurrency sets how many parts a writer uploads at once, at
// least 1; default DefaultUploadConcurrency. A writer holds one part
// buffer more than that, the one it fills: (n+1) × the part size of
// memory, 72 MiB at the defaults. With 1, a writer streams one resumable
// upload instead, through one connection, holding one 8 MiB chunk and
// making no temporary objects: for a service account that may not delete
// them (see TempPrefix).
func WithUploadConcurrency(n int) Option {
	return func(c *config) { c.concurrency = max(n, 1) }
}

// WithPartSize sets the size of the parts of a parallel upload, in bytes,
// within [256 KiB, 1 GiB]; default DefaultPartSize. An object of at most
// one part is uploaded in one request.
func WithPartSize(n int) Option {
	return func(c *config) { c.partSize = min(max(n, minPartSize), maxPartSize) }
}

func newConfig(opts []Option) config {
	c := config{concurrency: DefaultUploadConcurrency, partSize: DefaultPartSize}
	for _, o := range opts {
		o(&c)
	}
	return c
}

// New returns a store for bucket, with a client of its own made by
// storage.NewClient from the options given by WithClientOptions
// (credentials, endpoint, HTTP client). Close releases it. No request is
// made: a missing bucket shows on first use.
func New(ctx context.Context, bucket string, opts ...Option) (*Store, error) {
	if bucket == "" {
		return nil, errors.New("gcs: no bucket")
	}
	c := newConfig(opts)
	// Reads use the JSON API, as every other call does, rather than the
	// client's default XML API: its errors are the same JSON errors as the
	// rest (a 404 is storage.ErrObjectNotExist), it is the API the client
	// will default to, and emulators route it by path alone, while
	// fake-gcs-server routes an XML download only when the request's Host
	// is the public host it was configured with. opts come after it, so a
	// caller may still choose storage.WithXMLReads.
	client, err := storage.NewClient(ctx, append([]option.ClientOption{storage.WithJSONReads()}, c.client...)...)
	if err != nil {
		return nil, fmt.Errorf("gcs: %w", err)
	}
	s := newStore(client, bucket, c)
	s.owned = true
	return s, nil
}

// NewFromClient returns a store for bucket that uses client, which the
// caller keeps: Close leaves it open. A client made without
// storage.WithJSONReads reads through the XML API, which works with Cloud
// Storage but not with every emulator.
func NewFromClient(client *storage.Client, bucket string, opts ...Option) *Store {
	return newStore(client, bucket, newConfig(opts))
}

func newStore(client *storage.Client, bucket string, c config) *Store {
	return &Store{client: client, name: bucket, concurrency: c.concurrency, partSize: c.partSize,
		maxSources: composeLimit, retryPause: time.Second, answerGrace: answerGrace}
}

// object returns a handle on the object at key. Handles are made per call,
// so they take up the client's retry settings as they are then.
func (s *Store) object(key string) *storage.ObjectHandle {
	return s.client.Bucket(s.name).Object(key).Retryer(storage.WithMaxAttempts(maxAttempts))
}

// Close closes the client if New made it.
func (s *Store) Close() error {
	if s.owned {
		return s.client.Close()
	}
	return nil
}

// URL returns the gs:// URL of the object at key.
func (s *Store) URL(key string) string { return "gs://" + s.name + "/" + key }

// Location is URL, for compute.Locator.
func (s *Store) Location(key string) string { return s.URL(key) }

// ParseURL splits a gs://bucket/object URL into bucket and object name.
// The name is kept as written: "%2B" stays three characters.
func ParseURL(u string) (bucket, key string, err error) {
	rest, ok := strings.CutPrefix(u, "gs://")
	if !ok {
		return "", "", fmt.Errorf("gcs: %q is not a gs:// URL", u)
	}
	bucket, key, _ = strings.Cut(rest, "/")
	if bucket == "" || key == "" {
		return "", "", fmt.Errorf("%w: %q is not gs://bucket/object", compute.ErrInvalidKey, u)
	}
	return bucket, key, nil
}

// checkKey refuses names Cloud Storage does not allow, before any request.
func (s *Store) checkKey(op, key string) error {
	var why string
	switch {
	case key == "":
		why = "empty object name"
	case len(key) > 1024:
		why = "object name longer than 1024 bytes"
	case !utf8.ValidString(key):
		why = "object name is not UTF-8"
	case strings.ContainsAny(key, "\r\n"):
		why = "object name contains a line break"
	case key == "." || key == "..":
		why = "object name is . or .."
	case strings.HasPrefix(key, ".well-known/acme-challenge/"):
		why = "object name is reserved"
	default:
		return nil
	}
	return &compute.StoreError{Op: op, URL: s.URL(key), Kind: compute.ErrInvalidKey, Err: errors.New(why)}
}

// NewReader opens the object at key, or the range of it that o selects,
// for one streaming read. ReadOptions.Version is a generation in decimal.
// With ReadOptions.ETag the object's metadata is fetched first (one more
// request) and the read goes ahead only if its ETag matches, pinned to the
// generation that ETag described; ObjectInfo.ETag is then set, and is ""
// otherwise. Pin reads with Version, which costs nothing.
func (s *Store) NewReader(ctx context.Context, key string, o compute.ReadOptions) (io.ReadCloser, compute.ObjectInfo, error) {
	info := compute.ObjectInfo{Size: -1}
	if err := s.checkKey("read", key); err != nil {
		return nil, info, err
	}
	if o.Offset < 0 {
		return nil, info, s.fail("read", key, fmt.Errorf("negative offset %d", o.Offset), false)
	}
	obj := s.object(key)
	if o.Version != "" {
		gen, err := strconv.ParseInt(o.Version, 10, 64)
		if err != nil || gen <= 0 {
			return nil, info, &compute.StoreError{Op: "read", URL: s.URL(key), Kind: compute.ErrNotFound,
				Err: fmt.Errorf("version %q is not a generation", o.Version)}
		}
		obj = obj.Generation(gen)
	}
	if o.ETag != "" {
		attrs, err := obj.Attrs(ctx)
		if err != nil {
			return nil, info, s.fail("read", key, err, false)
		}
		if attrs.Etag != o.ETag {
			return nil, info, &compute.StoreError{Op: "read", URL: s.URL(key), Kind: compute.ErrNotFound,
				Err: fmt.Errorf("object changed: ETag %s, want %s", attrs.Etag, o.ETag)}
		}
		// Should the object be replaced from here on, the generation
		// read is gone (ErrNotFound) or, with versioning, still the one
		// the ETag named.
		obj = obj.Generation(attrs.Generation)
		info.ETag = attrs.Etag
	}
	length := o.Length
	if length <= 0 {
		length = -1 // to the end
	}
	// An object stored with Content-Encoding gzip arrives decompressed
	// (Attrs.Decompressed; no size, so no ranges): the kernel sees plain
	// CSV and decompresses nothing twice. Asking for the stored bytes
	// instead (ReadCompressed) is refused by the client on JSON reads.
	r, err := obj.NewRangeReader(ctx, o.Offset, length)
	if err != nil {
		if httpStatus(err) == http.StatusRequestedRangeNotSatisfiable {
			return s.pastEnd(ctx, obj, key, o.Offset, info, err)
		}
		return nil, info, s.fail("read", key, err, false)
	}
	info.Version = strconv.FormatInt(r.Attrs.Generation, 10)
	rd := &reader{r: r, s: s, key: key, want: -1}
	if !r.Attrs.Decompressed && r.Attrs.Size >= 0 {
		// Attrs.Size is the whole object's, also for a range.
		info.Size = r.Attrs.Size
		end := r.Attrs.Size
		if length > 0 && o.Offset+length < end {
			end = o.Offset + length
		}
		rd.want = max(end-o.Offset, 0)
	}
	return rd, info, nil
}

// pastEnd answers a range that starts at or after the end of the object
// as a file does: with no bytes. Cloud Storage refuses it (416), so the
// object's size comes from its metadata.
func (s *Store) pastEnd(ctx context.Context, obj *storage.ObjectHandle, key string, off int64, info compute.ObjectInfo, rangeErr error) (io.ReadCloser, compute.ObjectInfo, error) {
	attrs, err := obj.Attrs(ctx)
	if err != nil {
		return nil, info, s.fail("read", key, err, false)
	}
	if off < attrs.Size {
		return nil, info, s.fail("read", key, rangeErr, false)
	}
	info.Size = attrs.Size
	info.Version = strconv.FormatInt(attrs.Generation, 10)
	return io.NopCloser(strings.NewReader("")), info, nil
}

// reader reads one object. The client resumes a download that breaks, from
// where it broke and at the same generation; reader adds the kinds to its
// errors and makes sure a body that ends early is never taken for the end:
// the client checks a whole object's CRC32C, reader the byte count of
// every read, ranges included.
type reader struct {
	r    *storage.Reader
	s    *Store
	key  string
	want int64 // bytes the read must yield; -1 when unknown
	got  int64
}

func (r *reader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.got += int64(n)
	switch {
	case err == nil:
		return n, nil
	case err == io.EOF:
		if r.want >= 0 && r.got != r.want {
			return n, &compute.StoreError{Op: "read", URL: r.s.URL(r.key), Kind: compute.ErrTransient,
				Err: fmt.Errorf("got %d bytes, want %d: %w", r.got, r.want, io.ErrUnexpectedEOF)}
		}
		return n, io.EOF
	}
	return n, r.s.fail("read", r.key, err, false)
}

func (r *reader) Close() error {
	if err := r.r.Close(); err != nil {
		return r.s.fail("read", r.key, err, false)
	}
	return nil
}

// NewWriter starts writing the object at key; Close commits it. The
// writer is a *ParallelWriter, or with an upload concurrency of 1, or
// when the store may not delete its temporary objects, a *Writer: a
// resumable upload. With WriteOptions.IfNotExists the request
// that commits the object carries ifGenerationMatch=0 and Close fails
// with compute.ErrExists if an object is there by then.
//
// Requests are retried on transient errors, the final one included, even
// for an overwrite, which Cloud Storage calls non-idempotent: the worst a
// retry after an ambiguous failure can do is commit these same bytes a
// second time, as rerunning the job would, so the object still ends as
// some writer's whole content. (A create-only write is retried anyway, its
// precondition making it idempotent; if its first commit landed and only
// the reply was lost, the retry reports ErrExists for the object it made.)
func (s *Store) NewWriter(ctx context.Context, key string, o compute.WriteOptions) (io.WriteCloser, error) {
	if err := s.checkKey("write", key); err != nil {
		return nil, err
	}
	if s.concurrency > 1 && s.deletes.Load() != deletesRefused {
		return s.newParallelWriter(ctx, key, o)
	}
	return s.newResumableWriter(ctx, key, o), nil
}

func (s *Store) newResumableWriter(ctx context.Context, key string, o compute.WriteOptions) *Writer {
	obj := s.object(key).Retryer(storage.WithPolicy(storage.RetryAlways), storage.WithMaxAttempts(maxAttempts))
	if o.IfNotExists {
		obj = obj.If(storage.Conditions{DoesNotExist: true})
	}
	wctx, cancel := context.WithCancel(ctx)
	w := obj.NewWriter(wctx)
	w.ChunkSize = chunkSize
	w.ContentType, w.ContentEncoding = o.ContentType, o.ContentEncoding
	return &Writer{w: w, ctx: wctx, cancel: cancel, s: s, key: key}
}

// Writer uploads one object as one resumable upload. Close commits it; a
// write error, Abort, or the context being done abandons it. It is not
// safe for concurrent use.
type Writer struct {
	w      *storage.Writer
	ctx    context.Context // the upload's; cancel ends it
	cancel context.CancelFunc
	s      *Store
	key    string
	err    error // the first failure; the upload is abandoned
	closed bool
}

// Write hands p to the upload, which sends a chunk whenever one fills;
// an error may thus surface on a later Write or on Close.
func (w *Writer) Write(p []byte) (int, error) {
	if w.closed {
		return 0, fmt.Errorf("write %s: writer closed", w.s.URL(w.key))
	}
	if w.err != nil {
		return 0, w.err
	}
	if err := w.ctx.Err(); err != nil {
		return 0, w.abandon(err)
	}
	n, err := w.w.Write(p)
	if err != nil {
		return n, w.abandon(err)
	}
	return n, nil
}

// Close finishes the upload and commits the object. After a failed Write
// or once the context is done it commits nothing and returns the failure.
func (w *Writer) Close() error {
	if w.closed {
		return fmt.Errorf("write %s: writer already closed", w.s.URL(w.key))
	}
	w.closed = true
	if w.err != nil {
		return w.err
	}
	if err := w.ctx.Err(); err != nil {
		return w.abandon(err)
	}
	err := w.w.Close()
	w.cancel()
	if err != nil {
		return w.s.fail("write", w.key, err, true)
	}
	return nil
}

// Abort abandons the upload. It is safe to call more than once, and after
// Close, where it does nothing.
func (w *Writer) Abort() {
	if w.err == nil && !w.closed {
		w.abandon(context.Canceled)
	}
	w.closed = true
}

// abandon records err and cancels the upload's context, which stops the
// upload goroutine and aborts its requests. It must never be followed by
// the storage Writer's Close: that ends the body as if complete, and the
// bytes written so far could be committed as the object.
func (w *Writer) abandon(err error) error {
	w.cancel()
	w.err = w.s.fail("write", w.key, err, true)
	return w.err
}

// fail adds the operation, the object's URL and the storage kind to err.
func (s *Store) fail(op, key string, err error, writing bool) error {
	var se *compute.StoreError
	if errors.As(err, &se) {
		return err
	}
	k := kindOf(err, writing)
	if k == compute.ErrNotFound && httpStatus(err) == http.StatusNotFound && !s.bucketExists() {
		return &compute.StoreError{Op: op, URL: s.URL(key), Kind: compute.ErrBucketNotFound, Err: &compute.BucketNotFoundError{Bucket: s.name, Err: err}}
	}
	return &compute.StoreError{Op: op, URL: s.URL(key), Kind: k, Err: err, Detail: detail(err)}
}

// bucketExists tells a missing bucket from a missing object, which Cloud
// Storage answer alike (404) on reads and uploads. It asks only after a
// 404, and reports true when it cannot tell.
func (s *Store) bucketExists() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := s.client.Bucket(s.name).Attrs(ctx)
	return !errors.Is(err, storage.ErrBucketNotExist)
}

// detail is the short form of a client error.
func detail(err error) string {
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		msg := strings.TrimSpace(ge.Message)
		if msg == "" {
			msg = strings.TrimSpace(ge.Body)
		}
		return fmt.Sprintf("HTTP %d %s", ge.Code, msg)
	}
	return err.Error()
}

// kindOf finds the compute storage kind of a client error, or nil. A 412
// is ErrExists for a write (its only precondition is that no object
// exists) and ErrNotFound for a read (the object read is no longer
// there).
func kindOf(err error, writing bool) error {
	switch {
	case errors.Is(err, storage.ErrBucketNotExist):
		return compute.ErrBucketNotFound
	case errors.Is(err, storage.ErrObjectNotExist):
		return compute.ErrNotFound
	case errors.Is(err, context.Canceled):
		return nil // the caller's choice, not the store's failure
	}
	switch code := httpStatus(err); {
	case code == http.StatusNotFound:
		return compute.ErrNotFound
	case code == http.StatusUnauthorized, code == http.StatusForbidden:
		return compute.ErrPermission
	case code == http.StatusPreconditionFailed && writing:
		return compute.ErrExists
	case code == http.StatusPreconditionFailed:
		return compute.ErrNotFound
	case code == http.StatusRequestTimeout, code == http.StatusTooManyRequests, code >= 500:
		return compute.ErrTransient
	case code != 0:
		return nil
	}
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout(),
		errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, syscall.EPIPE),
		errors.Is(err, net.ErrClosed),
		strings.Contains(err.Error(), "bad CRC on read"), // a body that ended early, or was damaged
		storage.ShouldRetry(err):
		return compute.ErrTransient
	}
	return nil
}

// httpStatus is the HTTP status of a service error, translated from the
// gRPC code for a gRPC client; 0 when err carries none.
func httpStatus(err error) int {
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		return ge.Code
	}
	var gs interface{ GRPCStatus() *status.Status }
	if errors.As(err, &gs) {
		switch gs.GRPCStatus().Code() {
		case codes.NotFound:
			return http.StatusNotFound
		case codes.PermissionDenied:
			return http.StatusForbidden
		case codes.Unauthenticated:
			return http.StatusUnauthorized
		case codes.FailedPrecondition:
			return http.StatusPreconditionFailed
		case codes.OutOfRange:
			return http.StatusRequestedRangeNotSatisfiable
		case codes.ResourceExhausted:
			return http.StatusTooManyRequests
		case codes.Unavailable, codes.Internal, codes.DeadlineExceeded:
			return http.StatusServiceUnavailable
		}
	}
	return 0
}

// composeLimit is how many objects one compose request may join.
const composeLimit = 32

// Compose writes dst as the concatenation of srcs, in order, with
// Cloud Storage's compose: no data passes through the caller. More than
// 32 sources are joined in rounds through temporary objects beside dst,
// deleted afterwards. dst is replaced if it exists, or created only if
// absent with opts.IfNotExists.
func (s *Store) Compose(ctx context.Context, dst string, srcs []string, opts compute.WriteOptions) error {
	if err := s.checkKey("write", dst); err != nil {
		return err
	}
	if len(srcs) == 0 {
		return fmt.Errorf("gcs: compose %s: no sources", s.URL(dst))
	}
	var temps []string
	defer func() {
		for _, t := range temps {
			s.object(t).Delete(context.WithoutCancel(ctx))
		}
	}()
	for round := 0; len(srcs) > composeLimit; round++ {
		var next []string
		for i := 0; i < len(srcs); i += composeLimit {
			tmp := fmt.Sprintf("%s.compose-%d-%d.tmp", dst, round, i/composeLimit)
			temps = append(temps, tmp)
			if err := s.compose(ctx, tmp, srcs[i:min(i+composeLimit, len(srcs))], compute.WriteOptions{ContentType: opts.ContentType, ContentEncoding: opts.ContentEncoding}); err != nil {
				return err
			}
			next = append(next, tmp)
		}
		srcs = next
	}
	return s.compose(ctx, dst, srcs, opts)
}

func (s *Store) compose(ctx context.Context, dst string, srcs []string, opts compute.WriteOptions) error {
	handles := make([]*storage.ObjectHandle, len(srcs))
	for i, src := range srcs {
		handles[i] = s.object(src)
	}
	obj := s.object(dst)
	if opts.IfNotExists {
		obj = obj.If(storage.Conditions{DoesNotExist: true})
	}
	if _, err := composeRun(ctx, obj, handles, contentOf(opts), nil, false); err != nil {
		// Name a missing source, which the error may not.
		for _, h := range handles {
			if _, aerr := h.Attrs(ctx); errors.Is(aerr, storage.ErrObjectNotExist) {
				return &compute.StoreError{Op: "compose", URL: s.URL(h.ObjectName()), Kind: compute.ErrNotFound, Err: aerr}
			}
		}
		return s.fail("compose", dst, err, true)
	}
	return nil
}

// content is what an object's metadata says of its bytes.
type content struct{ typ, encoding string }

func contentOf(o compute.WriteOptions) content { return content{o.ContentType, o.ContentEncoding} }

// composeRun runs one compose of srcs into dst, with dst's conditions and
// retries. crc, when set, is the CRC32C the result must have, or the
// compose is refused. With consume the sources are deleted once the
// compose succeeds, by the server (as Cloud Storage does: not kept by
// soft delete or versioning) if it honours the request.
func composeRun(ctx context.Context, dst *storage.ObjectHandle, srcs []*storage.ObjectHandle, content content, crc *uint32, consume bool) (*storage.ObjectAttrs, error) {
	c := dst.ComposerFrom(srcs...)
	c.ContentType, c.ContentEncoding = content.typ, content.encoding
	if crc != nil {
		c.CRC32C, c.SendCRC32C = *crc, true
	}
	c.DeleteSourceObjects = consume
	return c.Run(ctx)
}
