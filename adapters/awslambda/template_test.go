package awslambda_test

// A static check of the AWS SAM template at the repository root: the
// function's runtime and limits, the least privilege of its S3 grants, its
// configuration, the bucket's protections and the build that sam runs.
// No AWS account is involved: the template is read as YAML, with
// CloudFormation's short-form tags (!Ref, !Sub, !GetAtt, ...) turned into
// their long forms ({"Ref": x}, {"Fn::Sub": x}, ...).

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// templateDir is the repository root, where template.yaml and the
// Makefile are.
const templateDir = "../../"

// The S3 actions the function needs.
const (
	getObject        = "s3:GetObject"
	getObjectVersion = "s3:GetObjectVersion"
	putObject        = "s3:PutObject"
	abortMultipart   = "s3:AbortMultipartUpload"
	listBucket       = "s3:ListBucket"
)

// neededActions are the only actions the function's policies may grant.
var neededActions = []string{getObject, getObjectVersion, putObject, abortMultipart, listBucket}

// The places an S3 resource of the function's policies can name.
const (
	placeBucket     = "the bucket ARN"
	placeInput      = "the input prefix"
	placeOutput     = "the output prefix"
	placeAllObjects = "every object of the bucket (bucket/*)"
	placeAny        = `"*"`
)

// momentumEnv is every variable the binary reads as configuration.
var momentumEnv = []string{
	"MOMENTUM_INPUT", "MOMENTUM_OUTPUT", "MOMENTUM_ON_ERROR", "MOMENTUM_DECIMALS", "MOMENTUM_DELIMITER",
	"MOMENTUM_HEADER", "MOMENTUM_MASS", "MOMENTUM_VELOCITY", "MOMENTUM_MOMENTUM", "MOMENTUM_MAX_RECORD",
	"MOMENTUM_WORKERS",
}

func TestTemplate(t *testing.T) {
	tpl := loadTemplate(t, filepath.Join(templateDir, "template.yaml"))
	params := asMap(tpl["Parameters"])
	resources := asMap(tpl["Resources"])
	if resources == nil {
		t.Fatal("template.yaml has no Resources")
	}
	fnID, fn := onlyResource(t, resources, "AWS::Serverless::Function")
	props := asMap(fn["Properties"])
	if props == nil {
		t.Fatalf("%s has no Properties", fnID)
	}
	events := s3Events(t, fnID, props)
	event := events[0]
	for _, e := range events[1:] {
		if !reflect.DeepEqual(e["Bucket"], event["Bucket"]) {
			t.Fatalf("the S3 events name the buckets %v and %v, want one", event["Bucket"], e["Bucket"])
		}
	}
	bucketID, ok := refName(event["Bucket"])
	bucket := asMap(asMap(resources[bucketID])["Properties"])
	if !ok || asMap(resources[bucketID])["Type"] != "AWS::S3::Bucket" || bucket == nil {
		t.Fatalf("the S3 event's Bucket is %v, want !Ref to an AWS::S3::Bucket of the template", event["Bucket"])
	}
	// The bucket's name, as the policies and environment spell it.
	bucketName, ok := subString(bucket["BucketName"])
	if !ok {
		t.Fatalf("%s.BucketName is %v, want a !Sub string (the policies repeat it to avoid a circular dependency)", bucketID, bucket["BucketName"])
	}

	t.Run("runtime is provided.al2023", func(t *testing.T) {
		if got := props["Runtime"]; got != "provided.al2023" {
			t.Errorf("%s.Runtime = %v, want provided.al2023", fnID, got)
		}
	})

	t.Run("handler is bootstrap", func(t *testing.T) {
		if got := props["Handler"]; got != "bootstrap" {
			t.Errorf("%s.Handler = %v, want bootstrap (the binary's name in the zip)", fnID, got)
		}
	})

	t.Run("architecture from a parameter, x86_64 by default, arm64 allowed", func(t *testing.T) {
		archs := asList(props["Architectures"])
		if len(archs) != 1 {
			t.Fatalf("%s.Architectures = %v, want one entry, !Ref to a parameter", fnID, props["Architectures"])
		}
		name, ok := refName(archs[0])
		p := asMap(params[name])
		if !ok || p == nil {
			t.Fatalf("%s.Architectures[0] = %v, want !Ref to a parameter", fnID, archs[0])
		}
		if p["Default"] != "x86_64" {
			t.Errorf("parameter %s: Default = %v, want x86_64 (the binary of the linux/amd64 image)", name, p["Default"])
		}
		if !sameSet(strs(p["AllowedValues"]), "x86_64", "arm64") {
			t.Errorf("parameter %s: AllowedValues = %v, want [x86_64 arm64]", name, p["AllowedValues"])
		}
	})

	t.Run("recursive loops are terminated", func(t *testing.T) {
		if got := props["RecursiveLoop"]; got != "Terminate" {
			t.Errorf("%s.RecursiveLoop = %v, want Terminate", fnID, got)
		}
	})

	t.Run("timeout bounded", func(t *testing.T) {
		checkBounded(t, params, fnID+".Timeout", props["Timeout"], 1, 900)
	})

	t.Run("concurrency reserved and capped from a parameter", func(t *testing.T) {
		// Either !Ref PARAM, or !If [COND, !Ref PARAM, !Ref AWS::NoValue]
		// where COND is !Not [!Equals [!Ref PARAM, "0"]]: 0 reserves none.
		v := props["ReservedConcurrentExecutions"]
		if branches := asList(asMap(v)["Fn::If"]); len(branches) == 3 {
			cond, _ := branches[0].(string)
			name, _ := refName(branches[1])
			want := map[string]any{"Fn::Not": []any{map[string]any{"Fn::Equals": []any{map[string]any{"Ref": name}, "0"}}}}
			if got := asMap(tpl["Conditions"])[cond]; !reflect.DeepEqual(got, want) {
				t.Errorf("condition %s = %v, want !Not [!Equals [!Ref %s, \"0\"]]", cond, got, name)
			}
			if n, _ := refName(branches[2]); n != "AWS::NoValue" {
				t.Errorf("%s.ReservedConcurrentExecutions: the else branch is %v, want !Ref AWS::NoValue", fnID, branches[2])
			}
			v = branches[1]
		}
		name, ok := refName(v)
		p := asMap(params[name])
		if !ok || p == nil {
			t.Fatalf("%s.ReservedConcurrentExecutions = %v, want !Ref to a parameter (or !If on it)", fnID, props["ReservedConcurrentExecutions"])
		}
		checkBounded(t, params, fnID+".ReservedConcurrentExecutions", v, 0, 1000)
		// A burst must not take the account's default 1,000, nor a
		// default deploy starve the other functions.
		if def, _ := number(p["Default"]); def < 1 || def > 100 {
			t.Errorf("parameter %s: Default = %v, want 1 to 100", name, p["Default"])
		}
		// Throttled events wait in the async queue up to this age.
		if n, _ := number(asMap(props["EventInvokeConfig"])["MaximumEventAgeInSeconds"]); n != 21600 {
			t.Errorf("EventInvokeConfig.MaximumEventAgeInSeconds = %v, want 21600: throttled events are retried for 6 hours", n)
		}
	})

	t.Run("memory bounded", func(t *testing.T) {
		checkBounded(t, params, fnID+".MemorySize", props["MemorySize"], 128, 10240)
	})

	t.Run("S3 events: object creations under InputPrefix ending in .csv, .csv.gz or .csv.zst", func(t *testing.T) {
		var suffixes []string
		for _, event := range events {
			var kinds []string
			for _, e := range asListOrOne(event["Events"]) {
				kinds = append(kinds, fmt.Sprint(e))
			}
			if len(kinds) == 0 {
				t.Errorf("an S3 event has no Events, want [s3:ObjectCreated:*]")
			}
			for _, k := range kinds {
				if !strings.HasPrefix(k, "s3:ObjectCreated:") {
					t.Errorf("an S3 event fires on %s, want object creations only", k)
				}
			}
			rules := map[string][]any{}
			for _, r := range asList(lookup(event, "Filter", "S3Key", "Rules")) {
				name := strings.ToLower(fmt.Sprint(asMap(r)["Name"]))
				rules[name] = append(rules[name], asMap(r)["Value"])
			}
			if p := rules["prefix"]; len(p) != 1 || !isRef(p[0], "InputPrefix") {
				t.Errorf("S3 event filter prefix = %v, want [!Ref InputPrefix]: outputs must not trigger the function", p)
			}
			s := rules["suffix"]
			if len(s) != 1 {
				t.Errorf("S3 event filter suffix = %v, want one: reports and other files must not trigger the function", s)
				continue
			}
			suffixes = append(suffixes, fmt.Sprint(s[0]))
		}
		// Each suffix once: two rules that overlap are refused by S3.
		if !sameSet(suffixes, ".csv", ".csv.gz", ".csv.zst") || len(suffixes) != 3 {
			t.Errorf("S3 event suffixes = %v, want .csv, .csv.gz and .csv.zst, one rule each", suffixes)
		}
		// A report or a rejects file under InputPrefix matches none.
		for _, key := range []string{"a.error.json", "a.csv.tmp", "a.gz", "a.zst"} {
			for _, sfx := range suffixes {
				if strings.HasSuffix(key, sfx) {
					t.Errorf("%s would trigger the function (suffix %s)", key, sfx)
				}
			}
		}
	})

	statements := policyStatements(t, fnID, props)
	// grants[action] lists the places a statement allows it on.
	grants := map[string][]string{}
	conditioned := map[string]bool{}
	for _, st := range statements {
		if st.effect != "Allow" {
			continue
		}
		for _, a := range st.actions {
			// IAM compares action names without regard to case.
			if i := slices.IndexFunc(neededActions, func(n string) bool { return strings.EqualFold(a, n) }); i >= 0 {
				a = neededActions[i]
			}
			for _, r := range st.resources {
				grants[a] = append(grants[a], classifyResource(bucketName, r))
			}
			if st.condition != nil {
				conditioned[a] = true
			}
		}
	}

	t.Run("IAM: no wildcard actions, no wildcard resources", func(t *testing.T) {
		if len(statements) == 0 {
			t.Fatalf("%s.Policies has no statements: the function could not read or write", fnID)
		}
		for _, st := range statements {
			if st.effect != "Allow" && st.effect != "Deny" {
				t.Errorf("statement %s: Effect = %q, want Allow or Deny", st.name, st.effect)
			}
			if st.notAction || st.notResource {
				t.Errorf("statement %s uses NotAction or NotResource: it grants everything else", st.name)
			}
			for _, a := range st.actions {
				if strings.ContainsAny(a, "*?") {
					t.Errorf("statement %s: action %q has a wildcard; name each action", st.name, a)
				}
			}
			if len(st.resources) == 0 {
				t.Errorf("statement %s names no Resource", st.name)
			}
			for _, r := range st.resources {
				switch place := classifyResource(bucketName, r); place {
				case placeAny, placeAllObjects:
					t.Errorf("statement %s: Resource %v is %s; name the prefix", st.name, r, place)
				}
			}
		}
	})

	t.Run("IAM: only the S3 actions the function uses", func(t *testing.T) {
		for a := range grants {
			if !slices.Contains(neededActions, a) {
				t.Errorf("the function is granted %s; it needs only %v", a, neededActions)
			}
		}
	})

	t.Run("IAM: Get only on the input and output prefixes", func(t *testing.T) {
		checkGrant(t, grants, getObject, placeInput, placeOutput)
		checkGrant(t, grants, getObjectVersion, placeInput)
	})

	t.Run("IAM: Put and AbortMultipartUpload only on the output prefix", func(t *testing.T) {
		checkGrant(t, grants, putObject, placeOutput)
		checkGrant(t, grants, abortMultipart, placeOutput)
	})

	t.Run("IAM: ListBucket only on the bucket ARN, unconditioned", func(t *testing.T) {
		checkGrant(t, grants, listBucket, placeBucket)
		if conditioned[listBucket] {
			t.Errorf("s3:ListBucket has a Condition: GetObject requests carry no s3:prefix, so S3 would still answer 403 for a missing output")
		}
	})

	t.Run("IAM: no managed policies, no role of its own", func(t *testing.T) {
		if props["Role"] != nil {
			t.Errorf("%s.Role is set: SAM would ignore Policies", fnID)
		}
		for _, r := range resources {
			switch typ := asMap(r)["Type"]; typ {
			case "AWS::IAM::Role", "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy":
				t.Errorf("the template declares an %s; the function's grants belong in its Policies", typ)
			}
		}
		for _, p := range asListOrOne(props["Policies"]) {
			if _, inline := asMap(p)["Statement"]; !inline {
				t.Errorf("%s.Policies has %v; want inline statements only (no managed or SAM template policies)", fnID, p)
			}
		}
	})

	t.Run("no circular reference to the bucket", func(t *testing.T) {
		rest := map[string]any{}
		for k, v := range props {
			if k != "Events" {
				rest[k] = v
			}
		}
		for _, path := range references(rest, bucketID, "") {
			t.Errorf("%s.%s refers to %s: the bucket's notification depends on the function; spell the name with !Sub as BucketName does", fnID, path, bucketID)
		}
	})

	env := asMap(lookup(props, "Environment", "Variables"))
	t.Run("environment: MOMENTUM_INPUT and MOMENTUM_OUTPUT from the prefixes", func(t *testing.T) {
		for name, want := range map[string]string{
			"MOMENTUM_INPUT":  "s3://" + bucketName + "/${InputPrefix}",
			"MOMENTUM_OUTPUT": "s3://" + bucketName + "/${OutputPrefix}",
		} {
			if got, ok := subString(env[name]); !ok || got != want {
				t.Errorf("%s = %v, want !Sub %q", name, env[name], want)
			}
		}
		if !isRef(env["MOMENTUM_ON_ERROR"], "OnError") {
			t.Errorf("MOMENTUM_ON_ERROR = %v, want !Ref OnError", env["MOMENTUM_ON_ERROR"])
		}
		onError := asMap(params["OnError"])
		if onError["Default"] != "fail" || !sameSet(strs(onError["AllowedValues"]), "fail", "skip") {
			t.Errorf("parameter OnError: Default %v, AllowedValues %v; want fail, [fail skip]", onError["Default"], onError["AllowedValues"])
		}
		for name := range env {
			if strings.HasPrefix(name, "MOMENTUM_") && !slices.Contains(momentumEnv, name) {
				t.Errorf("environment variable %s is not one the binary reads (%v)", name, momentumEnv)
			}
		}
	})

	t.Run("prefix parameters: disjoint defaults, no empty or wildcard prefix", func(t *testing.T) {
		in, out := asMap(params["InputPrefix"]), asMap(params["OutputPrefix"])
		inDef, _ := in["Default"].(string)
		outDef, _ := out["Default"].(string)
		if inDef == "" || outDef == "" || strings.HasPrefix(inDef, outDef) || strings.HasPrefix(outDef, inDef) {
			t.Errorf("InputPrefix default %q and OutputPrefix default %q overlap: each output would trigger the function again", inDef, outDef)
		}
		for name, p := range map[string]map[string]any{"InputPrefix": in, "OutputPrefix": out} {
			pattern, _ := p["AllowedPattern"].(string)
			re, err := regexp.Compile(pattern)
			if pattern == "" || err != nil {
				t.Errorf("parameter %s: AllowedPattern %q (%v); want one that refuses empty and wildcard prefixes", name, pattern, err)
				continue
			}
			if d, _ := p["Default"].(string); !re.MatchString(d) {
				t.Errorf("parameter %s: Default %q does not match its AllowedPattern %q", name, d, pattern)
			}
			// "" would grant bucket/*, and * or ? are IAM wildcards.
			for _, bad := range []string{"", "/", "*", "*/", "in*/", "in?/", "incoming", "a//"} {
				if re.MatchString(bad) {
					t.Errorf("parameter %s: AllowedPattern %q accepts %q", name, pattern, bad)
				}
			}
		}
		want := map[string]any{"Fn::Not": []any{map[string]any{"Fn::Equals": []any{
			map[string]any{"Ref": "InputPrefix"}, map[string]any{"Ref": "OutputPrefix"}}}}}
		var asserts []any
		for _, rule := range asMap(tpl["Rules"]) {
			for _, a := range asList(asMap(rule)["Assertions"]) {
				asserts = append(asserts, asMap(a)["Assert"])
			}
		}
		if !containsValue(asserts, want) {
			t.Errorf("no Rules assertion !Not [!Equals [!Ref InputPrefix, !Ref OutputPrefix]]")
		}
	})

	invoke := asMap(props["EventInvokeConfig"])
	onFailure := asMap(lookup(invoke, "DestinationConfig", "OnFailure"))
	queueID := ""
	if att := asList(asMap(onFailure["Destination"])["Fn::GetAtt"]); len(att) == 2 && att[1] == "Arn" {
		queueID, _ = att[0].(string)
	}
	t.Run("failed events go to an SQS queue of the template", func(t *testing.T) {
		if n, ok := number(invoke["MaximumRetryAttempts"]); !ok || n < 1 || n > 2 {
			t.Errorf("EventInvokeConfig.MaximumRetryAttempts = %v, want 1 or 2", invoke["MaximumRetryAttempts"])
		}
		if onFailure["Type"] != "SQS" {
			t.Errorf("EventInvokeConfig.DestinationConfig.OnFailure.Type = %v, want SQS", onFailure["Type"])
		}
		queue := asMap(resources[queueID])
		if queue["Type"] != "AWS::SQS::Queue" {
			t.Fatalf("OnFailure.Destination = %v, want !GetAtt QUEUE.Arn of an AWS::SQS::Queue in Resources", onFailure["Destination"])
		}
		qp := asMap(queue["Properties"])
		if qp["SqsManagedSseEnabled"] != true && qp["KmsMasterKeyId"] == nil {
			t.Errorf("queue %s is not encrypted: want SqsManagedSseEnabled: true", queueID)
		}
		if n, _ := number(qp["MessageRetentionPeriod"]); n != 14*24*3600 {
			t.Errorf("queue %s: MessageRetentionPeriod = %v, want 1209600 (14 days)", queueID, qp["MessageRetentionPeriod"])
		}
	})

	t.Run("bucket blocks public access", func(t *testing.T) {
		block := asMap(bucket["PublicAccessBlockConfiguration"])
		for _, flag := range []string{"BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"} {
			if block[flag] != true {
				t.Errorf("%s.PublicAccessBlockConfiguration.%s = %v, want true", bucketID, flag, block[flag])
			}
		}
		if got := asList(lookup(bucket, "OwnershipControls", "Rules")); !containsValue(got, map[string]any{"ObjectOwnership": "BucketOwnerEnforced"}) {
			t.Errorf("%s.OwnershipControls.Rules = %v, want [ObjectOwnership: BucketOwnerEnforced] (no ACLs)", bucketID, got)
		}
	})

	t.Run("bucket is encrypted", func(t *testing.T) {
		cfg := asList(lookup(bucket, "BucketEncryption", "ServerSideEncryptionConfiguration"))
		if len(cfg) == 0 {
			t.Fatalf("%s has no BucketEncryption.ServerSideEncryptionConfiguration", bucketID)
		}
		for _, c := range cfg {
			switch alg := lookup(c, "ServerSideEncryptionByDefault", "SSEAlgorithm"); alg {
			case "AES256", "aws:kms", "aws:kms:dsse":
			default:
				t.Errorf("%s: SSEAlgorithm = %v, want AES256 or aws:kms", bucketID, alg)
			}
		}
	})

	t.Run("bucket is versioned", func(t *testing.T) {
		if got := lookup(bucket, "VersioningConfiguration", "Status"); got != "Enabled" {
			t.Errorf("%s.VersioningConfiguration.Status = %v, want Enabled: the function reads the version the event names", bucketID, got)
		}
	})

	t.Run("bucket lifecycle: abort incomplete uploads, expire old versions", func(t *testing.T) {
		abort, expire := false, false
		for _, r := range asList(lookup(bucket, "LifecycleConfiguration", "Rules")) {
			if asMap(r)["Status"] != "Enabled" {
				continue
			}
			if d, ok := number(lookup(r, "AbortIncompleteMultipartUpload", "DaysAfterInitiation")); ok && d >= 1 && d <= 7 {
				abort = true
			}
			if d, ok := number(lookup(r, "NoncurrentVersionExpiration", "NoncurrentDays")); ok && d >= 1 {
				expire = true
			}
		}
		if !abort {
			t.Errorf("%s has no enabled lifecycle rule with AbortIncompleteMultipartUpload.DaysAfterInitiation 1 to 7", bucketID)
		}
		if !expire {
			t.Errorf("%s has no enabled lifecycle rule with NoncurrentVersionExpiration", bucketID)
		}
	})

	t.Run("bucket policy denies requests without TLS", func(t *testing.T) {
		bucketARN := map[string]any{"Fn::GetAtt": []any{bucketID, "Arn"}}
		objects := map[string]any{"Fn::Sub": "${" + bucketID + ".Arn}/*"}
		ok := false
		for _, r := range resources {
			r := asMap(r)
			if r["Type"] != "AWS::S3::BucketPolicy" || !isRef(lookup(r, "Properties", "Bucket"), bucketID) {
				continue
			}
			for _, st := range asListOrOne(lookup(r, "Properties", "PolicyDocument", "Statement")) {
				st := asMap(st)
				secure := fmt.Sprint(lookup(st, "Condition", "Bool", "aws:SecureTransport")) // false or "false"
				res := asListOrOne(st["Resource"])
				if st["Effect"] == "Deny" && secure == "false" &&
					(st["Principal"] == "*" || lookup(st, "Principal", "AWS") == "*") &&
					slices.Contains(asListOrOne(st["Action"]), any("s3:*")) &&
					containsValue(res, bucketARN) && containsValue(res, objects) {
					ok = true
				}
			}
		}
		if !ok {
			t.Errorf("no AWS::S3::BucketPolicy on %s with a statement Effect: Deny, Principal: *, Action: s3:*, "+
				"Resource: [bucket ARN, bucket ARN/*], Condition: {Bool: {aws:SecureTransport: false}}", bucketID)
		}
	})

	t.Run("logs kept for a bounded time", func(t *testing.T) {
		name, _ := refName(lookup(props, "LoggingConfig", "LogGroup"))
		group := asMap(resources[name])
		if group["Type"] != "AWS::Logs::LogGroup" {
			t.Fatalf("%s.LoggingConfig.LogGroup = %v, want !Ref to an AWS::Logs::LogGroup", fnID, lookup(props, "LoggingConfig", "LogGroup"))
		}
		if d, ok := number(lookup(group, "Properties", "RetentionInDays")); !ok || d < 1 {
			t.Errorf("log group %s has no RetentionInDays: its logs would be kept forever", name)
		}
	})

	t.Run("sam build runs make build-MomentumFunction", func(t *testing.T) {
		if fnID != "MomentumFunction" {
			t.Errorf("the function's logical id is %s, want MomentumFunction (the Makefile target is build-MomentumFunction)", fnID)
		}
		if got := lookup(fn, "Metadata", "BuildMethod"); got != "makefile" {
			t.Errorf("%s.Metadata.BuildMethod = %v, want makefile", fnID, got)
		}
		codeURI, _ := props["CodeUri"].(string)
		makefile := filepath.Join(templateDir, codeURI, "Makefile")
		b, err := os.ReadFile(makefile)
		if codeURI == "" || err != nil {
			t.Fatalf("%s.CodeUri = %v; reading its Makefile: %v", fnID, props["CodeUri"], err)
		}
		target := "build-" + fnID
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(target) + `\s*:`).Match(b) {
			t.Errorf("%s has no target %s, which sam build runs", makefile, target)
		}
	})

	t.Run("example event for sam local invoke names an input", func(t *testing.T) {
		path := filepath.Join(templateDir, "testdata", "lambda", "s3-put.json")
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var ev struct {
			Records []struct {
				EventName string `json:"eventName"`
				S3        struct {
					Object struct{ Key string } `json:"object"`
				} `json:"s3"`
			}
		}
		if err := json.Unmarshal(b, &ev); err != nil || len(ev.Records) == 0 {
			t.Fatalf("%s: %v records, %v; want an S3 event notification", path, len(ev.Records), err)
		}
		prefix, _ := asMap(params["InputPrefix"])["Default"].(string)
		for _, r := range ev.Records {
			if k := r.S3.Object.Key; !strings.HasPrefix(k, prefix) || !strings.HasSuffix(k, ".csv") || !strings.HasPrefix(r.EventName, "ObjectCreated:") {
				t.Errorf("%s: %s of %q; want ObjectCreated:* of %s*.csv, as the template's notification sends", path, r.EventName, k, prefix)
			}
		}
	})

	t.Run("outputs: bucket, function ARN, failure queue URL", func(t *testing.T) {
		var values []any
		for _, o := range asMap(tpl["Outputs"]) {
			values = append(values, asMap(o)["Value"])
		}
		for what, want := range map[string]any{
			"the bucket name":       map[string]any{"Ref": bucketID},
			"the function ARN":      map[string]any{"Fn::GetAtt": []any{fnID, "Arn"}},
			"the failure queue URL": map[string]any{"Ref": queueID},
		} {
			if !containsValue(values, want) {
				t.Errorf("no output has %s (%v)", what, want)
			}
		}
	})
}

// TestTemplateShortForms checks the conversion of CloudFormation's
// short-form tags that TestTemplate relies on.
func TestTemplateShortForms(t *testing.T) {
	tests := []struct {
		yaml string
		want any // nil: an error
	}{
		{`!Ref Bucket`, map[string]any{"Ref": "Bucket"}},
		{`!Condition IsProd`, map[string]any{"Condition": "IsProd"}},
		{`!GetAtt Queue.Arn`, map[string]any{"Fn::GetAtt": []any{"Queue", "Arn"}}},
		{`!GetAtt Db.Endpoint.Address`, map[string]any{"Fn::GetAtt": []any{"Db", "Endpoint.Address"}}},
		{`!GetAtt [Queue, Arn]`, map[string]any{"Fn::GetAtt": []any{"Queue", "Arn"}}},
		{`!Sub "s3://${B}/x"`, map[string]any{"Fn::Sub": "s3://${B}/x"}},
		{`!Sub ["${A}", {A: !Ref B}]`, map[string]any{"Fn::Sub": []any{"${A}", map[string]any{"A": map[string]any{"Ref": "B"}}}}},
		{`!Not [!Equals [!Ref A, 1]]`, map[string]any{"Fn::Not": []any{map[string]any{"Fn::Equals": []any{map[string]any{"Ref": "A"}, 1}}}}},
		{`{Timeout: 900, On: true, Ids: [a, "2012-10-17"]}`, map[string]any{"Timeout": 900, "On": true, "Ids": []any{"a", "2012-10-17"}}},
		{`!Ref [A]`, nil},
		{`!GetAtt Queue`, nil},
		{`!Bogus x`, nil},
		{`{a: 1, a: 2}`, nil},
	}
	for _, tt := range tests {
		var doc yaml.Node
		if err := yaml.Unmarshal([]byte(tt.yaml), &doc); err != nil {
			t.Fatalf("%s: %v", tt.yaml, err)
		}
		got, err := cfnValue(&doc)
		switch {
		case tt.want == nil && err == nil:
			t.Errorf("%s = %v, want an error", tt.yaml, got)
		case tt.want != nil && (err != nil || !reflect.DeepEqual(got, tt.want)):
			t.Errorf("%s = %v, %v; want %v", tt.yaml, got, err, tt.want)
		}
	}
}

// loadTemplate reads a CloudFormation template written in YAML.
func loadTemplate(t *testing.T, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	v, err := cfnValue(&doc)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("%s is not a YAML mapping", path)
	}
	return m
}

// intrinsics are CloudFormation's functions that have a short-form tag
// (!Name for Fn::Name).
var intrinsics = []string{
	"And", "Base64", "Cidr", "Contains", "EachMemberEquals", "EachMemberIn", "Equals", "FindInMap",
	"ForEach", "GetAZs", "GetAtt", "If", "ImportValue", "Join", "Length", "Not", "Or", "RefAll",
	"Select", "Split", "Sub", "ToJsonString", "Transform", "ValueOf", "ValueOfAll",
}

// cfnValue converts a YAML node to maps, lists and scalars, turning
// short-form tags into the long form: !Ref x is {"Ref": x}, !Condition x is
// {"Condition": x}, !GetAtt a.b is {"Fn::GetAtt": [a, b]}, and !Name v is
// {"Fn::Name": v} for the other intrinsics.
func cfnValue(n *yaml.Node) (any, error) {
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) != 1 {
			return nil, fmt.Errorf("line %d: want one YAML document", n.Line)
		}
		return cfnValue(n.Content[0])
	case yaml.AliasNode:
		return cfnValue(n.Alias)
	}
	if strings.HasPrefix(n.Tag, "!") && !strings.HasPrefix(n.Tag, "!!") {
		return shortForm(n)
	}
	switch n.Kind {
	case yaml.ScalarNode:
		var v any
		if err := n.Decode(&v); err != nil {
			return nil, fmt.Errorf("line %d: %v", n.Line, err)
		}
		return v, nil
	case yaml.SequenceNode:
		list := make([]any, 0, len(n.Content))
		for _, c := range n.Content {
			v, err := cfnValue(c)
			if err != nil {
				return nil, err
			}
			list = append(list, v)
		}
		return list, nil
	case yaml.MappingNode:
		m := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if k.Kind != yaml.ScalarNode || k.Tag == "!!merge" {
				return nil, fmt.Errorf("line %d: want a plain key", k.Line)
			}
			if _, dup := m[k.Value]; dup {
				return nil, fmt.Errorf("line %d: key %s repeated", k.Line, k.Value)
			}
			v, err := cfnValue(n.Content[i+1])
			if err != nil {
				return nil, err
			}
			m[k.Value] = v
		}
		return m, nil
	}
	return nil, fmt.Errorf("line %d: unexpected YAML node kind %v", n.Line, n.Kind)
}

// shortForm converts a node tagged !Name.
func shortForm(n *yaml.Node) (any, error) {
	name := n.Tag[1:]
	switch {
	case name == "Ref" || name == "Condition":
		if n.Kind != yaml.ScalarNode {
			return nil, fmt.Errorf("line %d: !%s takes a name", n.Line, name)
		}
		return map[string]any{name: n.Value}, nil
	case name == "GetAtt" && n.Kind == yaml.ScalarNode:
		resource, attribute, ok := strings.Cut(n.Value, ".")
		if !ok {
			return nil, fmt.Errorf("line %d: !GetAtt %s: want RESOURCE.ATTRIBUTE", n.Line, n.Value)
		}
		return map[string]any{"Fn::GetAtt": []any{resource, attribute}}, nil
	case slices.Contains(intrinsics, name):
		if n.Kind == yaml.ScalarNode {
			return map[string]any{"Fn::" + name: n.Value}, nil
		}
		untagged := *n
		untagged.Tag = ""
		v, err := cfnValue(&untagged)
		if err != nil {
			return nil, err
		}
		return map[string]any{"Fn::" + name: v}, nil
	}
	return nil, fmt.Errorf("line %d: unknown tag %s", n.Line, n.Tag)
}

// statement is an IAM policy statement, its single values made lists.
type statement struct {
	name                   string // Sid, or its position
	effect                 string
	actions                []string
	resources              []any
	condition              any
	notAction, notResource bool
}

// policyStatements returns the statements of a function's Policies, which
// must all be inline policy documents.
func policyStatements(t *testing.T, fnID string, props map[string]any) []statement {
	t.Helper()
	var out []statement
	for i, p := range asListOrOne(props["Policies"]) {
		doc := asMap(p)
		for j, s := range asListOrOne(doc["Statement"]) {
			s := asMap(s)
			st := statement{
				name:        fmt.Sprintf("%s.Policies[%d].Statement[%d]", fnID, i, j),
				effect:      fmt.Sprint(s["Effect"]),
				resources:   asListOrOne(s["Resource"]),
				condition:   s["Condition"],
				notAction:   s["NotAction"] != nil,
				notResource: s["NotResource"] != nil,
			}
			if sid, ok := s["Sid"].(string); ok {
				st.name += " (" + sid + ")"
			}
			for _, a := range asListOrOne(s["Action"]) {
				st.actions = append(st.actions, fmt.Sprint(a))
			}
			out = append(out, st)
		}
	}
	return out
}

// classifyResource names the place an S3 resource of the function's
// policies covers, given the bucket's name as BucketName spells it.
func classifyResource(bucketName string, r any) string {
	s, ok := r.(string)
	if !ok {
		if s, ok = subString(r); !ok {
			return fmt.Sprintf("%v (unreadable: write S3 resources as !Sub strings)", r)
		}
	}
	if s == "*" {
		return placeAny
	}
	for _, arn := range []string{"arn:${AWS::Partition}:s3:::", "arn:aws:s3:::"} {
		rest, ok := strings.CutPrefix(s, arn+bucketName)
		if !ok {
			continue
		}
		switch rest {
		case "":
			return placeBucket
		case "/${InputPrefix}*":
			return placeInput
		case "/${OutputPrefix}*":
			return placeOutput
		case "/*":
			return placeAllObjects
		}
	}
	return s
}

// checkGrant checks that action is granted on each of places and on
// nothing else.
func checkGrant(t *testing.T, grants map[string][]string, action string, places ...string) {
	t.Helper()
	for _, p := range places {
		if !slices.Contains(grants[action], p) {
			t.Errorf("%s is not granted on %s: the function needs it", action, p)
		}
	}
	for _, g := range grants[action] {
		if !slices.Contains(places, g) {
			t.Errorf("%s is granted on %s; want only %s", action, g, strings.Join(places, " and "))
		}
	}
}

// checkBounded checks that v is a number in [lo, hi], or !Ref to a Number
// parameter whose MinValue and MaxValue lie in it, with its Default
// between them.
func checkBounded(t *testing.T, params map[string]any, what string, v any, lo, hi float64) {
	t.Helper()
	if n, ok := number(v); ok {
		if n < lo || n > hi {
			t.Errorf("%s = %v, want %v to %v", what, n, lo, hi)
		}
		return
	}
	name, ok := refName(v)
	p := asMap(params[name])
	if !ok || p == nil {
		t.Fatalf("%s = %v, want a number or !Ref to a parameter", what, v)
	}
	minV, okMin := number(p["MinValue"])
	maxV, okMax := number(p["MaxValue"])
	def, okDef := number(p["Default"])
	if p["Type"] != "Number" || !okMin || !okMax || minV < lo || maxV > hi {
		t.Errorf("%s is parameter %s: Type %v, MinValue %v, MaxValue %v; want Number with bounds within %v to %v",
			what, name, p["Type"], p["MinValue"], p["MaxValue"], lo, hi)
	}
	if !okDef || def < minV || def > maxV {
		t.Errorf("parameter %s: Default %v is not between MinValue and MaxValue", name, p["Default"])
	}
}

// onlyResource returns the one resource of a type.
func onlyResource(t *testing.T, resources map[string]any, typ string) (string, map[string]any) {
	t.Helper()
	var ids []string
	for id, r := range resources {
		if asMap(r)["Type"] == typ {
			ids = append(ids, id)
		}
	}
	if len(ids) != 1 {
		t.Fatalf("template.yaml has %d resources of type %s (%v), want 1", len(ids), typ, ids)
	}
	return ids[0], asMap(resources[ids[0]])
}

// s3Events returns the Properties of the function's S3 events: one per
// suffix, as S3 filters take one suffix a rule.
func s3Events(t *testing.T, fnID string, props map[string]any) []map[string]any {
	t.Helper()
	var found []map[string]any
	for _, e := range asMap(props["Events"]) {
		if asMap(e)["Type"] == "S3" {
			p := asMap(asMap(e)["Properties"])
			if p == nil {
				t.Fatalf("%s has an S3 event without Properties", fnID)
			}
			found = append(found, p)
		}
	}
	if len(found) == 0 {
		t.Fatalf("%s has no event of Type S3", fnID)
	}
	return found
}

// references returns the paths in v that refer to the resource id.
func references(v any, id, path string) []string {
	switch v := v.(type) {
	case map[string]any:
		if ref, ok := v["Ref"].(string); ok && ref == id {
			return []string{path}
		}
		if att := asList(v["Fn::GetAtt"]); len(att) > 0 && att[0] == id {
			return []string{path}
		}
		if s, ok := subString(v); ok && (strings.Contains(s, "${"+id+"}") || strings.Contains(s, "${"+id+".")) {
			return []string{path}
		}
		var out []string
		for k, e := range v {
			out = append(out, references(e, id, strings.TrimPrefix(path+"."+k, "."))...)
		}
		return out
	case []any:
		var out []string
		for i, e := range v {
			out = append(out, references(e, id, path+"["+strconv.Itoa(i)+"]")...)
		}
		return out
	}
	return nil
}

// subString returns the template string of {"Fn::Sub": s} or
// {"Fn::Sub": [s, {}]}.
func subString(v any) (string, bool) {
	sub, ok := asMap(v)["Fn::Sub"]
	if !ok {
		return "", false
	}
	if l := asList(sub); len(l) == 2 && len(asMap(l[1])) == 0 {
		sub = l[0]
	}
	s, ok := sub.(string)
	return s, ok
}

func refName(v any) (string, bool) {
	s, ok := asMap(v)["Ref"].(string)
	return s, ok
}

func isRef(v any, name string) bool {
	s, ok := refName(v)
	return ok && s == name
}

// lookup follows keys through nested maps; it returns nil for a missing
// one.
func lookup(v any, keys ...string) any {
	for _, k := range keys {
		v = asMap(v)[k]
	}
	return v
}

func asMap(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}

// asListOrOne returns a list, or a single value as a list of one, as IAM
// and S3 accept either.
func asListOrOne(v any) []any {
	switch v := v.(type) {
	case nil:
		return nil
	case []any:
		return v
	}
	return []any{v}
}

// number returns a number written as a YAML number or a string, as
// CloudFormation accepts both.
func number(v any) (float64, bool) {
	switch v := v.(type) {
	case int:
		return float64(v), true
	case float64:
		return v, true
	case string:
		f, err := strconv.ParseFloat(v, 64)
		return f, err == nil
	}
	return 0, false
}

// strs returns the strings of a list.
func strs(v any) []string {
	var out []string
	for _, e := range asList(v) {
		out = append(out, fmt.Sprint(e))
	}
	return out
}

// sameSet reports whether got holds the wanted strings, each once, and
// nothing else, in any order.
func sameSet(got []string, want ...string) bool {
	got, want = slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(want))
	return slices.Equal(got, want)
}

func containsValue(list []any, want any) bool {
	return slices.ContainsFunc(list, func(v any) bool { return reflect.DeepEqual(v, want) })
}
