"""The controller against a real API server: firewalls appear, follow pods, and vanish with their policy."""

from __future__ import annotations

import copy
from typing import Any

from support import example, offloaded_pod, running_controller, unique_peer, wait_for

from harness.firewalls import firewall
from harness.objects import apply, set_status
from liqosec.controller.resources import PEERING_CONNECTIVITIES
from liqosec.firewall.evaluate import Packet, node_accepts
from liqosec.kube.client import PODS, KubeClient

ROME_POD = "10.71.9.9"


def accepts(fc: dict[str, Any], src: str, dst: str) -> bool:
    return node_accepts([fc["spec"]["table"]], Packet.of(src, dst))


def condition(kube: KubeClient, peer: str, type_: str) -> dict[str, Any] | None:
    pc = kube.get(PEERING_CONNECTIVITIES, peer, namespace=f"liqo-tenant-{peer}")
    for c in (pc.get("status") or {}).get("conditions") or ():
        if c["type"] == type_:
            return dict(c)
    return None


def force_delete_pod(kube_api: Any, name: str, namespace: str) -> None:
    """No kubelet confirms a graceful deletion here: delete at once, as a kubelet would finally."""
    from kubernetes import client

    client.CoreV1Api(kube_api).delete_namespaced_pod(name, namespace, grace_period_seconds=0)


def test_firewall_appears_and_follows_pods(kube: KubeClient, kube_api: Any, local_pod_cidr: None) -> None:
    peer = unique_peer()
    apply(kube, example("provider-isolate-offloaded.yaml", peer=peer))
    with running_controller(kube):
        fc = wait_for("the firewall", lambda: firewall(kube, peer))
        assert fc["spec"]["table"]["name"] == f"liqosec-{peer}"
        assert fc["metadata"]["labels"]["networking.liqo.io/firewall-category"] == "fabric"
        assert fc["metadata"]["ownerReferences"][0]["kind"] == "PeeringConnectivity"
        assert accepts(fc, ROME_POD, "10.1.5.10") and not accepts(fc, "10.1.5.10", "10.1.1.10")
        ready = wait_for("Ready=True", lambda: (c := condition(kube, peer, "Ready")) and c["status"] == "True" and c)
        assert ready["observedGeneration"] == 1

        ns = f"shop-{peer}-{peer}"
        apply(kube, [offloaded_pod("cart-2", ns, "10.1.7.7", peer)])
        wait_for(
            "the new offloaded pod to be isolated",
            lambda: not accepts(firewall(kube, peer) or fc, "10.1.7.7", "10.1.1.10"),
        )

        live = kube.get(PODS, "cart-2", namespace=ns)
        set_status(kube, PODS, live, {"phase": "Running", "podIP": "10.1.8.8", "podIPs": [{"ip": "10.1.8.8"}]})
        wait_for(
            "the firewall to follow the IP change",
            lambda: (
                (f := firewall(kube, peer))
                and accepts(f, "10.1.7.7", "10.1.1.10")
                and not accepts(f, "10.1.8.8", "10.1.1.10")
            ),
        )

        live = kube.get(PODS, "cart-2", namespace=ns)
        live["metadata"]["labels"] = {}
        kube.update(PODS, live)
        wait_for(
            "a relabelled pod to leave the group",
            lambda: (f := firewall(kube, peer)) and accepts(f, "10.1.8.8", "10.1.1.10"),
        )

        force_delete_pod(kube_api, "cart-0", ns)
        wait_for(
            "a deleted pod to leave the group",
            lambda: (f := firewall(kube, peer)) and accepts(f, "10.1.5.10", "10.1.1.10"),
        )


def test_deleting_the_peering_removes_its_firewall(kube: KubeClient, local_pod_cidr: None) -> None:
    peer = unique_peer()
    apply(kube, example("quick-start.yaml", peer=peer))
    with running_controller(kube):
        wait_for("the firewall", lambda: firewall(kube, peer))
        kube.delete(PEERING_CONNECTIVITIES, peer, namespace=f"liqo-tenant-{peer}")
        wait_for("garbage collection of the firewall", lambda: firewall(kube, peer) is None, timeout=60)


def test_orphaned_firewall_is_removed(kube: KubeClient, local_pod_cidr: None) -> None:
    peer = unique_peer()
    objs = example("quick-start.yaml", peer=peer)
    apply(kube, [o for o in objs if o["kind"] != "PeeringConnectivity"])
    orphan = {
        "apiVersion": "networking.liqo.io/v1beta1",
        "kind": "FirewallConfiguration",
        "metadata": {
            "name": f"liqosec-{peer}",
            "namespace": f"liqo-tenant-{peer}",
            "labels": {"app.kubernetes.io/managed-by": "liqosec", "security.liqo.io/peering-connectivity": peer},
        },
        "spec": {"table": {"name": f"liqosec-{peer}", "family": "IPV4", "chains": []}},
    }
    apply(kube, [orphan])
    with running_controller(kube):
        wait_for("the orphan to be deleted", lambda: firewall(kube, peer) is None)


def test_slice_aliases_and_protected_borders_through_the_api_server(kube: KubeClient, local_pod_cidr: None) -> None:
    """The CRD takes `slice-local`/`slice-remote` and ProtectedBorders; the firewall is the canonical one."""
    from liqosec.render import render

    peer = unique_peer()
    objs = example("mode-protected-borders-consumer.yaml", peer=peer, old_peer="milan")
    [pc] = [o for o in objs if o["kind"] == "PeeringConnectivity"]
    hole = {"source": {"group": "slice-local"}, "destination": {"group": "remote-cluster"}, "action": "allow"}
    pc["spec"]["rules"] = [hole]
    canonical = copy.deepcopy(objs)
    [cpc] = [o for o in canonical if o["kind"] == "PeeringConnectivity"]
    cpc["spec"]["rules"] = [{**hole, "source": {"group": "vc-local"}}]
    network = {
        "apiVersion": "ipam.liqo.io/v1alpha1",
        "kind": "Network",
        "metadata": {"name": "pod-cidr", "namespace": "liqo", "labels": {"ipam.liqo.io/network-type": "pod-cidr"}},
        "spec": {"cidr": "10.1.0.0/16"},
    }
    [expected] = render([network, *canonical])
    apply(kube, objs)
    stored = kube.get(PEERING_CONNECTIVITIES, peer, namespace=f"liqo-tenant-{peer}")
    assert stored["spec"]["rules"][0]["source"] == {"group": "slice-local"}
    assert stored["spec"]["securityMode"] == "ProtectedBorders"
    with running_controller(kube):
        fc = wait_for("the firewall", lambda: firewall(kube, peer))
        assert fc["spec"] == expected["spec"]
        stateless = wait_for(
            "StatelessFiltering naming the hole",
            lambda: (c := condition(kube, peer, "StatelessFiltering")) and "spec.rules[0]" in c["message"] and c,
        )
        assert "vc-local -> remote-cluster" in stateless["message"]
