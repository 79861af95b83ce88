package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

var (
	fencedBlock = regexp.MustCompile("(?ms)^```.*?^```")
	codeSpan    = regexp.MustCompile("`[^`\n]*`")
	heading     = regexp.MustCompile(`(?m)^#{1,6}[ \t]+(.+?)[ \t#]*$`)
	mdLink      = regexp.MustCompile(`\]\(([^()\s]+)\)`)
)

// withoutCode blanks a Markdown text's fenced blocks, whose lines are
// neither headings nor links.
func withoutCode(doc string) string {
	return fencedBlock.ReplaceAllString(doc, "")
}

// anchors returns the anchors GitHub gives a Markdown text's headings:
// lower case, punctuation dropped, spaces as "-", a repeated one
// suffixed -1, -2, ...
func anchors(doc string) map[string]bool {
	seen := map[string]int{}
	out := map[string]bool{}
	for _, m := range heading.FindAllStringSubmatch(withoutCode(doc), -1) {
		var b strings.Builder
		for _, r := range strings.ToLower(m[1]) {
			switch {
			case r == ' ':
				b.WriteRune('-')
			case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
				b.WriteRune(r)
			}
		}
		a := b.String()
		if n := seen[a]; n > 0 {
			out[a+"-"+strconv.Itoa(n)] = true
		} else {
			out[a] = true
		}
		seen[a]++
	}
	return out
}

// TestDocsLinks checks that every relative link in the README and the
// guides leads to a file that exists, and every #anchor to a heading of
// the file it names.
func TestDocsLinks(t *testing.T) {
	for _, name := range docFiles(t) {
		doc := string(readFile(t, name))
		text := codeSpan.ReplaceAllString(withoutCode(doc), "")
		for _, m := range mdLink.FindAllStringSubmatch(text, -1) {
			link := m[1]
			if strings.Contains(link, "://") || strings.HasPrefix(link, "mailto:") {
				continue
			}
			path, anchor, _ := strings.Cut(link, "#")
			target := name
			if path != "" {
				target = filepath.Join(filepath.Dir(name), path)
				if _, err := os.Stat(target); err != nil {
					t.Errorf("%s: link %s: %v", name, link, err)
					continue
				}
			}
			if anchor == "" {
				continue
			}
			if !strings.HasSuffix(target, ".md") {
				t.Errorf("%s: link %s: an anchor in a file that is not Markdown", name, link)
				continue
			}
			if !anchors(string(readFile(t, target)))[anchor] {
				t.Errorf("%s: link %s: %s has no heading with that anchor", name, link, target)
			}
		}
	}
}

// TestDocsAnchors checks anchors against headings as GitHub spells them.
func TestDocsAnchors(t *testing.T) {
	doc := "# Cloud storage: `s3://` and `gs://`\n## Uploads: parts in flight\n```sh\n# a comment\n```\n## Try it\n## Try it\n"
	got := anchors(doc)
	for _, want := range []string{"cloud-storage-s3-and-gs", "uploads-parts-in-flight", "try-it", "try-it-1"} {
		if !got[want] {
			t.Errorf("no anchor %q in %v", want, got)
		}
	}
	if got["a-comment"] {
		t.Error("a comment in a code block taken for a heading")
	}
}
