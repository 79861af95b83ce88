package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/momentum-run/momentum/compute"
)

// S3's multipart limits: every part but the last holds at least 5 MiB, a
// copied part at most 5 GiB, an upload at most 10,000 parts.
const (
	minPartSize = 5 << 20
	maxCopySize = 5 << 30
	maxParts    = 10000
)

// Compose writes dst as the concatenation of srcs, in order, as one
// multipart upload whose parts are server-side copies (UploadPartCopy) of
// the sources: their bytes do not pass through the caller. S3 refuses a
// part under 5 MiB unless it is the last, so sources, or their tails,
// shorter than that are read and sent with the next bytes, at most 5 MiB
// at a time. Each source is pinned to the ETag it had when Compose
// began. dst is replaced if it exists (created only if absent with
// opts.IfNotExists); nothing is left of a failed compose.
//
// Sources under 5 MiB in all are streamed through the caller instead,
// into a write like any other: as many bytes in memory as a writer
// holds, its parts made larger when the total needs more than MaxParts.
// So are the sources on a server that does not implement UploadPartCopy
// (it answers 501 NotImplemented, or, as gofakes3 v1.2.0 does, 411
// MissingContentLength); the Store then streams from its first such
// answer on. S3 itself copies.
func (s *Store) Compose(ctx context.Context, dst string, srcs []string, opts compute.WriteOptions) error {
	if err := s.checkKey(dst); err != nil {
		return err
	}
	if len(srcs) == 0 {
		return fmt.Errorf("s3: compose s3://%s/%s: no sources", s.bucket, dst)
	}
	infos := make([]compute.ObjectInfo, len(srcs))
	var total int64
	for i, src := range srcs {
		info, err := s.stat(ctx, src, compute.ReadOptions{})
		if err != nil {
			return err
		}
		infos[i], total = info, total+info.Size
	}
	if total >= minPartSize && !s.noPartCopy.Load() {
		unsupported, err := s.copyParts(ctx, dst, srcs, infos, total, opts)
		if !unsupported {
			return err
		}
		s.noPartCopy.Store(true)
	}
	return s.stream(ctx, dst, srcs, infos, total, opts)
}

// copyParts is Compose by UploadPartCopy. It reports whether the server
// answered that it cannot copy parts, once the upload is aborted.
func (s *Store) copyParts(ctx context.Context, dst string, srcs []string, infos []compute.ObjectInfo, total int64, opts compute.WriteOptions) (unsupported bool, err error) {
	c := &composer{s: s, ctx: ctx, dst: dst}
	in := &s3.CreateMultipartUploadInput{Bucket: &s.bucket, Key: &dst}
	if opts.ContentType != "" {
		in.ContentType = &opts.ContentType
	}
	if opts.ContentEncoding != "" {
		in.ContentEncoding = &opts.ContentEncoding
	}
	out, err := s.client.CreateMultipartUpload(ctx, in)
	if err != nil {
		return false, s.wrap("compose", dst, err, compute.ErrExists)
	}
	c.id = aws.ToString(out.UploadId)
	if err := c.run(srcs, infos, total); err != nil {
		if aerr := s.abortUploadOf(dst, c.id); aerr != nil {
			return false, errors.Join(err, aerr)
		}
		return errors.Is(err, errNoPartCopy), err
	}
	done := &s3.CompleteMultipartUploadInput{Bucket: &s.bucket, Key: &dst, UploadId: &c.id,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: c.parts}}
	if opts.IfNotExists {
		done.IfNoneMatch = aws.String("*")
	}
	if _, err := s.client.CompleteMultipartUpload(ctx, done); err != nil {
		err = s.wrap("compose", dst, err, compute.ErrExists)
		if aerr := s.abortUploadOf(dst, c.id); aerr != nil {
			err = errors.Join(err, aerr)
		}
		return false, err
	}
	return false, nil
}

// stream is Compose through the caller: it reads the sources, each
// pinned to its ETag, into one writer. The writer's parts are made large
// enough for total bytes to fit in its part limit.
func (s *Store) stream(ctx context.Context, dst string, srcs []string, infos []compute.ObjectInfo, total int64, opts compute.WriteOptions) error {
	ws := s
	if need := (total + int64(s.maxParts) - 1) / int64(s.maxParts); need > int64(s.partSize) {
		ws = NewFromClient(s.client, s.bucket, WithPartSize(int(min(need, MaxPartSize))), WithUploadConcurrency(s.concurrency))
		ws.maxParts, ws.growAfter, ws.growEvery = s.maxParts, s.growAfter, s.growEvery
	}
	pins := make([]compute.ReadOptions, len(srcs))
	for i := range srcs {
		pins[i].ETag = infos[i].ETag
	}
	return compute.CopyInto(ctx, ws, dst, opts, s, srcs, pins)
}

// errNoPartCopy marks a server's answer that it cannot copy a part.
var errNoPartCopy = errors.New("the server does not implement UploadPartCopy")

// noPartCopy reports whether err is an answer to UploadPartCopy from a
// server that does not implement it: 501 NotImplemented, or 411
// MissingContentLength from one that took the copy for an upload of a
// part without a body, as gofakes3 v1.2.0 does. S3 itself answers
// neither: a copy needs no body.
func noPartCopy(err error) bool {
	var ae smithy.APIError
	if errors.As(err, &ae) && (ae.ErrorCode() == "NotImplemented" || ae.ErrorCode() == "MissingContentLength") {
		return true
	}
	code := statusOf(err)
	return code == http.StatusNotImplemented || code == http.StatusLengthRequired
}

// composer builds one composed object's parts.
type composer struct {
	s     *Store
	ctx   context.Context
	dst   string
	id    string
	parts []types.CompletedPart
	buf   []byte // bytes read from sources, not yet sent
}

func (c *composer) run(srcs []string, infos []compute.ObjectInfo, total int64) error {
	var done int64
	for i, src := range srcs {
		size, off := infos[i].Size, int64(0)
		for off < size {
			last := done+(size-off) == total // nothing follows these bytes
			if len(c.buf) > 0 || size-off < minPartSize && !last {
				// Too little to copy as a part: read it into the buffer.
				n := min(minPartSize-int64(len(c.buf)), size-off)
				if err := c.read(src, infos[i].ETag, off, n); err != nil {
					return err
				}
				off, done = off+n, done+n
				if len(c.buf) >= minPartSize {
					if err := c.send(); err != nil {
						return err
					}
				}
				continue
			}
			n := min(size-off, maxCopySize)
			if rest := size - off - n; rest > 0 && rest < minPartSize {
				n -= minPartSize // leave a tail that can be copied too
			}
			if err := c.copy(src, infos[i].ETag, off, n); err != nil {
				return err
			}
			off, done = off+n, done+n
		}
	}
	if len(c.buf) > 0 {
		return c.send()
	}
	return nil
}

func (c *composer) next() (*int32, error) {
	if len(c.parts) == maxParts {
		return nil, fmt.Errorf("s3: compose s3://%s/%s: more than %d parts", c.s.bucket, c.dst, maxParts)
	}
	return aws.Int32(int32(len(c.parts) + 1)), nil
}

func (c *composer) copy(src, etag string, off, n int64) error {
	num, err := c.next()
	if err != nil {
		return err
	}
	out, err := c.s.client.UploadPartCopy(c.ctx, &s3.UploadPartCopyInput{
		Bucket: &c.s.bucket, Key: &c.dst, UploadId: &c.id, PartNumber: num,
		CopySource:        aws.String(copySource(c.s.bucket, src)),
		CopySourceRange:   aws.String(fmt.Sprintf("bytes=%d-%d", off, off+n-1)),
		CopySourceIfMatch: nonEmpty(etag),
	})
	if err != nil {
		err = c.s.wrap("compose", c.dst, err, compute.ErrNotFound)
		if noPartCopy(err) {
			err = fmt.Errorf("%w: %w", errNoPartCopy, err)
		}
		return err
	}
	if out.CopyPartResult == nil || aws.ToString(out.CopyPartResult.ETag) == "" {
		// An answer to an upload of a part, not to a copy: the server
		// ignored the copy source.
		return fmt.Errorf("%w: compose s3://%s/%s: UploadPartCopy answered without a CopyPartResult", errNoPartCopy, c.s.bucket, c.dst)
	}
	c.parts = append(c.parts, types.CompletedPart{PartNumber: num, ETag: out.CopyPartResult.ETag})
	return nil
}

func (c *composer) read(src, etag string, off, n int64) error {
	r, _, err := c.s.NewReader(c.ctx, src, compute.ReadOptions{ETag: etag, Offset: off, Length: n})
	if err != nil {
		return err
	}
	defer r.Close()
	start := len(c.buf)
	c.buf = append(c.buf, make([]byte, n)...)
	_, err = io.ReadFull(r, c.buf[start:])
	return err
}

func (c *composer) send() error {
	num, err := c.next()
	if err != nil {
		return err
	}
	out, err := c.s.client.UploadPart(c.ctx, &s3.UploadPartInput{
		Bucket: &c.s.bucket, Key: &c.dst, UploadId: &c.id, PartNumber: num,
		Body: bytes.NewReader(c.buf), ContentLength: aws.Int64(int64(len(c.buf))),
	})
	if err != nil {
		return c.s.wrap("compose", c.dst, err, compute.ErrNotFound)
	}
	c.parts = append(c.parts, types.CompletedPart{PartNumber: num, ETag: out.ETag})
	c.buf = c.buf[:0]
	return nil
}

// abortUploadOf abandons a multipart upload, even when ctx is done.
func (s *Store) abortUploadOf(key, id string) error {
	_, err := s.client.AbortMultipartUpload(context.Background(), &s3.AbortMultipartUploadInput{
		Bucket: &s.bucket, Key: &key, UploadId: &id})
	return err
}

// copySource is the x-amz-copy-source of an object: bucket and key,
// URL-encoded segment by segment.
func copySource(bucket, key string) string {
	segs := strings.Split(key, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return bucket + "/" + strings.Join(segs, "/")
}

func nonEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
