// Package lambdazip writes the zip AWS Lambda takes for a function on the
// provided.al2023 runtime, and checks that a binary can run there.
//
// The zip holds one entry, bootstrap: a regular file of mode 0755 made on
// Unix, deflated, dated 1980-01-01 00:00:00 with no extra fields, so the
// same binary always gives the same bytes, whoever zips it.
//
// It is a package of its own, beside the Lambda adapter rather than in it,
// so that the function's runtime path does not link the zip writer.
package lambdazip

import (
	"archive/zip"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Arch is an instruction set Lambda runs, by Go's name.
type Arch struct {
	GOARCH  string      // amd64 or arm64
	Lambda  string      // the name Lambda's Architectures take: x86_64 or arm64
	Machine elf.Machine // what the ELF header of a binary for it says
}

// Arches are the architectures Lambda runs.
var (
	AMD64 = Arch{"amd64", "x86_64", elf.EM_X86_64}
	ARM64 = Arch{"arm64", "arm64", elf.EM_AARCH64}
)

// ParseArch accepts both spellings of an architecture: Go's (amd64,
// arm64) and Lambda's (x86_64, arm64).
func ParseArch(s string) (Arch, error) {
	switch s {
	case "amd64", "x86_64":
		return AMD64, nil
	case "arm64":
		return ARM64, nil
	}
	return Arch{}, fmt.Errorf("%q: want amd64 (Lambda's x86_64) or arm64", s)
}

// The entry's fixed metadata. The time is 1980-01-01 00:00:00, the
// earliest a zip can say, in MS-DOS form: setting FileHeader.Modified
// instead would add an extended-timestamp extra field.
const (
	zipDate        = (1980-1980)<<9 | 1<<5 | 1 // year since 1980, month 1, day 1
	zipTime        = 0
	zipCreator     = 3<<8 | 20      // made by Unix, so unzip and Lambda keep the mode; zip 2.0
	zipExternAttrs = 0o100755 << 16 // a regular file, rwxr-xr-x
)

// Zip returns the function's zip holding bin as bootstrap.
func Zip(bin []byte) ([]byte, error) {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, err := zw.CreateHeader(&zip.FileHeader{
		Name:           "bootstrap",
		Method:         zip.Deflate,
		ModifiedDate:   zipDate,
		ModifiedTime:   zipTime,
		CreatorVersion: zipCreator,
		ExternalAttrs:  zipExternAttrs,
	})
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

// elfArchs names ELF machines for messages, as Go names them.
var elfArchs = map[elf.Machine]string{
	elf.EM_X86_64:  "amd64",
	elf.EM_AARCH64: "arm64",
	elf.EM_386:     "386",
	elf.EM_ARM:     "arm",
	elf.EM_PPC64:   "ppc64",
	elf.EM_S390:    "s390x",
	elf.EM_RISCV:   "riscv64",
}

func machineName(m elf.Machine) string {
	if n, ok := elfArchs[m]; ok {
		return n + " (" + m.String() + ")"
	}
	return m.String()
}

// CheckBinary refuses anything but a statically linked 64-bit ELF
// executable for arch: provided.al2023 runs bootstrap as it is, and does
// not promise the libraries or the dynamic loader it might want.
func CheckBinary(bin []byte, arch Arch) error {
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
	case f.Machine != arch.Machine:
		return fmt.Errorf("an ELF file for %s, not %s", machineName(f.Machine), machineName(arch.Machine))
	case f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN:
		return fmt.Errorf("not an executable (ELF type %s)", f.Type)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			interp, _ := io.ReadAll(io.LimitReader(p.Open(), 4096))
			return fmt.Errorf("dynamically linked (interpreter %s): Lambda's provided.al2023 does not promise its libraries; build it with CGO_ENABLED=0",
				strings.TrimRight(string(interp), "\x00"))
		}
	}
	libs, err := f.ImportedLibraries()
	if err != nil {
		return fmt.Errorf("reading its dynamic section: %v", err)
	}
	if len(libs) > 0 {
		return fmt.Errorf("dynamically linked (needs %s): Lambda's provided.al2023 does not promise its libraries; build it with CGO_ENABLED=0",
			strings.Join(libs, ", "))
	}
	if f.Type == elf.ET_DYN && f.Entry == 0 {
		return errors.New("a shared library, not an executable")
	}
	return nil
}
