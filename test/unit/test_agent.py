"""Scope: the agent model replays how Liqo's agent patches nftables, history included."""

from __future__ import annotations

from typing import Any

import pytest

from harness import agent_model as agent


def _rule(name: str, src: str, action: str = "drop", *, op: str = "eq") -> dict[str, Any]:
    return {
        "name": name,
        "action": action,
        "counter": True,
        "match": [{"op": op, "ip": {"position": "src", "value": src}}],
    }


def _fc(
    rules: list[dict[str, Any]], *, table: str = "t", chain: str = "c", policy: str = "accept", priority: int = 0
) -> dict[str, Any]:
    return {
        "apiVersion": "networking.liqo.io/v1beta1",
        "kind": "FirewallConfiguration",
        "metadata": {"name": table, "namespace": "liqo-tenant-x"},
        "spec": {
            "table": {
                "name": table,
                "family": "IPV4",
                "chains": [
                    {
                        "name": chain,
                        "hook": "forward",
                        "type": "filter",
                        "priority": priority,
                        "policy": policy,
                        "rules": {"filterRules": rules},
                    }
                ],
            }
        },
    }


def test_first_apply_creates_rules_in_fc_order() -> None:
    state = agent.apply(agent.EMPTY, [_fc([_rule("a", "10.0.0.1"), _rule("b", "10.0.0.2")])])
    assert agent.rule_order(state, "t", "c") == ["a", "b"]


def test_new_rules_are_appended_after_existing() -> None:
    state = agent.apply(agent.EMPTY, [_fc([_rule("b", "10.0.0.2")])])
    state = agent.apply(state, [_fc([_rule("a", "10.0.0.1"), _rule("b", "10.0.0.2")])])
    assert agent.rule_order(state, "t", "c") == ["b", "a"]


def test_changed_rule_moves_to_end() -> None:
    first = [_rule("a", "10.0.0.1"), _rule("b", "10.0.0.2")]
    state = agent.apply(agent.EMPTY, [_fc(first)])
    state = agent.apply(state, [_fc([_rule("a", "10.0.0.9"), _rule("b", "10.0.0.2")])])
    assert agent.rule_order(state, "t", "c") == ["b", "a"]
    assert state[0].chains[0].rules[1].as_spec()["match"][0]["ip"]["value"] == "10.0.0.9"


def test_rule_gone_from_fc_is_removed() -> None:
    state = agent.apply(agent.EMPTY, [_fc([_rule("a", "10.0.0.1"), _rule("b", "10.0.0.2")])])
    state = agent.apply(state, [_fc([_rule("b", "10.0.0.2")])])
    assert agent.rule_order(state, "t", "c") == ["b"]


def test_unchanged_fc_is_a_fixed_point() -> None:
    fc = _fc([_rule("a", "10.0.0.1"), _rule("b", "10.0.0.2")])
    once = agent.apply(agent.EMPTY, [fc])
    assert agent.apply(once, [fc]) == once


def test_reordering_the_fc_does_not_reorder_the_node() -> None:
    state = agent.apply(agent.EMPTY, [_fc([_rule("a", "10.0.0.1"), _rule("b", "10.0.0.2")])])
    state = agent.apply(state, [_fc([_rule("b", "10.0.0.2"), _rule("a", "10.0.0.1")])])
    assert agent.rule_order(state, "t", "c") == ["a", "b"]


def test_chain_policy_change_recreates_chain() -> None:
    state = agent.apply(agent.EMPTY, [_fc([_rule("b", "10.0.0.2")])])
    state = agent.apply(state, [_fc([_rule("a", "10.0.0.1"), _rule("b", "10.0.0.2")], policy="drop")])
    assert agent.rule_order(state, "t", "c") == ["a", "b"]
    assert state[0].chains[0].policy == "drop"


def test_chain_priority_change_recreates_chain() -> None:
    state = agent.apply(agent.EMPTY, [_fc([_rule("b", "10.0.0.2")])])
    state = agent.apply(state, [_fc([_rule("a", "10.0.0.1"), _rule("b", "10.0.0.2")], priority=-10)])
    assert agent.rule_order(state, "t", "c") == ["a", "b"]


def test_renamed_chain_starts_fresh_in_fc_order() -> None:
    state = agent.apply(agent.EMPTY, [_fc([_rule("b", "10.0.0.2")], chain="c1")])
    state = agent.apply(state, [_fc([_rule("a", "10.0.0.1"), _rule("b", "10.0.0.2")], chain="c2")])
    assert [c.name for c in state[0].chains] == ["c2"]
    assert agent.rule_order(state, "t", "c2") == ["a", "b"]


def test_table_of_deleted_fc_is_removed() -> None:
    state = agent.apply(
        agent.EMPTY, [_fc([_rule("a", "10.0.0.1")], table="t1"), _fc([_rule("a", "10.0.0.1")], table="t2")]
    )
    state = agent.apply(state, [_fc([_rule("a", "10.0.0.1")], table="t2")])
    assert [t.name for t in state] == ["t2"]


def test_counter_change_is_not_a_rule_change() -> None:
    state = agent.apply(agent.EMPTY, [_fc([_rule("a", "10.0.0.1"), _rule("b", "10.0.0.2")])])
    quiet = {**_rule("a", "10.0.0.1"), "counter": False}
    state = agent.apply(state, [_fc([quiet, _rule("b", "10.0.0.2")])])
    assert agent.rule_order(state, "t", "c") == ["a", "b"]


def test_swapped_values_on_one_field_look_equal_to_the_agent() -> None:
    """The agent compares expressions as a bag, so it keeps the stale rule."""

    def two(a: str, b: str) -> dict[str, Any]:
        return {
            "name": "r",
            "action": "drop",
            "counter": True,
            "match": [
                {"op": "eq", "ip": {"position": "src", "value": a}},
                {"op": "eq", "ip": {"position": "dst", "value": b}},
            ],
        }

    state = agent.apply(agent.EMPTY, [_fc([two("10.0.0.1", "10.0.0.2")])])
    state = agent.apply(state, [_fc([two("10.0.0.2", "10.0.0.1")])])
    kept = state[0].chains[0].rules[0].as_spec()
    assert kept["match"][0]["ip"]["value"] == "10.0.0.1"


def test_ip_value_forms_forge_distinct_expressions() -> None:
    single = agent.forge_expressions(_rule("a", "10.0.0.1"))
    cidr = agent.forge_expressions(_rule("a", "10.0.0.1/32"))
    span = agent.forge_expressions(_rule("a", "10.0.0.1-10.0.0.1"))
    assert len({single, cidr, span}) == 3
    assert len(cidr) == 4 and len(single) == 3 and len(span) == 3


def test_cidr_with_host_bits_keeps_them_as_the_agent_does() -> None:
    exprs = agent.forge_expressions(_rule("a", "10.0.0.5/24"))
    assert ("bitwise", "255.255.255.0") in exprs and ("cmp", "eq", "10.0.0.5") in exprs


def test_port_range_ignores_op() -> None:
    rule = {
        "name": "p",
        "action": "accept",
        "match": [{"op": "neq", "port": {"position": "dst", "value": "3000-4000"}}],
    }
    assert ("cmp", "gte", 3000) in agent.forge_expressions(rule)


def test_unnamed_rule_is_rejected() -> None:
    with pytest.raises(ValueError, match="without a name"):
        agent.apply(agent.EMPTY, [_fc([{"action": "drop", "match": []}])])


def test_duplicate_chain_names_are_rejected() -> None:
    fc = _fc([_rule("a", "10.0.0.1")])
    chains = fc["spec"]["table"]["chains"]
    chains.append(dict(chains[0]))
    with pytest.raises(ValueError, match="names a chain twice"):
        agent.apply(agent.EMPTY, [fc])


def test_apply_does_not_mutate_its_inputs() -> None:
    fc = _fc([_rule("a", "10.0.0.1")])
    before = repr(fc)
    state = agent.apply(agent.EMPTY, [fc])
    agent.apply(state, [fc])
    assert repr(fc) == before


def test_as_spec_round_trips_through_from_specs() -> None:
    state = agent.apply(agent.EMPTY, [_fc([_rule("a", "10.0.0.1"), _rule("b", "10.1.0.0/16")])])
    assert agent.from_specs([t.as_spec() for t in state]) == state


def test_expression_count_matches_the_kernel_budget() -> None:
    assert agent.expression_count(_rule("a", "10.0.0.1")) == 4  # payload, cmp, counter, verdict
    assert agent.expression_count(_rule("a", "10.0.0.0/24")) == 5  # payload, bitwise, cmp, ...
    assert agent.expression_count(_rule("a", "10.0.0.1-10.0.0.9")) == 4  # payload, range, ...
