"""What the controller watches: per kind, how it is slimmed, indexed and mapped to peerings.

One `Watched` per kind, declared in `watched_resources()`: its REST collection,
the transform that keeps only what resolution reads, the indexes resolution
and event mapping query, the mapper from a change to the peerings it affects,
and the CRD that must be installed for the kind to be listed at all. A table
rather than names looked up at run time, so mypy checks every kind has each part.
The `ClusterView` the compiler reads (`StoreView`) is answered from these
stores, so the pure core never sees where its objects came from.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from liqosec.api.liqo import APP_NAME, INDEXED_LABELS
from liqosec.api.peeringconnectivity import GROUP, KIND, PLURAL, VERSION
from liqosec.compiler.firewallconfiguration import MANAGED_BY, MANAGED_BY_LABEL, OWNER_LABEL
from liqosec.controller import mapping
from liqosec.controller.mapping import Mapper
from liqosec.firewall.capabilities import FIREWALL_CRD_NAME
from liqosec.groups.view import Obj
from liqosec.kube.client import ENDPOINT_SLICES, NAMESPACES, NODES, PODS, ResourceRef
from liqosec.kube.store import (
    NAMESPACE_INDEX,
    Indexer,
    JsonDict,
    Store,
    Transform,
    index_by_label,
    index_by_namespace,
    slim,
    slim_pod,
)

PEERING_CONNECTIVITIES = ResourceRef(GROUP, VERSION, PLURAL, True, KIND)
FIREWALL_CONFIGURATIONS = ResourceRef(
    "networking.liqo.io", "v1beta1", "firewallconfigurations", True, "FirewallConfiguration"
)
CONFIGURATIONS = ResourceRef("networking.liqo.io", "v1beta1", "configurations", True, "Configuration")
NETWORKS = ResourceRef("ipam.liqo.io", "v1alpha1", "networks", True, "Network")
NAMESPACE_OFFLOADINGS = ResourceRef(
    "offloading.liqo.io", "v1beta1", "namespaceoffloadings", True, "NamespaceOffloading"
)
VIRTUAL_NODES = ResourceRef("offloading.liqo.io", "v1beta1", "virtualnodes", True, "VirtualNode")
FOREIGN_CLUSTERS = ResourceRef("core.liqo.io", "v1beta1", "foreignclusters", False, "ForeignCluster")
SERVICES = ResourceRef("", "v1", "services", True, "Service")
CRDS = ResourceRef("apiextensions.k8s.io", "v1", "customresourcedefinitions", False, "CustomResourceDefinition")

LABEL_INDEX = "label:"  # index name prefix: "label:<key>" -> label value


def label_index(key: str) -> str:
    """The name of the index `StoreView.by_label` asks for on label `key`."""
    return f"{LABEL_INDEX}{key}"


def crd_name(ref: ResourceRef) -> str:
    """A custom resource's CRD is named `<plural>.<group>`."""
    return f"{ref.plural}.{ref.group}"


class MissingIndex(LookupError):
    """A label lookup on a kind not indexed by that label: a wiring bug, never a scan of a large cache."""


def _label_indexers(keys: tuple[str, ...] = INDEXED_LABELS) -> dict[str, Indexer]:
    return {label_index(key): index_by_label(key) for key in keys}


def _slim_service(obj: JsonDict) -> JsonDict:
    """Resolution only asks whether a Service exists: keep its identity."""
    return {"metadata": slim(obj).get("metadata", {})}


def _slim_endpoint_slice(obj: JsonDict) -> JsonDict:
    endpoints = [{"addresses": list(ep.get("addresses") or ())} for ep in obj.get("endpoints") or ()]
    return {"metadata": slim(obj).get("metadata", {}), "endpoints": endpoints}


def _slim_crd(obj: JsonDict) -> JsonDict:
    """Only the FirewallConfiguration CRD's schema matters (capabilities); others shrink to a name."""
    if (obj.get("metadata") or {}).get("name") == FIREWALL_CRD_NAME:
        return slim(obj)
    meta = obj.get("metadata") or {}
    return {"metadata": {"name": meta.get("name"), "resourceVersion": meta.get("resourceVersion")}}


def _slim_node(obj: JsonDict) -> JsonDict:
    """Identity and labels; a Node's pod CIDRs too (where its pods get addresses, per-node scope)."""
    out: JsonDict = {"metadata": slim(obj).get("metadata", {})}
    spec = obj.get("spec") or {}
    kept = {k: spec[k] for k in ("podCIDR", "podCIDRs") if isinstance(spec, dict) and spec.get(k)}
    if kept:
        out["spec"] = kept
    return out


def _slim_virtual_node(obj: JsonDict) -> JsonDict:
    """The peer it stands for and the labels its virtual kubelet does not reflect; not its big template."""
    spec = obj.get("spec") or {}
    kept: JsonDict = {}
    if isinstance(spec, dict):
        if spec.get("clusterID"):
            kept["clusterID"] = spec["clusterID"]
        patch = spec.get("offloadingPatch") or {}
        if isinstance(patch, dict) and patch.get("labelsNotReflected"):
            kept["offloadingPatch"] = {"labelsNotReflected": patch["labelsNotReflected"]}
    return {"metadata": slim(obj).get("metadata", {}), "spec": kept}


@dataclass(frozen=True)
class Watched:
    ref: ResourceRef
    mapper: Mapper  # which peerings a change of an object of this kind affects
    transform: Transform = slim
    indexers: Mapping[str, Indexer] = field(default_factory=dict)
    label_selector: str | None = None
    crd: str | None = None  # the CRD that must be installed before this kind can be listed (None: built in)
    # The controller starts without this kind's CRD, and watches it once the CRD is installed:
    # what it adds is a status note, not part of what any firewall is compiled from.
    optional: bool = False

    @property
    def kind(self) -> str:
        return self.ref.kind

    def new_store(self) -> Store:
        kind = self.ref.kind

        def transform(obj: JsonDict) -> JsonDict:
            # Watch events omit kind on list items; views select by kind.
            out = self.transform(obj)
            return out if out.get("kind") == kind else {**out, "kind": kind}

        return Store(indexers=dict(self.indexers), transform=transform)


def watched_resources(share_firewall: Transform | None = None) -> list[Watched]:
    """Every watched kind; `share_firewall`, when given, runs after `slim` on every FirewallConfiguration
    stored (the controller's `caches.DesiredSpecs.share`: one copy of a spec compiled and cached)."""
    namespaced = {NAMESPACE_INDEX: index_by_namespace}
    firewall_transform = slim if share_firewall is None else (lambda obj: share_firewall(slim(obj)))
    labelled = {**namespaced, **_label_indexers()}
    return [
        Watched(
            PEERING_CONNECTIVITIES,
            mapping.peering_connectivity_keys,
            indexers=namespaced,
            crd=crd_name(PEERING_CONNECTIVITIES),
        ),
        Watched(
            FIREWALL_CONFIGURATIONS,
            mapping.firewall_configuration_keys,
            transform=firewall_transform,
            indexers={**namespaced, **_label_indexers((OWNER_LABEL,))},
            label_selector=f"{MANAGED_BY_LABEL}={MANAGED_BY}",
            crd=FIREWALL_CRD_NAME,
        ),
        # Pods by app name too: Liqo's fabric pods, the hosts Ready counts (`controller.fabric`).
        Watched(PODS, mapping.pod_keys, transform=slim_pod, indexers={**labelled, **_label_indexers((APP_NAME,))}),
        Watched(NODES, mapping.node_keys, transform=_slim_node, indexers=_label_indexers()),
        Watched(NAMESPACES, mapping.namespace_keys, transform=_slim_node, indexers=_label_indexers()),
        Watched(NETWORKS, mapping.network_keys, indexers=labelled, crd=crd_name(NETWORKS)),
        Watched(CONFIGURATIONS, mapping.configuration_keys, indexers=namespaced, crd=crd_name(CONFIGURATIONS)),
        Watched(
            NAMESPACE_OFFLOADINGS,
            mapping.namespace_offloading_keys,
            indexers=namespaced,
            crd=crd_name(NAMESPACE_OFFLOADINGS),
        ),
        Watched(FOREIGN_CLUSTERS, mapping.foreign_cluster_keys, crd=crd_name(FOREIGN_CLUSTERS)),
        Watched(
            VIRTUAL_NODES,
            mapping.virtual_node_keys,
            transform=_slim_virtual_node,
            indexers=namespaced,
            crd=crd_name(VIRTUAL_NODES),
            optional=True,
        ),
        Watched(SERVICES, mapping.service_keys, transform=_slim_service, indexers=namespaced),
        Watched(ENDPOINT_SLICES, mapping.endpoint_slice_keys, transform=_slim_endpoint_slice, indexers=labelled),
        Watched(CRDS, mapping.crd_keys, transform=_slim_crd),
    ]


class StoreView:
    """A ClusterView answered from informer stores (reads only; never mutates)."""

    def __init__(self, stores: Mapping[str, Store]) -> None:
        self._stores = stores

    def _store(self, kind: str) -> Store | None:
        return self._stores.get(kind)

    def list(self, kind: str, namespace: str | None = None) -> Iterable[Obj]:
        store = self._store(kind)
        if store is None:
            return ()
        if namespace is None:
            return store.list()
        return store.by_index(NAMESPACE_INDEX, namespace)

    def generation(self, kind: str) -> int:
        """The kind's store generation (-1 when not watched): equal, nothing of that kind changed."""
        store = self._stores.get(kind)
        return -1 if store is None else store.generation

    def by_label(self, kind: str, key: str, value: str) -> Iterable[Obj]:
        """Raises `MissingIndex` when `kind` is not indexed by `key`: a silent scan would hide a wiring bug."""
        store = self._store(kind)
        if store is None:
            return ()
        index = label_index(key)
        try:
            return store.by_index(index, value)
        except KeyError:
            raise MissingIndex(
                f"{kind} is not indexed by label {key!r} (no index {index!r}): add it in watched_resources()"
            ) from None

    def get(self, kind: str, name: str, namespace: str | None = None) -> Obj | None:
        store = self._store(kind)
        if store is None:
            return None
        return store.get(f"{namespace}/{name}" if namespace else name)
