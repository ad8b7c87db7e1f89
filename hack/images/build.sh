#!/usr/bin/env bash
# Container images for the kind suite, built on this machine with no registry pull (docs/images.md).
#
#   hack/images/build.sh TARGET...      build what is missing, print one IMAGE line per target
#   hack/images/build.sh --print TARGET print the image reference only; exit 3 if it is not built
#   hack/images/build.sh sizes          the size of every image built here
#   hack/images/build.sh prune          remove images of earlier keys (liqosec.local/*)
#   hack/images/build.sh tool kind|kubectl|promtool   build (cached) and print the path of the tool
#
# Targets:
#   base        Debian bookworm, debootstrapped into the cache and `docker import`ed
#   python      base + Debian's python3 (3.11), venv and `python`: the Dockerfile's PYTHON_IMAGE
#   liqosec     the Dockerfile, built FROM python (docker build --network host: pip needs PyPI);
#               also tagged liqosec:e2e
#   liqo-agent  Liqo's firewall agent (hack/liqo.sh agent) on base, for the DaemonSet
#   prometheus  Prometheus server from the Go module github.com/prometheus/prometheus
#   node        a kind node image for Kubernetes $KUBE_VERSION (docs/images.md)
#   all         every target above
#
# Every image is tagged by a key of what went into it (versions, the files that build it, its
# base's key, and a recipe revision: bump base-N, node-N, prometheus-N when this script changes
# what it puts into an image), so a warm run finds the tag and builds nothing. Intermediate files
# live in ${LIQOSEC_CACHE:-$HOME/.cache/liqosec}/images; Go binaries in .../bin.
# Needs a Docker engine (hack/docker.sh ensure) and, for base, root and debootstrap (apt).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "${HERE}/../.." && pwd)"
CACHE_DIR="${LIQOSEC_CACHE:-${HOME}/.cache/liqosec}"
BIN_DIR="${CACHE_DIR}/bin"
WORK="${CACHE_DIR}/images"
REPO="liqosec.local"
LABEL="dev.liqosec.key"

# Pins. The Kubernetes version is hack/kube-build's (the one the integration suite runs).
DEBIAN_SUITE=bookworm
KUBE_VERSION="$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ { print $2; exit }' "${ROOT}/hack/kube-build/go.mod")"
KIND_VERSION=v0.29.0          # node layout (entrypoint, units) of kind v0.29: cgroup v1 and v2
ETCD_VERSION=v3.5.24          # kubeadm v1.33's DefaultEtcdVersion 3.5.24-0
COREDNS_VERSION=v1.12.0       # kubeadm v1.33's CoreDNSVersion
PAUSE_VERSION=3.10            # kubeadm v1.33's PauseVersion, kind's sandbox_image
CRICTL_VERSION=v1.34.0        # the proxy has no v1.33.0; crictl speaks CRI v1 either way
PROMETHEUS_MODULE_VERSION=v0.310.0   # Prometheus v3.10.0
PROMETHEUS_VERSION=v3.10.0

log() { echo "images: $*" >&2; }
die() { log "error: $*"; exit 1; }

hash_of() { sha256sum | cut -c1-12; }

# apt_mirror [DIR]: the Debian archive this machine's apt already uses for ${DEBIAN_SUITE} (DIR,
# default /etc/apt: deb822 sources.list.d/*.sources, then one-line sources.list and *.list),
# printed once; nothing when its sources name none.
apt_mirror() {
  local dir="${1:-/etc/apt}" f
  for f in "${dir}"/sources.list.d/*.sources; do
    [[ -r "$f" ]] || continue
    awk -v suite="$DEBIAN_SUITE" '
      function flush() { if (uri != "" && deb && hit) { print uri; found = 1; exit } uri = ""; deb = 0; hit = 0 }
      /^[[:space:]]*$/ { flush(); next }
      /^[[:space:]]*#/ { next }
      tolower($1) == "types:" { for (i = 2; i <= NF; i++) if ($i == "deb") deb = 1 }
      tolower($1) == "uris:" { uri = $2 }
      tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == suite) hit = 1 }
      END { if (!found) flush() }' "$f"
  done | head -n 1 | grep . && return
  for f in "${dir}/sources.list" "${dir}"/sources.list.d/*.list; do
    [[ -r "$f" ]] || continue
    awk -v suite="$DEBIAN_SUITE" '$1 == "deb" {
      i = 2; if ($i ~ /^\[/) { while (i < NF && $i !~ /\]$/) i++; i++ }
      if ($(i + 1) == suite) { print $i; exit } }' "$f"
  done | head -n 1
}

# The mirror: LIQOSEC_DEBIAN_MIRROR, else the one apt uses here; neither is a clear error.
debian_mirror() {
  local found="${LIQOSEC_DEBIAN_MIRROR:-$(apt_mirror)}"
  [[ -n "$found" ]] || die "no Debian mirror for ${DEBIAN_SUITE}: apt's sources (/etc/apt) name none; set LIQOSEC_DEBIAN_MIRROR"
  echo "${found%/}"
}
# Images need it (their keys name it); `tool` does not, so a machine without apt sources can build tools.
[[ "${1:-}" == tool ]] || DEBIAN_MIRROR="$(debian_mirror)"
present() { docker image inspect "$1" >/dev/null 2>&1; }

# ---------------------------------------------------------------------------------------- Go builds
# go_binary NAME MODULE VERSION PACKAGE [LDFLAGS [TAGS]]: a static binary built from a Go module
# in a wrapper module generated in the cache (no checkout, no repo files); cached as bin/NAME-VERSION.
go_binary() {
  local name="$1" module="$2" version="$3" pkg="$4" ldflags="${5:-}" tags="${6:-}"
  local out="${BIN_DIR}/${name}-${version}"
  if [[ -x "$out" ]]; then echo "$out"; return; fi
  command -v go >/dev/null || die "go is not on PATH (needed to build ${name})"
  local work="${WORK}/go/${name}-${version}" start=$SECONDS
  rm -rf "$work"; mkdir -p "$work" "$BIN_DIR"
  log "building ${name} ${version} from ${module} (cold: minutes on 2 cores)"
  (
    cd "$work"
    export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
    go mod init liqosec.dev/images/"${name}" >/dev/null 2>&1
    go get "${pkg}@${version}" >get.log 2>&1 || { tail -20 get.log >&2; exit 1; }
    go build -trimpath -tags="$tags" -ldflags="-s -w ${ldflags}" -o "${out}.tmp" "$pkg" >build.log 2>&1 \
      || { tail -30 build.log >&2; exit 1; }
  ) || { rm -f "${out}.tmp"; die "go build of ${name} ${version} failed (see ${work})"; }
  mv -f "${out}.tmp" "$out"
  log "built ${name} ${version} in $((SECONDS - start)) s"
  echo "$out"
}

# The node's Kubernetes binaries, static, from hack/kube-build's module graph (one go build).
KUBE_BINARIES=(kubelet kubeadm kubectl kube-apiserver kube-controller-manager kube-scheduler kube-proxy)
kube_binaries() {
  local dir="${BIN_DIR}/kube-static-${KUBE_VERSION}" b missing=0
  for b in "${KUBE_BINARIES[@]}"; do [[ -x "${dir}/${b}" ]] || missing=1; done
  if [[ $missing == 0 ]]; then echo "$dir"; return; fi
  command -v go >/dev/null || die "go is not on PATH (needed to build Kubernetes ${KUBE_VERSION})"
  local work="${WORK}/go/kube-${KUBE_VERSION}" start=$SECONDS
  mkdir -p "$work" "${dir}.tmp"
  cp "${ROOT}/hack/kube-build/go.mod" "${ROOT}/hack/kube-build/go.sum" "$work/"
  log "building ${KUBE_BINARIES[*]} ${KUBE_VERSION} (cold: about 15 min on 2 cores)"
  local minor="${KUBE_VERSION#v1.}"; minor="${minor%%.*}"
  local p=k8s.io/component-base/version
  local ld="-s -w -X ${p}.gitVersion=${KUBE_VERSION} -X ${p}.gitMajor=1 -X ${p}.gitMinor=${minor} -X ${p}.gitTreeState=clean"
  local pkgs=() ; for b in "${KUBE_BINARIES[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/${b}"); done
  (cd "$work" && GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0 \
    go build -trimpath -ldflags="$ld" -o "${dir}.tmp/" "${pkgs[@]}" >build.log 2>&1) \
    || { tail -30 "${work}/build.log" >&2; die "go build of Kubernetes ${KUBE_VERSION} failed"; }
  rm -rf "$dir"; mv "${dir}.tmp" "$dir"
  log "built Kubernetes ${KUBE_VERSION} binaries in $((SECONDS - start)) s"
  echo "$dir"
}

kind_binary() { go_binary kind sigs.k8s.io/kind "$KIND_VERSION" sigs.k8s.io/kind; }
etcd_binary() { go_binary etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION" go.etcd.io/etcd/server/v3; }
coredns_binary() { go_binary coredns github.com/coredns/coredns "$COREDNS_VERSION" github.com/coredns/coredns; }
crictl_binary() {
  go_binary crictl sigs.k8s.io/cri-tools "$CRICTL_VERSION" sigs.k8s.io/cri-tools/cmd/crictl \
    "-X sigs.k8s.io/cri-tools/pkg/version.Version=${CRICTL_VERSION}"
}
# Service discovery: Kubernetes, file and HTTP only (Prometheus' own build tags): the cloud SDs'
# SDKs would triple the build time.
prometheus_binary() {
  local v=github.com/prometheus/common/version
  go_binary prometheus-k8s-sd github.com/prometheus/prometheus "$PROMETHEUS_MODULE_VERSION" \
    github.com/prometheus/prometheus/cmd/prometheus \
    "-X ${v}.Version=${PROMETHEUS_VERSION#v} -X ${v}.Branch=HEAD -X ${v}.Revision=${PROMETHEUS_MODULE_VERSION}" \
    remove_all_sd,enable_kubernetes_sd
}
# promtool of the same module, flags and tags as the server: it checks and unit-tests the chart's
# alerting rules (`promtool test rules`), and shares the server's Go build cache.
promtool_binary() {
  local v=github.com/prometheus/common/version
  go_binary promtool github.com/prometheus/prometheus "$PROMETHEUS_MODULE_VERSION" \
    github.com/prometheus/prometheus/cmd/promtool \
    "-X ${v}.Version=${PROMETHEUS_VERSION#v} -X ${v}.Branch=HEAD -X ${v}.Revision=${PROMETHEUS_MODULE_VERSION}" \
    remove_all_sd,enable_kubernetes_sd
}
# pause.c is Kubernetes' own (build/pause/linux in the k8s.io/kubernetes module), static with gcc.
pause_binary() {
  local out="${BIN_DIR}/pause-${PAUSE_VERSION}"
  if [[ -x "$out" ]]; then echo "$out"; return; fi
  local src
  src="$(cd "${ROOT}/hack/kube-build" && GOTOOLCHAIN=local GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@${KUBE_VERSION}" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')/build/pause/linux/pause.c"
  [[ -f "$src" ]] || die "no pause.c in k8s.io/kubernetes ${KUBE_VERSION}"
  command -v gcc >/dev/null || die "gcc is needed for pause"
  mkdir -p "$BIN_DIR"
  gcc -Os -Wall -Werror -static -DVERSION="v${PAUSE_VERSION}-liqosec" -o "${out}.tmp" "$src" \
    || die "gcc of pause failed (libc6-dev has the static libc)"
  strip "${out}.tmp"; mv -f "${out}.tmp" "$out"
  echo "$out"
}

# ------------------------------------------------------------------------------------------ images
# LIQOSEC_BASE_IMAGE (e.g. debian:bookworm-slim, pulled) replaces the debootstrap on a machine
# that reaches a registry but has no debootstrap or is not root.
BASE_IMAGE="${LIQOSEC_BASE_IMAGE:-}"
base_key() { printf '%s\n' base-2 "$DEBIAN_SUITE" "$DEBIAN_MIRROR" "$BASE_IMAGE" | hash_of; }
base_ref() { echo "${REPO}/debian:${DEBIAN_SUITE}-$(base_key)"; }
build_base() {
  local ref; ref="$(base_ref)"
  present "$ref" && { log "cached ${ref}"; return; }
  if [[ -n "$BASE_IMAGE" ]]; then
    present "$BASE_IMAGE" || docker pull "$BASE_IMAGE" >/dev/null || die "cannot pull ${BASE_IMAGE}"
    docker tag "$BASE_IMAGE" "$ref"
    return
  fi
  local tar="${WORK}/debian-${DEBIAN_SUITE}-$(base_key).tar"
  if [[ ! -f "$tar" ]]; then
    command -v debootstrap >/dev/null || {
      log "installing debootstrap (apt)"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
    } || die "debootstrap is missing and apt-get install failed"
    local rootfs="${WORK}/rootfs-${DEBIAN_SUITE}"
    rm -rf "$rootfs"; mkdir -p "$WORK"
    log "debootstrap ${DEBIAN_SUITE} (minbase) from ${DEBIAN_MIRROR}"
    debootstrap --variant=minbase --include=ca-certificates "$DEBIAN_SUITE" "$rootfs" "$DEBIAN_MIRROR" \
      >"${WORK}/debootstrap.log" 2>&1 || { tail -20 "${WORK}/debootstrap.log" >&2; die "debootstrap failed"; }
    # Keep the image small and deterministic: no apt lists or downloaded packages, no logs.
    rm -rf "${rootfs}"/var/lib/apt/lists/* "${rootfs}"/var/cache/apt/*.bin "${rootfs}"/var/cache/apt/archives/*.deb \
      "${rootfs}"/var/log/* "${rootfs}"/tmp/*
    printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' >"${rootfs}/etc/apt/apt.conf.d/99liqosec"
    # As Debian's slim images: no documentation, manual pages or translations, now or later.
    printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
      'path-exclude /usr/share/man/*' 'path-exclude /usr/share/info/*' 'path-exclude /usr/share/lintian/*' \
      'path-exclude /usr/share/locale/*' 'path-include /usr/share/locale/locale.alias' \
      >"${rootfs}/etc/dpkg/dpkg.cfg.d/90liqosec-slim"
    find "${rootfs}/usr/share/doc" -type f ! -name copyright -delete
    find "${rootfs}/usr/share/doc" -type l -delete
    rm -rf "${rootfs}"/usr/share/man/* "${rootfs}"/usr/share/info/* "${rootfs}"/usr/share/lintian/*
    find "${rootfs}/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
    tar --numeric-owner -C "$rootfs" -cf "${tar}.tmp" . && mv -f "${tar}.tmp" "$tar"
    rm -rf "$rootfs"
  fi
  docker import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]' --change "LABEL ${LABEL}=$(base_key)" "$tar" "$ref" >/dev/null
}

extra_ca() { find /usr/local/share/ca-certificates -maxdepth 1 -name '*.crt' -type f 2>/dev/null | LC_ALL=C sort; }
python_key() { { base_key; cat "${HERE}/python.Dockerfile"; extra_ca | xargs -r cat; } | hash_of; }
python_ref() { echo "${REPO}/python:3.11-${DEBIAN_SUITE}-$(python_key)"; }
build_python() {
  local ref; ref="$(python_ref)"
  present "$ref" && { log "cached ${ref}"; return; }
  build_base
  local ctx="${WORK}/ctx/python"; rm -rf "$ctx"; mkdir -p "${ctx}/extra-ca"
  extra_ca | xargs -r cp -t "${ctx}/extra-ca/"
  DOCKER_BUILDKIT=0 docker build -q --network host --build-arg "BASE=$(base_ref)" --label "${LABEL}=$(python_key)" \
    -t "$ref" -f "${HERE}/python.Dockerfile" "$ctx" >/dev/null
}

# What the Dockerfile's context holds (see .dockerignore), hashed.
liqosec_key() {
  {
    python_key
    cat "${ROOT}/Dockerfile" "${ROOT}/.dockerignore"
    (cd "$ROOT" && find pyproject.toml README* liqosec -type f ! -name '*.pyc' ! -path '*/__pycache__/*' \
      | LC_ALL=C sort | xargs sha256sum)
  } | hash_of
}
liqosec_ref() { echo "${REPO}/liqosec:$(liqosec_key)"; }
build_liqosec() {
  local ref; ref="$(liqosec_ref)"
  if ! present "$ref"; then
    build_python
    # The legacy builder: BuildKit would fetch the `# syntax=` frontend image from a registry.
    DOCKER_BUILDKIT=0 docker build -q --network host --build-arg "PYTHON_IMAGE=$(python_ref)" \
      --label "${LABEL}=$(liqosec_key)" -t "$ref" "$ROOT" >/dev/null
  else
    log "cached ${ref}"
  fi
  docker tag "$ref" liqosec:e2e
}

agent_binary() { "${ROOT}/hack/liqo.sh" agent; }
# The agent's cache name carries Liqo's version and a hash of hack/liqo-agent: known before it is built.
agent_name() { basename "$("${ROOT}/hack/liqo.sh" agent --print-path 2>/dev/null || true)"; }
liqo_agent_key() { { base_key; agent_name; cat "${HERE}/liqo-agent.Dockerfile"; } | hash_of; }
liqo_agent_ref() { echo "${REPO}/liqo-agent:$("${ROOT}/hack/liqo.sh" version)-$(liqo_agent_key)"; }
build_liqo_agent() {
  local ref bin ctx; ref="$(liqo_agent_ref)"
  present "$ref" && { log "cached ${ref}"; return; }
  build_base
  bin="$(agent_binary)"
  ctx="${WORK}/ctx/liqo-agent"; rm -rf "$ctx"; mkdir -p "$ctx"
  cp "$bin" "${ctx}/liqo-agent"
  strip "${ctx}/liqo-agent" 2>/dev/null || true
  DOCKER_BUILDKIT=0 docker build -q --build-arg "BASE=$(base_ref)" --label "${LABEL}=$(liqo_agent_key)" \
    -t "$ref" -f "${HERE}/liqo-agent.Dockerfile" "$ctx" >/dev/null
}

# A static binary on an empty root with /etc/passwd, /tmp and CA certificates: `docker import`.
# static_image REF KEY ENTRYPOINT_JSON DEST=SRC...
static_image() {
  local ref="$1" key="$2" entrypoint="$3"; shift 3
  local root="${WORK}/ctx/static-$$"
  rm -rf "$root"; mkdir -p "${root}/etc/ssl/certs" "${root}/tmp" "${root}/usr/local/bin"
  chmod 1777 "${root}/tmp"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"${root}/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n' >"${root}/etc/group"
  echo 'hosts: files dns' >"${root}/etc/nsswitch.conf"
  cp /etc/ssl/certs/ca-certificates.crt "${root}/etc/ssl/certs/" 2>/dev/null || true
  local pair
  for pair in "$@"; do
    mkdir -p "${root}/$(dirname "${pair%%=*}")"
    cp "${pair#*=}" "${root}/${pair%%=*}"
  done
  tar --numeric-owner --owner=0 --group=0 -C "$root" -c . | docker import \
    --change 'ENV PATH=/usr/local/bin:/bin' --change "ENTRYPOINT ${entrypoint}" \
    --change "LABEL ${LABEL}=${key}" - "$ref" >/dev/null
  rm -rf "$root"
}

prometheus_key() { printf '%s\n' prometheus-2 "$PROMETHEUS_MODULE_VERSION" | hash_of; }
prometheus_ref() { echo "${REPO}/prometheus:${PROMETHEUS_VERSION}-$(prometheus_key)"; }
build_prometheus() {
  local ref bin; ref="$(prometheus_ref)"
  present "$ref" && { log "cached ${ref}"; return; }
  bin="$(prometheus_binary)"
  # No web UI assets (the module does not ship them built); the API and /metrics are all we use.
  static_image "$ref" "$(prometheus_key)" '["/bin/prometheus"]' "bin/prometheus=${bin}"
}

# ----------------------------------------------------------------------------------- the node image
# The images kubeadm v1.33 and kind preload, under the names kubeadm asks for.
preload_refs() {
  echo "registry.k8s.io/kube-apiserver:${KUBE_VERSION}" "registry.k8s.io/kube-controller-manager:${KUBE_VERSION}" \
    "registry.k8s.io/kube-scheduler:${KUBE_VERSION}" "registry.k8s.io/kube-proxy:${KUBE_VERSION}" \
    "registry.k8s.io/etcd:${ETCD_VERSION#v}-0" "registry.k8s.io/coredns/coredns:${COREDNS_VERSION}" \
    "registry.k8s.io/pause:${PAUSE_VERSION}"
}
node_files_hash() { (cd "${HERE}/node" && find . -type f | LC_ALL=C sort | xargs sha256sum) | hash_of; }
node_key() {
  printf '%s\n' "$(base_key)" "$KUBE_VERSION" "$KIND_VERSION" "$ETCD_VERSION" "$COREDNS_VERSION" "$PAUSE_VERSION" \
    "$CRICTL_VERSION" "$(node_files_hash)" node-1 | hash_of
}
node_ref() { echo "${REPO}/kind-node:${KUBE_VERSION}-$(node_key)"; }

build_preload() { # builds the preloaded images and saves them into one archive; prints its path
  local kube="$1" archive="${WORK}/preload-$(node_key).tar" k="$(node_key)"
  if [[ -f "$archive" ]]; then echo "$archive"; return; fi
  local b
  for b in kube-apiserver kube-controller-manager kube-scheduler; do
    static_image "registry.k8s.io/${b}:${KUBE_VERSION}" "$k" "[\"/usr/local/bin/${b}\"]" "usr/local/bin/${b}=${kube}/${b}"
  done
  static_image "registry.k8s.io/etcd:${ETCD_VERSION#v}-0" "$k" '["/usr/local/bin/etcd"]' \
    "usr/local/bin/etcd=$(etcd_binary)"
  static_image "registry.k8s.io/coredns/coredns:${COREDNS_VERSION}" "$k" '["/coredns"]' "coredns=$(coredns_binary)"
  static_image "registry.k8s.io/pause:${PAUSE_VERSION}" "$k" '["/pause"]' "pause=$(pause_binary)"
  # kube-proxy runs iptables (Debian's, nft backend, as the node's entrypoint picks here).
  local ctx="${WORK}/ctx/kube-proxy"; rm -rf "$ctx"; mkdir -p "$ctx"
  cp "${kube}/kube-proxy" "$ctx/"
  DOCKER_BUILDKIT=0 docker build -q --network host --build-arg "BASE=$(base_ref)" --label "${LABEL}=${k}" \
    -t "registry.k8s.io/kube-proxy:${KUBE_VERSION}" -f "${HERE}/node/kube-proxy.Dockerfile" "$ctx" >/dev/null
  # shellcheck disable=SC2046
  docker save -o "${archive}.tmp" $(preload_refs) && mv -f "${archive}.tmp" "$archive"
  echo "$archive"
}

kind_module_dir() {
  (cd "${WORK}" && GOTOOLCHAIN=local GOFLAGS=-mod=mod go mod download -json "sigs.k8s.io/kind@${KIND_VERSION}" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
}

build_node() {
  local ref; ref="$(node_ref)"
  present "$ref" && { log "cached ${ref}"; return; }
  build_base
  local kube preload kindsrc ctx stage="${REPO}/kind-node-stage:$(node_key)"
  kube="$(kube_binaries)"
  kindsrc="$(kind_module_dir)"
  [[ -d "${kindsrc}/images/base/files" ]] || die "no images/base/files in sigs.k8s.io/kind ${KIND_VERSION}"
  # Stage 1: kind's base image layout (kind's own files from its module, Debian's packages,
  # Debian's containerd/runc/CNI plugins), plus kubelet, kubeadm, kubectl and crictl.
  ctx="${WORK}/ctx/node"; rm -rf "$ctx"; mkdir -p "${ctx}/bin"
  cp -r "${kindsrc}/images/base/files" "${ctx}/kind-files"; chmod -R u+w "${ctx}/kind-files"
  cp -r "${HERE}/node/files" "${ctx}/liqosec-files"
  cp "${kube}/kubelet" "${kube}/kubeadm" "${kube}/kubectl" "$(crictl_binary)" "${ctx}/bin/"
  mv "${ctx}/bin/crictl-${CRICTL_VERSION}" "${ctx}/bin/crictl"
  echo "$KUBE_VERSION" >"${ctx}/version"
  DOCKER_BUILDKIT=0 docker build -q --network host --build-arg "BASE=$(base_ref)" \
    -t "$stage" -f "${HERE}/node/Dockerfile" "$ctx" >/dev/null
  # Stage 2, as `kind build node-image` does: start containerd in a container of the stage image,
  # import the preloaded images (pinned, not unpacked), commit.
  preload="$(build_preload "$kube")"
  local cid
  cid="$(docker run -d --privileged --entrypoint=sleep -v "${preload}:/preload.tar:ro" "$stage" infinity)"
  docker exec "$cid" bash -c '
    set -e
    nohup containerd >/tmp/containerd.log 2>&1 &
    for i in $(seq 1 30); do [ -S /run/containerd/containerd.sock ] && ctr version >/dev/null 2>&1 && break; sleep 1; done
    ctr --namespace=k8s.io images import --label=io.cri-containerd.pinned=pinned --all-platforms --no-unpack --digests /preload.tar >/dev/null
    ctr --namespace=k8s.io images list -q | grep -v "^sha256:" | sort
    pkill containerd; for i in $(seq 1 30); do pgrep containerd >/dev/null || break; sleep 1; done
    rm -f /tmp/containerd.log' >&2 \
    || { docker rm -f -v "$cid" >/dev/null 2>&1; die "importing the preloaded images into the node image failed"; }
  docker commit \
    --change 'ENTRYPOINT [ "/usr/local/bin/entrypoint", "/sbin/init" ]' \
    --change 'CMD []' \
    --change "LABEL ${LABEL}=$(node_key)" \
    "$cid" "$ref" >/dev/null
  docker rm -f -v "$cid" >/dev/null
  docker rmi "$stage" >/dev/null 2>&1 || true
  # Only the node image is kept: the archive and the context are rebuilt from cached binaries.
  rm -rf "$preload" "$ctx"
}

# ------------------------------------------------------------------------------------------- main
ref_of() {
  case "$1" in
    base) base_ref ;; python) python_ref ;; liqosec) liqosec_ref ;; liqo-agent) liqo_agent_ref ;;
    prometheus) prometheus_ref ;; node) node_ref ;; *) die "unknown target: $1" ;;
  esac
}

build() {
  local t="$1" ref start=$SECONDS
  ref="$(ref_of "$t")"
  if present "$ref"; then
    [[ "$t" == liqosec ]] && docker tag "$ref" liqosec:e2e
    log "cached ${t}: ${ref}"
  else
    log "building ${t}: ${ref}"
    case "$t" in
      base) build_base ;; python) build_python ;; liqosec) build_liqosec ;; liqo-agent) build_liqo_agent ;;
      prometheus) build_prometheus ;; node) build_node ;;
    esac
    log "built ${t} in $((SECONDS - start)) s"
  fi
  echo "${t}=${ref}"
}

sizes() {
  docker images --filter "label=${LABEL}" --filter dangling=false --format '{{.Repository}}:{{.Tag}}\t{{.Size}}' | sort
}

# Remove the images an earlier key left behind (liqosec.local/* tags that are not current).
prune() {
  local keep=() ref
  for t in base python liqosec liqo-agent prometheus node; do keep+=("$(ref_of "$t")"); done
  docker images --format '{{.Repository}}:{{.Tag}}' | grep "^${REPO}/" | while read -r ref; do
    # Liqo's component images (liqo-<component>) are hack/liqo.sh's, keyed there: not ours to judge.
    [[ "$ref" == "${REPO}/liqo-"* && "$ref" != "${REPO}/liqo-agent:"* ]] && continue
    [[ " ${keep[*]} " == *" ${ref} "* ]] || { log "removing ${ref}"; docker rmi "$ref" >/dev/null || true; }
  done
  docker image prune -f --filter "label=${LABEL}" >/dev/null
  local f
  for f in "${WORK}"/preload-*.tar "${WORK}"/debian-*.tar; do
    [[ -e "$f" ]] || continue
    case "$f" in
      */preload-"$(node_key)".tar | */debian-"${DEBIAN_SUITE}-$(base_key)".tar) ;;
      *) log "removing ${f}"; rm -f "$f" ;;
    esac
  done
}

main() {
  [[ $# -gt 0 ]] || die "usage: hack/images/build.sh [--print] TARGET... | sizes (targets: base python liqosec liqo-agent prometheus node all)"
  case "$1" in
    sizes) sizes; return ;;
    prune) prune; return ;;
    tool)
      case "${2:-}" in
        kind) kind_binary ;;
        kubectl) echo "$(kube_binaries)/kubectl" ;;
        promtool) promtool_binary ;;
        *) die "usage: hack/images/build.sh tool kind|kubectl|promtool" ;;
      esac
      return ;;
    --print)
      shift; local ref rc=0
      [[ "${1:-}" == all ]] && set -- base python liqosec liqo-agent prometheus node
      for t in "$@"; do ref="$(ref_of "$t")"; echo "${t}=${ref}"; present "$ref" || rc=3; done
      return "$rc"
      return ;;
  esac
  mkdir -p "$WORK" "$BIN_DIR"
  timeout 20 docker info >/dev/null 2>&1 || die "no Docker engine answers: run hack/docker.sh ensure"
  local targets=()
  for t in "$@"; do
    if [[ "$t" == all ]]; then targets+=(base python liqosec liqo-agent prometheus node); else targets+=("$t"); fi
  done
  for t in "${targets[@]}"; do build "$t"; done
}

main "$@"
