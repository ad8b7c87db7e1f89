"""What the controller watches, how each kind is slimmed and indexed.

One `Watched` per kind: its REST collection, the transform that keeps only
what resolution reads, and the indexes resolution and event mapping query.
The `ClusterView` the compiler reads (`StoreView`) is answered from these
stores, so the pure core never sees where its objects came from.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from liqosec.api.peeringconnectivity import GROUP, KIND, PLURAL, VERSION
from liqosec.compiler.firewallconfiguration import MANAGED_BY, MANAGED_BY_LABEL, OWNER_LABEL
from liqosec.firewall.capabilities import FIREWALL_CRD_NAME
from liqosec.groups.view import INDEXED_LABELS, Obj
from liqosec.kube.client import ENDPOINT_SLICES, NAMESPACES, NODES, PODS, ResourceRef
from liqosec.kube.store import NAMESPACE_INDEX, Indexer, JsonDict, Store, index_by_label, index_by_namespace, slim, slim_pod

PEERING_CONNECTIVITIES = ResourceRef(GROUP, VERSION, PLURAL, True, KIND)
FIREWALL_CONFIGURATIONS = ResourceRef("networking.liqo.io", "v1beta1", "firewallconfigurations", True, "FirewallConfiguration")
CONFIGURATIONS = ResourceRef("networking.liqo.io", "v1beta1", "configurations", True, "Configuration")
NETWORKS = ResourceRef("ipam.liqo.io", "v1alpha1", "networks", True, "Network")
NAMESPACE_OFFLOADINGS = ResourceRef("offloading.liqo.io", "v1beta1", "namespaceoffloadings", True, "NamespaceOffloading")
FOREIGN_CLUSTERS = ResourceRef("core.liqo.io", "v1beta1", "foreignclusters", False, "ForeignCluster")
SERVICES = ResourceRef("", "v1", "services", True, "Service")
CRDS = ResourceRef("apiextensions.k8s.io", "v1", "customresourcedefinitions", False, "CustomResourceDefinition")

LABEL_INDEX = "label:"  # index name prefix: "label:<key>" -> label value


def _label_indexers() -> dict[str, Indexer]:
    return {f"{LABEL_INDEX}{key}": index_by_label(key) for key in INDEXED_LABELS}


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
    return {"metadata": {"name": (obj.get("metadata") or {}).get("name"), "resourceVersion": (obj.get("metadata") or {}).get("resourceVersion")}}


def _slim_node(obj: JsonDict) -> JsonDict:
    return {"metadata": slim(obj).get("metadata", {})}


@dataclass(frozen=True)
class Watched:
    ref: ResourceRef
    transform: Callable[[JsonDict], JsonDict] = slim
    indexers: Mapping[str, Indexer] = field(default_factory=dict)
    label_selector: str | None = None

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


def watched_resources() -> list[Watched]:
    namespaced = {NAMESPACE_INDEX: index_by_namespace}
    labelled = {**namespaced, **_label_indexers()}
    return [
        Watched(PEERING_CONNECTIVITIES, indexers=namespaced),
        Watched(
            FIREWALL_CONFIGURATIONS,
            indexers={**namespaced, OWNER_LABEL: index_by_label(OWNER_LABEL)},
            label_selector=f"{MANAGED_BY_LABEL}={MANAGED_BY}",
        ),
        Watched(PODS, transform=slim_pod, indexers=labelled),
        Watched(NODES, transform=_slim_node, indexers=_label_indexers()),
        Watched(NAMESPACES, transform=_slim_node, indexers=_label_indexers()),
        Watched(NETWORKS, indexers=labelled),
        Watched(CONFIGURATIONS, indexers=namespaced),
        Watched(NAMESPACE_OFFLOADINGS, indexers=namespaced),
        Watched(FOREIGN_CLUSTERS),
        Watched(SERVICES, transform=_slim_service, indexers=namespaced),
        Watched(ENDPOINT_SLICES, transform=_slim_endpoint_slice, indexers=labelled),
        Watched(CRDS, transform=_slim_crd),
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

    def by_label(self, kind: str, key: str, value: str) -> Iterable[Obj]:
        store = self._store(kind)
        if store is None:
            return ()
        try:
            return store.by_index(f"{LABEL_INDEX}{key}", value)
        except KeyError:  # not indexed for this kind: scan (small collections only)
            return [o for o in store.list() if ((o.get("metadata") or {}).get("labels") or {}).get(key) == value]

    def get(self, kind: str, name: str, namespace: str | None = None) -> Obj | None:
        store = self._store(kind)
        if store is None:
            return None
        return store.get(f"{namespace}/{name}" if namespace else name)

