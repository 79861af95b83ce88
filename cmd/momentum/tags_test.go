package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestOneSetOfTags checks that the commands of the README and the guides
// in docs/, CI, the Dockerfile and the Makefile build with the tags the
// tests build with, so that the first go run and the tests compile one
// set of dependencies.
func TestOneSetOfTags(t *testing.T) {
	tags := regexp.MustCompile(`(?:-tags[ =]"?|\btags=|\bTAGS ?= ?)([A-Za-z0-9_.,$()"]+)`)
	names := []string{"../../.ci/run", "../../Dockerfile", "../../Makefile"}
	for _, name := range append(names, docFiles(t)...) {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		found := tags.FindAllSubmatch(b, -1)
		if len(found) == 0 && !strings.Contains(name, "/docs/") { // a guide may build nothing
			t.Errorf("%s names no build tags", name)
		}
		for _, m := range found {
			switch got := strings.Trim(string(m[1]), `"`); got {
			case buildTags, "$tags", "$TAGS", "$(TAGS)": // variables, checked where they are set
			default:
				t.Errorf("%s builds with -tags %s, want %s", name, got, buildTags)
			}
		}
	}
	readme, _ := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if !regexp.MustCompile(`(?m)^go run -tags ` + regexp.QuoteMeta(buildTags) + ` \./cmd/momentum `).Match(readme) {
		t.Errorf("README.md: no go run -tags %s ./cmd/momentum line", buildTags)
	}
	if !regexp.MustCompile(`(?m)^go test -tags ` + regexp.QuoteMeta(buildTags) + ` -short \./\.\.\. `).Match(readme) {
		t.Errorf("README.md: no go test -tags %s -short ./... line (the quick loop)", buildTags)
	}
}
