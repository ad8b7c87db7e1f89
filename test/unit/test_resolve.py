"""Group resolution: every group of docs/semantics.md ("Groups") from the places Liqo keeps its facts."""

from __future__ import annotations

from typing import Any

from liqosec.firewall.addresses import AddressSet
from liqosec.groups.readers import pod_addresses
from liqosec.groups.resolve import (
    OFFLOADED_SERVICE_BACKENDS,
    OUTSIDE_POD_CIDRS,
    REFLECTED_SERVICE_BACKENDS,
    ResolvedGroups,
    internet,
    peer_of_namespace,
    resolve_groups,
    tenant_namespace_problem,
)
from liqosec.groups.view import RemapPending, Snapshot

TENANT = "liqo-tenant-rome"


def obj(kind: str, name: str, namespace: str = "", labels: dict[str, str] | None = None, **rest: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": labels or {}}
    if namespace:
        meta["namespace"] = namespace
    return {"kind": kind, "metadata": meta, **rest}


def pod(
    name: str, ip: str | None, namespace: str = "app", labels: dict[str, str] | None = None, **spec: Any
) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": spec.pop("phase", "Running")}
    if ip:
        status["podIP"] = ip
        status["podIPs"] = [{"ip": ip}]
    return obj("Pod", name, namespace, labels, spec=spec, status=status)


def groups(*objects: dict[str, Any], peer: str = "rome", namespaces: tuple[str, ...] = ()) -> ResolvedGroups:
    return resolve_groups(Snapshot(objects), peer, f"liqo-tenant-{peer}", namespaces=namespaces)


def values(g: ResolvedGroups, term: str) -> list[str]:
    return g.get(term).values()


LOCAL_NET = obj("Network", "pod-cidr", "liqo", {"ipam.liqo.io/network-type": "pod-cidr"}, spec={"cidr": "10.1.0.0/16"})


TENANT_LABELS = {"liqo.io/remote-cluster-id": "rome", "liqo.io/tenant-namespace": "true"}


def test_a_tenant_namespace_is_what_liqo_labels_so_whatever_its_name() -> None:
    ns = obj("Namespace", "liqo-tenant-old-name", labels=TENANT_LABELS)
    assert peer_of_namespace(Snapshot([ns]), "liqo-tenant-old-name") == "rome"


def test_a_namespace_liqo_made_for_offloaded_workloads_is_not_a_tenant_namespace() -> None:
    # Liqo labels the namespaces it creates on a provider for a consumer's workloads with the
    # consumer's id alone (namespacemap-controller/enforcement.go): no policy may live there.
    offloaded = obj("Namespace", "shop-rome", labels={"liqo.io/remote-cluster-id": "rome"})
    view = Snapshot([offloaded])
    assert peer_of_namespace(view, "shop-rome") is None
    problem = tenant_namespace_problem(view, "shop-rome")
    assert problem is not None
    assert "'shop-rome'" in problem and "lacks liqo.io/tenant-namespace" in problem
    assert "offloaded workloads" in problem


def test_a_namespace_named_like_a_tenant_but_unlabelled_is_not_one() -> None:
    view = Snapshot([obj("Namespace", "liqo-tenant-milan")])
    assert peer_of_namespace(view, "liqo-tenant-milan") is None
    problem = tenant_namespace_problem(view, "liqo-tenant-milan")
    assert problem is not None and "lacks liqo.io/tenant-namespace and liqo.io/remote-cluster-id" in problem


def test_without_namespace_objects_a_dump_is_read_by_liqos_naming() -> None:
    assert peer_of_namespace(Snapshot([]), "liqo-tenant-milan") == "milan"
    assert tenant_namespace_problem(Snapshot([]), "liqo-tenant-milan") is None


def test_other_namespaces_belong_to_no_peering() -> None:
    assert peer_of_namespace(Snapshot([]), "default") is None
    assert peer_of_namespace(Snapshot([]), "liqo-tenant-") is None


def test_local_pod_cidr_from_network_outside_tenant_namespaces() -> None:
    stray = obj("Network", "x", TENANT, {"ipam.liqo.io/network-type": "pod-cidr"}, spec={"cidr": "10.9.0.0/16"})
    assert values(groups(LOCAL_NET, stray), "local-cluster") == ["10.1.0.0/16"]


def test_remote_pod_cidr_is_the_remapped_status_never_the_spec() -> None:
    conf = obj(
        "Configuration",
        "rome",
        TENANT,
        spec={"remote": {"cidr": {"pod": ["10.1.0.0/16"]}}},
        status={"remote": {"cidr": {"pod": ["10.71.0.0/16"]}}},
    )
    assert values(groups(conf), "remote-cluster") == ["10.71.0.0/16"]


def test_remote_pod_cidr_falls_back_to_tenant_networks_status() -> None:
    conf = obj("Configuration", "rome", TENANT, spec={"remote": {"cidr": {"pod": ["10.1.0.0/16"]}}}, status={})
    net = obj(
        "Network",
        "rome-pod-10-1-0-0-16",
        TENANT,
        {"configuration.liqo.io/cidr-type": "pod"},
        spec={"cidr": "10.1.0.0/16"},
        status={"cidr": "10.72.0.0/16"},
    )
    elsewhere = obj(
        "Network",
        "milan-pod",
        "liqo-tenant-milan",
        {"configuration.liqo.io/cidr-type": "pod"},
        status={"cidr": "10.99.0.0/16"},
    )
    assert values(groups(conf, net, elsewhere), "remote-cluster") == ["10.72.0.0/16"]


def test_offloaded_are_pods_labelled_with_this_origin_only() -> None:
    mine = pod("a", "10.1.5.10", "shop-rome", {"offloading.liqo.io/origin": "rome"})
    theirs = pod("b", "10.1.5.20", "shop-milan", {"offloading.liqo.io/origin": "milan"})
    assert values(groups(mine, theirs), "offloaded") == ["10.1.5.10"]


def test_pods_without_ip_hostnetwork_or_finished_contribute_nothing() -> None:
    origin = {"offloading.liqo.io/origin": "rome"}
    g = groups(
        pod("noip", None, labels=origin),
        pod("host", "10.1.0.5", labels=origin, hostNetwork=True),
        pod("done", "10.1.0.6", labels=origin, phase="Succeeded"),
        pod("failed", "10.1.0.7", labels=origin, phase="Failed"),
        pod("pending", "10.1.0.8", labels=origin, phase="Pending"),
    )
    assert values(g, "offloaded") == ["10.1.0.8"]


def test_ipv6_addresses_are_set_aside_and_counted() -> None:
    p = pod("dual", "10.1.0.9", labels={"offloading.liqo.io/origin": "rome"})
    p["status"]["podIPs"].append({"ip": "fd00::9"})
    g = groups(p)
    assert values(g, "offloaded") == ["10.1.0.9"]
    assert g.ipv6_skipped == 1
    assert pod_addresses({"status": {"podIP": "10.0.0.1"}}) == (["10.0.0.1"], 0)


VNODE = obj("Node", "liqo-rome", labels={"liqo.io/type": "virtual-node", "liqo.io/remote-cluster-id": "rome"})
OTHER_VNODE = obj("Node", "liqo-milan", labels={"liqo.io/type": "virtual-node", "liqo.io/remote-cluster-id": "milan"})
SHADOW = {"liqo.io/shadowPod": "true"}


def test_vc_remote_are_shadow_pods_on_this_peers_virtual_nodes() -> None:
    g = groups(
        VNODE,
        OTHER_VNODE,
        pod("s1", "10.71.0.5", "shop", SHADOW, nodeName="liqo-rome"),
        pod("s2", "10.80.0.5", "shop", SHADOW, nodeName="liqo-milan"),
        pod("local", "10.1.0.5", "shop", nodeName="worker"),
    )
    assert values(g, "vc-remote") == ["10.71.0.5"]


def test_virtual_node_named_after_the_peer_is_the_fallback() -> None:
    g = groups(pod("s1", "10.71.0.5", "shop", SHADOW, nodeName="rome"))
    assert values(g, "vc-remote") == ["10.71.0.5"]


def offloading(namespace: str, *peers: str, name: str = "offloading", excluded: tuple[str, ...] = ()) -> dict[str, Any]:
    """A NamespaceOffloading's status as Liqo writes it: a key for every peered provider, picked or not."""
    picked = [
        {"type": "OffloadingRequired", "status": "True", "reason": "ClusterSelected"},
        {"type": "Ready", "status": "True"},
    ]
    left_out = [{"type": "OffloadingRequired", "status": "False", "reason": "ClusterNotSelected"}]
    conditions = {p: picked for p in peers} | {p: left_out for p in excluded}
    return obj("NamespaceOffloading", name, namespace, status={"remoteNamespacesConditions": conditions})


def test_vc_local_are_local_pods_of_namespaces_offloaded_to_the_peer() -> None:
    g = groups(
        VNODE,
        OTHER_VNODE,
        offloading("shop", "rome"),
        offloading("blog", "milan"),
        offloading("wiki", "rome", name="not-the-liqo-one"),
        pod("front", "10.1.1.1", "shop", nodeName="worker"),
        pod("mine-shadow", "10.71.0.5", "shop", SHADOW, nodeName="liqo-rome"),
        pod("other-shadow", "10.80.0.5", "shop", SHADOW, nodeName="liqo-milan"),
        pod("blogpod", "10.1.2.2", "blog", nodeName="worker"),
        pod("wikipod", "10.1.3.3", "wiki", nodeName="worker"),
    )
    assert values(g, "vc-local") == ["10.1.1.1"]
    assert values(g, "vc-remote") == ["10.71.0.5"]


def test_namespace_party_includes_shadow_pods() -> None:
    g = groups(
        VNODE,
        pod("front", "10.1.1.1", "shop"),
        pod("shadow", "10.71.0.5", "shop", SHADOW, nodeName="liqo-rome"),
        pod("elsewhere", "10.1.9.9", "blog"),
        namespaces=("shop",),
    )
    assert values(g, "namespace:shop") == ["10.1.1.1", "10.71.0.5"]


def test_private_subnets_are_rfc1918() -> None:
    assert values(groups(), "private-subnets") == ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]


def test_offloaded_service_backends_come_from_services_in_offloaded_namespaces() -> None:
    svc = obj("Service", "api", "shop")
    slice_ = obj(
        "EndpointSlice", "api-x", "shop", {"kubernetes.io/service-name": "api"}, endpoints=[{"addresses": ["10.1.1.1"]}]
    )
    orphan = obj(
        "EndpointSlice",
        "gone-x",
        "shop",
        {"kubernetes.io/service-name": "gone"},
        endpoints=[{"addresses": ["10.1.1.2"]}],
    )
    not_offloaded = obj(
        "EndpointSlice", "b-x", "blog", {"kubernetes.io/service-name": "b"}, endpoints=[{"addresses": ["10.1.2.2"]}]
    )
    g = groups(offloading("shop", "rome"), svc, slice_, orphan, not_offloaded, obj("Service", "b", "blog"))
    assert values(g, OFFLOADED_SERVICE_BACKENDS) == ["10.1.1.1"]


def test_reflected_service_backends_are_slices_labelled_with_the_origin() -> None:
    mine = obj(
        "EndpointSlice",
        "r",
        "shop-rome",
        {"offloading.liqo.io/origin": "rome"},
        endpoints=[{"addresses": ["10.71.1.1"]}],
    )
    theirs = obj(
        "EndpointSlice",
        "m",
        "shop-milan",
        {"offloading.liqo.io/origin": "milan"},
        endpoints=[{"addresses": ["10.80.1.1"]}],
    )
    assert values(groups(mine, theirs), REFLECTED_SERVICE_BACKENDS) == ["10.71.1.1"]


def test_outside_pod_cidrs_is_everything_but_local_and_remote() -> None:
    conf = obj("Configuration", "rome", TENANT, status={"remote": {"cidr": {"pod": ["10.71.0.0/16"]}}})
    g = groups(LOCAL_NET, conf)
    outside = g.get(OUTSIDE_POD_CIDRS)
    assert "8.8.8.8" in outside and "10.2.0.1" in outside
    assert "10.1.0.1" not in outside and "10.71.3.3" not in outside


def test_peer_space_is_remote_offloaded_and_vc_remote() -> None:
    conf = obj("Configuration", "rome", TENANT, status={"remote": {"cidr": {"pod": ["10.71.0.0/16"]}}})
    g = groups(LOCAL_NET, conf, pod("o", "10.1.5.5", labels={"offloading.liqo.io/origin": "rome"}))
    assert g.peer_space == AddressSet.of(["10.71.0.0/16", "10.1.5.5"])


def test_vc_local_leaves_out_namespaces_the_cluster_selector_did_not_offload_to_the_peer() -> None:
    # Liqo keeps a key for every provider, with OffloadingRequired=False / ClusterNotSelected for the
    # ones the ClusterSelector excludes (namespaceoffloading-controller/status.go).
    g = groups(
        VNODE,
        offloading("shop", "milan", excluded=("rome",)),
        offloading("blog", "rome", excluded=("milan",)),
        pod("front", "10.1.1.1", "shop", nodeName="worker"),
        pod("post", "10.1.2.2", "blog", nodeName="worker"),
    )
    assert values(g, "vc-local") == ["10.1.2.2"]
    assert (
        values(groups(offloading("shop", "milan", excluded=("rome",)), pod("f", "10.1.1.1", "shop")), "vc-local") == []
    )


def conf(peer: str, status: dict[str, Any] | None, spec: dict[str, Any] | None = None) -> dict[str, Any]:
    spec = spec or {"pod": ["10.1.0.0/16"], "external": ["10.201.0.0/16"]}
    return obj(
        "Configuration",
        peer,
        f"liqo-tenant-{peer}",
        spec={"remote": {"cidr": spec}},
        status={} if status is None else {"remote": {"cidr": status}},
    )


def test_remote_cluster_holds_the_peers_masquerade_source_the_first_remapped_external_address() -> None:
    # Liqo SNATs the peer's non-pod traffic (all of it with full masquerade) to the first address of
    # its external CIDR; here that is the first address of the external CIDR as remapped here.
    g = groups(conf("rome", {"pod": ["10.71.0.0/16"], "external": ["10.80.0.0/16", "10.90.0.0/16"]}))
    assert values(g, "remote-cluster") == ["10.71.0.0/16", "10.80.0.0"]
    assert "10.80.0.0" in g.peer_space
    assert "10.80.0.1" not in g.peer_space
    assert "10.80.0.0" not in g.get(OUTSIDE_POD_CIDRS)  # the peer's cluster, not the outside world


def test_a_pending_remap_makes_the_peering_wait_naming_the_field() -> None:
    for status in (
        {"pod": [""], "external": ["10.72.0.0/16"]},
        {"pod": ["10.71.0.0/16"], "external": [""]},
        {"pod": ["10.71.0.0/16"], "external": []},
    ):
        try:
            groups(conf("rome", status))
        except RemapPending as err:
            assert err.ref.kind == "Configuration" and err.path.startswith("status.remote.cidr.")
            assert "not remapped" in err.message
        else:
            raise AssertionError(f"{status} did not wait")


def test_before_liqos_first_remap_the_peering_waits() -> None:
    # Liqo's CRD types the remapped CIDRs `format: cidr`: the API server refuses a status holding "",
    # so before the first remap a real Configuration has no status.remote at all.
    try:
        groups(conf("rome", None))
    except RemapPending as err:
        assert err.path == "status.remote.cidr.pod" and "10.1.0.0/16" in err.message
    else:
        raise AssertionError("a Configuration never remapped did not wait")


def test_liqos_remap_condition_behind_the_spec_makes_the_peering_wait() -> None:
    remapped = {"pod": ["10.71.0.0/16"], "external": ["10.80.0.0/16"]}
    stale = conf("rome", remapped)
    stale["metadata"]["generation"] = 3
    stale["status"]["conditions"] = [{"type": "NetworkCIDRsConfigured", "status": "True", "observedGeneration": 2}]
    try:
        groups(stale)
    except RemapPending as err:
        assert err.path == "status.conditions[0]" and "generation 2, the spec is at 3" in err.message
    else:
        raise AssertionError("a remap behind the spec did not wait")
    stale["status"]["conditions"][0]["observedGeneration"] = 3
    assert values(groups(stale), "remote-cluster") == ["10.71.0.0/16", "10.80.0.0"]


def test_another_peers_pending_remap_does_not_stop_internet() -> None:
    pending = conf("milan", {"pod": [""], "external": [""]})
    done = conf("rome", {"pod": ["10.71.0.0/16"], "external": ["10.80.0.0/16"]})
    view = Snapshot([pending, done])
    assert "10.80.0.0" not in internet(view) and "10.80.255.255" not in internet(view)
    g = resolve_groups(view, "rome", "liqo-tenant-rome", named=["internet"])
    assert values(g, "remote-cluster") == ["10.71.0.0/16", "10.80.0.0"]
