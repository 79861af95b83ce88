package compute_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"sync"
	"testing"

	"github.com/momentum-run/momentum/adapters/codec"
	"github.com/momentum-run/momentum/adapters/rejects"
	"github.com/momentum-run/momentum/adapters/storetest"
	"github.com/momentum-run/momentum/compute"
)

// recordingStore notes the options each writer was created with.
type recordingStore struct {
	compute.Store
	mu     sync.Mutex
	writes map[string]compute.WriteOptions
}

func (s *recordingStore) NewWriter(ctx context.Context, key string, o compute.WriteOptions) (io.WriteCloser, error) {
	s.mu.Lock()
	if s.writes == nil {
		s.writes = map[string]compute.WriteOptions{}
	}
	s.writes[key] = o
	s.mu.Unlock()
	return s.Store.NewWriter(ctx, key, o)
}

func compress(t *testing.T, b []byte, c compute.Compression) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := codec.Codec{}.NewWriter(&buf, c)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(b)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func decompress(t *testing.T, b []byte) string {
	t.Helper()
	r, err := codec.Codec{}.NewReader(bytes.NewReader(b), compute.DetectCompression(b))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// TestJobKeepsCompression: an event's output is compressed as its input
// by default, and says so in its metadata; the rejects stay plain.
func TestJobKeepsCompression(t *testing.T) {
	for _, c := range []compute.Compression{compute.Gzip, compute.Zstd} {
		j, s := newJob(t, "")
		rec := &recordingStore{Store: s}
		storetest.Put(t, s, "in/a.csv"+c.Ext(), compress(t, []byte("mass,velocity\n2,3\nx,1\n"), c))
		j.Input, j.Output = rec, rec
		j.InputKey, j.OutputKey = "in/a.csv"+c.Ext(), "out/a.csv"+c.Ext()
		j.Options = compute.Options{Codec: codec.Codec{}, Compress: compute.SameAsInput, OnError: compute.OnErrorSkip, NewRejectWriter: rejects.NewWriter}
		res, err := j.Run(context.Background())
		if err != nil || res.Outcome != compute.Done || res.Stats.RowsOut != 1 || res.Stats.RowsRejected != 1 {
			t.Fatalf("%s: %+v, %v", c, res, err)
		}
		out, _ := read(t, s, j.OutputKey)
		if got := compute.DetectCompression([]byte(out)); got != c {
			t.Errorf("%s: output is %s", c, got)
		}
		if got := decompress(t, []byte(out)); got != "mass,velocity,momentum\n2,3,6\n" {
			t.Errorf("%s: output %q", c, got)
		}
		if rejects, _ := read(t, s, j.RejectsKey); !bytes.HasPrefix([]byte(rejects), []byte("line,column,reason,record\n")) {
			t.Errorf("%s: rejects %q, want plain CSV", c, rejects)
		}
		if w := rec.writes[j.OutputKey]; w.ContentEncoding != string(c) || w.ContentType != "text/csv" {
			t.Errorf("%s: output written with %+v", c, w)
		}
		if w := rec.writes[j.RejectsKey]; w.ContentEncoding != "" {
			t.Errorf("%s: rejects written with %+v", c, w)
		}
	}
}

// TestJobCorruptStreamReported: a truncated stream fails the job for good,
// with the line in the report, and leaves no output.
func TestJobCorruptStreamReported(t *testing.T) {
	var rows bytes.Buffer
	rows.WriteString("mass,velocity\n")
	for range 100000 {
		rows.WriteString("2,3\n")
	}
	full := compress(t, rows.Bytes(), compute.Gzip)
	j, s := newJob(t, string(full[:len(full)/2]))
	j.Options = compute.Options{Codec: codec.Codec{}, Compress: compute.SameAsInput}
	res, err := j.Run(context.Background())
	if err != nil || res.Outcome != compute.Failed || !errors.Is(res.Err, compute.ErrCorruptStream) {
		t.Fatalf("%+v, %v", res, err)
	}
	if _, ok := read(t, s, j.OutputKey); ok {
		t.Error("output written")
	}
	report, _ := read(t, s, j.ReportKey)
	var rep compute.JobReport
	if err := json.Unmarshal([]byte(report), &rep); err != nil || rep.Line < 2 || rep.Reason == "" {
		t.Errorf("report %q: %v", report, err)
	}
}

// TestShardJobRefusesCompressed: no shard of a compressed input writes a
// part; each says why, and the reason is the same on a retry.
func TestShardJobRefusesCompressed(t *testing.T) {
	in, _ := particles(t)
	for _, c := range []compute.Compression{compute.Gzip, compute.Zstd} {
		s, _ := shardStore(t, string(compress(t, []byte(in), c)))
		for _, n := range []int{1, 3} {
			for i := range n {
				j := &compute.ShardJob{Input: s, InputKey: "in/a.csv", Output: s, Prefix: "out/", Shard: compute.Shard{Index: i, Count: n},
					Options: compute.Options{Codec: codec.Codec{}}}
				res, err := j.Run(context.Background())
				if err != nil || res.Outcome != compute.Failed || !errors.Is(res.Err, compute.ErrCompressedShards) {
					t.Fatalf("%s shard %d/%d: %+v, %v", c, i, n, res, err)
				}
				if _, ok := read(t, s, compute.PartKey("out/", i)); ok {
					t.Errorf("%s shard %d/%d: part written", c, i, n)
				}
				if _, ok := read(t, s, compute.ReportKey("out/", i)); !ok {
					t.Errorf("%s shard %d/%d: no report", c, i, n)
				}
			}
		}
	}
}

// TestJobOutputNameDecides: with SameAsInput, an output named .gz is gzip
// even when its input arrived plain (Cloud Storage serves an object stored
// with Content-Encoding gzip decompressed).
func TestJobOutputNameDecides(t *testing.T) {
	j, s := newJob(t, "mass,velocity\n2,3\n")
	j.OutputKey = "out/a.csv.gz"
	j.Options = compute.Options{Codec: codec.Codec{}, Compress: compute.SameAsInput}
	if res, err := j.Run(context.Background()); err != nil || res.Outcome != compute.Done {
		t.Fatalf("%+v, %v", res, err)
	}
	out, _ := read(t, s, j.OutputKey)
	if compute.DetectCompression([]byte(out)) != compute.Gzip || decompress(t, []byte(out)) != "mass,velocity,momentum\n2,3,6\n" {
		t.Errorf("output %q, want gzip", out)
	}
}
