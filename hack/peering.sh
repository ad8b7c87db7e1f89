#!/usr/bin/env bash
# Kind clusters peered by Liqo itself: Liqo's commands and images built here from the pinned module
# (hack/liqo.sh), installed with its liqoctl from the module's chart, peered with `liqoctl peer`, a
# namespace offloaded with `liqoctl offload namespace`.
#
#   hack/peering.sh up [OUT]     the steps build, image, cluster, install, peer, offload, in order
#   hack/peering.sh step NAME [OUT]  run one step again (after fixing what made it fail); `step unpeer`
#                                then `step peer` unpeer and peer again
#   hack/peering.sh logs [OUT]   save Liqo's pods' logs and objects of every cluster under OUT/logs
#   hack/peering.sh down [OUT]   delete the clusters (idempotent)
#
# OUT (default ${LIQOSEC_PEERING_OUT:-/tmp/liqosec-peering}) holds the kubeconfigs
# (kubeconfig-consumer, kubeconfig-provider, kubeconfig-provider2, and kubeconfig-peering-user and
# kubeconfig-peering-user2: each provider's peering user the consumer peers with), the kind configs,
# `timings` (seconds per step) and, after a failure, logs/. A failure names its step and saves the
# logs first.
#
# The kernel of this project's machines has no WireGuard and no Geneve device type: the gateways use
# Liqo's userspace WireGuard (wireguard-go over /dev/net/tun); the fabric's Geneve tunnels between
# nodes and gateways cannot come up, so pod traffic does not cross; Liqo's control plane does not need it
# (docs/liqo-real.md).
# A third cluster, liqosec-provider2 (one node), is a second provider of the consumer: liqo-demo is
# offloaded with a ClusterSelector that picks liqosec-provider only, so Liqo keeps a
# ClusterNotSelected condition for liqosec-provider2 (the case liqosec must not count as offloaded).
# `step peer` and `step unpeer` act on liqosec-provider alone; liqosec-provider2 stays peered.
# Env: LIQOSEC_PEERING_WORKERS (kind workers of the consumer and the provider, default 1).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="${2:-${LIQOSEC_PEERING_OUT:-/tmp/liqosec-peering}}"
WORKERS="${LIQOSEC_PEERING_WORKERS:-1}"
ROLES=(consumer provider provider2)
PROVIDERS=(provider provider2)
PEER_WITH=(provider)  # `step peer`; `up` peers with every provider
# Different pod and service CIDRs (as Liqo's own kind e2e), none inside Liqo's defaults for its
# internal (10.80.0.0/16) and external (10.70.0.0/16) CIDRs, none the e2e suite's cluster's.
declare -A POD_SUBNET=([consumer]=10.10.0.0/16 [provider]=10.20.0.0/16 [provider2]=10.30.0.0/16)
declare -A SERVICE_SUBNET=([consumer]=10.110.0.0/16 [provider]=10.120.0.0/16 [provider2]=10.130.0.0/16)
# provider2 is one node (kind lets pods run on a lone control plane): the ClusterSelector case needs
# it peered, not big.
declare -A ROLE_WORKERS=([consumer]="$WORKERS" [provider]="$WORKERS" [provider2]=0)
OFFLOADED_NAMESPACE=liqo-demo
WAIT_S="${LIQOSEC_PEERING_WAIT:-600}"

log() { echo "peering: $*" >&2; }
die() { log "error: $*"; exit 1; }

cluster_name() { echo "liqosec-$1"; }
kubeconfig() { echo "${OUT}/kubeconfig-$1"; }

KIND="" KUBECTL="" LIQOCTL="" LIQO_VERSION=""
load_tools() {
  local line
  while IFS= read -r line; do
    case "$line" in KIND=*) KIND="${line#KIND=}" ;; KUBECTL=*) KUBECTL="${line#KUBECTL=}" ;; esac
  done < <("${HERE}/kind.sh" tools)
  [[ -x "$KIND" && -x "$KUBECTL" ]] || die "kind or kubectl could not be built"
  LIQO_VERSION="$("${HERE}/liqo.sh" version)"
  LIQOCTL="$("${HERE}/liqo.sh" commands --print-path 2>/dev/null)/liqoctl" || LIQOCTL=""
}

kc() { local role="$1"; shift; "$KUBECTL" --kubeconfig "$(kubeconfig "$role")" "$@"; }
liqoctl() { local role="$1"; shift; "$LIQOCTL" --kubeconfig "$(kubeconfig "$role")" "$@"; }

# ------------------------------------------------------------------------------------------- steps
step_build() {
  "${HERE}/liqo.sh" commands >/dev/null
}

step_image() {
  "${HERE}/liqo.sh" images >"${OUT}/images"
}

kind_config() {
  local role="$1" i
  cat <<EOF
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
networking:
  podSubnet: "${POD_SUBNET[$role]}"
  serviceSubnet: "${SERVICE_SUBNET[$role]}"
  disableDefaultCNI: true
nodes:
  - role: control-plane
EOF
  for ((i = 0; i < ROLE_WORKERS[$role]; i++)); do echo "  - role: worker"; done
}

step_cluster() {
  local role name images=()
  mapfile -t images < <(cut -d= -f2 "${OUT}/images")
  ((${#images[@]} > 0)) || die "no Liqo images listed in ${OUT}/images"
  for role in "${ROLES[@]}"; do
    name="$(cluster_name "$role")"
    kind_config "$role" >"${OUT}/kind-${role}.yaml"
    "${HERE}/kind.sh" create "$name" "$(kubeconfig "$role")" "${OUT}/kind-${role}.yaml"
    "${HERE}/kind.sh" masquerade "$name" "${POD_SUBNET[$role]}"
    # One archive for every image: kind load saves them together and imports once per node.
    "$KIND" load docker-image --name "$name" "${images[@]}" >&2
  done
}

# metricAgent.enabled=false: Liqo's metric agent serves the aggregated API metrics.liqo.io, and
# answers its discovery (`/apis`) as text/plain (pkg/remotemetrics/http.go, apiGroupList sets no
# Content-Type); Kubernetes 1.33's aggregated discovery then marks metrics.liqo.io/v1beta1 Stale and
# the namespace controller refuses to finish any namespace deletion ("Discovery failed ... stale
# GroupVersion discovery"), so the namespaces `liqoctl unpeer` deletes hang in Terminating and the
# peering cannot be made again (docs/liqo-real.md). The agent only feeds remote pod metrics.
step_install() {
  local role chart
  chart="$("${HERE}/liqo.sh" chart)"
  for role in "${ROLES[@]}"; do
    liqoctl "$role" install kind --cluster-id "$(cluster_name "$role")" --local-chart-path "$chart" \
      --version "$LIQO_VERSION" --set networking.gatewayTemplates.wireguard.implementation=userspace \
      --set metricAgent.enabled=false \
      --disable-telemetry --timeout "${WAIT_S}s" >&2
    kc "$role" -n liqo wait --for=condition=Ready pods --all --timeout="${WAIT_S}s" >&2
  done
}

# As Liqo's own e2e (test/e2e/pipeline/installer/liqo/peer.sh): the consumer peers with a peering user
# each provider's admin generated (least privilege), not with the provider's admin kubeconfig.
peering_user() { echo "${OUT}/kubeconfig-peering-user${1#provider}"; }

peer_with() {
  local provider="$1" node deadline=$((SECONDS + WAIT_S))
  if [[ ! -s "$(peering_user "$provider")" ]]; then
    # An earlier one (its CSR stays) makes `generate` fail: delete it first, as Liqo's unpeer.sh does.
    liqoctl "$provider" delete peering-user --consumer-cluster-id "$(cluster_name consumer)" >&2 || true
    liqoctl "$provider" generate peering-user --consumer-cluster-id "$(cluster_name consumer)" \
      >"$(peering_user "$provider").tmp"
    mv "$(peering_user "$provider").tmp" "$(peering_user "$provider")"
  fi
  liqoctl consumer peer --remote-kubeconfig "$(peering_user "$provider")" --gw-server-service-type NodePort \
    --timeout "${WAIT_S}s" >&2
  # The virtual node is created after liqoctl returns: `kubectl wait` fails on a missing object.
  node="$(cluster_name "$provider")"
  until kc consumer get node "$node" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "no virtual node ${node} on the consumer within ${WAIT_S} s"
    sleep 2
  done
  kc consumer wait --for=condition=Ready "node/${node}" --timeout="${WAIT_S}s" >&2
}

# `up` peers with every provider; `step peer` (after `step unpeer`) with liqosec-provider again, once
# Liqo has finished tearing the last peering down (settled, below).
step_peer() {
  local provider
  settled
  for provider in "${PEER_WITH[@]}"; do peer_with "$provider"; done
}

# What peering again depends on: authentication, offloading, the replicator's Secrets, namespaces.
SETTLE_KINDS=(
  tenants.authentication.liqo.io identities.authentication.liqo.io resourceslices.authentication.liqo.io
  renews.authentication.liqo.io virtualnodes.offloading.liqo.io namespacemaps.offloading.liqo.io
  secrets namespaces
)

# Objects of SETTLE_KINDS being deleted on the consumer and the provider, a line each: role kind
# namespace/name finalizers.
terminating() {
  local role kinds
  kinds="$(IFS=,; echo "${SETTLE_KINDS[*]}")"
  for role in consumer provider; do
    kc "$role" get "$kinds" -A -o jsonpath='{range .items[?(@.metadata.deletionTimestamp)]}{.kind} {.metadata.namespace}/{.metadata.name} {.metadata.finalizers}{"\n"}{end}' \
      | sed "s/^/${role} /"
  done
}

# Liqo v1.2.0's `liqoctl unpeer` races with its own CRD replicator: it deletes the consumer's
# ResourceSlices, its control-plane Identity and at once the provider's Tenant
# (pkg/liqoctl/unpeer/handler.go, pkg/liqoctl/unauthenticate/handler.go: no wait for what follows),
# while the replicator needs the Tenant's RBAC to delete its copies on the provider of what it
# replicates there (the Identity's Renew, the NamespaceMap, ResourceSlices; internal/crdReplicator/
# reflection/handler.go, deleteRemoteObject). When the RBAC goes first, those deletes are forbidden
# forever (the replicator's cache of the provider's objects cannot be refreshed either), the
# consumer's objects and control-plane Secret keep their finalizers, peering again never replicates
# the new ResourceSlice and deleting the tenant namespace hangs (docs/liqo-real.md). Once such an
# object has been deleting for RELEASE_AFTER_S, with the replicator's finalizer alone, and the
# provider's Tenant is gone, this does what the replicator cannot: deletes the provider's copy,
# releases the consumer's object and restarts the replicator (fresh caches), which then releases its
# Secret itself. It says so on a "warning:" line, which the peering suite reports as a pytest warning.
RELEASE_AFTER_S=30
REPLICATOR_FINALIZER='["crdreplicator.liqo.io/resource"]'
declare -A REPLICATED=(
  [Renew]=renews.authentication.liqo.io
  [ResourceSlice]=resourceslices.authentication.liqo.io
  [NamespaceMap]=namespacemaps.offloading.liqo.io
)

release_stuck_replicas() {
  local consumer provider kinds kind ns name since finalizers released=0
  consumer="$(cluster_name consumer)" provider="$(cluster_name provider)"
  kinds="$(IFS=,; echo "${REPLICATED[*]}")"
  while read -r kind ns name since finalizers; do
    [[ -n "$name" && "$finalizers" == "$REPLICATOR_FINALIZER" && -n "${REPLICATED[$kind]:-}" ]] || continue
    (($(date +%s) - $(date -d "$since" +%s) >= RELEASE_AFTER_S)) || continue
    if kc provider get tenants.authentication.liqo.io -A -o jsonpath='{.items[*].spec.clusterID}' | grep -qw "$consumer"; then
      return 0  # the Tenant and its RBAC are there: the replicator can finish on its own
    fi
    log "warning: Liqo's CRD replicator cannot delete the provider's copy of ${kind} ${ns}/${name} (the provider's Tenant went first): deleting it, releasing the ${kind}, restarting the replicator"
    kc provider delete "${REPLICATED[$kind]}" -A -l "liqo.io/originID=${consumer}" \
      --field-selector "metadata.name=${name}" --ignore-not-found >&2
    kc consumer -n "$ns" patch "${REPLICATED[$kind]}" "$name" --type=merge \
      -p '{"metadata":{"finalizers":null}}' >&2 || true  # gone already: released meanwhile
    released=1
  done < <(kc consumer get "$kinds" -A -l "liqo.io/remote-cluster-id=${provider}" \
    -o jsonpath='{range .items[?(@.metadata.deletionTimestamp)]}{.kind} {.metadata.namespace} {.metadata.name} {.metadata.deletionTimestamp} {.metadata.finalizers}{"\n"}{end}')
  if ((released)); then
    kc consumer -n liqo rollout restart deployment/liqo-crd-replicator >&2
    kc consumer -n liqo rollout status deployment/liqo-crd-replicator --timeout="${WAIT_S}s" >&2
  fi
}

# Wait until nothing peering again depends on is still being deleted (objects held by finalizers, which
# run after `liqoctl unpeer` returned). Liqo v1.2.0 does not survive a peering made again before they
# are gone: the CRD replicator holds the consumer's control-plane kubeconfig Secret (finalizer
# crdreplicator.liqo.io/operator) until it has stopped replicating to the provider, and it cannot stop
# while any Renew for that provider exists (internal/crdReplicator/crdReplicator-operator.go,
# stopReflector); a new peering's Identity makes a new Renew of the same name, so the old Secret is
# never released, the new peering's ResourceSlice is never replicated and `liqoctl peer` waits out its
# timeout (docs/liqo-real.md).
settled() {
  local start=$SECONDS left line
  while :; do
    left="$(terminating)" || die "could not list the objects Liqo is deleting"
    [[ -n "$left" ]] || return 0
    release_stuck_replicas
    if ((SECONDS - start >= WAIT_S)); then
      while IFS= read -r line; do log "state: still being deleted: ${line}"; done <<<"$left"
      die "Liqo has not finished deleting the last peering's objects within ${WAIT_S} s"
    fi
    sleep 2
  done
}

# Not part of `up`: the lifecycle the peering suite exercises (`step unpeer`, then `step peer` again).
# LIQOSEC_UNPEER_FLAGS: more flags for liqoctl unpeer. With --delete-namespaces (the tenant namespaces
# too) it acts on the provider as its admin: Liqo's peering user may not delete the provider's tenant
# namespace ("User liqo-peer-user-... cannot delete resource namespaces").
step_unpeer() {
  local remote
  remote="$(peering_user provider)"
  [[ " ${LIQOSEC_UNPEER_FLAGS:-} " == *" --delete-namespaces "* ]] && remote="$(kubeconfig provider)"
  # With --delete-namespaces liqoctl itself waits for the tenant namespaces, which a stuck replica holds:
  # release it meanwhile (release_stuck_replicas, above); a release under way is finished, not cut.
  local done_flag="${OUT}/.unpeer-done" releaser rc=0
  rm -f "$done_flag"
  (until [[ -e "$done_flag" ]]; do release_stuck_replicas || true; sleep 2; done) &
  releaser=$!
  # shellcheck disable=SC2086
  liqoctl consumer unpeer --remote-kubeconfig "$remote" --skip-confirm --timeout "${WAIT_S}s" \
    ${LIQOSEC_UNPEER_FLAGS:-} >&2 || rc=$?
  touch "$done_flag"
  wait "$releaser" || true
  rm -f "$done_flag"
  ((rc == 0)) || return "$rc"
  settled  # liqoctl returns before Liqo's finalizers have run (settled, above)
}

step_offload() {
  kc consumer create namespace "$OFFLOADED_NAMESPACE" --dry-run=client -o yaml | kc consumer apply -f - >&2
  liqoctl consumer offload namespace "$OFFLOADED_NAMESPACE" --pod-offloading-strategy LocalAndRemote \
    --namespace-mapping-strategy DefaultName --selector "liqo.io/remote-cluster-id=$(cluster_name provider)" \
    --timeout "${WAIT_S}s" >&2
}

# step NAME: run step_NAME in a subshell of its own (so `set -e` holds inside it), time it; on a
# failure save the logs and name the step.
step() {
  local name="$1" start=$SECONDS pid
  log "${name}: start"
  (step_"$name") &
  pid=$!
  if ! wait "$pid"; then
    save_logs || true
    die "step ${name} failed after $((SECONDS - start)) s; Liqo's pods' logs and objects are in ${OUT}/logs"
  fi
  echo "${name} $((SECONDS - start))" >>"${OUT}/timings"
  log "${name}: done in $((SECONDS - start)) s"
}

up() {
  mkdir -p "$OUT"
  : >"${OUT}/timings"
  rm -f "$(peering_user provider)" "$(peering_user provider2)"  # new providers: new peering users
  PEER_WITH=("${PROVIDERS[@]}")
  load_tools
  step build
  load_tools
  step image
  step cluster
  step install
  step peer
  step offload
  log "up: $(tr '\n' ' ' <"${OUT}/timings")"
}

# -------------------------------------------------------------------------------------------- logs
# Liqo's objects, read back as Liqo made them.
LIQO_KINDS=(
  foreignclusters.core.liqo.io virtualnodes.offloading.liqo.io namespaceoffloadings.offloading.liqo.io
  namespacemaps.offloading.liqo.io configurations.networking.liqo.io networks.ipam.liqo.io ips.ipam.liqo.io
  gatewayservers.networking.liqo.io gatewayclients.networking.liqo.io connections.networking.liqo.io
  firewallconfigurations.networking.liqo.io routeconfigurations.networking.liqo.io
  genevetunnels.networking.liqo.io internalnodes.networking.liqo.io internalfabrics.networking.liqo.io
  tenants.authentication.liqo.io identities.authentication.liqo.io resourceslices.authentication.liqo.io
)

save_cluster_logs() {
  local role="$1" dir="$2" ns pod restarts kind
  mkdir -p "$dir"
  kc "$role" get nodes -o wide >"${dir}/nodes.txt" 2>&1 || true
  kc "$role" get pods -A -o wide >"${dir}/pods.txt" 2>&1 || true
  kc "$role" get events -A --sort-by=.lastTimestamp >"${dir}/events.txt" 2>&1 || true
  for kind in "${LIQO_KINDS[@]}"; do
    kc "$role" get "$kind" -A -o yaml >"${dir}/${kind%%.*}.yaml" 2>&1 || true
  done
  for ns in $(kc "$role" get namespaces -o name 2>/dev/null | sed 's|^namespace/||' \
    | grep -E "^(liqo|liqo-tenant-.*|${OFFLOADED_NAMESPACE}.*)$"); do
    while read -r pod restarts; do
      [[ -n "$pod" ]] || continue
      kc "$role" -n "$ns" logs "$pod" --all-containers --prefix --timestamps >"${dir}/${ns}_${pod}.log" 2>&1 || true
      [[ "${restarts:-0}" =~ ^[1-9] ]] && kc "$role" -n "$ns" logs "$pod" --all-containers --prefix --timestamps \
        --previous >"${dir}/${ns}_${pod}.previous.log" 2>&1 || true
    done < <(kc "$role" -n "$ns" get pods --no-headers \
      -o custom-columns=NAME:.metadata.name,RESTARTS:.status.containerStatuses[*].restartCount 2>/dev/null \
      | awk '{ n = 0; split($2, r, ","); for (i in r) n += r[i]; print $1, n }')
  done
}

save_logs() {
  local role
  [[ -n "$KUBECTL" ]] || load_tools
  rm -rf "${OUT}/logs"  # this failure's logs only, not an earlier run's beside them
  for role in "${ROLES[@]}"; do
    [[ -f "$(kubeconfig "$role")" ]] || continue
    save_cluster_logs "$role" "${OUT}/logs/${role}"
  done
  log "logs saved in ${OUT}/logs"
}

down() {
  local role
  for role in "${ROLES[@]}"; do "${HERE}/kind.sh" delete "$(cluster_name "$role")"; done
}

case "${1:-}" in
  up) up ;;
  step)
    [[ -n "${2:-}" ]] && declare -F "step_${2}" >/dev/null || die "usage: hack/peering.sh step build|image|cluster|install|peer|offload|unpeer [OUT]"
    OUT="${3:-${LIQOSEC_PEERING_OUT:-/tmp/liqosec-peering}}"; load_tools; step "$2" ;;
  logs) save_logs ;;
  down) down ;;
  *) die "usage: hack/peering.sh up|logs|down [OUT] | step NAME [OUT]" ;;
esac
