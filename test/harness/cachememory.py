"""What a cached object costs: the bench's memory measure and the node-name index the tests and the bench use
(the controller indexes pods by namespace and origin only)."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterable, Mapping

from liqosec.kube.store import Indexer, JsonDict, Store, Transform

NODE_NAME_INDEX = "spec.nodeName"


def index_by_node_name(obj: JsonDict) -> list[str]:
    node = (obj.get("spec") or {}).get("nodeName")
    return [node] if node else []


def measure_bytes_per_object(
    objects: Iterable[JsonDict],
    *,
    transform: Transform | None = None,
    indexers: Mapping[str, Indexer] | None = None,
) -> float:
    """Memory held per cached object (tracemalloc), with the given transform and indexes.

    A bench helper: it allocates a fresh ``Store``; ``objects`` should be produced lazily so the
    inputs themselves are not counted.
    """
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        store = Store(indexers=indexers, transform=transform)
        count = 0
        for obj in objects:
            store.add(obj)
            count += 1
        after = tracemalloc.get_traced_memory()[0]
    finally:
        if not was_tracing:
            tracemalloc.stop()
    if count == 0:
        raise ValueError("no objects to measure")
    return (after - before) / count
