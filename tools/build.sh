#!/usr/bin/env bash
# Builds the upstream binaries crossover's tests and demo need (kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, etcd, kwok, helm, and crane for `make image`) from the pinned Go tool modules
# beside this script.
# Binaries are cached outside the repository, keyed by module version, so a fresh clone on the same
# machine (CI) reuses them: a warm run only checks that the files exist.
#
# Usage: tools/build.sh [name...]    prints the cache directory holding the binaries on its last line.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=${CROSSOVER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/crossover}
bindir="$cache/bin"
mkdir -p "$bindir"

# name | tool module dir | Go package | module whose version keys the cache
TOOLS=(
  "etcd|etcd|go.etcd.io/etcd/server/v3|go.etcd.io/etcd/server/v3"
  "kube-apiserver|kube|k8s.io/kubernetes/cmd/kube-apiserver|k8s.io/kubernetes"
  "kube-controller-manager|kube|k8s.io/kubernetes/cmd/kube-controller-manager|k8s.io/kubernetes"
  "kube-scheduler|kube|k8s.io/kubernetes/cmd/kube-scheduler|k8s.io/kubernetes"
  "kubectl|kube|k8s.io/kubernetes/cmd/kubectl|k8s.io/kubernetes"
  "kwok|kwok|sigs.k8s.io/kwok/cmd/kwok|sigs.k8s.io/kwok"
  "helm|helm|helm.sh/helm/v3/cmd/helm|helm.sh/helm/v3"
  "crane|crane|github.com/google/go-containerregistry/cmd/crane|github.com/google/go-containerregistry"
)

module_version() { # dir module
  awk -v m="$2" '$1 == "require" && $2 == m { print $3 } $1 == m && $2 ~ /^v/ { print $2 }' "$here/$1/go.mod" | head -n 1
}

ldflags_for() { # name version
  local name=$1 v=$2
  case "$name" in
    kube-*|kubectl)
      local minor major=1
      minor=$(echo "$v" | cut -d. -f2)
      local x=""
      for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        x+=" -X $p.gitVersion=$v -X $p.gitMajor=$major -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
        x+=" -X $p.buildDate=1970-01-01T00:00:00Z"
      done
      echo "-s -w$x" ;;
    etcd) echo "-s -w" ;;
    kwok) echo "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$v" ;;
    helm) echo "-s -w -X helm.sh/helm/v3/internal/version.version=$v" ;;
    crane) echo "-s -w -X github.com/google/go-containerregistry/cmd/crane/cmd.Version=$v" ;;
  esac
}

want=("$@")
selected() { [ ${#want[@]} -eq 0 ] && return 0; local n; for n in "${want[@]}"; do [ "$n" = "$1" ] && return 0; done; return 1; }

total=0; for t in "${TOOLS[@]}"; do selected "${t%%|*}" && total=$((total + 1)); done
i=0
for t in "${TOOLS[@]}"; do
  IFS='|' read -r name dir pkg mod <<<"$t"
  selected "$name" || continue
  i=$((i + 1))
  version=$(module_version "$dir" "$mod")
  out="$bindir/$name-$version"
  if [ -x "$out" ]; then
    echo "[$i/$total] $name $version: cached" >&2
  else
    echo "[$i/$total] $name $version: building (cold builds take minutes; Go's build cache makes the next ones fast)" >&2
    start=$(date +%s)
    (cd "$here/$dir" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -tags selinux,notest \
      -ldflags "$(ldflags_for "$name" "$version")" -o "$out.tmp" "$pkg")
    mv "$out.tmp" "$out"
    echo "[$i/$total] $name $version: built in $(( $(date +%s) - start ))s" >&2
  fi
  ln -sf "$name-$version" "$bindir/$name"
done
echo "$bindir"
