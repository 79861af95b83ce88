# Builds momentum for AWS Lambda (provided.al2023): a static binary named
# bootstrap, built with the go build command of the Dockerfile, so that on
# amd64, with the same Go release, it is byte for byte the binary of the
# linux/amd64 container image.
#
#   make lambda-zip [ARCH=arm64]          build/lambda/function-$(GOARCH).zip
#   sam build                             runs build-MomentumFunction (template.yaml)
#   LAMBDA_ZIP=/abs/path.zip sam build    deploys that zip's bootstrap instead
#   make demo                             the whole demo on this machine (docs/demo.md)
#
# sam build runs make in a copy of the repository, so give LAMBDA_ZIP as an
# absolute path. ARCH is amd64 or arm64 as Go names them, or x86_64 as
# Lambda names amd64; it must match the template's Architecture parameter
# (x86_64 or arm64). Files are named with Go's name.

ARCH ?= amd64
GOARCH := $(patsubst x86_64,amd64,$(ARCH))
GO ?= go
# The tags of every build and test (README, docs/, .ci/run, Dockerfile): one
# dependency set to compile.
TAGS = disable_grpc_modules,lambda.norpc
GOBUILD = CGO_ENABLED=0 GOOS=linux GOARCH=$(GOARCH) $(GO) build -trimpath -buildvcs=false \
	-tags $(TAGS) -ldflags='-s -w'
# MOMENTUM zips bootstrap; any momentum binary for this machine will do.
MOMENTUM ?= $(GO) run -tags $(TAGS) ./cmd/momentum
# OUT is where lambda-zip writes bootstrap and the zip.
OUT ?= build/lambda

ifeq ($(filter $(GOARCH),amd64 arm64),)
$(error ARCH=$(ARCH): want amd64 (or x86_64) or arm64)
endif

.PHONY: build-MomentumFunction lambda-zip demo clean

# sam build sets ARTIFACTS_DIR; the function's code is $(ARTIFACTS_DIR)/bootstrap.
build-MomentumFunction:
	@test -n "$(ARTIFACTS_DIR)" || { echo "ARTIFACTS_DIR is not set (sam build sets it)" >&2; exit 1; }
ifdef LAMBDA_ZIP
	@test "$$(unzip -Z1 '$(LAMBDA_ZIP)')" = bootstrap || { echo "$(LAMBDA_ZIP): want one entry, bootstrap" >&2; exit 1; }
	unzip -o '$(LAMBDA_ZIP)' bootstrap -d '$(ARTIFACTS_DIR)'
else
	$(GOBUILD) -o '$(ARTIFACTS_DIR)/bootstrap' ./cmd/momentum
endif

# The zip is written by "momentum package lambda --binary", the writer of
# --image: the same bootstrap gives the same zip, byte for byte, either way.
lambda-zip:
	mkdir -p '$(OUT)'
	$(GOBUILD) -o '$(OUT)/bootstrap' ./cmd/momentum
	$(MOMENTUM) package lambda --binary '$(OUT)/bootstrap' --arch $(GOARCH) -o '$(OUT)/function-$(GOARCH).zip'

# The image built without Docker; its binary as a Cloud Run service against
# a Cloud Storage emulator; the same binary packaged for Lambda and run
# under AWS's runtime interface emulator against an S3 emulator; the same
# output from both.
# The tests build the emulator pinned in go.mod (tool directive) themselves.
demo:
	$(GO) test -tags $(TAGS) -count=1 -run '^TestDemo$$' -v ./cmd/momentum

clean:
	rm -rf build .aws-sam
