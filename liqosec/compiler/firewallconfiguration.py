"""From a PeeringConnectivity and a view of the cluster to the FirewallConfiguration to write.

`build` is the whole pure pipeline for one peering: find the peer, resolve its
groups, compile the chain, shape the objects Liqo's CRD accepts, and check their
size. It raises `ValidationError` (with the field path) when the spec cannot
be honoured; callers then keep the last good firewall in place.

Liqo's agent applies one FirewallConfiguration in one netlink batch and reads
back an echo of every rule it added. Past about 4,000 kernel expressions the
echoes overflow the socket's default receive buffer (212,992 bytes): the batch
fails with ENOBUFS and the node keeps nothing of it (measured with Liqo v1.2.0;
docs/semantics.md, "Liqo's agent"). So a peering whose chain is larger is
written as several FirewallConfigurations ("shards"), each a table of its own
with part of the rules. Only a drop-rules chain splits this way (a packet
passes when no table drops it); the compiler keeps accept-rules chains within
one shard's budget.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from liqosec.api.liqo import REMOTE_CLUSTER_ID, TENANT_PREFIX
from liqosec.api.peeringconnectivity import API_VERSION, KIND, PeeringConnectivity
from liqosec.api.validation import FieldError, ValidationError
from liqosec.compiler.compile import CHAIN_PRIORITY, DROP, CompiledChain, FilterRule, compile_chain
from liqosec.compiler.policy import clauses_of, namespaces_of
from liqosec.firewall.capabilities import Capabilities
from liqosec.groups.resolve import ResolvedGroups, peer_of_namespace, resolve_groups
from liqosec.groups.view import ClusterView, meta

FC_API_VERSION = "networking.liqo.io/v1beta1"
FC_KIND = "FirewallConfiguration"
CATEGORY_LABEL = "networking.liqo.io/firewall-category"
SUBCATEGORY_LABEL = "networking.liqo.io/firewall-subcategory"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "liqosec"
OWNER_LABEL = "security.liqo.io/peering-connectivity"
PEER_LABEL = REMOTE_CLUSTER_ID

# etcd refuses values over 1.5 MiB (1,572,864 bytes). Keep ~270 kB of it for
# metadata, managedFields and status (filterRules is an atomic list, so
# managedFields stays small). 10,000 pods scattered one by one across a /16,
# the worst case without nft sets, compile to about 1.23 MB.
MAX_OBJECT_BYTES = 1_300_000
# Kernel expressions one FirewallConfiguration may hold: Liqo v1.2.0's agent failed
# from about 4,000 (see above); a quarter of margin.
MAX_EXPRESSIONS_PER_FIREWALL = 1500
# Shards are filled to this fraction on average, so hashing rarely overflows one.
SHARD_FILL = 0.6
MAX_SHARDS = 1024


@dataclass(frozen=True)
class Outcome:
    peering: PeeringConnectivity
    peer: str
    groups: ResolvedGroups
    chain: CompiledChain
    firewalls: tuple[dict[str, Any], ...]  # shard 0 first
    size_bytes: int  # the largest shard's

    @property
    def firewall(self) -> dict[str, Any]:
        """The first shard: the one every peering has, named after it."""
        return self.firewalls[0]


def firewall_name(peering_name: str, shard: int = 0) -> str:
    return f"liqosec-{peering_name}" if shard == 0 else f"liqosec-{peering_name}-s{shard}"


def table_name(peer: str, shard: int = 0) -> str:
    """One nft table per peering and shard on every node: the peer id makes it unique.

    `_` cannot occur in a cluster id (a DNS label), so shard names never collide with
    another peer's table.
    """
    return f"liqosec-{peer}" if shard == 0 else f"liqosec-{peer}_s{shard}"


def shard(chain: CompiledChain, max_expressions: int = MAX_EXPRESSIONS_PER_FIREWALL) -> list[tuple[FilterRule, ...]]:
    """The chain's rules cut into shards of at most `max_expressions` each.

    A rule's shard is its content hash modulo a power of two, so a pod coming or
    going moves no other rule between shards unless the shard count changes.
    Rules that must come first (the conntrack accept) go into every shard.
    """
    if chain.expressions <= max_expressions or chain.policy == DROP:
        return [chain.rules]
    head = tuple(r for r in chain.rules if r.ctstate)
    body = [r for r in chain.rules if not r.ctstate]
    room = max_expressions - sum(r.expressions for r in head)
    count = 2
    while count * room * SHARD_FILL < sum(r.expressions for r in body):
        count *= 2
    while count <= MAX_SHARDS:
        buckets: list[list[FilterRule]] = [[] for _ in range(count)]
        for r in body:
            buckets[int(r.name.rsplit("-", 1)[1], 16) % count].append(r)
        if all(sum(r.expressions for r in b) <= room for b in buckets):
            return [head + tuple(b) for b in buckets]
        count *= 2
    raise ValueError(f"cannot cut {len(body)} rules into {MAX_SHARDS} shards of {max_expressions} expressions")


def firewall_labels(pc: PeeringConnectivity, peer: str) -> dict[str, str]:
    return {
        CATEGORY_LABEL: "fabric",
        SUBCATEGORY_LABEL: "all-nodes",
        MANAGED_BY_LABEL: MANAGED_BY,
        OWNER_LABEL: pc.name,
        PEER_LABEL: peer,
    }


def owner_reference(pc: PeeringConnectivity) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": pc.name,
        "uid": pc.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def firewall_object(
    pc: PeeringConnectivity,
    peer: str,
    chain: CompiledChain,
    rules: tuple[FilterRule, ...] | None = None,
    index: int = 0,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": firewall_name(pc.name, index),
        "namespace": pc.namespace,
        "labels": firewall_labels(pc, peer),
    }
    if pc.uid:
        metadata["ownerReferences"] = [owner_reference(pc)]
    return {
        "apiVersion": FC_API_VERSION,
        "kind": FC_KIND,
        "metadata": metadata,
        "spec": {
            "table": {
                "name": table_name(peer, index),
                "family": "IPV4",
                "chains": [
                    {
                        "name": chain.name,
                        "type": "filter",
                        "hook": "forward",
                        "priority": CHAIN_PRIORITY,
                        "policy": chain.policy,
                        "rules": {"filterRules": [r.to_api() for r in (chain.rules if rules is None else rules)]},
                    }
                ],
            }
        },
    }


def peer_of(view: ClusterView, pc: PeeringConnectivity) -> str:
    peer = peer_of_namespace(view, pc.namespace)
    if peer is None:
        raise ValidationError(
            [
                FieldError(
                    "metadata.namespace",
                    f"{pc.namespace!r} is not a tenant namespace: expected a namespace labelled "
                    f"liqo.io/remote-cluster-id or named {TENANT_PREFIX}<cluster-id>",
                    reason="NotTenantNamespace",
                )
            ],
            obj=f"{KIND} {pc.key}",
        )
    return peer


def build(view: ClusterView, pc: PeeringConnectivity, capabilities: Capabilities) -> Outcome:
    peer = peer_of(view, pc)
    clauses = clauses_of(pc.spec)
    groups = resolve_groups(view, peer, pc.namespace, namespaces=namespaces_of(clauses))
    chain = compile_chain(
        clauses, pc.spec.default_action, groups, capabilities, max_expressions=MAX_EXPRESSIONS_PER_FIREWALL
    )
    objs = tuple(firewall_object(pc, peer, chain, rules, i) for i, rules in enumerate(shard(chain)))
    size = max(len(json.dumps(obj, separators=(",", ":"))) for obj in objs)
    if size > MAX_OBJECT_BYTES:
        raise ValidationError(
            [
                FieldError(
                    "spec.rules",
                    f"compiles to a FirewallConfiguration of {size} bytes ({len(chain.rules)} rules), over the "
                    f"{MAX_OBJECT_BYTES}-byte bound; narrow the rules or the groups they name",
                    reason="TooLarge",
                )
            ],
            obj=f"{KIND} {pc.key}",
        )
    return Outcome(peering=pc, peer=peer, groups=groups, chain=chain, firewalls=objs, size_bytes=size)


def governing(peerings: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Which PeeringConnectivity governs each tenant namespace: the oldest, then by name.

    A peering has one firewall; a second PeeringConnectivity in the same tenant
    namespace is reported as conflicting instead of fighting over the table.
    """
    winners: dict[str, tuple[str, str]] = {}
    for obj in peerings:
        m = meta(obj)
        ns, name = str(m.get("namespace") or ""), str(m.get("name") or "")
        rank = (str(m.get("creationTimestamp") or ""), name)
        if ns not in winners or rank < winners[ns]:
            winners[ns] = rank
    return {ns: rank[1] for ns, rank in winners.items()}
