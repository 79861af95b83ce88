package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/momentum-run/momentum/adapters/storetest/link"
	"github.com/momentum-run/momentum/compute"
)

// linked starts a link in front of each of the clouds' servers and
// returns the binary's environment through them.
func (c *clouds) linked(t testing.TB, cfg link.Config) (s3Link, gcsLink *link.Link, env []string) {
	t.Helper()
	var err error
	if s3Link, err = link.Start(c.s3URL, cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s3Link.Close() })
	if gcsLink, err = link.Start("http://"+c.gcsHost, cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gcsLink.Close() })
	return s3Link, gcsLink, c.env("AWS_ENDPOINT_URL_S3="+s3Link.URL, "STORAGE_EMULATOR_HOST="+gcsLink.Host())
}

// inputGets counts the link's GETs of one object, and those of them
// that ask for a range.
type inputGets struct {
	path          string // the request path's end, such as /in/ra.csv
	gets, ranged  atomic.Int32
	fault         func(ranged int) link.Fault
	replaceOnce   sync.Once
	replaceAfter  int32
	replace       func()
	replacedFirst atomic.Bool
}

func (g *inputGets) observe(r *http.Request) link.Fault {
	if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, g.path) {
		return link.Forward
	}
	g.gets.Add(1)
	if r.Header.Get("Range") == "" {
		return link.Forward
	}
	n := int(g.ranged.Add(1))
	if g.replace != nil && int32(n) == g.replaceAfter {
		g.replaceOnce.Do(g.replace)
	}
	if g.fault != nil {
		return g.fault(n)
	}
	return link.Forward
}

// TestCloudReadAhead runs the binary on S3 and Cloud Storage inputs of
// four ranges through links, with the default read-ahead and with one
// connection, in the CLI and the job: the output is exact, also when
// ranges are reset or refused on the way, and an input replaced while
// its ranges are in flight fails the run and leaves no output.
func TestCloudReadAhead(t *testing.T) {
	if testing.Short() {
		t.Skip("read-ahead through slow links; adapters/s3 and adapters/gcs run it with -short too")
	}
	c := startClouds(t)
	const size = 3*compute.DefaultRangeSize + 1<<20
	var in, want bytes.Buffer
	io.Copy(&in, &csvStream{size: size})
	if _, err := compute.Transform(context.Background(), &want, bytes.NewReader(in.Bytes()), compute.Options{}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, scheme := range []string{"s3", "gs"} {
		src := scheme + "://in/ra.csv"
		c.put(t, src, in.Bytes())
		for _, tc := range []struct {
			name       string
			args       []string
			fault      func(n int) link.Fault
			wantRanged int32 // ranged GETs of the input, at least
		}{
			{"default", nil, nil, 3},
			{"one connection", []string{"--connections", "1"}, nil, 0},
			{"reset and 503", nil, func(n int) link.Fault {
				switch n {
				case 1:
					return link.ResetAfter(1 << 20)
				case 2:
					if scheme == "s3" {
						return link.SlowDown()
					}
					return link.Unavailable()
				}
				return link.Forward
			}, 4},
			{"job", []string{"job", "--connections", "3"}, nil, 3},
		} {
			t.Run(scheme+"/"+tc.name, func(t *testing.T) {
				s3Link, gcsLink, env := c.linked(t, link.Config{})
				ln := map[string]*link.Link{"s3": s3Link, "gs": gcsLink}[scheme]
				g := &inputGets{path: "/in/ra.csv", fault: tc.fault}
				if scheme == "gs" {
					g.path = "/o/ra.csv"
				}
				ln.SetFaults(g.observe)
				out := filepath.Join(dir, scheme+"-"+strings.ReplaceAll(tc.name, " ", "-")+".csv")
				args := append(append([]string{}, tc.args...), "--quiet", src, out)
				if len(tc.args) > 0 && tc.args[0] == "job" {
					args = append(append([]string{}, tc.args...), "--input", src, "--output", out)
				}
				res := momentumEnv(t, env, nil, args...)
				if res.code != 0 {
					t.Fatalf("exit %d: %s", res.code, res.stderr)
				}
				if got := readFile(t, out); !bytes.Equal(got, want.Bytes()) {
					t.Fatalf("output of %d bytes differs from the kernel's %d", len(got), want.Len())
				}
				switch r := g.ranged.Load(); {
				case tc.wantRanged == 0 && (g.gets.Load() != 1 || r != 0):
					t.Errorf("%d GETs of the input, %d ranged; want one plain stream", g.gets.Load(), r)
				case r < tc.wantRanged:
					t.Errorf("%d ranged GETs of the input, want at least %d", r, tc.wantRanged)
				}
			})
		}
		t.Run(scheme+"/replaced", func(t *testing.T) {
			s3Link, gcsLink, env := c.linked(t, link.Config{Rate: 64 << 20})
			ln := map[string]*link.Link{"s3": s3Link, "gs": gcsLink}[scheme]
			key := scheme + "://in/replaced.csv"
			c.put(t, key, in.Bytes())
			g := &inputGets{path: "/in/replaced.csv", replaceAfter: 2}
			if scheme == "gs" {
				g.path = "/o/replaced.csv"
			}
			// Longer, so that a server which ignores If-Match (the S3
			// emulator here lacks it; adapters/s3 tests it) is caught by the
			// size every range checks.
			g.replace = func() { c.put(t, key, append(bytes.ReplaceAll(in.Bytes(), []byte(",-"), []byte(",+")), "1,2,3\n"...)) }
			ln.SetFaults(g.observe)
			out := filepath.Join(dir, scheme+"-replaced.csv")
			res := momentumEnv(t, env, nil, "--quiet", key, out)
			if res.code != exitFailure || !strings.Contains(res.stderr, "object not found") {
				t.Errorf("exit %d, stderr %q; want a failure: the version read is gone", res.code, res.stderr)
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("output written: %v", err)
			}
		})
	}
}
