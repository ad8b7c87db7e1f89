"""Property: the compiled chain gives the first-match verdict on every packet, in any rule order.

Random overlapping groups, random ordered rules, random packets. The
compiled FirewallConfiguration is evaluated as nftables would; it must agree
with `policy.decide`, also after Liqo's agent patched an older chain into it
(rules present before keep their place, new ones are appended).
"""

from __future__ import annotations

import random
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness import agent_model as agent
from liqosec.api.peeringconnectivity import Action, PeeringConnectivity, PeeringConnectivitySpec
from liqosec.compiler.compile import compile_chain
from liqosec.compiler.firewallconfiguration import firewall_object
from liqosec.compiler.policy import Clause, decide
from liqosec.firewall.addresses import AddressSet
from liqosec.firewall.capabilities import Capabilities
from liqosec.firewall.evaluate import Packet, node_accepts
from liqosec.groups.resolve import ResolvedGroups

BASE = 10 << 24  # 10.0.0.0: the groups live in 10.0.0.0/26, packets also come from outside it
TERMS = ["local-cluster", "remote-cluster", "offloaded", "vc-local", "vc-remote", "namespace:shop"]
ADDRESSES = st.one_of(st.integers(BASE, BASE + 63), st.sampled_from([BASE - 1, BASE + 64, 0x08080808]))

address_sets = st.lists(
    st.tuples(st.integers(0, 63), st.integers(0, 9)).map(lambda t: (BASE + t[0], BASE + min(63, t[0] + t[1]))),
    max_size=5,
).map(AddressSet.from_intervals)
group_maps = st.fixed_dictionaries({t: address_sets for t in TERMS})
terms_or_any = st.one_of(st.none(), st.sampled_from(TERMS))
clauses = st.lists(
    st.builds(
        lambda s, d, a, i: Clause(s, d, a, f"spec.rules[{i}]"),
        terms_or_any,
        terms_or_any,
        st.sampled_from(list(Action)),
        st.integers(0, 9),
    ),
    max_size=6,
)
packets = st.lists(st.tuples(ADDRESSES, ADDRESSES), min_size=1, max_size=30)
PC = PeeringConnectivity(name="rome", namespace="liqo-tenant-rome", spec=PeeringConnectivitySpec(), uid="u")


def firewall_objects(
    rules: list[Clause], default: Action, sets: dict[str, AddressSet], caps: Capabilities
) -> list[dict[str, Any]]:
    """The peering's objects: its chain and the chains of its own tables (product chains)."""
    groups = ResolvedGroups(peer="rome", sets=sets)
    chain = compile_chain(rules, default, groups, caps)
    return [firewall_object(PC, "rome", chain)] + [firewall_object(PC, "rome", c, index=k) for k, c in chain.extra]


def expected(rules: list[Clause], default: Action, sets: dict[str, AddressSet], src: int, dst: int) -> bool:
    verdict = decide(rules, ResolvedGroups(peer="rome", sets=sets), default, src, dst)
    return verdict is not Action.DENY


def shuffled(fc: dict[str, Any], seed: int) -> dict[str, Any]:
    table = fc["spec"]["table"]
    chain = dict(table["chains"][0])
    rules = list(chain["rules"].get("filterRules", []))
    random.Random(seed).shuffle(rules)
    chain["rules"] = {"filterRules": rules}
    return {**table, "chains": [chain]}


def shuffled_all(fcs: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    return [shuffled(fc, seed + i) for i, fc in enumerate(fcs)]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(group_maps, clauses, st.sampled_from(list(Action)), packets, st.integers(0, 2**16))
def test_compiled_chain_matches_first_match_in_any_order(
    sets: dict[str, AddressSet], rules: list[Clause], default: Action, pkts: list[tuple[int, int]], seed: int
) -> None:
    tables = shuffled_all(firewall_objects(rules, default, sets, Capabilities()), seed)
    for src, dst in pkts:
        assert node_accepts(tables, Packet(src, dst)) == expected(rules, default, sets, src, dst), (src, dst)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(group_maps, group_maps, clauses, clauses, st.sampled_from(list(Action)), packets, st.booleans())
def test_verdicts_survive_an_agent_style_update(
    before: dict[str, AddressSet],
    after: dict[str, AddressSet],
    rules_before: list[Clause],
    rules_after: list[Clause],
    default: Action,
    pkts: list[tuple[int, int]],
    stateful: bool,
) -> None:
    caps = Capabilities(ctstate=stateful)
    node = agent.apply(agent.EMPTY, firewall_objects(rules_before, default, before, caps))
    node = agent.apply(node, firewall_objects(rules_after, default, after, caps))
    tables = [t.as_spec() for t in node]
    for src, dst in pkts:
        assert node_accepts(tables, Packet(src, dst)) == expected(rules_after, default, after, src, dst), (src, dst)
        if stateful:  # replies of accepted flows always pass
            assert node_accepts(tables, Packet(src, dst, established=True))


@settings(max_examples=100, deadline=None)
@given(group_maps, clauses, st.sampled_from(list(Action)))
def test_every_rule_shares_one_verdict_opposite_to_the_policy(
    sets: dict[str, AddressSet], rules: list[Clause], default: Action
) -> None:
    compiled = compile_chain(rules, default, ResolvedGroups(peer="rome", sets=sets), Capabilities())
    for chain in (compiled, *(c for _, c in compiled.extra)):
        assert {r.action for r in chain.rules} <= ({"drop"} if chain.policy == "accept" else {"accept"})
        assert len({r.name for r in chain.rules}) == len(chain.rules)
