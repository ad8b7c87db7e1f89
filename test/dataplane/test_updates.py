"""Scope: history through the real chain: pods arriving, leaving and changing, rules changed, policies deleted.

Each step changes objects in the API server; `liqosec run` recompiles and Liqo's agent
patches the live chains its own way (keep by name, append the new). Every cell is
probed after every step and held to the matrix of that step's objects.
"""

from __future__ import annotations

import copy
import random
import time
from pathlib import Path
from typing import Any

import pytest
from dataplane_support import check_cells, describe, policy_connects
from world import World

from harness.agents import EMPTY_ACCEPT, live_state
from liqosec.controller.resources import FIREWALL_CONFIGURATIONS
from liqosec.firewall.capabilities import STATELESS
from liqosec.inputs import load_objects
from liqosec.matrix import Matrix, build_matrix
from liqosec.render import render

pytestmark = pytest.mark.dataplane

HERE = Path(__file__).parent
ROOT = HERE.parents[1]


def _pod(name: str, ns: str, ip: str, labels: dict[str, str] | None = None, node: str | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels or {}},
        "spec": {"nodeName": node} if node else {},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]},
    }


OFFLOADED = {"offloading.liqo.io/origin": "rome", "liqo.io/managed-by": "shadowpod"}
# Pods arriving after the first step, each landing in a group some rule names.
ARRIVALS: list[list[dict[str, Any]]] = [
    [_pod("job-2", "guest-rome", "10.1.5.12", OFFLOADED), _pod("worker", "shop", "10.1.3.12")],
    [
        _pod("db", "shop", "10.71.3.8", {"liqo.io/shadowPod": "true"}, node="liqo-rome"),
        _pod("job-9", "guest-rome", "10.1.9.9", OFFLOADED),
        _pod("ops", "monitoring", "10.1.2.21"),
    ],
]
DEPARTURES = {("Pod", "job-0"), ("Pod", "frontend"), ("Pod", "db")}
GROWING = ["ordering-deny-first.yaml", "ordering-allow-first.yaml", "default-deny.yaml", "namespace-party.yaml"]


def _check(
    world: World, objects: list[dict[str, Any]], matrix_ips: Matrix, what: str, report: list[tuple[str, int, int]]
) -> None:
    matrix = build_matrix(objects)
    cells = check_cells(world.cluster, matrix.connect)
    report.append((what, len(cells.observed), cells.agreed))
    names = {e.ip: e.name for e in matrix_ips.endpoints}
    assert not cells.disagreements, f"{what}: packets and matrix disagree:\n" + describe(cells, names)
    meaning = policy_connects(objects, stateful=False)
    off = [f"{names[s]} -> {names[d]}: packets {v}" for (s, d), v in cells.observed.items() if meaning(s, d) != v]
    assert not off, f"{what}: packets differ from the policy's meaning:\n" + "\n".join(off)


def _node_orders(world: World) -> list[dict[tuple[str, str], list[str]]]:
    return [world.cluster.rule_names(i) for i in range(len(world.cluster.nodes))]


@pytest.mark.parametrize("scenario", GROWING)
def test_pods_added_then_removed_keep_verdicts_as_the_agent_appends(
    fresh: World, cell_report: Any, scenario: str
) -> None:
    objects = load_objects([str(HERE / "scenarios" / scenario)])
    steps = [objects]
    for batch in ARRIVALS:
        steps.append(steps[-1] + batch)
    final = build_matrix(steps[-1])
    # Then pods leave; their addresses stay as endpoints, now belonging to no pod.
    steps.append([o for o in steps[-1] if (o.get("kind"), o["metadata"].get("name")) not in DEPARTURES])
    # The controller writes intermediate versions as pods arrive one by one, and Liqo's agent appends
    # what each adds, so the node's rule order is history's: only the verdicts are checked here (the
    # order, step by step, is test_agent_fidelity.py's); `converge` checks every node holds exactly the rules.
    for n, objs in enumerate(steps):
        fresh.apply_and_settle(objs)
        if n == 0:
            fresh.place(final)
        _check(fresh, objs, final, f"update {scenario} step {n}", cell_report)


def test_a_pod_changing_address_and_labels_moves_between_groups(fresh: World, cell_report: Any) -> None:
    objects = load_objects([str(HERE / "scenarios" / "default-deny.yaml")])
    grown = objects + [_pod("mover", "guest-rome", "10.1.7.7", OFFLOADED)]
    fresh.apply_and_settle(grown)
    moved = copy.deepcopy(grown)
    mover = moved[-1]
    mover["status"] = {"phase": "Running", "podIP": "10.1.7.9", "podIPs": [{"ip": "10.1.7.9"}]}
    relabelled = copy.deepcopy(moved)
    relabelled[-1]["metadata"]["labels"] = {}
    everyone = build_matrix(grown)
    fresh.place(everyone, extra=["10.1.7.9"])
    for n, objs in enumerate([grown, moved, relabelled]):
        fresh.apply_and_settle(objs)
        _check(fresh, objs, build_matrix(objs), f"pod re-addressed/relabelled step {n}", cell_report)


def test_selector_parties_follow_pod_and_namespace_labels(fresh: World, cell_report: Any) -> None:
    """A pod relabelled into a podSelector, then a namespace relabelled out of a namespaceSelector
    and back: the live firewall follows each, with no change to the policy."""

    def relabelled(objs: list[dict[str, Any]], kind: str, name: str, **labels: str) -> list[dict[str, Any]]:
        out = copy.deepcopy(objs)
        target = next(o for o in out if o["kind"] == kind and o["metadata"]["name"] == name)
        target["metadata"]["labels"] = {**target["metadata"].get("labels", {}), **labels}
        return out

    base = load_objects([str(HERE / "scenarios" / "selector-parties.yaml")])
    cache_frontend = relabelled(base, "Pod", "cache", app="frontend")  # joins the shop frontends
    billing_web = relabelled(cache_frontend, "Namespace", "billing", team="web")  # leaves team NotIn web
    billing_back = relabelled(billing_web, "Namespace", "billing", team="money")
    steps = [base, cache_frontend, billing_web, billing_back]
    fresh.apply_and_settle(base)
    fresh.place(build_matrix(base))
    ip = {e.name: e.ip for e in build_matrix(base).endpoints}
    cache, rome = ip["shop/cache"], ip["(remote-cluster/rome)"]
    opened = []
    for n, objs in enumerate(steps):
        fresh.apply_and_settle(objs)
        _check(fresh, objs, build_matrix(objs), f"selector relabel step {n}", cell_report)
        opened.append(fresh.cluster.probe(cache, rome))
    assert opened == [False, True, True, True]  # the relabelled pod reaches rome once it is a frontend


def test_rules_changed_on_a_live_peering(fresh: World, cell_report: Any) -> None:
    """Rules reordered, flipped and removed: the agent keeps, replaces and appends; verdicts follow."""
    objects = load_objects([str(HERE / "scenarios" / "ordering-deny-first.yaml")])
    policy = next(o for o in objects if o["kind"] == "PeeringConnectivity")
    rest = [o for o in objects if o is not policy]
    rules = policy["spec"]["rules"]
    versions = [rules, list(reversed(rules)), [{**r, "action": "allow"} for r in rules], rules[:1], []]
    fresh.place(build_matrix(objects))
    for n, version in enumerate(versions):
        objs = [*rest, {**policy, "spec": {**policy["spec"], "rules": version}}]
        fresh.apply_and_settle(objs)
        _check(fresh, objs, build_matrix(objects), f"rules version {n} of ordering-deny-first", cell_report)


def _shuffled(fc: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """A hand-written copy of a compiled firewall, with its rules in another order and its own name."""
    table = fc["spec"]["table"]
    chains = []
    for c in table["chains"]:
        rules = list(c["rules"].get("filterRules") or ())  # a rule-less chain is stored as Liqo encodes it: {}
        rng.shuffle(rules)
        chains.append({**c, "rules": {"filterRules": rules} if rules else {}})
    meta = fc["metadata"]
    labels = {k: v for k, v in meta["labels"].items() if k.startswith("networking.liqo.io/")}
    return {
        "apiVersion": fc["apiVersion"],
        "kind": fc["kind"],
        "metadata": {"name": meta["name"] + "-shuffled", "namespace": meta["namespace"], "labels": labels},
        "spec": {"table": {**table, "chains": chains}},
    }


SCENARIOS = sorted((ROOT / "examples").glob("*.yaml")) + sorted((HERE / "scenarios").glob("*.yaml"))


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_any_rule_order_gives_the_same_verdicts(fresh: World, cell_report: Any, path: Path) -> None:
    """Whatever order history leaves the compiled rules in, packets get the same verdicts."""
    objects = load_objects([str(path)])
    rng = random.Random(path.name)
    shuffled = [_shuffled(fc, rng) for fc in render(objects, capabilities=STATELESS)]
    matrix = build_matrix(objects)
    fresh.put_firewalls(shuffled)
    fresh.place(matrix)
    orders = _node_orders(fresh)
    assert orders[0] == {
        (fc["spec"]["table"]["name"], c["name"]): [r["name"] for r in c["rules"].get("filterRules") or ()]
        for fc in shuffled
        for c in fc["spec"]["table"]["chains"]
    }, "the agent reordered rules"
    cells = check_cells(fresh.cluster, matrix.connect)
    cell_report.append((f"shuffled {path.name}", len(cells.observed), cells.agreed))
    names = {e.ip: e.name for e in matrix.endpoints}
    assert not cells.disagreements, "shuffled rules changed verdicts:\n" + describe(cells, names)


def test_deleting_a_policy_removes_its_firewall_and_restores_traffic(fresh: World) -> None:
    """Liqo's agents share one finalizer, so a deleted firewall can stay on a node that came late.

    liqosec empties a firewall and waits before deleting it: whatever a node keeps lets all through.
    """
    objects = load_objects([str(HERE / "scenarios" / "two-peerings.yaml")])
    fresh.apply_and_settle(objects)
    fresh.place(build_matrix(objects))
    assert not all(fresh.cluster.probe_pairs(fresh.cluster.all_pairs()).values())
    fresh.apply_and_settle([o for o in objects if o["kind"] != "PeeringConnectivity"], timeout=60)
    deadline = time.monotonic() + 60
    while fresh.kube.list(FIREWALL_CONFIGURATIONS, limit=10, continue_token=None)["items"]:
        assert time.monotonic() < deadline, "liqosec did not delete the retired firewalls"
        time.sleep(0.2)
    assert all(fresh.cluster.probe_pairs(fresh.cluster.all_pairs()).values())
    for node in range(len(fresh.cluster.nodes)):
        assert all(v == EMPTY_ACCEPT for v in live_state(fresh.cluster, node).values())
