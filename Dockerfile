# syntax=docker/dockerfile:1

# The momentum image: the static binary /momentum alone on an empty base,
# run as an unprivileged user: the CLI, and a Cloud Run service or job.
#
#   docker buildx build --platform linux/amd64,linux/arm64 -t momentum:dev .
#
# go run ./cmd/momentum-image builds the same image without a Docker engine;
# its tests check that the two agree (entrypoint, user, env, labels, go build
# command).

# The builder runs on the build machine's platform and cross-compiles. Its
# base is pinned by digest as well as tag, so a rebuild uses the bytes that
# were reviewed: the digest of the golang:1.26.8-bookworm image index (every
# platform), as docker-library/repo-info publishes it. The tag's Go release is
# the one go.mod names (dockerfile_test.go checks both). To refresh, take the
# "Digest:" line of
#   docker buildx imagetools inspect golang:1.26.8-bookworm
FROM --platform=$BUILDPLATFORM golang:1.26.8-bookworm@sha256:f4191582e1522dfc5980a6bdc0309a756f9697f3e7d0f199c7e26fc82ab324fd AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
ARG TARGETOS TARGETARCH
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -buildvcs=false -tags disable_grpc_modules,lambda.norpc -ldflags='-s -w' -o /out/momentum ./cmd/momentum

# No shell, no package manager, no CA bundle: the binary embeds Mozilla's
# roots and parses them at its first connection when the system has none
# (cmd/momentum/roots.go). One layer, holding the one binary.
FROM scratch
LABEL org.opencontainers.image.source="https://github.com/momentum-run/momentum" \
      org.opencontainers.image.title="momentum" \
      org.opencontainers.image.description="Reads a CSV of mass,velocity and writes the rows with momentum appended; one static binary for the CLI, Cloud Run and AWS Lambda."
COPY --from=build /out/momentum /momentum
USER 65532:65532
# BuildKit gives a stage FROM scratch a default PATH; there is nothing to find.
ENV PATH=/
ENTRYPOINT ["/momentum"]
