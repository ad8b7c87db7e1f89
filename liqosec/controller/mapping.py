"""Map a change of any watched object to the PeeringConnectivity keys it affects.

Level-triggered: a key only says "look again"; the reconcile re-reads
everything from the caches. The mapping is precise so a pod churning in one
peering does not wake the others: each kind's mapper names the peers the facts of
docs/semantics.md ("Where Liqo keeps each fact") tie it to, and an update that leaves every fact
resolution reads unchanged (a pod's annotations, a heartbeat) maps to nothing.

Each kind's mapper is declared beside its transform and indexes in
`resources.watched_resources()`; this module holds the mappers and what they share.
Mappers read tolerantly: a malformed object is the reconcile's to report, and the
informer handler wakes every peering when a mapper fails anyway.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from ipaddress import ip_address, ip_network
from typing import Any

from liqosec.api.liqo import (
    DNS_NAMESPACE,
    DNS_SERVICE,
    NODE_TYPE,
    OFFLOADING_NAME,
    ORIGIN,
    REMOTE_CLUSTER_ID,
    SERVICE_NAME,
    SHADOW_POD,
    VIRTUAL_NODE,
)
from liqosec.api.peeringconnectivity import KIND, NAMESPACE_NAME_LABEL, Group, Party
from liqosec.api.validation import ValidationError, parse_peering_connectivity
from liqosec.compiler.firewallconfiguration import OWNER_LABEL
from liqosec.compiler.governance import is_dry_run
from liqosec.controller import fabric
from liqosec.firewall.capabilities import FIREWALL_CRD_NAME
from liqosec.groups.resolve import is_tenant_namespace, peer_of_namespace
from liqosec.groups.view import ClusterView, Obj, labels, meta

Keys = set[str]


def _ns(obj: Obj) -> str:
    return str(meta(obj).get("namespace") or "")


def _name(obj: Obj) -> str:
    return str(meta(obj).get("name") or "")


def _section(obj: Obj, key: str) -> Mapping[str, Any]:
    value = obj.get(key)
    return value if isinstance(value, Mapping) else {}


@dataclass(frozen=True)
class Change:
    """One informer notification: `old` is None on add, `new` is None on delete; both on update and resync."""

    old: Obj | None
    new: Obj | None

    @property
    def objs(self) -> list[Obj]:
        return [o for o in (self.old, self.new) if o is not None]

    @property
    def both(self) -> tuple[Obj, Obj] | None:
        """(old, new) of an update, None for an add or a delete."""
        return (self.old, self.new) if self.old is not None and self.new is not None else None


def pod_facts(pod: Obj | None) -> tuple[Any, ...] | None:
    """Everything about a pod that resolution reads; equal facts need no reconcile."""
    if pod is None:
        return None
    spec, status = _section(pod, "spec"), _section(pod, "status")
    ips = tuple(p.get("ip") for p in status.get("podIPs") or () if isinstance(p, Mapping))
    shadow = labels(pod).get(SHADOW_POD) == "true"
    return (
        tuple(sorted(labels(pod).items())),
        spec.get("nodeName"),
        bool(spec.get("hostNetwork")),
        status.get("phase") in ("Succeeded", "Failed"),
        ips or status.get("podIP"),
        shadow and status.get("phase") == "Running",  # a running shadow pod without IP is named (`reflection`)
    )


def _pod_cidrs(node: Obj) -> list[str]:
    spec = _section(node, "spec")
    raw = spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else [])
    return [str(c) for c in raw] if isinstance(raw, list) else []


def _inside(ip: str, cidr: str) -> bool:
    try:
        return ip_address(ip) in ip_network(cidr, strict=False)
    except ValueError:
        return False


def status_only(old: Obj, new: Obj) -> bool:
    """An update that changed nothing but status (a resync hands the same version twice: not this)."""
    m_old, m_new = meta(old), meta(new)
    if m_old.get("resourceVersion") == m_new.get("resourceVersion"):
        return False
    return all(m_old.get(k) == m_new.get(k) for k in ("generation", "labels", "deletionTimestamp", "uid"))


@dataclass(frozen=True)
class _PeeringIndex:
    by_peer: Mapping[str, frozenset[str]]  # peer -> keys of its peerings
    naming: Mapping[str, frozenset[str]]  # namespace -> keys of peerings whose rules name it
    selecting: tuple[tuple[str, tuple[Party, ...]], ...] = ()  # keys of peerings with selector parties
    using: Mapping[str, frozenset[str]] = field(default_factory=dict)  # group -> keys of peerings naming it
    dry_run: frozenset[str] = frozenset()  # keys of peerings in DryRun

    @classmethod
    def of(cls, view: ClusterView) -> _PeeringIndex:
        by_peer: dict[str, set[str]] = {}
        naming: dict[str, set[str]] = {}
        selecting: list[tuple[str, tuple[Party, ...]]] = []
        using: dict[str, set[str]] = {}
        dry_run: set[str] = set()
        for pc in view.list(KIND):
            key = f"{_ns(pc)}/{_name(pc)}"
            if is_dry_run(pc):
                dry_run.add(key)
            peer = peer_of_namespace(view, _ns(pc))
            if peer is not None:
                by_peer.setdefault(peer, set()).add(key)
            rules = _section(pc, "spec").get("rules")
            for rule in rules if isinstance(rules, list) else ():
                if not isinstance(rule, Mapping):
                    continue
                for end in (rule.get("source"), rule.get("destination")):
                    if isinstance(end, Mapping) and isinstance(end.get("namespace"), str):
                        naming.setdefault(end["namespace"], set()).add(key)
                    if isinstance(end, Mapping) and isinstance(end.get("group"), str):
                        using.setdefault(end["group"], set()).add(key)
            if parties := _selector_parties(pc):
                selecting.append((key, parties))
        return cls(
            {p: frozenset(k) for p, k in by_peer.items()},
            {n: frozenset(k) for n, k in naming.items()},
            tuple(selecting),
            {g: frozenset(k) for g, k in using.items()},
            frozenset(dry_run),
        )


def _selector_parties(pc: Obj) -> tuple[Party, ...]:
    """The selector parties of a peering's rules; none for an invalid spec (pods cannot change its verdict)."""
    rules = _section(pc, "spec").get("rules")
    if not isinstance(rules, list) or not any(
        isinstance(end, Mapping) and ("podSelector" in end or "namespaceSelector" in end)
        for rule in rules
        if isinstance(rule, Mapping)
        for end in (rule.get("source"), rule.get("destination"))
    ):
        return ()
    try:
        spec = parse_peering_connectivity(pc).spec
    except ValidationError:
        return ()
    return tuple({p for r in spec.rules for p in (r.source, r.destination) if p.selects_pods})


def _namespace_labels(ns: Obj) -> dict[str, str]:
    found = {str(k): str(v) for k, v in labels(ns).items()}
    found.setdefault(NAMESPACE_NAME_LABEL, _name(ns))
    return found


class KeyMapper:
    """Reads the caches (never the API) to find the peerings an object belongs to."""

    def __init__(self, view: ClusterView, *, per_node: bool = False) -> None:
        self._view = view
        self.per_node = per_node  # firewalls per node: where a pod runs matters to every peering
        # Peerings by peer, by the namespaces their rules name and in DryRun, rebuilt when a peering's spec or a
        # namespace changes: a pod event then costs a lookup, not a pass over every peering.
        self._indexes: tuple[tuple[int, int], dict[str, object], _PeeringIndex] | None = None

    def _index(self) -> _PeeringIndex:
        generation = getattr(self._view, "generation", None)
        stamp = (generation(KIND), generation("Namespace")) if callable(generation) else None
        kept = self._indexes
        if stamp is not None and kept is not None and kept[0] == stamp:
            return kept[2]
        # The index reads peerings' specs only (and namespaces): a status write, ours every few
        # seconds a peering, changes the store's generation and nothing the index holds.
        specs = {f"{_ns(pc)}/{_name(pc)}": pc.get("spec") for pc in self._view.list(KIND)}
        if stamp is not None and kept is not None and kept[0][1] == stamp[1] and kept[1] == specs:
            index = kept[2]
        else:
            index = _PeeringIndex.of(self._view)
        if stamp is not None and min(stamp) >= 0:
            self._indexes = (stamp, specs, index)
        return index

    def moves_hosted_addresses(self, c: Change) -> bool:
        """Per-node scope: a pod's address joins or leaves its node's outside the node's pod CIDRs."""
        for pod in c.objs:
            node_name = str(_section(pod, "spec").get("nodeName") or "")
            node = self._view.get("Node", node_name) if node_name else None
            if (
                node is None
                or labels(node).get(NODE_TYPE) == VIRTUAL_NODE
                or bool(_section(pod, "spec").get("hostNetwork"))
            ):
                continue
            cidrs = _pod_cidrs(node)
            for entry in _section(pod, "status").get("podIPs") or ():
                ip = entry.get("ip") if isinstance(entry, Mapping) else None
                if isinstance(ip, str) and not any(_inside(ip, cidr) for cidr in cidrs):
                    return True
        return False

    def keys(self, mapper: Mapper, old: Obj | None, new: Obj | None) -> Keys:
        """The keys `mapper` (a kind's, from `watched_resources`) gives for one notification."""
        change = Change(old, new)
        return set(mapper(self, change)) if change.objs else set()

    # ----- peers to keys -----
    def all_keys(self) -> Keys:
        return {f"{_ns(pc)}/{_name(pc)}" for pc in self._view.list(KIND)}

    def keys_in_namespace(self, namespace: str) -> Keys:
        return {f"{namespace}/{_name(pc)}" for pc in self._view.list(KIND, namespace)}

    def keys_of_peers(self, peers: Iterable[str]) -> Keys:
        by_peer = self._index().by_peer
        return {k for p in peers if p for k in by_peer.get(p, ())}

    def keys_naming_namespace(self, namespace: str) -> Keys:
        return set(self._index().naming.get(namespace, ()))

    def keys_in_dry_run(self) -> Keys:
        """Peerings in DryRun: their report counts every pod of their groups, any local pod included."""
        return set(self._index().dry_run)

    def keys_naming_group(self, group: str) -> Keys:
        """Peerings whose rules name `group` (the groups resolved only on demand: `internet`, `nameserver`)."""
        return set(self._index().using.get(group, ()))

    def keys_selecting_pod(self, pod: Obj) -> Keys:
        """Peerings with a selector party that selects `pod` (its group aside: a superset is safe)."""
        selecting = self._index().selecting
        if not selecting:
            return set()
        namespace = _ns(pod)
        ns = self._view.get("Namespace", namespace)
        ns_labels = _namespace_labels(ns) if ns is not None else {NAMESPACE_NAME_LABEL: namespace}
        pod_labels = labels(pod)
        return {
            key
            for key, parties in selecting
            if any(
                (p.namespace is None or p.namespace == namespace)
                and (p.namespace_selector is None or p.namespace_selector.matches(ns_labels))
                and (p.pod_selector is None or p.pod_selector.matches(pod_labels))
                for p in parties
            )
        }

    def keys_selecting_namespace(self, namespace: Obj) -> Keys:
        """Peerings with a namespaceSelector that selects `namespace` with its labels as they are in it."""
        ns_labels = _namespace_labels(namespace)
        return {
            key
            for key, parties in self._index().selecting
            if any(p.namespace_selector is not None and p.namespace_selector.matches(ns_labels) for p in parties)
        }

    # ----- facts to peers -----
    def is_tenant(self, namespace: str) -> bool:
        return is_tenant_namespace(self._view, namespace)

    def peers_offloading_namespace(self, namespace: str) -> set[str]:
        nso = self._view.get("NamespaceOffloading", OFFLOADING_NAME, namespace)
        if nso is None:
            return set()
        peers = _section(nso, "status").get("remoteNamespacesConditions")
        return {str(p) for p in peers} if isinstance(peers, Mapping) else set()

    def peers_of_node(self, node_name: str) -> set[str]:
        node = self._view.get("Node", node_name)
        peers = {node_name}  # Liqo's older virtual nodes are named after the peer
        if node is not None and labels(node).get(REMOTE_CLUSTER_ID):
            peers.add(str(labels(node)[REMOTE_CLUSTER_ID]))
        return peers

    def pod_peers(self, pod: Obj) -> set[str]:
        peers = {str(labels(pod).get(ORIGIN) or "")}
        node = _section(pod, "spec").get("nodeName")
        if labels(pod).get(SHADOW_POD) == "true" and node:
            peers |= self.peers_of_node(str(node))
        return peers | self.peers_offloading_namespace(_ns(pod))


Mapper = Callable[[KeyMapper, Change], Keys]


# ----- one mapper per watched kind (declared in resources.watched_resources) -----
def peering_connectivity_keys(m: KeyMapper, c: Change) -> Keys:
    if (pair := c.both) and status_only(*pair):
        return set()  # our own status write coming back
    # Peers of a tenant namespace share it: a create or delete can change who governs.
    return {k for o in c.objs for k in m.keys_in_namespace(_ns(o)) | {f"{_ns(o)}/{_name(o)}"}}


def firewall_configuration_keys(m: KeyMapper, c: Change) -> Keys:
    """Status-only changes count for the owner: Liqo's agents report `Applied` there, which `Ready` reads.

    A firewall's rules coming, changing or going also wake the DryRun policies of its namespace: their
    report compares with the firewall in force. A deletion wakes every policy of its namespace.
    """
    owners = {f"{_ns(o)}/{labels(o)[OWNER_LABEL]}" for o in c.objs if labels(o).get(OWNER_LABEL)}
    if (pair := c.both) and pair[0].get("spec") == pair[1].get("spec"):
        return owners
    namespaces = {_ns(o) for o in c.objs}
    if c.new is None:
        # Gone: its table name is free again. A write Liqo's webhook refused for holding that table
        # (a policy of the same peering replaced, its firewall retired) goes through now, not after a backoff.
        return owners | {k for ns in namespaces for k in m.keys_in_namespace(ns)}
    return owners | {k for k in m.keys_in_dry_run() if k.partition("/")[0] in namespaces}


def pod_keys(m: KeyMapper, c: Change) -> Keys:
    if pod_facts(c.old) == pod_facts(c.new):
        return set()
    if fabric.host_of(c.old) != fabric.host_of(c.new):
        return m.all_keys()  # a fabric pod came, went or moved: every peering's Ready counts its hosts
    if m.per_node and m.moves_hosted_addresses(c):
        return m.all_keys()
    peers = {p for o in c.objs for p in m.pod_peers(o)}
    naming = {k for o in c.objs for k in m.keys_naming_namespace(_ns(o)) | m.keys_selecting_pod(o)}
    return m.keys_of_peers(peers) | naming | m.keys_in_dry_run()


def node_keys(m: KeyMapper, c: Change) -> Keys:
    """Virtual nodes tie pods to peers; a real node coming, going or changing pod CIDRs is read by all
    (how many agents must report Applied; per-node firewalls)."""
    if (pair := c.both) and labels(pair[0]) == labels(pair[1]) and _pod_cidrs(pair[0]) == _pod_cidrs(pair[1]):
        return set()
    if any(labels(o).get(NODE_TYPE) != VIRTUAL_NODE for o in c.objs):
        return m.all_keys()
    virtual = [o for o in c.objs if labels(o).get(NODE_TYPE) == VIRTUAL_NODE]
    peers = {p for o in virtual for p in (_name(o), str(labels(o).get(REMOTE_CLUSTER_ID) or ""))}
    return m.keys_of_peers(peers)


def namespace_keys(m: KeyMapper, c: Change) -> Keys:
    if (pair := c.both) and labels(pair[0]) == labels(pair[1]):
        return set()
    # A relabel moves the namespace's pods in or out of namespaceSelectors: matching before or after.
    return {k for o in c.objs for k in m.keys_in_namespace(_name(o)) | m.keys_selecting_namespace(o)}


def network_keys(m: KeyMapper, c: Change) -> Keys:
    """A tenant namespace's Network is its peer's remote CIDR; any other is the local pod CIDR, read by all."""
    out: Keys = set()
    for o in c.objs:
        out |= m.keys_in_namespace(_ns(o)) if m.is_tenant(_ns(o)) else m.all_keys()
    return out | m.keys_naming_group(Group.INTERNET.value)  # every CIDR of the cluster is kept out of it


def configuration_keys(m: KeyMapper, c: Change) -> Keys:
    """The tenant's peerings (remote-cluster, leaf), and those naming `internet`, which every peer's CIDRs leave."""
    return {k for o in c.objs for k in m.keys_in_namespace(_ns(o))} | m.keys_naming_group(Group.INTERNET.value)


def namespace_offloading_keys(m: KeyMapper, c: Change) -> Keys:
    peers: set[str] = set()
    for o in c.objs:
        found = _section(o, "status").get("remoteNamespacesConditions")
        peers |= {str(p) for p in found} if isinstance(found, Mapping) else set()
    return m.keys_of_peers(peers)


def foreign_cluster_keys(m: KeyMapper, c: Change) -> Keys:
    return m.keys_of_peers({str(_section(o, "spec").get("clusterID") or "") for o in c.objs})


def _virtual_node_facts(vn: Obj) -> tuple[Any, ...]:
    spec = _section(vn, "spec")
    return spec.get("clusterID"), _section(spec, "offloadingPatch").get("labelsNotReflected")


def virtual_node_keys(m: KeyMapper, c: Change) -> Keys:
    """A VirtualNode's labelsNotReflected say which labels the peer never sees (`reflection`): its peer's keys."""
    if (pair := c.both) and _virtual_node_facts(pair[0]) == _virtual_node_facts(pair[1]):
        return set()
    return m.keys_of_peers({str(_section(o, "spec").get("clusterID") or "") for o in c.objs})


def service_keys(m: KeyMapper, c: Change) -> Keys:
    return m.keys_of_peers({p for o in c.objs for p in m.peers_offloading_namespace(_ns(o))})


def endpoint_slice_keys(m: KeyMapper, c: Change) -> Keys:
    if (pair := c.both) and pair[0].get("endpoints") == pair[1].get("endpoints") and labels(pair[0]) == labels(pair[1]):
        return set()
    peers = {str(labels(o).get(ORIGIN) or "") for o in c.objs}
    peers |= {p for o in c.objs for p in m.peers_offloading_namespace(_ns(o))}
    dns = any(_ns(o) == DNS_NAMESPACE and labels(o).get(SERVICE_NAME) == DNS_SERVICE for o in c.objs)
    return m.keys_of_peers(peers) | (m.keys_naming_group(Group.NAMESERVER.value) if dns else set())


def crd_keys(m: KeyMapper, c: Change) -> Keys:
    """The FirewallConfiguration CRD decides what the compiler may emit: every peering compiles again."""
    return m.all_keys() if any(_name(o) == FIREWALL_CRD_NAME for o in c.objs) else set()
