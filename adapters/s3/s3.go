// Package s3 is a compute.Store on an Amazon S3 bucket, or on any server
// that speaks the S3 protocol.
//
// A Store serves one bucket: the object s3://bucket/key is the key "key"
// of the store for "bucket". Keys are S3 object keys as they are, never
// URL-encoded: "runs/a b.csv" is written as that, not "runs/a+b.csv".
//
// New configures its client as the AWS command line does: credentials from
// the standard chain, the region from AWS_REGION or the shared config, and
// an endpoint from AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL (an emulator, a
// compatible store), addressed path-style. NewFromClient takes a client
// already made, to share it between buckets.
//
// A writer streams: it sends an object that fits in one part with a single
// PutObject, and a larger one as a multipart upload completed by Close,
// uploading up to eight parts at once (WithUploadConcurrency) while the
// next is filled. Parts are 8 MiB (WithPartSize), and grow for very large
// objects so that an upload of unknown size fits S3's 10,000 parts (see
// PartSizeAt); a writer holds at most one part more than it uploads at
// once. On any failure, and when its context is done before Close, the
// upload is aborted: no object and no incomplete upload is left. (If the
// process dies mid-upload, only a bucket lifecycle rule expiring
// incomplete multipart uploads can clean up; configure one.)
package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/momentum-run/momentum/compute"
)

// Limits of S3 multipart uploads, and this package's defaults.
const (
	MinPartSize = 5 << 20 // bytes; S3 refuses smaller parts, but for the last
	MaxPartSize = 5 << 30 // bytes
	MaxParts    = 10000   // parts in one upload

	MaxObjectSize = 5 << 40 // bytes; S3's largest object

	DefaultPartSize          = 8 << 20 // bytes: the size of the first parts
	DefaultUploadConcurrency = 8       // parts a writer uploads at once

	// A writer's parts keep their first size for growAfter parts, then
	// double every growEvery parts (PartSizeAt).
	growAfter = 2000
	growEvery = 800

	// maxAttempts bounds the SDK's standard retryer when the environment
	// sets no AWS_MAX_ATTEMPTS: S3 asks clients to back off and retry on
	// 503 SlowDown, and three attempts are few under load.
	maxAttempts = 5
	// abortTimeout bounds the cleanup of a failed upload, which runs after
	// the writer's context may be done.
	abortTimeout = time.Minute
	maxKeyLen    = 1024 // bytes of UTF-8
)

// Store reads and writes the objects of one bucket. It is safe for
// concurrent use. Its zero value is not usable: use New or NewFromClient.
type Store struct {
	client      *s3.Client
	bucket      string
	partSize    int // bytes in each of the first parts of a multipart upload
	concurrency int // parts a writer uploads at once
	maxParts    int // MaxParts; less in tests

	growAfter, growEvery int // the part size schedule's; less in tests

	// noPartCopy is set once the server has answered that it does not
	// implement UploadPartCopy: Compose then streams at once.
	noPartCopy atomic.Bool
}

var (
	_ compute.Store   = (*Store)(nil)
	_ compute.Locator = (*Store)(nil)
)

// An Option tunes a Store.
type Option func(*Store)

// WithPartSize sets the size of the first parts a writer uploads, in
// bytes, within [MinPartSize, MaxPartSize]; default DefaultPartSize.
// Parts grow from there as PartSizeAt says, so that any object S3 takes
// fits in MaxParts parts.
func WithPartSize(n int) Option {
	return func(s *Store) { s.partSize = min(max(n, MinPartSize), MaxPartSize) }
}

// WithUploadConcurrency sets how many parts a writer uploads at once, at
// least 1; default DefaultUploadConcurrency. A writer holds one part
// buffer more than that, the one it fills: (n+1) × the part size of
// memory, 72 MiB at the defaults.
func WithUploadConcurrency(n int) Option {
	return func(s *Store) { s.concurrency = max(n, 1) }
}

// PartSizeAt is the size in bytes of part n (from 1) of a multipart upload
// whose first parts have base bytes: base for the first 2,000 parts, then
// doubling every 800 parts, up to MaxPartSize. The schedule is fixed in
// advance, as the object's size is not known, and keeps the parts, and so
// the memory a writer holds, small for the sizes most objects have, while
// MaxParts parts still hold MaxObjectSize from any base: at 8 MiB, parts
// are 8 MiB up to 15.6 GiB, 16 MiB up to 28 GiB, 32 MiB up to 53 GiB,
// 64 MiB up to 103 GiB and 128 MiB up to 203 GiB, and 10,000 parts hold
// 10 TiB.
func PartSizeAt(base, n int) int { return partSizeAt(base, n, growAfter, growEvery) }

func partSizeAt(base, n, after, every int) int {
	if n <= after {
		return base
	}
	k := (n-after-1)/every + 1
	if k > 20 || base<<k > MaxPartSize {
		return MaxPartSize
	}
	return base << k
}

// New returns a store for bucket with a client configured from the
// environment (config.LoadDefaultConfig). When an endpoint is configured
// (AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL or endpoint_url in the shared
// config) the client addresses buckets path-style, as emulators and most
// compatible stores require.
func New(ctx context.Context, bucket string, opts ...Option) (*Store, error) {
	if bucket == "" {
		return nil, errors.New("s3: no bucket")
	}
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("s3: load AWS config: %w", err)
	}
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		if o.BaseEndpoint != nil {
			o.UsePathStyle = true
		}
		// The SDK would log to stderr, which is the CLI's, each time a
		// server (many S3-compatible ones) sends no checksum to validate.
		o.DisableLogOutputChecksumValidationSkipped = true
		if cfg.RetryMaxAttempts == 0 {
			o.RetryMaxAttempts = maxAttempts
		}
	})
	return NewFromClient(client, bucket, opts...), nil
}

// NewFromClient returns a store for bucket that uses client.
func NewFromClient(client *s3.Client, bucket string, opts ...Option) *Store {
	s := &Store{client: client, bucket: bucket, partSize: DefaultPartSize, concurrency: DefaultUploadConcurrency,
		maxParts: MaxParts, growAfter: growAfter, growEvery: growEvery}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Location returns the s3:// URL of the object at key, for
// compute.Locator.
func (s *Store) Location(key string) string { return "s3://" + s.bucket + "/" + key }

// checkKey refuses keys that S3 would: empty, longer than 1024 bytes, or
// not UTF-8.
func (s *Store) checkKey(key string) error {
	if key == "" || len(key) > maxKeyLen || !utf8.ValidString(key) {
		return fmt.Errorf("%w: s3://%s/%q: want 1 to %d bytes of UTF-8", compute.ErrInvalidKey, s.bucket, key, maxKeyLen)
	}
	return nil
}

// NewReader opens the object at key with GetObject. The body is streamed
// from the response; a connection that ends before the response's
// Content-Length fails the read with io.ErrUnexpectedEOF (and
// compute.ErrTransient). A Version reads that version id; an ETag sends
// If-Match, and a mismatch is compute.ErrNotFound. Offset and Length send
// a Range; ObjectInfo.Size is still the whole object's, from
// Content-Range. A range that starts at or past the end reads nothing, as
// does Length 0 with an Offset (a HeadObject then checks the object).
func (s *Store) NewReader(ctx context.Context, key string, o compute.ReadOptions) (io.ReadCloser, compute.ObjectInfo, error) {
	info := compute.ObjectInfo{Size: -1}
	if err := s.checkKey(key); err != nil {
		return nil, info, err
	}
	if o.Offset < 0 {
		return nil, info, fmt.Errorf("s3: read s3://%s/%s: negative offset %d", s.bucket, key, o.Offset)
	}
	if o.Length == 0 && o.Offset > 0 {
		// Zero bytes from an offset: only the object's existence and
		// description are wanted.
		info, err := s.stat(ctx, key, o)
		if err != nil {
			return nil, info, err
		}
		return io.NopCloser(strings.NewReader("")), info, nil
	}
	in := &s3.GetObjectInput{Bucket: &s.bucket, Key: &key}
	if o.Version != "" {
		in.VersionId = &o.Version
	}
	if o.ETag != "" {
		in.IfMatch = &o.ETag
	}
	ranged := o.Offset > 0 || o.Length > 0
	if ranged {
		r := fmt.Sprintf("bytes=%d-", o.Offset)
		if o.Length > 0 {
			r += strconv.FormatInt(o.Offset+o.Length-1, 10)
		}
		in.Range = &r
	}
	out, err := s.client.GetObject(ctx, in)
	if err != nil {
		if statusOf(err) == 416 {
			// S3 refuses a range that starts at or past the end, also of an
			// empty object; that is an empty read.
			info, serr := s.stat(ctx, key, o)
			if serr == nil && o.Offset >= info.Size {
				return io.NopCloser(strings.NewReader("")), info, nil
			}
		}
		return nil, info, s.wrap("read", key, err, compute.ErrNotFound)
	}
	info.Version = aws.ToString(out.VersionId)
	info.ETag = aws.ToString(out.ETag)
	length := int64(-1)
	if out.ContentLength != nil {
		length = *out.ContentLength
	}
	var rc io.ReadCloser = &body{rc: out.Body, left: length, store: s, key: key}
	switch {
	case out.ContentRange != nil:
		info.Size = totalSize(*out.ContentRange)
	case ranged && o.Offset > 0:
		rc.Close()
		return nil, info, fmt.Errorf("s3: read s3://%s/%s: the server ignored the range %s", s.bucket, key, *in.Range)
	default:
		// The whole object, even when a range from 0 was asked for.
		info.Size = length
		if o.Length > 0 {
			rc = readCloser{io.LimitReader(rc, o.Length), rc}
		}
	}
	return rc, info, nil
}

// stat describes the object at key with HeadObject, honouring o's Version
// and ETag.
func (s *Store) stat(ctx context.Context, key string, o compute.ReadOptions) (compute.ObjectInfo, error) {
	in := &s3.HeadObjectInput{Bucket: &s.bucket, Key: &key}
	if o.Version != "" {
		in.VersionId = &o.Version
	}
	if o.ETag != "" {
		in.IfMatch = &o.ETag
	}
	out, err := s.client.HeadObject(ctx, in)
	if err != nil {
		return compute.ObjectInfo{Size: -1}, s.wrap("read", key, err, compute.ErrNotFound)
	}
	return compute.ObjectInfo{
		Size:    aws.ToInt64(out.ContentLength),
		Version: aws.ToString(out.VersionId),
		ETag:    aws.ToString(out.ETag),
	}, nil
}

// totalSize is the object size in a Content-Range value such as
// "bytes 0-99/1234", or -1 when it is "*" or unreadable.
func totalSize(contentRange string) int64 {
	_, total, ok := strings.Cut(contentRange, "/")
	n, err := strconv.ParseInt(total, 10, 64)
	if !ok || err != nil {
		return -1
	}
	return n
}

// body is a GetObject response body that fails, rather than ends, when the
// connection delivers fewer bytes than the response announced.
type body struct {
	rc    io.ReadCloser
	left  int64 // bytes still due; negative when unknown
	store *Store
	key   string
}

func (b *body) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if b.left >= 0 {
		b.left -= int64(n)
		if err == io.EOF && b.left > 0 {
			err = fmt.Errorf("body ended %d bytes short: %w", b.left, io.ErrUnexpectedEOF)
		}
	}
	if err != nil && err != io.EOF {
		err = b.store.wrap("read", b.key, err, compute.ErrNotFound)
	}
	return n, err
}

func (b *body) Close() error { return b.rc.Close() }

type readCloser struct {
	io.Reader
	io.Closer
}

// NewWriter starts writing the object at key. Nothing is sent until the
// first part is full; see Writer.
func (s *Store) NewWriter(ctx context.Context, key string, o compute.WriteOptions) (io.WriteCloser, error) {
	if err := s.checkKey(key); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("s3: write s3://%s/%s: %w", s.bucket, key, err)
	}
	w := &Writer{s: s, ctx: ctx, key: key, opts: o, nbufs: 1,
		free: make(chan []byte, s.concurrency+1), slots: make(chan struct{}, s.concurrency)}
	w.upCtx, w.cancelUp = context.WithCancelCause(ctx)
	// The callback may run at once, in its own goroutine, if ctx is done
	// already: it waits until w.stop, which fail calls, is set.
	ready := make(chan struct{})
	w.stop = context.AfterFunc(ctx, func() {
		<-ready
		w.fail(s.wrap("write", key, context.Cause(ctx), compute.ErrExists))
	})
	close(ready)
	return w, nil
}

// Writer writes one object. Write fills a part buffer; when more data
// comes for a full buffer, the writer starts a multipart upload (the
// first time), hands the part to a goroutine that uploads it, waiting
// while the store's concurrency of parts are in flight, and goes on in a
// free buffer. Close sends what remains: with PutObject if the object
// fits in one part, else as the last part, and then completes the upload.
//
// Memory is bounded by one buffer more than the store's concurrency, each
// of the current part size (PartSizeAt). The first buffer grows as data
// comes, so small objects take little.
//
// Any failure, and the context's end before Close, aborts the multipart
// upload once its parts in flight have stopped; Write and Close then
// return the first failure. A Writer is not safe for concurrent use.
type Writer struct {
	s    *Store
	ctx  context.Context // the caller's: done before Close means abort
	key  string
	opts compute.WriteOptions

	buf    []byte        // the part being filled, at most partLimit bytes
	free   chan []byte   // buffers back from part uploads
	slots  chan struct{} // one per part in flight
	nbufs  int           // buffers allocated, at most concurrency+1
	part   int32         // parts handed to uploads
	closed bool

	upCtx    context.Context // part uploads: ends with ctx or on failure
	cancelUp context.CancelCauseFunc
	stop     func() bool // unregisters the abort when ctx is done

	abortOnce sync.Once
	uploads   sync.WaitGroup // part uploads in flight
	failed    atomic.Bool    // w.err is set: lets Write check without the lock

	mu       sync.Mutex
	uploadID string                // "" until a multipart upload is created
	parts    []types.CompletedPart // by part number - 1
	err      error                 // the first failure
	abortErr error                 // from AbortMultipartUpload
}

// Write buffers p, uploading full parts as it goes.
func (w *Writer) Write(p []byte) (int, error) {
	if w.closed {
		return 0, fmt.Errorf("s3: write s3://%s/%s: writer closed", w.s.bucket, w.key)
	}
	if w.failed.Load() {
		// fail waits for the abort under way, so that a failed Write
		// means no upload is left.
		return 0, w.fail(w.failure())
	}
	n := 0
	for len(p) > 0 {
		limit := w.partLimit()
		if len(w.buf) == limit {
			if err := w.flush(); err != nil {
				return n, err
			}
			continue
		}
		k := min(len(p), limit-len(w.buf))
		w.grow(k, limit)
		w.buf = append(w.buf, p[:k]...)
		p = p[k:]
		n += k
	}
	return n, nil
}

// partLimit is the size of the part being filled.
func (w *Writer) partLimit() int {
	return partSizeAt(w.s.partSize, int(w.part)+1, w.s.growAfter, w.s.growEvery)
}

// grow makes room for k more bytes in the buffer, doubling it up to
// limit.
func (w *Writer) grow(k, limit int) {
	if cap(w.buf)-len(w.buf) >= k {
		return
	}
	b := make([]byte, len(w.buf), min(max(2*cap(w.buf), len(w.buf)+k, 64<<10), limit))
	copy(b, w.buf)
	w.buf = b
}

// flush uploads the full buffer as the next part and takes a free buffer.
// It is called only when more data is coming, so that data will be one
// more part at least.
func (w *Writer) flush() error {
	if int(w.part)+2 > w.s.maxParts {
		var size int64
		for n := 1; n <= w.s.maxParts; n++ {
			size += int64(partSizeAt(w.s.partSize, n, w.s.growAfter, w.s.growEvery))
		}
		return w.fail(fmt.Errorf("s3: write s3://%s/%s: object larger than %d parts (%d bytes)",
			w.s.bucket, w.key, w.s.maxParts, size))
	}
	if w.uploadID == "" {
		if err := w.create(); err != nil {
			return err
		}
	}
	if err := w.startPart(); err != nil {
		return err
	}
	if w.nbufs <= w.s.concurrency {
		w.nbufs++
		w.buf = make([]byte, 0, w.partLimit())
		return nil
	}
	select {
	case w.buf = <-w.free:
		return nil // grown by Write if the parts have grown
	case <-w.upCtx.Done():
		return w.fail(w.s.wrap("write", w.key, context.Cause(w.upCtx), compute.ErrExists))
	}
}

// create starts the multipart upload.
func (w *Writer) create() error {
	in := &s3.CreateMultipartUploadInput{
		Bucket:            &w.s.bucket,
		Key:               &w.key,
		ChecksumAlgorithm: types.ChecksumAlgorithmCrc32,
	}
	if w.opts.ContentType != "" {
		in.ContentType = &w.opts.ContentType
	}
	if w.opts.ContentEncoding != "" {
		in.ContentEncoding = &w.opts.ContentEncoding
	}
	out, err := w.s.client.CreateMultipartUpload(w.ctx, in)
	if err != nil {
		return w.fail(w.s.wrap("write", w.key, err, compute.ErrExists))
	}
	id := aws.ToString(out.UploadId)
	w.mu.Lock()
	err = w.err
	if err == nil {
		w.uploadID = id
	}
	w.mu.Unlock()
	if err != nil {
		// The writer failed (its context ended) while the upload was being
		// created, so the abort did not know of it.
		w.abortUpload(id)
		return err
	}
	return nil
}

// startPart waits until fewer than the store's concurrency of parts are
// in flight, then hands the buffer to a goroutine that uploads it as the
// next part, unless the writer has failed.
func (w *Writer) startPart() error {
	select {
	case w.slots <- struct{}{}:
	case <-w.upCtx.Done():
		return w.fail(w.s.wrap("write", w.key, context.Cause(w.upCtx), compute.ErrExists))
	}
	w.mu.Lock()
	if err := w.err; err != nil {
		w.mu.Unlock()
		<-w.slots
		return w.fail(err)
	}
	w.part++
	w.parts = append(w.parts, types.CompletedPart{})
	w.uploads.Add(1) // before abort can Wait: fail sets w.err under w.mu first
	w.mu.Unlock()
	go w.uploadPart(w.uploadID, w.part, w.buf)
	w.buf = nil
	return nil
}

func (w *Writer) uploadPart(id string, n int32, buf []byte) {
	out, err := w.s.client.UploadPart(w.upCtx, &s3.UploadPartInput{
		Bucket:            &w.s.bucket,
		Key:               &w.key,
		UploadId:          &id,
		PartNumber:        &n,
		Body:              bytes.NewReader(buf),
		ContentLength:     aws.Int64(int64(len(buf))),
		ChecksumAlgorithm: types.ChecksumAlgorithmCrc32,
	})
	if err != nil {
		// Recorded before the buffer and the slot are given back, so that
		// a Write waiting for them fails, and before Done, so that Close,
		// once its Wait returns, sees the failure rather than completing
		// without this part.
		err = w.record(w.s.wrap(fmt.Sprintf("write part %d of", n), w.key, err, compute.ErrExists))
	}
	w.free <- buf[:0]
	<-w.slots
	if err != nil {
		w.uploads.Done()
		w.fail(err)
		return
	}
	w.mu.Lock()
	w.parts[n-1] = types.CompletedPart{PartNumber: &n, ETag: out.ETag, ChecksumCRC32: out.ChecksumCRC32}
	w.mu.Unlock()
	w.uploads.Done()
}

// Close commits the object: a single PutObject for an object of one part,
// else the last part and CompleteMultipartUpload. With IfNotExists both
// send If-None-Match: *, and an object already at the key fails Close with
// compute.ErrExists. If the context is done, or anything failed, Close
// aborts the upload and returns the first failure.
func (w *Writer) Close() error {
	if w.closed {
		return fmt.Errorf("s3: close s3://%s/%s: writer already closed", w.s.bucket, w.key)
	}
	w.closed = true
	defer w.release()
	w.stop()
	if w.ctx.Err() != nil {
		// The abort has started on its own, or starts here; wait for it.
		return w.fail(w.s.wrap("write", w.key, context.Cause(w.ctx), compute.ErrExists))
	}
	if err := w.failure(); err != nil { // a Write failed
		return w.fail(err)
	}
	if w.uploadID == "" {
		err := w.put()
		w.buf = nil
		if err != nil {
			return w.fail(err)
		}
		return nil
	}
	if err := w.startPart(); err != nil { // the last part: never empty
		return w.fail(err)
	}
	w.uploads.Wait()
	if err := w.failure(); err != nil {
		return w.fail(err)
	}
	in := &s3.CompleteMultipartUploadInput{
		Bucket:          &w.s.bucket,
		Key:             &w.key,
		UploadId:        &w.uploadID,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: w.parts},
	}
	if w.opts.IfNotExists {
		in.IfNoneMatch = aws.String("*")
	}
	if _, err := w.s.client.CompleteMultipartUpload(w.ctx, in); err != nil {
		return w.fail(w.s.wrap("write", w.key, err, compute.ErrExists))
	}
	return nil
}

// release drops the buffers and ends the part uploads' context. Every
// path through Close has waited for the part uploads by then.
func (w *Writer) release() {
	w.cancelUp(errors.New("writer closed"))
	w.buf, w.free = nil, nil
}

// put writes the buffered object with one request.
func (w *Writer) put() error {
	in := &s3.PutObjectInput{
		Bucket:        &w.s.bucket,
		Key:           &w.key,
		Body:          bytes.NewReader(w.buf),
		ContentLength: aws.Int64(int64(len(w.buf))),
	}
	if w.opts.ContentType != "" {
		in.ContentType = &w.opts.ContentType
	}
	if w.opts.ContentEncoding != "" {
		in.ContentEncoding = &w.opts.ContentEncoding
	}
	if w.opts.IfNotExists {
		in.IfNoneMatch = aws.String("*")
	}
	if _, err := w.s.client.PutObject(w.ctx, in); err != nil {
		return w.s.wrap("write", w.key, err, compute.ErrExists)
	}
	return nil
}

// fail records err as the writer's failure unless one came first, aborts
// the upload (once, waiting if another goroutine is at it) and returns
// the first failure.
func (w *Writer) fail(err error) error {
	w.record(err)
	w.stop()
	w.abortOnce.Do(w.abort)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.abortErr != nil {
		return errors.Join(w.err, w.abortErr)
	}
	return w.err
}

// record records err as the writer's failure unless one came first, and
// returns the first.
func (w *Writer) record(err error) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == nil {
		w.err = err
		w.failed.Store(true)
	}
	return w.err
}

// failure is the writer's first failure, or nil.
func (w *Writer) failure() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// abort stops the part uploads, waits for them and aborts the multipart
// upload, so that no part lands after it. No part starts once w.err is
// set.
func (w *Writer) abort() {
	w.mu.Lock()
	id, cause := w.uploadID, w.err
	w.mu.Unlock()
	w.cancelUp(cause)
	w.uploads.Wait()
	if id == "" {
		return
	}
	if err := w.abortUpload(id); err != nil {
		w.mu.Lock()
		w.abortErr = err
		w.mu.Unlock()
	}
}

// abortUpload aborts the multipart upload id, also when the writer's
// context is done.
func (w *Writer) abortUpload(id string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(w.ctx), abortTimeout)
	defer cancel()
	_, err := w.s.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{
		Bucket: &w.s.bucket, Key: &w.key, UploadId: &id,
	})
	if err != nil && statusOf(err) != 404 { // 404 NoSuchUpload: gone already
		return fmt.Errorf("s3: abort upload %s of s3://%s/%s; it is left behind: %w", id, w.s.bucket, w.key, err)
	}
	return nil
}

// wrap names the operation and object in err and adds the storage kind
// that applies; precondition is the kind of a failed precondition
// (compute.ErrNotFound for a read with an ETag, compute.ErrExists for a
// create-only write).
func (s *Store) wrap(op, key string, err error, precondition error) error {
	if err == nil {
		return nil
	}
	var se *compute.StoreError
	if errors.As(err, &se) {
		return err
	}
	url := s.Location(key)
	var ae smithy.APIError
	if errors.As(err, &ae) && ae.ErrorCode() == "NoSuchBucket" {
		return &compute.StoreError{Op: op, URL: url, Kind: compute.ErrBucketNotFound, Err: &compute.BucketNotFoundError{Bucket: s.bucket, Err: err}}
	}
	return &compute.StoreError{Op: op, URL: url, Kind: kind(err, precondition), Err: err, Detail: detail(err)}
}

// detail is the short form of an SDK error.
func detail(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		d := ae.ErrorCode()
		if m := strings.TrimSpace(ae.ErrorMessage()); m != "" {
			d += ": " + m
		}
		if code := statusOf(err); code != 0 {
			d += fmt.Sprintf(" (HTTP %d)", code)
		}
		return d
	}
	return err.Error()
}

// kind is the storage kind of an SDK or network error, or nil.
func kind(err error, precondition error) error {
	switch {
	case errors.Is(err, compute.ErrNotFound), errors.Is(err, compute.ErrPermission),
		errors.Is(err, compute.ErrExists), errors.Is(err, compute.ErrTransient),
		errors.Is(err, compute.ErrInvalidKey), errors.Is(err, compute.ErrBucketNotFound):
		return nil // has one already
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return nil // the caller's choice, not the store's state
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "NoSuchKey", "NotFound", "NoSuchVersion":
			return compute.ErrNotFound
		case "NoSuchBucket":
			return compute.ErrBucketNotFound
		case "AccessDenied", "AllAccessDisabled", "InvalidAccessKeyId", "SignatureDoesNotMatch",
			"ExpiredToken", "InvalidToken":
			return compute.ErrPermission
		case "PreconditionFailed", "ConditionalRequestConflict":
			return precondition
		case "SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", "OperationAborted":
			return compute.ErrTransient
		}
	}
	switch code := statusOf(err); {
	case code == 404:
		return compute.ErrNotFound
	case code == 403:
		return compute.ErrPermission
	case code == 412:
		return precondition
	case code == 408, code == 429, code >= 500:
		return compute.ErrTransient
	}
	if retry.IsErrorRetryables(retry.DefaultRetryables).IsErrorRetryable(err) == aws.TrueTernary ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return compute.ErrTransient
	}
	return nil
}

// statusOf is the HTTP status of an SDK error's response, or 0.
func statusOf(err error) int {
	var re interface{ HTTPStatusCode() int }
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}
