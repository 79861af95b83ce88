//go:build race

package main

// raceEnabled is set when the tests run under the race detector, which
// multiplies the memory of the in-process storage servers several times.
const raceEnabled = true
