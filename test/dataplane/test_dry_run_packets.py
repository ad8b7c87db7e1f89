"""Scope: spec.enforcement through the real chain: a DryRun policy leaves every node without liqosec's
tables, and the pod pairs its report says enforcing would cut are exactly those real packets show cut once
it is enforced through Liqo's agent; back in DryRun, the firewall is retired and every pair connects again."""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import pytest
from world import World, key

from harness.objects import apply
from liqosec.controller.resources import PEERING_CONNECTIVITIES
from liqosec.inputs import load_objects
from liqosec.kube import errors
from liqosec.matrix import build_matrix

pytestmark = pytest.mark.dataplane

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = [
    ROOT / "examples" / "mode-protected-borders-provider.yaml",
    Path(__file__).parent / "scenarios" / "namespace-party.yaml",
]


def in_dry_run(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = copy.deepcopy(objects)
    for o in out:
        if o["kind"] == "PeeringConnectivity":
            o["spec"]["enforcement"] = "DryRun"
    return out


def put(world: World, objects: list[dict[str, Any]]) -> None:
    """The objects to the API server without waiting for firewalls (a dry run writes none)."""
    apply(world.kube, [o for o in objects if world.applied.get(key(o)) != o])
    world.applied = {key(o): o for o in objects}


def report(world: World, pc: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        live = world.kube.get(PEERING_CONNECTIVITIES, pc["metadata"]["name"], namespace=pc["metadata"]["namespace"])
        status = live.get("status") or {}
        if "dryRun" in status and status.get("observedGeneration") == live["metadata"]["generation"]:
            return dict(status["dryRun"])
        if time.monotonic() > deadline:
            raise TimeoutError(f"no dry-run report in {timeout:.0f}s: {status}")
        time.sleep(0.1)


def liqosec_tables(world: World) -> list[str]:
    return [f"{n}:{t}" for n in range(len(world.cluster.nodes)) for t in world.cluster.tables(n) if "liqosec" in t]


def wait_no_tables(world: World, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while liqosec_tables(world) or world.live_firewalls():
        if time.monotonic() > deadline:
            raise TimeoutError(f"still enforced: {liqosec_tables(world)}")
        time.sleep(0.1)


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_the_pairs_a_dry_run_reports_are_the_pairs_enforcing_cuts(
    fresh: World, cell_report: list[tuple[str, int, int]], path: Path
) -> None:
    enforced = load_objects([str(path)])
    dry = in_dry_run(enforced)
    [pc] = [o for o in dry if o["kind"] == "PeeringConnectivity"]
    matrix = build_matrix(enforced)
    put(fresh, dry)
    first = report(fresh, pc)
    assert liqosec_tables(fresh) == [] and fresh.live_firewalls() == []
    names = fresh.place(matrix)
    pods = [e.ip for e in matrix.endpoints if e.kind == "pod"]
    pairs = [(s, d) for s in pods for d in pods if s != d]
    before = fresh.cluster.probe_pairs(pairs)
    assert all(before.values()), "nothing is enforced in DryRun: every pair connects"

    fresh.apply_and_settle(enforced)  # Enforce: liqosec writes the firewall, Liqo's agents apply it
    after = fresh.cluster.probe_pairs(pairs)
    cut = {p for p in pairs if before[p] and not after[p]}
    opened = {p for p in pairs if after[p] and not before[p]}
    assert (len(cut), len(opened)) == (first["newlyDenied"], first["newlyAllowed"]), sorted(
        f"{names[s]} -> {names[d]}" for s, d in cut
    )
    assert first["pairs"] >= len(cut) and not first["capped"]
    assert {(p["sourceIP"], p["destinationIP"]) for p in first["newlyDeniedSample"]} <= cut
    # Every pair the packets cut is the matrix's verdict too: the dry run, the matrix and the agent agree.
    assert all(not matrix.connect(s, d) for s, d in cut)
    cell_report.append((f"{path.name} [DryRun report vs packets once enforced]", len(pairs), len(pairs)))

    put(fresh, dry)  # back to DryRun: the firewall is emptied, then deleted after the grace
    wait_no_tables(fresh)
    assert report(fresh, pc) == first
    assert all(fresh.cluster.probe_pairs(pairs).values())


# Staged beside the enforced ProtectedBorders policy: it opens the local pods to the offloaded ones and cuts
# the offloaded pods off each other.
TRIAL = [
    {"source": {"group": "offloaded"}, "destination": {"group": "offloaded"}, "action": "deny"},
]


def report_in_force(world: World, pc: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
    """The staged policy's report, once it compares with the enforced policy's firewall."""
    deadline = time.monotonic() + timeout
    while not (found := report(world, pc, timeout))["comparedWith"].startswith("the firewall in force"):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the report never compared with the enforced firewall: {found['comparedWith']}")
        time.sleep(0.1)
    return found


def enforce(world: World, pc: dict[str, Any]) -> None:
    """Write `pc`'s spec over the live policy, retrying while the controller writes its status meanwhile."""
    meta = pc["metadata"]
    for _ in range(20):
        live = world.kube.get(PEERING_CONNECTIVITIES, meta["name"], namespace=meta["namespace"])
        try:
            world.kube.update(PEERING_CONNECTIVITIES, {**live, "spec": pc["spec"]})
        except errors.Conflict:
            time.sleep(0.1)
            continue
        world.applied[key(pc)] = pc
        return
    raise TimeoutError(f"PeeringConnectivity {meta['name']} kept changing")


def test_promoting_a_staged_policy_changes_the_pairs_its_report_says(
    fresh: World, cell_report: list[tuple[str, int, int]]
) -> None:
    """Enforced and staged policies of one peering: the staged report, taken while the enforced firewall runs,
    is what real packets show once the staged policy replaces the enforced one through Liqo's agent."""
    enforced = load_objects([str(SCENARIOS[0])])
    [pc] = [o for o in enforced if o["kind"] == "PeeringConnectivity"]
    staged = copy.deepcopy(pc)
    staged["metadata"] = {"name": "trial", "namespace": pc["metadata"]["namespace"]}
    staged["spec"] = {"enforcement": "DryRun", "rules": TRIAL}
    fresh.apply_and_settle(enforced)
    tables = liqosec_tables(fresh)
    put(fresh, [*enforced, staged])
    first = report_in_force(fresh, staged)
    assert liqosec_tables(fresh) == tables  # the enforced firewall stays on every node
    assert first["newlyDenied"] > 0 and first["newlyAllowed"] > 0
    matrix = build_matrix(enforced)
    names = fresh.place(matrix)
    pods = [e.ip for e in matrix.endpoints if e.kind == "pod"]
    pairs = [(s, d) for s in pods for d in pods if s != d]
    before = fresh.cluster.probe_pairs(pairs)
    assert before == {(s, d): matrix.connect(s, d) for s, d in pairs}

    promoted = {**staged, "spec": {**staged["spec"], "enforcement": "Enforce"}}
    after_objs = [o for o in enforced if o is not pc] + [promoted]
    enforce(fresh, promoted)
    fresh.apply_and_settle(after_objs)  # the enforced policy deleted (its firewall retired), the staged one enforced
    after = fresh.cluster.probe_pairs(pairs)
    expected = build_matrix(after_objs)
    assert after == {(s, d): expected.connect(s, d) for s, d in pairs}
    cut = {p for p in pairs if before[p] and not after[p]}
    opened = {p for p in pairs if after[p] and not before[p]}
    assert (len(cut), len(opened)) == (first["newlyDenied"], first["newlyAllowed"]), sorted(
        f"{names[s]} -> {names[d]}" for s, d in cut | opened
    )
    assert {(p["sourceIP"], p["destinationIP"]) for p in first["newlyDeniedSample"]} <= cut
    assert {(p["sourceIP"], p["destinationIP"]) for p in first["newlyAllowedSample"]} <= opened
    cells = 2 * len(pairs)  # before and after the promotion, each against the matrix
    cell_report.append((f"{SCENARIOS[0].name} [staged report vs packets once promoted]", cells, cells))
