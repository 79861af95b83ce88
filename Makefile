# Builds momentum for AWS Lambda (provided.al2023): a static binary named
# bootstrap, built with the go build command of the Dockerfile, so that on
# amd64, with the same Go release, it is byte for byte the binary of the
# linux/amd64 container image.
#
#   make lambda-zip [ARCH=arm64]          build/lambda/function-$(ARCH).zip
#   sam build                             runs build-MomentumFunction (template.yaml)
#   LAMBDA_ZIP=/abs/path.zip sam build    deploys that zip's bootstrap instead
#   make demo                             the whole demo on this machine (README)
#
# sam build runs make in a copy of the repository, so give LAMBDA_ZIP as an
# absolute path. ARCH (amd64 or arm64) must match the template's
# Architecture parameter (x86_64 or arm64).

ARCH ?= amd64
GO ?= go
# The tags of every build and test (README, .ci/run, Dockerfile): one
# dependency set to compile.
TAGS = disable_grpc_modules,lambda.norpc
GOBUILD = CGO_ENABLED=0 GOOS=linux GOARCH=$(ARCH) $(GO) build -trimpath -buildvcs=false \
	-tags $(TAGS) -ldflags='-s -w'

ifeq ($(filter $(ARCH),amd64 arm64),)
$(error ARCH=$(ARCH): want amd64 or arm64)
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

# The zip is reproducible: one entry, bootstrap, mode 0755, dated
# 1980-01-01 00:00 UTC, with no extra fields (zip -X).
lambda-zip:
	mkdir -p build/lambda
	$(GOBUILD) -o build/lambda/bootstrap ./cmd/momentum
	chmod 0755 build/lambda/bootstrap
	TZ=UTC touch -t 198001010000 build/lambda/bootstrap
	rm -f build/lambda/function-$(ARCH).zip
	cd build/lambda && TZ=UTC zip -X -q function-$(ARCH).zip bootstrap

# The image built without Docker; its binary as a Cloud Run service against
# a Cloud Storage emulator; the same binary packaged for Lambda and run
# under AWS's runtime interface emulator against an S3 emulator; the same
# output from both.
# The tests build the emulator pinned in go.mod (tool directive) themselves.
demo:
	$(GO) test -tags $(TAGS) -count=1 -run '^TestDemo$$' -v ./cmd/momentum

clean:
	rm -rf build .aws-sam
