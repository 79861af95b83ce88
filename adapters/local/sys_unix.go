//go:build unix

package local

import (
	"io/fs"
	"syscall"
)

// umask is the process's file mode creation mask, read once at start-up
// (reading it means setting it, so it is not done concurrently later).
var umask = func() fs.FileMode {
	m := syscall.Umask(0)
	syscall.Umask(m)
	return fs.FileMode(m)
}()

func inode(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Ino)
	}
	return 0
}
