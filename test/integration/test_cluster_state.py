"""Malformed cluster state against the real API server: only the peerings that read it stop, the rest converge.

Every object here is one the API server accepts (its schema cannot say "no
host bits"). A broken peering says which object and field on its status
(reason InvalidClusterState), warns once, keeps its last good firewall and is
not retried in a loop; fixing the object brings it back.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from support import Running, example, offloaded_pod, running_controller, unique_peer, wait_for

from harness.firewalls import firewall
from harness.objects import apply, set_status
from liqosec.controller import reconcile as reconcile_module
from liqosec.controller.resources import CONFIGURATIONS, NETWORKS, PEERING_CONNECTIVITIES
from liqosec.firewall.evaluate import Packet, node_accepts
from liqosec.kube.client import EVENTS, KubeClient

LOCAL_POD = "10.1.1.10"  # the example's `web` pod


def tenant(peer: str) -> str:
    return f"liqo-tenant-{peer}"


def isolates(kube: KubeClient, peer: str, ip: str) -> bool:
    """The peer's firewall drops what its offloaded pod `ip` sends to a local pod."""
    fc = firewall(kube, peer)
    return fc is not None and not node_accepts([fc["spec"]["table"]], Packet.of(ip, LOCAL_POD))


def condition(kube: KubeClient, peer: str, type_: str) -> dict[str, Any]:
    pc = kube.get(PEERING_CONNECTIVITIES, peer, namespace=tenant(peer))
    found = [c for c in (pc.get("status") or {}).get("conditions") or () if c["type"] == type_]
    return dict(found[0]) if found else {}


def valid(kube: KubeClient, peer: str, status: str) -> dict[str, Any] | None:
    c = condition(kube, peer, "Valid")
    return c if c.get("status") == status else None


def settled(kube: KubeClient, peer: str) -> str | None:
    """The firewall's resourceVersion once it matches the spec (no write of ours in flight)."""
    ready = condition(kube, peer, "Ready")
    fc = firewall(kube, peer)
    ok = valid(kube, peer, "True") and ready.get("reason") in ("Applied", "Applying") and fc
    return str(fc["metadata"]["resourceVersion"]) if ok and fc else None


def cluster_state_warnings(kube: KubeClient, peer: str) -> list[dict[str, Any]]:
    items = kube.list(EVENTS, tenant(peer), limit=500, continue_token=None)["items"]
    return [
        e
        for e in items
        if e["type"] == "Warning" and e["reason"] == "InvalidClusterState" and e["involvedObject"]["name"] == peer
    ]


def problem_passes(run: Running, peer: str) -> float:
    return run.metric("liqosec_invalid_cluster_state_total", peering=f"{tenant(peer)}/{peer}")


@pytest.fixture()
def two_peerings(kube: KubeClient, local_pod_cidr: None) -> Iterator[tuple[str, str]]:
    a, b = unique_peer("a"), unique_peer("b")
    apply(kube, example("provider-isolate-offloaded.yaml", peer=a) + example("provider-isolate-offloaded.yaml", peer=b))
    yield a, b


def set_remote_pod_cidr(kube: KubeClient, peer: str, cidr: str) -> None:
    conf = kube.get(CONFIGURATIONS, peer, namespace=tenant(peer))
    status = dict(conf.get("status") or {})
    status["remote"] = {"cidr": {"pod": [cidr], "external": ["10.72.0.0/16"]}}
    set_status(kube, CONFIGURATIONS, conf, status)


def test_host_bits_in_one_peers_configuration_stop_only_that_peering(
    kube: KubeClient, two_peerings: tuple[str, str]
) -> None:
    a, b = two_peerings
    with running_controller(kube) as run:
        rv_a = wait_for("A settled", lambda: settled(kube, a))
        wait_for("B settled", lambda: settled(kube, b))

        set_remote_pod_cidr(kube, a, "10.71.0.1/16")
        bad = wait_for("A to report the Configuration", lambda: valid(kube, a, "False"))
        assert bad["reason"] == "InvalidClusterState"
        assert bad["message"] == (
            f"Configuration {tenant(a)}/{a}: status.remote.cidr.pod[0]: '10.71.0.1/16' has host "
            "bits set; the network is 10.71.0.0/16"
        )
        ready = condition(kube, a, "Ready")
        assert ready["status"] == "False" and ready["message"].endswith("the last good FirewallConfiguration is kept")

        passes = problem_passes(run, a)
        apply(
            kube,
            [
                offloaded_pod("cart-9", f"shop-{b}-{b}", "10.1.7.7", b),
                offloaded_pod("cart-9", f"shop-{a}-{a}", "10.1.7.8", a),
            ],
        )
        wait_for("B's firewall to take its new pod", lambda: isolates(kube, b, "10.1.7.7"))
        wait_for("A to be looked at again while broken", lambda: problem_passes(run, a) > passes)
        assert firewall(kube, a)["metadata"]["resourceVersion"] == rv_a  # type: ignore[index]
        assert len(cluster_state_warnings(kube, a)) == 1
        assert cluster_state_warnings(kube, b) == []
        assert run.controller.queue.num_requeues(f"{tenant(a)}/{a}") == 0  # level-triggered: no retry loop

        set_remote_pod_cidr(kube, a, "10.71.0.0/16")
        wait_for("A valid again", lambda: valid(kube, a, "True"))
        wait_for("A's firewall to take the pod added while broken", lambda: isolates(kube, a, "10.1.7.8"))
        assert len(cluster_state_warnings(kube, a)) == 1


def test_a_fault_compiling_one_peering_leaves_the_other_converging(
    kube: KubeClient, two_peerings: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = two_peerings
    real = reconcile_module.compile_inputs

    def faulty(inputs: Any, caps: Any) -> Any:
        if inputs.peering.name == a:
            raise RuntimeError(f"injected fault for {a}")
        return real(inputs, caps)

    with running_controller(kube) as run:
        rv_a = wait_for("A settled", lambda: settled(kube, a))
        wait_for("B settled", lambda: settled(kube, b))
        monkeypatch.setattr(reconcile_module, "compile_inputs", faulty)

        apply(kube, [offloaded_pod("cart-9", f"shop-{a}-{a}", "10.1.7.8", a)])
        bad = wait_for("A to report the fault", lambda: valid(kube, a, "False"))
        assert bad["reason"] == "InvalidClusterState"
        assert bad["message"] == f"compiling failed: RuntimeError: injected fault for {a}"
        apply(
            kube,
            [
                offloaded_pod("cart-9", f"shop-{b}-{b}", "10.1.7.7", b),
                offloaded_pod("cart-10", f"shop-{a}-{a}", "10.1.7.9", a),
            ],
        )
        wait_for("B's firewall to take its new pod", lambda: isolates(kube, b, "10.1.7.7"))
        wait_for("A to be looked at again", lambda: problem_passes(run, a) >= 2)
        assert firewall(kube, a)["metadata"]["resourceVersion"] == rv_a  # type: ignore[index]
        assert len(cluster_state_warnings(kube, a)) == 1

        monkeypatch.setattr(reconcile_module, "compile_inputs", real)
        apply(kube, [offloaded_pod("cart-11", f"shop-{a}-{a}", "10.1.7.10", a)])  # the next change brings A back
        wait_for("A valid again", lambda: valid(kube, a, "True"))
        for ip in ("10.1.7.8", "10.1.7.9", "10.1.7.10"):
            wait_for(f"A's firewall to take {ip}", lambda ip=ip: isolates(kube, a, ip))  # type: ignore[misc]
        assert len(cluster_state_warnings(kube, a)) == 1


def test_a_local_pod_cidr_with_host_bits_stops_every_peering_until_removed(
    kube: KubeClient, two_peerings: tuple[str, str]
) -> None:
    a, b = two_peerings
    bad_network = {
        "apiVersion": "ipam.liqo.io/v1alpha1",
        "kind": "Network",
        "metadata": {"name": f"bad-{a}", "namespace": "liqo", "labels": {"ipam.liqo.io/network-type": "pod-cidr"}},
        "spec": {"cidr": "10.1.0.5/16"},
    }
    with running_controller(kube):
        rvs = {p: wait_for(f"{p} settled", lambda p=p: settled(kube, p)) for p in (a, b)}  # type: ignore[misc]
        try:
            apply(kube, [bad_network])
            for p in (a, b):
                bad = wait_for(f"{p} to report the Network", lambda p=p: valid(kube, p, "False"))  # type: ignore[misc]
                assert bad["message"] == (
                    f"Network liqo/bad-{a}: spec.cidr: '10.1.0.5/16' has host bits set; the network is 10.1.0.0/16"
                )
                assert firewall(kube, p)["metadata"]["resourceVersion"] == rvs[p]  # type: ignore[index]
        finally:
            kube.delete(NETWORKS, f"bad-{a}", namespace="liqo")
        for p in (a, b):
            wait_for(f"{p} valid again", lambda p=p: valid(kube, p, "True"))  # type: ignore[misc]
            assert len(cluster_state_warnings(kube, p)) == 1


def test_unusual_but_legal_objects_are_no_error(kube: KubeClient, local_pod_cidr: None) -> None:
    """An IPv6-only pod, a pod without an address, a Configuration without status: resolution copes."""
    c = unique_peer("c")
    objs = [o for o in example("provider-isolate-offloaded.yaml", peer=c) if o["kind"] != "Configuration"]
    shop = f"shop-{c}-{c}"
    v6 = offloaded_pod("v6", shop, "fd00::5", c)
    no_ip = offloaded_pod("pending", shop, "", c)
    no_ip["status"] = {"phase": "Pending"}
    objs += [
        v6,
        no_ip,
        {
            "apiVersion": "networking.liqo.io/v1beta1",
            "kind": "Configuration",
            "metadata": {"name": c, "namespace": tenant(c)},
            "spec": {},
        },
        {
            "apiVersion": "ipam.liqo.io/v1alpha1",
            "kind": "Network",
            "metadata": {
                "name": f"{c}-pod",
                "namespace": tenant(c),
                "labels": {"configuration.liqo.io/cidr-type": "pod"},
            },
            "spec": {"cidr": "10.200.0.0/16"},
            "status": {"cidr": "10.71.0.0/16"},
        },
    ]
    apply(kube, objs)
    with running_controller(kube):
        wait_for("settled", lambda: settled(kube, c))
        status = kube.get(PEERING_CONNECTIVITIES, c, namespace=tenant(c))["status"]
        assert status["ipv6Skipped"] == 1
        assert status["addresses"]["offloaded"] == 2  # the example's two pods; the new ones hold no IPv4 address
        assert status["addresses"]["remote-cluster"] == 65536  # from the tenant Network: the Configuration says nothing
        assert cluster_state_warnings(kube, c) == []
