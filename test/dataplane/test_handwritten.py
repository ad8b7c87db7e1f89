"""Scope: hand-written FirewallConfigurations in a real node namespace: verdicts a reader can reason out."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from dataplane_support import ESTABLISHED, chain, check_cells, describe, ip, rule

from liqosec.dataplane import nft
from liqosec.dataplane.netns import PORT, CommandError, Topology
from liqosec.firewall import agent
from liqosec.firewall.evaluate import connects, tables_of

pytestmark = pytest.mark.dataplane

A, B, C, D, E = "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.1.5", "192.168.7.7"
ALL = [A, B, C, D, E]
MakeTopology = Callable[[Sequence[str]], Topology]


def _only_blocked(*blocked: tuple[str, str]) -> Callable[[str, str], bool]:
    return lambda s, d: (s, d) not in blocked


def _assert_cells(topo: Topology, expect: Callable[[str, str], bool], fcs: list[dict[str, Any]],
                  report: list[tuple[str, int, int]], what: str) -> None:
    """Packets must match the hand-made expectation, and so must the lead's evaluator."""
    cells = check_cells(topo, expect)
    report.append((f"hand: {what}", len(cells.observed), cells.agreed))
    assert not cells.disagreements, describe(cells, {})
    model = [p for p in cells.observed if connects(tables_of(fcs), *p) != cells.observed[p]]
    assert not model, f"evaluate disagrees with packets on {model}"


def test_drop_rule_blocks_its_pair_both_ways_when_stateless(topology: MakeTopology, cell_report: Any) -> None:
    topo = topology(ALL)
    fcs = [chain([rule("a-to-b", ip("src", A), ip("dst", B))])]
    topo.nft(nft.fc_script(fcs))
    # B -> A fails too: A's reply to B is a packet from A to B.
    _assert_cells(topo, _only_blocked((A, B), (B, A)), fcs, cell_report, "drop one pair, policy accept")


def test_neq_destination_keeps_traffic_inside_a_cidr(topology: MakeTopology, cell_report: Any) -> None:
    topo = topology(ALL)
    fcs = [chain([rule("leave-subnet", ip("src", "10.0.0.0/24"), ip("dst", "10.0.0.0/24", "neq"))])]
    topo.nft(nft.fc_script(fcs))
    inside = {A, B, C}
    _assert_cells(topo, lambda s, d: (s in inside) == (d in inside) or (s not in inside and d not in inside),
                  fcs, cell_report, "neq cidr")


def test_ranges_and_negated_ranges(topology: MakeTopology, cell_report: Any) -> None:
    topo = topology(ALL)
    fcs = [chain([rule("guard-b-c", ip("src", "10.0.0.1-10.0.0.3", "neq"), ip("dst", "10.0.0.2-10.0.0.3"))])]
    topo.nft(nft.fc_script(fcs))
    guarded, friends = {B, C}, {A, B, C}

    def expect(s: str, d: str) -> bool:
        return not (d in guarded and s not in friends) and not (s in guarded and d not in friends)
    _assert_cells(topo, expect, fcs, cell_report, "range and neq range")


def test_policy_drop_with_accept_rules(topology: MakeTopology, cell_report: Any) -> None:
    topo = topology(ALL)
    fcs = [chain([rule("subnet", ip("src", "10.0.0.0/23"), ip("dst", "10.0.0.0/23"), action="accept")],
                 policy="drop")]
    topo.nft(nft.fc_script(fcs))
    _assert_cells(topo, lambda s, d: E not in (s, d), fcs, cell_report, "policy drop, accept subnet")


def test_one_way_allow_needs_conntrack(topology: MakeTopology, cell_report: Any) -> None:
    topo = topology([A, B])
    one_way = rule("a-to-b", ip("src", A), ip("dst", B), action="accept")
    stateless = [chain([one_way], policy="drop")]
    topo.nft(nft.fc_script(stateless))
    _assert_cells(topo, lambda s, d: False, stateless, cell_report, "one-way allow, stateless")
    topo.flush_ruleset()
    stateful = [chain([rule("established", ESTABLISHED, action="accept"), one_way], policy="drop")]
    topo.nft(nft.fc_script(stateful))
    _assert_cells(topo, lambda s, d: (s, d) == (A, B), stateful, cell_report, "one-way allow, ctstate")


def test_conntrack_rule_appended_by_the_agent_comes_too_late(topology: MakeTopology, cell_report: Any) -> None:
    """Why the compiler must rename the chain when it gains the ctstate rule (SEMANTICS 5)."""
    topo = topology([A, B])
    rules = [rule("a-to-b", ip("src", A), ip("dst", B), action="accept"), rule("from-b", ip("src", B))]
    with_ct = [rule("established", ESTABLISHED, action="accept"), *rules]
    state = agent.apply(agent.EMPTY, [chain(rules)])
    nft.apply_incremental(topo, [chain(rules)])
    state = agent.apply(state, [chain(with_ct)])
    nft.apply_incremental(topo, [chain(with_ct)])
    live = nft.rule_names(topo.nft_json("table", "ip", "lqs_hand"), table="lqs_hand")
    assert live["forward"] == agent.rule_order(state, "lqs_hand", "forward") == ["a-to-b", "from-b", "established"]
    node_tables = [t.as_spec() for t in state]
    _assert_cells(topo, lambda s, d: False, node_tables, cell_report, "ctstate appended late")
    renamed = [chain(with_ct, name="forward_ct")]
    nft.apply_incremental(topo, renamed)
    _assert_cells(topo, lambda s, d: (s, d) == (A, B), renamed, cell_report, "ctstate in a fresh chain")


def test_reject_fails_fast_where_drop_times_out(topology: MakeTopology) -> None:
    topo = topology([A, B, C])
    topo.nft(nft.fc_script([chain([rule("rej", ip("dst", B), action="reject"), rule("drp", ip("dst", C))])]))
    started = time.monotonic()
    assert not topo.probe(A, B, timeout=2.0)
    rejected = time.monotonic() - started
    started = time.monotonic()
    assert not topo.probe(A, C, timeout=1.0)
    dropped = time.monotonic() - started
    assert rejected < 0.5 <= dropped


def test_cidr_with_host_bits_matches_nothing_on_the_wire(topology: MakeTopology) -> None:
    """The agent keeps host bits and compares the masked address to them: never equal."""
    topo = topology([A, B, D])
    topo.nft(nft.fc_script([chain([rule("host-bits", ip("src", "10.0.0.1/24"))])]))
    assert topo.probe_pairs(topo.all_pairs()) == {p: True for p in topo.all_pairs()}


def test_a_packet_must_pass_every_table(topology: MakeTopology, cell_report: Any) -> None:
    topo = topology([A, B, C])
    fcs = [chain([rule("allow-all", action="accept")], table="lqs_one"),
           chain([rule("a-to-b", ip("src", A), ip("dst", B))], table="lqs_two")]
    topo.nft(nft.fc_script(fcs))
    _assert_cells(topo, _only_blocked((A, B), (B, A)), fcs, cell_report, "two tables, one drop")


def test_incremental_apply_keeps_the_agents_order_and_verdicts(topology: MakeTopology, cell_report: Any) -> None:
    topo = topology(ALL)
    versions = [
        [rule("deny-d", ip("src", D), action="drop"), rule("allow-a", ip("src", A), action="accept")],
        [rule("allow-e", ip("src", E), action="accept"), rule("deny-d", ip("src", D)),
         rule("allow-a", ip("src", A), action="accept")],
        [rule("deny-d", ip("src", "10.0.1.0/24")), rule("allow-e", ip("src", E), action="accept")],
    ]
    state: agent.NodeState = agent.EMPTY
    for n, rules in enumerate(versions):
        fcs = [chain(rules, policy="drop")]
        state = agent.apply(state, fcs)
        nft.apply_incremental(topo, fcs)
        live = nft.rule_names(topo.nft_json("table", "ip", "lqs_hand"), table="lqs_hand")
        assert live["forward"] == agent.rule_order(state, "lqs_hand", "forward")
        node_tables = [t.as_spec() for t in state]
        _assert_cells(topo, lambda s, d: connects(node_tables, s, d), node_tables, cell_report,
                      f"incremental version {n}")
    assert agent.rule_order(state, "lqs_hand", "forward") == ["allow-e", "deny-d"]


def test_deleted_fc_removes_its_table(topology: MakeTopology) -> None:
    topo = topology([A, B])
    nft.apply_incremental(topo, [chain([rule("a-to-b", ip("src", A), ip("dst", B))])])
    assert not topo.probe(A, B)
    nft.apply_incremental(topo, [])
    assert nft.live_tables(topo) == []
    assert topo.probe(A, B)


def test_kernel_refuses_a_rule_past_128_expressions(topology: MakeTopology) -> None:
    """The agent's count is the kernel's: 128 expressions load, 129 are refused."""
    topo = topology([A, B])

    def wide(k: int) -> dict[str, Any]:
        r = rule(f"wide-{k}", *[ip("src", f"10.9.{i // 250}.{i % 250 + 1}", "neq") for i in range(k)])
        return {**r, "counter": False}
    at_limit, over = wide(63), wide(64)
    assert agent.expression_count(at_limit) == 127 and agent.expression_count({**at_limit, "counter": True}) == 128
    assert agent.expression_count(over) == agent.MAX_RULE_EXPRESSIONS + 1
    topo.nft(nft.fc_script([chain([{**at_limit, "counter": True}])]))
    topo.flush_ruleset()
    with pytest.raises(CommandError, match="Invalid argument"):
        topo.nft(nft.fc_script([chain([over])]))


def test_order_dependent_rules_break_when_the_agent_appends(topology: MakeTopology) -> None:
    """Control: a naive first-match chain goes wrong on a real node, so the harness can see it."""
    topo = topology([A, B, D])
    first = [rule("allow-a", ip("src", D), ip("dst", A), action="accept"), rule("deny-d", ip("src", D))]
    later = [first[0], rule("allow-b", ip("src", D), ip("dst", B), action="accept"), first[1]]
    nft.apply_incremental(topo, [chain(first)])
    nft.apply_incremental(topo, [chain(later)])
    # In FC order D -> B is allowed; the agent appended allow-b after deny-d.
    assert connects(tables_of([chain(later)]), D, B) is True  # what the FC's author meant
    assert nft.rule_names(topo.nft_json("table", "ip", "lqs_hand"), table="lqs_hand")["forward"] == [
        "allow-a", "deny-d", "allow-b"]
    assert not topo.probe(D, B)


def test_proto_port_and_dev_matches_on_the_wire(topology: MakeTopology) -> None:
    """The probe is TCP to PORT; the node-side veth of the n-th endpoint is `v<n>`."""
    topo = topology([A, B, C])
    tcp = {"op": "eq", "proto": {"value": "tcp"}}
    udp = {"op": "eq", "proto": {"value": "udp"}}
    to_port = {"op": "eq", "port": {"position": "dst", "value": str(PORT)}}
    # The agent ignores op on a port range: "neq 8000-9000" still matches 8080.
    not_range = {"op": "neq", "port": {"position": "dst", "value": f"{PORT - 80}-{PORT + 920}"}}
    out_c = {"op": "eq", "dev": {"position": "out", "value": "v2"}}
    topo.nft(nft.fc_script([chain([
        rule("udp-to-b", udp, ip("dst", B)),
        rule("tcp-port-from-a-to-b", ip("src", A), ip("dst", B), tcp, to_port),
        rule("range-quirk", ip("src", B), ip("dst", A), tcp, not_range),
        rule("out-to-c", ip("src", A), out_c),
    ])]))
    seen = topo.probe_pairs(topo.all_pairs())
    # B -> A dies only by the range quirk (A's reply has an ephemeral dport); C -> A dies
    # because A's reply leaves through v2.
    assert seen == {(A, B): False, (B, A): False, (A, C): False, (C, A): False, (B, C): True, (C, B): True}
