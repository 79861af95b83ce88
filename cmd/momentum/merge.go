package main

import (
	"context"
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/momentum-run/momentum/adapters/rejects"
	"github.com/momentum-run/momentum/compute"
)

const mergeUsage = `Usage: momentum merge [--into LOCATION] FOLDER/

Checks the parts a sharded job wrote in FOLDER/ (part-00000.csv ... and
their manifests): all present, from one run over one version of one input
with the same settings, tiling the input, each of the size its manifest
gives; in skip mode, each part's rejects file read back holds as many
rejects as its manifest counts. With --into, it then joins them, in order, into one object of the
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
	res, err := compute.CheckParts(ctx, store, prefix)
	if err == nil {
		err = checkRejects(ctx, store, res.Manifests)
	}
	if err == nil && intoKey != "" {
		res, err = compute.Join(ctx, store, prefix, res, intoKey, rejectsKey)
	}
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

// checkRejects reads the parts' rejects files (skip mode) and checks that
// each is a rejects file, the header in part 0's only, with as many
// records as its manifest counts: the figure merge reports, and the rows
// the joined rejects file will hold.
func checkRejects(ctx context.Context, s compute.Store, manifests []compute.Manifest) error {
	var problems []string
	for i, m := range manifests {
		if m.Rejects == "" {
			continue
		}
		r, _, err := s.NewReader(ctx, m.Rejects, compute.ReadOptions{})
		if errors.Is(err, compute.ErrNotFound) {
			problems = append(problems, fmt.Sprintf("part %d: %s is missing", i, m.Rejects))
			continue
		} else if err != nil {
			return err
		}
		in := &readErrors{r: r}
		n, err := countRejects(in, i == 0)
		r.Close()
		switch {
		case in.err != nil:
			return in.err
		case err != nil:
			problems = append(problems, fmt.Sprintf("part %d: %s: %v", i, m.Rejects, err))
		case n != m.Rejected:
			problems = append(problems, fmt.Sprintf("part %d: %s has %d rejects, its manifest says %d", i, m.Rejects, n, m.Rejected))
		}
	}
	if len(problems) > 0 {
		return &compute.MergeError{Problems: problems}
	}
	return nil
}

// countRejects counts the records of a rejects file, which starts with
// its header if header is set.
func countRejects(r io.Reader, header bool) (int64, error) {
	if !header {
		r = io.MultiReader(strings.NewReader(strings.Join(rejects.Header, ",")+"\n"), r)
	}
	rr, err := rejects.NewReader(r)
	if err != nil {
		return 0, err
	}
	for n := int64(0); ; n++ {
		_, err := rr.Read()
		if err == io.EOF {
			return n, nil
		}
		var perr *csv.ParseError
		if errors.As(err, &perr) {
			if !header { // lines of the file, not of the header put before it
				perr.StartLine--
				perr.Line--
			}
			return n, err
		}
		if err != nil {
			return n, fmt.Errorf("record %d: %w", n+1, err)
		}
	}
}

// readErrors remembers the error of a read that failed, to tell a store's
// failure from bad data.
type readErrors struct {
	r   io.Reader
	err error
}

func (e *readErrors) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF {
		e.err = err
	}
	return n, err
}

func mergeFailed(stderr io.Writer, err error) int {
	fmt.Fprintf(stderr, "momentum merge: %v\n", err)
	var uerr *usageError
	if errors.As(err, &uerr) {
		return exitUsage
	}
	return exitFailure
}
