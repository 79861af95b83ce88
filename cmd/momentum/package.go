package main

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

const packageUsage = `Usage: momentum package lambda --image IMAGE -o ZIP [--arch x86_64|arm64] [--quiet]

Takes the binary out of a container image and zips it as an AWS Lambda
function for the provided.al2023 runtime: one entry, bootstrap, mode 0755,
dated 1980-01-01, so the same image always gives the same zip, byte for
byte. No Docker engine is needed.

IMAGE is one of:
  DIR, DIR:TAG, oci:DIR[:TAG]   an OCI image layout; TAG picks an image by
                                its org.opencontainers.image.ref.name (a
                                layout holding one image needs none)
  FILE, FILE:TAG                a "docker save" tarball, or an OCI archive
                                (an OCI layout in a tar)
  REF, docker://REF             an image in a registry, e.g.
                                ghcr.io/OWNER/momentum:v1, with the
                                credentials of docker login

The binary is the image's entrypoint (or, without one, its command), read
through the image's layers as a container sees it: later layers replace
files, whiteouts delete them, symbolic links are followed. It must be a
statically linked 64-bit ELF executable for the architecture: Lambda's
provided.al2023 does not promise the image's libraries. From a
multi-platform image, the linux/amd64 (x86_64) or linux/arm64 (arm64)
image is taken.

stdout gets the image's digests, the sha256 of the binary and of the zip:
the function runs the very bytes of the image. With -o - the zip goes to
stdout and that report to stderr. On a terminal a one-line greeting goes
to stderr first; --quiet leaves stderr to errors.

Examples:
  go run ./cmd/momentum-image --platform linux/amd64,linux/arm64 --layout build/image --tag momentum:dev
  momentum package lambda --image build/image:momentum:dev -o function.zip
  momentum package lambda --image ghcr.io/OWNER/momentum:v1 --arch arm64 -o function.zip
  aws lambda update-function-code --function-name momentum --zip-file fileb://function.zip

Flags:
`

const packageFooter = `
Exit status: 0 success, 2 usage error, 1 any other failure (the image
cannot be read, or its binary cannot run on Lambda); no zip is left behind
then.
`

// lambdaArchs maps Lambda's architecture names to the image platform's
// architecture and the ELF machine.
var lambdaArchs = map[string]struct {
	goarch  string
	machine elf.Machine
}{
	"x86_64": {"amd64", elf.EM_X86_64},
	"arm64":  {"arm64", elf.EM_AARCH64},
}

// The zip entry's fixed metadata. The time is 1980-01-01 00:00:00, the
// earliest a zip can say, in MS-DOS form: setting FileHeader.Modified
// instead would add an extended-timestamp extra field.
const (
	zipDate        = (1980-1980)<<9 | 1<<5 | 1 // year since 1980, month 1, day 1
	zipTime        = 0
	zipCreator     = 3<<8 | 20      // made by Unix, so unzip and Lambda keep the mode; zip 2.0
	zipExternAttrs = 0o100755 << 16 // a regular file, rwxr-xr-x
)

// runPackage runs "momentum package ..." and returns the exit code.
// stderrIsTerminal says whether to greet.
func runPackage(ctx context.Context, args []string, stdout, stderr io.Writer, stderrIsTerminal bool) int {
	fs := flag.NewFlagSet("momentum package lambda", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	ref := fs.String("image", "", "the `IMAGE` to take the binary from (see above)")
	out := fs.String("o", "", "write the zip to `ZIP`, replacing it whole or not at all; - for standard output")
	arch := fs.String("arch", "x86_64", "Lambda's `ARCH`: x86_64 (linux/amd64) or arm64 (linux/arm64)")
	quiet := fs.Bool("quiet", false, "print nothing on stderr but errors")
	help := fs.Bool("help", false, "print this help and exit")
	fs.BoolVar(help, "h", false, "print this help and exit")
	usageErr := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "momentum: package lambda: "+format+"\nRun 'momentum package lambda --help' for usage.\n", a...)
		return exitUsage
	}
	if len(args) > 0 && args[0] == "lambda" {
		args = args[1:]
	} else if len(args) == 0 || !strings.HasPrefix(args[0], "-") {
		fmt.Fprint(stderr, "momentum: package: want 'momentum package lambda' (Lambda is the one target)\nRun 'momentum package lambda --help' for usage.\n")
		return exitUsage
	}
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) || (err == nil && *help) {
		printPackageUsage(fs, stdout)
		return exitOK
	} else if err != nil {
		return usageErr("%v", err)
	}
	target, ok := lambdaArchs[*arch]
	switch {
	case *ref == "":
		return usageErr("--image is required")
	case *out == "":
		return usageErr("-o is required (- for standard output)")
	case fs.NArg() > 0:
		return usageErr("unexpected arguments %q", fs.Args())
	case !ok:
		return usageErr("--arch %q: want x86_64 or arm64, as Lambda names them", *arch)
	case *out != "-" && sameLocation(*out, *ref):
		return usageErr("-o %q would replace the image", *out)
	}
	fail := func(err error) int {
		if ctx.Err() != nil {
			err = errors.New("interrupted")
		}
		fmt.Fprintf(stderr, "momentum: package lambda: %v\n", err)
		return exitFailure
	}
	if err := checkOutput(*out); err != nil {
		return fail(err)
	}

	platform := v1.Platform{OS: "linux", Architecture: target.goarch}
	src, err := openImage(ctx, *ref, platform)
	if err != nil {
		return fail(err)
	}
	defer src.Close()
	bin, err := readEntrypoint(ctx, src.img)
	if err != nil {
		return fail(fmt.Errorf("%s: %w", *ref, err))
	}
	if err := checkELF(bin.data, target.machine); err != nil {
		return fail(fmt.Errorf("%s in %s: %w", bin.path, *ref, err))
	}
	zipped, err := lambdaZip(bin.data)
	if err != nil {
		return fail(err)
	}

	shown := *out
	if *out == "-" {
		shown = "standard output"
	}
	if stderrIsTerminal && !*quiet {
		fmt.Fprintf(stderr, "I'm coming out… %s from %s (%s) → %s\n", bin.entrypoint, *ref, platform, shown)
	}
	if *out == "-" {
		if _, err := stdout.Write(zipped); err != nil {
			return fail(err)
		}
	} else if err := writeFileAtomic(ctx, *out, zipped); err != nil {
		return fail(err)
	}
	report := stdout
	if *out == "-" {
		if *quiet {
			return exitOK
		}
		report = stderr
	}
	fmt.Fprintf(report, "image     %s\n", *ref)
	src.report(report)
	binary := bin.path
	if bin.path != bin.entrypoint {
		binary += " (entrypoint " + bin.entrypoint + ")"
	}
	fmt.Fprintf(report, "binary    %s sha256:%s %d bytes\n", binary, sha256Hex(bin.data), len(bin.data))
	fmt.Fprintf(report, "zip       %s sha256:%s %d bytes, bootstrap 0755\n", shown, sha256Hex(zipped), len(zipped))
	return exitOK
}

// printPackageUsage prints the help: flags of one letter with one dash,
// the others with two.
func printPackageUsage(fs *flag.FlagSet, w io.Writer) {
	fmt.Fprint(w, packageUsage)
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name == "h" {
			return
		}
		arg, text := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if len(f.Name) == 1 {
			line = "  -" + f.Name
		}
		if arg != "" {
			line += " " + arg
		}
		if f.DefValue != "" && f.DefValue != "false" {
			text += " (default " + f.DefValue + ")"
		}
		fmt.Fprintf(w, "%s\n      %s\n", line, text)
	})
	fmt.Fprint(w, packageFooter)
}

func platformOf(goarch string) v1.Platform {
	return v1.Platform{OS: "linux", Architecture: goarch}
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// checkOutput fails early, before any image is read, when the zip could
// not be written: -o names a directory, or a file in no directory.
func checkOutput(out string) error {
	if out == "-" {
		return nil
	}
	if fi, err := os.Stat(out); err == nil && fi.IsDir() {
		return fmt.Errorf("-o %s: is a directory", out)
	}
	dir := filepath.Dir(out)
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("-o %s: %w", out, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("-o %s: %s is not a directory", out, dir)
	}
	return nil
}

// imageSource is an image opened for one platform, and how it was found.
type imageSource struct {
	img      v1.Image
	platform v1.Platform
	index    v1.Hash // the index the image was picked from; zero when none
	manifest v1.Hash // zero for a docker save tarball, which keeps no manifest
	config   v1.Hash
	cleanup  func()
}

// Close removes what opening the image left on disk.
func (s *imageSource) Close() {
	if s.cleanup != nil {
		s.cleanup()
	}
}

// report writes the image's digests to w.
func (s *imageSource) report(w io.Writer) {
	if s.index != (v1.Hash{}) {
		fmt.Fprintf(w, "index     %s\n", s.index)
	}
	if s.manifest != (v1.Hash{}) {
		fmt.Fprintf(w, "manifest  %s %s\n", s.manifest, s.platform)
	}
	fmt.Fprintf(w, "config    %s %s\n", s.config, s.platform)
}

// openImage opens the image ref names, for platform: an OCI layout
// (DIR, DIR:TAG, oci:DIR[:TAG]), a docker save tarball or an OCI archive
// (FILE, FILE:TAG), or a registry reference (REF, docker://REF).
func openImage(ctx context.Context, ref string, platform v1.Platform) (*imageSource, error) {
	if r, ok := strings.CutPrefix(ref, "docker://"); ok {
		return fromRegistry(ctx, r, platform, true)
	}
	local, explicit := strings.CutPrefix(ref, "oci:")
	// The longest prefix that exists is the file or directory; what
	// follows its colon is the tag. Tags have colons too (momentum:dev).
	for i := len(local); i > 0; i = strings.LastIndexByte(local[:i], ':') {
		file, tag := local[:i], ""
		if i < len(local) {
			tag = local[i+1:]
		}
		fi, err := os.Stat(file)
		switch {
		case err != nil:
			continue
		case fi.IsDir():
			if _, err := os.Stat(filepath.Join(file, "oci-layout")); err != nil {
				return nil, fmt.Errorf("%s: a directory, but not an OCI image layout (no oci-layout file)", file)
			}
			return fromLayout(file, tag, platform)
		case explicit:
			return nil, fmt.Errorf("%s: oci: wants an OCI layout directory, not a file", file)
		}
		return fromTarball(file, tag, platform)
	}
	if explicit {
		return nil, fmt.Errorf("%s: no such OCI layout directory", local)
	}
	if looksLocal(ref) || !strings.ContainsAny(ref, "/:@") {
		// A bare word is far likelier a mistyped path than an image on
		// Docker Hub: say so, and how to name a registry's image.
		return nil, fmt.Errorf("%s: no such file or directory (an image in a registry is named with its repository, such as REGISTRY/NAME:TAG or docker://NAME)", ref)
	}
	return fromRegistry(ctx, ref, platform, false)
}

// looksLocal reports whether ref, which does not exist, reads as a path
// rather than a registry reference.
func looksLocal(ref string) bool {
	for _, p := range []string{"/", "./", "../", "~", `\`} {
		if strings.HasPrefix(ref, p) {
			return true
		}
	}
	for _, ext := range []string{".tar", ".tar.gz", ".tgz", ".oci"} {
		if strings.HasSuffix(ref, ext) {
			return true
		}
	}
	// build/image when build/ is here.
	if dir := filepath.Dir(ref); dir != "." {
		if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
			return true
		}
	}
	return false
}

// fromLayout picks the image of a layout: the one tagged tag, or the only
// one; within an index, the one for platform.
func fromLayout(dir, tag string, platform v1.Platform) (*imageSource, error) {
	p, err := layout.FromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	root, err := p.ImageIndex()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	m, err := root.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	var picked []v1.Descriptor
	var tags []string
	for _, d := range m.Manifests {
		tags = append(tags, d.Annotations[refNameAnnotation])
		if tag == "" || tagMatches(tag, d.Annotations) {
			picked = append(picked, d)
		}
	}
	switch {
	case len(m.Manifests) == 0:
		return nil, fmt.Errorf("%s: the layout holds no image", dir)
	case len(picked) == 0:
		return nil, fmt.Errorf("%s: no image tagged %q (the tags are %q)", dir, tag, tags)
	case len(picked) > 1 && tag == "" && allHavePlatforms(picked):
		// Platform images listed in index.json itself, as some tools write.
		return fromIndex(root, v1.Hash{}, platform, dir)
	case len(picked) > 1:
		return nil, fmt.Errorf("%s holds %d images tagged %q: name one as %s:TAG", dir, len(picked), tags, dir)
	}
	d := picked[0]
	where := dir
	if tag != "" {
		where += ":" + tag
	}
	if d.MediaType.IsIndex() {
		idx, err := root.ImageIndex(d.Digest)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		return fromIndex(idx, d.Digest, platform, where)
	}
	img, err := root.Image(d.Digest)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	return fromImage(img, platform, where, true)
}

const (
	refNameAnnotation        = "org.opencontainers.image.ref.name"
	containerdNameAnnotation = "io.containerd.image.name"
)

// tagMatches reports whether tag names the layout entry with these
// annotations: its ref.name exactly (skopeo's oci:DIR:TAG), or as the tag
// of NAME:TAG, or the full image name docker save records.
func tagMatches(tag string, ann map[string]string) bool {
	refName := ann[refNameAnnotation]
	if refName != "" && (tag == refName || strings.HasSuffix(tag, ":"+refName)) {
		return true
	}
	full, err := name.NewTag(ann[containerdNameAnnotation])
	if err != nil {
		return false
	}
	want, err := name.NewTag(tag)
	return err == nil && want.Name() == full.Name()
}

func allHavePlatforms(ds []v1.Descriptor) bool {
	for _, d := range ds {
		if d.Platform == nil {
			return false
		}
	}
	return true
}

// fromIndex picks the image for platform from an index whose digest is
// digest (zero when it has none of its own, as a layout's index.json).
func fromIndex(idx v1.ImageIndex, digest v1.Hash, platform v1.Platform, where string) (*imageSource, error) {
	have, err := platformImages(idx, 0)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	var listed []string
	for _, pi := range have {
		listed = append(listed, pi.platform.String())
		if pi.platform.OS == platform.OS && pi.platform.Architecture == platform.Architecture {
			src, err := fromImage(pi.img, platform, where, true)
			if err != nil {
				return nil, err
			}
			src.index = digest
			return src, nil
		}
	}
	if len(listed) == 0 {
		return nil, fmt.Errorf("%s: the index holds no image", where)
	}
	return nil, fmt.Errorf("%s: no %s image in the index (it has %s)", where, platform, strings.Join(listed, ", "))
}

type platformImage struct {
	platform v1.Platform
	img      v1.Image
}

// platformImages lists the images of an index and of the indexes within,
// with their platforms, from the descriptors or else from the images'
// configs. Attestations are left out.
func platformImages(idx v1.ImageIndex, depth int) ([]platformImage, error) {
	if depth > 4 {
		return nil, errors.New("indexes nested too deep")
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	var out []platformImage
	for _, d := range m.Manifests {
		switch {
		case d.Annotations["vnd.docker.reference.type"] == "attestation-manifest":
		case d.MediaType.IsIndex():
			inner, err := idx.ImageIndex(d.Digest)
			if err != nil {
				return nil, err
			}
			more, err := platformImages(inner, depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, more...)
		case d.MediaType.IsImage():
			img, err := idx.Image(d.Digest)
			if err != nil {
				return nil, err
			}
			var p v1.Platform
			if d.Platform != nil {
				p = *d.Platform
			} else {
				cfg, err := img.ConfigFile()
				if err != nil {
					return nil, err
				}
				p = v1.Platform{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant}
			}
			out = append(out, platformImage{p, img})
		}
	}
	return out, nil
}

// fromImage checks that a single image is for platform, and describes
// it; hasManifest is false for a docker save tarball.
func fromImage(img v1.Image, platform v1.Platform, where string, hasManifest bool) (*imageSource, error) {
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	if cfg.OS != platform.OS || cfg.Architecture != platform.Architecture {
		return nil, fmt.Errorf("%s is a %s/%s image, not %s", where, cfg.OS, cfg.Architecture, platform)
	}
	src := &imageSource{img: img, platform: platform}
	if src.config, err = img.ConfigName(); err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	if hasManifest {
		if src.manifest, err = img.Digest(); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
	}
	return src, nil
}

// fromTarball opens a docker save tarball (manifest.json) or an OCI
// archive (oci-layout), which is unpacked to a temporary directory.
func fromTarball(file, tag string, platform v1.Platform) (*imageSource, error) {
	kind, err := tarballKind(file)
	if err != nil {
		return nil, err
	}
	if kind == "oci-layout" {
		dir, err := os.MkdirTemp("", "momentum-oci-archive-")
		if err != nil {
			return nil, err
		}
		if err := untar(file, dir); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		src, err := fromLayout(dir, tag, platform)
		if err != nil {
			os.RemoveAll(dir)
			return nil, errors.New(strings.ReplaceAll(err.Error(), dir, file))
		}
		src.cleanup = func() { os.RemoveAll(dir) }
		return src, nil
	}
	var t *name.Tag
	if tag != "" {
		nt, err := name.NewTag(tag)
		if err != nil {
			return nil, fmt.Errorf("%s:%s: %w", file, tag, err)
		}
		t = &nt
	}
	img, err := tarball.ImageFromPath(file, t)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	where := file
	if tag != "" {
		where += ":" + tag
	}
	return fromImage(img, platform, where, false)
}

// tarballKind tells a docker save tarball ("manifest.json") from an OCI
// archive ("oci-layout"). docker save writes both since Docker 25; its
// manifest.json is read then.
func tarballKind(file string) (string, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", err
	}
	defer f.Close()
	var magic [2]byte
	if _, err := io.ReadFull(f, magic[:]); err == nil && magic == [2]byte{0x1f, 0x8b} {
		return "", fmt.Errorf("%s: gzip-compressed; gunzip it first", file)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	kind := ""
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", fmt.Errorf("%s: not an image tarball: %v", file, err)
		}
		switch path.Clean(h.Name) {
		case "manifest.json":
			return "manifest.json", nil
		case "oci-layout":
			kind = "oci-layout"
		}
	}
	if kind == "" {
		return "", fmt.Errorf("%s: not an image tarball (no manifest.json, no oci-layout)", file)
	}
	return kind, nil
}

// untar unpacks the regular files and directories of an OCI archive into
// dir, refusing names that would land outside it.
func untar(file, dir string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
		rel := path.Clean(h.Name)
		if !fs.ValidPath(rel) {
			return fmt.Errorf("%s: unsafe name %q", file, h.Name)
		}
		dst := filepath.Join(dir, filepath.FromSlash(rel))
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(dst, 0o755)
		case tar.TypeReg:
			err = writeUntarred(dst, tr)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
	}
}

func writeUntarred(dst string, r io.Reader) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	w, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(w, r); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}

// fromRegistry fetches the image ref names from its registry, with the
// credentials docker login and credential helpers keep. explicit says
// ref came as docker://REF rather than as what is not a local file.
func fromRegistry(ctx context.Context, ref string, platform v1.Platform, explicit bool) (*imageSource, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, fmt.Errorf("%s: not a file, an OCI layout or a registry reference (%v)", ref, err)
	}
	useFallbackRootsIfNone()
	desc, err := remote.Get(r, remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain),
		remote.WithUserAgent("momentum-package-lambda"))
	if err != nil && !explicit {
		return nil, fmt.Errorf("%s: no such file or directory, and from the registry: %w", ref, err)
	} else if err != nil {
		return nil, fmt.Errorf("%s: %w", ref, err)
	}
	where := r.String()
	if desc.MediaType.IsIndex() {
		idx, err := desc.ImageIndex()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		return fromIndex(idx, desc.Digest, platform, where)
	}
	img, err := desc.Image()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	return fromImage(img, platform, where, true)
}

// entrypoint is the binary an image runs.
type entrypoint struct {
	entrypoint string // the path the image's config gives, made absolute
	path       string // the file it is, after symbolic links
	data       []byte
}

// defaultPATH is the PATH a container runtime uses when the image sets
// none.
const defaultPATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// readEntrypoint reads the file the image's entrypoint (or, without one,
// its command) runs, through the image's flattened filesystem, as a
// container runtime finds it: an absolute path; a relative one from the
// working directory; a bare name in the image's PATH.
func readEntrypoint(ctx context.Context, img v1.Image) (*entrypoint, error) {
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	argv := cfg.Config.Entrypoint
	if len(argv) == 0 {
		argv = cfg.Config.Cmd
	}
	if len(argv) == 0 || argv[0] == "" {
		return nil, errors.New("the image has no entrypoint (and no command) to take the binary from")
	}
	prog := argv[0]
	var candidates []string
	switch {
	case path.IsAbs(prog):
		candidates = []string{path.Clean(prog)}
	case strings.Contains(prog, "/"):
		candidates = []string{path.Join("/", cfg.Config.WorkingDir, prog)}
	default:
		search := defaultPATH
		for _, e := range cfg.Config.Env {
			if v, ok := strings.CutPrefix(e, "PATH="); ok {
				search = v
			}
		}
		for dir := range strings.SplitSeq(search, ":") {
			if dir = path.Clean(dir); path.IsAbs(dir) {
				candidates = append(candidates, path.Join(dir, prog))
			}
		}
		if len(candidates) == 0 {
			return nil, fmt.Errorf("the entrypoint %q is a name to look up in PATH, and the image's PATH %q has no absolute directory", prog, search)
		}
	}

	keep := map[string]bool{}
	for _, c := range candidates {
		keep[c] = true
	}
	files, err := readImageFS(ctx, img, keep)
	if err != nil {
		return nil, err
	}
	var found *entrypoint
	var firstErr error
	for _, c := range candidates {
		p, err := files.resolveFile(c)
		if err != nil {
			firstErr = cmpOr(firstErr, err)
			continue
		}
		if len(candidates) > 1 && files.entries[p].mode&0o111 == 0 {
			continue // not executable: a PATH lookup goes on
		}
		found = &entrypoint{entrypoint: c, path: p}
		break
	}
	switch {
	case found == nil && len(candidates) > 1:
		return nil, fmt.Errorf("the entrypoint %q is not found in the image's PATH %s", prog, strings.Join(dirsOf(candidates), ":"))
	case found == nil:
		return nil, fmt.Errorf("the entrypoint %w", firstErr)
	}
	if found.data = files.data[found.path]; found.data == nil {
		// Reached through links: read the image again for that file.
		again, err := readImageFS(ctx, img, map[string]bool{found.path: true})
		if err != nil {
			return nil, err
		}
		found.data = again.data[found.path]
	}
	return found, nil
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

func dirsOf(paths []string) []string {
	dirs := make([]string, len(paths))
	for i, p := range paths {
		dirs[i] = path.Dir(p)
	}
	return dirs
}

// imageFS is an image's filesystem as a container sees it: every path,
// absolute and clean, with its type; and the contents of some regular
// files.
type imageFS struct {
	entries map[string]fsEntry
	data    map[string][]byte
}

type fsEntry struct {
	typ  byte
	link string // a symbolic link's target, or a hard link's
	mode int64
}

// readImageFS reads the image's layers flattened (later layers replace
// files, whiteouts delete them), keeping the contents of the regular files
// keep names.
func readImageFS(ctx context.Context, img v1.Image, keep map[string]bool) (*imageFS, error) {
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	files := &imageFS{entries: map[string]fsEntry{}, data: map[string][]byte{}}
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		h, err := tr.Next()
		if err == io.EOF {
			return files, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading the image's layers: %w", err)
		}
		p := path.Join("/", h.Name)
		files.entries[p] = fsEntry{typ: h.Typeflag, link: h.Linkname, mode: h.Mode}
		if h.Typeflag == tar.TypeReg && keep[p] {
			b, err := io.ReadAll(tr)
			if err != nil {
				return nil, fmt.Errorf("reading %s from the image: %w", p, err)
			}
			files.data[p] = b
		}
	}
}

// maxSymlinks bounds the symbolic links followed for one path, as Linux's
// MAXSYMLINKS does.
const maxSymlinks = 40

// resolveFile follows the symbolic links of every component of p within
// the image's root, and a hard link at the end, to a regular file.
func (f *imageFS) resolveFile(p string) (string, error) {
	cur := "/"
	rest := strings.Split(strings.TrimPrefix(path.Clean(p), "/"), "/")
	hops := 0
	for len(rest) > 0 {
		part := rest[0]
		rest = rest[1:]
		switch part {
		case "", ".":
			continue
		case "..":
			cur = path.Dir(cur) // the root's parent is the root
			continue
		}
		next := path.Join(cur, part)
		e, ok := f.entries[next]
		switch {
		case !ok && len(rest) == 0:
			return "", notInImage(p, next)
		case !ok:
			// A directory the layers imply without listing it.
		case e.typ == tar.TypeSymlink:
			if hops++; hops > maxSymlinks {
				return "", fmt.Errorf("%s: too many levels of symbolic links", p)
			}
			if path.IsAbs(e.link) {
				cur = "/"
			}
			rest = append(strings.Split(e.link, "/"), rest...)
			continue
		case e.typ == tar.TypeDir:
		case len(rest) > 0:
			return "", fmt.Errorf("%s: %s is not a directory", p, next)
		}
		cur = next
	}
	e := f.entries[cur]
	if e.typ == tar.TypeLink {
		target := path.Join("/", e.link)
		t, ok := f.entries[target]
		if !ok {
			return "", fmt.Errorf("%s: a hard link to %s, which is not in the image", p, target)
		}
		cur, e = target, t
	}
	switch e.typ {
	case tar.TypeReg:
		return cur, nil
	case tar.TypeDir:
		return "", fmt.Errorf("%s is a directory, not a regular file", describe(p, cur))
	default:
		return "", fmt.Errorf("%s is not a regular file (tar type %q)", describe(p, cur), e.typ)
	}
}

func notInImage(p, missing string) error {
	if p == missing {
		return fmt.Errorf("%s is not in the image", p)
	}
	return fmt.Errorf("%s: %s is not in the image", p, missing)
}

func describe(p, resolved string) string {
	if p == resolved {
		return p
	}
	return p + " → " + resolved
}

// elfArchs names the ELF machines for messages.
var elfArchs = map[elf.Machine]string{
	elf.EM_X86_64:  "x86_64",
	elf.EM_AARCH64: "arm64",
	elf.EM_386:     "i386",
	elf.EM_ARM:     "arm",
	elf.EM_PPC64:   "ppc64",
	elf.EM_S390:    "s390x",
	elf.EM_RISCV:   "riscv",
}

func machineName(m elf.Machine) string {
	if n, ok := elfArchs[m]; ok {
		return n + " (" + m.String() + ")"
	}
	return m.String()
}

// checkELF refuses anything but a statically linked 64-bit ELF executable
// for machine: Lambda's provided.al2023 runs bootstrap as it is, and does
// not promise the libraries or the dynamic loader of the image.
func checkELF(bin []byte, machine elf.Machine) error {
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		if bytes.HasPrefix(bin, []byte("#!")) {
			line, _, _ := bytes.Cut(bin, []byte("\n"))
			return fmt.Errorf("a script (%s), not an ELF executable", bytes.TrimSpace(line))
		}
		return fmt.Errorf("not an ELF executable: %v", err)
	}
	defer f.Close()
	switch {
	case f.Class != elf.ELFCLASS64:
		return fmt.Errorf("a 32-bit ELF file (%s, %s), not 64-bit", f.Class, machineName(f.Machine))
	case f.Machine != machine:
		return fmt.Errorf("an ELF file for %s, not %s", machineName(f.Machine), machineName(machine))
	case f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN:
		return fmt.Errorf("not an executable (ELF type %s)", f.Type)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			interp, _ := io.ReadAll(io.LimitReader(p.Open(), 4096))
			return fmt.Errorf("dynamically linked (interpreter %s): Lambda's provided.al2023 does not promise the image's libraries; build it with CGO_ENABLED=0",
				strings.TrimRight(string(interp), "\x00"))
		}
	}
	libs, err := f.ImportedLibraries()
	if err != nil {
		return fmt.Errorf("reading its dynamic section: %v", err)
	}
	if len(libs) > 0 {
		return fmt.Errorf("dynamically linked (needs %s): Lambda's provided.al2023 does not promise the image's libraries; build it with CGO_ENABLED=0",
			strings.Join(libs, ", "))
	}
	if f.Type == elf.ET_DYN && f.Entry == 0 {
		return errors.New("a shared library, not an executable")
	}
	return nil
}

// lambdaZip is the function's zip: one entry, bootstrap, a regular file
// of mode 0755 made on Unix, deflated, dated 1980-01-01 00:00:00 with no
// extra fields, so the same binary always gives the same bytes.
func lambdaZip(bin []byte) ([]byte, error) {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	h := &zip.FileHeader{
		Name:           "bootstrap",
		Method:         zip.Deflate,
		ModifiedDate:   zipDate,
		ModifiedTime:   zipTime,
		CreatorVersion: zipCreator,
		ExternalAttrs:  zipExternAttrs,
	}
	w, err := zw.CreateHeader(h)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(bin); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// writeFileAtomic writes a file whole or not at all: a temporary file in
// the same directory, renamed over name once written and synced. A
// cancelled ctx leaves nothing behind.
func writeFileAtomic(ctx context.Context, name string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".*.tmp")
	if err != nil {
		return err
	}
	committed := false
	defer func() {
		if !committed {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if fi, err := os.Stat(name); err == nil && fi.IsDir() {
		return fmt.Errorf("%s: is a directory", name)
	}
	if err := os.Rename(tmp.Name(), name); err != nil {
		return err
	}
	committed = true
	return nil
}
