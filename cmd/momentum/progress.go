package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// countingReader counts the bytes read through it, for the progress bar.
type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// isTerminal reports whether w is a character device, such as a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// startProgress draws a progress bar on stderr while the input is read,
// when stderr is a terminal and the input's size is known. The returned
// function stops it and clears the line.
func startProgress(ctx context.Context, quiet bool, stderr io.Writer, size int64, c *countingReader) func() {
	if quiet || size <= 0 || !isTerminal(stderr) {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	start := time.Now()
	wg.Go(func() {
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				fmt.Fprint(stderr, "\r\033[K")
				return
			case <-tick.C:
				fmt.Fprint(stderr, "\r"+progressLine(c.n.Load(), size, time.Since(start)))
			}
		}
	})
	return func() {
		cancel()
		wg.Wait()
	}
}

// progressLine renders one frame of the progress bar.
func progressLine(done, size int64, elapsed time.Duration) string {
	const width = 30
	frac := min(float64(done)/float64(size), 1)
	filled := int(frac * width)
	rate := float64(done) / 1e6 / max(elapsed.Seconds(), 1e-9)
	return fmt.Sprintf("[%s%s] %3.0f%% %.1f/%.1f MB %.0f MB/s\033[K",
		strings.Repeat("=", filled), strings.Repeat(" ", width-filled), frac*100,
		float64(done)/1e6, float64(size)/1e6, rate)
}

// stdinSize is the size of standard input when it is a regular file, or -1.
func stdinSize(stdin io.Reader) int64 {
	if f, ok := stdin.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
			return fi.Size()
		}
	}
	return -1
}
