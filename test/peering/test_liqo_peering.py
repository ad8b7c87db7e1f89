"""liqosec on a peering Liqo v1.2.0 made itself: two kind clusters, `liqoctl peer`, a namespace
offloaded with `liqoctl offload`, liqosec installed by Helm on both sides (conftest.py).

Every Liqo object here was made by Liqo's own controllers, webhooks and virtual kubelet. The tests
run in file order: the groups liqosec resolves against what Liqo created, then each policy (the
README's examples, both segregation modes, ProtectedBorders with and without a port hole) through
Liqo's webhooks and Liqo's fabric onto every node, judged by the nftables on the nodes and by real
packets against `liqosec matrix`, then the lifecycle (a policy deleted, `liqoctl unpeer` with a
policy in place, peering again).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.agents import diff_state, expected_state, state_of_ruleset
from harness.kind import ROOT, CommandError, KindCluster, eventually, run
from harness.liqo_forge import forge
from harness.livestate import FC, MANAGED_BY, PC, cluster_objects, condition, dump_objects, matrix
from harness.nodenetns import NodeNamespace
from harness.peering import (
    CONSUMER,
    OFFLOADED_NAMESPACE,
    PLAIN_NAMESPACE,
    POD_SUBNET,
    PROVIDER,
    PROVIDER2,
    Peering,
    Side,
    create_workloads,
)
from harness.pods import PORT, connects_from, pod_ip
from liqosec.firewall.addresses import AddressSet
from liqosec.groups.resolve import resolve_groups
from liqosec.groups.view import Snapshot

pytestmark = pytest.mark.e2e

EXAMPLES = ROOT / "examples"
# Compiles, is written, passes Liqo's webhooks and is applied by every fabric pod well within this.
CONVERGE_TIMEOUT_S = 180
# How long liqosec must stay silent (nothing above info logged) once an unpeering has settled.
QUIET_WINDOW_S = 20
FABRIC = "app.kubernetes.io/name=fabric"
IP_MAPPING_GATEWAY = "networking.liqo.io/firewall-category=gateway"


# ------------------------------------------------------------------------------------------ helpers
def side_of(p: Peering, name: str) -> Side:
    return p.consumer if name == CONSUMER else p.provider


def policy(side: Side, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "security.liqo.io/v1",
        "kind": "PeeringConnectivity",
        "metadata": {"name": side.peer, "namespace": side.tenant},
        "spec": spec,
    }


def example_spec(file: str) -> dict[str, Any]:
    """The spec of the PeeringConnectivity in examples/<file>, as the README shows it."""
    docs = [d for d in yaml.safe_load_all((EXAMPLES / file).read_text()) if d]
    [pc] = [d for d in docs if d.get("kind") == "PeeringConnectivity"]
    spec: dict[str, Any] = pc["spec"]
    return spec


@dataclass(frozen=True)
class Case:
    name: str
    side: str  # the cluster the policy is written on
    spec: dict[str, Any]


# The canonical hole through ProtectedBorders (README, "Ports and protocols"), on the port the pods serve.
PORTS_HOLE = {
    "securityMode": "ProtectedBorders",
    "rules": [
        {
            "source": {"group": "remote-cluster"},
            "destination": {"group": "vc-local", "ports": [{"port": PORT}]},
            "action": "allow",
        },
        {"source": {"group": "vc-local"}, "destination": {"group": "remote-cluster"}, "action": "allow"},
    ],
}
CASES = [
    Case("consumer-vc-only", CONSUMER, example_spec("consumer-vc-only.yaml")),
    Case("consumer-full-pod-to-pod", CONSUMER, example_spec("mode-full-pod-to-pod.yaml")),
    Case("consumer-segregation", CONSUMER, example_spec("mode-segregation-consumer.yaml")),
    Case("consumer-protected-borders", CONSUMER, example_spec("mode-protected-borders-consumer.yaml")),
    Case("consumer-protected-borders-port-hole", CONSUMER, PORTS_HOLE),
    Case("provider-quick-start", PROVIDER, example_spec("quick-start.yaml")),
    Case("provider-isolate-offloaded", PROVIDER, example_spec("provider-isolate-offloaded.yaml")),
    Case("provider-segregation", PROVIDER, example_spec("mode-segregation-provider.yaml")),
    Case("provider-protected-borders", PROVIDER, example_spec("mode-protected-borders-provider.yaml")),
]


def get_or_none(cluster: KindCluster, *args: str) -> dict[str, Any] | None:
    try:
        return cluster.get_json(*args)
    except CommandError as err:
        if "NotFound" in err.stderr or "not found" in err.stderr:
            return None
        raise


def liqosec_firewalls(side: Side) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = side.cluster.get_json(FC, "-n", side.tenant, "-l", MANAGED_BY)["items"]
    return items


def fabric_hosts(side: Side) -> set[str]:
    """Liqo's fabric pods on physical nodes: the hosts that report Applied on fabric firewalls."""
    pods = side.cluster.get_json("pods", "-n", "liqo", "-l", FABRIC)["items"]
    return {p["metadata"]["name"] for p in pods if p.get("status", {}).get("phase") == "Running"}


def applied_hosts(fc: dict[str, Any]) -> set[str]:
    return {
        c["host"]
        for c in fc.get("status", {}).get("conditions", [])
        if c.get("type") == "Applied" and c.get("status") == "True"
    }


def rendered(side: Side, tmp: Path) -> list[dict[str, Any]]:
    """`liqosec render` of the cluster's objects read back with kubectl: what the controller must write."""
    dump = dump_objects(side.cluster, tmp / f"{side.name}.json")
    out = run([sys.executable, "-m", "liqosec", "render", "-f", str(dump), "-n", side.tenant, "-o", "json"]).stdout
    items: list[dict[str, Any]] = json.loads(out) if out.strip() else []
    return items


def nft_ruleset(node: str) -> dict[str, Any]:
    out = run(["docker", "exec", node, "nft", "-j", "list", "ruleset"]).stdout
    parsed: dict[str, Any] = json.loads(out)
    return parsed


def physical_nodes(side: Side) -> list[str]:
    nodes = side.cluster.get_json("nodes", "-l", "liqo.io/type!=virtual-node")["items"]
    return sorted(n["metadata"]["name"] for n in nodes)


def wait_ready(side: Side) -> dict[str, Any]:
    """The policy is Ready at its generation; at that moment every fabric pod has applied every shard."""
    seen: list[str] = []

    def ready() -> dict[str, Any] | None:
        pc = side.cluster.get_json(PC, "-n", side.tenant, side.peer)
        if pc.get("status", {}).get("observedGeneration") != pc["metadata"]["generation"]:
            return None
        if condition(pc, "Ready").get("status") != "True":
            seen.append(f"{condition(pc, 'Ready').get('reason')}: {condition(pc, 'Ready').get('message')}")
            return None
        hosts = fabric_hosts(side)
        for fc in liqosec_firewalls(side):
            missing = hosts - applied_hosts(fc)
            assert not missing, f"Ready=True while {fc['metadata']['name']} is not applied by {sorted(missing)}"
        return pc

    try:
        return eventually(ready, timeout=CONVERGE_TIMEOUT_S, what=f"{side.tenant}/{side.peer} Ready")
    except TimeoutError as err:
        raise AssertionError(f"{err}; Ready said: {seen[-3:]}") from err


# -------------------------------------------------------------------------------------------- groups
def test_groups_are_what_liqo_created(peering: Peering) -> None:
    """Every group liqosec resolves, on each side of both peerings, equals what Liqo made and what the
    other cluster holds; the ClusterSelector that leaves the second provider out leaves it out of vc-local."""
    c, p = peering.consumer, peering.provider
    for side in peering.all_sides:
        side.cluster.apply([policy(side, {"rules": []})])
    offloading = c.cluster.get_json("namespaceoffloadings.offloading.liqo.io", "-n", OFFLOADED_NAMESPACE, "offloading")
    required = {
        peer: {x["type"]: x["status"] for x in conditions}.get("OffloadingRequired")
        for peer, conditions in offloading["status"]["remoteNamespacesConditions"].items()
    }
    assert required == {PROVIDER: "True", PROVIDER2: "False"}, f"Liqo's ClusterSelector outcome: {required}"
    offloaded_ip = pod_ip(c.cluster, OFFLOADED_NAMESPACE, "remote-web")
    [twin] = [
        q
        for q in p.cluster.get_json("pods", "-A", "-l", f"offloading.liqo.io/origin={CONSUMER}")["items"]
        if q["metadata"]["name"] == "remote-web"
    ]
    assert twin["status"]["podIP"] == offloaded_ip, "the shadow pod's IP is its provider twin's (no remap here)"
    assert twin["metadata"]["namespace"] == f"{OFFLOADED_NAMESPACE}-{CONSUMER}"
    local_web = pod_ip(c.cluster, OFFLOADED_NAMESPACE, "local-web")
    for side in peering.all_sides:
        config = side.cluster.get_json("configurations.networking.liqo.io", "-n", side.tenant)["items"]
        assert len(config) == 1, f"{side.name}: one Configuration in {side.tenant}, Liqo made {len(config)}"
        status = config[0]["status"]["remote"]["cidr"]
        external = status["external"]
        unknown = side.cluster.get_json("ips.ipam.liqo.io", "-n", side.tenant)["items"]
        [unknown_source] = [i for i in unknown if i["metadata"]["name"].endswith("unknown-source")]
        # The IP Liqo reserves for the peer's unknown sources: spec.ip is the address in the peer's
        # remapped external CIDR (status.ip, in our own external CIDR, is what the gateway NATs it from).
        masquerade = unknown_source["spec"]["ip"]
        assert masquerade == AddressSet.of(external[:1]).first(), "the unknown source: external[0]'s first"
        assert status["pod"] == [POD_SUBNET[side.peer]], f"{side.name}: the peer's pod CIDR, not remapped (no overlap)"
        groups = resolve_groups(Snapshot(cluster_objects(side.cluster)), side.peer, side.tenant, named=("leaf",))
        want = {
            "local-cluster": AddressSet.of([side.pod_subnet]),
            "remote-cluster": AddressSet.of([POD_SUBNET[side.peer], masquerade]),
            "leaf": AddressSet.of(external),
            "offloaded": AddressSet.of([offloaded_ip] if side is p else []),
            "vc-remote": AddressSet.of([offloaded_ip] if side is c else []),
            "vc-local": AddressSet.of([local_web] if side is c else []),
        }
        for group, addresses in want.items():
            assert groups.get(group) == addresses, (
                f"{side.name}: {group} resolves to {groups.get(group).values()}, Liqo made {addresses.values()}"
            )
        pc = wait_ready(side)
        assert pc["status"]["addresses"] == {
            g: want[g].size() for g in ("local-cluster", "offloaded", "remote-cluster", "vc-local", "vc-remote")
        }
        print(f"\n{side.name} groups: " + ", ".join(f"{g} {a.values()}" for g, a in want.items()))


# The fields liqosec reads of each kind Liqo makes (docs/semantics.md, "Where Liqo keeps each fact").
READ_FIELDS: dict[str, tuple[tuple[str, ...], ...]] = {
    "Namespace": (
        ("metadata", "labels", "liqo.io/tenant-namespace"),
        ("metadata", "labels", "liqo.io/remote-cluster-id"),
    ),
    "Configuration": (("spec", "remote", "cidr"), ("status", "remote", "cidr")),
    "Network": (
        ("spec", "cidr"),
        ("status", "cidr"),
        ("metadata", "labels", "ipam.liqo.io/network-type"),
        ("metadata", "labels", "configuration.liqo.io/cidr-type"),
    ),
    "IP": (("spec", "ip"),),
    "Node": (("metadata", "labels", "liqo.io/type"), ("metadata", "labels", "liqo.io/remote-cluster-id")),
    "NamespaceOffloading": (("status", "remoteNamespacesConditions"),),
    "Pod": (
        ("metadata", "labels", "offloading.liqo.io/origin"),
        ("metadata", "labels", "liqo.io/shadowPod"),
        ("spec", "nodeName"),
        ("status", "podIP"),
    ),
}


def field(obj: dict[str, Any], path: tuple[str, ...]) -> Any:
    for key in path:
        obj = obj.get(key) if isinstance(obj, dict) else None  # type: ignore[assignment]
    return obj


def conditions_by_type(value: Any) -> Any:
    """NamespaceOffloading's per-cluster conditions as {cluster: {type: status}}: times and messages vary."""
    if not isinstance(value, dict):
        return value
    return {k: {c["type"]: c["status"] for c in v} for k, v in value.items()}


def forge_spec(
    side: Side, config: dict[str, Any], pods: list[dict[str, Any]], offloading: dict[str, Any] | None
) -> dict[str, Any]:
    """The state Liqo made on ``side``, as the suites describe a state to Liqo's forge functions."""
    remote = config["status"]["remote"]["cidr"]
    namespaces = []
    if offloading is not None:  # the consumer: its offloaded namespace with its ClusterSelector, every provider
        namespaces = [{"name": OFFLOADED_NAMESPACE, "clusterSelector": offloading["spec"]["clusterSelector"]}]
    others = [{"clusterID": x} for x in (PROVIDER, PROVIDER2) if offloading is not None and x != side.peer]
    return {
        "localClusterID": side.name,
        "peerClusterID": side.peer,
        "localPodCIDR": side.pod_subnet,
        "localExternalCIDR": config["spec"]["local"]["cidr"]["external"][0],
        "peerPodCIDR": config["spec"]["remote"]["cidr"]["pod"][0],
        "peerPodCIDRRemapped": remote["pod"][0],
        "peerExternalCIDR": config["spec"]["remote"]["cidr"]["external"][0],
        "peerExternalCIDRRemapped": remote["external"][0],
        "stage": "remapped",
        "virtualNodeName": side.peer,
        "namespaces": namespaces,
        "otherProviders": others,
        "pods": [
            {
                "kind": "shadow" if side.name == CONSUMER else "offloaded",
                "name": q["metadata"]["name"],
                "namespace": q["metadata"]["namespace"],
                "ip": q["status"]["podIP"],
                "labels": {k: v for k, v in q["metadata"].get("labels", {}).items() if k == "app"},
            }
            for q in pods
        ],
    }


def test_liqos_forge_makes_what_liqo_made(peering: Peering) -> None:
    """The unit and integration suites build Liqo's objects with Liqo's forge functions
    (harness/liqo_forge.py). Forged for the state real Liqo is in here, they resolve to the same
    groups, and every field liqosec reads is equal; every other difference is printed."""
    findings: list[str] = []
    for side in peering.all_sides:
        [config] = side.cluster.get_json("configurations.networking.liqo.io", "-n", side.tenant)["items"]
        offloading = None
        if side.name == CONSUMER:  # our pods on the peer's virtual node: shadow pods
            pods = side.cluster.get_json("pods", "-A", "--field-selector", f"spec.nodeName={side.peer}")["items"]
            offloading = side.cluster.get_json(
                "namespaceoffloadings.offloading.liqo.io", "-n", OFFLOADED_NAMESPACE, "offloading"
            )
        else:
            pods = side.cluster.get_json("pods", "-A", "-l", f"offloading.liqo.io/origin={side.peer}")["items"]
        for q in pods:
            if not q["status"].get("podIP"):  # a DaemonSet tolerating every taint lands on virtual nodes too
                findings.append(
                    f"{side.name}: pod {q['metadata']['namespace']}/{q['metadata']['name']} on {q['spec']['nodeName']}"
                    f" ({q['status'].get('reason') or q['status'].get('phase')}) holds no IP"
                )
        pods = [q for q in pods if q["status"].get("podIP")]
        moved = [q["status"]["podIP"] for q in pods]
        forged = forge(forge_spec(side, config, pods, offloading))
        real = cluster_objects(side.cluster) + side.cluster.get_json("ips.ipam.liqo.io", "-A")["items"]
        index = {(o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]): o for o in real}
        for obj in forged:
            kind, name = obj["kind"], obj["metadata"]["name"]
            key = (kind, obj["metadata"].get("namespace", ""), name)
            if kind not in READ_FIELDS:
                continue
            twin = index.get(key)
            if twin is None:
                findings.append(f"{side.name}: forged {kind} {key[1]}/{name}, Liqo made none of that name")
                continue
            for path in READ_FIELDS[kind]:
                want, got = field(obj, path), field(twin, path)
                if kind == "NamespaceOffloading":
                    want, got = conditions_by_type(want), conditions_by_type(got)
                if want is None and got is not None:  # a fact only the real cluster knows (a pod's node)
                    findings.append(f"{side.name}: {kind} {key[1]}/{name} {'.'.join(path)}: forged unset, Liqo {got}")
                    continue
                assert want == got, f"{side.name}: {kind} {key[1]}/{name} {'.'.join(path)}: forged {want}, Liqo {got}"
            for where in ("labels", "annotations"):
                forged_keys, real_keys = set(obj["metadata"].get(where) or {}), set(twin["metadata"].get(where) or {})
                if forged_keys != real_keys:
                    findings.append(
                        f"{side.name}: {kind} {key[1]}/{name} {where}: only forged {sorted(forged_keys - real_keys)}, "
                        f"only Liqo's {sorted(real_keys - forged_keys)}"
                    )
        # Resolved from either set of objects, every group is the same (pods Liqo does not make are the real ones).
        ours = [o for o in real if o["kind"] not in {f["kind"] for f in forged} or o["kind"] == "Pod"]
        forged_view = Snapshot(
            forged + [o for o in ours if o["kind"] == "Pod" and o["status"].get("podIP") not in moved]
        )
        for group in ("local-cluster", "remote-cluster", "offloaded", "vc-local", "vc-remote", "leaf"):
            from_forge = resolve_groups(forged_view, side.peer, side.tenant, named=("leaf",)).get(group)
            from_liqo = resolve_groups(Snapshot(real), side.peer, side.tenant, named=("leaf",)).get(group)
            assert from_forge == from_liqo, (
                f"{side.name} {group}: forged {from_forge.values()}, Liqo {from_liqo.values()}"
            )
    print("\nwhere real Liqo differs from the forged objects:\n  " + "\n  ".join(findings or ["nowhere"]))


# ------------------------------------------------------------------------------------------ policies
def check_packets(side: Side, m: dict[str, Any]) -> int:
    """Real TCP on every cell of the matrix ``m`` that crosses the worker's forward hook: between our
    pods on the worker, and between them and every endpoint that is no pod of this cluster (the
    peer's pods and samples, the Internet), impersonated at the worker. Returns the cells checked."""
    physical = set(physical_nodes(side))
    pods = side.cluster.get_json("pods", "-A")["items"]
    here = {q["status"].get("podIP") for q in pods if q["spec"].get("nodeName") in physical}
    ours = {
        q["status"].get("podIP")
        for q in pods
        if q["spec"].get("nodeName") == side.worker
        and q["metadata"]["namespace"].startswith((PLAIN_NAMESPACE, OFFLOADED_NAMESPACE))
    }
    ip = {e["name"]: e["ip"] for e in m["endpoints"]}
    index = {e["name"]: i for i, e in enumerate(m["endpoints"])}
    real = [e["name"] for e in m["endpoints"] if e["kind"] == "pod" and e["ip"] in ours]
    fake = [e["name"] for e in m["endpoints"] if e["ip"] not in here]
    assert len(real) >= 2 and fake, f"{side.name}: nothing to probe (ours {real}, impersonated {fake})"
    cells = [(a, b) for a in real for b in real if a != b] + [(a, b) for a in real for b in fake]
    cells += [(a, b) for a in fake for b in real]
    grid = m["node"]["connect"]
    expected = {(a, b): bool(grid[index[a]][index[b]]) for a, b in cells}
    differences: list[str] = []

    def measure(ns: NodeNamespace) -> dict[tuple[str, str], bool] | None:
        measured: dict[tuple[str, str], bool] = {}
        for a in real:
            targets = [b for b in real + fake if b != a]
            measured.update(
                zip(((a, b) for b in targets), connects_from(side.cluster, a, [ip[b] for b in targets]), strict=True)
            )
        inbound = [(a, b) for a in fake for b in real]
        for (a, b), ok in ns.connects_all([(ip[a], ip[b]) for a, b in inbound]).items():
            measured[next(c for c in inbound if (ip[c[0]], ip[c[1]]) == (a, b))] = ok
        differences[:] = [
            f"{a} ({ip[a]}) -> {b} ({ip[b]}): matrix {'connects' if expected[(a, b)] else 'blocked'}, real "
            f"{'connects' if measured[(a, b)] else 'blocked'}"
            for a, b in cells
            if measured[(a, b)] != expected[(a, b)]
        ]
        return measured if not differences else None

    with NodeNamespace(side.worker, sorted({ip[n] for n in fake})) as ns:
        try:
            eventually(lambda: measure(ns), timeout=60, what=f"{side.name}: real TCP equal to `liqosec matrix`")
        except TimeoutError as err:
            raise AssertionError(f"{err}; differences:\n  " + "\n  ".join(differences)) from err
    opened = sum(expected.values())
    print(
        f"\n{side.name}: {len(cells)} cells, real packets equal the matrix ({opened} open, {len(cells) - opened} not)"
    )
    return len(cells)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_policy_through_liqo(peering: Peering, case: Case, tmp_path: Path) -> None:
    side = side_of(peering, case.side)
    side.cluster.apply([policy(side, case.spec)])
    wait_ready(side)
    live = {fc["metadata"]["name"]: fc for fc in liqosec_firewalls(side)}
    generations = {name: fc["metadata"]["generation"] for name, fc in live.items()}

    # Liqo's webhooks admitted each object as the controller wrote it: the live spec is the render.
    want = {fc["metadata"]["name"]: fc for fc in rendered(side, tmp_path)}
    assert set(live) == set(want), f"live firewalls {sorted(live)}, render {sorted(want)}"
    for name in want:
        assert live[name]["spec"] == want[name]["spec"], f"{name}: the live spec differs from `liqosec render`"

    # Liqo's fabric wrote on every node exactly the tables of the render.
    tables = {fc["spec"]["table"]["name"] for fc in want.values()}
    expected = expected_state(want.values())
    last: dict[str, str] = {}

    def nodes_hold_the_render() -> bool | None:
        for node in physical_nodes(side):
            last[node] = diff_state(expected, state_of_ruleset(nft_ruleset(node), tables))
        return True if not any(last.values()) else None

    try:
        eventually(nodes_hold_the_render, timeout=60, what=f"{side.name}: every node's nftables equal the render")
    except TimeoutError as err:
        raise AssertionError(f"{err}: {last}") from err

    # Real packets, every cell this test can place, against `liqosec matrix` of the same objects.
    m = matrix(side.cluster, tmp_path, "-n", side.tenant, "--port", f"{PORT}/tcp")
    check_packets(side, m)

    # No write loop with Liqo's webhooks: nothing was rewritten while the checks ran.
    after = {fc["metadata"]["name"]: fc["metadata"]["generation"] for fc in liqosec_firewalls(side)}
    assert after == generations, f"firewalls rewritten with nothing changed: {generations} then {after}"


# ----------------------------------------------------------------------------------------- lifecycle
def node_tables(side: Side) -> dict[str, set[str]]:
    """Per physical node, the names of the tables in its ruleset."""
    return {
        node: {i["table"]["name"] for i in nft_ruleset(node)["nftables"] if "table" in i}
        for node in physical_nodes(side)
    }


def rules_on_nodes(side: Side, tables: set[str]) -> dict[str, int]:
    """Per physical node, how many rules the named tables hold."""
    return {
        node: sum(1 for i in nft_ruleset(node)["nftables"] if "rule" in i and i["rule"]["table"] in tables)
        for node in physical_nodes(side)
    }


def rule_count(fcs: list[dict[str, Any]]) -> int:
    return sum(len(c.get("rules", {}).get("filterRules") or ()) for fc in fcs for c in fc["spec"]["table"]["chains"])


def complaints(side: Side, since_s: int) -> list[str]:
    """liqosec's log lines above info in the last ``since_s`` seconds (JSON lines, the chart's default)."""
    out = side.cluster.kubectl("logs", "-n", "liqo", "deploy/liqosec", f"--since={since_s}s")
    return [line for line in out.splitlines() if '"level": "info"' not in line and '"level": "debug"' not in line]


def test_deleting_a_policy_retires_its_firewalls_on_every_node(peering: Peering) -> None:
    side = peering.consumer
    side.cluster.apply([policy(side, PORTS_HOLE)])
    wait_ready(side)
    fcs = liqosec_firewalls(side)
    tables = {fc["spec"]["table"]["name"] for fc in fcs}
    assert tables and all(tables <= held for held in node_tables(side).values())

    side.cluster.kubectl("delete", PC, "-n", side.tenant, side.peer, "--wait=false")

    def retired() -> bool | None:
        if get_or_none(side.cluster, PC, "-n", side.tenant, side.peer) is not None:
            return None  # held by liqosec's finalizer until its firewalls are gone
        if liqosec_firewalls(side):
            return None
        return True if not any(tables & held for held in node_tables(side).values()) else None

    eventually(retired, timeout=CONVERGE_TIMEOUT_S, what=f"{sorted(tables)} gone from the API and every node")
    print(f"\nretired {sorted(fc['metadata']['name'] for fc in fcs)}; tables gone from {physical_nodes(side)}")


def test_unpeering_with_policies_in_place_then_peering_again(peering: Peering, tmp_path: Path) -> None:
    """`liqoctl unpeer` keeps the tenant namespaces and so the policies: their firewalls empty
    themselves (no address of the peer is left to filter), nothing complains in a loop, and peering
    again brings enforcement back with nobody touching a policy."""
    specs = {
        CONSUMER: example_spec("mode-protected-borders-consumer.yaml"),
        PROVIDER: example_spec("quick-start.yaml"),
    }
    for side in peering.sides:
        side.cluster.apply([policy(side, specs[side.name])])
        wait_ready(side)
        assert rule_count(liqosec_firewalls(side)) > 0
    tables = {side.name: {fc["spec"]["table"]["name"] for fc in liqosec_firewalls(side)} for side in peering.sides}

    peering.script("step", "unpeer")
    for side in peering.sides:

        def emptied(side: Side = side) -> bool | None:
            if side.cluster.get_json("configurations.networking.liqo.io", "-n", side.tenant)["items"]:
                return None  # Liqo has not torn the networking down yet
            if rule_count(liqosec_firewalls(side)) or any(rules_on_nodes(side, tables[side.name]).values()):
                return None
            pc = side.cluster.get_json(PC, "-n", side.tenant, side.peer)
            return True if condition(pc, "Ready").get("status") == "True" else None

        eventually(emptied, timeout=CONVERGE_TIMEOUT_S, what=f"{side.name}: firewalls without a rule after unpeer")
    settled = time.monotonic()
    # Quiet means quiet over a stretch of time: nothing to await, so the stretch is waited out.
    time.sleep(QUIET_WINDOW_S)
    for side in peering.sides:
        said = complaints(side, int(time.monotonic() - settled) + 1)
        assert not said, f"{side.name}: liqosec complained after the unpeer settled: {said[:5]}"

    peering.script("step", "peer")
    create_workloads(peering)  # the offloaded pod went with the virtual node
    for side in peering.sides:
        wait_ready(side)
        assert rule_count(liqosec_firewalls(side)) > 0, f"{side.name}: the policy did not come back"
    m = matrix(peering.consumer.cluster, tmp_path, "-n", peering.consumer.tenant, "--port", f"{PORT}/tcp")
    check_packets(peering.consumer, m)


def test_unpeering_and_deleting_the_tenant_namespaces_leaves_nothing(peering: Peering) -> None:
    """`liqoctl unpeer --delete-namespaces` with a policy in place: the tenant namespaces go, with
    the policies and every firewall, from the API and from every node, and liqosec stays quiet."""
    side = peering.consumer
    side.cluster.apply([policy(side, PORTS_HOLE)])
    wait_ready(side)
    tables = {fc["spec"]["table"]["name"] for fc in liqosec_firewalls(side)}

    started = time.monotonic()
    peering.script("step", "unpeer", env={"LIQOSEC_UNPEER_FLAGS": "--delete-namespaces"})
    print(f"\nliqoctl unpeer --delete-namespaces returned after {time.monotonic() - started:.0f} s")

    def gone() -> bool | None:
        for s in peering.sides:
            if get_or_none(s.cluster, "namespace", s.tenant) is not None:
                return None
        return True if not any(tables & held for held in node_tables(side).values()) else None

    eventually(gone, timeout=CONVERGE_TIMEOUT_S, what="tenant namespaces, policies and tables gone")
    settled = time.monotonic()
    time.sleep(QUIET_WINDOW_S)  # quiet is a stretch of time: nothing to await
    for s in (peering.consumer, peering.provider):
        # Not even while it went: a firewall create refused in a namespace being deleted is no failure.
        said = complaints(s, int(time.monotonic() - started) + 1)
        assert not said, f"{s.name}: liqosec complained while or after the tenant namespace went: {said[:5]}"
    print(f"tenant namespaces, policies and {sorted(tables)} gone in {settled - started:.0f} s")


def test_liqosecs_admission_policy_refused_none_of_liqos_writes(peering: Peering) -> None:
    """Last, after the whole lifecycle: Liqo writes its own FirewallConfigurations (IP remapping, the
    gateway's masquerade bypass), named after the peer's cluster id, which here starts with liqosec-;
    liqosec's ValidatingAdmissionPolicy must never refuse one of them."""
    for cluster in peering.clusters:
        said = cluster.kubectl("logs", "-n", "liqo", "deploy/liqo-controller-manager", "--tail=-1")
        refused = [line for line in said.splitlines() if "ValidatingAdmissionPolicy 'liqosec" in line]
        assert not refused, f"{cluster.name}: liqosec's policy refused Liqo: {refused[:3]}"
