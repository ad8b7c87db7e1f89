"""Resolve the address groups of one peering from a view of the cluster.

Pure: the same view gives the same groups. Where each fact lives in Liqo is
docs/semantics.md ("Where Liqo keeps each fact"); each lookup below names its label and fallback.
Pods contribute their IPv4 addresses only while they hold them: no IP,
`hostNetwork`, or a finished phase contributes nothing. IPv6 addresses are
set aside, counted, and the pods holding them named per group (`ResolvedGroups.ipv6`),
never dropped silently: the firewall is IPv4 only (`liqosec.compiler.ipv6`).

Every field is read through a reader in `liqosec.groups.readers` that checks it
(`pod_addresses`, `network_cidr`, ...): a malformed object raises `ClusterStateError`
naming it and the field, never a Python error from deep inside.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from liqosec.api.liqo import (
    CIDR_TYPE,
    CIDR_TYPE_EXTERNAL,
    DNS_NAMESPACE,
    DNS_SERVICE,
    LOCAL_NETWORK_TYPES,
    NETWORK_TYPE,
    NODE_TYPE,
    OFFLOADING_NAME,
    ORIGIN,
    REMOTE_CLUSTER_ID,
    SERVICE_NAME,
    SHADOW_POD,
    TENANT_NAMESPACE,
    TENANT_PREFIX,
    VIRTUAL_NODE,
)
from liqosec.api.peeringconnectivity import NAMESPACE_NAME_LABEL, Group, Operator, Party
from liqosec.firewall.addresses import EMPTY, AddressSet
from liqosec.groups.readers import (
    _cidr_list,
    _pod_ips,
    _slice_ipv6,
    _unremapped,
    configuration_external_cidrs,
    configuration_pod_cidrs,
    network_cidr,
    node_name,
    node_pod_cidrs,
    offloads_to,
    slice_addresses,
)
from liqosec.groups.view import (
    ClusterView,
    Obj,
    labels,
    name_of,
    namespace_of,
)

PRIVATE_SUBNETS = AddressSet.of(["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"])
# Never the Internet's (`internet` leaves them out): RFC 1918 and the special-purpose ranges no
# public host holds (RFC 6890). The documentation ranges (TEST-NET, RFC 5737) stay in: examples
# and `liqosec matrix` use one to stand for the Internet.
NOT_INTERNET = AddressSet.of(
    [
        "0.0.0.0/8",  # "this network"
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",  # shared address space: carrier-grade NAT (RFC 6598)
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local
        "198.18.0.0/15",  # benchmarking (RFC 2544)
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, and the limited broadcast
    ]
)
# Groups resolved only when a policy names them: `internet` is nearly the whole address space,
# and a policy that names none of them resolves, compiles and reports exactly as before.
ON_DEMAND_GROUPS: frozenset[str] = frozenset({Group.INTERNET.value, Group.NAMESERVER.value, Group.LEAF.value})

# Internal terms the security modes use; not selectable in a spec.
OFFLOADED_SERVICE_BACKENDS = "@offloaded-service-backends"
REFLECTED_SERVICE_BACKENDS = "@reflected-service-backends"
OUTSIDE_POD_CIDRS = "@outside-pod-cidrs"
# The address the peer's masqueraded traffic arrives from (`masquerade_source`); part of remote-cluster.
MASQUERADE_SOURCE = "@masquerade-source"
# The virtual cluster, as ProtectedBorders sees it: vc-local, vc-remote, offloaded and both
# kinds of service backends (docs/semantics.md, "Security modes").
VIRTUAL_CLUSTER = "@virtual-cluster"


def namespace_term(namespace: str) -> str:
    return f"namespace:{namespace}"


def peer_of_namespace(view: ClusterView, namespace: str) -> str | None:
    """The peer a tenant namespace belongs to, as Liqo tells its tenant namespaces apart.

    Liqo's tenant namespace manager labels a tenant namespace `liqo.io/tenant-namespace` and
    `liqo.io/remote-cluster-id=<peer>`, and looks it up by both; the namespaces Liqo creates on a
    provider for a consumer's offloaded workloads carry `liqo.io/remote-cluster-id` alone and are
    not tenant namespaces. A namespace missing from the view (a dump without Namespace objects) is
    taken by Liqo's naming, `liqo-tenant-<peer>`: the API server never holds a policy in a
    namespace that does not exist, so only files reach that fallback.
    """
    ns = view.get("Namespace", namespace)
    if ns is not None:
        found = labels(ns)
        peer = found.get(REMOTE_CLUSTER_ID)
        return peer if peer and TENANT_NAMESPACE in found else None
    if namespace.startswith(TENANT_PREFIX) and len(namespace) > len(TENANT_PREFIX):
        return namespace[len(TENANT_PREFIX) :]
    return None


def is_tenant_namespace(view: ClusterView, namespace: str) -> bool:
    return peer_of_namespace(view, namespace) is not None


def tenant_namespace_problem(view: ClusterView, namespace: str) -> str | None:
    """Why a policy may not live in `namespace`, naming the labels it lacks; None for a tenant namespace."""
    if is_tenant_namespace(view, namespace):
        return None
    head = f"{namespace!r} is not a tenant namespace: Liqo labels its tenant namespaces {TENANT_NAMESPACE} and "
    head += f"{REMOTE_CLUSTER_ID}=<cluster-id>"
    ns = view.get("Namespace", namespace)
    if ns is None:
        return f"{head}, and names them {TENANT_PREFIX}<cluster-id>"
    found = labels(ns)
    missing = [TENANT_NAMESPACE] if TENANT_NAMESPACE not in found else []
    missing += [] if found.get(REMOTE_CLUSTER_ID) else [REMOTE_CLUSTER_ID]
    text = f"{head}; it lacks {' and '.join(missing)}"
    if found.get(REMOTE_CLUSTER_ID) and TENANT_NAMESPACE not in found:
        text += (
            f" ({REMOTE_CLUSTER_ID}={found[REMOTE_CLUSTER_ID]} alone marks a namespace Liqo created for "
            "that peer's offloaded workloads)"
        )
    return text


@dataclass
class _Collector:
    """Accumulates addresses while resolving; frozen into ResolvedGroups at the end."""

    ipv6_skipped: int = 0
    ipv6: dict[str, list[IPv6Member]] = field(default_factory=dict)  # per term, its members holding IPv6

    def pods(self, pods: Iterable[Obj], term: str | None = None) -> AddressSet:
        """The pods' IPv4 addresses; with `term`, its pods holding IPv6 addresses are recorded under it."""
        values: list[tuple[int, int]] = []
        for pod in pods:
            v4, v6 = _pod_ips(pod)
            self.ipv6_skipped += len(v6)
            values.extend((ip, ip) for ip in v4)
            if v6 and term is not None:
                member = IPv6Member("Pod", f"{namespace_of(pod)}/{name_of(pod)}", v6)
                self.ipv6.setdefault(term, []).append(member)
        return AddressSet.from_intervals(values)

    def slices(self, slices: Iterable[Obj], term: str) -> AddressSet:
        """The slices' IPv4 endpoint addresses; slices holding IPv6 ones are recorded under `term`."""
        values: list[tuple[int, int]] = []
        for endpoint_slice in slices:
            addresses = slice_addresses(endpoint_slice)
            values.extend((a, a) for a in addresses if a is not None)
            v6 = _slice_ipv6(endpoint_slice) if None in addresses else ()
            self.ipv6_skipped += len(v6)
            if v6:
                name = f"{namespace_of(endpoint_slice)}/{name_of(endpoint_slice)}"
                self.ipv6.setdefault(term, []).append(IPv6Member("EndpointSlice", name, v6))
        return AddressSet.from_intervals(values)

    def addresses(self, addrs: Iterable[int | None]) -> AddressSet:
        values: list[tuple[int, int]] = []
        for addr in addrs:
            if addr is None:
                self.ipv6_skipped += 1
            else:
                values.append((addr, addr))
        return AddressSet.from_intervals(values)


@dataclass(frozen=True)
class IPv6Member:
    """A pod (or an EndpointSlice) of a group holding IPv6 addresses: its IPv6 packets pass unfiltered.

    liqosec writes IPv4 tables only (docs/semantics.md, "IPv6"), so these are named, not enforced.
    """

    kind: str  # "Pod" or "EndpointSlice"
    name: str  # namespace/name
    addresses: tuple[str, ...]

    def __str__(self) -> str:
        who = self.name if self.kind == "Pod" else f"{self.kind} {self.name}"
        return f"{who} ({', '.join(self.addresses)})"


@dataclass(frozen=True)
class ResolvedGroups:
    """The address sets of one peering, keyed by group value or internal term."""

    peer: str
    sets: Mapping[str, AddressSet] = field(default_factory=dict)
    ipv6_skipped: int = 0
    # Per term, the members holding IPv6 addresses the IPv4 firewall cannot match (pod groups only).
    ipv6: Mapping[str, tuple[IPv6Member, ...]] = field(default_factory=dict)

    def get(self, term: str) -> AddressSet:
        return self.sets.get(term, EMPTY)

    def ipv6_members(self, terms: Iterable[str]) -> tuple[IPv6Member, ...]:
        """Members of any of `terms` holding IPv6 addresses, each once, by kind and name."""
        found = {m for t in terms for m in self.ipv6.get(t, ())}
        return tuple(sorted(found, key=lambda m: (m.kind != "Pod", m.name)))

    @property
    def peer_space(self) -> AddressSet:
        """Addresses whose traffic this peering's policy governs (docs/semantics.md, "Evaluation")."""
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


def _v4(intervals: Iterable[tuple[int, int] | None]) -> AddressSet:
    return AddressSet.from_intervals(i for i in intervals if i is not None)


def local_pod_cidr(view: ClusterView) -> AddressSet:
    return _v4(
        network_cidr(n, "spec")
        for n in view.by_label("Network", NETWORK_TYPE, "pod-cidr")
        if not is_tenant_namespace(view, namespace_of(n))
    )


def remote_pod_cidr(view: ClusterView, tenant_namespace: str) -> AddressSet:
    """The peer's pod CIDRs as remapped here; never `.spec`, which is the peer's own view.

    `RemapPending` while Liqo has not remapped them all (the peering waits).
    """
    cidrs: list[tuple[int, int] | None] = []
    confs = view.list("Configuration", tenant_namespace)
    for conf in confs:
        cidrs.extend(configuration_pod_cidrs(conf, waiting=True))
    if not cidrs:
        for net in view.by_label("Network", CIDR_TYPE, "pod"):
            if namespace_of(net) == tenant_namespace:
                cidrs.append(network_cidr(net, "status"))
    if not any(c is not None for c in cidrs):
        for conf in confs:
            if _cidr_list(conf, "spec", "pod"):  # Liqo has not written its first remap yet
                raise _unremapped(conf, "pod")
    return _v4(cidrs)


def masquerade_source(view: ClusterView, tenant_namespace: str) -> AddressSet:
    """The one address the peer's masqueraded traffic arrives from, as seen here.

    On the peer's nodes Liqo SNATs traffic towards us that does not come from its pod CIDR
    (hostNetwork pods, NodePorts, node processes; all of it with full masquerade) to its
    "unknown source IP": the first address of its primary external CIDR. Here that is the first
    address of the primary remapped external CIDR, which Liqo records as the IP object
    `<configuration>-unknown-source` of the tenant namespace. Empty when no external CIDR is known.
    """
    confs = view.list("Configuration", tenant_namespace)
    for conf in confs:
        primary = next(iter(configuration_external_cidrs(conf, waiting=True)), None)
        if primary is not None:
            return AddressSet.from_intervals([(primary[0], primary[0])])
    for net in view.by_label("Network", CIDR_TYPE, CIDR_TYPE_EXTERNAL):
        if namespace_of(net) == tenant_namespace:
            found = network_cidr(net, "status")
            if found is not None:
                return AddressSet.from_intervals([(found[0], found[0])])
    for conf in confs:
        if _cidr_list(conf, "spec", "external"):  # Liqo has not written its first remap yet
            raise _unremapped(conf, "external")
    return EMPTY


def virtual_nodes(view: ClusterView, peer: str) -> frozenset[str]:
    nodes = view.by_label("Node", REMOTE_CLUSTER_ID, peer)
    names = {name_of(n) for n in nodes if labels(n).get(NODE_TYPE) == VIRTUAL_NODE}
    names.add(peer)  # Liqo's older virtual nodes are named after the peer
    return frozenset(names)


def all_virtual_nodes(view: ClusterView) -> frozenset[str]:
    return frozenset(name_of(n) for n in view.by_label("Node", NODE_TYPE, VIRTUAL_NODE))


def offloaded_namespaces(view: ClusterView, peer: str) -> list[str]:
    """Namespaces whose NamespaceOffloading says its ClusterSelector picked `peer` (`offloads_to`)."""
    out = []
    for nso in view.list("NamespaceOffloading"):
        if name_of(nso) != OFFLOADING_NAME:
            continue
        if offloads_to(nso, peer):
            out.append(namespace_of(nso))
    return sorted(out)


def _slice_addresses(slices: Iterable[Obj]) -> list[int | None]:
    return [a for s in slices for a in slice_addresses(s)]


def _offloaded_service_backends(view: ClusterView, namespaces: Iterable[str]) -> list[int | None]:
    out: list[int | None] = []
    for ns in namespaces:
        services = {name_of(s) for s in view.list("Service", ns)}
        slices = [s for s in view.list("EndpointSlice", ns) if labels(s).get(SERVICE_NAME) in services]
        out.extend(_slice_addresses(slices))
    return out


def resolve_groups(
    view: ClusterView,
    peer: str,
    tenant_namespace: str,
    *,
    namespaces: Iterable[str] = (),
    selections: Iterable[Party] = (),
    named: Iterable[str | None] = (),
) -> ResolvedGroups:
    """Every group of peering `peer`, plus the namespace and selector parties asked for (keyed by
    `namespace_term` and by `Party.describe`). The groups of `ON_DEMAND_GROUPS` only when
    `named` (the terms of the policy's clauses) or a selector party names them."""
    c = _Collector()
    local = local_pod_cidr(view)
    remote = remote_pod_cidr(view, tenant_namespace)
    masquerade = masquerade_source(view, tenant_namespace)
    mine = virtual_nodes(view, peer)
    any_virtual = all_virtual_nodes(view) | mine
    shadows = [p for p in view.by_label("Pod", SHADOW_POD, "true") if node_name(p) in mine]
    offloaded_ns = offloaded_namespaces(view, peer)
    vc_local_pods = [
        p
        for ns in offloaded_ns
        for p in view.list("Pod", ns)
        if labels(p).get(SHADOW_POD) != "true" and node_name(p) not in any_virtual
    ]
    sets: dict[str, AddressSet] = {
        Group.LOCAL_CLUSTER.value: local,
        # The peer's masqueraded traffic comes from its cluster: in scope, and judged as remote-cluster.
        Group.REMOTE_CLUSTER.value: remote.union(masquerade),
        MASQUERADE_SOURCE: masquerade,
        Group.OFFLOADED.value: c.pods(view.by_label("Pod", ORIGIN, peer), Group.OFFLOADED.value),
        Group.VC_LOCAL.value: c.pods(vc_local_pods, Group.VC_LOCAL.value),
        Group.VC_REMOTE.value: c.pods(shadows, Group.VC_REMOTE.value),
        Group.PRIVATE_SUBNETS.value: PRIVATE_SUBNETS,
        OFFLOADED_SERVICE_BACKENDS: c.addresses(_offloaded_service_backends(view, offloaded_ns)),
        REFLECTED_SERVICE_BACKENDS: c.addresses(_slice_addresses(view.by_label("EndpointSlice", ORIGIN, peer))),
        OUTSIDE_POD_CIDRS: local.union(remote).union(masquerade).complement(),  # outside both clusters
    }
    virtual_cluster = EMPTY
    for term in (
        Group.VC_LOCAL.value,
        Group.VC_REMOTE.value,
        Group.OFFLOADED.value,
        OFFLOADED_SERVICE_BACKENDS,
        REFLECTED_SERVICE_BACKENDS,
    ):
        virtual_cluster = virtual_cluster.union(sets[term])
    sets[VIRTUAL_CLUSTER] = virtual_cluster
    c.ipv6[VIRTUAL_CLUSTER] = [
        m for t in (Group.VC_LOCAL.value, Group.VC_REMOTE.value, Group.OFFLOADED.value) for m in c.ipv6.get(t, ())
    ]
    selections = tuple(selections)
    wanted = {t for t in named if t is not None} | {p.group.value for p in selections if p.group is not None}
    for term in sorted(ON_DEMAND_GROUPS & wanted):
        sets[term] = _on_demand(view, c, term, tenant_namespace)
    for ns in sorted(set(namespaces)):
        sets[namespace_term(ns)] = c.pods(view.list("Pod", ns), namespace_term(ns))
    for party in sorted(set(selections), key=Party.describe):
        # Its IPv6 pods are named under its term; a group's IPv4 addresses cannot say which belong to it.
        selected = c.pods(selected_pods(view, party), party.describe() if party.group is None else None)
        if party.group is not None:  # narrowed to the group's addresses: `offloaded` pods labelled so
            selected = selected.intersection(sets.get(party.group.value, EMPTY))
        sets[party.describe()] = selected
    ipv6 = {term: tuple(members) for term, members in c.ipv6.items() if members}
    return ResolvedGroups(peer=peer, sets=sets, ipv6_skipped=c.ipv6_skipped, ipv6=ipv6)


def _on_demand(view: ClusterView, c: _Collector, term: str, tenant_namespace: str) -> AddressSet:
    if term == Group.NAMESERVER.value:
        return c.slices(dns_slices(view), term)
    if term == Group.LEAF.value:
        return remote_external_cidr(view, tenant_namespace)
    return internet(view)


def dns_slices(view: ClusterView) -> list[Obj]:
    """The cluster DNS's EndpointSlices: Service kube-dns of kube-system (none: `nameserver` is empty)."""
    return [s for s in view.list("EndpointSlice", DNS_NAMESPACE) if labels(s).get(SERVICE_NAME) == DNS_SERVICE]


def remote_external_cidr(view: ClusterView, tenant_namespace: str) -> AddressSet:
    """The peer's external CIDRs as remapped here (`leaf`): the Configuration's status, else the tenant
    namespace's Networks labelled `configuration.liqo.io/cidr-type=external`; never `.spec`."""
    cidrs: list[tuple[int, int] | None] = []
    for conf in view.list("Configuration", tenant_namespace):
        cidrs.extend(configuration_external_cidrs(conf))
    if not cidrs:
        for net in view.by_label("Network", CIDR_TYPE, CIDR_TYPE_EXTERNAL):
            if namespace_of(net) == tenant_namespace:
                cidrs.append(network_cidr(net, "status"))
    return _v4(cidrs)


def cluster_cidrs(view: ClusterView) -> AddressSet:
    """Every CIDR the cluster routes: its own Networks (pod, service, external, internal), its nodes'
    pod CIDRs, and every peer's pod and external CIDRs as remapped here."""
    found: list[tuple[int, int] | None] = []
    for network_type in LOCAL_NETWORK_TYPES:
        for net in view.by_label("Network", NETWORK_TYPE, network_type):
            if not is_tenant_namespace(view, namespace_of(net)):
                found += [network_cidr(net, "spec"), network_cidr(net, "status")]
    for cidr_type in ("pod", CIDR_TYPE_EXTERNAL):
        found += [network_cidr(net, "status") for net in view.by_label("Network", CIDR_TYPE, cidr_type)]
    for conf in view.list("Configuration"):
        found += configuration_pod_cidrs(conf) + configuration_external_cidrs(conf)
    for node in view.list("Node"):
        found += node_pod_cidrs(node)
    return _v4(found)


def internet(view: ClusterView) -> AddressSet:
    """Public addresses: outside `NOT_INTERNET` and outside every CIDR of the cluster (`cluster_cidrs`)."""
    return NOT_INTERNET.union(cluster_cidrs(view)).complement()


def namespace_labels(view: ClusterView, namespace: str) -> Mapping[str, str]:
    """A namespace's labels, with the name label the API server gives every namespace (a file may omit it)."""
    ns = view.get("Namespace", namespace)
    found = dict(labels(ns)) if ns is not None else {}
    found.setdefault(NAMESPACE_NAME_LABEL, namespace)
    return found


def _named_namespaces(party: Party) -> frozenset[str] | None:
    """The namespaces a party can only be in, when its selectors say so by name (a lookup, not a scan)."""
    if party.namespace is not None:
        return frozenset({party.namespace})
    for req in party.namespace_selector.requirements if party.namespace_selector is not None else ():
        if req.key == NAMESPACE_NAME_LABEL and req.operator is Operator.IN:
            return frozenset(req.values)
    return None


def selected_pods(view: ClusterView, party: Party) -> list[Obj]:
    """The pods a selector party selects, every pod of the cluster considered (local, offloaded here,
    shadow pods): labels matching `podSelector`, namespace (where the pod object lives here)
    matching `namespaceSelector` and, when given, `namespace`. Narrowing to `group` is the caller's."""
    names = _named_namespaces(party)
    pods: Iterable[Obj] = (
        [p for ns in sorted(names) for p in view.list("Pod", ns)] if names is not None else view.list("Pod")
    )
    ns_selector, pod_selector = party.namespace_selector, party.pod_selector
    namespace_ok: dict[str, bool] = {}
    out: list[Obj] = []
    for pod in pods:
        if ns_selector is not None:
            ns = namespace_of(pod)
            if ns not in namespace_ok:
                namespace_ok[ns] = ns_selector.matches(namespace_labels(view, ns))
            if not namespace_ok[ns]:
                continue
        if pod_selector is None or pod_selector.matches(labels(pod)):
            out.append(pod)
    return out


def hosted_addresses(view: ClusterView) -> dict[str, AddressSet]:
    """Per real node, the addresses that are an end of packets crossing its forward hook.

    A node's pod CIDRs, so a pod is covered from its first packet even before the
    controller sees its address, plus the addresses of the pods it runs (all of them
    where the node has no pod CIDR). Virtual nodes host nothing here: their pods'
    traffic enters through the gateway, and the node of the local end filters it.
    """
    virtual = all_virtual_nodes(view)
    out: dict[str, list[tuple[int, int]]] = {}
    for node in view.list("Node"):
        if labels(node).get(NODE_TYPE) != VIRTUAL_NODE:
            out[name_of(node)] = node_pod_cidrs(node)
    for pod in view.list("Pod"):
        node_of = node_name(pod)
        if not node_of or node_of in virtual or labels(pod).get(SHADOW_POD) == "true":
            continue
        out.setdefault(node_of, []).extend((ip, ip) for ip in _pod_ips(pod)[0])
    return {node: AddressSet.from_intervals(ivs) for node, ivs in out.items() if ivs}
