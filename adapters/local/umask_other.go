//go:build !unix

package local

import "io/fs"

var umask fs.FileMode = 0o022
