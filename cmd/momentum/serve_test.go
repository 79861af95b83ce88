package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestServeHelpNamesEnvironment: the service's help says what it does and
// its exit statuses, as job's and merge's do, and names the variables it
// reads besides its flags.
func TestServeHelpNamesEnvironment(t *testing.T) {
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"serve", "--help"}, func(string) string { return "" }, strings.NewReader(""), &out, &errOut)
	if code != 0 {
		t.Fatalf("serve --help: %d %s", code, errOut.String())
	}
	for _, name := range []string{"Usage: momentum serve [flags]", "Runs the Cloud Run service", "POST /v1/momentum", "GET  /healthz",
		"Exit\nstatus: 0 stopped", "2 bad configuration", "PORT", "MOMENTUM_LISTEN", "127.0.0.1:8080", "MOMENTUM_SHUTDOWN_GRACE"} {
		if !strings.Contains(out.String(), name) {
			t.Errorf("serve --help does not name %s:\n%s", name, out.String())
		}
	}
}
