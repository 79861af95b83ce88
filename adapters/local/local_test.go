package local

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/momentum-run/momentum/adapters/storetest"
	"github.com/momentum-run/momentum/compute"
)

func TestConformanceRooted(t *testing.T) {
	s, err := NewStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	storetest.Run(t, s, storetest.Options{NoVersionIDs: true})
}

func TestConformancePlainPaths(t *testing.T) {
	s, err := NewStore("")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, sub := range []string{"roundtrip", "keys/ünïcödé", "keys/deep/er", "commit", "abort", "createonly", "overwrite", "range", "versions", "large"} {
		os.MkdirAll(filepath.Join(dir, sub), 0o755)
	}
	storetest.Run(t, s, storetest.Options{NoVersionIDs: true, LargeSize: -1, Prefix: dir + "/"})
}

func entries(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	return names
}

func create(t *testing.T, s *Store, ctx context.Context, key string) *Writer {
	t.Helper()
	w, err := s.NewWriter(ctx, key, compute.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return w.(*Writer)
}

func TestCommitModeAndNoLeftovers(t *testing.T) {
	dir := t.TempDir()
	s, _ := NewStore("")
	path := filepath.Join(dir, "out.csv")
	w := create(t, s, context.Background(), path)
	w.Write([]byte("a,b\n"))
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("file visible before Close: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w.Abort() // after Close: a no-op
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o644&^umask {
		t.Errorf("mode %v, want %v", fi.Mode().Perm(), 0o644&^umask)
	}
	if names := entries(t, dir); len(names) != 1 {
		t.Errorf("left behind: %v", names)
	}
	if err := w.Close(); err == nil {
		t.Error("second Close succeeded")
	}
}

func TestAbortKeepsOldFile(t *testing.T) {
	dir := t.TempDir()
	s, _ := NewStore("")
	path := filepath.Join(dir, "out.csv")
	os.WriteFile(path, []byte("old"), 0o600)
	w := create(t, s, context.Background(), path)
	w.Write(make([]byte, 3*writebackEvery))
	w.Abort()
	w.Abort()
	if got, _ := os.ReadFile(path); string(got) != "old" {
		t.Fatalf("old file changed: %q", got)
	}
	if names := entries(t, dir); len(names) != 1 {
		t.Errorf("left behind: %v", names)
	}
}

func TestReplaceKeepsMode(t *testing.T) {
	dir := t.TempDir()
	s, _ := NewStore("")
	path := filepath.Join(dir, "out.csv")
	os.WriteFile(path, []byte("old"), 0o600)
	os.Chmod(path, 0o600)
	w := create(t, s, context.Background(), path)
	w.Write([]byte("new"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(path)
	if got, _ := os.ReadFile(path); string(got) != "new" || fi.Mode().Perm() != 0o600 {
		t.Fatalf("got %q mode %v", got, fi.Mode().Perm())
	}
}

func TestCreateErrorNamesTarget(t *testing.T) {
	s, _ := NewStore("")
	path := filepath.Join(t.TempDir(), "missing", "out.csv")
	_, err := s.NewWriter(context.Background(), path, compute.WriteOptions{})
	if err == nil || err.Error() != "create "+path+": no such file or directory" || !errors.Is(err, compute.ErrNotFound) {
		t.Fatalf("err = %v", err)
	}
}

func TestRootConfinesKeys(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "root")
	os.Mkdir(root, 0o755)
	os.WriteFile(filepath.Join(base, "secret.csv"), []byte("secret"), 0o644)
	os.Symlink(base, filepath.Join(root, "out"))
	os.Symlink(filepath.Join(base, "secret.csv"), filepath.Join(root, "link.csv"))
	s, err := NewStore(root)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, key := range []string{"../secret.csv", "/etc/passwd", "a/../../secret.csv", "out/secret.csv", "link.csv", "./x", "a//b", "dir/", ""} {
		if _, _, err := s.NewReader(context.Background(), key, compute.ReadOptions{}); !errors.Is(err, compute.ErrInvalidKey) {
			t.Errorf("read %q: err = %v, want ErrInvalidKey", key, err)
		}
		if key == "link.csv" {
			continue
		}
		if w, err := s.NewWriter(context.Background(), key, compute.WriteOptions{}); err == nil {
			if err := w.Close(); !errors.Is(err, compute.ErrInvalidKey) {
				t.Errorf("write %q: err = %v, want ErrInvalidKey", key, err)
			}
		} else if !errors.Is(err, compute.ErrInvalidKey) {
			t.Errorf("write %q: err = %v, want ErrInvalidKey", key, err)
		}
	}
	// Writing over a link replaces the link inside the root, never its target.
	storetest.Put(t, s, "link.csv", []byte("new"))
	if got, _ := os.ReadFile(filepath.Join(base, "secret.csv")); string(got) != "secret" {
		t.Errorf("file outside the root changed: %q", got)
	}
	if got, _ := os.ReadFile(filepath.Join(root, "link.csv")); string(got) != "new" {
		t.Errorf("link.csv = %q", got)
	}
}

// TestLocation checks that a file's location is its absolute path, the
// same however the key spells it.
func TestLocation(t *testing.T) {
	dir := t.TempDir()
	rooted, err := NewStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer rooted.Close()
	if got, want := rooted.Location("runs/a.csv"), filepath.Join(dir, "runs", "a.csv"); got != want {
		t.Errorf("rooted: %q, want %q", got, want)
	}
	plain, err := NewStore("")
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	t.Chdir(dir)
	for _, key := range []string{"a.csv", "./a.csv", "runs/../a.csv", filepath.Join(dir, "a.csv")} {
		if got, want := plain.Location(key), filepath.Join(dir, "a.csv"); got != want {
			t.Errorf("plain %q: %q, want %q", key, got, want)
		}
	}
}
