package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/batch"
	batchtypes "github.com/aws/aws-sdk-go-v2/service/batch/types"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// docFiles are the README and the guides in docs/, relative to this
// package: the files whose examples the tests check.
func docFiles(t *testing.T) []string {
	t.Helper()
	guides, err := filepath.Glob("../../docs/*.md")
	if err != nil || len(guides) == 0 {
		t.Fatalf("no guides in docs/: %v", err)
	}
	return append([]string{"../../README.md"}, guides...)
}

// docBlock returns the fenced block of the given language that contains
// marker, from the README or whichever guide in docs/ holds it.
func docBlock(t *testing.T, lang, marker string) string {
	t.Helper()
	for _, name := range docFiles(t) {
		doc := string(readFile(t, name))
		for _, m := range regexp.MustCompile("(?s)```"+lang+"\n(.*?)```").FindAllStringSubmatch(doc, -1) {
			if strings.Contains(m[1], marker) {
				return m[1]
			}
		}
	}
	t.Fatalf("no %s block with %q in README.md or docs/*.md", lang, marker)
	return ""
}

// envOf is a getenv over a list of variables.
func envOf(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

// TestDeployExamples checks the array job examples of docs/scale-out.md: each is
// valid for its engine, and the job's own configuration code accepts
// what each task would see, with the shard the engine would give it.
func TestDeployExamples(t *testing.T) {
	t.Run("KubernetesIndexedJob", func(t *testing.T) {
		var job batchv1.Job
		if err := yaml.UnmarshalStrict([]byte(docBlock(t, "yaml", "completionMode: Indexed")), &job); err != nil {
			t.Fatalf("not a valid batch/v1 Job: %v", err)
		}
		if job.APIVersion != "batch/v1" || job.Kind != "Job" {
			t.Fatalf("apiVersion %q, kind %q", job.APIVersion, job.Kind)
		}
		spec := job.Spec
		if spec.CompletionMode == nil || *spec.CompletionMode != batchv1.IndexedCompletion || spec.Completions == nil {
			t.Fatal("not an Indexed Job with completions")
		}
		if spec.BackoffLimitPerIndex == nil || spec.PodFailurePolicy == nil {
			t.Fatal("a FailIndex rule needs backoffLimitPerIndex")
		}
		pod := spec.Template.Spec
		if pod.RestartPolicy != corev1.RestartPolicyNever {
			t.Errorf("restartPolicy %q: FailIndex and backoffLimitPerIndex need Never", pod.RestartPolicy)
		}
		rule := spec.PodFailurePolicy.Rules[0]
		if len(pod.Containers) != 1 || rule.OnExitCodes == nil || rule.OnExitCodes.ContainerName == nil || *rule.OnExitCodes.ContainerName != pod.Containers[0].Name {
			t.Fatal("the failure policy names another container")
		}
		if codes := rule.OnExitCodes.Values; rule.Action != batchv1.PodFailurePolicyActionFailIndex || !slices.Equal(codes, []int32{exitUsage, exitData}) {
			t.Errorf("FailIndex on %v, want the permanent exit codes %d and %d", codes, exitUsage, exitData)
		}
		c := pod.Containers[0]
		env := map[string]string{}
		for _, e := range c.Env {
			env[e.Name] = e.Value
		}
		if env["MOMENTUM_SHARDS"] != strconv.Itoa(int(*spec.Completions)) {
			t.Errorf("MOMENTUM_SHARDS=%q, completions %d", env["MOMENTUM_SHARDS"], *spec.Completions)
		}
		for i := range int(*spec.Completions) {
			env["JOB_COMPLETION_INDEX"] = strconv.Itoa(i)
			cfg, err := parseJobConfig(c.Args[1:], envOf(env), &bytes.Buffer{})
			if err != nil || c.Args[0] != "job" || cfg.shard == nil || cfg.shard.Index != i || cfg.shard.Count != int(*spec.Completions) {
				t.Fatalf("pod %d: args %q: %+v, %v", i, c.Args, cfg, err)
			}
		}
	})

	t.Run("AWSBatchJobDefinition", func(t *testing.T) {
		dec := json.NewDecoder(strings.NewReader(docBlock(t, "json", `"jobDefinitionName"`)))
		dec.DisallowUnknownFields()
		var def batch.RegisterJobDefinitionInput
		if err := dec.Decode(&def); err != nil {
			t.Fatalf("not a RegisterJobDefinition input: %v", err)
		}
		if def.JobDefinitionName == nil || def.Type != batchtypes.JobDefinitionTypeContainer || def.ContainerProperties == nil {
			t.Fatal("want a named container job definition")
		}
		for _, p := range def.PlatformCapabilities {
			if !slices.Contains(p.Values(), p) {
				t.Errorf("platform capability %q", p)
			}
		}
		cp := def.ContainerProperties
		for _, r := range cp.ResourceRequirements {
			if !slices.Contains(r.Type.Values(), r.Type) {
				t.Errorf("resource type %q", r.Type)
			}
		}
		exits := map[string]batchtypes.RetryAction{}
		for _, e := range def.RetryStrategy.EvaluateOnExit {
			if !slices.Contains(e.Action.Values(), e.Action) {
				t.Errorf("retry action %q", e.Action)
			}
			exits[*e.OnExitCode] = e.Action
		}
		if exits["2"] != batchtypes.RetryActionExit || exits["65"] != batchtypes.RetryActionExit || exits["*"] != batchtypes.RetryActionRetry {
			t.Errorf("retries %v: exit codes 2 and 65 are permanent, others worth a retry", exits)
		}
		env := map[string]string{"AWS_BATCH_JOB_ARRAY_SIZE": "16"}
		for _, kv := range cp.Environment {
			env[*kv.Name] = *kv.Value
		}
		for i := range 16 {
			env["AWS_BATCH_JOB_ARRAY_INDEX"] = strconv.Itoa(i)
			cfg, err := parseJobConfig(cp.Command[1:], envOf(env), &bytes.Buffer{})
			if err != nil || cp.Command[0] != "job" || cfg.shard == nil || cfg.shard.Index != i || cfg.shard.Count != 16 {
				t.Fatalf("child %d: %+v, %v", i, cfg, err)
			}
		}
	})

	t.Run("CloudRunJob", func(t *testing.T) {
		block := docBlock(t, "sh", "--tasks")
		cmd := strings.ReplaceAll(block, "\\\n", " ")
		create := regexp.MustCompile(`gcloud run jobs create (\S+) .*`).FindString(cmd)
		tasks := regexp.MustCompile(`--tasks (\d+)`).FindStringSubmatch(create)
		vars := regexp.MustCompile(`--set-env-vars (\S+)`).FindStringSubmatch(create)
		if tasks == nil || vars == nil || !strings.Contains(create, "--parallelism") {
			t.Fatalf("no --tasks, --parallelism or --set-env-vars in %q", create)
		}
		env := map[string]string{"CLOUD_RUN_JOB": "momentum-big", "CLOUD_RUN_TASK_COUNT": tasks[1]}
		for _, kv := range strings.Split(os.Expand(vars[1], func(v string) string { return strings.ToLower(v) }), ",") {
			k, v, _ := strings.Cut(kv, "=")
			env[k] = v
		}
		env["CLOUD_RUN_TASK_INDEX"] = "15"
		cfg, err := parseJobConfig(nil, envOf(env), &bytes.Buffer{})
		if err != nil || cfg.shard == nil || cfg.shard.String() != "15/"+tasks[1] {
			t.Fatalf("%+v, %v", cfg, err)
		}
		if !strings.Contains(block, "momentum merge --into") {
			t.Error("no merge step")
		}
	})
}

// docRecipe returns the locations the array job example (docs/scale-out.md) for
// engine ("CloudRun", "Kubernetes" or "AWSBatch") uses: its input, its
// output folder, and the object its parts are merged into. The Cloud
// Run example has the merge step; for the others, which leave it out,
// it is the same step for their folder. $IN and $OUT become the buckets
// "in" and "out".
func docRecipe(t *testing.T, engine string) (input, folder, into string) {
	t.Helper()
	env := map[string]string{}
	switch engine {
	case "CloudRun":
		block := os.Expand(docBlock(t, "sh", "--tasks"), func(v string) string { return strings.ToLower(v) })
		vars := regexp.MustCompile(`--set-env-vars (\S+)`).FindStringSubmatch(block)
		merge := regexp.MustCompile(`momentum merge --into (\S+) (\S+)`).FindStringSubmatch(block)
		if vars == nil || merge == nil {
			t.Fatalf("no --set-env-vars or merge step in %q", block)
		}
		for _, kv := range strings.Split(vars[1], ",") {
			k, v, _ := strings.Cut(kv, "=")
			env[k] = v
		}
		if env["MOMENTUM_OUTPUT"] != merge[2] {
			t.Fatalf("the merge step joins %s, the tasks write %s", merge[2], env["MOMENTUM_OUTPUT"])
		}
		return env["MOMENTUM_INPUT"], env["MOMENTUM_OUTPUT"], merge[1]
	case "Kubernetes":
		var job batchv1.Job
		if err := yaml.Unmarshal([]byte(docBlock(t, "yaml", "completionMode: Indexed")), &job); err != nil {
			t.Fatal(err)
		}
		for _, e := range job.Spec.Template.Spec.Containers[0].Env {
			env[e.Name] = e.Value
		}
	case "AWSBatch":
		var def batch.RegisterJobDefinitionInput
		if err := json.Unmarshal([]byte(docBlock(t, "json", `"jobDefinitionName"`)), &def); err != nil {
			t.Fatal(err)
		}
		for _, kv := range def.ContainerProperties.Environment {
			env[*kv.Name] = *kv.Value
		}
	default:
		t.Fatalf("no example for %s in docs/scale-out.md", engine)
	}
	folder = env["MOMENTUM_OUTPUT"]
	return env["MOMENTUM_INPUT"], folder, strings.TrimSuffix(folder, "/") + ".csv"
}
