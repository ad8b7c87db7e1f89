"""Scope: per-node firewalls (`--firewall-scope per-node`) through Liqo's real agent on three node namespaces.

Each pod of a scenario runs on one of three nodes (its `nodeName` rewritten round robin) and its
endpoint namespace hangs off that node. Addresses no node hosts (the peer's pods, the internet)
hang off worker-0, which then only forwards them, as a gateway node does. Every cell with an end
on a node is probed with real TCP connects against `liqosec matrix`, which gives every node the
whole all-nodes firewall: the per-node split must not change one verdict. A cell with no end on a
node never crosses this cluster's nodes, so it is not probed.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import pytest
from dataplane_support import check_cells, describe
from world import World

from harness.agents import node_name
from liqosec.api.liqo import NODE_TYPE, SHADOW_POD, VIRTUAL_NODE
from liqosec.controller.resources import FIREWALL_CONFIGURATIONS
from liqosec.groups.readers import pod_addresses
from liqosec.inputs import load_objects
from liqosec.matrix import build_matrix

pytestmark = pytest.mark.dataplane

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = sorted((ROOT / "examples").glob("*.yaml")) + sorted((Path(__file__).parent / "scenarios").glob("*.yaml"))
NODES = 3
GATEWAY_NODE = 0


def on_nodes(objects: list[dict[str, Any]], nodes: int = NODES) -> list[dict[str, Any]]:
    """The scenario with its pods of physical nodes spread over worker-0..n-1 (virtual nodes kept)."""
    virtual = {
        o["metadata"]["name"]
        for o in objects
        if o.get("kind") == "Node" and (o["metadata"].get("labels") or {}).get(NODE_TYPE) == VIRTUAL_NODE
    }
    out, i = [], 0
    for obj in objects:
        if obj.get("kind") == "Node" and obj["metadata"]["name"] not in virtual:
            continue  # the world has its own physical nodes
        if obj.get("kind") == "Pod" and (obj.get("spec") or {}).get("nodeName") not in virtual:
            if (obj["metadata"].get("labels") or {}).get(SHADOW_POD) != "true":
                obj = copy.deepcopy(obj)
                obj.setdefault("spec", {})["nodeName"] = node_name(i % nodes)
                i += 1
        out.append(obj)
    return out


def hosted(objects: list[dict[str, Any]], nodes: int = NODES) -> dict[str, int]:
    """Pod address -> index of the physical node running it."""
    index = {node_name(i): i for i in range(nodes)}
    out = {}
    for pod in (o for o in objects if o.get("kind") == "Pod"):
        node = (pod.get("spec") or {}).get("nodeName")
        if node in index:
            for ip in pod_addresses(pod)[0]:
                out[ip] = index[node]
    return out


def probe(world: World, objects: list[dict[str, Any]], report: list[tuple[str, int, int]], what: str) -> None:
    matrix = build_matrix(objects)
    world.apply_and_settle(objects)
    world.wait_ready(objects)
    names = {e.ip: e.name for e in matrix.endpoints}
    where = hosted(objects)
    world.cluster.attach({ip: where.get(ip, GATEWAY_NODE) for ip in names}, names)
    pairs = [(s, d) for s in names for d in names if s != d and (s in where or d in where)]
    cells = check_cells(world.cluster, matrix.connect, pairs)
    report.append((f"{what} [per-node, Liqo agent, {len(world.cluster.nodes)} nodes]", len(pairs), cells.agreed))
    assert not cells.disagreements, "packets and matrix disagree:\n" + describe(cells, names)


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_every_cell_with_an_end_on_a_node_matches_the_matrix(
    fresh_per_node: World, cell_report: Any, path: Path
) -> None:
    objects = on_nodes(load_objects([str(path)]))
    assert len({n for n in hosted(objects).values()}) > 1, "the scenario should put pods on several nodes"
    probe(fresh_per_node, objects, cell_report, path.name)


def _versions(world: World) -> dict[str, str]:
    items = world.kube.list(FIREWALL_CONFIGURATIONS, limit=500, continue_token=None)["items"]
    return {fc["metadata"]["name"]: fc["metadata"]["resourceVersion"] for fc in items}


def offloaded_pod(name: str, ip: str, node: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop-rome", "labels": {"offloading.liqo.io/origin": "rome"}},
        "spec": {"nodeName": node_name(node), "containers": [{"name": "c", "image": "x"}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]},
    }


def test_a_pod_arriving_rewrites_only_its_nodes_firewall(fresh_per_node: World, cell_report: Any) -> None:
    """Example 1 (offloaded pods talk to rome only): a new offloaded pod on worker-2 changes worker-2's object."""
    world = fresh_per_node
    objects = on_nodes(load_objects([str(ROOT / "examples" / "provider-isolate-offloaded.yaml")]))
    probe(world, objects, cell_report, "provider-isolate-offloaded.yaml, before")
    before = _versions(world)
    world.cluster.detach()
    grown = [*objects, offloaded_pod("cart-new", "10.1.77.77", 2)]
    probe(world, grown, cell_report, "provider-isolate-offloaded.yaml, a pod arrives on worker-2")
    time.sleep(0.5)  # any further write would have been made by now (batch window 0.05 s)
    after = _versions(world)
    changed = sorted(n for n in after if before.get(n) != after[n])
    assert changed == [f"liqosec-rome-node-{node_name(2)}"], (before, after)
