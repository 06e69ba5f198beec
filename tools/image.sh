#!/usr/bin/env bash
# Builds crossover's container image with no Docker daemon: a statically linked (musl, rustls)
# release binary, /etc/passwd and CA certificates in one layer on an empty base, configured to run
# as uid 65532 with no shell. crane (go-containerregistry, built by tools/build.sh) assembles it
# through a registry it serves on 127.0.0.1 for the length of the build, and pulls it back as an
# OCI image layout, archived to target/image/crossover-<version>.oci.tar (and left unpacked beside
# it, crossover-<version>.oci/, for `crane push`). The Dockerfile lays out the same filesystem with
# `tools/image.sh rootfs`.
#
# Usage: tools/image.sh               build the archive, or reuse it while binary and revision match
#        tools/image.sh rootfs DIR    only build the binary and lay out the image's filesystem in DIR
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
log() { printf '[image] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

case "$(uname -m)" in
  x86_64) target=x86_64-unknown-linux-musl arch=amd64 ;;
  aarch64 | arm64) target=aarch64-unknown-linux-musl arch=arm64 ;;
  *) die "no musl target known for $(uname -m)" ;;
esac
version=$(awk -F'"' '/^version *=/ { print $2; exit }' Cargo.toml)
binary="$repo/target/$target/release/crossover"

build_binary() {
  if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
    log "adding the Rust target $target"
    rustup target add "$target" >&2 || die "cannot install the Rust target $target (rustup target add $target)"
  fi
  # ring compiles C and assembly: it needs a C compiler that targets musl.
  command -v musl-gcc >/dev/null || die "musl-gcc not found: install musl-tools (apt-get install musl-tools)"
  local cc_var="CC_${target//-/_}"
  log "cargo build --release --target $target (a cold build takes minutes; a current one seconds)"
  env "$cc_var=musl-gcc" CARGO_PROFILE_RELEASE_STRIP=symbols \
    cargo build --release --locked --target "$target" --bin crossover >&2
}

# The image's whole filesystem: the binary, the users it names, CA roots for https endpoints,
# /tmp, and the licences.
rootfs() { # dir
  local dir=$1
  rm -rf "$dir"
  mkdir -p "$dir/etc/ssl/certs" "$dir/tmp" "$dir/usr/share/doc/crossover" "$dir/home/nonroot"
  install -m 0755 "$binary" "$dir/crossover"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$dir/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' >"$dir/etc/group"
  [ -f /etc/ssl/certs/ca-certificates.crt ] || die "/etc/ssl/certs/ca-certificates.crt missing: install ca-certificates"
  install -m 0644 /etc/ssl/certs/ca-certificates.crt "$dir/etc/ssl/certs/ca-certificates.crt"
  install -m 0644 LICENSE NOTICE "$dir/usr/share/doc/crossover/"
  chmod 1777 "$dir/tmp"
  chmod 0755 "$dir/home/nonroot"
}

if [ "${1:-}" = rootfs ]; then
  [ -n "${2:-}" ] || die "usage: tools/image.sh rootfs DIR"
  build_binary
  rootfs "$2"
  exit 0
fi

out="$repo/target/image"
archive="$out/crossover-$version.oci.tar"
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then revision="$revision-dirty"; fi
build_binary
mkdir -p "$out"
stamp="$revision $(sha256sum "$binary" tools/image.sh LICENSE NOTICE | sha256sum | cut -c1-64)"
layout="$out/crossover-$version.oci"
if [ -f "$archive" ] && [ -d "$layout" ] && [ "$(cat "$archive.stamp" 2>/dev/null)" = "$stamp" ]; then
  log "current: $archive ($(cat "$archive.digest"))"
  echo "$archive"
  exit 0
fi

crane="$("$repo/tools/build.sh" crane | tail -n 1)/crane"
work=$(mktemp -d)
registry_pid=""
cleanup() { [ -n "$registry_pid" ] && kill "$registry_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

rootfs "$work/rootfs"
# A reproducible layer: sorted names, root-owned, timestamps at the epoch.
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 --format=posix \
  --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
  -C "$work/rootfs" -cf "$work/layer.tar" .

"$crane" registry serve --address 127.0.0.1:0 2>"$work/registry.log" &
registry_pid=$!
port=""
for _ in $(seq 1 100); do
  port=$(sed -n 's/.*serving on port \([0-9]*\).*/\1/p' "$work/registry.log" | head -n 1)
  [ -n "$port" ] && break
  sleep 0.1
done
[ -n "$port" ] || die "crane registry serve did not start: $(cat "$work/registry.log")"
ref="127.0.0.1:$port/crossover:$version"

"$crane" append --oci-empty-base -f "$work/layer.tar" -t "$ref" >/dev/null 2>"$work/append.log" \
  || die "crane append: $(cat "$work/append.log")"
source_url="https://github.com/crossover-dev/crossover"
"$crane" mutate "$ref" -t "$ref" \
  --entrypoint=/crossover --cmd=run --user=65532:65532 --workdir=/ --set-platform="linux/$arch" \
  -l org.opencontainers.image.title=crossover \
  -l "org.opencontainers.image.description=Runs vLLM pools sized to their load and priced against the hosted-API bill" \
  -l "org.opencontainers.image.version=$version" \
  -l "org.opencontainers.image.revision=$revision" \
  -l "org.opencontainers.image.source=$source_url" \
  -l "org.opencontainers.image.url=$source_url" \
  -l org.opencontainers.image.licenses=Apache-2.0 >/dev/null 2>"$work/mutate.log" \
  || die "crane mutate: $(cat "$work/mutate.log")"
"$crane" pull --format=oci "$ref" "$work/oci" 2>"$work/pull.log" || die "crane pull: $(cat "$work/pull.log")"
digest=$("$crane" digest "$ref")
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$work/oci" -cf "$archive.tmp" .
mv "$archive.tmp" "$archive"
# The same image as an unpacked layout, which `crane push` takes as it is.
rm -rf "$layout"
cp -r "$work/oci" "$layout"
echo "$digest" >"$archive.digest"
echo "$stamp" >"$archive.stamp"

layer_bytes=$("$crane" manifest "$ref" | sed -n 's/.*"layers":\[{[^}]*"size":\([0-9]*\).*/\1/p')
log "built $archive: digest $digest, layer $((layer_bytes / 1024 / 1024)) MiB compressed," \
  "$(( $(du -sb "$work/rootfs" | cut -f1) / 1024 / 1024 )) MiB on disk"
echo "$archive"
