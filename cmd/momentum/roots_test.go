package main

import (
	"crypto/x509"
	"encoding/pem"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"golang.org/x/crypto/x509roots/fallback/bundle"
)

// rootsChildEnv, set, makes TestMain run the test it names in a process of
// its own: the system roots load once per process, so each configuration
// needs a fresh one.
const rootsChildEnv = "MOMENTUM_TEST_ROOTS_CHILD"

// writeBundle writes the certificate of srv as a PEM bundle file, as the
// image carries /etc/ssl/certs/ca-certificates.crt, and returns its path.
func writeBundle(t *testing.T, srv *httptest.Server) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ca-certificates.crt")
	block := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(path, block, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestTLSWithBundleFile reads from S3 over TLS with the shipped binary,
// the server's certificate given as the system's bundle file: the image's
// case. With no bundle the binary falls back to the embedded roots, which do
// not hold the test's certificate, and the handshake fails: the file, and
// nothing else, is what verified it.
func TestTLSWithBundleFile(t *testing.T) {
	backend := s3mem.New()
	if err := backend.CreateBucket("in"); err != nil {
		t.Fatal(err)
	}
	in := readFile(t, testdata(t, "particles.csv"))
	if _, err := backend.PutObject("in", "particles.csv", nil, strings.NewReader(string(in)), int64(len(in)), nil); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(gofakes3.New(backend, gofakes3.WithLogger(gofakes3.DiscardLog())).Server())
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes below
	srv.StartTLS()
	t.Cleanup(srv.Close)
	bundleFile := writeBundle(t, srv)
	emptyDir := t.TempDir()
	env := func(certFile string) []string {
		return []string{
			"AWS_ENDPOINT_URL_S3=" + srv.URL,
			"AWS_ACCESS_KEY_ID=AKIDTEST", "AWS_SECRET_ACCESS_KEY=secret", "AWS_REGION=us-east-1",
			"AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null", "AWS_EC2_METADATA_DISABLED=true",
			"SSL_CERT_FILE=" + certFile, "SSL_CERT_DIR=" + emptyDir,
			"AWS_CA_BUNDLE=", // the SDK would verify against this file instead
		}
	}

	out := filepath.Join(t.TempDir(), "out.csv")
	r := momentumEnv(t, env(bundleFile), nil, "s3://in/particles.csv", out)
	if r.code != 0 {
		t.Fatalf("with the bundle file: exit %d, stderr:\n%s", r.code, r.stderr)
	}
	if got := readFile(t, out); len(got) <= len(in) {
		t.Errorf("with the bundle file: wrote %d bytes from %d of input", len(got), len(in))
	}

	r = momentumEnv(t, env(filepath.Join(emptyDir, "none.crt")), nil, "s3://in/particles.csv", filepath.Join(t.TempDir(), "out.csv"))
	if r.code == 0 || !strings.Contains(r.stderr, "certificate") {
		t.Errorf("without a bundle: exit %d, want a failure to verify the certificate; stderr:\n%s", r.code, r.stderr)
	}
}

// TestFallbackRoots checks, each in a fresh process, that the embedded
// roots are used when the system has none, and only then.
func TestFallbackRoots(t *testing.T) {
	if mode := os.Getenv(rootsChildEnv); mode != "" {
		checkRoots(t, mode)
		return
	}
	srv := httptest.NewTLSServer(nil)
	srv.Close()
	bundleFile := writeBundle(t, srv)
	for _, tc := range []struct {
		mode     string
		certFile string
	}{
		{"none", filepath.Join(t.TempDir(), "none.crt")},
		{"empty", filepath.Join(t.TempDir())}, // a directory: nothing to read
		{"system", bundleFile},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestFallbackRoots$", "-test.count=1")
			cmd.Env = append(os.Environ(), rootsChildEnv+"="+tc.mode,
				"SSL_CERT_FILE="+tc.certFile, "SSL_CERT_DIR="+t.TempDir())
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("%v\n%s", err, out)
			}
		})
	}
}

// checkRoots runs in the child process: the system has no roots (mode none
// or empty) or one, the test server's certificate (mode system).
func checkRoots(t *testing.T, mode string) {
	var root *x509.Certificate
	for r := range bundle.Roots() {
		if r.Constraint == nil {
			var err error
			if root, err = x509.ParseCertificate(r.Certificate); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	useFallbackRootsIfNone()
	useFallbackRootsIfNone() // a second call does nothing, and must not panic
	_, err := root.Verify(x509.VerifyOptions{})
	switch {
	case mode == "system" && err == nil:
		t.Errorf("the system has roots, yet %s, an embedded root, verifies", root.Subject)
	case mode != "system" && err != nil:
		t.Errorf("the system has no roots, and the embedded root %s does not verify: %v", root.Subject, err)
	}
}
