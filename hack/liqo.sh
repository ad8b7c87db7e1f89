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
#   hack/liqo.sh commands [--print-path]
#                                      build Liqo's commands (cmd/..., the chart's components and
#                                      liqoctl) in one `go build` from a wrapper module generated in
#                                      the cache; prints the directory holding them:
#                                      ${LIQOSEC_CACHE:-$HOME/.cache/liqosec}/bin/liqo-cmds-<ver>-<hash>
#   hack/liqo.sh liqoctl               build (as above) and print the path of liqoctl
#   hack/liqo.sh images                build the commands, then one image per component on the Debian
#                                      base of hack/images/build.sh, tagged as Liqo's chart asks
#                                      (ghcr.io/liqotech/<component>:<ver>); prints COMPONENT=IMAGE
#   hack/liqo.sh chart                 print the path of Liqo's Helm chart (deployments/liqo) of the
#                                      pinned module, copied writable into the cache
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

# ------------------------------------------------------------------------ Liqo's commands and images
# Binary name (the last element of its package path, as `go build -o DIR/` names it), package
# under github.com/liqotech/liqo/cmd, and the image the chart asks for (deployments/liqo/values.yaml).
# telemetry is left out: liqoctl turns it off with --local-chart-path.
COMPONENTS=(
  "liqo-controller-manager liqo-controller-manager liqo-controller-manager"
  "webhook webhook webhook"
  "crd-replicator crd-replicator crd-replicator"
  "ipam ipam ipam"
  "fabric fabric fabric"
  "gateway gateway gateway"
  "wireguard gateway/wireguard gateway/wireguard"
  "geneve gateway/geneve gateway/geneve"
  "virtual-kubelet virtual-kubelet virtual-kubelet"
  "proxy proxy proxy"
  "metric-agent metric-agent metric-agent"
  "uninstaller uninstaller uninstaller"
  "liqoctl liqoctl -"
)
# Liqo's own images (build/liqo/Dockerfile) add these tools to the gateway's three containers; its
# code shells out to none of them, they are there to debug a tunnel (`wg show`, `nft list ruleset`).
GATEWAY_PACKAGES="iproute2 nftables wireguard-tools conntrack iputils-ping"
# Bump when the recipe below changes what goes into the binaries or the images.
CMDS_RECIPE=liqo-cmds-1
IMAGES_RECIPE=liqo-images-1
LIQOCTL_LDFLAGS="-X github.com/liqotech/liqo/pkg/liqoctl/version.LiqoctlVersion=${LIQO_VERSION}"

cmds_path() {
  local hash
  go_env
  hash="$(printf '%s\n' "$CMDS_RECIPE" "${COMPONENTS[@]}" "$LIQOCTL_LDFLAGS" "$(go env GOVERSION)" | sha256sum | cut -c1-12)"
  echo "${BIN_DIR}/liqo-cmds-${LIQO_VERSION}-${hash}"
}

cmds_complete() {
  local dir="$1" c
  for c in "${COMPONENTS[@]}"; do
    read -r bin _ <<<"$c"
    [[ -x "${dir}/${bin}" ]] || return 1
  done
}

# The wrapper module: Liqo at the pin, with the `replace` directives of Liqo's own go.mod (a
# dependency's replaces do not apply to the module that requires it).
write_wrapper() {
  local work="$1" src="$2" r
  rm -rf "$work"; mkdir -p "$work"
  (
    cd "$work"
    go mod init liqosec.dev/liqo-cmds >/dev/null 2>&1
    go mod edit -go="$(go mod edit -json "${src}/go.mod" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Go"])')"
    go mod edit -require="github.com/liqotech/liqo@${LIQO_VERSION}"
    while IFS= read -r r; do
      [[ -n "$r" ]] && go mod edit -replace="$r"
    done < <(go mod edit -json "${src}/go.mod" | python3 -c '
import json, sys
for r in json.load(sys.stdin).get("Replace") or []:
    old, new = r["Old"], r["New"]
    lhs = old["Path"] + ("@" + old["Version"] if old.get("Version") else "")
    rhs = new["Path"] + ("@" + new["Version"] if new.get("Version") else "")
    print(lhs + "=" + rhs)')
  )
}

build_cmds() {
  local out src work start pkgs=() c bin pkg
  out="$(cmds_path)"
  if [[ "${1:-}" == "--print-path" ]]; then
    echo "$out"
    cmds_complete "$out" || { log "missing: run hack/liqo.sh commands"; exit 3; }
    return
  fi
  if cmds_complete "$out"; then
    log "cached (Liqo ${LIQO_VERSION} commands)"
    echo "$out"
    return
  fi
  src="$(module_dir)"
  work="${CACHE_DIR}/images/go/liqo-cmds-${LIQO_VERSION}"
  write_wrapper "$work" "$src" || die "cannot write the wrapper module in ${work}"
  for c in "${COMPONENTS[@]}"; do
    read -r bin pkg _ <<<"$c"
    pkgs+=("github.com/liqotech/liqo/cmd/${pkg}")
  done
  rm -rf "${out}.tmp"; mkdir -p "${out}.tmp"
  log "building ${#pkgs[@]} commands of Liqo ${LIQO_VERSION} in one go build (cold: 10-20 min on 2 cores)"
  start=$SECONDS
  (
    cd "$work"
    export GOFLAGS=-mod=mod CGO_ENABLED=0
    go get "github.com/liqotech/liqo@${LIQO_VERSION}" >get.log 2>&1 || { tail -20 get.log >&2; exit 1; }
    go build -trimpath -ldflags="-s -w ${LIQOCTL_LDFLAGS}" -o "${out}.tmp/" "${pkgs[@]}" >build.log 2>&1 \
      || { tail -30 build.log >&2; exit 1; }
  ) || { rm -rf "${out}.tmp"; die "go build of Liqo ${LIQO_VERSION}'s commands failed (see ${work}/build.log)"; }
  rm -rf "$out"; mv "${out}.tmp" "$out"
  log "built Liqo ${LIQO_VERSION}'s commands in $((SECONDS - start)) s"
  echo "$out"
}

# Liqo's chart from the module, copied out of the read-only module cache (Helm may write beside it).
chart_path() {
  local src dst="${CACHE_DIR}/liqo-chart-${LIQO_VERSION}"
  if [[ ! -f "${dst}/Chart.yaml" ]]; then
    src="$(module_dir)/deployments/liqo"
    [[ -f "${src}/Chart.yaml" ]] || die "Liqo ${LIQO_VERSION} has no chart in deployments/liqo"
    rm -rf "${dst}.tmp"; cp -r "$src" "${dst}.tmp"; chmod -R u+w "${dst}.tmp"
    rm -rf "$dst"; mv "${dst}.tmp" "$dst"
  fi
  echo "$dst"
}

present() { docker image inspect "$1" >/dev/null 2>&1; }

# image_build REF KEY CONTEXT DOCKERFILE BUILD_ARG...: a `docker build` labelled with its key.
image_build() {
  local ref="$1" key="$2" ctx="$3" file="$4"; shift 4
  local args=() a
  for a in "$@"; do args+=(--build-arg "$a"); done
  # The legacy builder (BuildKit would fetch its frontend from a registry); its stderr only on failure.
  DOCKER_BUILDKIT=0 docker build -q --network host "${args[@]}" --label "dev.liqosec.key=${key}" \
    -t "$ref" -f "$file" "$ctx" >"${ctx}/build.log" 2>&1 || { tail -20 "${ctx}/build.log" >&2; return 1; }
}

# One image per component: its binary as /usr/bin/<bin> and /usr/bin/liqo-component (the entrypoint,
# as Liqo's build/liqo/Dockerfile), cached under liqosec.local/liqo-<name> by a key of what went
# in, then tagged with the name the chart asks for.
build_images() {
  local cmds base c bin image key ref ctx dockerfile="${HERE}/images/liqo.Dockerfile" start=$SECONDS
  local packages keyfile
  timeout 20 docker info >/dev/null 2>&1 || die "no Docker engine answers: run hack/docker.sh ensure"
  cmds="$(build_cmds)"
  base="$("${HERE}/images/build.sh" base | sed -n 's/^base=//p')"
  [[ -n "$base" ]] || die "hack/images/build.sh base printed no image"
  ctx="${CACHE_DIR}/images/ctx/liqo"
  for c in "${COMPONENTS[@]}" "- - cert-creator"; do
    read -r bin _ image <<<"$c"
    [[ "$image" == - ]] && continue
    packages=""
    case "$image" in gateway | gateway/*) packages="$GATEWAY_PACKAGES" ;; cert-creator) packages=openssl ;; esac
    if [[ "$bin" == - ]]; then
      keyfile=/dev/null
    else
      keyfile="${cmds}/${bin}"
    fi
    key="$(printf '%s\n' "$IMAGES_RECIPE" "$base" "$image" "$packages" "$(basename "$cmds")" \
      "$(sha256sum <"$dockerfile")" "$(sha256sum <"$keyfile")" | sha256sum | cut -c1-12)"
    ref="liqosec.local/liqo-${image//\//-}:${LIQO_VERSION}-${key}"
    if present "$ref"; then
      log "cached ${ref}"
    else
      log "building ${ref}"
      rm -rf "$ctx"; mkdir -p "${ctx}/bin"
      # Liqo's cert-creator is openssl on alpine; the chart runs /usr/bin/openssl.
      [[ "$bin" == - ]] && bin=openssl || cp "${cmds}/${bin}" "${ctx}/bin/${bin}"
      image_build "$ref" "$key" "$ctx" "$dockerfile" "BASE=${base}" "PACKAGES=${packages}" "COMPONENT=${bin}" \
        || die "docker build of ${image} failed"
    fi
    docker tag "$ref" "ghcr.io/liqotech/${image}:${LIQO_VERSION}"
    echo "${image}=ghcr.io/liqotech/${image}:${LIQO_VERSION}"
  done
  rm -rf "$ctx"
  log "Liqo ${LIQO_VERSION} images ready in $((SECONDS - start)) s"
}

case "${1:-}" in
  agent) shift; build_agent "$@" ;;
  crds) sync_crds ;;
  check-crds) check_crds ;;
  version) echo "$LIQO_VERSION" ;;
  commands) shift; build_cmds "$@" ;;
  liqoctl) echo "$(build_cmds)/liqoctl" ;;
  images) build_images ;;
  chart) chart_path ;;
  *) die "usage: hack/liqo.sh agent [--print-path] | crds | check-crds | version | commands [--print-path] | liqoctl | images | chart" ;;
esac
