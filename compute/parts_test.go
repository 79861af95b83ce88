package compute_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/momentum-run/momentum/adapters/local"
	"github.com/momentum-run/momentum/adapters/storetest"
	"github.com/momentum-run/momentum/compute"
)

func shardStore(t *testing.T, in string) (*local.Store, string) {
	t.Helper()
	dir := t.TempDir()
	s, err := local.NewStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	storetest.Put(t, s, "in/a.csv", []byte(in))
	return s, dir
}

func runShardJobs(t *testing.T, s compute.Store, n int, o compute.Options) []compute.JobResult {
	t.Helper()
	res := make([]compute.JobResult, n)
	for i := range n {
		j := &compute.ShardJob{Input: s, InputKey: "in/a.csv", Output: s, Prefix: "out/", Shard: compute.Shard{Index: i, Count: n}, Options: o}
		r, err := j.Run(context.Background())
		if err != nil {
			t.Fatalf("shard %d/%d: %v", i, n, err)
		}
		res[i] = r
	}
	return res
}

func particles(t *testing.T) (in, want string) {
	t.Helper()
	a, err := os.ReadFile("../testdata/particles.csv")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("../testdata/particles.golden")
	if err != nil {
		t.Fatal(err)
	}
	return string(a), string(b)
}

// TestShardJobsThenMerge runs the shards of a job as its tasks would,
// then merges: the parts in order, and the joined object, are the golden
// output; a task run again does nothing.
func TestShardJobsThenMerge(t *testing.T) {
	in, want := particles(t)
	for _, n := range []int{1, 2, 5, 16} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			s, _ := shardStore(t, in)
			for i, r := range runShardJobs(t, s, n, compute.Options{}) {
				if r.Outcome != compute.Done {
					t.Errorf("shard %d: %v", i, r.Outcome)
				}
			}
			var cat strings.Builder
			for i := range n {
				part, _ := read(t, s, compute.PartKey("out/", i))
				cat.WriteString(part)
			}
			if cat.String() != want {
				t.Fatalf("parts:\n%s\nwant:\n%s", cat.String(), want)
			}
			res, err := compute.Merge(context.Background(), s, "out/", "all.csv", "")
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := read(t, s, "all.csv"); got != want || res.Rows != 12 || len(res.Manifests) != n {
				t.Fatalf("merged %+v:\n%s", res, got)
			}
			again := runShardJobs(t, s, n, compute.Options{})
			if again[n-1].Outcome != compute.Duplicate || again[n-1].Stats.RowsOut != res.Manifests[n-1].Rows {
				t.Errorf("second run: %+v", again[n-1])
			}
		})
	}
}

// TestShardJobRewritesPart is a task that died between its part and its
// manifest: run again, it rewrites the part.
func TestShardJobRewritesPart(t *testing.T) {
	in, want := particles(t)
	s, _ := shardStore(t, in)
	storetest.Put(t, s, compute.PartKey("out/", 1), []byte("half a part"))
	runShardJobs(t, s, 2, compute.Options{})
	if _, err := compute.Merge(context.Background(), s, "out/", "all.csv", ""); err != nil {
		t.Fatal(err)
	}
	if got, _ := read(t, s, "all.csv"); got != want {
		t.Fatalf("merged:\n%s", got)
	}
	// The input replaced: the tasks run again rewrite their parts.
	storetest.Put(t, s, "in/a.csv", []byte("mass,velocity\n1,2\n3,4\n"))
	for _, r := range runShardJobs(t, s, 2, compute.Options{}) {
		if r.Outcome != compute.Done {
			t.Fatalf("after the input changed: %v", r.Outcome)
		}
	}
	if _, err := compute.Merge(context.Background(), s, "out/", "all2.csv", ""); err != nil {
		t.Fatal(err)
	}
	if got, _ := read(t, s, "all2.csv"); got != "mass,velocity,momentum\n1,2,2\n3,4,12\n" {
		t.Fatalf("merged:\n%s", got)
	}
}

// TestMergeFindsProblems breaks a complete set of parts in the ways an
// array job can leave it, and checks what Merge says.
func TestMergeFindsProblems(t *testing.T) {
	in, _ := particles(t)
	cases := []struct {
		name  string
		spoil func(t *testing.T, s compute.Store, dir string)
		want  string
	}{
		{"MissingManifest", func(t *testing.T, s compute.Store, dir string) {
			os.Remove(filepath.Join(dir, "out/part-00002.json"))
		}, "1 of 4 parts missing: 2"},
		{"MissingFirst", func(t *testing.T, s compute.Store, dir string) {
			os.Remove(filepath.Join(dir, "out/part-00000.json"))
		}, "part 0 is missing"},
		{"FailedTask", func(t *testing.T, s compute.Store, dir string) {
			os.Remove(filepath.Join(dir, "out/part-00003.json"))
			storetest.Put(t, s, "out/part-00003.error.json", []byte(`{"input":"in/a.csv","error":"line 9, column mass: not a decimal number"}`))
		}, "3 (failed: line 9, column mass: not a decimal number)"},
		{"MissingPart", func(t *testing.T, s compute.Store, dir string) {
			os.Remove(filepath.Join(dir, "out/part-00001.csv"))
		}, "part 1: out/part-00001.csv is missing"},
		{"TruncatedPart", func(t *testing.T, s compute.Store, dir string) {
			os.Truncate(filepath.Join(dir, "out/part-00001.csv"), 5)
		}, "part 1: out/part-00001.csv has 5 bytes"},
		{"OtherVersion", func(t *testing.T, s compute.Store, dir string) {
			m, _ := compute.ReadManifest(context.Background(), s, "out/part-00002.json")
			m.ETag = "other"
			putJSON(t, s, "out/part-00002.json", m)
		}, "the input changed between tasks"},
		{"OtherSettings", func(t *testing.T, s compute.Store, dir string) {
			m, _ := compute.ReadManifest(context.Background(), s, "out/part-00002.json")
			m.Settings += " decimals=3"
			putJSON(t, s, "out/part-00002.json", m)
		}, "part 2: written with settings"},
		{"Gap", func(t *testing.T, s compute.Store, dir string) {
			m, _ := compute.ReadManifest(context.Background(), s, "out/part-00002.json")
			m.Start++
			putJSON(t, s, "out/part-00002.json", m)
		}, "part 2 starts at byte"},
		{"StaleRun", func(t *testing.T, s compute.Store, dir string) {
			m, _ := compute.ReadManifest(context.Background(), s, "out/part-00003.json")
			m.Shard, m.Shards = 4, 6
			putJSON(t, s, "out/part-00004.json", m)
		}, "left from an earlier run of 6 shards"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, dir := shardStore(t, in)
			runShardJobs(t, s, 4, compute.Options{})
			tc.spoil(t, s, dir)
			_, err := compute.Merge(context.Background(), s, "out/", "all.csv", "")
			var merr *compute.MergeError
			if !errors.As(err, &merr) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want a MergeError with %q", err, tc.want)
			}
			if _, ok := read(t, s, "all.csv"); ok {
				t.Error("joined despite the problem")
			}
		})
	}
}

// TestShardJobBadData fails one shard with the whole file's line number
// and writes its report; the others succeed, and Merge names the failure.
func TestShardJobBadData(t *testing.T) {
	var b strings.Builder
	b.WriteString("mass,velocity\n")
	for i := range 1000 {
		if i == 700 {
			b.WriteString("1,fast\n")
			continue
		}
		fmt.Fprintf(&b, "%d,2\n", i)
	}
	s, _ := shardStore(t, b.String())
	res := runShardJobs(t, s, 4, compute.Options{})
	failed := 0
	for i, r := range res {
		if r.Outcome == compute.Failed {
			failed++
			var perr *compute.ParseError
			if !errors.As(r.Err, &perr) || perr.Line != 702 || perr.Column != "velocity" {
				t.Errorf("shard %d: %v", i, r.Err)
			}
			if rep, ok := read(t, s, compute.ReportKey("out/", i)); !ok || !strings.Contains(rep, `"line": 702`) {
				t.Errorf("report: %s", rep)
			}
		}
	}
	if failed != 1 {
		t.Fatalf("%d shards failed, want 1", failed)
	}
	_, err := compute.Merge(context.Background(), s, "out/", "", "")
	if err == nil || !strings.Contains(err.Error(), "line 702, column velocity") {
		t.Fatalf("merge: %v", err)
	}
}

func putJSON(t *testing.T, s compute.Store, key string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	storetest.Put(t, s, key, b)
}

// sizeless is a store whose reads give no object size, as a compressed
// object served decompressed does.
type sizeless struct{ compute.Store }

func (s sizeless) NewReader(ctx context.Context, key string, o compute.ReadOptions) (io.ReadCloser, compute.ObjectInfo, error) {
	r, info, err := s.Store.NewReader(ctx, key, o)
	info.Size = -1
	return r, info, err
}

func TestShardJobNeedsASize(t *testing.T) {
	in, _ := particles(t)
	s, _ := shardStore(t, in)
	j := &compute.ShardJob{Input: sizeless{s}, InputKey: "in/a.csv", Output: s, Prefix: "out/", Shard: compute.Shard{Index: 1, Count: 2}}
	res, err := j.Run(context.Background())
	if err != nil || res.Outcome != compute.Failed || !strings.Contains(res.Err.Error(), "cannot be split into shards") {
		t.Fatalf("%+v, %v: want a failure for good", res, err)
	}
	if rep, ok := read(t, s, compute.ReportKey("out/", 1)); !ok || !strings.Contains(rep, "run it as one task") {
		t.Errorf("report %q", rep)
	}
}

// TestShardJobAlreadyProcessed is a job pointed at an output: no task
// writes a part, and merge says why.
func TestShardJobAlreadyProcessed(t *testing.T) {
	_, golden := particles(t)
	s, _ := shardStore(t, golden)
	for i, r := range runShardJobs(t, s, 3, compute.Options{}) {
		if r.Outcome != compute.AlreadyProcessed {
			t.Errorf("shard %d: %v", i, r.Outcome)
		}
	}
	_, err := compute.Merge(context.Background(), s, "out/", "all.csv", "")
	if err == nil || !strings.Contains(err.Error(), "part 0 is missing (failed: ") || !strings.Contains(err.Error(), "already has a momentum column") {
		t.Fatalf("merge: %v", err)
	}
}

// TestMergeBesideTheInput is the scale-out recipe: the input
// gs://in/big.csv, the parts in gs://out/big/, joined into
// gs://out/big.csv. The input and the joined object share a key but not a
// bucket, so the join overwrites nothing; into the input's own key in its
// own bucket, it is refused.
func TestMergeBesideTheInput(t *testing.T) {
	ctx := context.Background()
	in, want := particles(t)
	inStore, _ := shardStore(t, "")
	storetest.Put(t, inStore, "big.csv", []byte(in))
	outStore, _ := shardStore(t, "")
	for i := range 3 {
		j := &compute.ShardJob{Input: inStore, InputKey: "big.csv", Output: outStore, Prefix: "big/",
			Shard: compute.Shard{Index: i, Count: 3}}
		if r, err := j.Run(ctx); err != nil || r.Outcome != compute.Done {
			t.Fatalf("shard %d: %+v, %v", i, r, err)
		}
	}
	if _, err := compute.Merge(ctx, outStore, "big/", "big.csv", "big.rejects.csv"); err != nil {
		t.Fatal(err)
	}
	if got, _ := read(t, outStore, "big.csv"); got != want {
		t.Fatalf("merged:\n%s", got)
	}
	if got, _ := read(t, inStore, "big.csv"); got != in {
		t.Fatalf("the input changed:\n%s", got)
	}
	m, err := compute.ReadManifest(ctx, outStore, compute.ManifestKey("big/", 2))
	if err != nil || m.Input != "big.csv" || m.InputLocation != inStore.Location("big.csv") || m.InputName() != m.InputLocation {
		t.Fatalf("manifest %+v, %v: want the input's key and location", m, err)
	}

	// Manifests written before the location was recorded give the key
	// alone: the input might be in this bucket, so its key is refused.
	for i := range 3 {
		m, _ := compute.ReadManifest(ctx, outStore, compute.ManifestKey("big/", i))
		m.InputLocation = ""
		putJSON(t, outStore, compute.ManifestKey("big/", i), m)
	}
	if _, err := compute.Merge(ctx, outStore, "big/", "big.csv", ""); err == nil || !strings.Contains(err.Error(), "by its key alone, big.csv, not its bucket") {
		t.Errorf("merge of old manifests into the input's key: %v, want a refusal", err)
	}
	if _, err := compute.Merge(ctx, outStore, "big/", "other.csv", ""); err != nil {
		t.Errorf("merge of old manifests into another key: %v", err)
	}
	// A task run again records the location.
	j := &compute.ShardJob{Input: inStore, InputKey: "big.csv", Output: outStore, Prefix: "big/", Shard: compute.Shard{Index: 1, Count: 3}}
	if r, err := j.Run(ctx); err != nil || r.Outcome != compute.Done {
		t.Fatalf("shard 1 again: %+v, %v", r, err)
	}
	if m, _ := compute.ReadManifest(ctx, outStore, compute.ManifestKey("big/", 1)); m.InputLocation == "" {
		t.Error("shard 1 run again: no input location")
	}

	// The parts beside the input, in its store.
	for i := range 2 {
		j := &compute.ShardJob{Input: inStore, InputKey: "big.csv", Output: inStore, Prefix: "big/",
			Shard: compute.Shard{Index: i, Count: 2}}
		if r, err := j.Run(ctx); err != nil || r.Outcome != compute.Done {
			t.Fatalf("shard %d: %+v, %v", i, r, err)
		}
	}
	for _, into := range []string{"big.csv", "big/part-00001.csv", "big/part-00000.json"} {
		_, err := compute.Merge(ctx, inStore, "big/", into, "")
		if err == nil || !strings.Contains(err.Error(), "would overwrite") {
			t.Errorf("merge into %s: %v, want a refusal", into, err)
		}
	}
	if got, _ := read(t, inStore, "big.csv"); got != in {
		t.Fatalf("the input changed:\n%s", got)
	}
}

// TestShardJobReadAhead reads each shard's bytes in ranged requests: the
// parts still concatenate to the golden output.
func TestShardJobReadAhead(t *testing.T) {
	in, want := particles(t)
	for _, n := range []int{1, 2, 3} {
		s, _ := shardStore(t, in)
		for i := range n {
			j := &compute.ShardJob{Input: s, InputKey: "in/a.csv", Output: s, Prefix: "out/", Shard: compute.Shard{Index: i, Count: n},
				ReadAhead: compute.ReadAhead{Connections: 4, RangeSize: 16}}
			if r, err := j.Run(context.Background()); err != nil || r.Outcome != compute.Done {
				t.Fatalf("shard %d/%d: %+v, %v", i, n, r, err)
			}
		}
		var cat strings.Builder
		for i := range n {
			part, _ := read(t, s, compute.PartKey("out/", i))
			cat.WriteString(part)
		}
		if cat.String() != want {
			t.Fatalf("%d shards:\n%s", n, cat.String())
		}
	}
}
