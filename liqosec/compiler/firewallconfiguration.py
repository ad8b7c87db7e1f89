"""From a PeeringConnectivity and a view of the cluster to the FirewallConfiguration to write.

`build` is the whole pure pipeline for one peering: find the peer, resolve its
groups, compile the chain, shape the object Liqo's CRD accepts, and check its
size. It raises `ValidationError` (with the field path) when the spec cannot
be honoured; callers then keep the last good firewall in place.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from liqosec.api.peeringconnectivity import API_VERSION, KIND, PeeringConnectivity
from liqosec.api.validation import FieldError, ValidationError
from liqosec.compiler.compile import CHAIN_PRIORITY, CompiledChain, compile_chain
from liqosec.compiler.policy import clauses_of, namespaces_of
from liqosec.firewall.capabilities import Capabilities
from liqosec.groups.resolve import TENANT_PREFIX, ResolvedGroups, peer_of_namespace, resolve_groups
from liqosec.groups.view import ClusterView, meta

FC_API_VERSION = "networking.liqo.io/v1beta1"
FC_KIND = "FirewallConfiguration"
CATEGORY_LABEL = "networking.liqo.io/firewall-category"
SUBCATEGORY_LABEL = "networking.liqo.io/firewall-subcategory"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "liqosec"
OWNER_LABEL = "security.liqo.io/peering-connectivity"
PEER_LABEL = "liqo.io/remote-cluster-id"

# etcd refuses values over 1.5 MiB (1,572,864 bytes). Keep ~270 kB of it for
# metadata, managedFields and status (filterRules is an atomic list, so
# managedFields stays small). 10,000 pods scattered one by one across a /16,
# the worst case without nft sets, compile to about 1.23 MB.
MAX_OBJECT_BYTES = 1_300_000


@dataclass(frozen=True)
class Outcome:
    peering: PeeringConnectivity
    peer: str
    groups: ResolvedGroups
    chain: CompiledChain
    firewall: dict[str, Any]
    size_bytes: int


def firewall_name(peering_name: str) -> str:
    return f"liqosec-{peering_name}"


def table_name(peer: str) -> str:
    """One nft table per peering on every node: the peer id makes it unique."""
    return f"liqosec-{peer}"


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


def firewall_object(pc: PeeringConnectivity, peer: str, chain: CompiledChain) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": firewall_name(pc.name),
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
                "name": table_name(peer),
                "family": "IPV4",
                "chains": [
                    {
                        "name": chain.name,
                        "type": "filter",
                        "hook": "forward",
                        "priority": CHAIN_PRIORITY,
                        "policy": chain.policy,
                        "rules": {"filterRules": [r.to_api() for r in chain.rules]},
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
    chain = compile_chain(clauses, pc.spec.default_action, groups, capabilities)
    obj = firewall_object(pc, peer, chain)
    size = len(json.dumps(obj, separators=(",", ":")))
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
    return Outcome(peering=pc, peer=peer, groups=groups, chain=chain, firewall=obj, size_bytes=size)


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
