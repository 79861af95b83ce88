package local

import (
	"os"
	"syscall"
)

// startWriteback asks the kernel to start writing a range of f to disk
// without waiting for it. Errors are ignored: the sync at Close reports
// any that matter.
func startWriteback(f *os.File, off, n int64) {
	const syncFileRangeWrite = 2 // SYNC_FILE_RANGE_WRITE
	syscall.SyncFileRange(int(f.Fd()), off, n, syncFileRangeWrite)
}
