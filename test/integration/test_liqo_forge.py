"""The shapes liqosec depends on in Liqo's own objects, as Liqo v1.2.0's code makes them (`liqo-agent forge`).

No API server: Liqo's functions and reconcilers run on fake clients inside the agent binary
(test/harness/liqo_forge.py). Each assertion is one fact liqosec's readers rely on.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from harness.agents import agent_or_skip
from harness.liqo_forge import PEERING_SPEC, forge, of_kind, one

LOCAL, PEER, OTHER = "home", "rome", "milan"
SPEC = PEERING_SPEC
TENANT = f"liqo-tenant-{PEER}"


@pytest.fixture(scope="module", autouse=True)
def agent_built() -> None:
    agent_or_skip()


@pytest.fixture(scope="module")
def remapped() -> list[dict[str, Any]]:
    return forge(SPEC, stage="remapped")


@pytest.fixture(scope="module")
def pending() -> list[dict[str, Any]]:
    return forge(SPEC, stage="pending")


def test_the_tenant_namespace_carries_both_labels(remapped: list[dict[str, Any]]) -> None:
    labels = one(remapped, "Namespace", TENANT)["metadata"]["labels"]
    assert labels["liqo.io/tenant-namespace"] == "true"
    assert labels["liqo.io/remote-cluster-id"] == PEER


def test_a_pending_configuration_has_empty_remapped_cidrs(pending: list[dict[str, Any]]) -> None:
    cfg = one(pending, "Configuration", PEER, TENANT)
    assert cfg["metadata"]["labels"]["liqo.io/remote-cluster-id"] == PEER
    assert cfg["spec"]["remote"]["cidr"] == {"pod": ["10.200.0.0/16"], "external": ["10.70.0.0/16"]}
    assert cfg["status"]["remote"]["cidr"] == {"pod": [""], "external": [""]}
    [cond] = cfg["status"]["conditions"]
    assert (cond["type"], cond["status"]) == ("NetworkCIDRsConfigured", "False")
    # Nothing is remapped yet, so Liqo's ipmapping reconciler has no unknown-source IP to make.
    assert of_kind(pending, "IP") == []


def test_a_remapped_configuration_has_the_ipams_cidrs(remapped: list[dict[str, Any]]) -> None:
    cfg = one(remapped, "Configuration", PEER, TENANT)
    assert cfg["status"]["remote"]["cidr"] == {"pod": ["10.81.0.0/16"], "external": ["10.82.0.0/16"]}
    assert cfg["spec"]["local"]["cidr"] == {"pod": ["10.200.0.0/16"], "external": ["10.70.0.0/16"]}
    [cond] = cfg["status"]["conditions"]
    assert (cond["type"], cond["status"]) == ("NetworkCIDRsConfigured", "True")
    tenant_networks = [n for n in of_kind(remapped, "Network") if n["metadata"]["namespace"] == TENANT]
    assert sorted(n["status"]["cidr"] for n in tenant_networks) == ["10.81.0.0/16", "10.82.0.0/16"]
    assert {n["metadata"]["labels"]["liqo.io/remote-cluster-id"] for n in tenant_networks} == {PEER}


def test_the_unknown_source_ip_is_in_the_remapped_external_cidr(remapped: list[dict[str, Any]]) -> None:
    ip = one(remapped, "IP", f"{PEER}-unknown-source", TENANT)
    assert ip["metadata"]["labels"]["liqo.io/remote-cluster-id"] == PEER
    assert ipaddress.ip_address(ip["spec"]["ip"]) in ipaddress.ip_network("10.82.0.0/16")


def test_the_cluster_selector_excludes_the_other_provider(remapped: list[dict[str, Any]]) -> None:
    status = one(remapped, "NamespaceOffloading", "offloading", "shop")["status"]
    by_cluster = {
        cluster: {c["type"]: (c["status"], c["reason"]) for c in conds}
        for cluster, conds in status["remoteNamespacesConditions"].items()
    }
    assert by_cluster[OTHER] == {"OffloadingRequired": ("False", "ClusterNotSelected")}
    assert by_cluster[PEER]["OffloadingRequired"] == ("True", "ClusterSelected")
    assert by_cluster[PEER]["Ready"] == ("True", "NamespaceCreated")
    assert status["remoteNamespaceName"] == f"shop-{LOCAL}"


def test_virtual_nodes_carry_the_remote_cluster_id(remapped: list[dict[str, Any]]) -> None:
    node = one(remapped, "Node", PEER)  # as Liqo's virtual kubelet registers it (liqoNodeProvider)
    assert node["metadata"]["labels"]["liqo.io/remote-cluster-id"] == PEER
    assert node["metadata"]["labels"]["liqo.io/type"] == "virtual-node"
    assert node["metadata"]["labels"]["topology.example/region"] == "south"
    assert one(remapped, "Node", OTHER)["metadata"]["labels"]["liqo.io/remote-cluster-id"] == OTHER


def test_an_offloaded_pod_names_its_origin(remapped: list[dict[str, Any]]) -> None:
    pod = one(remapped, "Pod", "guest", "guests")
    labels = pod["metadata"]["labels"]
    assert labels["offloading.liqo.io/origin"] == PEER
    assert labels["offloading.liqo.io/destination"] == LOCAL
    assert labels["app"] == "guest"
    assert pod["status"]["podIP"] == "10.200.1.5"


def test_a_shadow_pod_is_labelled_and_its_ip_translated(remapped: list[dict[str, Any]]) -> None:
    pod = one(remapped, "Pod", "cart", "shop")
    assert pod["metadata"]["labels"]["liqo.io/shadowPod"] == "true"
    assert pod["spec"]["nodeName"] == PEER
    # 10.200.3.7 in the peer's pod CIDR, as seen here through the remapped 10.81.0.0/16.
    assert pod["status"]["podIP"] == "10.81.3.7"
    assert "offloading.liqo.io/origin" not in pod["metadata"]["labels"]


def test_forge_is_cached_per_spec(remapped: list[dict[str, Any]]) -> None:
    again = forge(SPEC, stage="remapped")
    assert again == remapped and again is not remapped


# ----- liqosec's resolution of Liqo's own objects -----
def local_pod(name: str, namespace: str, ip: str) -> dict[str, Any]:
    """A plain pod of this cluster: the kubelet's, not Liqo's (the one hand-made input here)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {}},
        "spec": {"nodeName": "worker-1"},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]},
    }


def test_liqosec_resolves_every_group_from_liqos_own_objects(remapped: list[dict[str, Any]]) -> None:
    from liqosec.firewall.addresses import AddressSet
    from liqosec.groups.resolve import peer_of_namespace, resolve_groups
    from liqosec.groups.view import Snapshot

    view = Snapshot([*remapped, local_pod("front", "shop", "10.200.9.9"), local_pod("web", "default", "10.200.8.8")])
    assert peer_of_namespace(view, TENANT) == PEER
    groups = resolve_groups(view, PEER, TENANT)
    unknown_source = one(remapped, "IP", f"{PEER}-unknown-source", TENANT)["spec"]["ip"]
    expected = AddressSet.of(["10.81.0.0/16", unknown_source])  # the masquerade source is Liqo's IP object
    assert groups.get("remote-cluster") == expected
    assert groups.get("offloaded").values() == ["10.200.1.5"]
    assert groups.get("vc-remote").values() == ["10.81.3.7"]  # the shadow pod on the peer's virtual node
    assert groups.get("vc-local").values() == ["10.200.9.9"]  # shop's ClusterSelector picked the peer
    other = resolve_groups(view, OTHER, f"liqo-tenant-{OTHER}")
    assert other.get("vc-local").values() == []  # ... and left the other provider out


def test_liqos_pending_configuration_makes_the_peering_wait(pending: list[dict[str, Any]]) -> None:
    from liqosec.groups.resolve import resolve_groups
    from liqosec.groups.view import RemapPending, Snapshot

    with pytest.raises(RemapPending) as waited:
        resolve_groups(Snapshot(pending), PEER, TENANT)
    assert waited.value.ref.kind == "Configuration" and waited.value.path.startswith("status.remote.cidr.")
