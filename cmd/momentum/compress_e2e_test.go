package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/momentum-run/momentum/adapters/codec"
	"github.com/momentum-run/momentum/compute"
)

// compressAs returns b compressed as c.
func compressAs(t *testing.T, b []byte, c compute.Compression) []byte {
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

// decompressed returns b as plain bytes, whatever it is compressed with.
func decompressed(t *testing.T, b []byte) []byte {
	t.Helper()
	c := compute.DetectCompression(b)
	if c == compute.Uncompressed {
		return b
	}
	r, err := codec.Codec{}.NewReader(bytes.NewReader(b), c)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if _, err := out.ReadFrom(r); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// contentEncoding is the Content-Encoding a cloud object is stored with.
func (c *clouds) contentEncoding(t *testing.T, loc string) string {
	t.Helper()
	scheme, bucket, key, _ := splitURL(loc)
	if scheme == "s3" {
		out, err := c.s3.HeadObject(context.Background(), &awss3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
		if err != nil {
			t.Fatal(err)
		}
		return aws.ToString(out.ContentEncoding)
	}
	attrs, err := c.gcs.Bucket(bucket).Object(key).Attrs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return attrs.ContentEncoding
}

// TestCloudCompressed moves gzip and zstd objects through the CLI and the
// batch job, between local files, S3, Cloud Storage and stdio: the rows
// are those of the plain file, the output compressed as asked, with its
// Content-Encoding recorded.
func TestCloudCompressed(t *testing.T) {
	c := startClouds(t)
	plain := readFile(t, testdata(t, "particles.csv"))
	golden := readFile(t, testdata(t, "particles.golden"))
	gz, zst := compressAs(t, plain, compute.Gzip), compressAs(t, plain, compute.Zstd)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "p.csv.gz"), gz)
	c.put(t, "s3://in/p.csv.gz", gz)
	c.put(t, "gs://in/p.csv.zst", zst)
	c.put(t, "s3://in/p.csv.zst", zst)

	tests := []struct {
		name string
		args []string
		out  string
		want compute.Compression
	}{
		{"file to s3, named .gz", []string{filepath.Join(dir, "p.csv.gz"), "s3://out/a/p.csv.gz"}, "s3://out/a/p.csv.gz", compute.Gzip},
		{"s3 to gs, as zstd", []string{"--compress", "zstd", "s3://in/p.csv.gz", "gs://out/a/p.csv"}, "gs://out/a/p.csv", compute.Zstd},
		{"gs to s3, plain", []string{"gs://in/p.csv.zst", "s3://out/b/p.csv"}, "s3://out/b/p.csv", compute.Uncompressed},
		{"gs to file", []string{"gs://in/p.csv.zst", filepath.Join(dir, "from-gs.csv")}, filepath.Join(dir, "from-gs.csv"), compute.Uncompressed},
		{"s3 to stdout", []string{"s3://in/p.csv.zst", "-"}, "-", compute.Uncompressed},
		{"stdin to stdout, MOMENTUM_COMPRESS", []string{"-", "-"}, "-", compute.Gzip},
		{"job keeps the input's", []string{"job", "--input", "s3://in/p.csv.gz", "--output", "gs://out/job/p.csv.gz"}, "gs://out/job/p.csv.gz", compute.Gzip},
		{"Cloud Run job task", nil, "gs://out/task/p.csv.zst", compute.Zstd},
		{"job --compress none", []string{"job", "--compress", "none", "--input", "gs://in/p.csv.zst", "--output", "s3://out/job/p.csv"}, "s3://out/job/p.csv", compute.Uncompressed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var env []string
			var stdin *bytes.Reader
			if tt.args == nil {
				env = []string{"CLOUD_RUN_JOB=momentum", "CLOUD_RUN_EXECUTION=momentum-abc12", "CLOUD_RUN_TASK_INDEX=0", "CLOUD_RUN_TASK_COUNT=1",
					"MOMENTUM_INPUT=s3://in/p.csv.zst", "MOMENTUM_OUTPUT=" + tt.out}
			} else if tt.args[0] == "-" {
				env, stdin = []string{"MOMENTUM_COMPRESS=gzip"}, bytes.NewReader(zst)
			}
			var res result
			if stdin != nil {
				res = momentumEnv(t, c.env(env...), stdin, tt.args...)
			} else {
				res = momentumEnv(t, c.env(env...), nil, tt.args...)
			}
			if res.code != 0 {
				t.Fatalf("exit %d: %s", res.code, res.stderr)
			}
			got := []byte(res.stdout)
			if tt.out != "-" {
				var err error
				if got, err = c.read(t, tt.out); err != nil {
					t.Fatal(err)
				}
			}
			// Cloud Storage serves an object stored with Content-Encoding
			// gzip decompressed: the metadata, below, tells.
			transcoded := strings.HasPrefix(tt.out, "gs://") && tt.want == compute.Gzip
			if comp := compute.DetectCompression(got); comp != tt.want && !transcoded {
				t.Errorf("output is %s, want %s", comp, tt.want)
			}
			if !bytes.Equal(decompressed(t, got), golden) {
				t.Errorf("output differs from particles.golden:\n%s", decompressed(t, got))
			}
			if isURL(tt.out) {
				if enc := c.contentEncoding(t, tt.out); enc != tt.want.ContentEncoding() {
					t.Errorf("Content-Encoding %q, want %q", enc, tt.want.ContentEncoding())
				}
			}
		})
	}
}

// TestCloudGzipEncodedObject: a Cloud Storage object stored with
// Content-Encoding: gzip, which the client would decompress on its own,
// is decompressed once, whatever its name.
func TestCloudGzipEncodedObject(t *testing.T) {
	c := startClouds(t)
	plain := readFile(t, testdata(t, "particles.csv"))
	golden := readFile(t, testdata(t, "particles.golden"))
	for _, name := range []string{"encoded.csv", "encoded.csv.gz"} {
		w := c.gcs.Bucket("in").Object(name).NewWriter(context.Background())
		w.ContentType, w.ContentEncoding = "text/csv", "gzip"
		w.Write(compressAs(t, plain, compute.Gzip))
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		for _, connections := range []string{"1", "8"} {
			res := momentumEnv(t, c.env(), nil, "--connections", connections, "gs://in/"+name, "-")
			if res.code != 0 || res.stdout != string(golden) {
				t.Errorf("%s, %s connections: exit %d, %s\n%s", name, connections, res.code, res.stderr, res.stdout)
			}
		}
	}
}

// TestCloudCompressedFailures: a broken stream is invalid data (exit 65),
// named and placed, and leaves no output; a sharded job refuses a
// compressed input (exit 2) and writes no part.
func TestCloudCompressedFailures(t *testing.T) {
	c := startClouds(t)
	var rows bytes.Buffer
	rows.WriteString("mass,velocity\n")
	for range 50000 {
		rows.WriteString("1.5,2\n")
	}
	gz := compressAs(t, rows.Bytes(), compute.Gzip)
	c.put(t, "s3://in/cut.csv.gz", gz[:len(gz)/2])
	c.put(t, "s3://in/whole.csv.gz", gz)

	res := momentumEnv(t, c.env(), nil, "s3://in/cut.csv.gz", "gs://out/cut.csv.gz")
	if res.code != exitData || !strings.Contains(res.stderr, "momentum: s3://in/cut.csv.gz: line ") || !strings.Contains(res.stderr, "gzip compressed stream is corrupt or truncated") {
		t.Errorf("truncated: exit %d, %s", res.code, res.stderr)
	}
	if _, err := c.get(t, "gs://out/cut.csv.gz"); !errors.Is(err, compute.ErrNotFound) {
		t.Errorf("truncated: output: %v, want none", err)
	}
	res = momentumEnv(t, c.env(), nil, "job", "--input", "s3://in/cut.csv.gz", "--output", "s3://out/cut.csv.gz")
	if res.code != exitData {
		t.Errorf("job, truncated: exit %d, %s", res.code, res.stderr)
	}
	if _, err := c.get(t, "s3://out/cut.error.json"); err != nil {
		t.Errorf("job, truncated: report: %v", err)
	}

	res = momentumEnv(t, c.env(), nil, "job", "--shard", "1/2", "--input", "s3://in/whole.csv.gz", "--output", "s3://out/parts/")
	if res.code != exitUsage || !strings.Contains(res.stderr, "cannot be split into shards") {
		t.Errorf("shard: exit %d, %s", res.code, res.stderr)
	}
	if _, err := c.get(t, "s3://out/parts/part-00001.csv"); !errors.Is(err, compute.ErrNotFound) {
		t.Errorf("shard: part: %v, want none", err)
	}
}

// TestCloudCompressedMemory: an S3 object read as gzip or zstd and
// written so stays under the 128 MiB of the smallest Lambda, as plain
// objects do (TestCloudLargeObjectMemory).
func TestCloudCompressedMemory(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("streams a large object; the whole suite runs it after, without -race")
	}
	size := int64(64 << 20)
	c := startClouds(t)
	for _, comp := range []compute.Compression{compute.Gzip, compute.Zstd} {
		t.Run(comp.String(), func(t *testing.T) {
			src, dst := "s3://in/big.csv"+comp.Ext(), "s3://out/big.csv"+comp.Ext()
			store, key := c.store(src)
			w, err := store.NewWriter(context.Background(), key, compute.WriteOptions{})
			if err != nil {
				t.Fatal(err)
			}
			enc, _ := codec.Codec{}.NewWriter(w, comp)
			if _, err := io.CopyBuffer(enc, &csvStream{size: size}, make([]byte, 1<<20)); err != nil {
				t.Fatal(err)
			}
			if err := enc.Close(); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(bin, "--quiet", src, dst)
			cmd.Env = c.env("GOMEMLIMIT=96MiB")
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			peak := watchPeakRSS(cmd.Process.Pid)
			if err := cmd.Wait(); err != nil {
				t.Fatalf("%v: %s", err, stderr.String())
			}
			rssMiB := peak() >> 20
			t.Logf("%s, s3→s3: %d MiB of CSV, peak RSS %d MiB", comp, size>>20, rssMiB)
			if rssMiB >= 128 {
				t.Errorf("peak RSS %d MiB, want under 128 MiB", rssMiB)
			}
			want := sha256.New()
			if _, err := compute.Transform(context.Background(), want, &csvStream{size: size}, compute.Options{}); err != nil {
				t.Fatal(err)
			}
			out, err := c.get(t, dst)
			if err != nil {
				t.Fatal(err)
			}
			if compute.DetectCompression(out) != comp {
				t.Fatalf("output is not %s", comp)
			}
			got := sha256.Sum256(decompressed(t, out))
			if !bytes.Equal(got[:], want.Sum(nil)) {
				t.Error("output object differs from the kernel's output")
			}
		})
	}
}
