"""Liqo as it really is, on the real API server: pending remaps wait alone, and policies live only in
namespaces Liqo calls tenant namespaces (docs/semantics.md, "Liqo's behaviour that shapes a policy")."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from support import example, offloaded_pod, running_controller, unique_peer, wait_for

from harness.firewalls import firewall
from harness.objects import apply, ensure_namespace, set_status
from liqosec.controller.resources import CONFIGURATIONS, PEERING_CONNECTIVITIES
from liqosec.firewall.evaluate import Packet, node_accepts
from liqosec.kube import errors
from liqosec.kube.client import EVENTS, NAMESPACES, KubeClient

LOCAL_POD = "10.1.1.10"  # the example's `web` pod


def tenant(peer: str) -> str:
    return f"liqo-tenant-{peer}"


def condition(kube: KubeClient, name: str, namespace: str, type_: str) -> dict[str, Any]:
    pc = kube.get(PEERING_CONNECTIVITIES, name, namespace=namespace)
    found = [c for c in (pc.get("status") or {}).get("conditions") or () if c["type"] == type_]
    return dict(found[0]) if found else {}


def ready_reason(kube: KubeClient, peer: str) -> str | None:
    return condition(kube, peer, tenant(peer), "Ready").get("reason")


def isolates(kube: KubeClient, peer: str, ip: str) -> bool:
    fc = firewall(kube, peer)
    return fc is not None and not node_accepts([fc["spec"]["table"]], Packet.of(ip, LOCAL_POD))


def set_remote_cidrs(kube: KubeClient, peer: str, pod: str | None, external: str | None) -> None:
    """Liqo's remap as the status holds it; None: no remap yet (the API server refuses Liqo's `""`)."""
    conf = kube.get(CONFIGURATIONS, peer, namespace=tenant(peer))
    status = dict(conf.get("status") or {})
    if pod is None or external is None:
        status.pop("remote", None)
    else:
        status["remote"] = {"cidr": {"pod": [pod], "external": [external]}}
    set_status(kube, CONFIGURATIONS, conf, status)


def test_the_api_server_refuses_liqos_pending_marker_so_pending_is_no_remap(
    kube: KubeClient, two_peerings: tuple[str, str]
) -> None:
    """Liqo's Configuration controller means `""` for "not remapped yet", but Liqo's own CRD types the
    CIDRs `format: cidr`: the API server refuses it, and the status keeps what it had (here, none)."""
    a, _ = two_peerings
    with pytest.raises(errors.Invalid, match="must be of type cidr"):
        set_remote_cidrs_raw(kube, a, {"pod": [""], "external": [""]})


def set_remote_cidrs_raw(kube: KubeClient, peer: str, cidr: dict[str, Any]) -> None:
    conf = kube.get(CONFIGURATIONS, peer, namespace=tenant(peer))
    set_status(kube, CONFIGURATIONS, conf, {**(conf.get("status") or {}), "remote": {"cidr": cidr}})


def warnings_about(kube: KubeClient, namespace: str, name: str) -> list[dict[str, Any]]:
    items = kube.list(EVENTS, namespace, limit=500, continue_token=None)["items"]
    return [e for e in items if e["type"] == "Warning" and e["involvedObject"]["name"] == name]


@pytest.fixture()
def two_peerings(kube: KubeClient, local_pod_cidr: None) -> Iterator[tuple[str, str]]:
    a, b = unique_peer("a"), unique_peer("b")
    apply(kube, example("provider-isolate-offloaded.yaml", peer=a) + example("provider-isolate-offloaded.yaml", peer=b))
    yield a, b


def test_a_pending_remap_waits_alone_and_keeps_the_firewall(kube: KubeClient, two_peerings: tuple[str, str]) -> None:
    a, b = two_peerings
    with running_controller(kube) as run:
        wait_for("A applied", lambda: ready_reason(kube, a) in ("Applied", "Applying") or None)
        wait_for("B applied", lambda: ready_reason(kube, b) in ("Applied", "Applying") or None)
        rv_a = firewall(kube, a)["metadata"]["resourceVersion"]  # type: ignore[index]

        # Before Liqo's IPAM answers, a Configuration holds its spec and no remapped status.
        set_remote_cidrs(kube, a, None, None)
        wait_for("A to wait on Liqo's remap", lambda: ready_reason(kube, a) == "RemapPending" or None)
        ready = condition(kube, a, tenant(a), "Ready")
        assert ready["status"] == "False" and "status.remote.cidr.pod" in ready["message"]

        apply(kube, [offloaded_pod("cart-9", f"shop-{b}-{b}", "10.1.7.7", b)])
        wait_for("B's firewall to take its new pod while A waits", lambda: isolates(kube, b, "10.1.7.7"))
        assert firewall(kube, a)["metadata"]["resourceVersion"] == rv_a  # type: ignore[index]
        assert not [e for e in warnings_about(kube, tenant(a), a) if e["reason"] == "InvalidClusterState"]
        assert run.controller.queue.num_requeues(f"{tenant(a)}/{a}") == 0  # the Configuration brings it back

        set_remote_cidrs(kube, a, "10.71.0.0/16", "10.72.0.0/16")
        wait_for("A applied again", lambda: ready_reason(kube, a) in ("Applied", "Applying") or None)


def test_a_policy_in_a_namespace_liqo_made_for_offloaded_workloads_gets_no_firewall(
    kube: KubeClient, local_pod_cidr: None
) -> None:
    peer = unique_peer("off")
    stray = f"shop-{peer}"
    # Liqo's namespacemap controller labels the namespaces it makes for a consumer's workloads so.
    kube.create(
        NAMESPACES,
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": stray, "labels": {"liqo.io/remote-cluster-id": peer}},
        },
    )
    ensure_namespace(kube, tenant(peer))
    policy = {"apiVersion": "security.liqo.io/v1", "kind": "PeeringConnectivity", "spec": {"defaultAction": "deny"}}
    kube.create(PEERING_CONNECTIVITIES, {**policy, "metadata": {"name": peer, "namespace": stray}}, namespace=stray)
    with running_controller(kube):
        refused = wait_for(
            "the stray policy refused",
            lambda: (c := condition(kube, peer, stray, "Valid")).get("status") == "False" and c or None,
        )
        assert refused["reason"] == "NotTenantNamespace"
        assert f"'{stray}' is not a tenant namespace" in refused["message"]
        assert "lacks liqo.io/tenant-namespace" in refused["message"]
        # A real tenant namespace's policy for the same peer still governs it.
        kube.create(
            PEERING_CONNECTIVITIES,
            {**policy, "metadata": {"name": peer, "namespace": tenant(peer)}},
            namespace=tenant(peer),
        )
        wait_for("the tenant policy's firewall", lambda: firewall(kube, peer))
        assert firewall(kube, peer, stray) is None
