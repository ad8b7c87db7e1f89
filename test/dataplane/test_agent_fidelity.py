"""Scope: the agent model (harness/agent_model.py) against Liqo's real agent on random FirewallConfiguration histories.

The model is kept only as a fast offline check (the compiler's property tests use it);
this test is why it may be trusted: after every step of a random history, the rule
order Liqo's agent leaves on each node equals the model's, and sampled packets agree
with the model's verdicts.
"""

from __future__ import annotations

import random
import time
from typing import Any

import pytest
from dataplane_support import chain, ip, rule
from world import World

from harness import agent_model as agent
from liqosec.firewall.evaluate import connects

pytestmark = pytest.mark.dataplane

ADDRESSES = ["10.0.0.1", "10.0.0.2", "10.0.1.1", "10.0.1.2"]
STEPS = 25
POOL = 8  # rule names to draw from, so rules come back after leaving
STEADY_S = 5.0  # how long the agent may take to settle a chain's order after applying its rules
PROBE_EVERY = 4  # random chains drop a lot and drops cost a timeout; order is checked every step


def _random_rule(rng: random.Random, name: str) -> dict[str, Any]:
    matches = []
    for position in ("src", "dst"):
        pick = rng.random()
        if pick < 0.4:
            matches.append(ip(position, rng.choice(ADDRESSES), rng.choice(["eq", "neq"])))
        elif pick < 0.6:
            matches.append(ip(position, rng.choice(["10.0.0.0/24", "10.0.1.0/24"])))
        elif pick < 0.75:
            matches.append(ip(position, "10.0.0.2-10.0.1.1", rng.choice(["eq", "neq"])))
    return rule(name, *matches, action=rng.choice(["accept", "drop"]))


def _random_fcs(rng: random.Random, previous: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mostly small edits of the previous rule list, sometimes a policy change or a second table."""
    rules = list(previous)
    for _ in range(rng.randint(1, 3)):
        op = rng.random()
        if op < 0.35 or not rules:
            name = f"r{rng.randrange(POOL)}"
            rules = [r for r in rules if r["name"] != name]
            rules.insert(rng.randint(0, len(rules)), _random_rule(rng, name))
        elif op < 0.6:
            rules.pop(rng.randrange(len(rules)))
        elif op < 0.8:
            i = rng.randrange(len(rules))
            rules[i] = _random_rule(rng, rules[i]["name"])  # same name, new content
        else:
            rng.shuffle(rules)
    fcs = [chain(rules, policy=rng.choice(["accept", "accept", "accept", "drop"]))]
    if rng.random() < 0.3:
        fcs.append(chain([rule("other", ip("src", "10.0.1.2"), ip("dst", "10.0.0.1"))], table="lqs_other"))
    return fcs


def _steady_rule_names(fresh: World, node: int, model: dict[tuple[str, str], list[str]]) -> Any:
    """The node's rule order once it equals the model, or as it is after STEADY_S seconds."""
    deadline = time.monotonic() + STEADY_S
    while True:
        live = fresh.cluster.rule_names(node)
        if live == model or time.monotonic() > deadline:
            return live
        time.sleep(0.1)


@pytest.mark.parametrize("seed", range(4))
def test_live_rule_order_follows_the_agent_model(fresh: World, cell_report: Any, seed: int) -> None:
    rng = random.Random(seed)
    nodes = range(len(fresh.cluster.nodes))
    fresh.cluster.attach({a: i % len(nodes) for i, a in enumerate(ADDRESSES)})
    state: agent.NodeState = agent.EMPTY
    rules: list[dict[str, Any]] = []
    cells = agreed = 0
    for step in range(STEPS):
        fcs = _random_fcs(rng, rules)
        rules = fcs[0]["spec"]["table"]["chains"][0]["rules"]["filterRules"]
        state = agent.apply(state, fcs)
        fresh.put_firewalls(fcs)
        model = {(t.name, c.name): agent.rule_order(state, t.name, c.name) for t in state for c in t.chains}
        for node in nodes:
            assert sorted(fresh.cluster.tables(node)) == sorted(t.name for t in state), f"step {step}"
            # put_firewalls waits for the rule sets; the agent may still be settling its order (it
            # re-reconciles on its own status writes): the order is judged once the node is steady.
            live = _steady_rule_names(fresh, node, model)
            assert live == model, f"step {step}: node {node}"
        if step % PROBE_EVERY and step != STEPS - 1:
            continue
        node_tables = [t.as_spec() for t in state]
        seen = fresh.cluster.probe_pairs(fresh.cluster.all_pairs())
        cells += len(seen)
        agreed += sum(connects(node_tables, *p) == v for p, v in seen.items())
    cell_report.append((f"random FC history seed {seed}, {STEPS} steps, model vs Liqo's agent", cells, agreed))
    assert agreed == cells
