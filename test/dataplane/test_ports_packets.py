"""Scope: destination ports through the real chain: every ordered pair x several TCP and UDP ports, each cell vs
`liqosec matrix --port`.

The scenarios in `ports/` go to a real API server; `liqosec run` writes the FirewallConfigurations (with
proto and port matches, and for ProtectedBorders with a port deny a second table); Liqo's agent applies
them on two node namespaces. Each endpoint listens on TCP 8080, 22, 443 and 8443 and echoes UDP on 53
and 8053; a TCP probe opens a connection, a UDP probe waits for its echo (the reply from the port back
to the client's ephemeral port), both within a bounded timeout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from dataplane_support import RECHECK_TIMEOUT
from world import World

from harness.netns import EXTRA_TCP_PORTS, PORT, UDP_PORTS
from liqosec.inputs import load_objects
from liqosec.matrix import build_matrix
from liqosec.render import render

pytestmark = pytest.mark.dataplane

HERE = Path(__file__).parent
SCENARIOS = sorted((HERE / "ports").glob("*.yaml"))
PROBES = [("tcp", p) for p in (PORT, *EXTRA_TCP_PORTS)] + [("udp", p) for p in UDP_PORTS]
MILAN = "(remote-cluster/milan)"

# What a reader of each policy expects, by endpoint name: (src, dst, proto, port, opens).
READER: dict[str, list[tuple[str, str, str, int, bool]]] = {
    "ports-protected-borders.yaml": [
        (MILAN, "shop/frontend", "tcp", 443, True),  # the hole, replies allowed by rule 2
        (MILAN, "shop/frontend", "udp", 53, True),
        (MILAN, "shop/frontend", "tcp", 8443, False),  # another port: the mode denies
        (MILAN, "shop/frontend", "udp", 8053, False),
        (MILAN, "default/admin", "tcp", 443, False),  # not vc-local
        ("shop/frontend", "shop/backend", "tcp", 8080, True),  # inside the virtual cluster
        ("shop/frontend", "shop/backend", "tcp", 22, False),  # but no SSH to the shadow pod
        ("shop/frontend", "shop/backend", "udp", 53, True),
        ("shop/backend", "shop/cache", "tcp", 22, True),  # SSH the other way is not denied
        ("default/admin", "shop/backend", "tcp", 443, False),  # outside the virtual cluster
        ("default/admin", "shop/cache", "tcp", 22, True),  # not the peering's traffic
    ],
    "ports-deny-some.yaml": [
        (MILAN, "default/admin", "tcp", 22, False),
        (MILAN, "default/admin", "tcp", 443, True),
        (MILAN, "default/admin", "udp", 8053, False),  # in 8000-8100
        (MILAN, "default/admin", "udp", 53, True),
        ("shop/backend", "shop/frontend", "tcp", 22, False),  # vc-remote is in remote-cluster
        ("shop/frontend", "shop/backend", "tcp", 22, True),  # the deny is towards local pods only
        (MILAN, "(internet)", "tcp", 22, True),
    ],
}


def probe_ports(world: World, path: Path, report: list[tuple[str, int, int]]) -> None:
    objects = load_objects([str(path)])
    firewalls = world.apply_and_settle(objects)
    world.wait_ready(objects)
    world.cluster.listen_on()
    matrix = build_matrix(objects)
    names = world.place(matrix)
    ips = {e.name: e.ip for e in matrix.endpoints}
    pairs = world.cluster.all_pairs()
    observed: dict[tuple[str, str, str, int], bool] = {}
    wrong = []
    for proto, port in PROBES:
        at_port = build_matrix(objects, port=(proto, port))
        seen = world.cluster.probe_pairs(pairs, port=port, proto=proto)
        misses = [p for p in pairs if seen[p] != at_port.connect(*p)]
        if misses:  # a slow host must not turn an accept into a drop
            seen.update(world.cluster.probe_pairs(misses, port=port, proto=proto, timeout=RECHECK_TIMEOUT))
        for (src, dst), ok in seen.items():
            observed[(src, dst, proto, port)] = ok
            if ok != at_port.connect(src, dst):
                wrong.append(f"{names[src]} -> {names[dst]} {port}/{proto}: packets say {ok}, the matrix says not")
    agreed = len(observed) - len(wrong)
    report.append(
        (f"{path.name} x {len(PROBES)} ports [Liqo agent, {len(world.cluster.nodes)} nodes]", len(observed), agreed)
    )
    assert not wrong, "packets and `liqosec matrix --port` disagree:\n" + "\n".join(wrong)
    off = [
        f"{src} -> {dst} {port}/{proto}: packets say {not want}, a reader expects {want}"
        for src, dst, proto, port, want in READER[path.name]
        if observed[(ips[src], ips[dst], proto, port)] != want
    ]
    assert not off, "\n".join(off)
    assert any(
        m.get("port")
        for fc in firewalls
        for r in fc["spec"]["table"]["chains"][0]["rules"]["filterRules"]
        for m in r["match"]
    ), "no port match was written"


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_every_cell_at_every_port_matches_the_matrix(fresh: World, cell_report: Any, path: Path) -> None:
    probe_ports(fresh, path, cell_report)


def test_the_port_scenarios_cover_every_shape() -> None:
    """Both scenarios exist and have reader expectations; ProtectedBorders with a port deny needs the ports table."""
    assert {p.name for p in SCENARIOS} == set(READER)
    names = [
        fc["metadata"]["name"] for fc in render(load_objects([str(HERE / "ports" / "ports-protected-borders.yaml")]))
    ]
    assert names == ["liqosec-milan", "liqosec-milan-ports"]
    [single] = render(load_objects([str(HERE / "ports" / "ports-deny-some.yaml")]))
    assert single["spec"]["table"]["chains"][0]["policy"] == "accept"


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_per_node_scope_enforces_ports_through_its_all_nodes_fallback(
    fresh_per_node: World, cell_report: Any, path: Path
) -> None:
    """`--firewall-scope per-node` compiles a peering with ports for all nodes: same cells on three nodes."""
    objects = load_objects([str(path)])
    assert all(
        "networking.liqo.io/firewall-unique" not in fc["metadata"]["labels"] for fc in render(objects, scope="per-node")
    )
    probe_ports(fresh_per_node, path, cell_report)


def test_a_port_deny_added_and_removed_on_a_live_peering(fresh: World, cell_report: Any) -> None:
    """The ports table comes with the first port deny a policy-drop chain cannot hold, and goes with it."""
    path = HERE / "ports" / "ports-protected-borders.yaml"
    full = load_objects([str(path)])
    pc = next(o for o in full if o["kind"] == "PeeringConnectivity")
    without = [o for o in full if o is not pc] + [{**pc, "spec": {**pc["spec"], "rules": pc["spec"]["rules"][1:]}}]
    fresh.apply_and_settle(without)
    fresh.cluster.listen_on()
    names = fresh.place(build_matrix(without))
    pairs = fresh.cluster.all_pairs()
    for step, objects in (("without the deny", without), ("with the deny", full), ("without it again", without)):
        firewalls = fresh.apply_and_settle(objects)
        assert len(firewalls) == (2 if objects is full else 1), step
        for proto, port in (("tcp", 22), ("tcp", 443)):
            at_port = build_matrix(objects, port=(proto, port))
            seen = fresh.cluster.probe_pairs(pairs, port=port, proto=proto)
            misses = [p for p in pairs if seen[p] != at_port.connect(*p)]
            if misses:
                seen.update(fresh.cluster.probe_pairs(misses, port=port, proto=proto, timeout=RECHECK_TIMEOUT))
            wrong = [f"{names[s]} -> {names[d]}" for (s, d), ok in seen.items() if ok != at_port.connect(s, d)]
            cell_report.append((f"live update, {step}, {port}/{proto}", len(seen), len(seen) - len(wrong)))
            assert not wrong, f"{step}, {port}/{proto}: packets and the matrix disagree: {wrong}"


def test_holes_table_through_the_agent_at_scale(fresh: World, cell_report: Any) -> None:
    """300 scattered vc-local pods: the holes no longer fit one accept-rules chain, so the chain accepts
    them (drop rules) and `liqosec-milan-holes` opens them only at tcp/443 and udp/53. Sampled cells."""
    objects = load_objects([str(HERE / "ports" / "ports-protected-borders.yaml")])
    objects += [
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"p{i}", "namespace": "shop"},
            "spec": {"nodeName": "worker-1"},
            "status": {"phase": "Running", "podIP": f"10.0.{20 + i // 100}.{(i % 100) * 2 + 1}"},
        }
        for i in range(300)
    ]
    firewalls = fresh.apply_and_settle(objects)
    written = [f["metadata"]["name"] for f in firewalls]
    # The holes table, not a ports table with one accept-rules chain; the main chain's drop rules may be sharded.
    assert written[0] == "liqosec-milan" and "liqosec-milan-holes" in written, written
    assert "liqosec-milan-ports" not in written, written
    fresh.wait_ready(objects)
    fresh.cluster.listen_on()
    matrix = build_matrix(objects, max_endpoints=None)
    names = fresh.place(matrix)
    chosen = [
        e.ip
        for e in matrix.endpoints
        if not e.name.startswith("shop/p") or e.name in ("shop/p0", "shop/p57", "shop/p299")
    ]
    pairs = [(s, d) for s in chosen for d in chosen if s != d]
    wrong = []
    for proto, port in PROBES:
        at_port = build_matrix(objects, port=(proto, port), max_endpoints=None)
        seen = fresh.cluster.probe_pairs(pairs, port=port, proto=proto)
        misses = [p for p in pairs if seen[p] != at_port.connect(*p)]
        if misses:
            seen.update(fresh.cluster.probe_pairs(misses, port=port, proto=proto, timeout=RECHECK_TIMEOUT))
        bad = [f"{names[s]} -> {names[d]} {port}/{proto}" for (s, d), ok in seen.items() if ok != at_port.connect(s, d)]
        wrong += bad
        cell_report.append((f"holes table, 300 pods, {port}/{proto} (sampled)", len(seen), len(seen) - len(bad)))
    assert not wrong, "packets and `liqosec matrix --port` disagree:\n" + "\n".join(wrong)
    ip = {e.name: e.ip for e in matrix.endpoints}
    assert fresh.cluster.probe(ip[MILAN], ip["shop/p57"], port=443) is True
    assert fresh.cluster.probe(ip[MILAN], ip["shop/p57"], port=8443) is False
