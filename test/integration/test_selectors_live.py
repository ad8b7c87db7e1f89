"""Selector parties on a real API server: the firewall follows a pod's and a namespace's labels, live."""

from __future__ import annotations

from typing import Any

import pytest
from support import running_controller, unique_peer, wait_for

from harness.firewalls import firewall
from harness.objects import apply, tenant_namespace_labels, update_retrying
from liqosec.controller.resources import PEERING_CONNECTIVITIES
from liqosec.firewall.evaluate import Packet, node_accepts
from liqosec.kube import errors
from liqosec.kube.client import NAMESPACES, PODS, KubeClient

ROME_POD = "10.71.9.9"  # in the peer's pod CIDR as seen here
POD_IP = "10.1.44.7"


def reaches_peer(kube: KubeClient, peer: str) -> bool | None:
    """Whether the pod's packets to the peer pass its firewall (None: no firewall yet)."""
    fc = firewall(kube, peer)
    return None if fc is None else node_accepts([fc["spec"]["table"]], Packet.of(POD_IP, ROME_POD))


def relabel(kube: KubeClient, ref: Any, name: str, namespace: str | None, labels: dict[str, str]) -> None:
    update_retrying(kube, ref, name, lambda live: live["metadata"].update(labels=labels), namespace=namespace)


def objects(peer: str, shop: str) -> list[dict[str, Any]]:
    tenant = f"liqo-tenant-{peer}"
    selector = {
        "namespaceSelector": {"matchLabels": {"team": peer}},
        "podSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["frontend"]}]},
    }
    return [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": tenant, "labels": tenant_namespace_labels(peer)},
        },
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": shop, "labels": {"team": peer}}},
        {
            "apiVersion": "networking.liqo.io/v1beta1",
            "kind": "Configuration",
            "metadata": {"name": peer, "namespace": tenant},
            "spec": {"remote": {"cidr": {"pod": ["10.1.0.0/16"], "external": ["10.201.0.0/16"]}}},
            "status": {"remote": {"cidr": {"pod": ["10.71.0.0/16"], "external": ["10.72.0.0/16"]}}},
        },
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "web", "namespace": shop, "labels": {"app": "cache"}},
            "spec": {"nodeName": "worker-1"},
            "status": {"phase": "Running", "podIP": POD_IP, "podIPs": [{"ip": POD_IP}]},
        },
        {
            "apiVersion": "security.liqo.io/v1",
            "kind": "PeeringConnectivity",
            "metadata": {"name": peer, "namespace": tenant},
            "spec": {"rules": [{"source": selector, "destination": {"group": "remote-cluster"}, "action": "deny"}]},
        },
    ]


def test_the_firewall_follows_pod_and_namespace_labels(kube: KubeClient, local_pod_cidr: None) -> None:
    peer = unique_peer("sel")
    shop = f"shop-{peer}"
    apply(kube, objects(peer, shop))
    with running_controller(kube):
        wait_for("the firewall, letting the cache pod through", lambda: reaches_peer(kube, peer) is True)

        relabel(kube, PODS, "web", shop, {"app": "frontend"})
        wait_for("the relabelled pod to be denied", lambda: reaches_peer(kube, peer) is False)
        term = "pods{app=frontend} ns{team=" + peer + "}"
        status = wait_for(
            "the status to count the selector party",
            lambda: (
                (s := kube.get(PEERING_CONNECTIVITIES, peer, namespace=f"liqo-tenant-{peer}").get("status") or {})
                .get("addresses", {})
                .get(term)
                == 1
                and s
            ),
        )
        assert status["addresses"][term] == 1

        relabel(kube, NAMESPACES, shop, None, {"team": "elsewhere"})
        wait_for("the pod to pass once its namespace leaves the selector", lambda: reaches_peer(kube, peer) is True)

        relabel(kube, NAMESPACES, shop, None, {"team": peer})
        wait_for("the pod to be denied again", lambda: reaches_peer(kube, peer) is False)


@pytest.mark.parametrize(
    ("party", "message"),
    [
        (
            {"podSelector": {"matchExpressions": [{"key": "app", "operator": "Exists", "values": ["x"]}]}},
            "In and NotIn need values; Exists and DoesNotExist take none",
        ),
        (
            {"podSelector": {"matchExpressions": [{"key": "app", "operator": "Near"}]}},
            'operator: Unsupported value: "Near"',
        ),
        ({"podSelector": {"matchLabels": {"bad key": "x"}}}, "a label key is [prefix/]name"),
        ({"namespace": "shop", "namespaceSelector": {}}, "namespace and namespaceSelector both select the namespace"),
    ],
)
def test_the_crd_rejects_a_malformed_selector(kube: KubeClient, party: dict[str, Any], message: str) -> None:
    peer = unique_peer("sel")
    tenant = f"liqo-tenant-{peer}"
    apply(kube, [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": tenant}}])
    pc = {
        "apiVersion": "security.liqo.io/v1",
        "kind": "PeeringConnectivity",
        "metadata": {"name": peer, "namespace": tenant},
        "spec": {"rules": [{"source": party, "action": "deny"}]},
    }
    with pytest.raises(errors.Invalid) as info:
        kube.create(PEERING_CONNECTIVITIES, pc)
    assert message in str(info.value)
