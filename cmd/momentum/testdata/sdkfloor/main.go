// Command sdkfloor links the cloud SDKs momentum links, and does nothing: its
// start-up is the floor momentum's start-up is measured against (docs/performance.md,
// "Start-up and binary size"). Built by BenchmarkStartup.
package main

import (
	_ "cloud.google.com/go/compute/metadata"
	_ "cloud.google.com/go/storage"
	_ "github.com/aws/aws-lambda-go/lambda"
	_ "github.com/aws/aws-sdk-go-v2/config"
	_ "github.com/aws/aws-sdk-go-v2/service/s3"
	_ "google.golang.org/api/option"
)

func main() {}
