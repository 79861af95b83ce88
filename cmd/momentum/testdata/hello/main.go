// Command hello prints a line: the start-up of a Go program that links
// nothing, beside momentum's in BenchmarkStartup.
package main

import "fmt"

func main() { fmt.Println("hello") }
