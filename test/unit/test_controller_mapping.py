"""The key mapping of every watched kind, and the declared per-kind table (transform, indexes, mapper, CRD).

The view is the real one: stores built from `watched_resources()`, preloaded
through their transforms, so a mapper reads what it reads in a cluster.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from fake_kube import (
    ISOLATE,
    Fixture,
    cluster,
    fabric_pod,
    key,
    namespace,
    node,
    peering,
    pod,
    virtual_node,
    virtual_node_cr,
)

from liqosec.controller import mapping
from liqosec.controller.mapping import Change, KeyMapper, pod_facts, status_only
from liqosec.controller.resources import (
    FIREWALL_CONFIGURATIONS,
    MissingIndex,
    StoreView,
    crd_name,
    label_index,
    watched_resources,
)
from liqosec.firewall.capabilities import FIREWALL_CRD_NAME

ROOT = Path(__file__).resolve().parents[2]
Obj = dict[str, Any]

ROME, MILAN, PARIS = key("rome"), key("milan"), "edge/paris"


def nso(ns: str, *peers: str) -> Obj:
    return {
        "apiVersion": "offloading.liqo.io/v1beta1",
        "kind": "NamespaceOffloading",
        "metadata": {"name": "offloading", "namespace": ns},
        "status": {"remoteNamespacesConditions": {p: [] for p in peers}},
    }


def world() -> Fixture:
    """rome and milan in liqo-tenant-<peer>; paris in `edge` (a tenant by its label); apps offloaded to milan."""
    namespaced_rule = [{"source": {"namespace": "billing"}, "action": "deny"}]
    return Fixture(
        [
            *cluster("rome", "milan"),
            namespace("edge", **{"liqo.io/remote-cluster-id": "paris", "liqo.io/tenant-namespace": "true"}),
            peering("paris", "edge", namespaced_rule),
            namespace("apps"),
            nso("apps", "milan"),
            virtual_node("liqo-milan", "milan"),
            node("worker-1"),
        ]
    )


def keys(f: Fixture, kind: str, old: Obj | None, new: Obj | None) -> set[str]:
    """What the informer of `kind` would queue: through the store's transform, as handlers receive objects."""
    store = f.stores[kind]
    mapper = {w.kind: w.mapper for w in watched_resources()}[kind]
    return KeyMapper(f.view).keys(mapper, old and store.transform(old), new and store.transform(new))


def changed(obj: Obj, rv: str = "999", **edits: Any) -> Obj:
    out = copy.deepcopy(obj)
    out.setdefault("metadata", {})["resourceVersion"] = rv
    for path, value in edits.items():
        node_: Any = out
        *parents, last = path.split("__")
        for p in parents:
            node_ = node_.setdefault(p, {})
        node_[last] = value
    return out


# ----- the declared table -----
def test_every_watched_kind_declares_a_mapper_and_a_store() -> None:
    table = watched_resources()
    kinds = [w.kind for w in table]
    assert len(kinds) == len(set(kinds))
    assert set(kinds) == {
        "PeeringConnectivity",
        "FirewallConfiguration",
        "Pod",
        "Node",
        "Namespace",
        "Network",
        "Configuration",
        "NamespaceOffloading",
        "ForeignCluster",
        "VirtualNode",
        "Service",
        "EndpointSlice",
        "CustomResourceDefinition",
    }
    assert all(callable(w.mapper) for w in table)
    assert {w.kind: w.mapper for w in table}["Pod"] is mapping.pod_keys


def test_every_custom_kind_names_a_crd_that_ships() -> None:
    shipped = set()
    for path in [*(ROOT / "hack" / "liqo-crds").glob("*.yaml"), *(ROOT / "manifests" / "crds").glob("*.yaml")]:
        shipped |= {d["metadata"]["name"] for d in yaml.safe_load_all(path.read_text()) if d}
    builtin = ("", "discovery.k8s.io", "apiextensions.k8s.io")
    custom = {w.kind: w.crd for w in watched_resources() if w.ref.group not in builtin}
    assert all(custom.values()), f"a custom kind without its CRD: {custom}"
    # An optional kind's CRD need not ship (VirtualNode's is 700 KB of Deployment template): the
    # controller starts without it and watches it once installed (test_controller_manager).
    optional = {w.crd for w in watched_resources() if w.optional}
    assert optional == {"virtualnodes.offloading.liqo.io"}
    assert set(custom.values()) - optional <= shipped
    assert custom["FirewallConfiguration"] == FIREWALL_CRD_NAME == crd_name(FIREWALL_CONFIGURATIONS)
    assert all(w.crd is None for w in watched_resources() if w.kind not in custom)


def test_the_firewall_index_is_the_one_by_label_asks_for() -> None:
    f = world()
    f.reconcile(ROME)
    f.sync()
    [fc] = f.view.by_label("FirewallConfiguration", "security.liqo.io/peering-connectivity", "rome")
    assert fc["metadata"]["name"] == "liqosec-rome"
    assert label_index("security.liqo.io/peering-connectivity") in f.watched["FirewallConfiguration"].indexers


def test_by_label_on_a_missing_index_raises_naming_kind_and_index() -> None:
    view = StoreView({w.kind: w.new_store() for w in watched_resources()})
    expected = r"ForeignCluster is not indexed by label 'liqo.io/type'.*label:liqo.io/type"
    with pytest.raises(MissingIndex, match=expected):
        view.by_label("ForeignCluster", "liqo.io/type", "x")
    assert list(view.by_label("NotWatched", "a", "b")) == []


def test_the_firewall_informer_selects_only_ours() -> None:
    assert (
        f"{'app.kubernetes.io/managed-by'}=liqosec"
        == {w.kind: w for w in watched_resources()}["FirewallConfiguration"].label_selector
    )


# ----- PeeringConnectivity -----
def test_a_peering_wakes_itself_and_its_namespace_neighbours() -> None:
    f = world()
    second = peering("zz", "liqo-tenant-rome", ISOLATE)
    assert keys(f, "PeeringConnectivity", None, second) == {ROME, "liqo-tenant-rome/zz"}
    assert keys(f, "PeeringConnectivity", second, None) == {ROME, "liqo-tenant-rome/zz"}


def test_our_own_status_write_coming_back_maps_to_nothing_but_a_resync_does() -> None:
    f = world()
    live = f.stores["PeeringConnectivity"].get("liqo-tenant-rome/rome")
    assert live is not None
    with_status = changed(live, status={"conditions": []})
    assert status_only(live, with_status)
    assert keys(f, "PeeringConnectivity", live, with_status) == set()
    assert keys(f, "PeeringConnectivity", live, live) == {ROME}  # resync: same version twice
    regenerated = changed(live, metadata__generation=2)
    assert keys(f, "PeeringConnectivity", live, regenerated) == {ROME}


# ----- FirewallConfiguration -----
def test_a_firewall_change_wakes_its_owner_even_status_only() -> None:
    f = world()
    f.reconcile(ROME)
    f.sync()
    live = f.stores["FirewallConfiguration"].get("liqo-tenant-rome/liqosec-rome")
    assert live is not None
    applied = changed(live, status={"conditions": [{"host": "n1", "type": "Applied", "status": "True"}]})
    assert keys(f, "FirewallConfiguration", live, applied) == {ROME}
    assert keys(f, "FirewallConfiguration", live, None) == {ROME}
    stray = {"kind": "FirewallConfiguration", "metadata": {"name": "x", "namespace": "liqo-tenant-rome"}}
    assert keys(f, "FirewallConfiguration", None, stray) == set()


def test_a_deleted_firewall_wakes_every_policy_of_its_namespace() -> None:
    """Its table name is free again: a write Liqo's webhook refused for holding it is retried at once."""
    f = world()
    f.seed(peering("rome-next", "liqo-tenant-rome", ISOLATE))
    f.reconcile(ROME)
    f.sync()
    live = f.stores["FirewallConfiguration"].get("liqo-tenant-rome/liqosec-rome")
    assert keys(f, "FirewallConfiguration", live, None) == {ROME, "liqo-tenant-rome/rome-next"}
    assert keys(f, "FirewallConfiguration", live, changed(live, status={"conditions": []})) == {ROME}


# ----- Pod -----
def test_an_offloaded_pod_wakes_its_origin_only() -> None:
    f = world()
    p = pod("cart", "shop-rome", "10.1.9.9", origin="rome")
    assert keys(f, "Pod", None, p) == {ROME}
    assert keys(f, "Pod", p, None) == {ROME}


def test_a_pod_update_that_resolution_cannot_see_maps_to_nothing() -> None:
    f = world()
    p = pod("cart", "shop-rome", "10.1.9.9", origin="rome")
    annotated = changed(p, metadata__annotations={"note": "x"})
    assert pod_facts(f.stores["Pod"].transform(p)) == pod_facts(f.stores["Pod"].transform(annotated))
    assert keys(f, "Pod", p, annotated) == set()
    assert keys(f, "Pod", p, changed(p, status={"phase": "Running", "podIP": "10.1.9.8"})) == {ROME}
    assert keys(f, "Pod", p, changed(p, status={"phase": "Succeeded", "podIP": "10.1.9.9"})) == {ROME}
    assert keys(f, "Pod", p, changed(p, spec={"nodeName": "worker-1", "hostNetwork": True})) == {ROME}


def test_a_relabelled_pod_wakes_both_its_old_and_new_peer() -> None:
    f = world()
    p = pod("cart", "shop-rome", "10.1.9.9", origin="rome")
    moved = changed(p, metadata__labels={"offloading.liqo.io/origin": "milan"})
    assert keys(f, "Pod", p, moved) == {ROME, MILAN}


def test_a_shadow_pod_wakes_the_peer_of_its_virtual_node() -> None:
    f = world()
    shadow = pod("web", "default", "10.72.0.9", node="liqo-milan", **{"liqo.io/shadowPod": "true"})
    assert keys(f, "Pod", None, shadow) == {MILAN}
    older = pod("web", "default", "10.72.0.9", node="rome", **{"liqo.io/shadowPod": "true"})
    assert keys(f, "Pod", None, older) == {ROME}  # older Liqo: the virtual node is named after the peer


def test_a_pod_in_an_offloaded_or_named_namespace_wakes_those_peerings() -> None:
    f = world()
    assert keys(f, "Pod", None, pod("api", "apps", "10.1.3.3")) == {MILAN}
    assert keys(f, "Pod", None, pod("bill", "billing", "10.1.4.4")) == {PARIS}
    assert keys(f, "Pod", None, pod("lonely", "nowhere", "10.1.5.5")) == set()


def test_one_mapper_follows_a_policy_edit_and_not_our_status_writes() -> None:
    """The informers keep one KeyMapper: the namespaces a policy names follow its spec as it is edited,
    while a status write (ours, every few seconds a peering) keeps the peerings' index as it was."""
    f = world()
    store = f.stores["PeeringConnectivity"]
    pods = {ns: store.transform(pod("p", ns, "10.1.4.4")) for ns in ("billing", "payments")}
    mapper = {w.kind: w.mapper for w in watched_resources()}["Pod"]
    m = KeyMapper(f.view)

    def woken(ns: str) -> set[str]:
        return m.keys(mapper, None, pods[ns])

    assert (woken("billing"), woken("payments")) == ({PARIS}, set())
    index = m._index()
    live = store.get(PARIS)
    assert live is not None
    store.add(changed(live, "1000", status={"conditions": [{"type": "Ready", "status": "True"}]}))
    assert (woken("billing"), woken("payments")) == ({PARIS}, set())
    assert m._index() is index  # the status write did not make it read every peering again
    edited = changed(live, "1001", spec__rules=[{"source": {"namespace": "payments"}, "action": "deny"}])
    store.add(edited)
    assert (woken("billing"), woken("payments")) == (set(), {PARIS})


def test_a_fabric_pod_coming_going_or_moving_wakes_every_peering_and_nothing_else_does() -> None:
    """Ready counts Liqo's fabric pods (the hosts its agents report under): each of them is every peering's."""
    f = world()
    everyone = {ROME, MILAN, PARIS}
    agent = fabric_pod("liqo-fabric-7xk2p", "worker-1")
    assert keys(f, "Pod", None, agent) == keys(f, "Pod", agent, None) == everyone
    assert keys(f, "Pod", agent, changed(agent, spec={"nodeName": "worker-2", "hostNetwork": True})) == everyone
    assert keys(f, "Pod", agent, changed(agent, status={"phase": "Failed"})) == everyone
    # Unrelated to where agents run: its address (host network), its annotations, Pending to Running.
    assert keys(f, "Pod", agent, changed(agent, status={"phase": "Running", "podIP": "172.18.0.3"})) == set()
    assert keys(f, "Pod", agent, changed(agent, metadata__annotations={"a": "b"})) == set()
    pending = changed(agent, status={"phase": "Pending"})
    assert keys(f, "Pod", pending, agent) == set()
    # A pod with only some of the fabric's labels is no agent.
    lookalike = pod("fabric-ish", "liqo", "10.1.7.7", **{"app.kubernetes.io/name": "fabric"})
    assert keys(f, "Pod", None, lookalike) == set()


# ----- Node, Namespace -----
def test_a_virtual_node_wakes_its_peer_and_a_physical_one_every_peering() -> None:
    """A physical node is one more agent to report Applied, and one more per-node firewall."""
    f = world()
    v = virtual_node("liqo-rome", "rome")
    assert keys(f, "Node", None, v) == {ROME}
    assert keys(f, "Node", v, changed(v)) == set()  # a heartbeat: labels unchanged
    worker = node("worker-2")
    assert keys(f, "Node", None, worker) == keys(f, "Node", worker, None) == {ROME, MILAN, PARIS}
    assert keys(f, "Node", worker, changed(worker)) == set()
    with_cidr = {**worker, "spec": {"podCIDRs": ["10.1.9.0/24"]}}
    assert keys(f, "Node", worker, with_cidr) == {ROME, MILAN, PARIS}
    named = node("milan", **{"liqo.io/type": "virtual-node"})
    assert keys(f, "Node", named, None) == {MILAN}


def test_a_tenant_namespace_relabelled_wakes_its_peerings() -> None:
    f = world()
    edge = namespace("edge", **{"liqo.io/remote-cluster-id": "paris", "liqo.io/tenant-namespace": "true"})
    assert keys(f, "Namespace", edge, changed(edge, metadata__labels={})) == {PARIS}
    assert keys(f, "Namespace", edge, changed(edge)) == set()
    assert keys(f, "Namespace", None, namespace("liqo-tenant-rome")) == {ROME}


# ----- Liqo's objects -----
def test_a_tenant_network_wakes_its_namespace_and_a_local_one_everyone() -> None:
    f = world()
    tenant_net = {
        "kind": "Network",
        "metadata": {"name": "n", "namespace": "liqo-tenant-milan"},
        "status": {"cidr": "x"},
    }
    assert keys(f, "Network", None, tenant_net) == {MILAN}
    local = {"kind": "Network", "metadata": {"name": "pod-cidr", "namespace": "liqo"}, "spec": {"cidr": "10.1.0.5/16"}}
    assert keys(f, "Network", local, changed(local)) == {ROME, MILAN, PARIS}


def test_a_configuration_wakes_its_tenant_namespace() -> None:
    f = world()
    conf = {"kind": "Configuration", "metadata": {"name": "rome", "namespace": "liqo-tenant-rome"}}
    assert keys(f, "Configuration", None, conf) == {ROME}
    assert keys(f, "Configuration", conf, None) == {ROME}


def test_a_namespace_offloading_wakes_the_peers_it_names_before_and_after() -> None:
    f = world()
    before, after = nso("apps", "milan"), nso("apps", "rome")
    assert keys(f, "NamespaceOffloading", before, after) == {ROME, MILAN}
    shaped_oddly = {
        "kind": "NamespaceOffloading",
        "metadata": {"name": "offloading", "namespace": "x"},
        "status": {"remoteNamespacesConditions": ["milan"]},
    }
    assert keys(f, "NamespaceOffloading", None, shaped_oddly) == set()


def test_a_foreign_cluster_wakes_its_peer() -> None:
    f = world()
    fc = {"kind": "ForeignCluster", "metadata": {"name": "paris"}, "spec": {"clusterID": "paris"}}
    assert keys(f, "ForeignCluster", None, fc) == {PARIS}
    assert keys(f, "ForeignCluster", None, {"kind": "ForeignCluster", "metadata": {"name": "x"}}) == set()


def test_a_virtual_node_cr_wakes_its_peer_when_what_it_does_not_reflect_changes() -> None:
    f = world()
    vn = virtual_node_cr("rome", "team")
    assert keys(f, "VirtualNode", None, vn) == keys(f, "VirtualNode", vn, None) == {ROME}
    assert keys(f, "VirtualNode", vn, changed(vn, spec={"clusterID": "rome"})) == {ROME}
    assert keys(f, "VirtualNode", vn, changed(vn, status={"conditions": []})) == set()
    assert keys(f, "VirtualNode", vn, changed(vn, metadata__annotations={"a": "b"})) == set()


def test_the_virtual_node_store_keeps_what_matters_not_the_template() -> None:
    vn = virtual_node_cr("rome", "team")
    vn["spec"]["template"] = {"spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "vk"}]}}}}
    kept = Fixture().stores["VirtualNode"].transform(vn)
    assert kept["spec"] == {"clusterID": "rome", "offloadingPatch": {"labelsNotReflected": ["team"]}}


def test_a_shadow_pod_starting_without_an_ip_wakes_its_peer() -> None:
    """Running without an IP is what --disable-ip-reflection looks like (`ShadowPodsWithoutIP`)."""
    f = world()
    pending = pod("web", "default", None, node="liqo-milan", **{"liqo.io/shadowPod": "true"})
    pending["status"]["phase"] = "Pending"
    assert keys(f, "Pod", pending, changed(pending, status={"phase": "Running"})) == {MILAN}
    local = pod("web", "default", None)
    local["status"]["phase"] = "Pending"
    assert keys(f, "Pod", local, changed(local, status={"phase": "Running"})) == set()


def test_a_service_wakes_the_peers_its_namespace_is_offloaded_to() -> None:
    f = world()
    svc = {"kind": "Service", "metadata": {"name": "api", "namespace": "apps"}, "spec": {"ports": []}}
    assert keys(f, "Service", None, svc) == {MILAN}
    assert keys(f, "Service", None, {"kind": "Service", "metadata": {"name": "a", "namespace": "other"}}) == set()


def test_an_endpoint_slice_wakes_its_origin_and_offloading_peers_when_endpoints_move() -> None:
    f = world()
    reflected = {
        "kind": "EndpointSlice",
        "metadata": {"name": "api", "namespace": "shop-rome", "labels": {"offloading.liqo.io/origin": "rome"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.71.1.1"]}],
    }
    assert keys(f, "EndpointSlice", None, reflected) == {ROME}
    assert keys(f, "EndpointSlice", reflected, changed(reflected, metadata__annotations={"a": "b"})) == set()
    moved = changed(reflected, endpoints=[{"addresses": ["10.71.1.2"]}])
    assert keys(f, "EndpointSlice", reflected, moved) == {ROME}
    local = {"kind": "EndpointSlice", "metadata": {"name": "api", "namespace": "apps"}, "endpoints": []}
    assert keys(f, "EndpointSlice", None, local) == {MILAN}


def test_only_the_firewall_crd_wakes_every_peering() -> None:
    f = world()
    assert keys(f, "CustomResourceDefinition", None, {"metadata": {"name": FIREWALL_CRD_NAME}}) == {ROME, MILAN, PARIS}
    assert keys(f, "CustomResourceDefinition", None, {"metadata": {"name": "widgets.example.com"}}) == set()


def test_no_object_no_keys() -> None:
    f = world()
    assert KeyMapper(f.view).keys(mapping.pod_keys, None, None) == set()
    assert Change(None, None).objs == [] and Change({"a": 1}, None).both is None
