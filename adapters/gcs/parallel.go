package gcs

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"maps"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"cloud.google.com/go/storage"

	"github.com/momentum-run/momentum/compute"
)

// TempPrefix is where parallel uploads keep their temporary objects, at
// the root of the bucket written: the parts of an upload and the
// composites of its parts, as TempPrefix + ID + "/part-00001" and
// "/compose-1-00000", where ID is random for each upload; each carries the
// metadata momentum-target, the key written. A writer deletes them when it
// is done, whether it succeeded or not; only a process that dies
// mid-upload leaves some, for a lifecycle rule on the prefix to delete.
// A parallel upload thus needs storage.objects.delete on the prefix (such
// as roles/storage.objectUser under an IAM condition on it) besides
// storage.objects.create.
const TempPrefix = ".momentum-upload/"

// cleanupTimeout bounds the deletion of an upload's temporary objects,
// which runs after the writer's context may be done.
const cleanupTimeout = time.Minute

// answerGrace is how long a request that has been sent whole may still
// take to be answered once the writer stops: the server may be committing
// it, and its answer tells whether it made an object to delete. It is
// short beside a shutdown's grace (Cloud Run gives 10 s).
const answerGrace = 3 * time.Second

// Whether a server honours a compose's deleteSourceObjects.
const (
	sourcesUnknown int32 = iota
	sourcesHonoured
	sourcesIgnored
)

// Whether a store may delete temporary objects.
const (
	deletesUnknown int32 = iota
	deletesAllowed
	deletesRefused
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// newParallelWriter starts a parallel upload of the object at key.
func (s *Store) newParallelWriter(ctx context.Context, key string, o compute.WriteOptions) (*ParallelWriter, error) {
	if err := ctx.Err(); err != nil {
		return nil, s.fail("write", key, err, true)
	}
	w := &ParallelWriter{s: s, ctx: ctx, key: key, opts: o, id: fmt.Sprintf("%016x", rand.Uint64()), nbufs: 1,
		free: make(chan []byte, s.concurrency+1), slots: make(chan struct{}, s.concurrency), temps: map[string]int64{}}
	w.upCtx, w.cancelUp = context.WithCancelCause(ctx)
	// The callback may run as soon as it is registered, in its own
	// goroutine: it waits until w.stop, which fail calls, is set.
	ready := make(chan struct{})
	w.stop = context.AfterFunc(ctx, func() {
		<-ready
		w.fail(s.fail("write", key, context.Cause(ctx), true))
	})
	close(ready)
	return w, nil
}

// ParallelWriter writes one object as a parallel composite upload. Write
// fills a part buffer; when more data comes for a full buffer, the writer
// hands the part to a goroutine that uploads it as a temporary object
// (see TempPrefix) in one request, waiting while the store's concurrency
// of parts are in flight, and goes on in a free buffer. Close uploads the
// last part and composes the parts into the object, 32 at a time and in
// rounds through temporary composites when there are more than 32, the
// store's concurrency of composes at once, each deleting its sources. The
// last compose is create-only with WriteOptions.IfNotExists and carries
// the CRC32C of all the bytes written, which Cloud Storage checks before
// it makes the object. An object that fits in one part is sent by Close
// in one request to its key, as it is.
//
// Memory is bounded by one part buffer more than the store's concurrency.
// The first buffer grows as data comes, so small objects take little.
//
// Any failure, and the context's end before Close, stops the requests in
// flight and deletes every temporary object the upload made; Write and
// Close then return the first failure. (A request sent whole is given a
// while to be answered first, as the server may be making its object:
// the answer says which generation to delete.) A part's upload is retried
// on transient failures from the part in memory. A ParallelWriter is not
// safe for concurrent use.
//
// Before its first part, the writer makes sure that the store may delete
// objects under TempPrefix. If it may not, the writer goes on as a
// resumable upload (a Writer), and so do the store's later writers.
//
// The object is a composite object when it took more than one part:
// Cloud Storage gives it a CRC32C but no MD5 hash.
type ParallelWriter struct {
	s    *Store
	ctx  context.Context // the caller's: done before Close means abort
	key  string
	opts compute.WriteOptions
	id   string // names the temporary objects

	buf    []byte        // the part being filled, at most partSize bytes
	free   chan []byte   // buffers back from part uploads
	slots  chan struct{} // one per request in flight
	nbufs  int           // buffers allocated, at most concurrency+1
	crc    uint32        // CRC32C of all bytes written
	closed bool
	stream *Writer // the resumable upload gone on with, when temporary objects cannot be deleted

	upCtx    context.Context // requests: ends with ctx or on failure
	cancelUp context.CancelCauseFunc
	stop     func() bool // unregisters the abort when ctx is done

	abortOnce sync.Once
	requests  sync.WaitGroup // part uploads and composes in flight
	failed    atomic.Bool    // w.err is set: lets Write check without the lock

	mu       sync.Mutex
	parts    []temp           // by part number - 1; a generation once uploaded
	temps    map[string]int64 // temporary objects that may exist: generation, or 0
	err      error            // the first failure
	abortErr error            // from deleting the temporary objects
}

// temp is a temporary object.
type temp struct {
	name string
	gen  int64
}

// Write buffers p, uploading full parts as it goes.
func (w *ParallelWriter) Write(p []byte) (int, error) {
	if w.stream != nil {
		return w.stream.Write(p)
	}
	if w.closed {
		return 0, fmt.Errorf("write %s: writer closed", w.s.URL(w.key))
	}
	if w.failed.Load() {
		// fail waits for the clean-up under way, so that a failed Write
		// means nothing is left.
		return 0, w.fail(w.failure())
	}
	if w.ctx.Err() != nil {
		return 0, w.fail(w.s.fail("write", w.key, context.Cause(w.ctx), true))
	}
	n := 0
	for len(p) > 0 {
		if len(w.buf) == w.s.partSize {
			if err := w.flush(); err != nil {
				return n, err
			}
			if w.stream != nil {
				m, err := w.stream.Write(p)
				return n + m, err
			}
		}
		k := min(len(p), w.s.partSize-len(w.buf))
		w.grow(k)
		w.buf = append(w.buf, p[:k]...)
		w.crc = crc32.Update(w.crc, castagnoli, p[:k])
		p = p[k:]
		n += k
	}
	return n, nil
}

// grow makes room for k more bytes in the buffer, doubling it up to the
// part size.
func (w *ParallelWriter) grow(k int) {
	if cap(w.buf)-len(w.buf) >= k {
		return
	}
	b := make([]byte, len(w.buf), min(max(2*cap(w.buf), len(w.buf)+k, 64<<10), w.s.partSize))
	copy(b, w.buf)
	w.buf = b
}

// flush uploads the full buffer as the next part and takes a free buffer.
// It is called only when more data is coming, so that data will be one
// more part at least. Before the first part, it makes sure that the
// temporary objects can be deleted; if not, the writer goes on as a
// resumable upload.
func (w *ParallelWriter) flush() error {
	if len(w.parts) == 0 && !w.s.mayDelete(w.upCtx, w.tempName("part-00001")) {
		return w.resume()
	}
	if err := w.startPart(); err != nil {
		return err
	}
	if w.nbufs <= w.s.concurrency {
		w.nbufs++
		w.buf = make([]byte, 0, w.s.partSize)
		return nil
	}
	select {
	case w.buf = <-w.free:
		return nil
	case <-w.upCtx.Done():
		return w.fail(w.cause())
	}
}

// mayDelete reports whether the store may delete temporary objects,
// found out once by deleting name, which does not exist: Cloud Storage
// answers 404 if the delete is allowed, 403 if not. It assumes so while
// it cannot tell.
func (s *Store) mayDelete(ctx context.Context, name string) bool {
	switch s.deletes.Load() {
	case deletesAllowed:
		return true
	case deletesRefused:
		return false
	}
	err := s.temp(name).Delete(ctx)
	switch {
	case err == nil, errors.Is(err, storage.ErrObjectNotExist):
		s.deletes.Store(deletesAllowed)
	case kindOf(err, false) == compute.ErrPermission:
		s.deletes.Store(deletesRefused)
		return false
	}
	return true
}

// resume goes on as a resumable upload of what is buffered and all that
// follows.
func (w *ParallelWriter) resume() error {
	w.stream = w.s.newResumableWriter(w.ctx, w.key, w.opts)
	buf := w.buf
	w.buf, w.free = nil, nil
	_, err := w.stream.Write(buf)
	return err
}

// startPart hands the buffer to a goroutine that uploads it as the next
// part.
func (w *ParallelWriter) startPart() error {
	buf := w.buf
	w.buf = nil
	w.mu.Lock()
	n := len(w.parts) + 1
	name := w.tempName(fmt.Sprintf("part-%05d", n))
	w.parts = append(w.parts, temp{name: name})
	w.mu.Unlock()
	return w.launch(name, func() error {
		attrs, err := w.s.upload(w.upCtx, w.s.temp(name), buf, content{}, map[string]string{"momentum-target": w.key})
		if err != nil {
			// Recorded before the buffer is given back, so that a Write
			// waiting for it fails.
			err = w.record(w.s.fail(fmt.Sprintf("write part %d of", n), w.key, err, false))
		}
		w.free <- buf[:0]
		if err != nil {
			return err
		}
		w.mu.Lock()
		w.parts[n-1].gen = attrs.Generation
		w.temps[name] = attrs.Generation
		w.mu.Unlock()
		return nil
	})
}

// launch runs f in a goroutine once fewer than the store's concurrency of
// requests are in flight, unless the writer has failed. name is the
// temporary object f makes, recorded before f starts; f's error fails the
// writer.
func (w *ParallelWriter) launch(name string, f func() error) error {
	select {
	case w.slots <- struct{}{}:
	case <-w.upCtx.Done():
		return w.fail(w.cause())
	}
	w.mu.Lock()
	if err := w.err; err != nil {
		w.mu.Unlock()
		<-w.slots
		return w.fail(err)
	}
	w.temps[name] = 0
	w.requests.Add(1) // before abort can Wait: fail sets w.err under w.mu first
	w.mu.Unlock()
	go func() {
		err := f()
		if err != nil {
			// Recorded before the slot is given back, so that a Write
			// waiting for it fails, and before Done, so that Close, once
			// its Wait returns, sees the failure.
			err = w.record(err)
		}
		<-w.slots
		w.requests.Done()
		if err != nil {
			w.fail(err)
		}
	}()
	return nil
}

// Close commits the object: with one request if it fits in one part,
// else by uploading the last part and composing them all. If the context
// is done, or anything failed, Close deletes the temporary objects and
// returns the first failure.
func (w *ParallelWriter) Close() error {
	if w.stream != nil {
		w.stop()
		w.cancelUp(errors.New("writer closed"))
		return w.stream.Close()
	}
	if w.closed {
		return fmt.Errorf("write %s: writer already closed", w.s.URL(w.key))
	}
	w.closed = true
	defer w.release()
	w.stop()
	if w.ctx.Err() != nil {
		// The abort has started on its own, or starts here; wait for it.
		return w.fail(w.s.fail("write", w.key, context.Cause(w.ctx), true))
	}
	if err := w.failure(); err != nil { // a Write failed
		return w.fail(err)
	}
	if len(w.parts) == 0 {
		obj := w.s.object(w.key)
		if w.opts.IfNotExists {
			obj = obj.If(storage.Conditions{DoesNotExist: true})
		}
		_, err := w.s.upload(w.upCtx, obj, w.buf, contentOf(w.opts), nil)
		w.buf = nil
		if err != nil {
			return w.fail(w.s.fail("write", w.key, err, true))
		}
		return nil
	}
	if err := w.startPart(); err != nil { // the last part: never empty
		return err
	}
	w.requests.Wait()
	if err := w.failure(); err != nil {
		return w.fail(err)
	}
	if err := w.compose(); err != nil {
		return w.fail(err)
	}
	// The object is there: what is left to delete (sources a server kept)
	// can no longer fail the write.
	w.cleanup()
	return nil
}

// compose joins the uploaded parts into the object: in rounds of up to 32
// into temporary composites while there are more than 32, then into the
// object.
func (w *ParallelWriter) compose() error {
	w.mu.Lock()
	srcs := append([]temp(nil), w.parts...)
	w.mu.Unlock()
	limit := w.s.maxSources
	for round := 1; len(srcs) > limit; round++ {
		next := make([]temp, (len(srcs)+limit-1)/limit)
		for i := range next {
			group := srcs[i*limit : min((i+1)*limit, len(srcs))]
			name := w.tempName(fmt.Sprintf("compose-%d-%05d", round, i))
			err := w.launch(name, func() error {
				ctx, sent, done := w.s.requestContext(w.upCtx)
				defer done()
				sent()
				attrs, err := composeRun(ctx, w.s.temp(name), w.s.handles(group), content{}, nil, true)
				if err != nil {
					return w.s.fail(fmt.Sprintf("compose round %d, %s, of", round, group[0].name), w.key, err, false)
				}
				w.mu.Lock()
				next[i] = temp{name: name, gen: attrs.Generation}
				w.temps[name] = attrs.Generation
				w.mu.Unlock()
				w.consumed(group)
				return nil
			})
			if err != nil {
				return err
			}
		}
		w.requests.Wait()
		if err := w.failure(); err != nil {
			return err
		}
		srcs = next
	}
	dst := w.s.object(w.key).Retryer(storage.WithPolicy(storage.RetryAlways), storage.WithMaxAttempts(maxAttempts))
	if w.opts.IfNotExists {
		dst = dst.If(storage.Conditions{DoesNotExist: true})
	}
	ctx, sent, done := w.s.requestContext(w.upCtx)
	defer done()
	sent()
	if _, err := composeRun(ctx, dst, w.s.handles(srcs), contentOf(w.opts), &w.crc, true); err != nil {
		return w.s.fail("write", w.key, err, true)
	}
	w.consumed(srcs)
	return nil
}

// consumed notes that a compose asked to delete srcs has succeeded. The
// first time a store sees one, it deletes the first source itself to
// learn whether the server has done so.
func (w *ParallelWriter) consumed(srcs []temp) {
	switch w.s.sourcesDeleted.Load() {
	case sourcesHonoured:
		w.forget(srcs...)
	case sourcesUnknown:
		ctx, cancel := context.WithTimeout(context.WithoutCancel(w.ctx), cleanupTimeout)
		defer cancel()
		switch err := w.s.temp(srcs[0].name).Generation(srcs[0].gen).Delete(ctx); {
		case errors.Is(err, storage.ErrObjectNotExist):
			w.s.sourcesDeleted.Store(sourcesHonoured)
			w.forget(srcs...)
		case err == nil:
			w.s.sourcesDeleted.Store(sourcesIgnored)
			w.forget(srcs[0])
		}
	}
}

// forget drops temporary objects known to be gone.
func (w *ParallelWriter) forget(ts ...temp) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, t := range ts {
		delete(w.temps, t.name)
	}
}

// cleanup deletes the temporary objects that may exist, the store's
// concurrency at once, also when the writer's context is done.
func (w *ParallelWriter) cleanup() error {
	w.mu.Lock()
	temps := maps.Clone(w.temps)
	w.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(w.ctx), cleanupTimeout)
	defer cancel()
	sem := make(chan struct{}, w.s.concurrency)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for name, gen := range temps {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			obj := w.s.temp(name)
			if gen > 0 {
				obj = obj.Generation(gen)
			}
			if err := obj.Delete(ctx); err != nil && !errors.Is(err, storage.ErrObjectNotExist) {
				mu.Lock()
				errs = append(errs, w.s.fail("delete", name, err, false))
				mu.Unlock()
				return
			}
			w.forget(temp{name: name})
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		return fmt.Errorf("gcs: %d temporary objects of the upload of %s are left behind: %w", len(errs), w.s.URL(w.key), errors.Join(errs...))
	}
	return nil
}

// Abort abandons the upload and deletes its temporary objects. It is safe
// to call more than once, and after Close, where it does nothing.
func (w *ParallelWriter) Abort() {
	if w.stream != nil {
		w.stop()
		w.stream.Abort()
		return
	}
	if w.closed {
		return
	}
	w.closed = true
	w.stop()
	w.fail(w.s.fail("write", w.key, context.Canceled, true))
	w.release()
}

// release drops the buffers and ends the requests' context. Every path
// through Close has waited for the requests by then.
func (w *ParallelWriter) release() {
	w.cancelUp(errors.New("writer closed"))
	w.buf, w.free = nil, nil
}

// cause is why the requests' context ended.
func (w *ParallelWriter) cause() error {
	return w.s.fail("write", w.key, context.Cause(w.upCtx), true)
}

// fail records err as the writer's failure unless one came first, aborts
// the upload (once, waiting if another goroutine is at it) and returns
// the first failure.
func (w *ParallelWriter) fail(err error) error {
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
func (w *ParallelWriter) record(err error) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == nil {
		w.err = err
		w.failed.Store(true)
	}
	return w.err
}

// failure is the writer's first failure, or nil.
func (w *ParallelWriter) failure() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// abort stops the requests, waits for them and deletes the temporary
// objects, so that none is made after it. No request starts once w.err
// is set.
func (w *ParallelWriter) abort() {
	w.mu.Lock()
	cause := w.err
	w.mu.Unlock()
	w.cancelUp(cause)
	w.requests.Wait()
	if err := w.cleanup(); err != nil {
		w.mu.Lock()
		w.abortErr = err
		w.mu.Unlock()
	}
}

func (w *ParallelWriter) tempName(s string) string { return TempPrefix + w.id + "/" + s }

// temp returns a handle on a temporary object, whose requests may all be
// retried: no other writer uses its name.
func (s *Store) temp(name string) *storage.ObjectHandle {
	return s.client.Bucket(s.name).Object(name).Retryer(storage.WithPolicy(storage.RetryAlways), storage.WithMaxAttempts(maxAttempts))
}

// handles returns handles on temporary objects pinned to their
// generations.
func (s *Store) handles(ts []temp) []*storage.ObjectHandle {
	hs := make([]*storage.ObjectHandle, len(ts))
	for i, t := range ts {
		hs[i] = s.client.Bucket(s.name).Object(t.name).Generation(t.gen)
	}
	return hs
}

// upload writes data as the object obj in one request, with its CRC32C
// for the server to check, retrying on transient failures: the bytes are
// in memory already, so the client need not buffer them again, as it does
// for the retries of a resumable upload.
func (s *Store) upload(ctx context.Context, obj *storage.ObjectHandle, data []byte, c content, metadata map[string]string) (*storage.ObjectAttrs, error) {
	crc := crc32.Checksum(data, castagnoli)
	pause := s.retryPause
	for attempt := 1; ; attempt++ {
		attrs, err := s.uploadOnce(ctx, obj, data, crc, c, metadata)
		if err == nil {
			return attrs, nil
		}
		if attempt == maxAttempts || ctx.Err() != nil || kindOf(err, true) != compute.ErrTransient {
			return nil, err
		}
		t := time.NewTimer(pause/2 + rand.N(pause/2+1))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, err
		}
		pause = min(2*pause, 30*time.Second)
	}
}

func (s *Store) uploadOnce(ctx context.Context, obj *storage.ObjectHandle, data []byte, crc uint32, c content, metadata map[string]string) (*storage.ObjectAttrs, error) {
	ctx, sent, done := s.requestContext(ctx)
	defer done() // after a failed Write, abandons the request: never Close then
	w := obj.NewWriter(ctx)
	w.ChunkSize = 0 // one request, streamed from data
	w.ContentType, w.ContentEncoding = c.typ, c.encoding
	w.Metadata = metadata
	w.CRC32C, w.SendCRC32C = crc, true
	if _, err := w.Write(data); err != nil {
		return nil, err
	}
	// The body ends only with Close: until then the server cannot make
	// the object.
	sent()
	if err := w.Close(); err != nil {
		return nil, err
	}
	return w.Attrs(), nil
}

// requestContext returns the context of one request, which ends when ctx
// does, unless sent has been called by then: the request is then allowed
// the store's answer grace to be answered, so that the writer knows
// whether it took effect. done releases the context.
func (s *Store) requestContext(ctx context.Context) (rctx context.Context, sent, done func()) {
	rctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	var whole atomic.Bool
	stop := context.AfterFunc(ctx, func() {
		if whole.Load() {
			time.AfterFunc(s.answerGrace, func() { cancel(context.Cause(ctx)) })
			return
		}
		cancel(context.Cause(ctx))
	})
	return rctx, func() { whole.Store(true) }, func() { stop(); cancel(nil) }
}
