// Command momentum-image builds the momentum container image without a
// Docker engine: the image the repository's Dockerfile describes, one layer
// holding the static binary /momentum on an empty base, run as 65532:65532.
//
// Usage:
//
//	momentum-image [--platform linux/amd64,linux/arm64] [--binary PATH]
//	    (--layout DIR | --tarball FILE) [--tag momentum:dev] [--version V]
//
// For each platform it cross-compiles ./cmd/momentum with the go build
// command of the Dockerfile (CGO_ENABLED=0, the same flags and tags), adding
// -X main.version=V to -ldflags when --version is given. --binary packs an
// already built binary instead (one platform only); it must be a static ELF
// executable for that platform. Several platforms make an OCI image index,
// one platform a single image. ARCH is as Go names it (amd64, arm64, ...);
// Lambda's x86_64 is taken for amd64.
//
// --layout DIR writes an OCI image layout, tagged with an
// org.opencontainers.image.ref.name annotation: DIR is created if missing, and
// an existing layout keeps its other images while one with the same tag is
// replaced. podman and skopeo read it as oci:DIR:TAG. --tarball FILE writes
// a `docker save` style tarball for `docker load` or `podman load` (one
// platform only).
//
// Layer, history and config times are SOURCE_DATE_EPOCH (seconds since
// 1970), or 1970-01-01 when it is unset, so the same source and Go toolchain
// give the same digests on every build.
//
// Progress goes to stderr. stdout gets one line "DIGEST TAG" for what was
// written (the index, or the single image), and for an index one more line
// "DIGEST OS/ARCH" per platform image.
package main

import (
	"context"
	"debug/elf"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/momentum-run/momentum/adapters/image"
)

// The image, as the Dockerfile's final stage defines it. dockerfile_test.go
// checks that the two agree.
const (
	// binaryPath is where the binary lives in the image; it is also the
	// whole Entrypoint.
	binaryPath = "/momentum"
	// user is the image's uid:gid, "nonroot" in distroless images.
	user = "65532:65532"
)

var (
	// labels are the image's OCI labels.
	labels = map[string]string{
		"org.opencontainers.image.source":      "https://github.com/momentum-run/momentum",
		"org.opencontainers.image.title":       "momentum",
		"org.opencontainers.image.description": "Reads a CSV of mass,velocity and writes the rows with momentum appended; one static binary for the CLI, Cloud Run and AWS Lambda.",
	}
	// env is the image's environment: there is no shell and nothing to
	// look up, and it replaces the default PATH BuildKit gives FROM scratch.
	env = []string{"PATH=/"}
)

// elfMachines maps the architectures the image can be built for to their
// ELF machine.
var elfMachines = map[string]elf.Machine{
	"amd64":   elf.EM_X86_64,
	"arm64":   elf.EM_AARCH64,
	"ppc64le": elf.EM_PPC64,
	"riscv64": elf.EM_RISCV,
	"s390x":   elf.EM_S390,
}

// refName is the annotation that tags an image in an OCI layout.
const refName = image.RefNameAnnotation

// goBuildArgs returns the arguments of the go command that builds the
// binary into out, the same as the Dockerfile's, run in the module root.
// A non-empty version is linked in as main.version.
func goBuildArgs(version, out string) []string {
	ldflags := "-s -w"
	if version != "" {
		ldflags += " -X main.version=" + version
	}
	return []string{"build", "-trimpath", "-buildvcs=false", "-tags", "disable_grpc_modules,lambda.norpc",
		"-ldflags=" + ldflags, "-o", out, "./cmd/momentum"}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	var usage usageError
	switch {
	case errors.Is(err, flag.ErrHelp):
	case errors.As(err, &usage):
		fmt.Fprintf(os.Stderr, "momentum-image: %v (see momentum-image -h)\n", err)
		os.Exit(2)
	case err != nil:
		fmt.Fprintln(os.Stderr, "momentum-image:", err)
		os.Exit(1)
	}
}

// usageError is a mistake in the command line.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

// options is the parsed command line and environment.
type options struct {
	platforms []v1.Platform
	binary    string // a built binary to pack; "" to build one per platform
	layout    string // OCI layout directory to write, or ""
	tarball   string // docker save tarball to write, or ""
	tag       name.Tag
	version   string
	created   time.Time // the time of the layer's file, its history and the config
}

func parseArgs(args []string, getenv func(string) string, stderr io.Writer) (*options, error) {
	fs := flag.NewFlagSet("momentum-image", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	platforms := fs.String("platform", "linux/amd64,linux/arm64", "comma-separated `OS/ARCH` list to build for")
	fs.StringVar(&o.binary, "binary", "", "pack this static binary instead of building one (one platform only)")
	fs.StringVar(&o.layout, "layout", "", "write an OCI image layout to `DIR`")
	fs.StringVar(&o.tarball, "tarball", "", "write a docker save tarball to `FILE` (one platform only)")
	tag := fs.String("tag", "momentum:dev", "the image's `NAME:TAG`")
	fs.StringVar(&o.version, "version", "", "link `V` in as main.version, printed by momentum --version")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: momentum-image [--platform OS/ARCH,...] [--binary PATH] (--layout DIR | --tarball FILE) [--tag NAME:TAG] [--version V]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, usageError{err.Error()} // fs has printed the usage
	}
	if fs.NArg() > 0 {
		return nil, usagef("unexpected argument %q", fs.Arg(0))
	}
	var err error
	if o.platforms, err = parsePlatforms(*platforms); err != nil {
		return nil, err
	}
	if (o.layout == "") == (o.tarball == "") {
		return nil, usagef("want one of --layout and --tarball")
	}
	if o.tarball != "" && len(o.platforms) != 1 {
		return nil, usagef("--tarball holds one platform, got --platform %s", *platforms)
	}
	if o.binary != "" && len(o.platforms) != 1 {
		return nil, usagef("--binary is for one platform, got --platform %s", *platforms)
	}
	if o.binary != "" && o.version != "" {
		return nil, usagef("--version is linked in by the build; --binary is already built")
	}
	if strings.ContainsAny(o.version, " \t\n'\"") {
		return nil, usagef("--version %q: no spaces or quotes", o.version)
	}
	if o.tag, err = name.NewTag(*tag); err != nil {
		return nil, usagef("--tag: %v", err)
	}
	o.created = time.Unix(0, 0).UTC()
	if s := getenv("SOURCE_DATE_EPOCH"); s != "" {
		sec, err := strconv.ParseInt(s, 10, 64)
		if err != nil || sec < 0 {
			return nil, usagef("SOURCE_DATE_EPOCH=%q: want whole seconds since 1970", s)
		}
		o.created = time.Unix(sec, 0).UTC()
	}
	return &o, nil
}

// parsePlatforms parses a comma-separated list of OS/ARCH.
func parsePlatforms(list string) ([]v1.Platform, error) {
	var ps []v1.Platform
	for s := range strings.SplitSeq(list, ",") {
		p, err := v1.ParsePlatform(strings.TrimSpace(s))
		if err != nil {
			return nil, usagef("--platform %q: %v", s, err)
		}
		p.Architecture = image.GOARCH(p.Architecture) // linux/x86_64 is linux/amd64
		if _, ok := elfMachines[p.Architecture]; !ok || p.OS != "linux" || p.Variant != "" || p.OSVersion != "" {
			return nil, usagef("--platform %q: want linux/ARCH, ARCH one of %s", s, strings.Join(slices.Sorted(maps.Keys(elfMachines)), ", "))
		}
		if slices.ContainsFunc(ps, p.Equals) {
			return nil, usagef("--platform %q: listed twice", s)
		}
		ps = append(ps, *p)
	}
	return ps, nil
}

// run builds the image(s) the arguments ask for and writes them out.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	o, err := parseArgs(args, getenv, stderr)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "momentum-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	images := make([]v1.Image, len(o.platforms))
	for i, p := range o.platforms {
		bin := o.binary
		if bin == "" {
			bin = filepath.Join(tmp, p.OS+"-"+p.Architecture, "momentum")
			if err := build(ctx, p, o.version, bin, stderr); err != nil {
				return err
			}
		}
		if err := checkBinary(bin, p); err != nil {
			return err
		}
		if images[i], err = newImage(bin, p, o.created); err != nil {
			return fmt.Errorf("image for %s: %w", p, err)
		}
		if err := report(stderr, p, bin, images[i]); err != nil {
			return fmt.Errorf("image for %s: %w", p, err)
		}
	}

	var top interface{ Digest() (v1.Hash, error) }
	switch {
	case o.tarball != "":
		top = images[0]
		fmt.Fprintf(stderr, "momentum-image: writing tarball %s\n", o.tarball)
		if err := image.WriteTarball(o.tarball, o.tag, images[0]); err != nil {
			return err
		}
	case len(images) == 1:
		top = images[0]
		fmt.Fprintf(stderr, "momentum-image: writing OCI layout %s\n", o.layout)
		if err := image.WriteLayout(o.layout, o.tag, images[0]); err != nil {
			return err
		}
	default:
		idx := image.NewIndex(o.platforms, images)
		top = idx
		fmt.Fprintf(stderr, "momentum-image: writing OCI layout %s\n", o.layout)
		if err := image.WriteLayout(o.layout, o.tag, idx); err != nil {
			return err
		}
	}

	d, err := top.Digest()
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, d, o.tag)
	if len(images) > 1 {
		for i, img := range images {
			d, err := img.Digest()
			if err != nil {
				return err
			}
			fmt.Fprintln(stdout, d, o.platforms[i])
		}
	}
	return nil
}

// build cross-compiles ./cmd/momentum for p into out, in the root of the
// module the current directory is in, with the go command on PATH.
func build(ctx context.Context, p v1.Platform, version, out string, stderr io.Writer) error {
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(gomod))
	if mod == "" || mod == os.DevNull {
		return errors.New("go build: not in a Go module; run momentum-image in the momentum repository")
	}
	root := filepath.Dir(mod)
	cmd := exec.CommandContext(ctx, "go", goBuildArgs(version, out)...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+p.OS, "GOARCH="+p.Architecture)
	cmd.Stdout, cmd.Stderr = stderr, stderr
	shown := slices.Clone(cmd.Args)
	for i, a := range shown {
		if strings.Contains(a, " ") {
			shown[i] = "'" + a + "'"
		}
	}
	fmt.Fprintf(stderr, "momentum-image: %s: CGO_ENABLED=0 GOOS=%s GOARCH=%s %s\n", p, p.OS, p.Architecture, strings.Join(shown, " "))
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build for %s in %s: %w", p, root, err)
	}
	return nil
}

// checkBinary returns an error unless the file at path is a static ELF
// executable for p's architecture: an image FROM scratch has no dynamic
// loader and no C library.
func checkBinary(path string, p v1.Platform) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("binary %s: %w", path, err)
	}
	defer f.Close()
	if want := elfMachines[p.Architecture]; f.Machine != want {
		return fmt.Errorf("binary %s is for %s, not %s (%s)", path, f.Machine, want, p)
	}
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP || prog.Type == elf.PT_DYNAMIC {
			return fmt.Errorf("binary %s is dynamically linked; build it with CGO_ENABLED=0", path)
		}
	}
	return nil
}

// newImage returns the image for p: one gzip layer holding the file at
// path as /momentum (mode 0755, owned by 0:0, modified at created) and the
// config of the Dockerfile's final stage. All media types are OCI.
func newImage(path string, p v1.Platform, created time.Time) (v1.Image, error) {
	bin, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	layer, err := image.FileLayer(binaryPath, bin, created)
	if err != nil {
		return nil, err
	}
	img, err := mutate.Append(mutate.MediaType(empty.Image, types.OCIManifestSchema1), mutate.Addendum{
		Layer: layer,
		History: v1.History{
			Created:   v1.Time{Time: created},
			CreatedBy: "COPY --from=build /out/momentum " + binaryPath,
			Comment:   "momentum-image",
		},
	})
	if err != nil {
		return nil, err
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Created = v1.Time{Time: created}
	cf.OS, cf.Architecture = p.OS, p.Architecture
	cf.Config = imageConfig()
	return mutate.ConfigFile(img, cf)
}

// imageConfig returns the run config of the image. WorkingDir is "/" as
// BuildKit sets it for a stage FROM scratch.
func imageConfig() v1.Config {
	return v1.Config{
		Entrypoint: []string{binaryPath},
		User:       user,
		Env:        slices.Clone(env),
		Labels:     maps.Clone(labels),
		WorkingDir: "/",
	}
}

// report writes the sizes and digests of img, built for p from the binary
// at bin, to w.
func report(w io.Writer, p v1.Platform, bin string, img v1.Image) error {
	fi, err := os.Stat(bin)
	if err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	size, err := layers[0].Size()
	if err != nil {
		return err
	}
	cfg, err := img.ConfigName()
	if err != nil {
		return err
	}
	d, err := img.Digest()
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "momentum-image: %s: binary %d bytes, layer %d bytes gzipped, config %s, image %s\n", p, fi.Size(), size, cfg, d)
	return nil
}
