# syntax=docker/dockerfile:1
# crossover's image for people who build with Docker: the same filesystem `make image` assembles
# without a daemon (tools/image.sh rootfs): a statically linked musl binary (rustls, no OpenSSL),
# /etc/passwd, CA roots and the licences on an empty base. It runs as uid 65532 and has no shell.
#
#   docker build -t crossover:0.1.0 --build-arg REVISION=$(git rev-parse HEAD) .
#   docker buildx build --platform linux/amd64,linux/arm64 ...   (each platform builds natively)

FROM docker.io/library/rust:1.95-bookworm AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends musl-tools ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target,sharing=locked \
    tools/image.sh rootfs /rootfs

FROM scratch
ARG VERSION=0.1.0
ARG REVISION=unknown
COPY --from=build /rootfs/ /
USER 65532:65532
WORKDIR /
ENTRYPOINT ["/crossover"]
CMD ["run"]
LABEL org.opencontainers.image.title="crossover" \
      org.opencontainers.image.description="Runs vLLM pools sized to their load and priced against the hosted-API bill" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="https://github.com/crossover-dev/crossover" \
      org.opencontainers.image.url="https://github.com/crossover-dev/crossover" \
      org.opencontainers.image.licenses="Apache-2.0"
