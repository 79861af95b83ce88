package main

// Runs the built image under podman, as root, with podman and runc
// installed (.ci/run installs them). On Debian 12:
//
//	apt-get install -y podman runc
//
// Without them the test fails, so that a run that did not test the image
// under a container engine says so; MOMENTUM_SKIP_PODMAN=1 skips it on
// purpose.
//
// The test leaves no trace outside its temporary directory: image storage,
// run state and the containers.conf are all there. The containers use the
// host network.

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// podmanConf makes podman work in a container without systemd or a
// network of its own.
const podmanConf = `[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1000:1000"]
netns = "host"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "none"
`

// podman returns a function that runs podman with its state in a temporary
// directory. When podman cannot run here it fails t, or skips it if
// MOMENTUM_SKIP_PODMAN=1.
func podman(t *testing.T) func(stdin []byte, args ...string) (stdout string, err error) {
	t.Helper()
	cannot := func(why string) {
		t.Helper()
		if os.Getenv("MOMENTUM_SKIP_PODMAN") == "1" {
			t.Skipf("MOMENTUM_SKIP_PODMAN=1: %s", why)
		}
		t.Fatalf("%s; as root: apt-get install -y podman runc, or set MOMENTUM_SKIP_PODMAN=1 to skip this test", why)
	}
	if os.Geteuid() != 0 {
		cannot("not root: rootless podman needs subuid setup")
	}
	for _, tool := range []string{"podman", "runc"} {
		if _, err := exec.LookPath(tool); err != nil {
			cannot("no " + tool + " on PATH")
		}
	}
	dir, err := os.MkdirTemp("", "momentum-image-podman-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// After a container fails, podman's cleanup process may still be
		// writing to its storage for a moment.
		for i := 0; ; i++ {
			err := os.RemoveAll(dir)
			if err == nil {
				return
			}
			if i == 50 {
				t.Errorf("podman's state: %v", err)
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	conf := filepath.Join(dir, "containers.conf")
	if err := os.WriteFile(conf, []byte(podmanConf), 0o644); err != nil {
		t.Fatal(err)
	}
	return func(stdin []byte, args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		args = append([]string{"--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "run"),
			"--tmpdir", filepath.Join(dir, "tmp"), "--storage-driver", "vfs"}, args...)
		cmd := exec.CommandContext(ctx, "podman", args...)
		cmd.Env = append(os.Environ(), "CONTAINERS_CONF="+conf)
		cmd.Stdin = bytes.NewReader(stdin)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		start := time.Now()
		err := cmd.Run()
		t.Logf("podman %s (%v):\n%s", strings.Join(args, " "), time.Since(start).Round(time.Millisecond), stderr.String())
		return stdout.String(), err
	}
}

func TestPodmanRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the two-platform image")
	}
	hostArch(t)
	podmanRun := podman(t)
	dir, _ := twoPlatformLayout(t)
	ref := "oci:" + dir + ":momentum:dev"

	out, err := podmanRun(nil, "run", "--rm", "--network", "host", ref, "--version")
	if err != nil {
		t.Fatalf("podman run %s --version: %v", ref, err)
	}
	if want := "momentum " + testVersion + " "; !strings.HasPrefix(out, want) {
		t.Errorf("momentum --version in the container printed %q, want the prefix %q", out, want)
	}

	csv, err := os.ReadFile(filepath.Join("..", "..", "testdata", "demo.csv"))
	if err != nil {
		t.Fatal(err)
	}
	golden, err := os.ReadFile(filepath.Join("..", "..", "testdata", "demo.golden"))
	if err != nil {
		t.Fatal(err)
	}
	out, err = podmanRun(csv, "run", "--rm", "-i", "--network", "host", ref)
	if err != nil {
		t.Fatalf("podman run -i %s < demo.csv: %v", ref, err)
	}
	if out != string(golden) {
		t.Errorf("demo.csv through the container:\n%s\nwant demo.golden:\n%s", out, golden)
	}
}
