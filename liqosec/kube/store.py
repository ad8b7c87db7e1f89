"""Thread-safe object cache with secondary indexes, fed by a reflector.

Guarantees:
- Keys are ``namespace/name`` for namespaced objects and ``name`` otherwise (``object_key``).
- Every mutation (``add``/``update``/``delete``/``replace``) is atomic under one lock: readers
  see the store before or after it, never between, and indexes always match the items.
- ``transform`` runs on every object before it is stored, so the store holds slim copies
  (``slim_pod``, ``slim``); indexers see the transformed object.
- ``replace`` returns the exact difference against the previous content (added, updated with
  a changed resourceVersion, deleted), which is what a reflector must replay after a relist.

Caller duties:
- Never mutate an object the store returns (or one you passed in): it is shared with every
  other reader and with the indexes. Copy before editing.
- Slim copies share identical label maps, owner-reference lists and (pods on one node) specs
  between objects: one more reason never to mutate them.
- Indexers must be pure and fast; they run under the store lock.
"""

from __future__ import annotations

import builtins
import sys
import threading
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cachetools import LRUCache

JsonDict = dict[str, Any]
Indexer = Callable[[JsonDict], list[str]]
Transform = Callable[[JsonDict], JsonDict]

NAMESPACE_INDEX = "namespace"
_LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def object_key(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    name = meta.get("name")
    if not name:
        raise ValueError("object has no metadata.name: cannot key it")
    namespace = meta.get("namespace")
    return f"{namespace}/{name}" if namespace else str(name)


def resource_version(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


def index_by_namespace(obj: JsonDict) -> list[str]:
    namespace = (obj.get("metadata") or {}).get("namespace")
    return [namespace] if namespace else []


def index_by_label(label_key: str) -> Indexer:
    """An indexer on one label's value (objects without the label are not indexed)."""

    def indexer(obj: JsonDict) -> list[str]:
        value = ((obj.get("metadata") or {}).get("labels") or {}).get(label_key)
        return [value] if isinstance(value, str) else []

    return indexer


def _intern(value: Any) -> Any:
    # Namespaces, node names, label keys/values and phases repeat across thousands of pods;
    # interning makes each distinct string cost once.
    return sys.intern(value) if isinstance(value, str) else value


# Label sets and owner references repeat across every replica of a workload; slim copies share
# one instance per distinct value (about a quarter of a slim pod's footprint). Bounded so unique
# label sets (StatefulSet pod names) cannot grow it without limit.
_SHARED_VALUES_MAX = 8192
_shared: LRUCache[Hashable, Any] = LRUCache(maxsize=_SHARED_VALUES_MAX)
_shared_lock = threading.Lock()


def _share(key: Hashable, build: Callable[[], Any]) -> Any:
    with _shared_lock:
        value = _shared.get(key)
        if value is None:
            value = _shared[key] = build()
        return value


def _slim_metadata(meta: Mapping[str, Any], *, keep_owners: bool) -> JsonDict:
    out: JsonDict = {}
    # Not a pod's `generation`: nothing reads it, and a sixth key grows every pod's dict by half.
    for key in ("name", "namespace", "uid", "resourceVersion", "deletionTimestamp"):
        if key in meta:
            out[key] = _intern(meta[key]) if key == "namespace" else meta[key]
    labels = meta.get("labels")
    if labels:
        out["labels"] = _share(
            ("labels", *sorted(labels.items())),
            lambda: {_intern(k): _intern(v) for k, v in labels.items()},
        )
    owners = meta.get("ownerReferences") if keep_owners else None
    if owners:
        slim_owners = [{k: o[k] for k in ("apiVersion", "kind", "name", "uid", "controller") if k in o} for o in owners]
        out["ownerReferences"] = _share(
            ("owners", *(tuple(sorted(o.items())) for o in slim_owners)), lambda: slim_owners
        )
    return out


def slim_pod(pod: JsonDict) -> JsonDict:
    """Keep only what address resolution needs: identity, labels, node, phase and IPs."""
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    out: JsonDict = {"metadata": _slim_metadata(pod.get("metadata") or {}, keep_owners=True)}
    node, host_network = spec.get("nodeName") or None, bool(spec.get("hostNetwork"))
    out["spec"] = _share(("spec", node, host_network), lambda: _slim_spec(node, host_network))  # one per node
    slim_status: JsonDict = {}
    if "phase" in status:
        slim_status["phase"] = _intern(status["phase"])
    pod_ip = status.get("podIP")
    if pod_ip:
        slim_status["podIP"] = pod_ip
    if status.get("podIPs"):
        # The first of podIPs is podIP: one string for both.
        ips = [p["ip"] for p in status["podIPs"] if "ip" in p]
        slim_status["podIPs"] = [{"ip": pod_ip if ip == pod_ip else ip} for ip in ips]
    out["status"] = slim_status
    return out


def _slim_spec(node: str | None, host_network: bool) -> JsonDict:
    out: JsonDict = {}
    if node:
        out["nodeName"] = _intern(node)
    if host_network:
        out["hostNetwork"] = True
    return out


def slim(obj: JsonDict) -> JsonDict:
    """Drop what no controller reads: managedFields and the last-applied annotation."""
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return obj
    if "managedFields" not in meta and _LAST_APPLIED not in (meta.get("annotations") or {}):
        return obj
    new_meta = {k: v for k, v in meta.items() if k != "managedFields"}
    annotations = meta.get("annotations")
    if annotations and _LAST_APPLIED in annotations:
        new_meta["annotations"] = {k: v for k, v in annotations.items() if k != _LAST_APPLIED}
    return {**obj, "metadata": new_meta}


@dataclass(frozen=True)
class Delta:
    """What ``replace`` changed: objects as stored (transformed)."""

    added: list[JsonDict] = field(default_factory=list)
    updated: list[tuple[JsonDict, JsonDict]] = field(default_factory=list)
    deleted: list[JsonDict] = field(default_factory=list)


def _identity(obj: JsonDict) -> JsonDict:
    return obj


class Store:
    """Items by key plus named indexes ``index name -> value -> keys``."""

    def __init__(
        self,
        *,
        indexers: Mapping[str, Indexer] | None = None,
        transform: Transform | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._items: dict[str, JsonDict] = {}
        self._indexers: dict[str, Indexer] = dict(indexers or {})
        self._indices: dict[str, dict[str, set[str]]] = {name: {} for name in self._indexers}
        self._transform: Transform = transform or _identity
        self._generation = 0  # bumped by every change: lets readers keep what they derived

    @property
    def generation(self) -> int:
        """Changes so far; equal generations, equal contents."""
        return self._generation

    # ----- index bookkeeping (lock held) -----
    def _unindex(self, key: str, obj: JsonDict) -> None:
        for name, indexer in self._indexers.items():
            index = self._indices[name]
            for value in indexer(obj):
                keys = index.get(value)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del index[value]

    def _index(self, key: str, obj: JsonDict) -> None:
        for name, indexer in self._indexers.items():
            index = self._indices[name]
            for value in indexer(obj):
                index.setdefault(value, set()).add(key)

    def _put(self, obj: JsonDict) -> tuple[JsonDict | None, JsonDict]:
        stored = self._transform(obj)
        key = object_key(stored)
        old = self._items.get(key)
        if old is not None:
            self._unindex(key, old)
        self._items[key] = stored
        self._index(key, stored)
        self._generation += 1
        return old, stored

    # ----- mutations -----
    def add(self, obj: JsonDict) -> tuple[JsonDict | None, JsonDict]:
        """Insert or overwrite; returns ``(previous, stored)``."""
        with self._lock:
            return self._put(obj)

    update = add

    def delete(self, obj: JsonDict) -> JsonDict | None:
        """Remove by the object's key; returns what was stored, or None."""
        key = object_key(obj)
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._unindex(key, old)
                self._generation += 1
            return old

    def transform(self, obj: JsonDict) -> JsonDict:
        """The copy this store would keep of ``obj`` (lets a lister slim pages as they arrive)."""
        return self._transform(obj)

    def replace(self, objs: Iterable[JsonDict], rv: str, *, transformed: bool = False) -> Delta:
        """Swap the whole content for ``objs`` (a full LIST at ``rv``); return the difference.

        ``transformed=True`` says ``objs`` already went through ``transform``.
        """
        delta = Delta()
        with self._lock:
            fresh: dict[str, JsonDict] = {}
            for obj in objs:
                stored = obj if transformed else self._transform(obj)
                fresh[object_key(stored)] = stored
            for key, old in list(self._items.items()):
                if key not in fresh:
                    self._unindex(key, old)
                    del self._items[key]
                    delta.deleted.append(old)
            for key, new in fresh.items():
                old_obj = self._items.get(key)
                if old_obj is None:
                    delta.added.append(new)
                elif resource_version(old_obj) != resource_version(new):
                    delta.updated.append((old_obj, new))
                else:
                    continue  # unchanged: keep the stored copy, emit nothing
                if old_obj is not None:
                    self._unindex(key, old_obj)
                self._items[key] = new
                self._index(key, new)
            if delta.added or delta.updated or delta.deleted:
                self._generation += 1
        return delta

    # ----- reads -----
    def get(self, key: str) -> JsonDict | None:
        with self._lock:
            return self._items.get(key)

    def list(self) -> list[JsonDict]:
        with self._lock:
            return list(self._items.values())

    def keys(self) -> builtins.list[str]:
        with self._lock:
            return list(self._items)

    def by_index(self, index_name: str, value: str) -> builtins.list[JsonDict]:
        with self._lock:
            if index_name not in self._indices:
                raise KeyError(f"no indexer named {index_name!r}")
            return [self._items[k] for k in self._indices[index_name].get(value, ())]

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
