package main

import (
	"archive/zip"
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/momentum-run/momentum/adapters/image"
)

// TestDemo replays the demo on one machine, with the project's own
// emulators: the container image is built without Docker; its binary
// serves as a Cloud Run service and processes an upload to Cloud Storage;
// "momentum package lambda" takes the same binary out of the image into a
// Lambda zip; the zip's bootstrap runs under AWS's runtime interface
// emulator and processes the same file uploaded to S3. Both outputs must
// be the same bytes, from the same binary. Run it with "make demo".
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the image; the other tests run each platform")
	}
	if runtime.GOARCH != "amd64" && runtime.GOARCH != "arm64" {
		t.Skip("the image is built for linux/amd64 and linux/arm64")
	}
	rieBinary(t) // built now, before the slow steps
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	demo := readFile(t, testdata(t, "demo.csv"))

	// 1. The image, built as cmd/momentum-image builds it: no Docker.
	imageDir := filepath.Join(dir, "image")
	build := exec.Command("go", "run", "./cmd/momentum-image", "--platform", "linux/"+runtime.GOARCH,
		"--layout", imageDir, "--tag", "momentum:demo")
	build.Dir = root
	out, err := build.Output()
	if err != nil {
		t.Fatalf("building the image: %v\n%s", err, stderrOf(err))
	}
	t.Logf("image built without Docker: %s", strings.TrimSpace(string(out)))

	// 2. "Cloud Run": the image's binary, as its entrypoint, serving.
	src, err := image.Open(context.Background(), imageDir+":momentum:demo", image.Linux(runtime.GOARCH))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	ep, err := image.ReadEntrypoint(context.Background(), src.Image)
	if err != nil {
		t.Fatal(err)
	}
	entry, binary := ep.Path, ep.Data
	container := filepath.Join(dir, "container"+strings.ReplaceAll(entry, "/", "_"))
	if err := os.WriteFile(container, binary, 0o755); err != nil {
		t.Fatal(err)
	}
	g := startGCSFake(t)
	svc := startServer(t, g, container)
	if code, body := svc.event(t, g.upload(t, "incoming/demo.csv", demo)); code != 200 || !strings.Contains(body, `"done"`) {
		t.Fatalf("Cloud Run event: %d %s", code, body)
	}
	fromGCS, ok := g.get(t, "momentum/demo.csv")
	if !ok {
		t.Fatal("no output in Cloud Storage")
	}

	// 3. "I'm coming out": the same binary, zipped for Lambda.
	zipPath := filepath.Join(dir, "function.zip")
	pkg := momentum(t, nil, "package", "lambda", "--image", imageDir+":momentum:demo", "--arch", runtime.GOARCH, "-o", zipPath)
	if pkg.code != 0 {
		t.Fatalf("package lambda: %+v", pkg)
	}
	t.Logf("momentum package lambda:\n%s", pkg.stdout)
	zr, err := zip.OpenReader(zipPath)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := zr.File[0].Open()
	if err != nil {
		t.Fatal(err)
	}
	bootstrapBytes, _ := io.ReadAll(rc)
	rc.Close()
	zr.Close()
	if !bytes.Equal(bootstrapBytes, binary) {
		t.Fatal("the zip's bootstrap is not the image's binary")
	}
	bootstrapPath := filepath.Join(dir, "lambda", "bootstrap")
	os.MkdirAll(filepath.Dir(bootstrapPath), 0o755)
	if err := os.WriteFile(bootstrapPath, bootstrapBytes, 0o755); err != nil {
		t.Fatal(err)
	}

	// 4. "AWS Lambda": the bootstrap under the runtime interface emulator.
	s3 := startLambdaS3(t)
	fn := startBootstrap(t, s3, bootstrapPath)
	if inv := fn.invoke(t, s3.upload(t, "incoming/demo.csv", demo)); inv.outcomes() != "done" {
		t.Fatalf("Lambda invocation: %+v", inv)
	}
	fromS3, ok := s3.get(t, "momentum/demo.csv")
	if !ok {
		t.Fatal("no output in S3")
	}

	// 5. The same answer, from the same bytes.
	if !bytes.Equal(fromGCS, fromS3) {
		t.Fatalf("Cloud Run wrote:\n%s\nLambda wrote:\n%s", fromGCS, fromS3)
	}
	if want := readFile(t, testdata(t, "demo.golden")); !bytes.Equal(fromS3, want) {
		t.Errorf("both wrote:\n%s\nwant demo.golden:\n%s", fromS3, want)
	}
	t.Logf("\n  %-28s %s\n  %-28s %s\n  %-28s sha256:%s\n  %-28s sha256:%s\n%s",
		"Cloud Run (image "+entry+")", "gs://data/momentum/demo.csv",
		"AWS Lambda (bootstrap)", "s3://data/momentum/demo.csv",
		"binary in the image", sha256Hex(binary),
		"binary in the zip", sha256Hex(bootstrapBytes),
		fromS3)
}

func stderrOf(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}
