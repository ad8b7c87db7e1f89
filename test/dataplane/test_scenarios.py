"""Scope: rendered scenarios on a real node: every ordered pair of endpoints probed, each cell held to the matrix."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from dataplane_support import check_cells, describe, policy_connects

from liqosec.dataplane import nft
from liqosec.dataplane.netns import Topology
from liqosec.firewall.capabilities import Capabilities
from liqosec.matrix import Matrix, build_matrix
from liqosec.render import load_objects, render

pytestmark = pytest.mark.dataplane

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = sorted((ROOT / "examples").glob("*.yaml")) + sorted((Path(__file__).parent / "scenarios").glob("*.yaml"))
MODES = {"stateless": Capabilities(), "stateful": Capabilities(ctstate=True)}
MakeTopology = Callable[[Sequence[str]], Topology]

# What a reader of the seeds expects, by endpoint name: (src, dst, stateless, stateful).
REMOTE_ROME, REMOTE_MILAN = "(remote-cluster/rome)", "(remote-cluster/milan)"
READER: dict[str, list[tuple[str, str, bool, bool]]] = {
    "quick-start.yaml": [
        (REMOTE_ROME, "shop-rome/cart-0", True, True),  # remote pods reach offloaded pods
        ("shop-rome/cart-0", REMOTE_ROME, True, True),  # and back
        ("shop-rome/cart-0", "default/web", False, False),  # offloaded pods reach nothing else
        ("default/web", "monitoring/metrics", True, True),  # local traffic is out of scope
    ],
    "provider-isolate-offloaded.yaml": [
        (REMOTE_ROME, "shop-rome/cart-0", True, True),
        ("shop-rome/cart-1", REMOTE_ROME, True, True),
        ("shop-rome/cart-0", "default/web", False, False),
        (REMOTE_ROME, "default/web", False, False),
        ("default/web", "monitoring/metrics", True, True),
    ],
    "consumer-vc-only.yaml": [
        ("shop/backend", "default/admin", True, True),  # vc-remote may talk
        (REMOTE_MILAN, "default/admin", False, False),  # the rest of milan may not
        ("default/admin", REMOTE_MILAN, False, True),  # milan's reply is denied unless established
    ],
    "mode-full-pod-to-pod.yaml": [
        (REMOTE_MILAN, "default/admin", True, True),
        ("default/admin", "shop/backend", True, True),
    ],
    "mode-segregation-consumer.yaml": [
        ("default/admin", "shop/backend", False, True),  # P1 -> P4, one-way: needs conntrack
        ("shop/backend", "default/admin", False, False),  # P4 -> P1 never
        (REMOTE_MILAN, "shop/frontend", False, True),  # P5 -> P2 (backend of S2), one-way
        (REMOTE_MILAN, "default/admin", False, False),
        ("default/admin", "shop/cache", True, True),  # inside the physical cluster
    ],
    "mode-segregation-provider.yaml": [
        (REMOTE_ROME, "shop-rome/cart-0", True, True),  # the consumer reaches its offloaded pods
        ("shop-rome/cart-0", "default/web", True, True),  # offloaded <-> local cluster allowed
        ("shop-rome/cart-0", "(internet)", True, True),  # P4 -> I2
        (REMOTE_ROME, "default/web", False, False),
    ],
    "ordering-deny-first.yaml": [
        (REMOTE_ROME, "shop/frontend", False, False),  # the earlier deny on vc-local wins
        (REMOTE_ROME, "default/web", True, True),
    ],
    "ordering-allow-first.yaml": [
        (REMOTE_ROME, "shop/frontend", True, True),  # the earlier allow on vc-local wins
        (REMOTE_ROME, "default/web", False, False),
    ],
    "namespace-party.yaml": [
        ("shop/cache", REMOTE_ROME, True, True),
        (REMOTE_ROME, "monitoring/metrics", False, False),
        ("default/web", REMOTE_ROME, False, False),
    ],
    "default-deny.yaml": [
        (REMOTE_ROME, "guest-rome/job-0", True, True),
        ("default/web", "shop/backend", False, True),  # one-way allow to vc-remote
        (REMOTE_ROME, "default/web", False, False),
    ],
    "two-peerings.yaml": [
        (REMOTE_ROME, "default/web", True, True),
        ("(remote-cluster/paris)", "guest-paris/task", False, False),
        (REMOTE_ROME, "guest-paris/task", False, False),  # rome allows it, paris does not
    ],
}


def _load(path: Path, caps: Capabilities) -> tuple[list[dict[str, Any]], Matrix]:
    objects = load_objects([str(path)])
    return render(objects, capabilities=caps), build_matrix(objects, capabilities=caps)


def _probe_scenario(topology: MakeTopology, path: Path, mode: str, report: list[tuple[str, int, int]]) -> None:
    fcs, matrix = _load(path, MODES[mode])
    names = {e.ip: e.name for e in matrix.endpoints}
    topo = topology([e.ip for e in matrix.endpoints])
    topo.nft(nft.fc_script(fcs))
    cells = check_cells(topo, matrix.connect)
    report.append((f"{path.name} [{mode}]", len(cells.observed), cells.agreed))
    assert not cells.disagreements, "packets and matrix disagree:\n" + describe(cells, names)
    meaning = policy_connects(load_objects([str(path)]), stateful=MODES[mode].ctstate)
    off = [f"{names[s]} -> {names[d]}: packets {v}" for (s, d), v in sorted(cells.observed.items()) if meaning(s, d) != v]
    assert not off, "packets differ from an independent reading of SEMANTICS.md:\n" + "\n".join(off)
    by_name = {e.name: e.ip for e in matrix.endpoints}
    wrong = []
    for src, dst, stateless, stateful in READER.get(path.name, []):
        want = stateless if mode == "stateless" else stateful
        seen = cells.observed[(by_name[src], by_name[dst])]
        if seen != want:
            wrong.append(f"{src} -> {dst}: packets say {seen}, a reader of the seeds expects {want}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_every_cell_matches_the_matrix(topology: MakeTopology, cell_report: Any, path: Path, mode: str) -> None:
    _probe_scenario(topology, path, mode, cell_report)


def test_every_scenario_has_reader_expectations() -> None:
    assert SCENARIOS, "no scenarios found"
    assert {p.name for p in SCENARIOS} <= set(READER), "add what a reader expects for new scenarios"


def test_one_way_allows_differ_between_stateless_and_stateful(topology: MakeTopology) -> None:
    """P1 -> P4 under segregation: the reply is dropped unless the firewall tracks state."""
    path = ROOT / "examples" / "mode-segregation-consumer.yaml"
    seen = {}
    for mode, caps in MODES.items():
        fcs, matrix = _load(path, caps)
        ip = {e.name: e.ip for e in matrix.endpoints}
        topo = topology(list(ip.values()))
        topo.nft(nft.fc_script(fcs))
        seen[mode] = topo.probe_pairs([(ip["default/admin"], ip["shop/backend"])]).popitem()[1]
        topo.close()
    assert seen == {"stateless": False, "stateful": True}
