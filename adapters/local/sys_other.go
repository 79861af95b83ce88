//go:build !unix

package local

import "io/fs"

var umask fs.FileMode = 0o022

func inode(fi fs.FileInfo) uint64 { return 0 }
