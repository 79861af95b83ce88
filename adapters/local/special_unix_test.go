//go:build unix

package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/momentum-run/momentum/adapters/storetest"
	"github.com/momentum-run/momentum/compute"
)

// What is at an output path decides how it is written: a symbolic link is
// followed, a device, FIFO or descriptor written in place, a directory
// refused; nothing that is not a regular file is ever replaced by one.
func TestWriteThroughLinksAndSpecialFiles(t *testing.T) {
	s, err := NewStore("")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	t.Run("DevNull", func(t *testing.T) {
		storetest.Put(t, s, "/dev/null", []byte("mass,velocity,momentum\n1,2,2\n"))
		fi, err := os.Lstat("/dev/null")
		if err != nil || fi.Mode()&fs.ModeCharDevice == 0 {
			t.Fatalf("/dev/null is now %v (%v)", fi.Mode(), err)
		}
	})

	t.Run("FIFO", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "out.fifo")
		if err := syscall.Mkfifo(p, 0o600); err != nil {
			t.Skip("no FIFOs here:", err)
		}
		got := make(chan string, 1)
		go func() {
			f, err := os.Open(p)
			if err != nil {
				got <- err.Error()
				return
			}
			defer f.Close()
			b, _ := io.ReadAll(f)
			got <- string(b)
		}()
		storetest.Put(t, s, p, []byte("through the pipe\n"))
		if g := <-got; g != "through the pipe\n" {
			t.Fatalf("reader got %q", g)
		}
		if fi, err := os.Lstat(p); err != nil || fi.Mode()&fs.ModeNamedPipe == 0 {
			t.Fatalf("FIFO is now %v (%v)", fi.Mode(), err)
		}
	})

	t.Run("Descriptor", func(t *testing.T) {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		p := fmt.Sprintf("/proc/self/fd/%d", w.Fd())
		if _, err := os.Stat(p); err != nil {
			p = fmt.Sprintf("/dev/fd/%d", w.Fd())
		}
		done := make(chan string, 1)
		go func() { b, _ := io.ReadAll(r); done <- string(b) }()
		storetest.Put(t, s, p, []byte("to the descriptor\n"))
		w.Close()
		if g := <-done; g != "to the descriptor\n" {
			t.Fatalf("pipe got %q", g)
		}
	})

	t.Run("CreateOnlyDevice", func(t *testing.T) {
		_, err := s.NewWriter(context.Background(), "/dev/null", compute.WriteOptions{IfNotExists: true})
		if !errors.Is(err, compute.ErrExists) {
			t.Fatalf("err = %v, want ErrExists", err)
		}
	})

	t.Run("LinkToFile", func(t *testing.T) {
		dir := t.TempDir()
		target := filepath.Join(dir, "target.csv")
		os.WriteFile(target, []byte("old"), 0o640)
		link := filepath.Join(dir, "link.csv")
		os.Symlink("target.csv", link) // relative, as ln -s makes them
		storetest.Put(t, s, link, []byte("new"))
		checkLink(t, link, "target.csv")
		checkFile(t, target, "new", 0o640)
		if names := entries(t, dir); len(names) != 2 {
			t.Errorf("left in the folder: %v", names)
		}
	})

	t.Run("ChainOfLinksAcrossFolders", func(t *testing.T) {
		dir := t.TempDir()
		os.Mkdir(filepath.Join(dir, "data"), 0o755)
		target := filepath.Join(dir, "data", "target.csv")
		os.WriteFile(target, []byte("old"), 0o644)
		os.Symlink(filepath.Join("data", "target.csv"), filepath.Join(dir, "middle.csv"))
		link := filepath.Join(dir, "link.csv")
		os.Symlink(filepath.Join(dir, "middle.csv"), link)
		storetest.Put(t, s, link, []byte("new"))
		checkLink(t, link, filepath.Join(dir, "middle.csv"))
		checkLink(t, filepath.Join(dir, "middle.csv"), filepath.Join("data", "target.csv"))
		checkFile(t, target, "new", 0o644)
	})

	t.Run("DanglingLink", func(t *testing.T) {
		dir := t.TempDir()
		link := filepath.Join(dir, "link.csv")
		os.Symlink("new.csv", link)
		storetest.Put(t, s, link, []byte("created"))
		checkLink(t, link, "new.csv")
		checkFile(t, filepath.Join(dir, "new.csv"), "created", 0o644&^umask)
	})

	t.Run("AbortThroughLinkKeepsTarget", func(t *testing.T) {
		dir := t.TempDir()
		target := filepath.Join(dir, "target.csv")
		os.WriteFile(target, []byte("old"), 0o644)
		link := filepath.Join(dir, "link.csv")
		os.Symlink("target.csv", link)
		ctx, cancel := context.WithCancel(context.Background())
		w, err := s.NewWriter(ctx, link, compute.WriteOptions{})
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte("half"))
		cancel()
		if err := w.Close(); err == nil {
			t.Fatal("Close after cancel succeeded")
		}
		checkLink(t, link, "target.csv")
		checkFile(t, target, "old", 0o644)
		if names := entries(t, dir); len(names) != 2 {
			t.Errorf("left in the folder: %v", names)
		}
	})

	t.Run("LinkLoop", func(t *testing.T) {
		dir := t.TempDir()
		a, b := filepath.Join(dir, "a.csv"), filepath.Join(dir, "b.csv")
		os.Symlink(b, a)
		os.Symlink(a, b)
		_, err := s.NewWriter(context.Background(), a, compute.WriteOptions{})
		if !errors.Is(err, syscall.ELOOP) || !strings.HasPrefix(err.Error(), "create "+a+":") {
			t.Fatalf("err = %v, want ELOOP naming %s", err, a)
		}
	})

	t.Run("Directory", func(t *testing.T) {
		dir := t.TempDir()
		out := filepath.Join(dir, "out")
		os.Mkdir(out, 0o755)
		for _, key := range []string{out, out + "/"} {
			_, err := s.NewWriter(context.Background(), key, compute.WriteOptions{})
			if err == nil || err.Error() != "create "+key+": is a directory" {
				t.Errorf("NewWriter(%q): err = %v", key, err)
			}
		}
		if names := entries(t, dir); len(names) != 1 {
			t.Errorf("left in the folder: %v", names)
		}
	})
}

func TestRootedWriteToDirectory(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "sub"), 0o755)
	s, err := NewStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = s.NewWriter(context.Background(), "sub", compute.WriteOptions{})
	if err == nil || err.Error() != "create sub: is a directory" {
		t.Fatalf("err = %v", err)
	}
}

func TestReadDirectory(t *testing.T) {
	s, _ := NewStore("")
	dir := t.TempDir()
	_, _, err := s.NewReader(context.Background(), dir, compute.ReadOptions{})
	if err == nil || err.Error() != dir+" is a directory, not a file" || !errors.Is(err, compute.ErrNotFound) {
		t.Fatalf("err = %v", err)
	}
}

func checkLink(t *testing.T, link, want string) {
	t.Helper()
	got, err := os.Readlink(link)
	if err != nil || got != want {
		t.Errorf("%s: link to %q (%v), want a link to %q", link, got, err, want)
	}
}

func checkFile(t *testing.T, p, want string, mode fs.FileMode) {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(p)
	if !fi.Mode().IsRegular() || string(got) != want || fi.Mode().Perm() != mode {
		t.Errorf("%s: %v %q, want a regular file %v %q", p, fi.Mode(), got, mode, want)
	}
}
