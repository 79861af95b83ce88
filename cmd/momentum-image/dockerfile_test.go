package main

// Static checks of the repository's Dockerfile and .dockerignore, and that
// momentum-image builds what the Dockerfile describes.
//
// The Dockerfile is read by the small parser below rather than by
// github.com/moby/buildkit/frontend/dockerfile/parser: buildkit v0.34.2
// requires go 1.26.8 and newer OpenTelemetry modules than the shipped binary
// uses, and `go get` would raise both in go.mod for the sake of one test.
// The parser handles what this Dockerfile uses: comments, blank lines,
// backslash continuations (with comments inside them), --flags and shell
// quoting. It refuses heredocs and the escape directive.

import (
	"encoding/json"
	"errors"
	"fmt"
	"go/version"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// instruction is one Dockerfile instruction.
type instruction struct {
	line  int      // 1-based line of the keyword
	cmd   string   // the keyword in upper case: FROM, RUN, ...
	flags []string // leading flags such as --from=build
	args  string   // the rest, continuation lines joined
}

// stage is one FROM and the instructions up to the next.
type stage struct {
	from instruction
	base string // the image after FROM
	name string // the name after AS, or ""
	body []instruction
}

var (
	escapeDirective = regexp.MustCompile(`(?i)^#\s*escape\s*=`)
	heredoc         = regexp.MustCompile(`<<-?["']?[A-Za-z_]`)
)

// parseDockerfile splits src into stages of instructions.
func parseDockerfile(src string) ([]stage, error) {
	var ins []instruction
	var cur strings.Builder
	start := 0 // line of the instruction being joined, or 0
	for i, raw := range strings.Split(src, "\n") {
		l := strings.TrimRight(raw, " \t\r")
		t := strings.TrimLeft(l, " \t")
		if escapeDirective.MatchString(t) {
			return nil, fmt.Errorf("line %d: the escape directive is not supported", i+1)
		}
		if t == "" || strings.HasPrefix(t, "#") {
			continue // comments and blank lines, also inside a continuation
		}
		if start == 0 {
			start = i + 1
			l = t
		}
		if s, ok := strings.CutSuffix(l, `\`); ok {
			cur.WriteString(s)
			continue
		}
		cur.WriteString(l)
		in, err := splitInstruction(start, cur.String())
		if err != nil {
			return nil, err
		}
		ins = append(ins, in)
		cur.Reset()
		start = 0
	}
	if start != 0 {
		return nil, fmt.Errorf("line %d: continuation runs past the end of the file", start)
	}

	var stages []stage
	for _, in := range ins {
		if in.cmd == "FROM" {
			w := strings.Fields(in.args)
			s := stage{from: in}
			switch {
			case len(w) == 1:
				s.base = w[0]
			case len(w) == 3 && strings.EqualFold(w[1], "AS"):
				s.base, s.name = w[0], w[2]
			default:
				return nil, fmt.Errorf("line %d: FROM %s: want IMAGE [AS NAME]", in.line, in.args)
			}
			stages = append(stages, s)
			continue
		}
		if len(stages) == 0 {
			if in.cmd == "ARG" {
				continue
			}
			return nil, fmt.Errorf("line %d: %s before the first FROM", in.line, in.cmd)
		}
		stages[len(stages)-1].body = append(stages[len(stages)-1].body, in)
	}
	return stages, nil
}

// splitInstruction splits the joined text s of the instruction on line into
// its keyword, flags and arguments.
func splitInstruction(line int, s string) (instruction, error) {
	kw, rest, _ := strings.Cut(s, " ")
	in := instruction{line: line, cmd: strings.ToUpper(strings.TrimSpace(kw))}
	rest = strings.TrimSpace(rest)
	for strings.HasPrefix(rest, "--") {
		f, r, _ := strings.Cut(rest, " ")
		in.flags = append(in.flags, f)
		rest = strings.TrimSpace(r)
	}
	in.args = rest
	if heredoc.MatchString(rest) {
		return in, fmt.Errorf("line %d: heredocs are not supported", line)
	}
	return in, nil
}

// flag returns the value of --name=value among in's flags, or "".
func (in instruction) flag(name string) string {
	for _, f := range in.flags {
		if v, ok := strings.CutPrefix(f, "--"+name+"="); ok {
			return v
		}
	}
	return ""
}

// shellWords splits s into words as a POSIX shell does, removing quotes
// and backslashes; it expands nothing and treats ; && | as words.
func shellWords(s string) ([]string, error) {
	var words []string
	var w strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == ' ' || c == '\t' || c == '\n':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, errors.New("unterminated '")
			}
			w.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '"':
			inWord = true
			for i++; ; i++ {
				if i >= len(s) {
					return nil, errors.New(`unterminated "`)
				}
				if s[i] == '"' {
					break
				}
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("\"\\$`", s[i+1]) >= 0 {
					i++
				}
				w.WriteByte(s[i])
			}
		case c == '\\' && i+1 < len(s):
			i++
			w.WriteByte(s[i])
			inWord = true
		default:
			w.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	return words, nil
}

// keyValues parses the KEY=VALUE words of a LABEL or ENV instruction.
func keyValues(in instruction) ([][2]string, error) {
	words, err := shellWords(in.args)
	if err != nil {
		return nil, fmt.Errorf("line %d: %s: %v", in.line, in.cmd, err)
	}
	var kvs [][2]string
	for _, w := range words {
		k, v, ok := strings.Cut(w, "=")
		if !ok {
			return nil, fmt.Errorf("line %d: %s %s: want KEY=VALUE", in.line, in.cmd, in.args)
		}
		kvs = append(kvs, [2]string{k, v})
	}
	return kvs, nil
}

// goBuild is the go build command of a RUN instruction.
type goBuild struct {
	run  instruction
	env  []string // the NAME=VALUE words before go
	args []string // the words after go, from "build"
}

// findGoBuild returns the go build command in s, which must be the whole
// command of its RUN.
func findGoBuild(s stage) (*goBuild, error) {
	for _, in := range s.body {
		if in.cmd != "RUN" || !strings.Contains(in.args, "go build") {
			continue
		}
		words, err := shellWords(in.args)
		if err != nil {
			return nil, fmt.Errorf("line %d: RUN: %v", in.line, err)
		}
		g := &goBuild{run: in}
		i := 0
		for ; i < len(words) && strings.Contains(words[i], "="); i++ {
			g.env = append(g.env, words[i])
		}
		if i+1 >= len(words) || words[i] != "go" || words[i+1] != "build" {
			return nil, fmt.Errorf("line %d: RUN %s: want [NAME=VALUE ...] go build ...", in.line, in.args)
		}
		g.args = words[i+1:]
		return g, nil
	}
	return nil, fmt.Errorf("stage %q runs no go build", s.name)
}

// output returns the -o file of g, or "".
func (g *goBuild) output() string {
	for i, a := range g.args {
		if a == "-o" && i+1 < len(g.args) {
			return g.args[i+1]
		}
		if o, ok := strings.CutPrefix(a, "-o="); ok {
			return o
		}
	}
	return ""
}

// the returns the only instruction cmd of s; nil and a problem if there is
// none or more than one.
func (s stage) the(cmd string) (*instruction, string) {
	var found []instruction
	for _, in := range s.body {
		if in.cmd == cmd {
			found = append(found, in)
		}
	}
	if len(found) != 1 {
		return nil, fmt.Sprintf("final stage has %d %s instructions, want 1", len(found), cmd)
	}
	return &found[0], ""
}

var (
	versionTag = regexp.MustCompile(`^[^@$]+:[^@$]*\b[0-9]+\.[0-9]+\.[0-9]+\b[^@$]*(@sha256:[0-9a-f]{64})?$`)
	digestRef  = regexp.MustCompile(`@sha256:[0-9a-f]{64}$`)
	// sha256Digest is an image digest, what follows the @ of a reference.
	sha256Digest = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	// golangTag captures the Go release of an official golang image.
	golangTag = regexp.MustCompile(`^(?:docker\.io/)?(?:library/)?golang:([0-9]+\.[0-9]+\.[0-9]+)(?:-[a-z0-9.]+)?(?:@|$)`)
)

// builderGoProblem says what is wrong with the Go release of the builder
// image base for go.mod, "" when nothing: a golang:X.Y.Z image must hold the
// release go.mod's toolchain line names or, without one, a release of the go
// line's language version, no older than it. The image is what `go build`
// runs with GOTOOLCHAIN=local, so the two must agree.
func builderGoProblem(base, gomod string) string {
	m := golangTag.FindStringSubmatch(base)
	if m == nil {
		return fmt.Sprintf("builder FROM %s: want an official golang:X.Y.Z image", base)
	}
	image := "go" + m[1]
	var goLine, toolchain string
	for _, line := range strings.Split(gomod, "\n") {
		switch f := strings.Fields(line); {
		case len(f) == 2 && f[0] == "go":
			goLine = "go" + f[1]
		case len(f) == 2 && f[0] == "toolchain":
			toolchain = f[1]
		}
	}
	switch {
	case toolchain != "" && image != toolchain:
		return fmt.Sprintf("builder FROM %s: Go %s, but go.mod says toolchain %s", base, m[1], toolchain)
	case toolchain == "" && (goLine == "" || version.Lang(image) != version.Lang(goLine) || version.Compare(image, goLine) < 0):
		return fmt.Sprintf("builder FROM %s: Go %s, but go.mod says go %s", base, m[1], strings.TrimPrefix(goLine, "go"))
	}
	return ""
}

// dockerfileProblems returns what is wrong with a Dockerfile for the
// momentum image.
func dockerfileProblems(src string) []string {
	stages, err := parseDockerfile(src)
	if err != nil {
		return []string{err.Error()}
	}
	if len(stages) < 2 {
		return []string{fmt.Sprintf("%d stages, want a builder and a final stage", len(stages))}
	}
	var problems []string
	bad := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(format, a...)) }
	final := stages[len(stages)-1]

	// The final stage: an empty or distroless base, nothing run, one file copied.
	if b := final.base; b != "scratch" && !(strings.HasPrefix(b, "gcr.io/distroless/") && (versionTag.MatchString(b) || digestRef.MatchString(b))) {
		bad("final stage FROM %s: want scratch, or a distroless image pinned by version or digest", b)
	}
	var copies []instruction
	for _, in := range final.body {
		switch in.cmd {
		case "RUN":
			bad("line %d: RUN in the final stage, which has no shell", in.line)
		case "COPY", "ADD":
			copies = append(copies, in)
		}
	}
	var builder *stage
	binary := ""
	if len(copies) != 1 {
		bad("final stage has %d COPY/ADD, want 1: the binary", len(copies))
	} else {
		c := copies[0]
		words, err := shellWords(c.args)
		from := c.flag("from")
		switch {
		case err != nil:
			bad("line %d: %s: %v", c.line, c.cmd, err)
		case c.cmd != "COPY" || from == "":
			bad("line %d: %s %s: want COPY --from=BUILDER", c.line, c.cmd, c.args)
		case len(words) != 2 || strings.ContainsAny(words[0], "*?[") || strings.HasSuffix(words[0], "/") || !path.IsAbs(words[1]) || strings.HasSuffix(words[1], "/"):
			bad("line %d: COPY %s: want one file copied to an absolute file path", c.line, c.args)
		default:
			binary = words[1]
			for i := range stages[:len(stages)-1] {
				if stages[i].name == from || strconv.Itoa(i) == from {
					builder = &stages[i]
				}
			}
			if builder == nil {
				bad("line %d: COPY --from=%s: no such stage", c.line, from)
			} else if g, err := findGoBuild(*builder); err != nil {
				bad("%v", err)
			} else if g.output() != words[0] {
				bad("line %d: COPY %s: the builder's go build writes %q", c.line, c.args, g.output())
			}
		}
	}

	if in, p := final.the("USER"); p != "" {
		bad("%s (without USER it runs as root)", p)
	} else {
		uid, _, _ := strings.Cut(in.args, ":")
		if n, err := strconv.Atoi(uid); err != nil || n == 0 {
			bad("line %d: USER %s: want a numeric uid other than 0, which runAsNonRoot can check", in.line, in.args)
		}
	}
	if in, p := final.the("ENTRYPOINT"); p != "" {
		bad("%s", p)
	} else {
		var ep []string
		if err := json.Unmarshal([]byte(in.args), &ep); err != nil || len(ep) == 0 {
			bad("line %d: ENTRYPOINT %s: want exec form, a JSON array", in.line, in.args)
		} else if binary != "" && ep[0] != binary {
			bad("line %d: ENTRYPOINT %s: want the copied binary %s", in.line, in.args, binary)
		}
	}

	// The builder: pinned, and a static, reproducible build.
	if builder == nil {
		return problems
	}
	b := builder.base
	tag, digest, pinned := strings.Cut(b, "@")
	if strings.HasSuffix(tag, ":latest") || !versionTag.MatchString(tag) {
		bad("line %d: builder FROM %s: want an exact version tag such as golang:1.26.8-bookworm", builder.from.line, b)
	}
	switch {
	case !pinned:
		bad("line %d: builder FROM %s: want it pinned by digest as well, %s@sha256:DIGEST (docker buildx imagetools inspect %s)", builder.from.line, b, tag, tag)
	case !sha256Digest.MatchString(digest):
		bad("line %d: builder FROM %s: the digest is not sha256: and 64 lower-case hex digits", builder.from.line, b)
	}
	if g, err := findGoBuild(*builder); err == nil {
		if !slices.Contains(g.env, "CGO_ENABLED=0") {
			bad("line %d: go build without CGO_ENABLED=0: the binary must be static", g.run.line)
		}
		if !slices.Contains(g.args, "-trimpath") {
			bad("line %d: go build without -trimpath", g.run.line)
		}
	}
	return problems
}

// readRepoFile returns the contents of the repository's file name.
func readRepoFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestDockerfile(t *testing.T) {
	src := readRepoFile(t, "Dockerfile")
	for _, p := range dockerfileProblems(src) {
		t.Error(p)
	}
	stages, err := parseDockerfile(src)
	if err != nil {
		t.Fatal(err)
	}
	if p := builderGoProblem(stages[0].base, readRepoFile(t, "go.mod")); p != "" {
		t.Error(p)
	}
}

func TestBuilderGoProblem(t *testing.T) {
	const pinned = "golang:1.26.8-bookworm@sha256:f4191582e1522dfc5980a6bdc0309a756f9697f3e7d0f199c7e26fc82ab324fd"
	tests := []struct {
		base, gomod, want string
	}{
		{pinned, "module m\n\ngo 1.26.0\n", ""},
		{"golang:1.26.8", "go 1.26.8\n", ""},
		{"docker.io/library/golang:1.26.8-bookworm", "go 1.26.0\ntoolchain go1.26.8\n", ""},
		{pinned, "go 1.26.0\ntoolchain go1.26.9\n", "but go.mod says toolchain go1.26.9"},
		{pinned, "go 1.26.9\n", "but go.mod says go 1.26.9"},
		{pinned, "go 1.27.0\n", "but go.mod says go 1.27.0"},
		{"golang:1.25.9-bookworm", "go 1.26.0\n", "but go.mod says go 1.26.0"},
		{"golang:1.26-bookworm", "go 1.26.0\n", "want an official golang:X.Y.Z image"},
		{"example.com/golang:1.26.8", "go 1.26.0\n", "want an official golang:X.Y.Z image"},
	}
	for _, tt := range tests {
		got := builderGoProblem(tt.base, tt.gomod)
		if tt.want == "" && got != "" || !strings.Contains(got, tt.want) {
			t.Errorf("builderGoProblem(%q, %q) = %q, want %q", tt.base, tt.gomod, got, tt.want)
		}
	}
}

// TestDockerfileProblems breaks the Dockerfile in turn in each way
// dockerfileProblems looks for, and expects it to say so.
func TestDockerfileProblems(t *testing.T) {
	src := readRepoFile(t, "Dockerfile")
	tests := []struct {
		name, old, new, want string
	}{
		{"one stage", "FROM scratch\n", "", "stages, want a builder"},
		{"builder latest", "golang:1.26.8-bookworm@", "golang:latest@", "want an exact version tag"},
		{"builder minor only", "golang:1.26.8-bookworm@", "golang:1.26-bookworm@", "want an exact version tag"},
		{"builder from variable", "golang:1.26.8-bookworm@", "golang:$GO_VERSION@", "want an exact version tag"},
		{"builder without digest", "-bookworm@sha256:", "-bookworm@", "the digest is not sha256:"},
		{"builder short digest", "c82ab324fd AS build", " AS build", "the digest is not sha256:"},
		{"builder upper-case digest", "@sha256:f4191582e", "@sha256:F4191582E", "the digest is not sha256:"},
		{"builder tag only", "-bookworm@sha256:f4191582e1522dfc5980a6bdc0309a756f9697f3e7d0f199c7e26fc82ab324fd", "-bookworm", "want it pinned by digest as well"},
		{"final base with a shell", "FROM scratch", "FROM debian:12.8", "want scratch, or a distroless"},
		{"final distroless unpinned", "FROM scratch", "FROM gcr.io/distroless/static-debian12:nonroot", "want scratch, or a distroless"},
		{"root user", "USER 65532:65532", "USER 0:0", "want a numeric uid other than 0"},
		{"root user by name", "USER 65532:65532", "USER root", "want a numeric uid other than 0"},
		{"no user", "USER 65532:65532\n", "", "without USER it runs as root"},
		{"shell-form entrypoint", `ENTRYPOINT ["/momentum"]`, "ENTRYPOINT /momentum", "want exec form"},
		{"entrypoint runs something else", `ENTRYPOINT ["/momentum"]`, `ENTRYPOINT ["/bin/momentum"]`, "want the copied binary /momentum"},
		{"cgo", "CGO_ENABLED=0 GOOS", "CGO_ENABLED=1 GOOS", "without CGO_ENABLED=0"},
		{"no trimpath", "go build -trimpath", "go build", "without -trimpath"},
		{"a RUN in the final stage", "USER 65532:65532\n", "USER 65532:65532\nRUN [\"/momentum\", \"--version\"]\n", "RUN in the final stage"},
		{"two copies", "COPY --from=build /out/momentum /momentum\n", "COPY --from=build /out/momentum /momentum\nCOPY --from=build /etc/ssl /etc/ssl\n", "2 COPY/ADD"},
		{"ADD", "COPY --from=build /out/momentum /momentum", "ADD --from=build /out/momentum /momentum", "want COPY --from=BUILDER"},
		{"copy a directory", "COPY --from=build /out/momentum /momentum", "COPY --from=build /out/ /", "want one file"},
		{"copy two files", "COPY --from=build /out/momentum /momentum", "COPY --from=build /out/momentum /out/other /", "want one file"},
		{"copy something else", "COPY --from=build /out/momentum /momentum", "COPY --from=build /src/momentum /momentum", `go build writes "/out/momentum"`},
		{"copy from nowhere", "COPY --from=build /out/momentum", "COPY --from=builder /out/momentum", "no such stage"},
		{"continuation to the end", `ENTRYPOINT ["/momentum"]`, `ENTRYPOINT ["/momentum"] \`, "past the end of the file"},
		{"heredoc", "    go mod download", "    <<EOF\ngo mod download\nEOF", "heredocs are not supported"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			broken := strings.Replace(src, tt.old, tt.new, 1)
			if broken == src {
				t.Fatalf("the Dockerfile has no %q to replace; update the test", tt.old)
			}
			problems := dockerfileProblems(broken)
			if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, tt.want) }) {
				t.Errorf("with %q for %q: problems %q, want one containing %q", tt.new, tt.old, problems, tt.want)
			}
		})
	}
}

// bareScratchEnv is the environment BuildKit gives a stage FROM scratch.
var bareScratchEnv = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}

// dockerfileConfig returns the config of the image src builds, as BuildKit
// makes it for a final stage FROM scratch: WorkingDir "/", the default PATH
// unless ENV sets one, then what LABEL, ENV, USER and ENTRYPOINT set.
func dockerfileConfig(src string) (v1.Config, error) {
	stages, err := parseDockerfile(src)
	if err != nil {
		return v1.Config{}, err
	}
	if len(stages) == 0 {
		return v1.Config{}, errors.New("no FROM")
	}
	final := stages[len(stages)-1]
	if final.base != "scratch" {
		return v1.Config{}, fmt.Errorf("final stage FROM %s: the config of its base is unknown here", final.base)
	}
	c := v1.Config{WorkingDir: "/", Env: slices.Clone(bareScratchEnv)}
	for _, in := range final.body {
		switch in.cmd {
		case "LABEL", "ENV":
			kvs, err := keyValues(in)
			if err != nil {
				return c, err
			}
			for _, kv := range kvs {
				if in.cmd == "LABEL" {
					if c.Labels == nil {
						c.Labels = map[string]string{}
					}
					c.Labels[kv[0]] = kv[1]
					continue
				}
				c.Env = slices.DeleteFunc(c.Env, func(e string) bool { return strings.HasPrefix(e, kv[0]+"=") })
				c.Env = append(c.Env, kv[0]+"="+kv[1])
			}
		case "USER":
			c.User = in.args
		case "ENTRYPOINT":
			c.Entrypoint = nil
			if err := json.Unmarshal([]byte(in.args), &c.Entrypoint); err != nil {
				return c, fmt.Errorf("line %d: ENTRYPOINT %s: %v", in.line, in.args, err)
			}
		case "WORKDIR", "CMD", "EXPOSE", "VOLUME", "STOPSIGNAL", "HEALTHCHECK", "SHELL", "ONBUILD":
			return c, fmt.Errorf("line %d: %s: not modelled here; teach dockerfileConfig and momentum-image", in.line, in.cmd)
		}
	}
	return c, nil
}

// TestDockerfileMatchesImage checks that momentum-image writes the config
// and runs the go build of the Dockerfile.
func TestDockerfileMatchesImage(t *testing.T) {
	src := readRepoFile(t, "Dockerfile")
	want, err := dockerfileConfig(src)
	if err != nil {
		t.Fatal(err)
	}
	if got := imageConfig(); !reflect.DeepEqual(got, want) {
		t.Errorf("momentum-image writes config\n%+v\nthe Dockerfile makes\n%+v", got, want)
	}

	stages, err := parseDockerfile(src)
	if err != nil {
		t.Fatal(err)
	}
	g, err := findGoBuild(stages[0])
	if err != nil {
		t.Fatal(err)
	}
	if got := goBuildArgs("", g.output()); !slices.Equal(got, g.args) {
		t.Errorf("momentum-image runs go %q\nthe Dockerfile runs go %q", got, g.args)
	}
	// build sets these; the Dockerfile's TARGETOS and TARGETARCH are the platform's.
	if want := []string{"CGO_ENABLED=0", "GOOS=$TARGETOS", "GOARCH=$TARGETARCH"}; !slices.Equal(g.env, want) {
		t.Errorf("the Dockerfile builds with %q, momentum-image with %q", g.env, want)
	}
}

// TestDockerfileConfigCatches checks that dockerfileConfig sees what would
// make the two images differ.
func TestDockerfileConfigCatches(t *testing.T) {
	src := readRepoFile(t, "Dockerfile")
	tests := []struct{ name, old, new string }{
		{"no ENV PATH", "ENV PATH=/\n", ""},
		{"another label", "LABEL ", "LABEL org.opencontainers.image.licenses=MIT "},
		{"a label changed", `title="momentum"`, `title="momentum-cli"`},
		{"another user", "USER 65532:65532", "USER 65534:65534"},
		{"an argument", `ENTRYPOINT ["/momentum"]`, `ENTRYPOINT ["/momentum", "--quiet"]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			broken := strings.Replace(src, tt.old, tt.new, 1)
			if broken == src {
				t.Fatalf("the Dockerfile has no %q to replace; update the test", tt.old)
			}
			c, err := dockerfileConfig(broken)
			if err != nil {
				t.Fatal(err)
			}
			if reflect.DeepEqual(c, imageConfig()) {
				t.Errorf("with %q for %q the configs still agree", tt.new, tt.old)
			}
		})
	}
}

// ignoreRule is one line of a .dockerignore.
type ignoreRule struct {
	re     *regexp.Regexp
	negate bool
}

// parseDockerignore parses a .dockerignore as Docker does: blank lines and
// # comments skipped, ! lets a path back in, * and ? stay inside a path
// element, ** matches any number of them, and the last matching line wins.
func parseDockerignore(src string) []ignoreRule {
	var rules []ignoreRule
	for line := range strings.SplitSeq(src, "\n") {
		p := strings.TrimSpace(line)
		if p == "" || strings.HasPrefix(p, "#") {
			continue
		}
		r := ignoreRule{}
		p, r.negate = strings.CutPrefix(p, "!")
		p = path.Clean(strings.TrimPrefix(strings.TrimSpace(p), "/"))
		var re strings.Builder
		for i := 0; i < len(p); i++ {
			switch {
			case strings.HasPrefix(p[i:], "**/"):
				re.WriteString("(.*/)?")
				i += 2
			case strings.HasPrefix(p[i:], "**"):
				re.WriteString(".*")
				i++
			case p[i] == '*':
				re.WriteString("[^/]*")
			case p[i] == '?':
				re.WriteString("[^/]")
			default:
				re.WriteString(regexp.QuoteMeta(p[i : i+1]))
			}
		}
		r.re = regexp.MustCompile("^" + re.String() + "$")
		rules = append(rules, r)
	}
	return rules
}

// ignored reports whether rules leave file, a slash-separated path relative
// to the context root, out of the build context. A rule matching a parent
// directory matches the file.
func ignored(rules []ignoreRule, file string) bool {
	out := false
	for _, r := range rules {
		for p := file; p != "." && p != "/"; p = path.Dir(p) {
			if r.re.MatchString(p) {
				out = !r.negate
				break
			}
		}
	}
	return out
}

// contextFiles returns the files `go build ./cmd/momentum` reads for a
// Linux target, relative to the repository root.
func contextFiles(t *testing.T) []string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "list", "-deps", "-tags", "disable_grpc_modules,lambda.norpc",
		"-f", `{{if .Module}}{{if .Module.Main}}{{$d := .Dir}}{{range .GoFiles}}{{$d}}/{{.}}{{"\n"}}{{end}}{{range .EmbedFiles}}{{$d}}/{{.}}{{"\n"}}{{end}}{{end}}{{end}}`,
		"./cmd/momentum")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOOS=linux", "CGO_ENABLED=0")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	files := []string{"go.mod", "go.sum"}
	for _, f := range strings.Fields(string(out)) {
		rel, err := filepath.Rel(root, f)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, filepath.ToSlash(rel))
	}
	return files
}

// dockerignoreProblems returns what is wrong with a .dockerignore that must
// let in need and leave out the rest.
func dockerignoreProblems(src string, need []string) []string {
	rules := parseDockerignore(src)
	var problems []string
	for _, f := range need {
		if ignored(rules, f) {
			problems = append(problems, fmt.Sprintf("%s is needed by go build ./cmd/momentum but left out", f))
		}
	}
	for _, f := range []string{".git", ".git/HEAD", "momentum", "compute.test", "function.zip", "build/bootstrap",
		"testdata/demo.csv", "compute/testdata/x.csv", "compute/kernel_test.go", "cmd/momentum-image/main.go"} {
		if !ignored(rules, f) {
			problems = append(problems, fmt.Sprintf("%s is not needed by go build but sent to the builder", f))
		}
	}
	return problems
}

func TestDockerignore(t *testing.T) {
	src := readRepoFile(t, ".dockerignore")
	need := contextFiles(t)
	if len(need) < 5 {
		t.Fatalf("go list found only %q", need)
	}
	for _, p := range dockerignoreProblems(src, need) {
		t.Error(p)
	}

	for _, tt := range []struct{ name, old, new, want string }{
		{"no exclusions", "*\n.git\n", "", ".git is not needed"},
		{"compute left out", "!compute\n", "", "compute/"},
		{"go.sum left out", "!go.sum\n", "", "go.sum is needed"},
		{"tests let in", "**/*_test.go\n", "", "compute/kernel_test.go is not needed"},
		{"testdata let in", "**/testdata\n", "", "compute/testdata/x.csv is not needed"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			broken := strings.Replace(src, tt.old, tt.new, 1)
			if broken == src {
				t.Fatalf(".dockerignore has no %q to replace; update the test", tt.old)
			}
			problems := dockerignoreProblems(broken, need)
			if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, tt.want) }) {
				t.Errorf("without %q: problems %q, want one containing %q", tt.old, problems, tt.want)
			}
		})
	}
}

func TestShellWords(t *testing.T) {
	for in, want := range map[string][]string{
		`a  b`:                     {"a", "b"},
		`-ldflags='-s -w'`:         {"-ldflags=-s -w"},
		`k="a \"b\" \$c" d`:        {`k=a "b" $c`, "d"},
		`a\ b 'c'"d"`:              {"a b", "cd"},
		`GOOS=$TARGETOS go build`:  {"GOOS=$TARGETOS", "go", "build"},
		``:                         nil,
		`x=1 && go build -o /out`:  {"x=1", "&&", "go", "build", "-o", "/out"},
		`label="multi word value"`: {"label=multi word value"},
	} {
		got, err := shellWords(in)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("shellWords(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{`'open`, `"open`, `a "b\"`} {
		if got, err := shellWords(in); err == nil {
			t.Errorf("shellWords(%q) = %q, want an error", in, got)
		}
	}
}

func TestIgnored(t *testing.T) {
	rules := parseDockerignore("# c\n*\n!cmd/momentum\n**/testdata\n/build/\n")
	for file, want := range map[string]bool{
		"go.mod": true, ".git/config": true, "cmd/momentum/main.go": false, "cmd/momentum-image/main.go": true,
		"cmd/momentum/testdata/a.csv": true, "build": true,
	} {
		if got := ignored(rules, file); got != want {
			t.Errorf("ignored(%q) = %v, want %v", file, got, want)
		}
	}
}
