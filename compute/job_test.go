package compute_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"sync"
	"testing"

	"github.com/momentum-run/momentum/adapters/local"
	"github.com/momentum-run/momentum/adapters/rejects"
	"github.com/momentum-run/momentum/adapters/storetest"
	"github.com/momentum-run/momentum/compute"
)

func newJob(t *testing.T, in string) (*compute.Job, *local.Store) {
	t.Helper()
	s, err := local.NewStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	storetest.Put(t, s, "in/a.csv", []byte(in))
	return &compute.Job{
		Input: s, InputKey: "in/a.csv",
		Output: s, OutputKey: "out/a.csv", RejectsKey: "out/a.rejects.csv", ReportKey: "out/a.error.json",
	}, s
}

func read(t *testing.T, s compute.Store, key string) (string, bool) {
	t.Helper()
	b, _, err := storetest.Get(t, s, key, compute.ReadOptions{})
	if errors.Is(err, compute.ErrNotFound) {
		return "", false
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(b), true
}

func TestJobDoneThenDuplicate(t *testing.T) {
	j, s := newJob(t, "mass,velocity\n2,3\n")
	res, err := j.Run(context.Background())
	if err != nil || res.Outcome != compute.Done || res.Stats.RowsOut != 1 {
		t.Fatalf("first run: %+v, %v", res, err)
	}
	if got, _ := read(t, s, "out/a.csv"); got != "mass,velocity,momentum\n2,3,6\n" {
		t.Errorf("output %q", got)
	}
	res, err = j.Run(context.Background())
	if err != nil || res.Outcome != compute.Duplicate {
		t.Fatalf("second run: %+v, %v", res, err)
	}
	for _, key := range []string{"out/a.rejects.csv", "out/a.error.json"} {
		if _, ok := read(t, s, key); ok {
			t.Errorf("%s written", key)
		}
	}
}

// TestJobConcurrentDuplicates delivers the same event to several runs at
// once: one output, no error.
func TestJobConcurrentDuplicates(t *testing.T) {
	j, s := newJob(t, "mass,velocity\n2,3\n4,5\n")
	var wg sync.WaitGroup
	outcomes := make([]compute.Outcome, 6)
	for i := range outcomes {
		wg.Go(func() {
			jj := *j
			res, err := jj.Run(context.Background())
			if err != nil {
				t.Error(err)
			}
			outcomes[i] = res.Outcome
		})
	}
	wg.Wait()
	done := 0
	for _, o := range outcomes {
		switch o {
		case compute.Done:
			done++
		case compute.Duplicate:
		default:
			t.Errorf("outcome %q", o)
		}
	}
	if done != 1 {
		t.Errorf("%d runs wrote the output, want 1: %v", done, outcomes)
	}
	if got, _ := read(t, s, "out/a.csv"); got != "mass,velocity,momentum\n2,3,6\n4,5,20\n" {
		t.Errorf("output %q", got)
	}
}

func TestJobLoopGuard(t *testing.T) {
	j, s := newJob(t, "mass,velocity,momentum\n2,3,6\n")
	res, err := j.Run(context.Background())
	if err != nil || res.Outcome != compute.AlreadyProcessed {
		t.Fatalf("%+v, %v", res, err)
	}
	for _, key := range []string{"out/a.csv", "out/a.error.json"} {
		if _, ok := read(t, s, key); ok {
			t.Errorf("%s written", key)
		}
	}
}

func TestJobBadDataReported(t *testing.T) {
	j, s := newJob(t, "mass,velocity\n2,3\n4,x\n")
	res, err := j.Run(context.Background())
	if err != nil || res.Outcome != compute.Failed || !errors.Is(res.Err, compute.ErrNotNumber) {
		t.Fatalf("%+v, %v", res, err)
	}
	if _, ok := read(t, s, "out/a.csv"); ok {
		t.Error("partial output written")
	}
	body, ok := read(t, s, "out/a.error.json")
	if !ok {
		t.Fatal("no report")
	}
	var rep compute.JobReport
	if err := json.Unmarshal([]byte(body), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Line != 3 || rep.Column != "velocity" || rep.Input != "in/a.csv" || rep.Reason != `not a decimal number: "x"` {
		t.Errorf("report %+v", rep)
	}
}

func TestJobSkipMode(t *testing.T) {
	j, s := newJob(t, "mass,velocity\n2,3\n4,x\n")
	j.Options.OnError, j.Options.NewRejectWriter = compute.OnErrorSkip, rejects.NewWriter
	res, err := j.Run(context.Background())
	if err != nil || res.Outcome != compute.Done || res.Stats.RowsRejected != 1 {
		t.Fatalf("%+v, %v", res, err)
	}
	if got, _ := read(t, s, "out/a.csv"); got != "mass,velocity,momentum\n2,3,6\n" {
		t.Errorf("output %q", got)
	}
	if got, _ := read(t, s, "out/a.rejects.csv"); got != "line,column,reason,record\n3,velocity,\"not a decimal number: \"\"x\"\"\",\"4,x\"\n" {
		t.Errorf("rejects %q", got)
	}
}

func TestJobInputGone(t *testing.T) {
	j, s := newJob(t, "mass,velocity\n2,3\n")
	for name, mod := range map[string]func(*compute.Job){
		"missing":      func(j *compute.Job) { j.InputKey = "in/nothing.csv" },
		"changed ETag": func(j *compute.Job) { j.Read.ETag = "not-the-etag" },
	} {
		t.Run(name, func(t *testing.T) {
			jj := *j
			j := &jj
			mod(j)
			j.OutputKey, j.ReportKey = "out/"+name+".csv", "out/"+name+".json"
			res, err := j.Run(context.Background())
			if err != nil || res.Outcome != compute.Failed || !errors.Is(res.Err, compute.ErrNotFound) {
				t.Fatalf("%+v, %v", res, err)
			}
			if _, ok := read(t, s, j.ReportKey); !ok {
				t.Error("no report")
			}
			if _, ok := read(t, s, j.OutputKey); ok {
				t.Error("output written")
			}
		})
	}
}

// flaky is a Store whose reads fail as a storage server's would under
// load: a pure logic seam, to see how the job sorts the failure.
type flaky struct {
	compute.Store
	err error
}

func (f flaky) NewReader(ctx context.Context, key string, o compute.ReadOptions) (io.ReadCloser, compute.ObjectInfo, error) {
	if key == "in/a.csv" {
		return nil, compute.ObjectInfo{}, f.err
	}
	return f.Store.NewReader(ctx, key, o)
}

func TestJobTransientIsRetried(t *testing.T) {
	for _, kind := range []error{compute.ErrTransient, compute.ErrPermission, context.DeadlineExceeded} {
		j, s := newJob(t, "mass,velocity\n2,3\n")
		j.Input = flaky{s, &compute.StoreError{Op: "read", URL: "test://in/a.csv", Kind: kind, Err: errors.New("boom")}}
		res, err := j.Run(context.Background())
		if !errors.Is(err, kind) {
			t.Errorf("%v: err = %v (%+v), want it returned for a retry", kind, err, res)
		}
		for _, key := range []string{"out/a.csv", "out/a.error.json"} {
			if _, ok := read(t, s, key); ok {
				t.Errorf("%v: %s written", kind, key)
			}
		}
	}
}

// TestJobReadAhead reads the input in ranged requests: the output is the
// golden one, in fail and skip mode.
func TestJobReadAhead(t *testing.T) {
	in, want := particles(t)
	for _, skip := range []bool{false, true} {
		j, s := newJob(t, in)
		j.ReadAhead = compute.ReadAhead{Connections: 3, RangeSize: 50}
		if skip {
			j.Options.OnError, j.Options.NewRejectWriter = compute.OnErrorSkip, rejects.NewWriter
		}
		res, err := j.Run(context.Background())
		if err != nil || res.Outcome != compute.Done || res.Stats.BytesIn != int64(len(in)) {
			t.Fatalf("skip %v: %+v, %v", skip, res, err)
		}
		if got, _ := read(t, s, "out/a.csv"); got != want {
			t.Errorf("skip %v: output\n%s", skip, got)
		}
	}
}
