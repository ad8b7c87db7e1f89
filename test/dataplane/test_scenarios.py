"""Scope: scenarios through the real chain: every ordered pair probed across Liqo's agents, each cell vs the matrix.

The objects go to a real API server; `liqosec run` writes the FirewallConfigurations;
Liqo's agent applies them on two node namespaces; endpoints are spread over both.
Liqo v1.2.0 has no conntrack match, so filtering is stateless: the stateful column of
READER is what a firewall with the ctstate match would give, checked in unit tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from dataplane_support import check_cells, describe, policy_connects
from world import World

from liqosec.inputs import load_objects
from liqosec.matrix import build_matrix

pytestmark = pytest.mark.dataplane

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = sorted((ROOT / "examples").glob("*.yaml")) + sorted((Path(__file__).parent / "scenarios").glob("*.yaml"))

# What a reader of the seeds expects, by endpoint name: (src, dst, stateless, stateful).
REMOTE_ROME, REMOTE_MILAN = "(remote-cluster/rome)", "(remote-cluster/milan)"
# The one address each peer's masqueraded traffic arrives from (docs/semantics.md, "Liqo's behaviour ...").
MASQ_ROME, MASQ_MILAN = "(masquerade/rome)", "(masquerade/milan)"
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
        (MASQ_ROME, "default/web", False, False),  # rome's nodes and hostNetwork pods, masqueraded: rome's cluster
        (MASQ_ROME, "shop-rome/cart-0", True, True),  # judged as remote-cluster, which may reach offloaded
        ("default/web", "monitoring/metrics", True, True),
    ],
    "consumer-vc-only.yaml": [
        ("shop/backend", "default/admin", True, True),  # vc-remote may talk
        (REMOTE_MILAN, "default/admin", False, False),  # the rest of milan may not
        (MASQ_MILAN, "default/admin", False, False),  # under full masquerade backend's packets come from here
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
    "mode-protected-borders-consumer.yaml": [
        ("shop/frontend", "shop/backend", True, True),  # vc-local <-> vc-remote, both ways
        ("shop/backend", "shop/cache", True, True),
        ("default/admin", "shop/backend", False, False),  # outside the virtual cluster
        ("shop/backend", "default/admin", False, False),
        (REMOTE_MILAN, "shop/frontend", False, False),  # milan's other pods
        ("shop/frontend", REMOTE_MILAN, False, False),
        ("shop/backend", "(internet)", False, False),
        ("default/admin", "shop/cache", True, True),  # inside the physical cluster
    ],
    "mode-protected-borders-provider.yaml": [
        ("shop-rome/cart-0", "shop-rome/cart-1", True, True),  # offloaded <-> offloaded
        (REMOTE_ROME, "shop-rome/cart-0", False, False),  # rome's pods but the reflected backends are outside
        ("shop-rome/cart-0", "default/web", False, False),  # local pods are protected
        ("default/web", "shop-rome/cart-1", False, False),
        ("shop-rome/cart-0", "(internet)", False, False),
        ("shop-rome/cart-1", "monitoring/metrics", False, True),  # the hole, one way: needs conntrack
        ("monitoring/metrics", "shop-rome/cart-1", False, False),
        ("default/web", "monitoring/metrics", True, True),  # not the peering's traffic
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
    "selector-parties.yaml": [
        ("shop/frontend-0", REMOTE_ROME, True, True),  # app=frontend in shop: allowed both ways
        (REMOTE_ROME, "guest-rome/job-0", True, True),  # app=frontend offloaded here, in guest-rome
        ("default/web", REMOTE_ROME, False, False),  # app=frontend but not in shop or guest-rome
        ("shop/cache", REMOTE_ROME, False, False),  # in shop but not a frontend
        (REMOTE_ROME, "billing/ledger", False, False),  # team money: not web
        ("guest-rome/job-1", "default/web", False, False),  # offloaded batch pods are cut off
        ("guest-rome/job-0", "default/web", True, True),  # offloaded, not batch: default allow
        ("default/web", "billing/ledger", True, True),  # local traffic is out of scope
    ],
    "more-groups.yaml": [
        ("guest-rome/cart-0", "kube-system/coredns-0", True, True),  # offloaded -> nameserver, and back
        ("guest-rome/cart-1", "(leaf/rome)", True, True),  # rome's external CIDR
        ("guest-rome/cart-0", "(internet)", False, False),  # nothing public
        ("guest-rome/cart-0", "default/web", False, False),  # nor local pods
        (REMOTE_ROME, "guest-rome/cart-1", True, True),  # the dual-stack pod's IPv4 address is enforced
        ("default/web", "(internet)", True, True),  # local pods keep the Internet: not the peering's traffic
    ],
    "cluster-selector.yaml": [
        ("blog/renderer", "shop/front", False, False),  # shop's ClusterSelector left rome out: not rome's vc
        ("shop/backend", "blog/writer", False, False),  # nor is blog milan's
        ("blog/renderer", "blog/writer", True, True),  # rome's virtual cluster talks inside itself
        ("shop/backend", "shop/front", True, True),  # and so does milan's
        (MASQ_ROME, "blog/writer", False, False),  # rome's masqueraded traffic is outside its virtual cluster
    ],
    "two-peerings.yaml": [
        (REMOTE_ROME, "default/web", True, True),
        ("(remote-cluster/paris)", "guest-paris/task", False, False),
        (REMOTE_ROME, "guest-paris/task", False, False),  # rome allows it, paris does not
    ],
}


def probe_scenario(world: World, path: Path, report: list[tuple[str, int, int]]) -> None:
    objects = load_objects([str(path)])
    matrix = build_matrix(objects)
    world.apply_and_settle(objects)
    world.wait_ready(objects)  # Ready means Liqo's agent reports it applied on every node
    names = world.place(matrix)
    cells = check_cells(world.cluster, matrix.connect)
    report.append((f"{path.name} [Liqo agent, {len(world.cluster.nodes)} nodes]", len(cells.observed), cells.agreed))
    assert not cells.disagreements, "packets and matrix disagree:\n" + describe(cells, names)
    meaning = policy_connects(objects, stateful=False)
    off = [
        f"{names[s]} -> {names[d]}: packets {v}" for (s, d), v in sorted(cells.observed.items()) if meaning(s, d) != v
    ]
    assert not off, "packets differ from an independent reading of docs/semantics.md:\n" + "\n".join(off)
    by_name = {e.name: e.ip for e in matrix.endpoints}
    wrong = []
    for src, dst, stateless, _stateful in READER.get(path.name, []):
        seen = cells.observed[(by_name[src], by_name[dst])]
        if seen != stateless:
            wrong.append(f"{src} -> {dst}: packets say {seen}, a reader of the seeds expects {stateless}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_every_cell_matches_the_matrix(fresh: World, cell_report: Any, path: Path) -> None:
    probe_scenario(fresh, path, cell_report)


def test_every_scenario_has_reader_expectations() -> None:
    assert SCENARIOS, "no scenarios found"
    assert {p.name for p in SCENARIOS} <= set(READER), "add what a reader expects for new scenarios"


def test_endpoints_are_spread_over_every_node(fresh: World) -> None:
    """Cross-node pairs are what make two agents matter: each node must host endpoints."""
    objects = load_objects([str(ROOT / "examples" / "quick-start.yaml")])
    fresh.apply_and_settle(objects)
    fresh.place(build_matrix(objects))
    assert {e.node for e in fresh.cluster.endpoints.values()} == set(range(len(fresh.cluster.nodes)))


def test_one_way_allow_is_dropped_without_conntrack(fresh: World) -> None:
    """P1 -> P4 under segregation: Liqo v1.2.0 has no conntrack match, so the reply is dropped.

    This is what the StatelessFiltering condition warns about.
    """
    path = ROOT / "examples" / "mode-segregation-consumer.yaml"
    objects = load_objects([str(path)])
    matrix = build_matrix(objects)
    fresh.apply_and_settle(objects)
    fresh.place(matrix)
    ip = {e.name: e.ip for e in matrix.endpoints}
    assert fresh.cluster.probe(ip["default/admin"], ip["shop/backend"]) is False
    assert fresh.cluster.probe(ip["default/admin"], ip["shop/cache"]) is True  # inside the physical cluster
    (status,) = fresh.wait_ready(objects).values()
    warning = next(c for c in status["conditions"] if c["type"] == "StatelessFiltering")
    assert warning["status"] == "True" and "dropped" in warning["message"] and "do not open" in warning["message"]


def test_protected_borders_hole_is_named_in_the_status(fresh: World) -> None:
    """ProtectedBorders' explicit hole (offloaded -> monitoring) is one way: the packets drop its
    replies, and StatelessFiltering names the rule and the allow its replies need."""
    objects = load_objects([str(ROOT / "examples" / "mode-protected-borders-provider.yaml")])
    matrix = build_matrix(objects)
    fresh.apply_and_settle(objects)
    fresh.place(matrix)
    ip = {e.name: e.ip for e in matrix.endpoints}
    assert fresh.cluster.probe(ip["shop-rome/cart-0"], ip["monitoring/metrics"]) is False
    assert fresh.cluster.probe(ip["shop-rome/cart-0"], ip["shop-rome/cart-1"]) is True
    (status,) = fresh.wait_ready(objects).values()
    warning = next(c for c in status["conditions"] if c["type"] == "StatelessFiltering")
    assert warning["status"] == "True" and "do not open" in warning["message"]
    assert "spec.rules[0] (offloaded -> namespace:monitoring)" in warning["message"]
    assert "needs an allow of namespace:monitoring -> offloaded" in warning["message"]


def test_the_peers_masqueraded_traffic_is_judged_as_its_cluster(fresh: World) -> None:
    """Liqo SNATs the peer's non-pod traffic (all of it under full masquerade) to the first address of
    its external CIDR: through Liqo's agent, that source is cut where the policy cuts the peer."""
    objects = load_objects([str(ROOT / "examples" / "provider-isolate-offloaded.yaml")])
    matrix = build_matrix(objects)
    fresh.apply_and_settle(objects)
    fresh.wait_ready(objects)
    fresh.place(matrix)
    ip = {e.name: e.ip for e in matrix.endpoints}
    assert ip[MASQ_ROME] == "10.72.0.0"  # status.remote.cidr.external[0] = 10.72.0.0/16, its first address
    assert fresh.cluster.probe(ip[MASQ_ROME], ip["default/web"]) is False
    assert fresh.cluster.probe(ip[MASQ_ROME], ip["shop-rome/cart-0"]) is True


def test_under_full_masquerade_a_shadow_pods_packets_lose_their_vc_remote_allow(fresh: World) -> None:
    """consumer-vc-only allows vc-remote and denies the rest of milan. From its own address the
    offloaded backend reaches admin; masqueraded (milan's fullMasquerade), it is the rest of milan."""
    objects = load_objects([str(ROOT / "examples" / "consumer-vc-only.yaml")])
    matrix = build_matrix(objects)
    fresh.apply_and_settle(objects)
    fresh.wait_ready(objects)
    fresh.place(matrix)
    ip = {e.name: e.ip for e in matrix.endpoints}
    assert fresh.cluster.probe(ip["shop/backend"], ip["default/admin"]) is True
    assert fresh.cluster.probe(ip[MASQ_MILAN], ip["default/admin"]) is False
