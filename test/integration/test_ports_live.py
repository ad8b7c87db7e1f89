"""Destination ports on a real API server: the CRD refuses what its schema and CEL rules can say, and the
controller writes the protocol and port matches, with a second table when drops and holes mix."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from support import POD_CIDR_NETWORK, running_controller, unique_peer, wait_for

from harness.objects import apply, tenant_namespace_labels, update_retrying
from liqosec.cli import main
from liqosec.controller.resources import FIREWALL_CONFIGURATIONS, PEERING_CONNECTIVITIES
from liqosec.firewall.evaluate import EPHEMERAL_PORT, Packet, node_accepts
from liqosec.kube import errors
from liqosec.kube.client import KubeClient

ROME_POD = "10.71.9.9"  # the peer's pod CIDR as seen here
FRONT = "10.1.44.7"  # a local pod in a namespace offloaded to the peer (vc-local)
WEB = "10.1.45.8"  # a local pod elsewhere


def pc(peer: str, rules: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "security.liqo.io/v1",
        "kind": "PeeringConnectivity",
        "metadata": {"name": peer, "namespace": f"liqo-tenant-{peer}"},
        "spec": {"rules": rules, **spec},
    }


def tenant(peer: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": f"liqo-tenant-{peer}", "labels": tenant_namespace_labels(peer)},
    }


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (
            {"destination": {"ports": [{"protocol": "SCTP", "port": 9}]}},
            "SCTP cannot be enforced: Liqo v1.2.0's firewall matches TCP and UDP only",
        ),
        ({"destination": {"ports": [{"protocol": "ICMP"}]}}, 'protocol: Unsupported value: "ICMP"'),
        ({"destination": {"ports": [{"port": 80, "endPort": 79}]}}, "endPort: Invalid value"),
        ({"destination": {"ports": [{"endPort": 80}]}}, "needs port: endPort ends the range port starts"),
        ({"destination": {"ports": [{"port": 0}]}}, "port: Invalid value: 0"),
        ({"destination": {"ports": [{"port": 65536}]}}, "port: Invalid value: 65536"),
        ({"source": {"ports": [{"port": 80}]}}, "ports go on the destination"),
    ],
)
def test_the_crd_refuses_bad_ports(kube: KubeClient, rule: dict[str, Any], message: str) -> None:
    peer = unique_peer("port")
    apply(kube, [tenant(peer)])
    with pytest.raises(errors.Invalid) as info:
        kube.create(PEERING_CONNECTIVITIES, pc(peer, [{**rule, "action": "allow"}]))
    assert message in str(info.value)


def test_the_crd_takes_ports_and_defaults_the_protocol(kube: KubeClient) -> None:
    peer = unique_peer("port")
    apply(kube, [tenant(peer)])
    ports = [{"port": 443}, {"protocol": "UDP", "port": 5000, "endPort": 5010}, {"protocol": "TCP"}]
    kube.create(PEERING_CONNECTIVITIES, pc(peer, [{"destination": {"group": "vc-local", "ports": ports}}]))
    stored = kube.get(PEERING_CONNECTIVITIES, peer, namespace=f"liqo-tenant-{peer}")
    assert stored["spec"]["rules"][0]["destination"]["ports"] == [
        {"protocol": "TCP", "port": 443},
        {"protocol": "UDP", "port": 5000, "endPort": 5010},
        {"protocol": "TCP"},
    ]


def cluster(peer: str) -> list[dict[str, Any]]:
    shop, other = f"shop-{peer}", f"web-{peer}"
    return [
        tenant(peer),
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": shop}},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": other}},
        {
            "apiVersion": "networking.liqo.io/v1beta1",
            "kind": "Configuration",
            "metadata": {"name": peer, "namespace": f"liqo-tenant-{peer}"},
            "spec": {"remote": {"cidr": {"pod": ["10.1.0.0/16"], "external": ["10.201.0.0/16"]}}},
            "status": {"remote": {"cidr": {"pod": ["10.71.0.0/16"], "external": ["10.72.0.0/16"]}}},
        },
        {
            "apiVersion": "offloading.liqo.io/v1beta1",
            "kind": "NamespaceOffloading",
            "metadata": {"name": "offloading", "namespace": shop},
            "spec": {},
            "status": {"remoteNamespacesConditions": {peer: [{"type": "OffloadingRequired", "status": "True"}]}},
        },
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "front", "namespace": shop},
            "spec": {"nodeName": "worker-1", "containers": [{"name": "c", "image": "x"}]},
            "status": {"phase": "Running", "podIP": FRONT, "podIPs": [{"ip": FRONT}]},
        },
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "web", "namespace": other},
            "spec": {"nodeName": "worker-1", "containers": [{"name": "c", "image": "x"}]},
            "status": {"phase": "Running", "podIP": WEB, "podIPs": [{"ip": WEB}]},
        },
    ]


def set_rules(kube: KubeClient, peer: str, rules: list[dict[str, Any]]) -> None:
    """Change the spec; the controller writes the status meanwhile, so retry on a conflict."""
    update_retrying(
        kube,
        PEERING_CONNECTIVITIES,
        peer,
        lambda live: live["spec"].update(rules=rules),
        namespace=f"liqo-tenant-{peer}",
        attempts=10,
    )


def firewalls(kube: KubeClient, peer: str) -> dict[str, dict[str, Any]]:
    items = kube.list(FIREWALL_CONFIGURATIONS, f"liqo-tenant-{peer}", limit=50, continue_token=None)["items"]
    return {fc["metadata"]["name"]: fc for fc in items if fc["spec"]["table"]["chains"][0]["rules"].get("filterRules")}


def opens(fcs: dict[str, dict[str, Any]], src: str, dst: str, proto: str, port: int) -> bool:
    """Request and reply (back to the client's ephemeral port) pass every table, as on a node."""
    tables = [fc["spec"]["table"] for fc in fcs.values()]
    request = Packet.of(src, dst, proto=proto, dport=port)
    reply = Packet.of(dst, src, proto=proto, sport=port, dport=EPHEMERAL_PORT, established=True)
    return node_accepts(tables, request) and node_accepts(tables, reply)


def test_the_controller_writes_proto_and_port_matches(kube: KubeClient, local_pod_cidr: None) -> None:
    peer = unique_peer("port")
    ns = f"liqo-tenant-{peer}"
    hole = {
        "source": {"group": "remote-cluster"},
        "destination": {"group": "vc-local", "ports": [{"port": 443}, {"protocol": "UDP", "port": 53}]},
        "action": "allow",
    }
    replies = {"source": {"group": "vc-local"}, "destination": {"group": "remote-cluster"}, "action": "allow"}
    apply(kube, [*cluster(peer), pc(peer, [hole, replies], securityMode="ProtectedBorders")])
    with running_controller(kube, retire_grace_seconds=0.5):
        fcs = wait_for("the firewall", lambda: firewalls(kube, peer) or None)
        assert list(fcs) == [f"liqosec-{peer}"]
        chain = fcs[f"liqosec-{peer}"]["spec"]["table"]["chains"][0]
        assert chain["policy"] == "drop"
        matches = [m for r in chain["rules"]["filterRules"] for m in r["match"]]
        assert {"op": "eq", "proto": {"value": "tcp"}} in matches and {"op": "eq", "proto": {"value": "udp"}} in matches
        assert {"op": "eq", "port": {"position": "dst", "value": "443"}} in matches
        assert opens(fcs, ROME_POD, FRONT, "tcp", 443) and opens(fcs, ROME_POD, FRONT, "udp", 53)
        assert not opens(fcs, ROME_POD, FRONT, "tcp", 80) and not opens(fcs, ROME_POD, WEB, "tcp", 443)

        # Add a port deny of what the chain otherwise accepts: its drop rules cannot join a policy-drop chain,
        # so they get a table of their own, which every packet must pass too.
        deny_ssh = {"destination": {"group": "remote-cluster", "ports": [{"port": 22}]}, "action": "deny"}
        set_rules(kube, peer, [deny_ssh, hole, replies])
        fcs = wait_for("the ports table", lambda: (f := firewalls(kube, peer)) and len(f) == 2 and f)
        ports_fc = fcs[f"liqosec-{peer}-ports"]
        assert ports_fc["spec"]["table"]["name"] == f"liqosec-{peer}_ports"
        assert ports_fc["metadata"]["ownerReferences"][0]["name"] == peer
        [ports_chain] = ports_fc["spec"]["table"]["chains"]
        assert ports_chain["policy"] == "accept"
        assert {r["action"] for r in ports_chain["rules"]["filterRules"]} == {"drop"}
        tables = [fc["spec"]["table"] for fc in fcs.values()]
        assert not node_accepts(tables, Packet.of(FRONT, ROME_POD, proto="tcp", dport=22))
        assert node_accepts(tables, Packet.of(FRONT, ROME_POD, proto="tcp", dport=23))
        assert node_accepts(tables, Packet.of(FRONT, ROME_POD, proto="udp", dport=22))
        assert opens(fcs, ROME_POD, FRONT, "tcp", 443)

        status = wait_for(
            "Valid",
            lambda: (
                (s := kube.get(PEERING_CONNECTIVITIES, peer, namespace=ns).get("status") or {}).get("firewallShards")
                == 2
                and s
            ),
        )
        assert any(c["type"] == "Valid" and c["status"] == "True" for c in status["conditions"])

        # Without the port deny, the ports table is emptied and retired.
        set_rules(kube, peer, [hole, replies])
        wait_for("the ports table to go", lambda: list(firewalls(kube, peer)) == [f"liqosec-{peer}"])


def test_per_node_scope_compiles_a_peering_with_ports_for_all_nodes(kube: KubeClient, local_pod_cidr: None) -> None:
    """Per-node chains cannot carry ports: such a peering keeps one firewall every node applies."""
    peer = unique_peer("port")
    deny_ssh = {"source": {"group": "remote-cluster"}, "destination": {"ports": [{"port": 22}]}, "action": "deny"}
    apply(kube, [*cluster(peer), pc(peer, [deny_ssh])])
    with running_controller(kube, firewall_scope="per-node"):
        fcs = wait_for("the firewall", lambda: firewalls(kube, peer) or None)
        assert list(fcs) == [f"liqosec-{peer}"]
        assert fcs[f"liqosec-{peer}"]["metadata"]["labels"]["networking.liqo.io/firewall-subcategory"] == "all-nodes"
        assert not opens(fcs, ROME_POD, WEB, "tcp", 22) and opens(fcs, ROME_POD, WEB, "tcp", 23)
        assert opens(fcs, ROME_POD, WEB, "udp", 22)


def test_explain_port_reads_the_live_cluster_as_a_dump(
    control_plane: Any, kube: KubeClient, local_pod_cidr: None, tmp_path: Path
) -> None:
    """`liqosec explain --kubeconfig ... --port 22/tcp` names the same rule as `-f` on the same objects."""
    peer = unique_peer("port")
    deny_ssh = {"source": {"group": "remote-cluster"}, "destination": {"ports": [{"port": 22}]}, "action": "deny"}
    # The cluster's pod CIDR Network goes in the dump too; applied again since other tests may replace it.
    objects = [*cluster(peer), pc(peer, [deny_ssh]), POD_CIDR_NETWORK]
    apply(kube, objects)
    dump = tmp_path / "cluster.yaml"
    dump.write_text(yaml.safe_dump_all(objects))
    args = ["--peering", f"liqo-tenant-{peer}/{peer}", "--from", ROME_POD, "--to", f"web-{peer}/web"]
    for port, origin, opens_ in (("22/tcp", "spec.rules[0]", False), ("22/udp", "spec.defaultAction", True)):
        answers = []
        for source in (["-f", str(dump)], ["--kubeconfig", str(control_plane.kubeconfig_path)]):
            out = io.StringIO()
            assert main(["explain", *source, *args, "--port", port, "-o", "json"], out=out) == 0
            answers.append(json.loads(out.getvalue()))
        from_dump, live = answers
        assert live["request"]["decidedBy"] == from_dump["request"]["decidedBy"]
        assert live["request"]["decidedBy"]["origin"] == origin
        assert live["connection"] == from_dump["connection"] and live["connection"]["opens"] is opens_
