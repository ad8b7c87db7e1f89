"""Retiring a firewall: emptied first, deleted only after the agents had time to apply the empty table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from harness import agent_model as agent
from liqosec.controller.retire import RETIRED_ANNOTATION, Delete, Neutralize, Wait, next_step
from liqosec.firewall.evaluate import Packet, node_accepts, tables_of

NOW = datetime(2026, 11, 27, 10, 0, 0, tzinfo=UTC)
FC = {
    "metadata": {"name": "liqosec-rome", "annotations": {"keep": "me"}},
    "spec": {
        "table": {
            "name": "liqosec-rome",
            "family": "IPV4",
            "chains": [
                {
                    "name": "peering-filter",
                    "type": "filter",
                    "hook": "forward",
                    "priority": 0,
                    "policy": "drop",
                    "rules": {
                        "filterRules": [
                            {
                                "name": "accept-x",
                                "action": "accept",
                                "counter": True,
                                "match": [{"op": "eq", "ip": {"position": "src", "value": "10.0.0.1"}}],
                            }
                        ]
                    },
                }
            ],
        }
    },
}


def test_a_firewall_with_rules_is_emptied_first_and_lets_everything_through() -> None:
    step = next_step(FC, NOW)
    assert isinstance(step, Neutralize)
    body = step.body
    assert body["metadata"]["annotations"] == {"keep": "me", RETIRED_ANNOTATION: "2026-11-27T10:00:00Z"}
    chain = body["spec"]["table"]["chains"][0]
    assert chain["name"] == "peering-filter" and chain["rules"] == {}  # no rules, as Liqo stores them
    # A node that keeps this table (Liqo's shared finalizer) drops nothing.
    assert node_accepts(tables_of([FC]), Packet.of("10.0.0.2", "10.0.0.3")) is False
    assert node_accepts(tables_of([body]), Packet.of("10.0.0.2", "10.0.0.3")) is True
    # The agent model applies it as an empty accept chain.
    state = agent.apply(agent.EMPTY, [body])
    assert agent.rule_order(state, "liqosec-rome", "peering-filter") == []


def test_an_emptied_firewall_waits_out_the_grace_then_goes() -> None:
    emptied = next_step(FC, NOW)
    assert isinstance(emptied, Neutralize)
    assert next_step(emptied.body, NOW + timedelta(seconds=4), grace=10) == Wait(6.0)
    assert next_step(emptied.body, NOW + timedelta(seconds=10), grace=10) == Delete()


def test_rules_coming_back_restart_the_retirement() -> None:
    emptied = next_step(FC, NOW)
    assert isinstance(emptied, Neutralize)
    refilled = {**emptied.body, "spec": FC["spec"]}
    assert isinstance(next_step(refilled, NOW + timedelta(seconds=60)), Neutralize)
