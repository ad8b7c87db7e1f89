"""Destination ports and protocols: parsing, the port classes, the order-proof compile, matrix and explain.

The compiled FirewallConfigurations (every table on the forward hook, rules in any order) must give
`policy.decide`'s verdict for every packet: addresses, protocol and destination port. Policies
without ports compile exactly as before.
"""

from __future__ import annotations

import io
import json
import random
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schema_check import violations

from harness import agent_model as agent
from liqosec.api.peeringconnectivity import (
    Action,
    Party,
    PeeringConnectivity,
    PeeringConnectivitySpec,
    PortRange,
    Protocol,
)
from liqosec.api.validation import ValidationError, parse_peering_connectivity
from liqosec.cli import main
from liqosec.compiler.compile import compile_chain, compile_ports
from liqosec.compiler.firewallconfiguration import extra_shard, firewall_object
from liqosec.compiler.policy import Clause, decide
from liqosec.compiler.ports import covers, parse_port, port_classes, signature, spans_of
from liqosec.controller.status import STATELESS, valid_conditions
from liqosec.explain import explain
from liqosec.firewall.addresses import AddressSet
from liqosec.firewall.capabilities import Capabilities
from liqosec.firewall.evaluate import EPHEMERAL_PORT, Packet, node_accepts
from liqosec.groups.resolve import ResolvedGroups
from liqosec.inputs import RenderError, load_objects
from liqosec.matrix import build_matrix
from liqosec.offline import outcomes
from liqosec.render import render

ROOT = Path(__file__).resolve().parents[2]
CRD = yaml.safe_load((ROOT / "manifests/crds/security.liqo.io_peeringconnectivities.yaml").read_text())
SCHEMA: dict[str, Any] = CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]

# ---- parsing and validation ----


def pc(rules: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "security.liqo.io/v1",
        "kind": "PeeringConnectivity",
        "metadata": {"name": "rome", "namespace": "liqo-tenant-rome"},
        "spec": {"rules": rules, **spec},
    }


def errors_of(obj: dict[str, Any]) -> list[str]:
    with pytest.raises(ValidationError) as info:
        parse_peering_connectivity(obj)
    return [str(e) for e in info.value.errors]


def test_ports_parse_networkpolicy_style() -> None:
    parsed = parse_peering_connectivity(
        pc(
            [
                {
                    "source": {"group": "remote-cluster"},
                    "destination": {
                        "group": "vc-local",
                        "ports": [
                            {"port": 443},
                            {"protocol": "UDP", "port": 5000, "endPort": 5010},
                            {"protocol": "TCP"},
                        ],
                    },
                    "action": "allow",
                }
            ]
        )
    )
    [rule] = parsed.spec.rules
    assert rule.destination.group is not None and rule.destination.group.value == "vc-local"
    assert rule.ports == (
        PortRange(Protocol.TCP, 443),  # protocol defaults to TCP
        PortRange(Protocol.UDP, 5000, 5010),
        PortRange(Protocol.TCP),  # no port: every TCP port
    )
    assert [(p.first, p.last) for p in rule.ports] == [(443, 443), (5000, 5010), (0, 65535)]


def test_ports_alone_make_the_destination_any_address() -> None:
    parsed = parse_peering_connectivity(pc([{"destination": {"ports": [{"port": 22}]}, "action": "deny"}]))
    [rule] = parsed.spec.rules
    assert rule.destination == Party() and rule.ports == (PortRange(Protocol.TCP, 22),)


@pytest.mark.parametrize(
    ("ports", "expected"),
    [
        (
            [{"protocol": "SCTP", "port": 9}],
            "spec.rules[0].destination.ports[0].protocol: SCTP cannot be enforced: "
            "Liqo v1.2.0's firewall matches TCP and UDP only",
        ),
        ([{"protocol": "ICMP"}], "spec.rules[0].destination.ports[0].protocol: unknown protocol 'ICMP'"),
        (
            [{"port": 80, "endPort": 79}],
            "spec.rules[0].destination.ports[0].endPort: must be at least port (80), got 79",
        ),
        ([{"endPort": 90}], "spec.rules[0].destination.ports[0].endPort: needs port"),
        ([{"port": 0}], "spec.rules[0].destination.ports[0].port: must be a port number from 1 to 65535, got 0"),
        ([{"port": 70000}], "spec.rules[0].destination.ports[0].port: must be a port number from 1 to 65535"),
        ([{"port": "80"}], "spec.rules[0].destination.ports[0].port: must be a port number"),
        ([{"port": True}], "spec.rules[0].destination.ports[0].port: must be a port number"),
        ([{"port": 80, "name": "http"}], "spec.rules[0].destination.ports[0].name: unknown field"),
        ({"port": 80}, "spec.rules[0].destination.ports: must be a list"),
        ([{"port": p} for p in range(1, 18)], "spec.rules[0].destination.ports: has 17 entries; at most 16"),
    ],
)
def test_bad_ports_name_the_field(ports: Any, expected: str) -> None:
    errors = errors_of(pc([{"destination": {"group": "vc-local", "ports": ports}, "action": "allow"}]))
    assert any(e.startswith(expected) for e in errors), errors


def test_ports_on_the_source_are_refused() -> None:
    errors = errors_of(pc([{"source": {"group": "vc-local", "ports": [{"port": 80}]}, "action": "allow"}]))
    assert errors == ["spec.rules[0].source.ports: ports go on the destination: a rule matches destination ports"]


def test_the_crd_schema_takes_ports_and_says_the_rest_in_cel() -> None:
    good = pc([{"destination": {"group": "vc-local", "ports": [{"protocol": "UDP", "port": 53, "endPort": 54}]}}])
    assert violations(good, SCHEMA) == []
    bad = pc([{"destination": {"group": "vc-local", "ports": [{"protocol": "ICMP", "port": 0}]}}])
    found = violations(bad, SCHEMA)
    assert any("protocol" in v for v in found) and any("port" in v for v in found), found
    item = SCHEMA["properties"]["spec"]["properties"]["rules"]["items"]
    rules = [r["rule"] for r in item["x-kubernetes-validations"]]
    assert "!has(self.source) || !has(self.source.ports)" in rules
    port_rules = [
        r["rule"] for r in item["properties"]["destination"]["properties"]["ports"]["items"]["x-kubernetes-validations"]
    ]
    assert any("endPort >= self.port" in r for r in port_rules)
    assert any("'SCTP'" in r for r in port_rules)
    assert CRD == yaml.safe_load((ROOT / "chart/crds/security.liqo.io_peeringconnectivities.yaml").read_text())


# ---- classes ----


def test_port_classes_cut_the_space_where_clauses_differ() -> None:
    spans = [
        spans_of([PortRange(Protocol.TCP, 80, 90)]),
        (),
        spans_of([PortRange(Protocol.TCP, 85, 100), PortRange(Protocol.UDP, 53)]),
    ]
    classes = {tuple(sorted(c.clauses)): c.spans for c in port_classes(spans)}
    assert classes == {
        (): (("tcp", 0, 79), ("tcp", 101, 65535), ("udp", 0, 52), ("udp", 54, 65535)),
        (0,): (("tcp", 80, 84),),
        (0, 2): (("tcp", 85, 90),),
        (2,): (("tcp", 91, 100), ("udp", 53, 53)),
    }
    assert signature(spans, ("tcp", 88)) == frozenset({0, 2})
    assert signature(spans, ("icmp", 0)) == frozenset()
    assert not covers(spans[0], None)


def test_parse_port_flag() -> None:
    assert parse_port("80/tcp") == ("tcp", 80)
    assert parse_port("53/UDP") == ("udp", 53)
    assert parse_port("8080") == ("tcp", 8080)
    for bad in ("80/sctp", "0/tcp", "http", "70000"):
        with pytest.raises(ValueError, match="--port"):
            parse_port(bad)


# ---- the compile, against the reference semantics ----

BASE = 10 << 24
TERMS = ["local-cluster", "remote-cluster", "offloaded", "vc-local", "vc-remote", "namespace:shop"]
ADDRESSES = st.one_of(st.integers(BASE, BASE + 63), st.sampled_from([BASE - 1, BASE + 64]))
address_sets = st.lists(
    st.tuples(st.integers(0, 63), st.integers(0, 9)).map(lambda t: (BASE + t[0], BASE + min(63, t[0] + t[1]))),
    max_size=4,
).map(AddressSet.from_intervals)
group_maps = st.fixed_dictionaries({t: address_sets for t in TERMS})
terms_or_any = st.one_of(st.none(), st.sampled_from(TERMS))
PORTS = [22, 53, 80, 443, 8080]
port_ranges = st.one_of(
    st.builds(PortRange, st.sampled_from([Protocol.TCP, Protocol.UDP]), st.sampled_from(PORTS)),
    st.builds(lambda p: PortRange(p), st.sampled_from([Protocol.TCP, Protocol.UDP])),
    st.just(PortRange(Protocol.TCP, 80, 443)),
    st.just(PortRange(Protocol.TCP, 30000, 45000)),  # cuts the ephemeral range: replies differ
)
clause_lists = st.lists(
    st.builds(
        lambda s, d, a, ports, i: Clause(s, d, a, f"spec.rules[{i}]", spans_of(ports)),
        terms_or_any,
        terms_or_any,
        st.sampled_from(list(Action)),
        st.one_of(st.just([]), st.lists(port_ranges, min_size=1, max_size=3)),
        st.integers(0, 9),
    ),
    max_size=6,
)
L4S = [("tcp", p) for p in [0, 21, *PORTS, 100, 40000]] + [("udp", p) for p in [53, 80, 40000]] + [("icmp", 0)]
packets = st.lists(st.tuples(ADDRESSES, ADDRESSES, st.sampled_from(L4S)), min_size=20, max_size=60)
PC = PeeringConnectivity(name="rome", namespace="liqo-tenant-rome", spec=PeeringConnectivitySpec(), uid="u")


def tables(
    rules: list[Clause],
    default: Action,
    sets: dict[str, AddressSet],
    caps: Capabilities,
    holes_table: bool | None = None,
) -> list[Any]:
    """The FirewallConfigurations of the compiled chain and its extra chains (`holes_table` forces a shape)."""
    groups = ResolvedGroups(peer="rome", sets=sets)
    if holes_table is None or not any(c.ports for c in rules):
        chain = compile_chain(rules, default, groups, caps)
    else:
        chain = compile_ports(rules, default, groups, caps, holes_table=holes_table)
    return [
        firewall_object(PC, "rome", chain),
        *(firewall_object(PC, "rome", extra, index=kind) for kind, extra in chain.extra),
    ]


def shuffled(fc: dict[str, Any], seed: int) -> dict[str, Any]:
    table = fc["spec"]["table"]
    chain = dict(table["chains"][0])
    rules = list(chain["rules"].get("filterRules", []))
    random.Random(seed).shuffle(rules)
    return {**table, "chains": [{**chain, "rules": {"filterRules": rules}}]}


def packet(src: int, dst: int, l4: tuple[str, int]) -> Packet:
    return Packet(src, dst, proto=l4[0], dport=l4[1])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    group_maps,
    clause_lists,
    st.sampled_from(list(Action)),
    packets,
    st.integers(0, 2**16),
    st.sampled_from([None, True, False]),
)
def test_compiled_tables_match_first_match_for_every_protocol_and_port(
    sets: dict[str, AddressSet],
    rules: list[Clause],
    default: Action,
    pkts: list[Any],
    seed: int,
    holes_table: bool | None,
) -> None:
    fcs = tables(rules, default, sets, Capabilities(), holes_table)
    compiled = [shuffled(fc, seed + i) for i, fc in enumerate(fcs)]
    for fc in compiled:  # order-proof: one verdict per chain, the policy the other
        [chain] = fc["chains"]
        assert {r["action"] for r in chain["rules"].get("filterRules", [])} <= (
            {"drop"} if chain["policy"] == "accept" else {"accept"}
        )
        for r in chain["rules"].get("filterRules", []):
            kinds = [next(k for k in ("ip", "proto", "port") if m.get(k)) for m in r["match"]]
            assert "port" not in kinds or "proto" in kinds, r  # a port is read only with its protocol
            assert len(r["match"]) <= 20
    groups = ResolvedGroups(peer="rome", sets=sets)
    for src, dst, l4 in pkts:
        want = decide(rules, groups, default, src, dst, l4) is not Action.DENY
        assert node_accepts(compiled, packet(src, dst, l4)) == want, (src, dst, l4)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(group_maps, clause_lists, clause_lists, st.sampled_from(list(Action)), packets, st.booleans(), st.booleans())
def test_verdicts_survive_an_agent_style_update(
    sets: dict[str, AddressSet],
    before: list[Clause],
    after: list[Clause],
    default: Action,
    pkts: list[Any],
    holes_before: bool,
    holes_after: bool,
) -> None:
    node = agent.apply(agent.EMPTY, tables(before, default, sets, Capabilities(), holes_before))
    node = agent.apply(node, tables(after, default, sets, Capabilities(), holes_after))
    live = [t.as_spec() for t in node]
    groups = ResolvedGroups(peer="rome", sets=sets)
    for src, dst, l4 in pkts:
        want = decide(after, groups, default, src, dst, l4) is not Action.DENY
        assert node_accepts(live, packet(src, dst, l4)) == want, (src, dst, l4)


@settings(max_examples=100, deadline=None)
@given(group_maps, clause_lists, st.sampled_from(list(Action)))
def test_policies_without_ports_compile_as_before(
    sets: dict[str, AddressSet], rules: list[Clause], default: Action
) -> None:
    """Ports that change no verdict (or no ports at all) leave the chain exactly as without them."""
    portless = [Clause(c.src, c.dst, c.action, c.origin) for c in rules]
    groups = ResolvedGroups(peer="rome", sets=sets)
    plain = compile_chain(portless, default, groups, Capabilities())
    assert plain.extra == ()
    assert all("proto" not in m and "port" not in m for r in plain.rules for m in r.to_api()["match"])  # type: ignore[union-attr]
    # Copies with ports after their originals are shadowed by them: no verdict changes, nor the chain.
    shadowed = [Clause(c.src, c.dst, c.action, c.origin, spans_of([PortRange(Protocol.TCP, 80)])) for c in portless]
    assert compile_chain(portless + shadowed, default, groups, Capabilities()) == plain


# ---- the three shapes, on a cluster ----

CLUSTER = """
apiVersion: v1
kind: Namespace
metadata: {name: liqo-tenant-rome, labels: {liqo.io/remote-cluster-id: rome, liqo.io/tenant-namespace: "true"}}
---
apiVersion: ipam.liqo.io/v1alpha1
kind: Network
metadata: {name: pod-cidr, namespace: liqo, labels: {ipam.liqo.io/network-type: pod-cidr}}
spec: {cidr: 10.1.0.0/16}
---
apiVersion: networking.liqo.io/v1beta1
kind: Configuration
metadata: {name: rome, namespace: liqo-tenant-rome}
status: {remote: {cidr: {pod: [10.71.0.0/16]}}}
---
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: offloading.liqo.io/v1beta1
kind: NamespaceOffloading
metadata: {name: offloading, namespace: shop}
status: {remoteNamespacesConditions: {rome: [{type: OffloadingRequired, status: "True"}]}}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: default}
status: {phase: Running, podIP: 10.1.1.10}
---
apiVersion: v1
kind: Pod
metadata: {name: front, namespace: shop}
spec: {nodeName: worker-1}
status: {phase: Running, podIP: 10.1.2.10}
---
apiVersion: v1
kind: Pod
metadata: {name: cart-0, namespace: shop-rome, labels: {offloading.liqo.io/origin: rome}}
status: {phase: Running, podIP: 10.1.5.10}
"""
WEB, FRONT, CART, ROME = "10.1.1.10", "10.1.2.10", "10.1.5.10", "10.71.255.254"


def cluster(spec: dict[str, Any]) -> list[dict[str, Any]]:
    objs = [o for o in yaml.safe_load_all(CLUSTER)]
    return [*objs, {**pc([]), "spec": spec}]


def firewalls(spec: dict[str, Any], **kw: Any) -> list[dict[str, Any]]:
    return render(cluster(spec), capabilities=Capabilities(), **kw)


def l4_rules(fc: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        r
        for r in fc["spec"]["table"]["chains"][0]["rules"].get("filterRules", [])
        if any("proto" in m or "port" in m for m in r["match"])
    ]


HOLE = {
    "securityMode": "ProtectedBorders",
    "rules": [
        {
            "source": {"group": "remote-cluster"},
            "destination": {"group": "vc-local", "ports": [{"port": 443}]},
            "action": "allow",
        }
    ],
}


def test_protected_borders_hole_is_an_accept_rule_with_proto_and_port() -> None:
    [fc] = firewalls(HOLE)
    chain = fc["spec"]["table"]["chains"][0]
    assert chain["policy"] == "drop"
    [rule] = l4_rules(fc)
    assert rule["action"] == "accept"
    assert {"op": "eq", "proto": {"value": "tcp"}} in rule["match"]
    assert {"op": "eq", "port": {"position": "dst", "value": "443"}} in rule["match"]
    objs = cluster(HOLE)
    at_443 = build_matrix(objs, port=("tcp", 443), capabilities=Capabilities(ctstate=True))
    assert at_443.connect(ROME, FRONT) and not at_443.connect(ROME, WEB)  # vc-local only
    assert not build_matrix(objs, port=("tcp", 80), capabilities=Capabilities(ctstate=True)).connect(ROME, FRONT)
    assert not build_matrix(objs, port=("udp", 443), capabilities=Capabilities(ctstate=True)).connect(ROME, FRONT)
    # Stateless: the reply goes back to an ephemeral port, which the hole does not open.
    assert not build_matrix(objs, port=("tcp", 443)).connect(ROME, FRONT)
    [outcome] = outcomes(objs, capabilities=Capabilities())
    [cond] = [c for c in valid_conditions(outcome, stateful=False) if c.type == STATELESS]
    assert (
        "spec.rules[0] (remote-cluster -> vc-local tcp/443) needs an allow of vc-local -> remote-cluster"
        in cond.message
    )


def test_the_hole_with_its_reply_rule_opens_at_its_port_only() -> None:
    reply = {"source": {"group": "vc-local"}, "destination": {"group": "remote-cluster"}, "action": "allow"}
    objs = cluster({**HOLE, "rules": [*HOLE["rules"], reply]})
    assert build_matrix(objs, port=("tcp", 443)).connect(ROME, FRONT)
    assert not build_matrix(objs, port=("tcp", 444)).connect(ROME, FRONT)
    assert not build_matrix(objs).connect(ROME, FRONT)
    [outcome] = outcomes(objs, capabilities=Capabilities())
    # The hole's replies are allowed now; the reply rule is itself one way (vc-local -> remote-cluster).
    assert [c.origin for c in outcome.chain.one_way_clauses] == ["spec.rules[1]"]


DENY_SSH = {
    "rules": [
        {"destination": {"group": "local-cluster", "ports": [{"port": 22}]}, "action": "deny"},
        {"action": "allow"},
    ]
}


def test_allow_all_but_ssh_is_drop_rules_in_a_policy_accept_chain() -> None:
    [fc] = firewalls(DENY_SSH)
    chain = fc["spec"]["table"]["chains"][0]
    assert chain["policy"] == "accept"
    # The peer's packets to local pods, and any packet to the offloaded pod (the peer's address space).
    assert len(chain["rules"].get("filterRules", [])) == 2
    for rule in chain["rules"].get("filterRules", []):
        assert rule["action"] == "drop"
        assert rule["match"][-2:] == [
            {"op": "eq", "proto": {"value": "tcp"}},
            {"op": "eq", "port": {"position": "dst", "value": "22"}},
        ]
    objs = cluster(DENY_SSH)
    assert not build_matrix(objs, port=("tcp", 22)).connect(ROME, WEB)
    assert build_matrix(objs, port=("udp", 22)).connect(ROME, WEB)
    assert build_matrix(objs, port=("tcp", 23)).connect(ROME, WEB)
    assert build_matrix(objs, port=("tcp", 22)).connect(WEB, FRONT)  # not the peering's traffic


def test_holes_and_port_denies_together_add_a_ports_table() -> None:
    spec = {
        "securityMode": "ProtectedBorders",
        "rules": [
            {"destination": {"group": "vc-local", "ports": [{"port": 22}]}, "action": "deny"},
            {
                "source": {"group": "remote-cluster"},
                "destination": {"ports": [{"port": 8000, "endPort": 8080}]},
                "action": "allow",
            },
        ],
    }
    fcs = firewalls(spec)
    assert [f["metadata"]["name"] for f in fcs] == ["liqosec-rome", "liqosec-rome-ports"]
    main_fc, ports_fc = fcs
    assert main_fc["spec"]["table"]["chains"][0]["policy"] == "drop"
    assert ports_fc["spec"]["table"]["name"] == "liqosec-rome_ports"
    assert ports_fc["spec"]["table"]["chains"][0]["policy"] == "accept"
    assert {r["action"] for r in l4_rules(main_fc)} == {"accept"}
    assert any({"op": "eq", "port": {"position": "dst", "value": "8000-8080"}} in r["match"] for r in l4_rules(main_fc))
    assert {r["action"] for r in ports_fc["spec"]["table"]["chains"][0]["rules"].get("filterRules", [])} == {"drop"}
    objs = cluster(spec)
    stateful = Capabilities(ctstate=True)
    assert not build_matrix(objs, port=("tcp", 22), capabilities=stateful).connect(CART, FRONT)  # the deny
    assert build_matrix(objs, port=("tcp", 23), capabilities=stateful).connect(CART, FRONT)  # the preset
    assert build_matrix(objs, port=("tcp", 8080), capabilities=stateful).connect(ROME, WEB)  # the hole
    assert not build_matrix(objs, port=("tcp", 8081), capabilities=stateful).connect(ROME, WEB)
    assert extra_shard("ports", "") == "ports"
    # The rule count (status.compiledRules, the metric, the matrix header) covers both tables.
    [outcome] = outcomes(objs, capabilities=Capabilities())
    written = sum(len(f["spec"]["table"]["chains"][0]["rules"].get("filterRules", [])) for f in fcs)
    assert outcome.chain.rule_count == written > len(outcome.chain.rules)


def test_per_node_scope_falls_back_to_all_nodes_for_a_peering_with_ports() -> None:
    assert firewalls(DENY_SSH, scope="per-node") == firewalls(DENY_SSH)
    plain = {"rules": [{"destination": {"group": "local-cluster"}, "action": "deny"}]}
    assert [f["metadata"]["name"] for f in firewalls(plain, scope="per-node")] != ["liqosec-rome"]


def scattered(namespaces: int, per_namespace: int) -> list[dict[str, Any]]:
    """Pods of ns0..ns<n-1>, scattered over the local pod CIDR (no two adjacent)."""
    return [
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"p{j}", "namespace": f"ns{i}"},
            "status": {"phase": "Running", "podIP": f"10.1.{100 + i}.{2 * j + 1}"},
        }
        for i in range(namespaces)
        for j in range(per_namespace)
    ]


def test_holes_too_large_for_one_chain_move_to_a_holes_table() -> None:
    """ProtectedBorders with a hole to many scattered pods: B's accepted pairs would not fit one accept-rules
    chain; the chain becomes B with the holes accepted (drop rules, shardable) and a holes table opens them
    only at their ports."""
    hole = {
        "source": {"group": "remote-cluster"},
        "destination": {"group": "vc-local", "ports": [{"port": 443}, {"protocol": "UDP", "port": 53}]},
        "action": "allow",
    }
    spec = {"securityMode": "ProtectedBorders", "rules": [hole]}
    offloaded_ns = [
        {
            "apiVersion": "offloading.liqo.io/v1beta1",
            "kind": "NamespaceOffloading",
            "metadata": {"name": "offloading", "namespace": f"ns{i}"},
            "status": {"remoteNamespacesConditions": {"rome": [{"type": "OffloadingRequired", "status": "True"}]}},
        }
        for i in range(4)
    ]
    objs = [*cluster(spec), *offloaded_ns, *scattered(4, 100)]
    [outcome] = outcomes(objs, capabilities=Capabilities())
    names = [f["metadata"]["name"] for f in outcome.firewalls]
    assert "liqosec-rome-holes" in names and outcome.chain.policy == "accept"
    holes = next(f for f in outcome.firewalls if f["metadata"]["name"] == "liqosec-rome-holes")
    assert holes["spec"]["table"]["name"] == "liqosec-rome_holes"
    assert holes["spec"]["table"]["chains"][0]["policy"] == "drop"
    # One hole class opens every pair the holes open: its rules are the protocol and port alone.
    assert [{"op": "eq", "proto": {"value": "tcp"}}, {"op": "eq", "port": {"position": "dst", "value": "443"}}] in [
        r["match"] for r in holes["spec"]["table"]["chains"][0]["rules"].get("filterRules", [])
    ]
    target = "10.1.101.7"  # a pod of ns1, in vc-local
    for port, want in ((("tcp", 443), True), (("udp", 53), True), (("tcp", 80), False)):
        m = build_matrix(objs, port=port, capabilities=Capabilities(ctstate=True), max_endpoints=None)
        assert m.connect(ROME, target) is want, port
    assert (
        build_matrix(objs, port=("tcp", 443), capabilities=Capabilities(ctstate=True), max_endpoints=None).connect(
            ROME, WEB
        )
        is False
    )


def test_an_accept_chain_too_large_for_one_firewall_is_refused_with_the_field() -> None:
    """Accept rules cannot be cut into shards: past one firewall's budget the spec is refused, nothing written."""

    def spec(namespaces: int, ports: int = 1) -> dict[str, Any]:
        rules = [
            {
                "source": {"group": "remote-cluster"},
                "destination": {"namespace": f"ns{i}", "ports": [{"port": 1000 * (k + 1) + i} for k in range(ports)]},
                "action": "allow",
            }
            for i in range(namespaces)
        ]
        return {"securityMode": "ProtectedBorders", "rules": rules}

    [small] = outcomes([*cluster(spec(2)), *scattered(2, 3)], capabilities=Capabilities())
    assert len(small.firewalls) == 1 and len(l4_rules(small.firewall)) == 2
    with pytest.raises(RenderError) as info:
        outcomes([*cluster(spec(150, 3)), *scattered(150, 3)], capabilities=Capabilities())  # 150 holes, 450 ports
    assert "spec.rules: the rules with ports compile to an accept-rules chain" in str(info.value)


def test_render_refuses_sctp_naming_the_file_object_and_field(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    bad = {
        "rules": [{"destination": {"group": "vc-local", "ports": [{"protocol": "SCTP", "port": 9}]}, "action": "allow"}]
    }
    path.write_text(yaml.safe_dump_all(cluster(bad)))
    with pytest.raises(RenderError) as info:
        render(load_objects([str(path)]))
    assert "spec.rules[0].destination.ports[0].protocol: SCTP cannot be enforced" in str(info.value)
    assert "liqo-tenant-rome/rome" in str(info.value)


# ---- the command line ----


def run(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    return main(argv, out), out.getvalue()


def test_matrix_port_axis(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump_all(cluster(DENY_SSH)))
    code, text = run(["matrix", "-f", str(path), "--port", "22/tcp"])
    assert code == 0 and "Y = a TCP connection to port 22 opens" in text
    code, data = run(["matrix", "-f", str(path), "--port", "22/tcp", "-o", "json"])
    grid = json.loads(data)
    assert grid["probe"] == {"protocol": "tcp", "port": 22}
    names = [e["ip"] for e in grid["endpoints"]]
    rome_row = grid["peerings"]["rome"]["connect"][names.index(ROME)]
    assert rome_row[names.index(WEB)] is False
    code, data = run(["matrix", "-f", str(path), "--port", "23/tcp", "-o", "json"])
    assert json.loads(data)["peerings"]["rome"]["connect"][names.index(ROME)][names.index(WEB)] is True
    code, text = run(["matrix", "-f", str(path)])
    assert "to a port no rule names" in text


def test_render_per_node_says_a_peering_with_ports_is_compiled_for_all_nodes(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump_all(cluster(DENY_SSH)))
    code, text = run(["render", "-f", str(path), "--firewall-scope", "per-node"])
    assert code == 0
    assert [d["metadata"]["name"] for d in yaml.safe_load_all(text)] == ["liqosec-rome"]
    assert "PeeringConnectivity liqo-tenant-rome/rome names ports: compiled for all nodes" in capsys.readouterr().err


def test_matrix_refuses_a_bad_port(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump_all(cluster(DENY_SSH)))
    with pytest.raises(SystemExit) as info:
        main(["matrix", "-f", str(path), "--port", "22/sctp"], io.StringIO())
    assert info.value.code == 2
    assert "protocol must be tcp or udp" in capsys.readouterr().err


def test_explain_names_the_rule_with_its_ports_and_the_enforcing_match() -> None:
    objs = cluster(DENY_SSH)
    x = explain(objs, ROME, "default/web", port=("tcp", 22))
    assert x.request.decision.origin == "spec.rules[0]"
    assert x.request.decision.destination == "local-cluster ports tcp/22"
    assert "port dst == 22" in x.request.enforcement.matches
    assert not x.opens
    y = explain(objs, ROME, "default/web", port=("tcp", 23))
    assert y.request.decision.origin == "spec.rules[1]" and y.opens


def test_explain_command_port(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump_all(cluster(DENY_SSH)))
    code, text = run(["explain", "-f", str(path), "--from", ROME, "--to", "default/web", "--port", "22/tcp"])
    assert code == 0
    assert text.startswith(f"TCP port 22: {ROME} -> default/web")
    assert "spec.rules[0]: any -> local-cluster ports tcp/22: deny" in text
    assert "port dst == 22" in text
    code, data = run(
        ["explain", "-f", str(path), "--from", ROME, "--to", "default/web", "--port", "22/udp", "-o", "json"]
    )
    assert json.loads(data)["request"]["decidedBy"]["origin"] == "spec.rules[1]"
    assert json.loads(data)["probe"] == {"protocol": "udp", "port": 22}


@pytest.mark.parametrize("port", [None, ("tcp", 22), ("tcp", 443), ("udp", 53), ("tcp", EPHEMERAL_PORT)])
def test_explain_agrees_with_the_matrix_on_every_cell(port: tuple[str, int] | None) -> None:
    spec = {
        "securityMode": "ProtectedBorders",
        "rules": [
            {"destination": {"group": "vc-local", "ports": [{"port": 22}]}, "action": "deny"},
            {
                "source": {"group": "remote-cluster"},
                "destination": {"ports": [{"port": 443}, {"protocol": "UDP"}]},
                "action": "allow",
            },
            {"source": {"group": "local-cluster"}, "destination": {"group": "remote-cluster"}, "action": "allow"},
        ],
    }
    objs = cluster(spec)
    m = build_matrix(objs, port=port)
    for a in m.endpoints:
        for b in m.endpoints:
            if a == b:
                continue
            x = explain(objs, a.ip, b.ip, port=port)
            assert x.opens == m.connect(a.ip, b.ip), (a, b)
            assert x.request.agrees and x.reply_by_address.agrees, (a, b)
