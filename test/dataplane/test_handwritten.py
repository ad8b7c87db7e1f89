"""Scope: hand-written FirewallConfigurations applied by Liqo's agent on two nodes: verdicts a reader can reason out.

Each FirewallConfiguration goes to the API server; Liqo's own reconciler puts it into
nftables on every node namespace; endpoints sit on alternating nodes, so most packets
cross the forward hook of two nodes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from dataplane_support import chain, check_cells, describe, ip, rule
from world import World

from harness import agent_model as agent
from harness.netns import PORT, Cluster
from liqosec.controller.resources import FIREWALL_CONFIGURATIONS
from liqosec.firewall.evaluate import connects, tables_of

pytestmark = pytest.mark.dataplane

A, B, C, D, E = "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.1.5", "192.168.7.7"
ALL = [A, B, C, D, E]


def _world(world: World, addresses: Sequence[str]) -> Cluster:
    world.cluster.attach({a: i % len(world.cluster.nodes) for i, a in enumerate(addresses)})
    return world.cluster


def _order(world: World, table: str = "lqs_hand", chain_name: str = "forward") -> list[list[str]]:
    """The rule names of a chain on every node, in node order."""
    return [world.cluster.rule_names(i)[(table, chain_name)] for i in range(len(world.cluster.nodes))]


def _only_blocked(*blocked: tuple[str, str]) -> Callable[[str, str], bool]:
    return lambda s, d: (s, d) not in blocked


def _assert_cells(
    topo: Cluster,
    expect: Callable[[str, str], bool],
    fcs: list[dict[str, Any]],
    report: list[tuple[str, int, int]],
    what: str,
) -> None:
    """Packets must match the hand-made expectation, and so must the lead's evaluator."""
    cells = check_cells(topo, expect)
    report.append((f"hand: {what}", len(cells.observed), cells.agreed))
    assert not cells.disagreements, describe(cells, {})
    model = [p for p in cells.observed if connects(tables_of(fcs), *p) != cells.observed[p]]
    assert not model, f"evaluate disagrees with packets on {model}"


def test_drop_rule_blocks_its_pair_both_ways_when_stateless(fresh: World, cell_report: Any) -> None:
    topo = _world(fresh, ALL)
    fcs = [chain([rule("a-to-b", ip("src", A), ip("dst", B))])]
    fresh.put_firewalls(fcs)
    # B -> A fails too: A's reply to B is a packet from A to B.
    _assert_cells(topo, _only_blocked((A, B), (B, A)), fcs, cell_report, "drop one pair, policy accept")


def test_neq_destination_keeps_traffic_inside_a_cidr(fresh: World, cell_report: Any) -> None:
    topo = _world(fresh, ALL)
    fcs = [chain([rule("leave-subnet", ip("src", "10.0.0.0/24"), ip("dst", "10.0.0.0/24", "neq"))])]
    fresh.put_firewalls(fcs)
    inside = {A, B, C}
    _assert_cells(
        topo,
        lambda s, d: (s in inside) == (d in inside) or (s not in inside and d not in inside),
        fcs,
        cell_report,
        "neq cidr",
    )


def test_ranges_and_negated_ranges(fresh: World, cell_report: Any) -> None:
    topo = _world(fresh, ALL)
    fcs = [chain([rule("guard-b-c", ip("src", "10.0.0.1-10.0.0.3", "neq"), ip("dst", "10.0.0.2-10.0.0.3"))])]
    fresh.put_firewalls(fcs)
    guarded, friends = {B, C}, {A, B, C}

    def expect(s: str, d: str) -> bool:
        return not (d in guarded and s not in friends) and not (s in guarded and d not in friends)

    _assert_cells(topo, expect, fcs, cell_report, "range and neq range")


def test_policy_drop_with_accept_rules(fresh: World, cell_report: Any) -> None:
    topo = _world(fresh, ALL)
    fcs = [chain([rule("subnet", ip("src", "10.0.0.0/23"), ip("dst", "10.0.0.0/23"), action="accept")], policy="drop")]
    fresh.put_firewalls(fcs)
    _assert_cells(topo, lambda s, d: E not in (s, d), fcs, cell_report, "policy drop, accept subnet")


def test_one_way_allow_drops_the_reply_without_conntrack(fresh: World, cell_report: Any) -> None:
    """Liqo v1.2.0's FirewallConfiguration has no ctstate match: a one-way allow opens nothing."""
    topo = _world(fresh, [A, B])
    stateless = [chain([rule("a-to-b", ip("src", A), ip("dst", B), action="accept")], policy="drop")]
    fresh.put_firewalls(stateless)
    _assert_cells(topo, lambda s, d: False, stateless, cell_report, "one-way allow, stateless")


def test_the_crd_prunes_a_ctstate_match(fresh: World) -> None:
    """The API server drops fields Liqo's schema lacks: a ctstate match arrives as an empty match."""
    fc = chain([rule("established", {"op": "eq", "ctstate": {"value": ["established"]}}, action="accept")])
    fresh.put_firewalls([fc])
    live = fresh.kube.get(FIREWALL_CONFIGURATIONS, fc["metadata"]["name"], namespace=fc["metadata"]["namespace"])
    match = live["spec"]["table"]["chains"][0]["rules"]["filterRules"][0]["match"]
    assert match == [{"op": "eq"}]


def test_reject_fails_fast_where_drop_times_out(fresh: World) -> None:
    topo = _world(fresh, [A, B, C])
    fresh.put_firewalls([chain([rule("rej", ip("dst", B), action="reject"), rule("drp", ip("dst", C))])])
    started = time.monotonic()
    assert not topo.probe(A, B, timeout=2.0)
    rejected = time.monotonic() - started
    started = time.monotonic()
    assert not topo.probe(A, C, timeout=1.0)
    dropped = time.monotonic() - started
    assert rejected < 0.5 <= dropped


def test_cidr_with_host_bits_matches_nothing_on_the_wire(fresh: World) -> None:
    """The agent keeps host bits and compares the masked address to them: never equal."""
    topo = _world(fresh, [A, B, D])
    fresh.put_firewalls([chain([rule("host-bits", ip("src", "10.0.0.1/24"))])])
    assert topo.probe_pairs(topo.all_pairs()) == {p: True for p in topo.all_pairs()}


def test_a_packet_must_pass_every_table(fresh: World, cell_report: Any) -> None:
    topo = _world(fresh, [A, B, C])
    fcs = [
        chain([rule("allow-all", action="accept")], table="lqs_one"),
        chain([rule("a-to-b", ip("src", A), ip("dst", B))], table="lqs_two"),
    ]
    fresh.put_firewalls(fcs)
    _assert_cells(topo, _only_blocked((A, B), (B, A)), fcs, cell_report, "two tables, one drop")


def test_incremental_apply_keeps_the_agents_order_and_verdicts(fresh: World, cell_report: Any) -> None:
    topo = _world(fresh, ALL)
    versions = [
        [rule("deny-d", ip("src", D), action="drop"), rule("allow-a", ip("src", A), action="accept")],
        [
            rule("allow-e", ip("src", E), action="accept"),
            rule("deny-d", ip("src", D)),
            rule("allow-a", ip("src", A), action="accept"),
        ],
        [rule("deny-d", ip("src", "10.0.1.0/24")), rule("allow-e", ip("src", E), action="accept")],
    ]
    state: agent.NodeState = agent.EMPTY
    for n, rules in enumerate(versions):
        fcs = [chain(rules, policy="drop")]
        state = agent.apply(state, fcs)
        fresh.put_firewalls(fcs)
        assert _order(fresh) == [agent.rule_order(state, "lqs_hand", "forward")] * len(fresh.cluster.nodes)
        node_tables = [t.as_spec() for t in state]
        _assert_cells(
            topo,
            lambda s, d, tables=node_tables: connects(tables, s, d),
            node_tables,
            cell_report,
            f"incremental version {n}",
        )
    assert agent.rule_order(state, "lqs_hand", "forward") == ["allow-e", "deny-d"]


def test_deleted_fc_removes_its_table(fresh: World) -> None:
    topo = _world(fresh, [A, B])
    fresh.put_firewalls([chain([rule("a-to-b", ip("src", A), ip("dst", B))])])
    assert not topo.probe(A, B)
    fresh.put_firewalls([])
    assert [topo.tables(i) for i in range(len(topo.nodes))] == [[]] * len(topo.nodes)
    assert topo.probe(A, B)


def test_kernel_refuses_a_rule_past_128_expressions(fresh: World) -> None:
    """The model's count is the kernel's: 128 expressions load; at 129 Liqo's agent reports Applied=False."""
    _world(fresh, [A, B])

    def wide(k: int) -> dict[str, Any]:
        r = rule(f"wide-{k}", *[ip("src", f"10.9.{i // 250}.{i % 250 + 1}", "neq") for i in range(k)])
        return {**r, "counter": False}

    at_limit, over = wide(63), wide(64)
    assert agent.expression_count(at_limit) == 127 and agent.expression_count({**at_limit, "counter": True}) == 128
    assert agent.expression_count(over) == agent.MAX_RULE_EXPRESSIONS + 1
    fresh.put_firewalls([chain([{**at_limit, "counter": True}])])
    refused = chain([over], table="lqs_wide")
    with pytest.raises(TimeoutError, match="lqs_wide"):
        fresh.put_firewalls([refused], timeout=5)
    live = fresh.kube.get(
        FIREWALL_CONFIGURATIONS, refused["metadata"]["name"], namespace=refused["metadata"]["namespace"]
    )
    applied = {c.get("host"): c.get("status") for c in (live.get("status") or {}).get("conditions") or ()}
    assert applied == {f"worker-{i}": "False" for i in range(len(fresh.cluster.nodes))}, live.get("status")


def test_order_dependent_rules_break_when_the_agent_appends(fresh: World) -> None:
    """Control: a naive first-match chain goes wrong on a real node, so the harness can see it."""
    topo = _world(fresh, [A, B, D])
    first = [rule("allow-a", ip("src", D), ip("dst", A), action="accept"), rule("deny-d", ip("src", D))]
    later = [first[0], rule("allow-b", ip("src", D), ip("dst", B), action="accept"), first[1]]
    fresh.put_firewalls([chain(first)])
    fresh.put_firewalls([chain(later)])
    # In FC order D -> B is allowed; the agent appended allow-b after deny-d.
    assert connects(tables_of([chain(later)]), D, B) is True  # what the FC's author meant
    assert _order(fresh) == [["allow-a", "deny-d", "allow-b"]] * len(fresh.cluster.nodes)
    assert not topo.probe(D, B)


def test_proto_port_and_dev_matches_on_the_wire(fresh: World) -> None:
    """The probe is TCP to PORT; an endpoint's node reaches it through its own veth."""
    topo = _world(fresh, [A, B, C])
    tcp = {"op": "eq", "proto": {"value": "tcp"}}
    udp = {"op": "eq", "proto": {"value": "udp"}}
    to_port = {"op": "eq", "port": {"position": "dst", "value": str(PORT)}}
    # The agent ignores op on a port range: "neq 8000-9000" still matches 8080.
    not_range = {"op": "neq", "port": {"position": "dst", "value": f"{PORT - 80}-{PORT + 920}"}}
    out_c = {"op": "eq", "dev": {"position": "out", "value": topo.endpoints[C].veth}}
    fresh.put_firewalls(
        [
            chain(
                [
                    rule("udp-to-b", udp, ip("dst", B)),
                    rule("tcp-port-from-a-to-b", ip("src", A), ip("dst", B), tcp, to_port),
                    rule("range-quirk", ip("src", B), ip("dst", A), tcp, not_range),
                    rule("out-to-c", ip("src", A), out_c),
                ]
            )
        ]
    )
    seen = topo.probe_pairs(topo.all_pairs())
    # B -> A dies only by the range quirk (A's reply has an ephemeral dport); C -> A dies
    # because A's reply leaves C's node through C's veth.
    assert seen == {(A, B): False, (B, A): False, (A, C): False, (C, A): False, (B, C): True, (C, B): True}
