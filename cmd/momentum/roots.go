package main

import (
	"crypto/x509"
	"sync"

	"golang.org/x/crypto/x509roots/fallback/bundle"
)

// useFallbackRootsIfNone makes TLS verify against Mozilla's roots, embedded in
// the binary, when the system has none (an image without a CA bundle). Call it
// before the first connection to a cloud; calls after the first do nothing.
//
// The system's roots come first: Lambda's provided.al2023 and most hosts have
// them, and SSL_CERT_FILE or SSL_CERT_DIR name others; the image, FROM
// scratch, has none and uses the embedded ones. The embedded bundle is parsed only
// when they give none, so a start that never connects (the CLI on local files,
// --version) and a start on a system with roots pay nothing for it.
var useFallbackRootsIfNone = sync.OnceFunc(func() {
	// SystemCertPool loads the system roots once for the process; an empty
	// pool or an error means none were found.
	if pool, err := x509.SystemCertPool(); err == nil && !pool.Equal(x509.NewCertPool()) {
		return
	}
	x509.SetFallbackRoots(fallbackRoots())
})

// fallbackRoots returns the embedded roots as a pool, each with the
// constraint (a distrust date) Mozilla gives it.
func fallbackRoots() *x509.CertPool {
	pool := x509.NewCertPool()
	for root := range bundle.Roots() {
		cert, err := x509.ParseCertificate(root.Certificate)
		if err != nil {
			panic(err) // the bundle is generated and tested upstream
		}
		if root.Constraint == nil {
			pool.AddCert(cert)
		} else {
			pool.AddCertWithConstraint(cert, root.Constraint)
		}
	}
	return pool
}
