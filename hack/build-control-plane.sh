#!/usr/bin/env bash
# Build a real Kubernetes control plane (kube-apiserver, kube-controller-manager, etcd) from Go
# modules, for the integration tests and the demo (`python -m harness up`).
#
# Why from source: this project's machines reach the Go module proxy but no release download
# site, so the binaries are compiled from the wrapper module in hack/kube-build/ (go.mod pins
# k8s.io/kubernetes and every staging module; etcd's server main package comes from the same
# module graph, at the go.etcd.io/etcd/server/v3 version Kubernetes itself pins).
#
# What worked (Go 1.26, Debian bookworm, 2 cores): k8s.io/kubernetes v1.33.13 with the staging
# modules at v0.33.13, and go.etcd.io/etcd/server/v3 v3.5.21 from the same graph.
# If the etcd build ever breaks, the fallback is Debian's etcd-server package (apt); it is
# tried automatically below and reported as such.
#
# Binaries are cached outside the repo, keyed by version:
#   ${LIQOSEC_CACHE:-$HOME/.cache/liqosec}/bin/<name>-<version>
# A second run with the cache present does nothing and is instant.
#
# Usage:
#   hack/build-control-plane.sh               build what is missing, print the paths
#   hack/build-control-plane.sh --print-paths print NAME=PATH lines; exit 3 if any is missing
#   hack/build-control-plane.sh --force       rebuild even when cached
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MODULE_DIR="${HERE}/kube-build"
CACHE_DIR="${LIQOSEC_CACHE:-${HOME}/.cache/liqosec}"
BIN_DIR="${CACHE_DIR}/bin"

log() { echo "build-control-plane: $*" >&2; }
die() { log "error: $*"; exit 1; }

# Versions are read from the wrapper go.mod so that the cache key cannot drift from what is built.
module_version() {
  local mod="$1" v
  v="$(awk -v m="$mod" '$1 == m && $2 ~ /^v/ { print $2; exit } $1 == "require" && $2 == m { print $3; exit }' \
    "${MODULE_DIR}/go.mod")"
  [[ -n "$v" ]] || die "cannot find ${mod} in ${MODULE_DIR}/go.mod"
  echo "$v"
}

KUBE_VERSION="$(module_version k8s.io/kubernetes)"
ETCD_VERSION="$(module_version go.etcd.io/etcd/server/v3)"

APISERVER="${BIN_DIR}/kube-apiserver-${KUBE_VERSION}"
CONTROLLER_MANAGER="${BIN_DIR}/kube-controller-manager-${KUBE_VERSION}"
ETCD="${BIN_DIR}/etcd-${ETCD_VERSION}"
# Written only by the apt fallback; used when the etcd Go build is not there.
ETCD_DEBIAN="${BIN_DIR}/etcd-debian"

etcd_path() {
  if [[ -x "$ETCD" || ! -x "$ETCD_DEBIAN" ]]; then echo "$ETCD"; else echo "$ETCD_DEBIAN"; fi
}

print_paths() {
  echo "LIQOSEC_KUBE_APISERVER=${APISERVER}"
  echo "LIQOSEC_KUBE_CONTROLLER_MANAGER=${CONTROLLER_MANAGER}"
  echo "LIQOSEC_ETCD=$(etcd_path)"
}

all_present() {
  [[ -x "$APISERVER" && -x "$CONTROLLER_MANAGER" && -x "$(etcd_path)" ]]
}

go_env() {
  # GOTOOLCHAIN=local: never try to download another toolchain (no network for that here).
  # GOFLAGS=-mod=readonly: the committed go.sum is the source of truth.
  export GOTOOLCHAIN=local GOFLAGS=-mod=readonly
  command -v go >/dev/null || die "go is not on PATH (Go >= 1.24 is needed)"
}

build_kube() {
  local tmp start
  tmp="$(mktemp -d "${BIN_DIR}/.build.XXXXXX")"
  log "building kube-apiserver and kube-controller-manager ${KUBE_VERSION} (cold: about 8 min on 2 cores, 2 GiB RAM)"
  start=$SECONDS
  # One go build for both so the shared packages compile once.
  # Stamp the version the way Kubernetes' own build does, or /version says v0.0.0-master and
  # clients that gate features on the server version misjudge it.
  local minor="${KUBE_VERSION#v1.}"; minor="${minor%%.*}"
  local pkg=k8s.io/component-base/version
  local ldflags="-s -w -X ${pkg}.gitVersion=${KUBE_VERSION} -X ${pkg}.gitMajor=1"
  ldflags+=" -X ${pkg}.gitMinor=${minor} -X ${pkg}.gitTreeState=clean"
  (cd "$MODULE_DIR" && go build -trimpath -ldflags="$ldflags" -o "${tmp}/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager) \
    || { rm -rf "$tmp"; die "go build of the kube binaries failed"; }
  mv -f "${tmp}/kube-apiserver" "$APISERVER"
  mv -f "${tmp}/kube-controller-manager" "$CONTROLLER_MANAGER"
  rm -rf "$tmp"
  log "kube binaries built in $((SECONDS - start)) s"
}

build_etcd() {
  local start
  log "building etcd ${ETCD_VERSION} from go.etcd.io/etcd/server/v3"
  start=$SECONDS
  if (cd "$MODULE_DIR" && go build -trimpath -ldflags='-s -w' -o "${ETCD}.tmp" go.etcd.io/etcd/server/v3); then
    mv -f "${ETCD}.tmp" "$ETCD"
    log "etcd built in $((SECONDS - start)) s"
    return
  fi
  rm -f "${ETCD}.tmp"
  log "etcd Go build failed; falling back to Debian's etcd-server package"
  command -v apt-get >/dev/null || die "no apt-get for the etcd fallback"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null \
    || die "apt-get install etcd-server failed"
  ln -sf "$(command -v etcd)" "$ETCD_DEBIAN"
}

main() {
  local force=0
  case "${1:-}" in
    --print-paths) print_paths; all_present || { log "missing binaries: run hack/build-control-plane.sh"; exit 3; }; exit 0 ;;
    --force) force=1 ;;
    "") ;;
    *) die "unknown argument: $1 (expected --print-paths or --force)" ;;
  esac
  mkdir -p "$BIN_DIR"
  if [[ $force == 0 ]] && all_present; then
    log "cached (kubernetes ${KUBE_VERSION}, etcd ${ETCD_VERSION})"
    print_paths
    return
  fi
  go_env
  if [[ $force == 1 || ! -x "$APISERVER" || ! -x "$CONTROLLER_MANAGER" ]]; then build_kube; fi
  if [[ $force == 1 || ! -x "$(etcd_path)" ]]; then build_etcd; fi
  log "done (kubernetes ${KUBE_VERSION}, etcd ${ETCD_VERSION})"
  print_paths
}

main "$@"
