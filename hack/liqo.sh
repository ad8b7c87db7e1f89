#!/usr/bin/env bash
# Liqo, from its Go module at the one pinned version (the require line of hack/liqo-agent/go.mod).
#
#   hack/liqo.sh agent [--print-path]  build hack/liqo-agent (one binary of Liqo's code: `agent`, the
#                                      default, Liqo's FirewallConfiguration reconciler for one node;
#                                      `webhook`, Liqo's FirewallConfiguration admission webhooks;
#                                      `forge`, Liqo's objects for a peering's state), cached by
#                                      version and source hash:
#                                      ${LIQOSEC_CACHE:-$HOME/.cache/liqosec}/bin/liqo-agent-<ver>-<hash>
#   hack/liqo.sh crds                  copy Liqo's CRDs that liqosec reads from the module into
#                                      hack/liqo-crds/ (committed, so a clone works offline)
#   hack/liqo.sh check-crds            fail if hack/liqo-crds/ differs from the module's copy
#   hack/liqo.sh version               print the pinned version
#
# Why from the module: no release download site is reachable from this project's machines; the Go
# module proxy is, and it serves github.com/liqotech/liqo (v1.0.0 to v1.2.0 seen).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
AGENT_DIR="${HERE}/liqo-agent"
CRD_DIR="${HERE}/liqo-crds"
CACHE_DIR="${LIQOSEC_CACHE:-${HOME}/.cache/liqosec}"
BIN_DIR="${CACHE_DIR}/bin"
# The CRDs liqosec reads or writes; the others are Liqo's business.
CRDS=(
  core.liqo.io_foreignclusters.yaml
  ipam.liqo.io_networks.yaml
  networking.liqo.io_configurations.yaml
  networking.liqo.io_firewallconfigurations.yaml
  offloading.liqo.io_namespacemaps.yaml
  offloading.liqo.io_namespaceoffloadings.yaml
  offloading.liqo.io_virtualnodes.yaml
)

log() { echo "liqo: $*" >&2; }
die() { log "error: $*"; exit 1; }

LIQO_VERSION="$(awk '$1 == "require" && $2 == "github.com/liqotech/liqo" { print $3; exit }
                     $1 == "github.com/liqotech/liqo" && $2 ~ /^v/ { print $2; exit }' "${AGENT_DIR}/go.mod")"
[[ -n "$LIQO_VERSION" ]] || die "no github.com/liqotech/liqo requirement in ${AGENT_DIR}/go.mod"

go_env() {
  command -v go >/dev/null || die "go is not on PATH (Go >= 1.25 is needed for Liqo ${LIQO_VERSION})"
  export GOTOOLCHAIN=local GOFLAGS=-mod=readonly
}

module_dir() {
  local dir
  go_env
  dir="$(cd "$AGENT_DIR" && go mod download -json "github.com/liqotech/liqo@${LIQO_VERSION}" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin).get("Dir", ""))')" || true
  [[ -n "$dir" && -d "$dir" ]] || die "cannot fetch github.com/liqotech/liqo@${LIQO_VERSION} from the Go module proxy; set GOPROXY (now: $(go env GOPROXY)) or GOFLAGS=-mod=mod with a reachable proxy"
  echo "$dir"
}

agent_path() {
  local hash
  hash="$(cat "${AGENT_DIR}/go.mod" "${AGENT_DIR}/go.sum" "${AGENT_DIR}"/*.go | sha256sum | cut -c1-12)"
  echo "${BIN_DIR}/liqo-agent-${LIQO_VERSION}-${hash}"
}

build_agent() {
  local out start
  out="$(agent_path)"
  if [[ "${1:-}" == "--print-path" ]]; then
    echo "$out"
    [[ -x "$out" ]] || { log "missing: run hack/liqo.sh agent"; exit 3; }
    return
  fi
  if [[ -x "$out" ]]; then
    log "cached (liqo-agent, Liqo ${LIQO_VERSION})"
    echo "$out"
    return
  fi
  go_env
  mkdir -p "$BIN_DIR"
  log "building liqo-agent with Liqo ${LIQO_VERSION} (cold: about 5 min on 2 cores)"
  start=$SECONDS
  (cd "$AGENT_DIR" && go build -trimpath -ldflags='-s -w' -o "${out}.tmp" .) \
    || { rm -f "${out}.tmp"; die "go build of hack/liqo-agent failed (Liqo ${LIQO_VERSION})"; }
  mv -f "${out}.tmp" "$out"
  log "liqo-agent built in $((SECONDS - start)) s"
  echo "$out"
}

sync_crds() {
  local src f
  src="$(module_dir)/deployments/liqo/charts/liqo-crds/crds"
  mkdir -p "$CRD_DIR"
  for f in "${CRDS[@]}"; do
    [[ -f "${src}/${f}" ]] || die "Liqo ${LIQO_VERSION} has no CRD ${f}"
    install -m 0644 "${src}/${f}" "${CRD_DIR}/${f}"
  done
  echo "$LIQO_VERSION" > "${CRD_DIR}/VERSION"
  log "copied ${#CRDS[@]} CRDs of Liqo ${LIQO_VERSION} into ${CRD_DIR}"
}

check_crds() {
  local src f bad=0
  src="$(module_dir)/deployments/liqo/charts/liqo-crds/crds"
  [[ "$(cat "${CRD_DIR}/VERSION" 2>/dev/null)" == "$LIQO_VERSION" ]] \
    || { log "${CRD_DIR}/VERSION is not ${LIQO_VERSION}"; bad=1; }
  for f in "${CRDS[@]}"; do
    cmp -s "${src}/${f}" "${CRD_DIR}/${f}" || { log "${f} differs from Liqo ${LIQO_VERSION}'s"; bad=1; }
  done
  [[ $bad == 0 ]] || die "hack/liqo-crds is not Liqo ${LIQO_VERSION}'s: run hack/liqo.sh crds"
  log "hack/liqo-crds matches Liqo ${LIQO_VERSION}"
}

case "${1:-}" in
  agent) shift; build_agent "$@" ;;
  crds) sync_crds ;;
  check-crds) check_crds ;;
  version) echo "$LIQO_VERSION" ;;
  *) die "usage: hack/liqo.sh agent [--print-path] | crds | check-crds | version" ;;
esac
