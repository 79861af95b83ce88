package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// BenchmarkStartup runs, each b.N times, three stripped static binaries built
// as the image's: a Go hello world, the SDK floor (testdata/sdkfloor: the
// cloud SDKs momentum links, and nothing else) and momentum --version. The
// gap between the floor and momentum is what momentum adds to every cold
// start; docs/performance.md, "Start-up and binary size", has the figures from hyperfine.
//
//	go test -tags disable_grpc_modules,lambda.norpc -run '^$' -bench Startup ./cmd/momentum
func BenchmarkStartup(b *testing.B) {
	dir := b.TempDir()
	for _, c := range []struct {
		name, pkg string
		args      []string
	}{
		{"hello", "./testdata/hello", nil},
		{"floor", "./testdata/sdkfloor", nil},
		{"momentum", ".", []string{"--version"}},
	} {
		exe := filepath.Join(dir, c.name)
		build := exec.Command("go", "build", "-trimpath", "-tags", buildTags, "-ldflags=-s -w", "-o", exe, c.pkg)
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			b.Fatalf("building %s: %v\n%s", c.pkg, err, out)
		}
		fi, err := os.Stat(exe)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				if out, err := exec.Command(exe, c.args...).CombinedOutput(); err != nil {
					b.Fatalf("%s: %v\n%s", c.name, err, out)
				}
			}
			b.ReportMetric(float64(fi.Size()), "bytes")
		})
	}
}
