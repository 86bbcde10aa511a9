# syntax=docker/dockerfile:1
#
# Vigil: a static binary on distroless, running as nonroot.
#
#   docker build -t vigil:$(cat VERSION) \
#     --build-arg REVISION=$(git rev-parse --short HEAD) \
#     --build-arg BRANCH=$(git rev-parse --abbrev-ref HEAD) .
#   docker run --rm -p 9400:9400 -p 4317:4317 -p 4318:4318 -v vigil-data:/data vigil:$(cat VERSION)

FROM golang:1.26 AS build
WORKDIR /src

# Modules first: this layer is reused until go.mod or go.sum change.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download

COPY . .

# .git is not in the build context (.dockerignore): the revision comes in as a build arg.
ARG REVISION=unknown
ARG BRANCH=unknown
ARG BUILD_USER=docker
# Same -X flags as the Makefile's LDFLAGS; the version is read from VERSION.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    VERSION="$(cat VERSION)" && \
    CGO_ENABLED=0 GOOS=linux go build -trimpath -o /out/vigil \
      -ldflags "-s -w \
        -X github.com/prometheus/common/version.Version=${VERSION} \
        -X github.com/prometheus/common/version.Revision=${REVISION} \
        -X github.com/prometheus/common/version.Branch=${BRANCH} \
        -X github.com/prometheus/common/version.BuildUser=${BUILD_USER} \
        -X github.com/prometheus/common/version.BuildDate=$(date -u +%Y%m%d-%H:%M:%S)" \
      ./cmd/vigil && \
    /out/vigil --version

# A default config for `docker run`: listen on all interfaces, data in /data.
# Kubernetes mounts its own /etc/vigil/vigil.yml from a ConfigMap over it.
RUN mkdir -p /out/etc/vigil /out/data && \
    printf '%s\n' \
      'web:' \
      '  listen_address: 0.0.0.0:9400' \
      'storage:' \
      '  path: /data' \
      'receivers:' \
      '  otlp:' \
      '    grpc:' \
      '      listen_address: 0.0.0.0:4317' \
      '    http:' \
      '      listen_address: 0.0.0.0:4318' \
      > /out/etc/vigil/vigil.yml && \
    /out/vigil check config /out/etc/vigil/vigil.yml

FROM gcr.io/distroless/static-debian12:nonroot
LABEL org.opencontainers.image.title="vigil" \
      org.opencontainers.image.description="Observability gateway: PromQL, OTLP, remote_write, deploy verdicts" \
      org.opencontainers.image.source="https://github.com/vigilhq/vigil"
COPY --from=build /out/vigil /vigil
COPY --from=build /out/etc/vigil/vigil.yml /etc/vigil/vigil.yml
COPY --from=build --chown=65532:65532 /out/data /data
VOLUME /data
EXPOSE 9400 4317 4318
USER nonroot
ENTRYPOINT ["/vigil"]
CMD ["serve", "--config.file=/etc/vigil/vigil.yml"]
