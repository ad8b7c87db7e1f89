#!/usr/bin/env bash
# Build helm from Go modules (helm.sh/helm/v3/cmd/helm at a pinned v3 release) into the same cache
# as the control plane: ${LIQOSEC_CACHE:-$HOME/.cache/liqosec}/bin/helm-<version>.
#
# Why from source: no release download site is reachable from this project's machines; the Go
# module proxy is. The wrapper module is generated in the cache (not the repo): `go get -tool`
# resolves helm's own go.mod by minimal version selection, so the result is deterministic for a
# pinned HELM_VERSION. A second run with the cache present is instant.
#
# Usage: hack/build-helm.sh [--print-path]   (HELM_VERSION overrides the pin)
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v3.19.5}"
CACHE_DIR="${LIQOSEC_CACHE:-${HOME}/.cache/liqosec}"
BIN_DIR="${CACHE_DIR}/bin"
HELM="${BIN_DIR}/helm-${HELM_VERSION}"

log() { echo "build-helm: $*" >&2; }
die() { log "error: $*"; exit 1; }

if [[ "${1:-}" == "--print-path" ]]; then
  echo "$HELM"
  [[ -x "$HELM" ]] || { log "missing: run hack/build-helm.sh"; exit 3; }
  exit 0
fi
[[ $# -eq 0 ]] || die "unknown argument: $1 (expected --print-path)"

if [[ -x "$HELM" ]]; then
  log "cached (helm ${HELM_VERSION})"
  echo "$HELM"
  exit 0
fi

command -v go >/dev/null || die "go is not on PATH"
export GOTOOLCHAIN=local GOFLAGS=-mod=mod
mkdir -p "$BIN_DIR"
work="${CACHE_DIR}/helm-build-${HELM_VERSION}"
rm -rf "$work"
mkdir -p "$work"
cd "$work"
go mod init liqosec.dev/helm-build >/dev/null 2>&1
log "resolving helm.sh/helm/v3 ${HELM_VERSION}"
go get -tool "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}" >resolve.log 2>&1 \
  || { tail -20 resolve.log >&2; die "cannot resolve helm ${HELM_VERSION} (see ${work}/resolve.log)"; }
log "building helm ${HELM_VERSION}"
start=$SECONDS
go build -trimpath \
  -ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}" \
  -o "${HELM}.tmp" helm.sh/helm/v3/cmd/helm || { rm -f "${HELM}.tmp"; die "go build of helm failed"; }
mv -f "${HELM}.tmp" "$HELM"
log "helm built in $((SECONDS - start)) s"
echo "$HELM"
