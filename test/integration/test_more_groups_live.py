"""`nameserver`, `leaf`, `internet` and IPv6 honesty on the real API server, through the controller.

The kube-dns EndpointSlice and the peer's Configuration are real objects: their changes reach
the controller through its informers, and the FirewallConfiguration it writes follows them.
"""

from __future__ import annotations

import io
import json
from typing import Any

from support import example, offloaded_pod, running_controller, unique_peer, wait_for

from harness.controlplane import ControlPlane
from harness.objects import apply, set_status
from liqosec.cli import main
from liqosec.controller.resources import CONFIGURATIONS, FIREWALL_CONFIGURATIONS, PEERING_CONNECTIVITIES
from liqosec.firewall.evaluate import Packet, node_accepts
from liqosec.kube import errors
from liqosec.kube.client import ENDPOINT_SLICES, PODS, KubeClient

CART = "10.1.5.10"  # the example's offloaded pod cart-0


def tenant(peer: str) -> str:
    return f"liqo-tenant-{peer}"


def passes(kube: KubeClient, peer: str, src: str, dst: str) -> bool | None:
    """The peer's live firewall accepts a packet src -> dst (None: no firewall yet)."""
    try:
        fc = kube.get(FIREWALL_CONFIGURATIONS, f"liqosec-{peer}", namespace=tenant(peer))
    except errors.NotFound:
        return None
    return node_accepts([fc["spec"]["table"]], Packet.of(src, dst))


def conditions(kube: KubeClient, peer: str) -> dict[str, dict[str, Any]]:
    pc = kube.get(PEERING_CONNECTIVITIES, peer, namespace=tenant(peer))
    return {c["type"]: c for c in (pc.get("status") or {}).get("conditions") or ()}


def addresses(kube: KubeClient, peer: str) -> dict[str, int]:
    pc = kube.get(PEERING_CONNECTIVITIES, peer, namespace=tenant(peer))
    return dict((pc.get("status") or {}).get("addresses") or {})


def configuration(peer: str, pod_cidr: str) -> dict[str, Any]:
    """Another peer's Configuration: its pod CIDR as remapped here."""
    return {
        "apiVersion": "networking.liqo.io/v1beta1",
        "kind": "Configuration",
        "metadata": {"name": peer, "namespace": tenant(peer)},
        "spec": {"remote": {"cidr": {"pod": ["10.200.0.0/16"]}}},
        "status": {"remote": {"cidr": {"pod": [pod_cidr]}}},
    }


def dns_slice(name: str, address: str) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": "kube-system", "labels": {"kubernetes.io/service-name": "kube-dns"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [address]}],
    }


def policy(objs: list[dict[str, Any]], rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for o in objs:
        if o["kind"] == "PeeringConnectivity":
            o["spec"] = {"rules": rules}
    return objs


def explain_live(control_plane: ControlPlane, peer: str, src: str, dst: str) -> dict[str, Any]:
    out = io.StringIO()
    argv = ["--kubeconfig", str(control_plane.kubeconfig_path), "--peering", f"{tenant(peer)}/{peer}"]
    assert main(["explain", *argv, "--from", src, "--to", dst, "-o", "json"], out=out) == 0
    return dict(json.loads(out.getvalue()))


def test_nameserver_and_leaf_follow_their_objects_and_ipv6_pods_are_named(
    control_plane: ControlPlane, kube: KubeClient, local_pod_cidr: None
) -> None:
    c = unique_peer("g")
    dns_ip, moved_ip = "10.1.0.153", "10.1.0.154"  # in the local pod CIDR, where CoreDNS runs
    rules = [
        {"source": {"group": "offloaded"}, "destination": {"group": "nameserver"}, "action": "allow"},
        {"source": {"group": "offloaded"}, "destination": {"group": "leaf"}, "action": "allow"},
        {"source": {"group": "offloaded"}, "destination": {"group": "internet"}, "action": "deny"},
        {"source": {"group": "offloaded"}, "destination": {"group": "remote-cluster"}, "action": "allow"},
        {"source": {"group": "offloaded"}, "action": "deny"},
    ]
    objs = policy(example("provider-isolate-offloaded.yaml", peer=c), rules)
    slice_name = f"kube-dns-{c}"
    apply(kube, [*objs, dns_slice(slice_name, dns_ip)])
    try:
        with running_controller(kube):
            # nameserver: the kube-dns endpoint is open to offloaded pods, other local pods are not
            wait_for("the DNS hole", lambda: passes(kube, c, CART, dns_ip))
            assert passes(kube, c, CART, "10.1.1.10") is False
            assert passes(kube, c, CART, "8.8.8.8") is False  # internet
            assert passes(kube, c, CART, "10.72.3.3") is True  # leaf: the example's remapped external CIDR
            assert passes(kube, c, CART, "10.71.3.3") is True  # remote-cluster

            # the DNS pod moves: the firewall follows the EndpointSlice
            apply(kube, [dns_slice(slice_name, moved_ip)])
            wait_for("the hole to move", lambda: passes(kube, c, CART, moved_ip))
            wait_for("the old hole to close", lambda: passes(kube, c, CART, dns_ip) is False)
            x = explain_live(control_plane, c, f"shop-{c}-{c}/cart-0", moved_ip)  # reads the EndpointSlice too
            assert "nameserver" in x["to"]["groups"] and x["request"]["decidedBy"]["origin"] == "spec.rules[0]"
            assert x["connection"]["opens"] is True  # the reply matches no rule: defaultAction allow

            # leaf: Liqo remaps the peer's external CIDR; the firewall follows the Configuration's status
            conf = kube.get(CONFIGURATIONS, c, namespace=tenant(c))
            status = conf["status"]
            status["remote"]["cidr"]["external"] = ["10.73.0.0/16"]
            set_status(kube, CONFIGURATIONS, conf, status)
            wait_for("the new leaf", lambda: passes(kube, c, CART, "10.73.3.3"))
            assert passes(kube, c, CART, "10.72.3.3") is False

            # internet: another peer's CIDRs, remapped into public space, are no longer the Internet
            before = addresses(kube, c)["internet"]
            other = unique_peer("o")
            octet = 1 + int(other[1:], 16) % 200
            apply(kube, [configuration(other, f"45.{octet}.0.0/16")])
            try:
                wait_for("internet to shrink", lambda: addresses(kube, c)["internet"] == before - 65536)
            finally:
                kube.delete(CONFIGURATIONS, other, namespace=tenant(other))
            wait_for("internet to grow back", lambda: addresses(kube, c)["internet"] == before)

            # IPv6: a dual-stack offloaded pod is enforced for IPv4 and named for IPv6
            dual = offloaded_pod("cart-6", f"shop-{c}-{c}", "10.1.5.16", c)
            dual["status"]["podIPs"].append({"ip": "fd00::5:16"})
            assert not conditions(kube, c).get("IPv6Unfiltered")
            apply(kube, [dual])
            found = wait_for("IPv6Unfiltered", lambda: conditions(kube, c).get("IPv6Unfiltered"))
            assert found["status"] == "True" and found["reason"] == "IPv6PodsUnfiltered"
            assert f"shop-{c}-{c}/cart-6 (fd00::5:16)" in found["message"]
            assert found["message"].startswith("1 pod of this policy's groups holds IPv6 addresses")
            assert passes(kube, c, "10.1.5.16", "10.1.1.10") is False  # its IPv4 address is filtered
            assert conditions(kube, c)["Valid"]["status"] == "True"

            kube.delete(PODS, "cart-6", namespace=f"shop-{c}-{c}", grace_seconds=0)
            wait_for("the condition to go", lambda: "IPv6Unfiltered" not in conditions(kube, c))
    finally:
        kube.delete(ENDPOINT_SLICES, slice_name, namespace="kube-system")
