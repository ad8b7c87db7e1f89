#!/usr/bin/env bash
# kind clusters on the node image built here (hack/images/build.sh node), with a CNI of our own.
#
#   hack/kind.sh tools                      build (cached) and print KIND=, KUBECTL=, HELM= paths
#   hack/kind.sh create NAME KUBECONFIG CONFIG
#                                           create cluster NAME from kind config CONFIG, which must say
#                                           `disableDefaultCNI: true`; then wire pod networking and
#                                           wait for every node Ready and CoreDNS (bounded)
#   hack/kind.sh network NAME KUBECONFIG    (re)write the CNI config and routes on every node
#   hack/kind.sh load NAME IMAGE...         kind load docker-image into every node
#   hack/kind.sh masquerade NAME POD_SUBNET masquerade what pods send outside POD_SUBNET (as kindnetd
#                                           does): a pod that talks to another cluster's nodes gets
#                                           its replies (two clusters on one Docker network)
#   hack/kind.sh delete NAME                delete the cluster (idempotent)
#
# Pod networking without kindnetd: on each node, the CNI ptp plugin with host-local addresses from
# the node's spec.podCIDR (so a pod's traffic is routed through the node's own network namespace,
# where Liqo's agent programs nftables), plus a route per other node's podCIDR via its address on
# the kind Docker network. Nothing leaves the Docker network: no masquerade.
# Env: LIQOSEC_KIND_IMAGE overrides the node image (e.g. an upstream kindest/node on a laptop);
# LIQOSEC_KIND_ATTEMPTS (2) is how many times create tries `kind create cluster`, printing kind's
# lines and each node's kubelet, containers and errors after a failure; LIQOSEC_KIND_RETAIN=1 keeps
# the nodes of the last failed attempt.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WAIT_S="${LIQOSEC_KIND_WAIT:-300}"

log() { echo "kind: $*" >&2; }
die() { log "error: $*"; exit 1; }

tools() {
  local kind kubectl helm
  kind="$("${HERE}/images/build.sh" tool kind)"
  kubectl="$("${HERE}/images/build.sh" tool kubectl)"
  helm="$("${HERE}/build-helm.sh" 2>/dev/null | tail -1)"
  echo "KIND=${kind}"
  echo "KUBECTL=${kubectl}"
  echo "HELM=${helm}"
}

KIND="" KUBECTL=""
load_tools() {
  local line
  while IFS= read -r line; do
    case "$line" in KIND=*) KIND="${line#KIND=}" ;; KUBECTL=*) KUBECTL="${line#KUBECTL=}" ;; esac
  done < <(tools)
  [[ -x "$KIND" && -x "$KUBECTL" ]] || die "kind or kubectl could not be built"
}

nodes_of() { "$KIND" get nodes --name "$1"; }

network() {
  local name="$1" kubeconfig="$2" node cidr ip other ocidr oip
  local -A cidrs=() ips=()
  for node in $(nodes_of "$name"); do
    local deadline=$((SECONDS + 120))
    until cidr="$("$KUBECTL" --kubeconfig "$kubeconfig" get node "$node" -o jsonpath='{.spec.podCIDR}' 2>/dev/null)" \
      && [[ -n "$cidr" ]]; do
      ((SECONDS < deadline)) || die "node ${node} got no spec.podCIDR within 120 s"
      sleep 2
    done
    ip="$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$node")"
    [[ -n "$ip" ]] || die "node ${node} has no IPv4 address on the kind network"
    cidrs[$node]="$cidr"; ips[$node]="$ip"
  done
  for node in "${!cidrs[@]}"; do
    docker exec -i "$node" sh -c 'mkdir -p /etc/cni/net.d && cat > /etc/cni/net.d/10-liqosec-ptp.conflist.tmp && mv /etc/cni/net.d/10-liqosec-ptp.conflist.tmp /etc/cni/net.d/10-liqosec-ptp.conflist' <<EOF
{
  "cniVersion": "0.4.0",
  "name": "liqosec-ptp",
  "plugins": [
    {
      "type": "ptp",
      "ipMasq": false,
      "mtu": 1500,
      "ipam": {
        "type": "host-local",
        "dataDir": "/run/cni-ipam-state",
        "routes": [{"dst": "0.0.0.0/0"}],
        "ranges": [[{"subnet": "${cidrs[$node]}"}]]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
    for other in "${!cidrs[@]}"; do
      [[ "$other" == "$node" ]] && continue
      ocidr="${cidrs[$other]}"; oip="${ips[$other]}"
      docker exec "$node" ip route replace "$ocidr" via "$oip" \
        || die "cannot add the route ${ocidr} via ${oip} on ${node}"
    done
    log "${node}: pods ${cidrs[$node]}, address ${ips[$node]}"
  done
}

# A table of its own, replaced whole, at srcnat + 10: a NAT chain of Liqo's fabric at srcnat decides first.
masquerade() {
  local name="$1" subnet="$2" node
  for node in $(nodes_of "$name"); do
    docker exec -i "$node" nft -f - <<EOF || die "cannot write the masquerade table on ${node}"
table ip liqosec-kind-masq
delete table ip liqosec-kind-masq
table ip liqosec-kind-masq {
  chain postrouting {
    type nat hook postrouting priority srcnat + 10; policy accept;
    ip saddr ${subnet} ip daddr != ${subnet} masquerade
  }
}
EOF
  done
  log "${name}: pods in ${subnet} masqueraded outside it"
}

wait_ready() {
  local kubeconfig="$1"
  "$KUBECTL" --kubeconfig "$kubeconfig" wait --for=condition=Ready nodes --all --timeout="${WAIT_S}s" >&2 \
    || die "nodes not Ready within ${WAIT_S} s"
  "$KUBECTL" --kubeconfig "$kubeconfig" -n kube-system rollout status deployment/coredns --timeout="${WAIT_S}s" >&2 \
    || die "CoreDNS not available within ${WAIT_S} s"
}

# kind's output without Go's stack traces (a function line, then its file line indented by a tab):
# kubeadm's own lines, which name the component that was not healthy, are what is left.
without_stacks() {
  awk '/^\t/ { held = ""; next } { if (held != "") print held; held = $0 } END { if (held != "") print held }'
}

# What a failed node says about itself, short: enough to tell a slow machine from a kubelet that
# never ran (an inotify or cgroup limit) or a static pod that crashed.
diagnose() {
  local name="$1" node
  log "inotify instances: $(find /proc/[0-9]*/fd -lname 'anon_inode:inotify' 2>/dev/null | wc -l) in use by all processes, limit $(cat /proc/sys/fs/inotify/max_user_instances 2>/dev/null || echo '?') per user; load: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)"
  for node in $(docker ps -a --filter "label=io.x-k8s.kind.cluster=${name}" --format '{{.Names}}'); do
    log "--- ${node}: kubelet $(docker exec "$node" systemctl is-active kubelet 2>/dev/null || true), containerd $(docker exec "$node" systemctl is-active containerd 2>/dev/null || true)"
    docker exec "$node" crictl ps -a 2>&1 | cut -c1-160 | head -15 >&2 || true
    docker exec "$node" journalctl -u kubelet --no-pager -o cat 2>/dev/null | grep -E ' E[0-9]{4} |error|failed' | tail -12 | cut -c1-300 >&2 || true
  done
}

# kind's own limit for a node's kubelet and containerd: each node's systemd, containerd and kubelet
# take inotify instances of root's (shared by every node), and kind's documented fix is 512.
raise_inotify() {
  local key value
  for key in max_user_instances:512 max_user_watches:524288; do
    value="$(cat "/proc/sys/fs/inotify/${key%%:*}" 2>/dev/null || echo 0)"
    if ((value < ${key##*:})) && [[ $(id -u) -eq 0 ]]; then
      echo "${key##*:}" > "/proc/sys/fs/inotify/${key%%:*}" 2>/dev/null \
        && log "fs.inotify.${key%%:*} ${value} -> ${key##*:} (kind's known limit)" || true
    fi
  done
}

create() {
  local name="$1" kubeconfig="$2" config="$3" image start=$SECONDS attempt out
  local attempts="${LIQOSEC_KIND_ATTEMPTS:-2}"
  grep -Eq '^\s*disableDefaultCNI:\s*true' "$config" || die "${config} must set networking.disableDefaultCNI: true"
  "${HERE}/docker.sh" ensure
  load_tools
  if [[ -n "${LIQOSEC_KIND_IMAGE:-}" ]]; then
    image="$LIQOSEC_KIND_IMAGE"
  else
    image="$("${HERE}/images/build.sh" node | sed -n 's/^node=//p')"
  fi
  [[ -n "$image" ]] || die "no node image"
  # kind bind-mounts /lib/modules read-only; some VMs have none (nothing is read from it here).
  [[ -d /lib/modules ]] || mkdir -p /lib/modules
  raise_inotify
  out="$(mktemp)"
  for ((attempt = 1; ; attempt++)); do
    "$KIND" delete cluster --name "$name" >/dev/null 2>&1 || true
    log "creating cluster ${name} from ${image} (attempt ${attempt} of ${attempts})"
    # --retain: a failed node stays until diagnose has read it.
    if "$KIND" create cluster --name "$name" --image "$image" --config "$config" --kubeconfig "$kubeconfig" \
      --retain >"$out" 2>&1; then
      break
    fi
    without_stacks <"$out" | grep -v '^\s*$' | tail -25 >&2
    diagnose "$name"
    if ((attempt >= attempts)); then
      rm -f "$out"
      [[ "${LIQOSEC_KIND_RETAIN:-}" == 1 ]] || "$KIND" delete cluster --name "$name" >/dev/null 2>&1 || true
      die "kind create cluster ${name} failed ${attempts} times (kind's lines and the nodes' state above)"
    fi
    log "kind create cluster ${name}: attempt ${attempt} of ${attempts} failed (above); deleting it and trying again"
  done
  rm -f "$out"
  network "$name" "$kubeconfig"
  wait_ready "$kubeconfig"
  log "cluster ${name} ready in $((SECONDS - start)) s"
}

case "${1:-}" in
  tools) tools ;;
  create) [[ $# -eq 4 ]] || die "usage: hack/kind.sh create NAME KUBECONFIG CONFIG"; create "$2" "$3" "$4" ;;
  network) [[ $# -eq 3 ]] || die "usage: hack/kind.sh network NAME KUBECONFIG"; load_tools; network "$2" "$3" ;;
  masquerade)
    [[ $# -eq 3 ]] || die "usage: hack/kind.sh masquerade NAME POD_SUBNET"; load_tools; masquerade "$2" "$3" ;;
  load)
    [[ $# -ge 3 ]] || die "usage: hack/kind.sh load NAME IMAGE..."
    name="$2"; shift 2; load_tools
    for image in "$@"; do "$KIND" load docker-image "$image" --name "$name" >&2 || die "kind load ${image} failed"; done ;;
  delete)
    [[ $# -eq 2 ]] || die "usage: hack/kind.sh delete NAME"
    kind="$("${HERE}/images/build.sh" tool kind)"
    "$kind" delete cluster --name "$2" >&2 ;;
  *) die "usage: hack/kind.sh tools | create NAME KUBECONFIG CONFIG | network NAME KUBECONFIG | load NAME IMAGE... | masquerade NAME POD_SUBNET | delete NAME" ;;
esac
