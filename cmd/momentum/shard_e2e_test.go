package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
)

// shardInput is a CSV of about size bytes with quoted fields that hold
// newlines, CRLF records and blank lines, so that byte offsets often fall
// inside a quoted field.
func shardInput(size int) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	var b bytes.Buffer
	b.WriteString("id,mass,velocity,note\n")
	for i := 0; b.Len() < size; i++ {
		fmt.Fprintf(&b, "%d,%d.%03d,%de%d,", i, r.IntN(1000), r.IntN(1000), r.IntN(2000)-1000, r.IntN(6)-3)
		switch r.IntN(8) {
		case 0:
			b.WriteString("\"several\nlines, \"\"quoted\"\"\r\nhere\"")
		case 1:
			b.WriteString(strings.Repeat("x", r.IntN(2000)))
		case 2:
			b.WriteString("\"" + strings.Repeat("y\n", r.IntN(300)) + "\"")
		}
		if r.IntN(5) == 0 {
			b.WriteString("\r\n")
		} else {
			b.WriteString("\n")
		}
		if r.IntN(100) == 0 {
			b.WriteString("\n")
		}
	}
	return b.Bytes()
}

// startTasks starts the tasks of an array job as processes of the binary,
// each with its engine's variables, and waits for them all.
func startTasks(t *testing.T, n int, env func(i int) []string, args ...string) []result {
	t.Helper()
	cmds := make([]*exec.Cmd, n)
	outs := make([]*bytes.Buffer, n)
	for i := range cmds {
		cmds[i] = exec.Command(bin, args...)
		cmds[i].Env = cleanEnv(env(i)...)
		outs[i] = &bytes.Buffer{}
		cmds[i].Stdout, cmds[i].Stderr = outs[i], outs[i]
		if err := cmds[i].Start(); err != nil {
			t.Fatal(err)
		}
	}
	res := make([]result, n)
	for i, c := range cmds {
		c.Wait()
		res[i] = result{code: c.ProcessState.ExitCode(), stderr: outs[i].String()}
	}
	return res
}

// TestShardedJob runs one input as the tasks of a Cloud Run job, a
// Kubernetes indexed job and an AWS Batch array job, each task a process
// of the binary with the variables its engine sets and the locations the
// example for it in docs/scale-out.md uses (input and output in different
// buckets), against the Cloud Storage and S3 emulators; then merges as
// that guide does, into the output bucket under the input's name. The parts in
// order, and the merged object, are byte for byte the single run's
// output.
func TestShardedJob(t *testing.T) {
	if testing.Short() {
		t.Skip("24 MiB through four engines; TestShardedJobLocal shards in the quick loop")
	}
	c := startClouds(t)
	in := shardInput(24 << 20)
	local := filepath.Join(t.TempDir(), "in.csv")
	if err := os.WriteFile(local, in, 0o644); err != nil {
		t.Fatal(err)
	}
	single := momentum(t, nil, local)
	if single.code != 0 {
		t.Fatalf("single run: %+v", single)
	}
	want := single.stdout

	parts := func(t *testing.T, folder string, n int) string {
		t.Helper()
		var all strings.Builder
		for i := range n {
			b, err := c.get(t, folder+fmt.Sprintf("part-%05d.csv", i))
			if err != nil {
				t.Fatal(err)
			}
			all.Write(b)
		}
		return all.String()
	}
	checkTasks := func(t *testing.T, res []result, outcome string) {
		t.Helper()
		var rows int64
		for i, r := range res {
			l := lastJobLog(t, r.stderr)
			if r.code != 0 || l.Outcome != outcome {
				t.Fatalf("task %d: code %d, %s", i, r.code, r.stderr)
			}
			rows += l.Rows
		}
		if want := int64(strings.Count(want, "\n")); outcome == "done" && rows == 0 {
			t.Fatalf("no rows, want about %d", want)
		}
	}

	type engine struct {
		name, input, folder, into string
		n                         int
		env                       func(i int) []string
		args                      []string
	}
	readme := func(name string, n int, vars func(i int) []string, args ...string) engine {
		input, folder, into := docRecipe(t, name)
		env := func(i int) []string {
			return c.env(append(vars(i), "MOMENTUM_INPUT="+input, "MOMENTUM_OUTPUT="+folder)...)
		}
		return engine{name, input, folder, into, n, env, args}
	}
	engines := []engine{
		readme("CloudRun", 3, func(i int) []string {
			return []string{"CLOUD_RUN_JOB=momentum-big", "CLOUD_RUN_EXECUTION=momentum-big-x1",
				fmt.Sprintf("CLOUD_RUN_TASK_INDEX=%d", i), "CLOUD_RUN_TASK_COUNT=3"}
		}),
		readme("AWSBatch", 4, func(i int) []string {
			return []string{fmt.Sprintf("AWS_BATCH_JOB_ARRAY_INDEX=%d", i), "AWS_BATCH_JOB_ARRAY_SIZE=4"}
		}, "job"),
		readme("Kubernetes", 5, func(i int) []string {
			return []string{fmt.Sprintf("JOB_COMPLETION_INDEX=%d", i), "MOMENTUM_SHARDS=5"}
		}, "job"),
		{"KubernetesAcrossClouds", "gs://in/big.csv", "s3://out/k8s/", "s3://out/k8s.csv", 5, func(i int) []string {
			return c.env(fmt.Sprintf("JOB_COMPLETION_INDEX=%d", i), "MOMENTUM_SHARDS=5")
		}, []string{"job", "--input", "gs://in/big.csv", "--output", "s3://out/k8s/"}},
	}
	inputs := map[string]bool{}
	for _, e := range engines {
		c.makeBucket(t, e.input)
		c.makeBucket(t, e.folder)
		if !inputs[e.input] {
			c.put(t, e.input, in)
			inputs[e.input] = true
		}
	}
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			checkTasks(t, startTasks(t, e.n, e.env, e.args...), "done")
			if got := parts(t, e.folder, e.n); got != want {
				t.Fatalf("the parts in order differ from the single run (%d bytes, want %d)", len(got), len(want))
			}
			r := momentumEnv(t, c.env(), nil, "merge", "--into", e.into, e.folder)
			if r.code != 0 || !strings.Contains(r.stdout, fmt.Sprintf("%d parts of %s", e.n, e.input)) {
				t.Fatalf("merge: %+v", r)
			}
			if got, err := c.get(t, e.into); err != nil || string(got) != want {
				t.Fatalf("merged object differs from the single run (%d bytes, %v)", len(got), err)
			}
			if got, err := c.get(t, e.input); err != nil || !bytes.Equal(got, in) {
				t.Fatalf("the input changed (%d bytes, %v)", len(got), err)
			}
			// The engine runs every task again: each finds its part done.
			checkTasks(t, startTasks(t, e.n, e.env, e.args...), "duplicate")
		})
	}
	cloudRun, batch := engines[0], engines[1]

	t.Run("TaskRetried", func(t *testing.T) {
		// Task 1 died after writing its part, before its manifest.
		c.put(t, cloudRun.folder+"part-00001.csv", []byte("a torn part"))
		c.del(t, cloudRun.folder+"part-00001.json")
		r := momentumEnv(t, cloudRun.env(1), nil)
		if l := lastJobLog(t, r.stderr); r.code != 0 || l.Outcome != "done" {
			t.Fatalf("retried task: %+v", r)
		}
		if r := momentumEnv(t, c.env(), nil, "merge", cloudRun.folder); r.code != 0 {
			t.Fatalf("merge: %+v", r)
		}
		if got := parts(t, cloudRun.folder, 3); got != want {
			t.Fatal("parts differ after the retry")
		}
	})

	t.Run("MergeIncomplete", func(t *testing.T) {
		c.del(t, batch.folder+"part-00002.json")
		into := strings.TrimSuffix(batch.folder, "/") + "-2.csv"
		r := momentumEnv(t, c.env(), nil, "merge", "--into", into, batch.folder)
		if r.code != exitFailure || !strings.Contains(r.stderr, "1 of 4 parts missing: 2") {
			t.Fatalf("merge of incomplete parts: %+v", r)
		}
		if _, err := c.get(t, into); err == nil {
			t.Fatal("merged despite a missing part")
		}
	})

	t.Run("BadData", func(t *testing.T) {
		// A bad mass four fifths in: the task that meets it is not the
		// first, so it numbers the line by reading all that comes before.
		row := regexp.MustCompile(`\n\d+,`).Find(in[len(in)*4/5:])
		bad := bytes.Replace(in, row, append(row, 'x'), 1)
		c.put(t, "gs://in/bad.csv", bad)
		res := startTasks(t, 4, func(i int) []string {
			return c.env(fmt.Sprintf("CLOUD_RUN_TASK_INDEX=%d", i), "CLOUD_RUN_TASK_COUNT=4")
		}, "job", "--input", "gs://in/bad.csv", "--output", "gs://out/bad/")
		line := int64(bytes.Count(bad[:bytes.Index(bad, append(row, 'x'))+1], []byte("\n")) + 1)
		failed := 0
		for i, r := range res {
			if r.code == exitData {
				failed++
				if l := lastJobLog(t, r.stderr); l.Line != line || l.Report != fmt.Sprintf("gs://out/bad/part-%05d.error.json", i) {
					t.Errorf("task %d: %+v, want line %d", i, l, line)
				}
			} else if r.code != 0 {
				t.Errorf("task %d: %+v", i, r)
			}
		}
		if failed != 1 || res[3].code != exitData {
			t.Fatalf("%d tasks failed, want 1, the last", failed)
		}
		r := momentumEnv(t, c.env(), nil, "merge", "gs://out/bad/")
		if r.code != exitFailure || !strings.Contains(r.stderr, fmt.Sprintf("line %d, column mass", line)) {
			t.Fatalf("merge: %+v", r)
		}
	})

	t.Run("Configuration", func(t *testing.T) {
		for _, env := range [][]string{
			{"JOB_COMPLETION_INDEX=0", "MOMENTUM_INPUT=gs://in/big.csv", "MOMENTUM_OUTPUT=gs://out/x/"},
			{"CLOUD_RUN_TASK_INDEX=0", "CLOUD_RUN_TASK_COUNT=2", "MOMENTUM_INPUT=gs://in/big.csv", "MOMENTUM_OUTPUT=gs://out/x.csv"},
			{"AWS_BATCH_JOB_ARRAY_INDEX=4", "AWS_BATCH_JOB_ARRAY_SIZE=4", "MOMENTUM_INPUT=gs://in/big.csv", "MOMENTUM_OUTPUT=gs://out/x/"},
			{"MOMENTUM_SHARD=1/0", "MOMENTUM_INPUT=gs://in/big.csv", "MOMENTUM_OUTPUT=gs://out/x/"},
		} {
			r := momentumEnv(t, c.env(env...), nil, "job")
			if l := lastJobLog(t, r.stderr); r.code != exitUsage || l.Level != "ERROR" {
				t.Errorf("%q: %+v", env, r)
			}
		}
	})
}

// del deletes the object at loc.
func (c *clouds) del(t *testing.T, loc string) {
	t.Helper()
	scheme, bucket, key, _ := splitURL(loc)
	var err error
	if scheme == "s3" {
		_, err = c.s3.DeleteObject(context.Background(), &awss3.DeleteObjectInput{Bucket: &bucket, Key: &key})
	} else {
		err = c.gcs.Bucket(bucket).Object(key).Delete(context.Background())
	}
	if err != nil {
		t.Fatal(err)
	}
}

// TestShardedJobLocal runs the local example of docs/scale-out.md as written, in a
// folder holding big.csv: two tasks, then merge into one file, which is
// the single run's output. Then two attempts of a task at once, and
// merge's refusals.
func TestShardedJobLocal(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "big.csv")
	if err := os.WriteFile(in, shardInput(3<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	want := momentum(t, nil, in).stdout
	var background []*exec.Cmd
	var outputs []*bytes.Buffer
	for _, line := range strings.Split(docBlock(t, "sh", "momentum job --shard 0/2"), "\n") {
		args := strings.Fields(line)
		switch {
		case len(args) == 0:
		case args[0] == "wait":
			for i, cmd := range background {
				if err := cmd.Wait(); err != nil {
					t.Fatalf("%q: %v\n%s", cmd.Args, err, outputs[i])
				}
			}
			background, outputs = nil, nil
		case args[0] == "momentum" && args[len(args)-1] == "&":
			cmd := exec.Command(bin, args[1:len(args)-1]...)
			out := &bytes.Buffer{}
			cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = dir, cleanEnv(), out, out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			background, outputs = append(background, cmd), append(outputs, out)
		case args[0] == "momentum":
			cmd := exec.Command(bin, args[1:]...)
			cmd.Dir = dir
			if r := runCmd(t, cmd, nil, nil); r.code != 0 || !strings.Contains(r.stdout, "2 parts of "+in) {
				t.Fatalf("%q: %+v", line, r)
			}
		default:
			t.Fatalf("docs/scale-out.md line %q: not a momentum command", line)
		}
	}
	if got := string(readFile(t, filepath.Join(dir, "big.momentum.csv"))); got != want {
		t.Fatalf("merged file differs from the single run (%d bytes, want %d)", len(got), len(want))
	}

	parts := filepath.Join(dir, "attempts") + "/"
	// Two attempts of task 0 at once, as an engine may run them, then task 1.
	res := startTasks(t, 2, func(int) []string { return nil }, "job", "--input", in, "--output", parts, "--shard", "0/2")
	res = append(res, startTasks(t, 1, func(int) []string { return nil }, "job", "--input", in, "--output", parts, "--shard", "1/2")...)
	for i, r := range res {
		if l := lastJobLog(t, r.stderr); r.code != 0 || l.Outcome != "done" && l.Outcome != "duplicate" {
			t.Fatalf("attempt %d: %+v", i, r)
		}
	}
	into := filepath.Join(dir, "attempts.csv")
	r := momentumEnv(t, nil, nil, "merge", "--into", into, parts)
	if r.code != 0 || !strings.Contains(r.stdout, "2 parts of "+in) || !strings.Contains(r.stdout, "joined into "+into) {
		t.Fatalf("merge: %+v", r)
	}
	if got := string(readFile(t, into)); got != want {
		t.Fatalf("merged file differs from the single run (%d bytes, want %d)", len(got), len(want))
	}
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"merge"}, exitUsage, "takes one folder"},
		{[]string{"merge", parts, parts}, exitUsage, "takes one folder"},
		{[]string{"merge", "--into", "s3://b/x.csv", parts}, exitUsage, "not in the store of"},
		{[]string{"merge", "--into", filepath.Join(dir, "attempts", "part-00001.csv"), parts}, exitFailure, "would overwrite part 1"},
		{[]string{"merge", "--into", in, parts}, exitFailure, "merging into " + in + " would overwrite the input"},
		{[]string{"merge", "--into", filepath.Join(dir, "attempts", "..", "big.csv"), parts}, exitFailure, "would overwrite the input"},
		{[]string{"merge", filepath.Join(dir, "nothing") + "/"}, exitFailure, "folder " + filepath.Join(dir, "nothing") + "/ does not exist"},
		{[]string{"merge", in}, exitUsage, "a folder ends with /"},
	} {
		r := momentumEnv(t, nil, nil, tc.args...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.msg) {
			t.Errorf("%q: code %d, %q; want %d, %q", tc.args, r.code, r.stderr, tc.code, tc.msg)
		}
	}
	if r := momentumEnv(t, nil, nil, "merge", "--help"); r.code != 0 || !strings.Contains(r.stdout, "Usage: momentum merge") {
		t.Errorf("--help: %+v", r)
	}

	// Skip mode: the rejects of the parts, joined, are the single run's,
	// bare quotes in strict mode among them, in either quote mode.
	mixed := filepath.Join(dir, "mixed.csv")
	data := shardInput(1 << 20)
	for i, row := range regexp.MustCompile(`\n\d+,`).FindAll(data, -1) {
		switch i % 700 {
		case 100: // a bad mass now and then
			data = bytes.Replace(data, row, append(append([]byte{}, row...), 'x'), 1)
		case 400: // a bare quote
			data = bytes.Replace(data, row, append(append([]byte{}, row...), `5'10",`...), 1)
		}
	}
	if err := os.WriteFile(mixed, data, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, quotes := range []string{"strict", "lazy"} {
		wantRejects := filepath.Join(dir, quotes+".rejects.csv")
		single := momentum(t, nil, "--on-error", "skip", "--quotes", quotes, "--rejects", wantRejects, mixed)
		if rej := string(readFile(t, wantRejects)); single.code != 0 || !strings.Contains(rej, "not a decimal number") ||
			strings.Contains(rej, "bare") != (quotes == "strict") {
			t.Fatalf("single run, %s quotes: %+v\n%s", quotes, single, rej)
		}
		skipParts := filepath.Join(dir, "skip-"+quotes) + "/"
		for i := range 3 {
			if r := momentumEnv(t, []string{"MOMENTUM_QUOTES=" + quotes}, nil, "job", "--on-error", "skip", "--input", mixed, "--output", skipParts, "--shard", fmt.Sprintf("%d/3", i)); r.code != 0 {
				t.Fatalf("task %d: %+v", i, r)
			}
		}
		joined := filepath.Join(dir, "mixed-"+quotes+".csv")
		if r := momentumEnv(t, nil, nil, "merge", "--into", joined, skipParts); r.code != 0 || !strings.Contains(r.stdout, "rejects joined into") {
			t.Fatalf("merge: %+v", r)
		}
		if string(readFile(t, joined)) != single.stdout {
			t.Errorf("%s quotes: joined output differs from the single run's", quotes)
		}
		if got, want := readFile(t, filepath.Join(dir, "mixed-"+quotes+".rejects.csv")), readFile(t, wantRejects); !bytes.Equal(got, want) {
			t.Errorf("%s quotes: joined rejects differ from the single run's:\n%s\nwant:\n%s", quotes, got, want)
		}
	}
}

// TestMergeMissingFolder is merge given a local folder that is not there:
// it says so, naming the folder as given, and creates nothing. An empty
// folder that exists has no part 0.
func TestMergeMissingFolder(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"merge", "nosuch/"},
		{"merge", "--into", "all.csv", "nosuch/"},
		{"merge", "a/b/"},
	} {
		cmd := exec.Command(bin, args...)
		cmd.Dir = dir
		r := runCmd(t, cmd, nil, nil)
		folder := args[len(args)-1]
		if want := "momentum merge: folder " + folder + " does not exist\n"; r.code != exitFailure || r.stderr != want || r.stdout != "" {
			t.Errorf("%q: code %d, stdout %q, stderr %q; want %d, %q", args, r.code, r.stdout, r.stderr, exitFailure, want)
		}
	}
	if entries, err := os.ReadDir(dir); err != nil || len(entries) > 0 {
		t.Errorf("merge created %v (%v)", entries, err)
	}

	if err := os.Mkdir(filepath.Join(dir, "empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ folder, msg string }{
		{"empty/", "part 0 is missing"},
		{"file/", "file/ is not a folder"},
	} {
		cmd := exec.Command(bin, "merge", tc.folder)
		cmd.Dir = dir
		if r := runCmd(t, cmd, nil, nil); r.code != exitFailure || !strings.Contains(r.stderr, tc.msg) {
			t.Errorf("merge %s: code %d, %q; want %d, %q", tc.folder, r.code, r.stderr, exitFailure, tc.msg)
		}
	}
}

// TestMergeChecksRejects: merge reads each part's rejects file back and
// refuses, naming the part, one that is missing, is not a rejects file or
// holds another number of rejects than its manifest says; it then joins
// nothing.
func TestMergeChecksRejects(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	in := filepath.Join(dir, "in.csv")
	data := "id,mass,velocity\n"
	for i := range 60 {
		if i%7 == 3 {
			data += fmt.Sprintf("%d,bad,1\n", i)
		} else {
			data += fmt.Sprintf("%d,1,2\n", i)
		}
	}
	writeFile(t, in, []byte(data))
	parts := filepath.Join(dir, "parts") + "/"
	for i := range 2 {
		if r := momentum(t, nil, "job", "--on-error", "skip", "--input", in, "--output", parts, "--shard", fmt.Sprintf("%d/2", i)); r.code != 0 {
			t.Fatalf("task %d: %+v", i, r)
		}
	}
	if r := momentum(t, nil, "merge", parts); r.code != 0 || !strings.Contains(r.stdout, "51 rows, 9 rejected") {
		t.Fatalf("merge: %+v", r)
	}
	rej0, rej1 := filepath.Join(parts, "part-00000.rejects.csv"), filepath.Join(parts, "part-00001.rejects.csv")
	good0, good1 := readFile(t, rej0), readFile(t, rej1)
	n0, n1 := bytes.Count(good0, []byte("\n"))-1, bytes.Count(good1, []byte("\n"))
	if n0 < 1 || n1 < 1 || n0+n1 != 9 {
		t.Fatalf("rejects %q and %q: want some in each part, 9 in all", good0, good1)
	}
	for _, c := range []struct {
		name         string
		part0, part1 []byte // nil: remove the file
		want         string
	}{
		{"one more", good0, append(slices.Clone(good1), "99,mass,x,\"99,x,1\"\n"...), fmt.Sprintf("part 1: %s has %d rejects, its manifest says %d", rej1, n1+1, n1)},
		{"one less", good0[:bytes.LastIndexByte(good0[:len(good0)-1], '\n')+1], good1, fmt.Sprintf("part 0: %s has %d rejects, its manifest says %d", rej0, n0-1, n0)},
		{"no header", good0[bytes.IndexByte(good0, '\n')+1:], good1, "part 0: " + rej0 + ": not a rejects file"},
		{"header again", good0, append([]byte("line,column,reason,record\n"), good1...), "part 1: " + rej1 + ": record 1:"},
		{"broken quote", good0, append(slices.Clone(good1), "99,mass,x,\"99,x\n"...), fmt.Sprintf("part 1: %s: parse error on line %d, column 17: extraneous", rej1, n1+1)},
		{"missing", good0, nil, "part 1: " + rej1 + " is missing"},
	} {
		writeFile(t, rej0, c.part0)
		os.Remove(rej1)
		if c.part1 != nil {
			writeFile(t, rej1, c.part1)
		}
		joined := filepath.Join(dir, "joined.csv")
		r := momentum(t, nil, "merge", "--into", joined, parts)
		if r.code != exitFailure || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%s: %+v; want %q", c.name, r, c.want)
		}
		if _, err := os.Stat(joined); err == nil {
			t.Errorf("%s: merge joined the parts", c.name)
		}
	}
}

// TestMergePlainGofakes3 merges on the S3 emulator exactly as
// docs/cloud-storage.md runs it, which answers UploadPartCopy 411 MissingContentLength: merge
// streams the parts into the joined object instead, and it is byte for
// byte the single run's output. The parts are large enough (over S3's
// 5 MiB minimum) that merge tries the copy first.
func TestMergePlainGofakes3(t *testing.T) {
	c := startPlainClouds(t)
	in := shardInput(14 << 20)
	local := filepath.Join(t.TempDir(), "big.csv")
	writeFile(t, local, in)
	want := momentum(t, nil, local).stdout
	c.put(t, "s3://in/big.csv", in)
	res := startTasks(t, 2, func(i int) []string {
		return c.env("MOMENTUM_INPUT=s3://in/big.csv", "MOMENTUM_OUTPUT=s3://out/big/", fmt.Sprintf("MOMENTUM_SHARD=%d/2", i))
	}, "job")
	for i, r := range res {
		if l := lastJobLog(t, r.stderr); r.code != 0 || l.Outcome != "done" {
			t.Fatalf("task %d: %+v", i, r)
		}
	}
	r := momentumEnv(t, c.env(), nil, "merge", "--into", "s3://out/big.csv", "s3://out/big/")
	if r.code != 0 || !strings.Contains(r.stdout, "joined into s3://out/big.csv") {
		t.Fatalf("merge: %+v", r)
	}
	if got, err := c.get(t, "s3://out/big.csv"); err != nil || string(got) != want {
		t.Fatalf("merged object differs from the single run (%d bytes, want %d; %v)", len(got), len(want), err)
	}
}
