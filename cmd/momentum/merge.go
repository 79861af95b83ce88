package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/momentum-run/momentum/compute"
)

const mergeUsage = `Usage: momentum merge [--into LOCATION] FOLDER/

Checks the parts a sharded job wrote in FOLDER/ (part-00000.csv ... and
their manifests): all present, from one run over one version of one input
with the same settings, tiling the input, each of the size its manifest
gives. With --into, it then joins them, in order, into one object of the
same bucket or file system: Cloud Storage compose, S3 multipart copy, or a
local copy, so the data does not come through this machine from the
cloud; an S3-compatible server without multipart copy (such as gofakes3)
has the parts streamed through instead.
The joined object is the output a single run would have written; in skip
mode the parts' rejects are joined too, beside it (OBJECT.rejects.csv).

Exit status: 0 complete, 1 parts missing or inconsistent (the message
says which) or FOLDER/ not there, 2 bad usage. Checking creates nothing.

Flags:
`

// runMerge checks and optionally joins the parts of a sharded job.
func runMerge(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("momentum merge", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	into := fs.String("into", "", "join the parts into this object, in the folder's bucket (or file system)")
	_, err := parseFlags(fs, args, func(string) string { return "" })
	if errors.Is(err, flag.ErrHelp) {
		printUsage(fs, stdout, mergeUsage, "")
		return exitOK
	}
	if err == nil && fs.NArg() != 1 {
		err = &usageError{"momentum merge takes one folder, such as gs://bucket/out/"}
	}
	if err != nil {
		fmt.Fprintf(stderr, "momentum merge: %v\n", err)
		return exitUsage
	}
	folder := fs.Arg(0)
	stores := &storeSet{}
	defer stores.close()
	store, prefix, err := stores.locateFolder(ctx, folder)
	if err != nil {
		return mergeFailed(stderr, err)
	}
	intoKey, rejectsKey := "", ""
	if *into != "" {
		s, key, err := stores.locate(ctx, *into)
		if err != nil {
			return mergeFailed(stderr, err)
		}
		if s != store {
			return mergeFailed(stderr, &usageError{fmt.Sprintf("--into %s is not in the store of %s: parts are joined where they are", *into, folder)})
		}
		intoKey = key
		_, _, rejectsKey, _ = splitLocation(rejectsPath(*into))
	}
	res, err := compute.Merge(ctx, store, prefix, intoKey, rejectsKey)
	if err != nil {
		var merr *compute.MergeError
		if errors.As(err, &merr) {
			fmt.Fprintf(stderr, "momentum merge: %s: incomplete or inconsistent:\n", folder)
			for _, p := range merr.Problems {
				fmt.Fprintf(stderr, "  %s\n", p)
			}
			return exitFailure
		}
		return mergeFailed(stderr, err)
	}
	m := res.Manifests[0]
	version := m.Version
	if version == "" {
		version = m.ETag
	}
	fmt.Fprintf(stdout, "%s: %d parts of %s (version %s, %d bytes): %d rows, %d rejected, %d bytes of output\n",
		folder, len(res.Manifests), m.InputName(), version, m.Size, res.Rows, res.Rejected, res.Bytes)
	if len(res.Rejects) > 0 {
		fmt.Fprintf(stdout, "rejects in: %s\n", strings.Join(res.Rejects, ", "))
	}
	if *into != "" {
		fmt.Fprintf(stdout, "joined into %s\n", *into)
		if res.RejectsInto != "" {
			fmt.Fprintf(stdout, "rejects joined into %s\n", rejectsPath(*into))
		}
	}
	return exitOK
}

func mergeFailed(stderr io.Writer, err error) int {
	fmt.Fprintf(stderr, "momentum merge: %v\n", err)
	var uerr *usageError
	if errors.As(err, &uerr) {
		return exitUsage
	}
	return exitFailure
}
