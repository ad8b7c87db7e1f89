"""Scope: seeded random PeeringConnectivity policies through liqosec and Liqo's agent: every cell against the matrix."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from dataplane_support import check_cells, describe, policy_connects
from world import World

from liqosec.inputs import load_objects
from liqosec.matrix import build_matrix

pytestmark = pytest.mark.dataplane

CLUSTER = Path(__file__).parent / "scenarios" / "two-peerings.yaml"
# Each is ~130 cells, about 1 s of probing plus the apply. LQS_RANDOM_POLICIES=100 for a long soak.
POLICIES = int(os.environ.get("LQS_RANDOM_POLICIES", "12"))
GROUPS = ["local-cluster", "remote-cluster", "offloaded", "vc-local", "vc-remote", "private-subnets"]
NAMESPACES = ["default", "monitoring", "shop", "guest-rome", "guest-paris"]


def _party(rng: random.Random) -> dict[str, str] | None:
    roll = rng.random()
    if roll < 0.35:
        return None
    if roll < 0.8:
        return {"group": rng.choice(GROUPS)}
    return {"namespace": rng.choice(NAMESPACES)}


def _spec(rng: random.Random) -> dict[str, Any]:
    rules = []
    for _ in range(rng.randint(0, 6)):
        rule: dict[str, Any] = {}
        for side in ("source", "destination"):
            party = _party(rng)
            if party:
                rule[side] = party
        action = rng.choice(["allow", "deny", None])
        if action:
            rule["action"] = action
        rules.append(rule)
    spec: dict[str, Any] = {"rules": rules}
    if rng.random() < 0.3:
        spec["defaultAction"] = "deny"
    if rng.random() < 0.2:
        spec["securityMode"] = "IntraClusterTrafficSegregation"
    return spec


def _cluster() -> list[dict[str, Any]]:
    return [o for o in load_objects([str(CLUSTER)]) if o.get("kind") != "PeeringConnectivity"]


def _policies(seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [
        {
            "apiVersion": "security.liqo.io/v1",
            "kind": "PeeringConnectivity",
            "metadata": {"name": peer, "namespace": f"liqo-tenant-{peer}"},
            "spec": _spec(rng),
        }
        for peer in ("rome", "paris")
    ]


@pytest.fixture(scope="module")
def node(world: World) -> Iterator[World]:
    """The cluster's objects and endpoints stay; each test swaps the two policies."""
    world.apply_and_settle(_cluster() + _policies(0))
    world.place(build_matrix(_cluster() + _policies(0)))
    try:
        yield world
    finally:
        world.reset()


@pytest.mark.parametrize("seed", range(1, POLICIES + 1))
def test_random_policy_cells_match_the_matrix(node: World, cell_report: Any, seed: int) -> None:
    objects = _cluster() + _policies(seed)
    matrix = build_matrix(objects)
    assert {e.ip for e in matrix.endpoints} <= set(node.cluster.endpoints)
    node.apply_and_settle(objects)
    cells = check_cells(node.cluster, matrix.connect)
    cell_report.append((f"random policy seed {seed}", len(cells.observed), cells.agreed))
    names = {e.ip: e.name for e in matrix.endpoints}
    policy = yaml.safe_dump([p["spec"] for p in _policies(seed)], sort_keys=False)
    assert not cells.disagreements, f"policy:\n{policy}\n" + describe(cells, names)
    meaning = policy_connects(objects, stateful=False)
    off = {p: seen for p, seen in cells.observed.items() if meaning(*p) != seen}
    cell_report.append(
        (f"random policy seed {seed} vs docs/semantics.md reading", len(cells.observed), len(cells.observed) - len(off))
    )
    assert not off, f"policy:\n{policy}\npackets differ from the policy's meaning: " + ", ".join(
        f"{names[s]} -> {names[d]}: packets {v}" for (s, d), v in sorted(off.items())
    )
