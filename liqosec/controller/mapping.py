"""Map a change of any watched object to the PeeringConnectivity keys it affects.

Level-triggered: a key only says "look again"; the reconcile re-reads
everything from the caches. The mapping is precise so a pod churning in one
peering does not wake the others: each kind names the peers the facts of
docs/semantics.md ("Where Liqo keeps each fact") tie it to, and an update that leaves every fact
resolution reads unchanged (a pod's annotations, a heartbeat) maps to nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from liqosec.api.peeringconnectivity import KIND
from liqosec.compiler.firewallconfiguration import OWNER_LABEL
from liqosec.firewall.capabilities import FIREWALL_CRD_NAME
from liqosec.groups.resolve import (
    NODE_TYPE,
    OFFLOADING_NAME,
    ORIGIN,
    REMOTE_CLUSTER_ID,
    SHADOW_POD,
    VIRTUAL_NODE,
    is_tenant_namespace,
    peer_of_namespace,
)
from liqosec.groups.view import Obj, labels, meta
from liqosec.controller.resources import StoreView

Keys = set[str]


def _ns(obj: Obj) -> str:
    return str(meta(obj).get("namespace") or "")


def _name(obj: Obj) -> str:
    return str(meta(obj).get("name") or "")


def pod_facts(pod: Obj | None) -> tuple[Any, ...] | None:
    """Everything about a pod that resolution reads; equal facts need no reconcile."""
    if pod is None:
        return None
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    ips = tuple(p.get("ip") for p in status.get("podIPs") or ())
    return (
        tuple(sorted(labels(pod).items())),
        spec.get("nodeName"),
        bool(spec.get("hostNetwork")),
        status.get("phase") in ("Succeeded", "Failed"),
        ips or status.get("podIP"),
    )


def status_only(old: Obj, new: Obj) -> bool:
    """An update that changed nothing but status (a resync hands the same version twice: not this)."""
    m_old, m_new = meta(old), meta(new)
    if m_old.get("resourceVersion") == m_new.get("resourceVersion"):
        return False
    return all(m_old.get(k) == m_new.get(k) for k in ("generation", "labels", "deletionTimestamp", "uid"))


class KeyMapper:
    """Reads the caches (never the API) to find the peerings an object belongs to."""

    def __init__(self, view: StoreView) -> None:
        self._view = view

    # ----- peers to keys -----
    def all_keys(self) -> Keys:
        return {f"{_ns(pc)}/{_name(pc)}" for pc in self._view.list(KIND)}

    def keys_in_namespace(self, namespace: str) -> Keys:
        return {f"{namespace}/{_name(pc)}" for pc in self._view.list(KIND, namespace)}

    def keys_of_peers(self, peers: Iterable[str]) -> Keys:
        wanted = {p for p in peers if p}
        if not wanted:
            return set()
        return {
            f"{_ns(pc)}/{_name(pc)}"
            for pc in self._view.list(KIND)
            if peer_of_namespace(self._view, _ns(pc)) in wanted
        }

    def keys_naming_namespace(self, namespace: str) -> Keys:
        out: Keys = set()
        for pc in self._view.list(KIND):
            for rule in (pc.get("spec") or {}).get("rules") or ():
                ends = (rule.get("source") or {}, rule.get("destination") or {})
                if any(isinstance(e, Mapping) and e.get("namespace") == namespace for e in ends):
                    out.add(f"{_ns(pc)}/{_name(pc)}")
        return out

    # ----- facts to peers -----
    def peers_offloading_namespace(self, namespace: str) -> set[str]:
        nso = self._view.get("NamespaceOffloading", OFFLOADING_NAME, namespace)
        if nso is None:
            return set()
        return set(((nso.get("status") or {}).get("remoteNamespacesConditions") or {}).keys())

    def peers_of_node(self, node_name: str) -> set[str]:
        node = self._view.get("Node", node_name)
        peers = {node_name}  # Liqo's older virtual nodes are named after the peer
        if node is not None and labels(node).get(REMOTE_CLUSTER_ID):
            peers.add(str(labels(node)[REMOTE_CLUSTER_ID]))
        return peers

    def _pod_peers(self, pod: Obj) -> set[str]:
        peers = {str(labels(pod).get(ORIGIN) or "")}
        node = (pod.get("spec") or {}).get("nodeName")
        if labels(pod).get(SHADOW_POD) == "true" and node:
            peers |= self.peers_of_node(str(node))
        return peers | self.peers_offloading_namespace(_ns(pod))

    # ----- the mapping -----
    def keys_for(self, kind: str, old: Obj | None, new: Obj | None) -> Keys:
        objs = [o for o in (old, new) if o is not None]
        if not objs:
            return set()
        handler = getattr(self, f"_on_{kind}", None)
        return set(handler(old, new, objs)) if handler else set()

    def _on_PeeringConnectivity(self, old: Obj | None, new: Obj | None, objs: list[Obj]) -> Keys:  # noqa: N802
        if old is not None and new is not None and status_only(old, new):
            return set()  # our own status write coming back
        # Peers of a tenant namespace share it: a create or delete can change who governs.
        return {k for o in objs for k in self.keys_in_namespace(_ns(o)) | {f"{_ns(o)}/{_name(o)}"}}

    def _on_FirewallConfiguration(self, old: Obj | None, new: Obj | None, objs: list[Obj]) -> Keys:  # noqa: N802
        return {f"{_ns(o)}/{labels(o)[OWNER_LABEL]}" for o in objs if labels(o).get(OWNER_LABEL)}

    def _on_Pod(self, old: Obj | None, new: Obj | None, objs: list[Obj]) -> Keys:  # noqa: N802
        if pod_facts(old) == pod_facts(new):
            return set()
        peers = {p for o in objs for p in self._pod_peers(o)}
        return self.keys_of_peers(peers) | {k for o in objs for k in self.keys_naming_namespace(_ns(o))}

    def _on_Node(self, old: Obj | None, new: Obj | None, objs: list[Obj]) -> Keys:  # noqa: N802
        if old is not None and new is not None and labels(old) == labels(new):
            return set()
        virtual = [o for o in objs if labels(o).get(NODE_TYPE) == VIRTUAL_NODE]
        peers = {p for o in virtual for p in (_name(o), str(labels(o).get(REMOTE_CLUSTER_ID) or ""))}
        return self.keys_of_peers(peers)

    def _on_Namespace(self, old: Obj | None, new: Obj | None, objs: list[Obj]) -> Keys:  # noqa: N802
        if old is not None and new is not None and labels(old) == labels(new):
            return set()
        return {k for o in objs for k in self.keys_in_namespace(_name(o))}

    def _on_Network(self, old: Obj | None, new: Obj | None, objs: list[Obj]) -> Keys:  # noqa: N802
        out: Keys = set()
        for o in objs:
            out |= self.keys_in_namespace(_ns(o)) if is_tenant_namespace(self._view, _ns(o)) else self.all_keys()
        return out

    def _on_Configuration(self, old: Obj | None, new: Obj | None, objs: list[Obj]) -> Keys:  # noqa: N802
        return {k for o in objs for k in self.keys_in_namespace(_ns(o))}

    def _on_NamespaceOffloading(self, old: Obj | None, new: Obj | None, objs: list[Obj]) -> Keys:  # noqa: N802
        peers = {p for o in objs for p in ((o.get("status") or {}).get("remoteNamespacesConditions") or {})}
        return self.keys_of_peers(peers)

    def _on_ForeignCluster(self, old: Obj | None, new: Obj | None, objs: list[Obj]) -> Keys:  # noqa: N802
        return self.keys_of_peers({str((o.get("spec") or {}).get("clusterID") or "") for o in objs})

    def _on_Service(self, old: Obj | None, new: Obj | None, objs: list[Obj]) -> Keys:  # noqa: N802
        return self.keys_of_peers({p for o in objs for p in self.peers_offloading_namespace(_ns(o))})

    def _on_EndpointSlice(self, old: Obj | None, new: Obj | None, objs: list[Obj]) -> Keys:  # noqa: N802
        if old is not None and new is not None and old.get("endpoints") == new.get("endpoints") and labels(old) == labels(new):
            return set()
        peers = {str(labels(o).get(ORIGIN) or "") for o in objs}
        peers |= {p for o in objs for p in self.peers_offloading_namespace(_ns(o))}
        return self.keys_of_peers(peers)

    def _on_CustomResourceDefinition(self, old: Obj | None, new: Obj | None, objs: list[Obj]) -> Keys:  # noqa: N802
        return self.all_keys() if any(_name(o) == FIREWALL_CRD_NAME for o in objs) else set()
