package local

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

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

func TestCommit(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out.csv")
	w, err := Create(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("a,b\n"))
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("file visible before Close: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w.Abort() // after Close: a no-op
	got, err := os.ReadFile(path)
	if err != nil || string(got) != "a,b\n" {
		t.Fatalf("got %q, %v", got, err)
	}
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
	path := filepath.Join(dir, "out.csv")
	os.WriteFile(path, []byte("old"), 0o600)
	w, err := Create(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
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
	path := filepath.Join(dir, "out.csv")
	os.WriteFile(path, []byte("old"), 0o600)
	os.Chmod(path, 0o600)
	w, _ := Create(context.Background(), path)
	w.Write([]byte("new"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(path)
	if got, _ := os.ReadFile(path); string(got) != "new" || fi.Mode().Perm() != 0o600 {
		t.Fatalf("got %q mode %v", got, fi.Mode().Perm())
	}
}

func TestCancelledContextAborts(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out.csv")
	ctx, cancel := context.WithCancel(context.Background())
	w, err := Create(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("partial"))
	cancel()
	if err := w.Close(); err != context.Canceled {
		t.Fatalf("Close = %v, want context.Canceled", err)
	}
	if names := entries(t, dir); len(names) != 0 {
		t.Errorf("left behind: %v", names)
	}
}

func TestCreateErrorNamesTarget(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing", "out.csv")
	_, err := Create(context.Background(), path)
	if err == nil || err.Error() != "create "+path+": no such file or directory" {
		t.Fatalf("err = %v", err)
	}
}
