"""Sharding: a peering larger than one agent batch is written as several FirewallConfigurations, same verdicts."""

from __future__ import annotations

import json
import random

import pytest
from test_compile import ISOLATE, LOCAL, REMOTE

from harness import agent_model as agent
from liqosec.api.peeringconnectivity import Action, PeeringConnectivity, PeeringConnectivitySpec
from liqosec.compiler import firewallconfiguration as fcmod
from liqosec.compiler.compile import ACCEPT, DROP, compile_chain
from liqosec.compiler.policy import Clause
from liqosec.firewall.addresses import AddressSet, int_to_ip, parse_value
from liqosec.firewall.capabilities import Capabilities
from liqosec.firewall.evaluate import Packet, node_accepts, tables_of
from liqosec.groups.resolve import ResolvedGroups

PC = PeeringConnectivity("rome", "liqo-tenant-rome", PeeringConnectivitySpec(), uid="u")


def scattered(n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    base = int(parse_value("10.1.0.0")[0])
    return [int_to_ip(base + 2 * x) for x in rng.sample(range(1, 30000), n)]


def groups(offloaded: list[str]) -> ResolvedGroups:
    return ResolvedGroups(
        "rome", {"local-cluster": LOCAL, "remote-cluster": REMOTE, "offloaded": AddressSet.of(offloaded)}
    )


def objects(pods: list[str], budget: int) -> list[dict[str, object]]:
    chain = compile_chain(ISOLATE, Action.ALLOW, groups(pods), Capabilities(), max_expressions=budget)
    return [fcmod.firewall_object(PC, "rome", chain, rules, i) for i, rules in enumerate(fcmod.shard(chain, budget))]


def expressions(fc: dict[str, object]) -> int:
    return sum(
        agent.expression_count(r)
        for c in fc["spec"]["table"]["chains"]  # type: ignore[index]
        for r in c["rules"].get("filterRules", [])
    )


def test_a_small_chain_is_one_firewall() -> None:
    assert len(objects(scattered(10), fcmod.MAX_EXPRESSIONS_PER_FIREWALL)) == 1


def test_shards_stay_within_the_agents_batch_and_keep_every_verdict() -> None:
    pods = scattered(400)
    whole = objects(pods, 10**9)
    shards = objects(pods, 1500)
    assert len(whole) == 1 and len(shards) > 2
    # The model counts what the kernel holds, independently of the compiler's own count.
    assert max(expressions(fc) for fc in shards) <= 1500 < expressions(whole[0])
    rng = random.Random(1)
    probes = [*pods[:50], "10.71.3.3", "10.1.200.1", "8.8.8.8"]
    for _ in range(2000):
        packet = Packet.of(rng.choice(probes), rng.choice(probes))
        assert node_accepts(tables_of(shards), packet) == node_accepts(tables_of(whole), packet)


def test_shards_have_distinct_names_tables_and_the_peerings_labels() -> None:
    shards = objects(scattered(400), 1500)
    names = [fc["metadata"]["name"] for fc in shards]  # type: ignore[index]
    tables = [fc["spec"]["table"]["name"] for fc in shards]  # type: ignore[index]
    assert names[0] == "liqosec-rome" and len(set(names)) == len(names)
    assert tables[0] == "liqosec-rome" and len(set(tables)) == len(tables)
    assert all(fc["metadata"]["labels"] == shards[0]["metadata"]["labels"] for fc in shards)  # type: ignore[index]


def test_a_pod_added_moves_no_rule_between_shards() -> None:
    pods = scattered(401)
    before = objects(pods[:400], 1500)
    after = objects(pods, 1500)
    assert len(before) == len(after)

    def placement(fcs: list[dict[str, object]]) -> dict[str, int]:
        return {
            r["name"]: i
            for i, fc in enumerate(fcs)
            for c in fc["spec"]["table"]["chains"]  # type: ignore[index]
            for r in c["rules"].get("filterRules", [])
        }

    old, new = placement(before), placement(after)
    assert all(new[name] == shard for name, shard in old.items() if name in new)


# Local pods may reach anything, the rest of the peering's traffic is denied: accept rules (policy drop) spell
# it shortest.
LOCAL_ONLY = [Clause("local-cluster", None, Action.ALLOW, "r0")]


def test_an_accept_rules_chain_is_never_split() -> None:
    """Accept rules with a drop policy would drop in every shard that lacks the accept."""
    few = LOCAL_ONLY
    chain = compile_chain(few, Action.DENY, groups(scattered(200)), Capabilities())
    assert chain.policy == DROP and chain.expressions > 300
    assert fcmod.shard(chain, 300) == [chain.rules]


def test_the_budget_turns_an_oversized_accept_chain_into_drop_rules() -> None:
    few = LOCAL_ONLY
    unbounded = compile_chain(few, Action.DENY, groups(scattered(200)), Capabilities())
    bounded = compile_chain(few, Action.DENY, groups(scattered(200)), Capabilities(), max_expressions=300)
    if unbounded.policy == DROP and unbounded.expressions > 300:
        assert bounded.policy == ACCEPT
    else:
        pytest.fail("the fixture should make the accept-rules form the smallest: adjust it")


def test_a_pod_coming_or_going_rewrites_about_one_shard() -> None:
    """Rules are placed by address: the chunks a pod falls in are neighbours, so they share a shard."""
    pods = scattered(1500, seed=11)

    def by_label(addresses: list[str]) -> dict[str, set[str]]:
        chain = compile_chain(ISOLATE, Action.ALLOW, groups(addresses), Capabilities(), max_expressions=1500)
        return {s.label: {r.name for r in s.rules} for s in fcmod.shards(chain)}

    before = by_label(pods)
    assert len(before) > 4
    rng = random.Random(3)
    rewritten = []
    for _ in range(20):
        if rng.random() < 0.5:
            after = by_label([*pods, scattered(1, seed=rng.randrange(10**6))[0]])
        else:
            gone = rng.choice(pods)
            after = by_label([p for p in pods if p != gone])
        rewritten.append(sum(1 for label in before.keys() | after.keys() if before.get(label) != after.get(label)))
    assert max(rewritten) <= 3 and sum(rewritten) / len(rewritten) <= 1.5, rewritten


def test_object_size_is_the_compact_json_length() -> None:
    for pods in ([], scattered(30), scattered(2000, seed=2)):
        chain = compile_chain(ISOLATE, Action.ALLOW, groups(pods), Capabilities(), max_expressions=1500)
        for s in fcmod.shards(chain):
            fc = fcmod.firewall_object(PC, "rome", chain, s.rules, s.label)
            assert fcmod.object_size(fc, s.rules) == len(json.dumps(fc, separators=(",", ":")))
