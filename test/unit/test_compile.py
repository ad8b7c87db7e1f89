"""The compiler's output: schema fit, stable names, locality of changes, budgets, scope and size."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from schema_check import crd_schema, violations

from liqosec.api.peeringconnectivity import Action, PeeringConnectivity, PeeringConnectivitySpec
from liqosec.api.validation import ValidationError, parse_peering_connectivity
from liqosec.compiler import firewallconfiguration as fcmod
from liqosec.compiler.compile import CHAIN_STATEFUL, CHAIN_STATELESS, CTSTATE_RULE_NAME, compile_chain
from liqosec.compiler.cover import MAX_MATCHES_PER_RULE, Match
from liqosec.compiler.firewallconfiguration import build
from liqosec.compiler.policy import Clause
from liqosec.firewall.addresses import AddressSet, int_to_ip, parse_value
from liqosec.firewall.capabilities import Capabilities
from liqosec.firewall.evaluate import Packet, node_accepts
from liqosec.groups.resolve import ResolvedGroups
from liqosec.groups.view import Snapshot

LOCAL, REMOTE = AddressSet.of(["10.1.0.0/16"]), AddressSet.of(["10.71.0.0/16"])
ISOLATE = [
    Clause("remote-cluster", "offloaded", Action.ALLOW, "r0"),
    Clause("offloaded", "remote-cluster", Action.ALLOW, "r1"),
    Clause("offloaded", None, Action.DENY, "r2"),
    Clause("remote-cluster", None, Action.DENY, "r3"),
]


def scattered(n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    base = int(parse_value("10.1.0.0")[0])
    return [int_to_ip(base + x) for x in rng.sample(range(1, 65000), n)]


def groups(offloaded: list[str]) -> ResolvedGroups:
    return ResolvedGroups(
        "rome", {"local-cluster": LOCAL, "remote-cluster": REMOTE, "offloaded": AddressSet.of(offloaded)}
    )


def test_output_fits_liqos_firewall_crd_schema() -> None:
    schema = crd_schema("networking.liqo.io_firewallconfigurations.yaml", "v1beta1")
    pc = PeeringConnectivity("rome", "liqo-tenant-rome", PeeringConnectivitySpec(), uid="u")
    chain = compile_chain(ISOLATE, Action.ALLOW, groups(scattered(50)), Capabilities())
    assert violations(fcmod.firewall_object(pc, "rome", chain), schema) == []


def test_ctstate_output_is_pruned_by_the_current_crd() -> None:
    """Why capabilities matter: Liqo's CRD today has no ctstate, the API server would drop it."""
    schema = crd_schema("networking.liqo.io_firewallconfigurations.yaml", "v1beta1")
    pc = PeeringConnectivity("rome", "liqo-tenant-rome", PeeringConnectivitySpec(), uid="u")
    chain = compile_chain(ISOLATE, Action.ALLOW, groups([]), Capabilities(ctstate=True))
    assert any("ctstate: unknown field" in v for v in violations(fcmod.firewall_object(pc, "rome", chain), schema))


def test_rule_names_are_stable_for_the_same_input() -> None:
    a = compile_chain(ISOLATE, Action.ALLOW, groups(scattered(300)), Capabilities())
    b = compile_chain(ISOLATE, Action.ALLOW, groups(scattered(300)), Capabilities())
    assert [r.name for r in a.rules] == [r.name for r in b.rules]


def test_a_pod_added_touches_only_the_rules_it_belongs_to() -> None:
    pods = scattered(2000)
    before = {r.name for r in compile_chain(ISOLATE, Action.ALLOW, groups(pods), Capabilities()).rules}
    after = {r.name for r in compile_chain(ISOLATE, Action.ALLOW, groups([*pods, "10.1.200.1"]), Capabilities()).rules}
    assert len(before) > 50
    assert len(after - before) <= 3 and len(before - after) <= 3


def test_no_rule_exceeds_the_kernels_expression_budget() -> None:
    chain = compile_chain(ISOLATE, Action.ALLOW, groups(scattered(3000)), Capabilities())
    assert max(len(r.matches) for r in chain.rules) <= MAX_MATCHES_PER_RULE


def test_cidr_values_never_carry_host_bits() -> None:
    chain = compile_chain(ISOLATE, Action.ALLOW, groups(scattered(500)), Capabilities())
    for rule in chain.rules:
        for m in rule.matches:
            parse_value(m.value)  # strict: raises on host bits


def test_stateful_chain_accepts_established_first_under_a_new_name() -> None:
    stateless = compile_chain(ISOLATE, Action.ALLOW, groups(["10.1.5.10"]), Capabilities())
    stateful = compile_chain(ISOLATE, Action.ALLOW, groups(["10.1.5.10"]), Capabilities(ctstate=True))
    assert stateless.name == CHAIN_STATELESS and stateful.name == CHAIN_STATEFUL
    assert stateful.rules[0].name == CTSTATE_RULE_NAME
    assert stateful.rules[0].to_api()["match"] == [{"op": "eq", "ctstate": {"value": ["established", "related"]}}]


def test_traffic_outside_the_peering_is_untouched_even_by_deny_all() -> None:
    deny_all = [Clause(None, None, Action.DENY, "r0")]
    g = groups(["10.1.5.10"])
    pc = PeeringConnectivity("rome", "liqo-tenant-rome", PeeringConnectivitySpec(), uid="u")
    table = fcmod.firewall_object(pc, "rome", compile_chain(deny_all, Action.DENY, g, Capabilities()))["spec"]["table"]
    accepts = lambda s, d: node_accepts([table], Packet.of(s, d))  # noqa: E731
    assert accepts("10.1.1.1", "10.1.2.2")  # local to local
    assert accepts("10.1.1.1", "8.8.8.8")  # local to the Internet
    assert accepts("10.1.1.1", "10.80.0.1")  # another peering's pods
    assert not accepts("10.1.1.1", "10.71.0.1")
    assert not accepts("10.1.5.10", "8.8.8.8")


def test_ten_thousand_scattered_pods_fit_liqos_agent_shard_by_shard() -> None:
    """Every FirewallConfiguration stays under etcd's bound and within one agent batch."""
    chain = compile_chain(
        ISOLATE,
        Action.ALLOW,
        groups(scattered(10_000)),
        Capabilities(),
        max_expressions=fcmod.MAX_EXPRESSIONS_PER_FIREWALL,
    )
    pc = PeeringConnectivity("rome", "liqo-tenant-rome", PeeringConnectivitySpec(), uid="u")
    shards = fcmod.shard(chain)
    objs = [fcmod.firewall_object(pc, "rome", chain, rules, i) for i, rules in enumerate(shards)]
    assert max(len(json.dumps(o, separators=(",", ":"))) for o in objs) < fcmod.MAX_OBJECT_BYTES
    assert max(sum(r.expressions for r in rules) for rules in shards) <= fcmod.MAX_EXPRESSIONS_PER_FIREWALL
    assert sum(len(rules) for rules in shards) == len(chain.rules) < 3000


def tenant_objects(n_pods: int) -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = [
        {
            "kind": "Network",
            "metadata": {"name": "p", "namespace": "liqo", "labels": {"ipam.liqo.io/network-type": "pod-cidr"}},
            "spec": {"cidr": "10.1.0.0/16"},
        },
        {
            "kind": "Configuration",
            "metadata": {"name": "rome", "namespace": "liqo-tenant-rome"},
            "status": {"remote": {"cidr": {"pod": ["10.71.0.0/16"]}}},
        },
    ]
    for i, ip in enumerate(scattered(n_pods)):
        objects.append(
            {
                "kind": "Pod",
                "metadata": {"name": f"p{i}", "namespace": "x", "labels": {"offloading.liqo.io/origin": "rome"}},
                "status": {"podIP": ip},
            }
        )
    return objects


def peering(namespace: str = "liqo-tenant-rome", rules: list[dict[str, Any]] | None = None) -> PeeringConnectivity:
    rules = rules if rules is not None else [{"source": {"group": "offloaded"}, "action": "deny"}]
    return parse_peering_connectivity({"metadata": {"name": "rome", "namespace": namespace}, "spec": {"rules": rules}})


def test_peering_outside_a_tenant_namespace_is_invalid() -> None:
    with pytest.raises(ValidationError, match=r"metadata.namespace: 'default' is not a tenant namespace"):
        build(Snapshot([]), peering("default"), Capabilities())


def test_object_past_the_size_bound_is_reported_not_written(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fcmod, "MAX_OBJECT_BYTES", 2_000)
    with pytest.raises(ValidationError, match=r"spec.rules: compiles to a FirewallConfiguration of \d+ bytes"):
        build(Snapshot(tenant_objects(200)), peering(), Capabilities())


def test_firewall_configuration_carries_liqo_labels_and_owner() -> None:
    pc = parse_peering_connectivity(
        {"metadata": {"name": "rome", "namespace": "liqo-tenant-rome", "uid": "abc"}, "spec": {}}
    )
    fc = build(Snapshot(tenant_objects(3)), pc, Capabilities()).firewall
    labels = fc["metadata"]["labels"]
    assert labels["networking.liqo.io/firewall-category"] == "fabric"
    assert labels["networking.liqo.io/firewall-subcategory"] == "all-nodes"
    assert labels["app.kubernetes.io/managed-by"] == "liqosec"
    [owner] = fc["metadata"]["ownerReferences"]
    assert owner["uid"] == "abc" and owner["controller"] is True and owner["kind"] == "PeeringConnectivity"
    assert fc["spec"]["table"]["name"] == "liqosec-rome"


def test_two_peerings_never_share_a_table() -> None:
    a = fcmod.table_name("rome")
    b = fcmod.table_name("milan")
    assert a != b


def test_a_match_is_spelled_once_for_every_rule_holding_it() -> None:
    """Rules of a cross product repeat their side's matches: one API dict each, shared and equal as before."""
    m = Match("src", "neq", "10.1.2.3")
    assert m.to_api() == {"op": "neq", "ip": {"position": "src", "value": "10.1.2.3"}}
    assert m.to_api() is m.to_api()
    assert Match("", "eq", "tcp", "proto").to_api() == {"op": "eq", "proto": {"value": "tcp"}}
    assert m == Match("src", "neq", "10.1.2.3") and hash(m) == hash(Match("src", "neq", "10.1.2.3"))
    assert not hasattr(m, "__dict__")  # slotted: thousands live in the compile caches
