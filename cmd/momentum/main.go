// Command momentum reads a CSV of masses and velocities and writes the same
// rows with momentum = mass × velocity appended.
//
//	momentum [flags] [INPUT [OUTPUT]]
//
// Run momentum --help for the flags and examples.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := runCLI(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
