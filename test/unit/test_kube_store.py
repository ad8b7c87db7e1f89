"""Scope: Store keys, indexes, replace deltas, slim transforms and memory per cached pod."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.cachememory import NODE_NAME_INDEX, index_by_node_name, measure_bytes_per_object
from harness.peek import index_values
from liqosec.api.liqo import ORIGIN as ORIGIN_LABEL
from liqosec.kube.store import (
    NAMESPACE_INDEX,
    Store,
    index_by_label,
    index_by_namespace,
    object_key,
    slim,
    slim_pod,
)


def pod(
    name: str, ns: str = "default", *, rv: str = "1", node: str | None = None, labels: dict[str, str] | None = None
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "metadata": {
            "name": name,
            "namespace": ns,
            "resourceVersion": rv,
            "uid": f"uid-{name}",
            "labels": labels or {},
        },
        "spec": {},
        "status": {"phase": "Running", "podIP": "10.0.0.1", "podIPs": [{"ip": "10.0.0.1"}]},
    }
    if node:
        obj["spec"]["nodeName"] = node
    return obj


def indexed_store() -> Store:
    return Store(
        indexers={
            NAMESPACE_INDEX: index_by_namespace,
            NODE_NAME_INDEX: index_by_node_name,
            ORIGIN_LABEL: index_by_label(ORIGIN_LABEL),
        }
    )


def test_keys_are_namespace_slash_name_or_name() -> None:
    assert object_key(pod("a", "ns")) == "ns/a"
    assert object_key({"metadata": {"name": "node1"}}) == "node1"
    with pytest.raises(ValueError):
        object_key({"metadata": {}})


def test_indexes_follow_updates_and_deletes() -> None:
    store = indexed_store()
    store.add(pod("a", node="n1", labels={ORIGIN_LABEL: "c1"}))
    store.add(pod("b", "other", node="n1"))
    assert {o["metadata"]["name"] for o in store.by_index(NODE_NAME_INDEX, "n1")} == {"a", "b"}
    assert [o["metadata"]["name"] for o in store.by_index(ORIGIN_LABEL, "c1")] == ["a"]
    store.update(pod("a", rv="2", node="n2", labels={ORIGIN_LABEL: "c2"}))
    assert [o["metadata"]["name"] for o in store.by_index(NODE_NAME_INDEX, "n1")] == ["b"]
    assert store.by_index(ORIGIN_LABEL, "c1") == []
    assert [o["metadata"]["name"] for o in store.by_index(ORIGIN_LABEL, "c2")] == ["a"]
    store.delete(pod("b", "other"))
    assert store.by_index(NAMESPACE_INDEX, "other") == []
    assert index_values(store, NODE_NAME_INDEX) == ["n2"]


def test_unknown_index_is_an_error() -> None:
    with pytest.raises(KeyError):
        Store().by_index("nope", "x")


def test_replace_reports_adds_updates_and_deletes() -> None:
    store = indexed_store()
    store.replace([pod("keep"), pod("change"), pod("gone")], "10")
    delta = store.replace([pod("keep"), pod("change", rv="2"), pod("new")], "20")
    assert [o["metadata"]["name"] for o in delta.added] == ["new"]
    assert [(o["metadata"]["resourceVersion"], n["metadata"]["resourceVersion"]) for o, n in delta.updated] == [
        ("1", "2")
    ]
    assert [o["metadata"]["name"] for o in delta.deleted] == ["gone"]
    assert sorted(store.keys()) == ["default/change", "default/keep", "default/new"]
    assert len(store.by_index(NAMESPACE_INDEX, "default")) == 3


def test_transform_is_applied_before_indexing() -> None:
    store = Store(indexers={NODE_NAME_INDEX: index_by_node_name}, transform=slim_pod)
    full = pod("a", node="n1")
    full["spec"]["containers"] = [{"name": "c", "image": "x"}]
    store.add(full)
    stored = store.get("default/a")
    assert stored is not None and "containers" not in stored["spec"]
    assert store.by_index(NODE_NAME_INDEX, "n1") == [stored]


def test_slim_pod_keeps_only_resolution_fields() -> None:
    full = pod("a", node="n1", labels={"app": "x"})
    full["metadata"]["managedFields"] = [{"manager": "kubelet"}]
    full["metadata"]["annotations"] = {"a": "b"}
    full["metadata"]["ownerReferences"] = [
        {"apiVersion": "v1", "kind": "ReplicaSet", "name": "rs", "uid": "u", "blockOwnerDeletion": True}
    ]
    full["spec"].update(hostNetwork=True, containers=[{"name": "c"}])
    full["status"]["conditions"] = [{"type": "Ready"}]
    assert slim_pod(full) == {
        "metadata": {
            "name": "a",
            "namespace": "default",
            "uid": "uid-a",
            "resourceVersion": "1",
            "labels": {"app": "x"},
            "ownerReferences": [{"apiVersion": "v1", "kind": "ReplicaSet", "name": "rs", "uid": "u"}],
        },
        "spec": {"nodeName": "n1", "hostNetwork": True},
        "status": {"phase": "Running", "podIP": "10.0.0.1", "podIPs": [{"ip": "10.0.0.1"}]},
    }


def test_slim_drops_managed_fields_and_last_applied_without_touching_input() -> None:
    obj: dict[str, Any] = {
        "metadata": {
            "name": "x",
            "managedFields": [{}],
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}", "keep": "1"},
        },
        "spec": {"a": 1},
    }
    out = slim(obj)
    assert out["metadata"] == {"name": "x", "annotations": {"keep": "1"}}
    assert out["spec"] is obj["spec"]
    assert "managedFields" in obj["metadata"]
    clean = {"metadata": {"name": "y"}}
    assert slim(clean) is clean


def test_concurrent_writers_keep_indexes_consistent() -> None:
    store = indexed_store()

    def writer(offset: int) -> None:
        for i in range(300):
            store.add(pod(f"p{i % 50}", node=f"n{(i + offset) % 3}", rv=str(i)))

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    by_node = sum(len(store.by_index(NODE_NAME_INDEX, f"n{k}")) for k in range(3))
    assert by_node == len(store) == 50


def realistic_pods(count: int) -> Iterator[dict[str, Any]]:
    for i in range(count):
        p = pod(
            f"web-{i:05d}-abcde",
            f"ns-{i % 20}",
            rv=str(100000 + i),
            node=f"node-{i % 50}",
            labels={"app": "web", "pod-template-hash": "7f9c8", ORIGIN_LABEL: "cluster-a"},
        )
        p["metadata"]["managedFields"] = [{"manager": "kubelet", "fieldsV1": {"f:status": {}}}]
        p["metadata"]["ownerReferences"] = [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7f9c8", "uid": "rs-uid", "controller": True}
        ]
        p["spec"]["containers"] = [{"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}]
        p["status"]["podIP"] = f"10.{i // 65536}.{(i // 256) % 256}.{i % 256}"
        p["status"]["podIPs"] = [{"ip": p["status"]["podIP"]}]
        yield p


def test_slim_pods_cost_under_2kib_each_in_cache() -> None:
    indexers = {
        NAMESPACE_INDEX: index_by_namespace,
        NODE_NAME_INDEX: index_by_node_name,
        ORIGIN_LABEL: index_by_label(ORIGIN_LABEL),
    }
    per_pod = measure_bytes_per_object(realistic_pods(2000), transform=slim_pod, indexers=indexers)
    assert 0 < per_pod < 1536


def test_slim_pods_share_what_repeats_and_keep_what_resolution_reads() -> None:
    a, b = (pod(n, node="n1", labels={"app": "x"}) for n in ("a", "b"))
    for p in (a, b):
        p["metadata"]["generation"] = 3
        p["status"]["podIPs"] = [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}]
        p["status"]["podIP"] = ".".join(["10", "0", "0", "1"])  # decoded apart from podIPs' string, as JSON does
    slim_a, slim_b = slim_pod(a), slim_pod(b)
    assert slim_a["spec"] is slim_b["spec"] == {"nodeName": "n1"}  # one spec per node
    assert slim_a["metadata"]["labels"] is slim_b["metadata"]["labels"]
    assert slim_a["status"]["podIPs"][0]["ip"] is slim_a["status"]["podIP"]
    ips = [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}]
    assert slim_a["status"] == {"phase": "Running", "podIP": "10.0.0.1", "podIPs": ips}
    assert "generation" not in slim_a["metadata"]  # nothing reads a pod's
    assert slim_pod({**a, "spec": {"nodeName": "n1", "hostNetwork": True}})["spec"] == {
        "nodeName": "n1",
        "hostNetwork": True,
    }
    assert slim_pod({**a, "spec": {}})["spec"] == {}


@given(st.lists(st.dictionaries(st.sampled_from("abcdef"), st.integers(1, 3)), min_size=1, max_size=6))
def test_replaying_replace_deltas_reproduces_every_list(states: list[dict[str, int]]) -> None:
    store = Store()
    view: dict[str, str] = {}  # what a handler fed only by deltas believes
    for rv, state in enumerate(states):
        delta = store.replace([pod(n, rv=str(v)) for n, v in state.items()], str(rv))
        for o in delta.added:
            assert object_key(o) not in view, "add for an object already seen"
            view[object_key(o)] = o["metadata"]["resourceVersion"]
        for old, new in delta.updated:
            assert view[object_key(old)] == old["metadata"]["resourceVersion"]
            assert old["metadata"]["resourceVersion"] != new["metadata"]["resourceVersion"]
            view[object_key(new)] = new["metadata"]["resourceVersion"]
        for o in delta.deleted:
            assert view.pop(object_key(o)) == o["metadata"]["resourceVersion"]
        assert view == {f"default/{n}": str(v) for n, v in state.items()}
