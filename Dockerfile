# syntax=docker/dockerfile:1
# The one Herald image: `herald manager` (the operator) and `herald dispatcher` (the
# delivery engine, which the manager deploys with this same image).
#
#   make docker-build IMG=ghcr.io/herald-dev/herald:v0.1.0
#   docker buildx build --platform linux/amd64,linux/arm64 --build-arg VERSION=v0.1.0 \
#     -t ghcr.io/herald-dev/herald:v0.1.0 --push .
#
# The builder runs on the build machine's platform and cross-compiles (pure Go, no cgo),
# so a multi-platform build needs no emulation.

FROM --platform=$BUILDPLATFORM golang:1.26 AS builder
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev
WORKDIR /workspace
# Modules first: this layer is reused until go.mod or go.sum change.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags "-X github.com/herald-dev/herald/internal/version.Version=${VERSION}" -o herald .

# Static binary on distroless: no shell, no package manager, CA certificates and tzdata
# included. 65532 is distroless' "nonroot"; the chart and config/manager run the pods as
# this user under the restricted Pod Security profile.
FROM gcr.io/distroless/static:nonroot
COPY --from=builder /workspace/herald /herald
USER 65532:65532
ENTRYPOINT ["/herald"]
