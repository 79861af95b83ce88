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
	"os"
	"path"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

const packageUsage = `Usage: momentum package lambda --image IMAGE -o ZIP [--arch x86_64|arm64]

Takes the binary out of a container image and zips it as an AWS Lambda
function for the provided.al2023 runtime: one entry, bootstrap, mode 0755,
with fixed timestamps, so that the same image always gives the same zip.
It prints the image's digest and the sha256 of the binary and of the zip:
the function runs the very bytes of the image.

IMAGE is an OCI image layout directory (DIR, or DIR:TAG to pick by its
org.opencontainers.image.ref.name) or a "docker save" tarball. The binary
is the image's entrypoint, read through its layers as a container would
see it; it must be a static ELF executable for the architecture. From a
multi-platform image, the platform of --arch is taken. A registry image
can be fetched first, e.g. skopeo copy docker://REF oci:DIR:TAG.

Example:
  go run ./cmd/momentum-image --platform linux/amd64,linux/arm64 --layout build/image --tag momentum:dev
  momentum package lambda --image build/image:momentum:dev -o function.zip

Flags:
`

// lambdaArch maps Lambda's architecture names to Go's and ELF's.
var lambdaArch = map[string]struct {
	goarch  string
	machine elf.Machine
}{
	"x86_64": {"amd64", elf.EM_X86_64},
	"arm64":  {"arm64", elf.EM_AARCH64},
}

// zipTime is the modification time of the zip's entry: 1980-01-01 00:00,
// the earliest a zip can say, in MS-DOS date and time form.
const (
	zipDate = 1<<5 | 1 // day 1 of month 1 of 1980
	zipTime = 0
)

// runPackage runs "momentum package ..." and returns the exit code.
func runPackage(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("momentum package lambda", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	image := fs.String("image", "", "the image: an OCI layout DIR[:TAG] or a docker-save tarball")
	out := fs.String("o", "", "the zip to write; - for standard output")
	arch := fs.String("arch", "x86_64", "the function's architecture: x86_64 or arm64")
	quiet := fs.Bool("quiet", false, "print nothing but errors")
	help := fs.Bool("help", false, "print this help and exit")
	fs.BoolVar(help, "h", false, "print this help and exit")
	usageErr := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "momentum: package: "+format+"\nRun 'momentum package lambda --help' for usage.\n", a...)
		return exitUsage
	}
	if len(args) == 0 || (args[0] != "lambda" && !strings.HasPrefix(args[0], "-")) {
		return usageErr("want 'momentum package lambda'")
	}
	if args[0] == "lambda" {
		args = args[1:]
	}
	if err := fs.Parse(args); err != nil && !errors.Is(err, flag.ErrHelp) {
		return usageErr("%v", err)
	} else if err != nil || *help {
		printUsage(fs, stdout, packageUsage, "")
		return exitOK
	}
	switch {
	case *image == "":
		return usageErr("--image is required")
	case *out == "":
		return usageErr("-o is required")
	case fs.NArg() > 0:
		return usageErr("unexpected arguments %q", fs.Args())
	}
	target, ok := lambdaArch[*arch]
	if !ok {
		return usageErr("--arch %q: want x86_64 or arm64", *arch)
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "momentum: package lambda: %v\n", err)
		return exitFailure
	}

	img, desc, err := openImage(*image, platformOf(target.goarch))
	if err != nil {
		return fail(err)
	}
	binPath, bin, err := entrypointBinary(img)
	if err != nil {
		return fail(err)
	}
	if err := checkStaticELF(bin, target.machine); err != nil {
		return fail(fmt.Errorf("%s in %s: %w", binPath, *image, err))
	}
	zipped, err := lambdaZip(bin)
	if err != nil {
		return fail(err)
	}
	report := stdout
	if *out == "-" {
		report = stderr
	}
	if !*quiet && isTerminal(stderr) {
		fmt.Fprintf(stderr, "I'm coming out… %s from %s (linux/%s) → %s\n", binPath, *image, target.goarch, *out)
	}
	if *out == "-" {
		if _, err := stdout.Write(zipped); err != nil {
			return fail(err)
		}
	} else if err := writeFileAtomic(*out, zipped); err != nil {
		return fail(err)
	}
	if !*quiet {
		fmt.Fprintf(report, "image   %s\n", desc)
		fmt.Fprintf(report, "binary  %s sha256:%s (%d bytes)\n", binPath, sha256Hex(bin), len(bin))
		fmt.Fprintf(report, "zip     %s sha256:%s (bootstrap, 0755)\n", *out, sha256Hex(zipped))
	}
	return exitOK
}

func platformOf(goarch string) v1.Platform {
	return v1.Platform{OS: "linux", Architecture: goarch}
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// openImage opens the image for platform from an OCI layout (DIR or
// DIR:TAG) or a docker-save tarball, and describes it with its digests.
func openImage(ref string, platform v1.Platform) (v1.Image, string, error) {
	dir, tag := ref, ""
	if _, err := os.Stat(filepath.Join(dir, "oci-layout")); err != nil {
		if i := strings.Index(ref, ":"); i > 0 {
			if _, err := os.Stat(filepath.Join(ref[:i], "oci-layout")); err == nil {
				dir, tag = ref[:i], ref[i+1:]
			}
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "oci-layout")); err == nil {
		return fromLayout(dir, tag, platform)
	}
	fi, err := os.Stat(ref)
	if err != nil {
		return nil, "", fmt.Errorf("image %q: not an OCI layout directory or an image tarball: %v", ref, err)
	}
	if fi.IsDir() {
		return nil, "", fmt.Errorf("image %q: a directory without an oci-layout file", ref)
	}
	img, err := tarball.ImageFromPath(ref, nil)
	if err != nil {
		return nil, "", fmt.Errorf("image %q: %w", ref, err)
	}
	return checkPlatform(img, platform, ref)
}

// fromLayout picks the image of a layout: the one tagged tag, or the only
// one, and within an index the one for platform.
func fromLayout(dir, tag string, platform v1.Platform) (v1.Image, string, error) {
	p, err := layout.FromPath(dir)
	if err != nil {
		return nil, "", err
	}
	root, err := p.ImageIndex()
	if err != nil {
		return nil, "", err
	}
	m, err := root.IndexManifest()
	if err != nil {
		return nil, "", err
	}
	var picked []v1.Descriptor
	var tags []string
	for _, d := range m.Manifests {
		name := d.Annotations["org.opencontainers.image.ref.name"]
		tags = append(tags, name)
		if tag == "" || name == tag || strings.HasSuffix(tag, ":"+name) {
			picked = append(picked, d)
		}
	}
	switch {
	case len(picked) == 0:
		return nil, "", fmt.Errorf("%s: no image tagged %q (there are %q)", dir, tag, tags)
	case len(picked) > 1:
		return nil, "", fmt.Errorf("%s holds %d images (%q): name one as %s:TAG", dir, len(picked), tags, dir)
	}
	d := picked[0]
	if d.MediaType.IsIndex() {
		idx, err := root.ImageIndex(d.Digest)
		if err != nil {
			return nil, "", err
		}
		im, err := idx.IndexManifest()
		if err != nil {
			return nil, "", err
		}
		var have []string
		for _, md := range im.Manifests {
			if md.Platform == nil {
				continue
			}
			have = append(have, md.Platform.String())
			if md.Platform.OS == platform.OS && md.Platform.Architecture == platform.Architecture {
				img, err := idx.Image(md.Digest)
				if err != nil {
					return nil, "", err
				}
				return img, fmt.Sprintf("%s index %s → %s %s", dir, d.Digest, platform, md.Digest), nil
			}
		}
		return nil, "", fmt.Errorf("%s: no %s image in the index (it has %s)", dir, platform, strings.Join(have, ", "))
	}
	img, err := root.Image(d.Digest)
	if err != nil {
		return nil, "", err
	}
	return checkPlatform(img, platform, dir)
}

// checkPlatform refuses a single-platform image of another platform.
func checkPlatform(img v1.Image, platform v1.Platform, ref string) (v1.Image, string, error) {
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, "", err
	}
	if cfg.OS != platform.OS || cfg.Architecture != platform.Architecture {
		return nil, "", fmt.Errorf("%s is a %s/%s image, not %s", ref, cfg.OS, cfg.Architecture, platform)
	}
	d, err := img.Digest()
	if err != nil {
		return nil, "", err
	}
	return img, fmt.Sprintf("%s %s %s", ref, platform, d), nil
}

// entrypointBinary reads the file the image's entrypoint names, through
// the image's flattened filesystem (later layers win, whiteouts delete),
// following symbolic links.
func entrypointBinary(img v1.Image) (string, []byte, error) {
	cfg, err := img.ConfigFile()
	if err != nil {
		return "", nil, err
	}
	argv := cfg.Config.Entrypoint
	if len(argv) == 0 {
		argv = cfg.Config.Cmd
	}
	if len(argv) == 0 || argv[0] == "" {
		return "", nil, errors.New("the image has no entrypoint (nor command) to take the binary from")
	}
	name := argv[0]
	if !path.IsAbs(name) {
		if cfg.Config.WorkingDir == "" || !strings.Contains(name, "/") {
			return "", nil, fmt.Errorf("the entrypoint %q is not a path in the image (a PATH lookup is not followed)", name)
		}
		name = path.Join(cfg.Config.WorkingDir, name)
	}
	files, err := flatten(img)
	if err != nil {
		return "", nil, err
	}
	for range 40 { // bounded, against symbolic link loops
		f, ok := files[path.Clean(name)]
		switch {
		case !ok:
			return "", nil, fmt.Errorf("the entrypoint %s is not in the image", name)
		case f.typ == tar.TypeSymlink:
			if path.IsAbs(f.link) {
				name = f.link
			} else {
				name = path.Join(path.Dir(path.Clean(name)), f.link)
			}
			continue
		case f.typ != tar.TypeReg:
			return "", nil, fmt.Errorf("the entrypoint %s is not a regular file", name)
		}
		return name, f.data, nil
	}
	return "", nil, fmt.Errorf("the entrypoint %s: too many symbolic links", argv[0])
}

type imageFile struct {
	typ  byte
	link string
	data []byte
}

// flatten reads the image's filesystem as a container sees it. Only
// regular files' contents are kept; the images in question hold one
// binary.
func flatten(img v1.Image) (map[string]imageFile, error) {
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	files := map[string]imageFile{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading the image's layers: %w", err)
		}
		f := imageFile{typ: h.Typeflag, link: h.Linkname}
		if h.Typeflag == tar.TypeReg {
			if f.data, err = io.ReadAll(tr); err != nil {
				return nil, fmt.Errorf("reading %s from the image: %w", h.Name, err)
			}
		}
		files[path.Clean("/"+h.Name)] = f
	}
}

// checkStaticELF refuses anything but a statically linked ELF executable
// for machine: Lambda's provided.al2023 does not promise the libraries of
// the image.
func checkStaticELF(bin []byte, machine elf.Machine) error {
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		return fmt.Errorf("not an ELF executable: %v", err)
	}
	defer f.Close()
	switch {
	case f.Machine != machine:
		return fmt.Errorf("built for %s, not %s", f.Machine, machine)
	case f.Class != elf.ELFCLASS64:
		return fmt.Errorf("a %s file, not 64-bit", f.Class)
	case f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN:
		return fmt.Errorf("not an executable (%s)", f.Type)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			interp, _ := io.ReadAll(p.Open())
			return fmt.Errorf("dynamically linked (interpreter %s): Lambda's provided.al2023 does not promise the image's libraries; build with CGO_ENABLED=0",
				strings.TrimRight(string(interp), "\x00"))
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		return fmt.Errorf("dynamically linked (needs %s)", strings.Join(libs, ", "))
	}
	if f.Type == elf.ET_DYN && f.Entry == 0 {
		return errors.New("a shared library, not an executable")
	}
	return nil
}

// lambdaZip is the function's zip: one entry, bootstrap, mode 0755, with
// a fixed time and no extra fields, so the same binary gives the same
// bytes.
func lambdaZip(bin []byte) ([]byte, error) {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	h := &zip.FileHeader{Name: "bootstrap", Method: zip.Deflate, ModifiedDate: zipDate, ModifiedTime: zipTime}
	h.SetMode(0o755)
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

// writeFileAtomic writes a file whole or not at all.
func writeFileAtomic(name string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if fi, err := os.Stat(name); err == nil && fi.IsDir() {
		return fmt.Errorf("%s is a directory", name)
	}
	return os.Rename(tmp.Name(), name)
}
