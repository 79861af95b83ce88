package main

import "testing"

// TestPlatformSpellings: --platform takes Lambda's x86_64 for amd64, and
// prints Go's name.
func TestPlatformSpellings(t *testing.T) {
	ps, err := parsePlatforms("linux/x86_64,linux/arm64")
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 2 || ps[0].String() != "linux/amd64" || ps[1].String() != "linux/arm64" {
		t.Errorf("linux/x86_64,linux/arm64: %v, want [linux/amd64 linux/arm64]", ps)
	}
	if _, err := parsePlatforms("linux/amd64,linux/x86_64"); err == nil {
		t.Error("linux/amd64 and linux/x86_64: no error, want listed twice")
	}
}
