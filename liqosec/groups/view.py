"""A read-only view of cluster objects: the seam between resolution and storage.

Resolution asks for objects by kind, namespace and label; the controller
answers from its indexed informer stores, `liqosec render` from the YAML it
read (`Snapshot`). Guarantees of every implementation:
- objects are API-shaped mappings (`metadata`, `spec`, `status`), never mutated
  by the caller;
- `by_label` returns exactly the objects of that kind carrying that label value.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

Obj = Mapping[str, Any]

# Label keys resolution looks objects up by; an indexed view must index these.
INDEXED_LABELS: tuple[str, ...] = (
    "offloading.liqo.io/origin",
    "liqo.io/shadowPod",
    "liqo.io/type",
    "liqo.io/remote-cluster-id",
    "ipam.liqo.io/network-type",
    "configuration.liqo.io/cidr-type",
)


class ClusterView(Protocol):
    def list(self, kind: str, namespace: str | None = None) -> Iterable[Obj]: ...

    def by_label(self, kind: str, key: str, value: str) -> Iterable[Obj]: ...

    def get(self, kind: str, name: str, namespace: str | None = None) -> Obj | None: ...


def meta(obj: Obj) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def labels(obj: Obj) -> Mapping[str, str]:
    return meta(obj).get("labels") or {}


class Snapshot:
    """An in-memory ClusterView over a fixed list of objects (render, matrix, tests)."""

    def __init__(self, objects: Iterable[Obj]) -> None:
        self._by_kind: dict[str, list[Obj]] = defaultdict(list)
        self._by_ns: dict[tuple[str, str], list[Obj]] = defaultdict(list)
        self._by_label: dict[tuple[str, str, str], list[Obj]] = defaultdict(list)
        self._by_name: dict[tuple[str, str, str], Obj] = {}
        for obj in objects:
            kind = str(obj.get("kind", ""))
            ns = str(meta(obj).get("namespace") or "")
            self._by_kind[kind].append(obj)
            self._by_ns[(kind, ns)].append(obj)
            self._by_name[(kind, ns, str(meta(obj).get("name", "")))] = obj
            for key, value in labels(obj).items():
                self._by_label[(kind, key, str(value))].append(obj)

    def list(self, kind: str, namespace: str | None = None) -> Iterable[Obj]:
        if namespace is None:
            return tuple(self._by_kind.get(kind, ()))
        return tuple(self._by_ns.get((kind, namespace), ()))

    def by_label(self, kind: str, key: str, value: str) -> Iterable[Obj]:
        return tuple(self._by_label.get((kind, key, value), ()))

    def get(self, kind: str, name: str, namespace: str | None = None) -> Obj | None:
        return self._by_name.get((kind, namespace or "", name))
