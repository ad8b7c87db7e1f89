"""Per-node firewalls (`--firewall-scope per-node`): each node's object decides the packets with an end there.

A packet crosses the forward hook of the node hosting each of its local ends. Held here against the
all-nodes chain, which every node would otherwise apply: the same verdict for every packet with a
hosted end, for random policies; locality of writes; size at scale.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from liqosec.api.peeringconnectivity import Action, PeeringConnectivity, PeeringConnectivitySpec
from liqosec.compiler import firewallconfiguration as fcmod
from liqosec.compiler.compile import compile_chain
from liqosec.compiler.nodechains import compile_node_chains
from liqosec.compiler.policy import Clause
from liqosec.firewall.addresses import AddressSet, int_to_ip, ip_to_int
from liqosec.firewall.capabilities import Capabilities
from liqosec.firewall.evaluate import Packet, node_accepts
from liqosec.groups.resolve import ResolvedGroups, hosted_addresses
from liqosec.groups.view import Snapshot

PC = PeeringConnectivity("rome", "liqo-tenant-rome", PeeringConnectivitySpec(), uid="u")
LOCAL, REMOTE = AddressSet.of(["10.1.0.0/16"]), AddressSet.of(["10.71.0.0/16"])
GROUPS = ["local-cluster", "remote-cluster", "offloaded", "vc-local", None]
NODES = 4


def world(seed: int, pods: int = 40) -> tuple[ResolvedGroups, dict[str, AddressSet], dict[int, str]]:
    """Pods on NODES nodes (node k owns 10.1.k.0/24), some offloaded, some vc-local; where each pod runs."""
    rng = random.Random(seed)
    where: dict[int, str] = {}
    offloaded, vc_local = [], []
    for _ in range(pods):
        k = rng.randrange(NODES)
        ip = ip_to_int(f"10.1.{k}.{rng.randrange(2, 250)}")
        where[ip] = f"node-{k}"
        kind = rng.random()
        (offloaded if kind < 0.4 else vc_local if kind < 0.6 else []).append(int_to_ip(ip))
    groups = ResolvedGroups(
        "rome",
        {
            "local-cluster": LOCAL,
            "remote-cluster": REMOTE,
            "offloaded": AddressSet.of(offloaded),
            "vc-local": AddressSet.of(vc_local),
        },
    )
    hosted = {f"node-{k}": AddressSet.of([f"10.1.{k}.0/24"]) for k in range(NODES)}
    return groups, hosted, where


def random_policy(rng: random.Random) -> tuple[list[Clause], Action]:
    clauses = [
        Clause(rng.choice(GROUPS), rng.choice(GROUPS), rng.choice([Action.ALLOW, Action.DENY]), f"r{i}")
        for i in range(rng.randrange(1, 6))
    ]
    return clauses, rng.choice([Action.ALLOW, Action.DENY])


def tables(chain: Any) -> list[dict[str, Any]]:
    """The chain's table and those of its extra chains (product chains of the all-nodes chain)."""
    fcs = [fcmod.firewall_object(PC, "rome", chain)]
    fcs += [fcmod.firewall_object(PC, "rome", extra, index=kind) for kind, extra in chain.extra]
    return [fc["spec"]["table"] for fc in fcs]


def node_of(ip: int, hosted: dict[str, AddressSet]) -> str | None:
    return next((n for n, h in hosted.items() if ip in h), None)


@pytest.mark.parametrize("seed", range(24))
def test_every_packet_with_a_hosted_end_gets_the_all_nodes_verdict(seed: int) -> None:
    rng = random.Random(seed)
    groups, hosted, where = world(seed)
    clauses, default = random_policy(rng)
    whole = tables(compile_chain(clauses, default, groups, Capabilities()))
    per_node = compile_node_chains(clauses, default, groups, Capabilities(), hosted)
    node_tables = {n: tables(c) for n, c in per_node.chains.items()}
    ends = [*where, ip_to_int("10.1.2.251"), ip_to_int("10.71.0.9"), ip_to_int("10.71.200.1"), ip_to_int("8.8.8.8")]
    for src in ends:
        for dst in ends:
            crossed = {n for n in (node_of(src, hosted), node_of(dst, hosted)) if n is not None}
            if not crossed:
                continue  # never crosses a node of this cluster
            packet = Packet(src, dst)
            want = node_accepts(whole, packet)
            got = all(node_accepts(node_tables.get(n, []), packet) for n in crossed)
            assert got == want, (int_to_ip(src), int_to_ip(dst), sorted(crossed), clauses, default)


def test_a_node_whose_pods_did_not_change_keeps_its_chain() -> None:
    """Isolating offloaded pods: a new offloaded pod on node-1 rewrites node-1's chain only."""
    groups, hosted, where = world(3, pods=200)
    clauses = [
        Clause("remote-cluster", "offloaded", Action.ALLOW, "r0"),
        Clause("offloaded", "remote-cluster", Action.ALLOW, "r1"),
        Clause("offloaded", None, Action.DENY, "r2"),
        Clause(None, "offloaded", Action.DENY, "r3"),
    ]
    before = compile_node_chains(clauses, Action.ALLOW, groups, Capabilities(), hosted).chains
    free = next(f"10.1.1.{i}" for i in range(2, 250) if ip_to_int(f"10.1.1.{i}") not in where)
    grown = ResolvedGroups("rome", {**groups.sets, "offloaded": groups.get("offloaded").union(AddressSet.of([free]))})
    after = compile_node_chains(clauses, Action.ALLOW, grown, Capabilities(), hosted).chains
    changed = sorted(n for n in hosted if before[n].rules != after[n].rules)
    assert changed == ["node-1"]


def slim_pod(name: str, ip: str, node: str, offloaded: bool) -> dict[str, Any]:
    labels = {"offloading.liqo.io/origin": "rome"} if offloaded else {"app": "x"}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop", "labels": labels},
        "spec": {"nodeName": node},
        "status": {"phase": "Running", "podIPs": [{"ip": ip}]},
    }


def test_hosted_addresses_are_pod_cidrs_and_pods_of_real_nodes_only() -> None:
    objs = [
        {"kind": "Node", "metadata": {"name": "a"}, "spec": {"podCIDRs": ["10.1.0.0/24", "fd00::/64"]}},
        {"kind": "Node", "metadata": {"name": "b"}, "spec": {}},
        {"kind": "Node", "metadata": {"name": "v", "labels": {"liqo.io/type": "virtual-node"}}, "spec": {}},
        slim_pod("p1", "10.1.0.7", "a", False),
        slim_pod("p2", "10.1.9.9", "b", True),
        slim_pod("p3", "10.71.0.3", "v", True),
    ]
    hosted = hosted_addresses(Snapshot(objs))
    assert hosted == {"a": AddressSet.of(["10.1.0.0/24"]), "b": AddressSet.of(["10.1.9.9"])}


def test_ten_thousand_scattered_pods_on_a_hundred_nodes_stay_small_per_node() -> None:
    """The per-node target: every object under 64 KiB, where all-nodes needs dozens of shards."""
    rng = random.Random(5)
    addresses = rng.sample(range(1, 65000), 10_000)
    offloaded = AddressSet.of([int_to_ip(ip_to_int("10.1.0.0") + a) for a in addresses])
    hosted: dict[str, list[str]] = {}
    for a in addresses:
        hosted.setdefault(f"node-{rng.randrange(100)}", []).append(int_to_ip(ip_to_int("10.1.0.0") + a))
    groups = ResolvedGroups("rome", {"local-cluster": LOCAL, "remote-cluster": REMOTE, "offloaded": offloaded})
    clauses = [
        Clause("remote-cluster", "offloaded", Action.ALLOW, "r0"),
        Clause("offloaded", "remote-cluster", Action.ALLOW, "r1"),
        Clause("offloaded", None, Action.DENY, "r2"),
    ]
    per_node = compile_node_chains(
        clauses, Action.ALLOW, groups, Capabilities(), {n: AddressSet.of(v) for n, v in hosted.items()}
    )
    sizes = [
        len(json.dumps(fcmod.firewall_object(PC, "rome", c, s.rules, s.label, n)))
        for n, c in per_node.chains.items()
        for s in fcmod.shards(c)
    ]
    assert len(sizes) >= 100 and max(sizes) < 64 * 1024


def test_the_run_flag_spells_the_compilers_scopes() -> None:
    from liqosec import run as options

    assert (options.ALL_NODES, options.PER_NODE) == (fcmod.ALL_NODES, fcmod.PER_NODE)
