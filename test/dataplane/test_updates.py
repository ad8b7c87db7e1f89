"""Scope: history on a real node: re-rendered policies applied the agent's way (appends) keep verdicts right."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from dataplane_support import check_cells, describe, policy_connects

from liqosec.dataplane import nft
from liqosec.dataplane.netns import Topology
from liqosec.firewall import agent
from liqosec.firewall.capabilities import Capabilities
from liqosec.matrix import build_matrix
from liqosec.render import load_objects, render

pytestmark = pytest.mark.dataplane

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
MODES = {"stateless": Capabilities(), "stateful": Capabilities(ctstate=True)}
MakeTopology = Callable[[Sequence[str]], Topology]


def _pod(name: str, ns: str, ip: str, labels: dict[str, str] | None = None,
         node: str | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": labels or {}},
            "spec": {"nodeName": node} if node else {},
            "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}}


OFFLOADED = {"offloading.liqo.io/origin": "rome", "liqo.io/managed-by": "shadowpod"}
# Pods arriving after the first render, each landing in a group some rule names.
ARRIVALS: list[list[dict[str, Any]]] = [
    [_pod("job-2", "guest-rome", "10.1.5.12", OFFLOADED), _pod("worker", "shop", "10.1.3.12")],
    [_pod("db", "shop", "10.71.3.8", {"liqo.io/shadowPod": "true"}, node="liqo-rome"),
     _pod("job-9", "guest-rome", "10.1.9.9", OFFLOADED), _pod("ops", "monitoring", "10.1.2.21")],
]
DEPARTURES = {("Pod", "job-0"), ("Pod", "frontend"), ("Pod", "db")}
GROWING = ["ordering-deny-first.yaml", "ordering-allow-first.yaml", "default-deny.yaml", "namespace-party.yaml"]


def _node_order(topo: Topology, fcs: list[dict[str, Any]]) -> dict[tuple[str, str], list[str | None]]:
    out: dict[tuple[str, str], list[str | None]] = {}
    for fc in fcs:
        table = fc["spec"]["table"]["name"]
        for chain, names in nft.rule_names(topo.nft_json("table", "ip", table), table=table).items():
            out[(table, chain)] = names
    return out


def _fc_order(fcs: list[dict[str, Any]]) -> dict[tuple[str, str], list[str | None]]:
    return {(fc["spec"]["table"]["name"], c["name"]): [r["name"] for r in c["rules"]["filterRules"]]
            for fc in fcs for c in fc["spec"]["table"]["chains"]}


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("scenario", GROWING)
def test_pods_added_then_removed_keep_verdicts_when_rules_are_appended(
        topology: MakeTopology, cell_report: Any, scenario: str, mode: str) -> None:
    caps = MODES[mode]
    objects = load_objects([str(HERE / "scenarios" / scenario)])
    steps = [objects]
    for batch in ARRIVALS:
        steps.append(steps[-1] + batch)
    final = build_matrix(steps[-1], capabilities=caps)
    # Then pods leave; their addresses stay as endpoints, now belonging to no pod.
    steps.append([o for o in steps[-1] if (o.get("kind"), o["metadata"].get("name")) not in DEPARTURES])
    topo = topology([e.ip for e in final.endpoints])
    state: agent.NodeState = agent.EMPTY
    for n, objs in enumerate(steps):
        fcs = render(objs, capabilities=caps)
        state = agent.apply(state, fcs)
        nft.apply_incremental(topo, fcs)
        live = _node_order(topo, fcs)
        assert live == {k: agent.rule_order(state, *k) for k in live}, "node order differs from the agent model"
        reordered = " (node order != FC order)" if live != _fc_order(fcs) else ""
        matrix = build_matrix(objs, capabilities=caps)
        cells = check_cells(topo, matrix.connect)
        cell_report.append((f"update {scenario} step {n} [{mode}]{reordered}", len(cells.observed), cells.agreed))
        names = {e.ip: e.name for e in final.endpoints}
        assert not cells.disagreements, f"step {n}: packets and matrix disagree:\n" + describe(cells, names)
        meaning = policy_connects(objs, stateful=caps.ctstate)
        off = [f"{names[s]} -> {names[d]}: packets {v}" for (s, d), v in cells.observed.items() if meaning(s, d) != v]
        assert not off, f"step {n}: packets differ from the policy's meaning:\n" + "\n".join(off)


def _shuffled(fc: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """The FC with its rules in another order; a ctstate accept stays first, as a fresh chain holds it."""
    table = fc["spec"]["table"]
    chains = []
    for c in table["chains"]:
        rules = list(c["rules"]["filterRules"])
        head = [r for r in rules if any("ctstate" in m for m in r.get("match") or ())]
        rest = [r for r in rules if r not in head]
        rng.shuffle(rest)
        chains.append({**c, "rules": {"filterRules": head + rest}})
    return {**fc, "spec": {"table": {**table, "chains": chains}}}


SCENARIOS = sorted((ROOT / "examples").glob("*.yaml")) + sorted((HERE / "scenarios").glob("*.yaml"))


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_any_rule_order_gives_the_same_verdicts(topology: MakeTopology, cell_report: Any,
                                                path: Path, mode: str) -> None:
    """Whatever order history leaves the compiled rules in, packets get the same verdicts."""
    objects = load_objects([str(path)])
    fcs = render(objects, capabilities=MODES[mode])
    matrix = build_matrix(objects, capabilities=MODES[mode])
    rng = random.Random(path.name)
    shuffled = [_shuffled(_shuffled(fc, rng), rng) for fc in fcs]
    topo = topology([e.ip for e in matrix.endpoints])
    topo.nft(nft.fc_script(shuffled))
    cells = check_cells(topo, matrix.connect)
    cell_report.append((f"shuffled {path.name} [{mode}]", len(cells.observed), cells.agreed))
    names = {e.ip: e.name for e in matrix.endpoints}
    assert not cells.disagreements, "shuffled rules changed verdicts:\n" + describe(cells, names)


def test_firewall_turning_stateful_puts_conntrack_first_on_a_live_node(topology: MakeTopology,
                                                                       cell_report: Any) -> None:
    """SEMANTICS 5: the agent appends, so the ctstate rule only comes first in a fresh chain."""
    path = ROOT / "examples" / "mode-segregation-consumer.yaml"
    objects = load_objects([str(path)])
    matrix = build_matrix(objects, capabilities=MODES["stateful"])
    ip = {e.name: e.ip for e in matrix.endpoints}
    topo = topology(list(ip.values()))
    state: agent.NodeState = agent.EMPTY
    for mode in ("stateless", "stateful", "stateless", "stateful"):
        fcs = render(objects, capabilities=MODES[mode])
        state = agent.apply(state, fcs)
        nft.apply_incremental(topo, fcs)
        live = _node_order(topo, fcs)
        assert live == {k: agent.rule_order(state, *k) for k in live}
        if mode == "stateful":
            assert all(names[0] == "accept-established-related" for names in live.values()), live
        cells = check_cells(topo, build_matrix(objects, capabilities=MODES[mode]).connect)
        cell_report.append((f"switch to {mode}: {path.name}", len(cells.observed), cells.agreed))
        assert not cells.disagreements, describe(cells, {v: k for k, v in ip.items()})
        assert topo.probe(ip["default/admin"], ip["shop/backend"]) is (mode == "stateful")  # P1 -> P4


def test_deleting_a_policy_removes_its_table_and_restores_traffic(topology: MakeTopology) -> None:
    objects = load_objects([str(HERE / "scenarios" / "two-peerings.yaml")])
    matrix = build_matrix(objects, capabilities=MODES["stateless"])
    topo = topology([e.ip for e in matrix.endpoints])
    fcs = render(objects, capabilities=MODES["stateless"])
    nft.apply_incremental(topo, fcs)
    assert not all(topo.probe_pairs(topo.all_pairs()).values())
    nft.apply_incremental(topo, [])
    assert nft.live_tables(topo) == []
    assert all(topo.probe_pairs(topo.all_pairs()).values())
