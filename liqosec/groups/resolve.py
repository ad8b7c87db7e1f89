"""Resolve the address groups of one peering from a view of the cluster.

Pure: the same view gives the same groups. Where each fact lives in Liqo is
SEMANTICS.md section 1; each lookup below names its label and fallback.
Pods contribute their IPv4 addresses only while they hold them: no IP,
`hostNetwork`, or a finished phase contributes nothing. IPv6 addresses are
set aside and counted, not dropped silently.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from liqosec.api.peeringconnectivity import Group
from liqosec.firewall.addresses import EMPTY, AddressSet, ip_to_int
from liqosec.groups.view import ClusterView, Obj, labels, meta

TENANT_PREFIX = "liqo-tenant-"
REMOTE_CLUSTER_ID = "liqo.io/remote-cluster-id"
ORIGIN = "offloading.liqo.io/origin"
SHADOW_POD = "liqo.io/shadowPod"
NODE_TYPE = "liqo.io/type"
VIRTUAL_NODE = "virtual-node"
NETWORK_TYPE = "ipam.liqo.io/network-type"
CIDR_TYPE = "configuration.liqo.io/cidr-type"
SERVICE_NAME = "kubernetes.io/service-name"
OFFLOADING_NAME = "offloading"
FINISHED_PHASES = frozenset({"Succeeded", "Failed"})
PRIVATE_SUBNETS = AddressSet.of(["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"])

# Internal terms the security modes use; not selectable in a spec.
OFFLOADED_SERVICE_BACKENDS = "@offloaded-service-backends"
REFLECTED_SERVICE_BACKENDS = "@reflected-service-backends"
OUTSIDE_POD_CIDRS = "@outside-pod-cidrs"


def namespace_term(namespace: str) -> str:
    return f"namespace:{namespace}"


def peer_of_namespace(view: ClusterView, namespace: str) -> str | None:
    """The peer a tenant namespace belongs to: its label first, then its name."""
    ns = view.get("Namespace", namespace)
    if ns is not None:
        label = labels(ns).get(REMOTE_CLUSTER_ID)
        if label:
            return str(label)
    if namespace.startswith(TENANT_PREFIX) and len(namespace) > len(TENANT_PREFIX):
        return namespace[len(TENANT_PREFIX) :]
    return None


def is_tenant_namespace(view: ClusterView, namespace: str) -> bool:
    return peer_of_namespace(view, namespace) is not None


def pod_addresses(pod: Obj) -> tuple[list[str], int]:
    """IPv4 addresses a pod holds now, and how many IPv6 ones were set aside."""
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    if spec.get("hostNetwork") or status.get("phase") in FINISHED_PHASES:
        return [], 0
    ips = [str(p.get("ip")) for p in status.get("podIPs") or () if p.get("ip")]
    if not ips and status.get("podIP"):
        ips = [str(status["podIP"])]
    v4 = [ip for ip in ips if ":" not in ip]
    return v4, len(ips) - len(v4)


@dataclass
class _Collector:
    """Accumulates addresses while resolving; frozen into ResolvedGroups at the end."""

    ipv6_skipped: int = 0

    def pods(self, pods: Iterable[Obj]) -> AddressSet:
        values: list[tuple[int, int]] = []
        for pod in pods:
            v4, v6 = pod_addresses(pod)
            self.ipv6_skipped += v6
            values.extend((ip_to_int(ip), ip_to_int(ip)) for ip in v4)
        return AddressSet.from_intervals(values)

    def addresses(self, addrs: Iterable[str]) -> AddressSet:
        values = []
        for addr in addrs:
            if ":" in addr:
                self.ipv6_skipped += 1
            else:
                values.append(addr)
        return AddressSet.of(values)


@dataclass(frozen=True)
class ResolvedGroups:
    """The address sets of one peering, keyed by group value or internal term."""

    peer: str
    sets: Mapping[str, AddressSet] = field(default_factory=dict)
    ipv6_skipped: int = 0

    def get(self, term: str) -> AddressSet:
        return self.sets.get(term, EMPTY)

    @property
    def peer_space(self) -> AddressSet:
        """Addresses whose traffic this peering's policy governs (SEMANTICS.md section 3)."""
        out = EMPTY
        for group in (Group.REMOTE_CLUSTER, Group.OFFLOADED, Group.VC_REMOTE):
            out = out.union(self.get(group.value))
        return out

    def counts(self) -> dict[str, int]:
        # private-subnets is a constant; internal terms are not the user's groups.
        return {
            term: s.size()
            for term, s in sorted(self.sets.items())
            if not term.startswith("@") and term != Group.PRIVATE_SUBNETS.value
        }


def local_pod_cidr(view: ClusterView) -> AddressSet:
    cidrs = [
        str((n.get("spec") or {}).get("cidr"))
        for n in view.by_label("Network", NETWORK_TYPE, "pod-cidr")
        if (n.get("spec") or {}).get("cidr") and not is_tenant_namespace(view, str(meta(n).get("namespace") or ""))
    ]
    return AddressSet.of(c for c in cidrs if ":" not in c)


def remote_pod_cidr(view: ClusterView, tenant_namespace: str) -> AddressSet:
    """The peer's pod CIDRs as remapped here; never `.spec`, which is the peer's own view."""
    cidrs: list[str] = []
    for conf in view.list("Configuration", tenant_namespace):
        cidrs.extend(str(c) for c in ((((conf.get("status") or {}).get("remote") or {}).get("cidr") or {}).get("pod") or []))
    if not cidrs:
        for net in view.by_label("Network", CIDR_TYPE, "pod"):
            status_cidr = (net.get("status") or {}).get("cidr")
            if meta(net).get("namespace") == tenant_namespace and status_cidr:
                cidrs.append(str(status_cidr))
    return AddressSet.of(c for c in cidrs if ":" not in c)


def virtual_nodes(view: ClusterView, peer: str) -> frozenset[str]:
    names = {
        str(meta(n).get("name"))
        for n in view.by_label("Node", REMOTE_CLUSTER_ID, peer)
        if labels(n).get(NODE_TYPE) == VIRTUAL_NODE
    }
    names.add(peer)  # Liqo's older virtual nodes are named after the peer
    return frozenset(names)


def all_virtual_nodes(view: ClusterView) -> frozenset[str]:
    return frozenset(str(meta(n).get("name")) for n in view.by_label("Node", NODE_TYPE, VIRTUAL_NODE))


def offloaded_namespaces(view: ClusterView, peer: str) -> list[str]:
    """Namespaces whose NamespaceOffloading reports a remote namespace on `peer`."""
    out = []
    for nso in view.list("NamespaceOffloading"):
        if meta(nso).get("name") != OFFLOADING_NAME:
            continue
        conditions = (nso.get("status") or {}).get("remoteNamespacesConditions") or {}
        if peer in conditions:
            out.append(str(meta(nso).get("namespace")))
    return sorted(out)


def _slice_addresses(slices: Iterable[Obj]) -> list[str]:
    return [str(a) for s in slices for ep in s.get("endpoints") or () for a in ep.get("addresses") or ()]


def _offloaded_service_backends(view: ClusterView, namespaces: Iterable[str]) -> list[str]:
    out: list[str] = []
    for ns in namespaces:
        services = {str(meta(s).get("name")) for s in view.list("Service", ns)}
        slices = [s for s in view.list("EndpointSlice", ns) if labels(s).get(SERVICE_NAME) in services]
        out.extend(_slice_addresses(slices))
    return out


def resolve_groups(view: ClusterView, peer: str, tenant_namespace: str, *, namespaces: Iterable[str] = ()) -> ResolvedGroups:
    """Every group of peering `peer`, plus the namespace parties asked for."""
    c = _Collector()
    local = local_pod_cidr(view)
    remote = remote_pod_cidr(view, tenant_namespace)
    mine = virtual_nodes(view, peer)
    any_virtual = all_virtual_nodes(view) | mine
    shadows = [
        p for p in view.by_label("Pod", SHADOW_POD, "true") if (p.get("spec") or {}).get("nodeName") in mine
    ]
    offloaded_ns = offloaded_namespaces(view, peer)
    vc_local_pods = [
        p
        for ns in offloaded_ns
        for p in view.list("Pod", ns)
        if labels(p).get(SHADOW_POD) != "true" and (p.get("spec") or {}).get("nodeName") not in any_virtual
    ]
    sets: dict[str, AddressSet] = {
        Group.LOCAL_CLUSTER.value: local,
        Group.REMOTE_CLUSTER.value: remote,
        Group.OFFLOADED.value: c.pods(view.by_label("Pod", ORIGIN, peer)),
        Group.VC_LOCAL.value: c.pods(vc_local_pods),
        Group.VC_REMOTE.value: c.pods(shadows),
        Group.PRIVATE_SUBNETS.value: PRIVATE_SUBNETS,
        OFFLOADED_SERVICE_BACKENDS: c.addresses(_offloaded_service_backends(view, offloaded_ns)),
        REFLECTED_SERVICE_BACKENDS: c.addresses(_slice_addresses(view.by_label("EndpointSlice", ORIGIN, peer))),
        OUTSIDE_POD_CIDRS: local.union(remote).complement(),
    }
    for ns in sorted(set(namespaces)):
        sets[namespace_term(ns)] = c.pods(view.list("Pod", ns))
    return ResolvedGroups(peer=peer, sets=sets, ipv6_skipped=c.ipv6_skipped)
