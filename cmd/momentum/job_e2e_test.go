package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// jobLog is the JSON line a job ends with.
type jobLog struct {
	Level                                           string `json:"severity"`
	Msg                                             string `json:"message"`
	Outcome, Input, Output, Report, Rejects, Column string
	Rows, Rejected, Line                            int64
}

func lastJobLog(t *testing.T, stderr string) jobLog {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	var l jobLog
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &l); err != nil {
		t.Fatalf("the job's last line on stderr is not JSON: %q", stderr)
	}
	return l
}

// TestJob runs the binary as a Cloud Run job task (CLOUD_RUN_JOB set) and
// as "momentum job", against the S3 and Cloud Storage emulators.
func TestJob(t *testing.T) {
	c := startClouds(t)
	particles := readFile(t, testdata(t, "particles.csv"))
	golden := string(readFile(t, testdata(t, "particles.golden")))
	c.put(t, "gs://in/particles.csv", particles)
	c.put(t, "s3://in/particles.csv", particles)
	task := []string{"CLOUD_RUN_JOB=momentum", "CLOUD_RUN_EXECUTION=momentum-abc12", "CLOUD_RUN_TASK_INDEX=0", "CLOUD_RUN_TASK_COUNT=1"}

	t.Run("cloud run task", func(t *testing.T) {
		r := momentumEnv(t, c.env(append(task, "MOMENTUM_INPUT=gs://in/particles.csv", "MOMENTUM_OUTPUT=gs://out/particles.csv")...), nil)
		if r.code != 0 || r.stdout != "" {
			t.Fatalf("job: %+v", r)
		}
		if l := lastJobLog(t, r.stderr); l.Level != "INFO" || l.Outcome != "done" || l.Rows != 12 {
			t.Errorf("summary %+v", l)
		}
		if got, err := c.get(t, "gs://out/particles.csv"); err != nil || string(got) != golden {
			t.Errorf("output: %q, %v", got, err)
		}
		// Cloud Run runs a task again after a crash: it finds its output.
		r = momentumEnv(t, c.env(append(task, "MOMENTUM_INPUT=gs://in/particles.csv", "MOMENTUM_OUTPUT=gs://out/particles.csv")...), nil)
		if l := lastJobLog(t, r.stderr); r.code != 0 || l.Outcome != "duplicate" {
			t.Errorf("task run again: %+v", r)
		}
		if got, _ := c.get(t, "gs://out/particles.csv"); string(got) != golden {
			t.Errorf("output changed by the second run")
		}
	})

	t.Run("job subcommand across clouds", func(t *testing.T) {
		r := momentumEnv(t, c.env(), nil, "job", "--input", "s3://in/particles.csv", "--output", "gs://out/from-s3.csv")
		if r.code != 0 {
			t.Fatalf("job: %+v", r)
		}
		if got, err := c.get(t, "gs://out/from-s3.csv"); err != nil || string(got) != golden {
			t.Errorf("output: %q, %v", got, err)
		}
	})

	t.Run("bad data", func(t *testing.T) {
		c.put(t, "gs://in/bad.csv", []byte("mass,velocity\n1,2\n3,x\n"))
		r := momentumEnv(t, c.env(append(task, "MOMENTUM_INPUT=gs://in/bad.csv", "MOMENTUM_OUTPUT=gs://out/bad.csv")...), nil)
		l := lastJobLog(t, r.stderr)
		if r.code != exitData || l.Level != "ERROR" || l.Line != 3 || l.Column != "velocity" || l.Report != "gs://out/bad.error.json" {
			t.Fatalf("job on bad data: code %d, log %+v", r.code, l)
		}
		if _, err := c.get(t, "gs://out/bad.csv"); err == nil {
			t.Error("an output was written")
		}
		if rep, err := c.get(t, "gs://out/bad.error.json"); err != nil || !strings.Contains(string(rep), `"line": 3`) {
			t.Errorf("report: %s, %v", rep, err)
		}
	})

	t.Run("skip mode", func(t *testing.T) {
		c.put(t, "s3://in/mixed.csv", []byte("mass,velocity\n1,2\n3,x\n4,5\n"))
		r := momentumEnv(t, c.env(append(task, "MOMENTUM_ON_ERROR=skip", "MOMENTUM_INPUT=s3://in/mixed.csv", "MOMENTUM_OUTPUT=s3://out/mixed.csv")...), nil)
		l := lastJobLog(t, r.stderr)
		if r.code != 0 || l.Rows != 2 || l.Rejected != 1 || l.Rejects != "s3://out/mixed.rejects.csv" {
			t.Fatalf("job: code %d, log %+v", r.code, l)
		}
		if got, err := c.get(t, "s3://out/mixed.csv"); err != nil || string(got) != "mass,velocity,momentum\n1,2,2\n4,5,20\n" {
			t.Errorf("output: %q, %v", got, err)
		}
		if got, err := c.get(t, "s3://out/mixed.rejects.csv"); err != nil || !strings.Contains(string(got), "3,velocity") {
			t.Errorf("rejects: %q, %v", got, err)
		}
	})

	t.Run("missing input", func(t *testing.T) {
		r := momentumEnv(t, c.env(append(task, "MOMENTUM_INPUT=gs://in/nothing.csv", "MOMENTUM_OUTPUT=gs://out/nothing.csv")...), nil)
		if l := lastJobLog(t, r.stderr); r.code != exitFailure || l.Level != "ERROR" || !strings.Contains(r.stderr, "not found") {
			t.Errorf("job on a missing input: %+v", r)
		}
	})

	t.Run("configuration", func(t *testing.T) {
		for _, env := range [][]string{
			{"MOMENTUM_OUTPUT=gs://out/x.csv"},
			{"MOMENTUM_INPUT=gs://in/x.csv"},
			{"MOMENTUM_INPUT=gs://in/x.csv", "MOMENTUM_OUTPUT=gs://in/x.csv"},
			{"MOMENTUM_INPUT=gs://in/x.csv", "MOMENTUM_OUTPUT=gs://out/x.csv", "MOMENTUM_DECIMALS=many"},
		} {
			r := momentumEnv(t, c.env(append(task, env...)...), nil)
			if l := lastJobLog(t, r.stderr); r.code != exitUsage || l.Level != "ERROR" || !strings.Contains(l.Msg, "MOMENTUM_") {
				t.Errorf("%q: %+v", env, r)
			}
		}
	})
}
