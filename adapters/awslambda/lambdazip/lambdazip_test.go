package lambdazip

import (
	"archive/zip"
	"bytes"
	"debug/elf"
	"encoding/binary"
	"os"
	"strings"
	"testing"
	"time"
)

// tinyELF is a minimal static ELF executable for linux/amd64, of 132
// bytes: an ELF header, one loadable segment, and code that exits 0.
func tinyELF() []byte {
	code := []byte{
		0xb8, 0x3c, 0x00, 0x00, 0x00, // mov eax, 60 (exit)
		0xbf, 0x00, 0x00, 0x00, 0x00, // mov edi, 0
		0x0f, 0x05, // syscall
	}
	const base, ehsize, phsize = 0x400000, 64, 56
	var b bytes.Buffer
	le := binary.LittleEndian
	b.Write([]byte{0x7f, 'E', 'L', 'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0}) // 64-bit, little-endian, SysV
	binary.Write(&b, le, struct {
		Type, Machine                                        uint16
		Version                                              uint32
		Entry, Phoff, Shoff                                  uint64
		Flags                                                uint32
		Ehsize, Phentsize, Phnum, Shentsize, Shnum, Shstrndx uint16
	}{uint16(elf.ET_EXEC), uint16(elf.EM_X86_64), 1, base + ehsize + phsize, ehsize, 0, 0, ehsize, phsize, 1, 64, 0, 0})
	size := uint64(ehsize + phsize + len(code))
	binary.Write(&b, le, struct {
		Type, Flags                             uint32
		Off, Vaddr, Paddr, Filesz, Memsz, Align uint64
	}{uint32(elf.PT_LOAD), uint32(elf.PF_R | elf.PF_X), 0, base, base, size, size, 0x1000})
	b.Write(code)
	return b.Bytes()
}

// patched returns tinyELF with the 16-bit field at off set to v.
func patched(off int, v uint16) []byte {
	b := tinyELF()
	binary.LittleEndian.PutUint16(b[off:], v)
	return b
}

func TestParseArch(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want Arch
	}{{"amd64", AMD64}, {"x86_64", AMD64}, {"arm64", ARM64}} {
		if got, err := ParseArch(tt.in); err != nil || got != tt.want {
			t.Errorf("ParseArch(%q) = %v, %v, want %v", tt.in, got, err, tt.want)
		}
	}
	for _, in := range []string{"", "386", "aarch", "X86_64", "amd64 "} {
		if _, err := ParseArch(in); err == nil || !strings.Contains(err.Error(), "want amd64 (Lambda's x86_64) or arm64") {
			t.Errorf("ParseArch(%q): %v, want an error naming both spellings", in, err)
		}
	}
}

func TestCheckBinary(t *testing.T) {
	if err := CheckBinary(tinyELF(), AMD64); err != nil {
		t.Errorf("a static amd64 executable: %v", err)
	}
	for _, tt := range []struct {
		name string
		bin  []byte
		arch Arch
		want string
	}{
		{"wrong machine", tinyELF(), ARM64, "an ELF file for amd64 (EM_X86_64), not arm64 (EM_AARCH64)"},
		{"arm64 for amd64", patched(18, uint16(elf.EM_AARCH64)), AMD64, "an ELF file for arm64 (EM_AARCH64), not amd64 (EM_X86_64)"},
		{"relocatable", patched(16, uint16(elf.ET_REL)), AMD64, "not an executable (ELF type ET_REL)"},
		{"script", []byte("#!/bin/sh\necho hi\n"), AMD64, "a script (#!/bin/sh), not an ELF executable"},
		{"text", []byte("hello"), AMD64, "not an ELF executable"},
	} {
		if err := CheckBinary(tt.bin, tt.arch); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
	// A 32-bit header: class 1.
	b := tinyELF()
	b[4] = byte(elf.ELFCLASS32)
	if err := CheckBinary(b, AMD64); err == nil {
		t.Error("a 32-bit header: no error")
	}
	// The host's own dynamically linked programs.
	for _, p := range []string{"/bin/true", "/usr/bin/true"} {
		bin, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		f, err := elf.NewFile(bytes.NewReader(bin))
		if err != nil {
			continue
		}
		arch := AMD64
		if f.Machine == elf.EM_AARCH64 {
			arch = ARM64
		}
		f.Close()
		if err := CheckBinary(bin, arch); err == nil || !strings.Contains(err.Error(), "dynamically linked") {
			t.Errorf("%s: %v, want dynamically linked", p, err)
		}
		break
	}
}

// TestZip checks the entry's every field, and that the bytes depend on
// the binary alone.
func TestZip(t *testing.T) {
	bin := tinyELF()
	zipped, err := Zip(bin)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := Zip(bytes.Clone(bin))
	if !bytes.Equal(zipped, again) {
		t.Error("two zips of the same binary differ")
	}
	zr, err := zip.NewReader(bytes.NewReader(zipped), int64(len(zipped)))
	if err != nil {
		t.Fatal(err)
	}
	if len(zr.File) != 1 {
		t.Fatalf("%d entries, want 1", len(zr.File))
	}
	f := zr.File[0]
	switch {
	case f.Name != "bootstrap":
		t.Errorf("entry %q, want bootstrap", f.Name)
	case f.Mode() != 0o755:
		t.Errorf("mode %v, want -rwxr-xr-x", f.Mode())
	case f.CreatorVersion>>8 != 3:
		t.Errorf("made by %d, want 3 (Unix)", f.CreatorVersion>>8)
	case f.Method != zip.Deflate:
		t.Errorf("method %d, want deflate", f.Method)
	case !f.Modified.Equal(time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)):
		t.Errorf("modified %v, want 1980-01-01", f.Modified)
	case len(f.Extra) != 0:
		t.Errorf("extra fields %x, want none", f.Extra)
	}
	if binary.LittleEndian.Uint16(zipped[28:]) != 0 {
		t.Errorf("the local header has extra fields: % x", zipped[:30])
	}
	rc, err := f.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var got bytes.Buffer
	if _, err := got.ReadFrom(rc); err != nil || !bytes.Equal(got.Bytes(), bin) {
		t.Errorf("bootstrap is not the binary (%v)", err)
	}
}
