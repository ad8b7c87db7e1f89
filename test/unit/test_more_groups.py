"""The groups `internet`, `nameserver` and `leaf`, and IPv6 honesty: resolution, policy, controller, CLI.

docs/semantics.md, "Groups" and "IPv6". Every expectation is what a user would see: the
addresses a rule names, the FirewallConfiguration's verdicts, the status, the command's output.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from fake_kube import Fixture, cluster, dns_slice, endpoint_slice, key, node, peering, pod, ref_of

from harness.reconciling import converge
from liqosec.api.validation import ValidationError, parse_peering_connectivity
from liqosec.cli import main
from liqosec.compiler import ipv6
from liqosec.controller import mapping
from liqosec.controller.mapping import KeyMapper
from liqosec.controller.resources import watched_resources
from liqosec.explain import explain
from liqosec.groups.resolve import ResolvedGroups, resolve_groups
from liqosec.groups.view import ClusterStateError, Snapshot
from liqosec.inputs import load_objects
from liqosec.matrix import build_matrix
from liqosec.offline import outcomes

Obj = dict[str, Any]
TENANT = "liqo-tenant-rome"


def obj(kind: str, name: str, namespace: str = "", labels: dict[str, str] | None = None, **rest: Any) -> Obj:
    meta: Obj = {"name": name, "labels": labels or {}}
    if namespace:
        meta["namespace"] = namespace
    return {"kind": kind, "metadata": meta, **rest}


def network(name: str, ns: str, label: tuple[str, str], *, spec: str | None = None, status: str | None = None) -> Obj:
    return obj(
        "Network",
        name,
        ns,
        {label[0]: label[1]},
        spec={"cidr": spec} if spec else {},
        status={"cidr": status} if status else {},
    )


def conf(peer: str, *, pod_cidrs: list[str], external: list[str], spec_external: list[str] | None = None) -> Obj:
    return obj(
        "Configuration",
        peer,
        f"liqo-tenant-{peer}",
        spec={"remote": {"cidr": {"pod": ["10.200.0.0/16"], "external": spec_external or ["10.201.0.0/16"]}}},
        status={"remote": {"cidr": {"pod": pod_cidrs, "external": external}}},
    )


def resolve(*objects: Obj, named: tuple[str, ...] = (), peer: str = "rome") -> ResolvedGroups:
    return resolve_groups(Snapshot(objects), peer, f"liqo-tenant-{peer}", named=named)


LOCAL = network("pod-cidr", "liqo", ("ipam.liqo.io/network-type", "pod-cidr"), spec="10.1.0.0/16")
ROME = conf("rome", pod_cidrs=["10.71.0.0/16"], external=["10.72.0.0/16"])


# ----- internet -----
def test_internet_is_public_space_outside_every_cidr_of_the_cluster() -> None:
    public_pods = network("pod-cidr", "liqo", ("ipam.liqo.io/network-type", "pod-cidr"), spec="20.1.0.0/16")
    services = network("service-cidr", "liqo", ("ipam.liqo.io/network-type", "service-cidr"), spec="30.96.0.0/12")
    milan = conf("milan", pod_cidrs=["40.71.0.0/16"], external=["40.72.0.0/16"])
    worker = {**node("worker-1"), "spec": {"podCIDRs": ["50.1.0.0/24"]}}
    g = resolve(public_pods, services, ROME, milan, worker, named=("internet",)).get("internet")
    for public in ("8.8.8.8", "1.1.1.1", "198.51.100.10", "20.2.0.1", "40.73.0.1"):
        assert public in g, public
    for cluster_address in ("20.1.0.5", "30.100.0.1", "40.71.0.9", "40.72.255.255", "50.1.0.7"):
        assert cluster_address not in g, cluster_address
    for special in ("10.9.9.9", "172.20.0.1", "192.168.1.1", "100.64.0.1", "127.0.0.1", "169.254.169.254"):
        assert special not in g, special
    for special in ("224.0.0.251", "255.255.255.255", "0.0.0.0", "198.18.0.1"):
        assert special not in g, special


def test_on_demand_groups_are_resolved_only_for_a_policy_naming_them() -> None:
    unnamed = resolve(LOCAL, ROME)
    assert {"internet", "nameserver", "leaf"}.isdisjoint(unnamed.sets)
    assert {"internet", "nameserver", "leaf"}.isdisjoint(unnamed.counts())  # the status reads as before
    named = resolve(LOCAL, ROME, named=("leaf", None))
    assert named.get("leaf").values() == ["10.72.0.0/16"] and "internet" not in named.sets


# ----- nameserver -----
def test_nameserver_is_the_kube_dns_endpoints_only() -> None:
    g = resolve(
        dns_slice("kube-dns-a", "10.1.0.53", "10.1.0.54"),
        dns_slice("kube-dns-b", "10.1.3.53"),
        endpoint_slice("metrics-server-x", "kube-system", "metrics-server", "10.1.0.80"),
        endpoint_slice("kube-dns-elsewhere", "default", "kube-dns", "10.1.9.53"),
        named=("nameserver",),
    )
    assert g.get("nameserver").values() == ["10.1.0.53-10.1.0.54", "10.1.3.53"]


def test_without_kube_dns_endpoints_nameserver_is_empty() -> None:
    assert not resolve(LOCAL, named=("nameserver",)).get("nameserver")


def test_ipv6_dns_endpoints_are_named_not_enforced() -> None:
    g = resolve(dns_slice("kube-dns-v6", "fd00::53", address_type="IPv6"), named=("nameserver",))
    assert not g.get("nameserver") and g.ipv6_skipped == 1
    (member,) = g.ipv6_members(["nameserver"])
    assert str(member) == "EndpointSlice kube-system/kube-dns-v6 (fd00::53)"


# ----- leaf -----
def test_leaf_is_the_peers_external_cidr_as_remapped_here_never_its_own() -> None:
    g = resolve(ROME, conf("milan", pod_cidrs=["10.81.0.0/16"], external=["10.82.0.0/16"]), named=("leaf",))
    assert g.get("leaf").values() == ["10.72.0.0/16"]  # status, not spec's 10.201.0.0/16; not milan's


def test_leaf_falls_back_to_the_tenant_networks_of_type_external() -> None:
    bare = conf("rome", pod_cidrs=[], external=[])
    del bare["status"]
    ext = network("rome-ext", TENANT, ("configuration.liqo.io/cidr-type", "external"), spec="10.201.0.0/16")
    ext["status"] = {"cidr": "10.73.0.0/16"}
    other = network("milan-ext", "liqo-tenant-milan", ("configuration.liqo.io/cidr-type", "external"))
    other["status"] = {"cidr": "10.83.0.0/16"}
    pod = network("rome-pod", TENANT, ("configuration.liqo.io/cidr-type", "pod"), spec="10.200.0.0/16")
    pod["status"] = {"cidr": "10.72.0.0/16"}  # Liqo keeps both kinds of Network; without them it waits
    assert resolve(bare, ext, other, pod, named=("leaf",)).get("leaf").values() == ["10.73.0.0/16"]


def test_a_malformed_external_cidr_names_the_object_and_field() -> None:
    bad = conf("rome", pod_cidrs=["10.71.0.0/16"], external=["10.72.0.5/16"])
    with pytest.raises(ClusterStateError) as err:
        resolve(bad, named=("leaf",))
    assert str(err.value) == (
        "Configuration liqo-tenant-rome/rome: status.remote.cidr.external[0]: "
        "'10.72.0.5/16' has host bits set; the network is 10.72.0.0/16"
    )


# ----- the API -----
@pytest.mark.parametrize("group", ["internet", "nameserver", "leaf"])
def test_the_new_groups_parse(group: str) -> None:
    spec = {"rules": [{"source": {"group": "offloaded"}, "destination": {"group": group}, "action": "allow"}]}
    pc = parse_peering_connectivity({"metadata": {"name": "rome", "namespace": TENANT}, "spec": spec})
    assert pc.spec.rules[0].destination.describe() == group


def test_an_unknown_group_lists_the_new_ones() -> None:
    spec = {"rules": [{"destination": {"group": "dns"}}]}
    with pytest.raises(ValidationError) as err:
        parse_peering_connectivity({"metadata": {"name": "rome", "namespace": TENANT}, "spec": spec})
    assert "spec.rules[0].destination.group: unknown group 'dns'" in str(err.value)
    assert '"internet", "nameserver", "leaf"' in str(err.value)


# ----- a policy using them, through the compiled firewall -----
HERE = Path(__file__).resolve().parent
POLICY_RULES = [
    {"source": {"group": "offloaded"}, "destination": {"group": "nameserver"}, "action": "allow"},
    {"source": {"group": "offloaded"}, "destination": {"group": "leaf"}, "action": "allow"},
    {"source": {"group": "offloaded"}, "destination": {"group": "internet"}, "action": "deny"},
    {"source": {"group": "offloaded"}, "destination": {"group": "remote-cluster"}, "action": "allow"},
    {"source": {"group": "remote-cluster"}, "destination": {"group": "offloaded"}, "action": "allow"},
    {"source": {"group": "nameserver"}, "destination": {"group": "offloaded"}, "action": "allow"},
    {"source": {"group": "offloaded"}, "action": "deny"},
]


def world(*extra: Obj) -> list[Obj]:
    """A provider: rome offloaded cart-0 here; CoreDNS runs in kube-system; rome's leaf CIDR 10.72.0.0/16."""
    return [
        {
            **obj(
                "Namespace", TENANT, labels={"liqo.io/remote-cluster-id": "rome", "liqo.io/tenant-namespace": "true"}
            ),
            "apiVersion": "v1",
        },
        {**LOCAL, "apiVersion": "ipam.liqo.io/v1alpha1"},
        {**ROME, "apiVersion": "networking.liqo.io/v1beta1"},
        pod("web", "default", "10.1.1.10"),
        pod("coredns-0", "kube-system", "10.1.0.53"),
        dns_slice("kube-dns-a", "10.1.0.53"),
        pod("cart-0", "shop-rome", "10.1.5.10", origin="rome"),
        peering("rome", TENANT, copy.deepcopy(POLICY_RULES)),
        *extra,
    ]


def test_the_compiled_firewall_enforces_the_new_groups() -> None:
    m = build_matrix(world())
    cart, dns, web = "10.1.5.10", "10.1.0.53", "10.1.1.10"
    assert m.connect(cart, dns)  # offloaded -> nameserver, and its replies
    assert m.connect(cart, "10.72.4.4")  # offloaded -> leaf
    assert not m.packet(cart, "8.8.8.8") and not m.packet(cart, "198.51.100.10")  # offloaded -> internet
    assert m.connect(cart, "10.71.0.9")  # the peer's pods
    assert not m.packet(cart, web)  # the rest
    assert m.connect(web, "8.8.8.8")  # not the peering's traffic
    labels = {e.name: e.groups for e in m.endpoints}
    assert "nameserver" in labels["kube-system/coredns-0"] and labels["(internet)"] == ("internet",)
    assert labels["(leaf/rome)"] == ("leaf",) and m.connect(
        cart, next(e.ip for e in m.endpoints if e.name == "(leaf/rome)")
    )
    plain = build_matrix([o for o in world() if o["kind"] != "PeeringConnectivity"] + [peering("rome", TENANT, [])])
    assert "(leaf/rome)" not in {e.name for e in plain.endpoints}  # no rule names leaf: the matrix as before
    assert {e.name: e.groups for e in plain.endpoints}["(internet)"] == ()


def test_explain_names_the_deciding_rule_of_every_cell_as_the_matrix_says() -> None:
    objects = world()
    results = outcomes(objects)
    m = build_matrix(objects)
    for a in m.endpoints:
        for b in m.endpoints:
            if a is b:
                continue
            x = explain(
                objects, a.name if a.kind == "pod" else a.ip, b.name if b.kind == "pod" else b.ip, results=results
            )
            assert x.opens == m.connect(a.ip, b.ip), (a.name, b.name)
            assert x.request.agrees and x.reply_by_address.agrees
            assert [g for g in x.destination.groups if g != "private-subnets"] == list(b.groups)
    x = explain(objects, "shop-rome/cart-0", "8.8.8.8", results=results)
    assert x.request.decision.origin == "spec.rules[2]" and x.destination.groups == ("internet",)
    assert x.request.enforcement.rule is not None and not x.request.passes


def test_a_dns_endpoint_change_changes_the_firewall() -> None:
    before = outcomes(world())[0]
    moved = [o for o in world() if o["kind"] != "EndpointSlice"] + [dns_slice("kube-dns-a", "10.1.0.99")]
    after = outcomes(moved)[0]
    assert before.firewall["spec"] != after.firewall["spec"]
    assert "10.1.0.99" in after.groups.get("nameserver") and "10.1.0.53" not in after.groups.get("nameserver")


# ----- IPv6 honesty -----
def dual(name: str, ns: str, v4: str, v6: str, **kw: Any) -> Obj:
    p = pod(name, ns, v4, **kw)
    p["status"]["podIPs"].append({"ip": v6})
    return p


def v6_only(name: str, ns: str, v6: str, **kw: Any) -> Obj:
    return pod(name, ns, v6, **kw)


def test_ipv6_pods_are_named_for_the_groups_a_policy_covers() -> None:
    objects = world(
        dual("cart-1", "shop-rome", "10.1.5.11", "fd00::5:11", origin="rome"),
        v6_only("cart-2", "shop-rome", "fd00::5:12", origin="rome"),
        dual("web-6", "default", "10.1.1.11", "fd00::1:11"),  # in no group the policy names
    )
    (o,) = outcomes(objects)
    names = [str(m) for m in ipv6.unfiltered(o)]
    assert names == ["shop-rome/cart-1 (fd00::5:11)", "shop-rome/cart-2 (fd00::5:12)"]
    assert ipv6.describe(ipv6.unfiltered(o)).startswith("2 pods of this policy's groups hold IPv6 addresses")
    assert "10.1.5.11" in o.groups.get("offloaded")  # the IPv4 address is enforced as before


def test_a_namespace_party_covers_its_ipv6_pods_and_the_message_is_bounded() -> None:
    pods = [dual(f"job-{i}", "batch", f"10.1.7.{i}", f"fd00::7:{i}") for i in range(8)]
    rules = [{"source": {"namespace": "batch"}, "destination": {"group": "remote-cluster"}, "action": "deny"}]
    objects = [o for o in world(*pods) if o["kind"] != "PeeringConnectivity"] + [peering("rome", TENANT, rules)]
    text = ipv6.describe(ipv6.unfiltered(outcomes(objects)[0]))
    assert text.startswith("8 pods of this policy's groups hold IPv6 addresses")
    assert "batch/job-0 (fd00::7:0)" in text and text.endswith("and 3 more") and "batch/job-7" not in text


def ipv6_condition(f: Fixture, peer: str = "rome") -> dict[str, Any] | None:
    from liqosec.controller.resources import PEERING_CONNECTIVITIES as PCS

    stored = f.client.stored(PCS, peer, f"liqo-tenant-{peer}")
    assert stored is not None
    found = [c for c in (stored.get("status") or {}).get("conditions") or () if c["type"] == "IPv6Unfiltered"]
    return found[0] if found else None


def test_the_status_names_ipv6_pods_left_unfiltered_and_forgets_them_when_gone() -> None:
    f = Fixture(cluster("rome"))
    converge(f, key("rome"))
    assert ipv6_condition(f) is None  # no IPv6 pod: the status reads as it always did
    f.seed(dual("rome-1", "shop-rome", "10.1.10.11", "fd00::a:11", origin="rome"))
    converge(f, key("rome"))
    c = ipv6_condition(f)
    assert c is not None and c["status"] == "True" and c["reason"] == "IPv6PodsUnfiltered"
    assert "1 pod of this policy's groups holds IPv6 addresses" in c["message"]
    assert "shop-rome/rome-1 (fd00::a:11)" in c["message"] and "Liqo v1.2.0" in c["message"]
    assert [a for a in f.reconcile(key("rome")) if a.write] == []  # said once: nothing to write again
    f.client.remove(ref_of("Pod"), "rome-1", "shop-rome")
    f.sync()
    converge(f, key("rome"))
    assert ipv6_condition(f) is None


# ----- waking the right peerings -----
def mapper_keys(f: Fixture, kind: str, old: Obj | None, new: Obj | None) -> set[str]:
    store = f.stores[kind]
    mapper = {w.kind: w.mapper for w in watched_resources()}[kind]
    return KeyMapper(f.view).keys(mapper, old and store.transform(old), new and store.transform(new))


def without_milans_policy() -> list[Obj]:
    """rome and milan; rome's policy isolates, milan's comes from the test."""
    return [
        o
        for o in cluster("rome", "milan")
        if not (o["kind"] == "PeeringConnectivity" and o["metadata"]["name"] == "milan")
    ]


def naming(group: str) -> list[Obj]:
    rule = [{"source": {"group": "offloaded"}, "destination": {"group": group}, "action": "deny"}]
    return [peering("milan", "liqo-tenant-milan", rule)]


def test_a_kube_dns_slice_wakes_only_the_peerings_naming_nameserver() -> None:
    objs = without_milans_policy()
    f = Fixture([*objs, *naming("nameserver")])
    slice_ = dns_slice("kube-dns-a", "10.1.0.53")
    assert mapper_keys(f, "EndpointSlice", None, slice_) == {key("milan")}
    moved = copy.deepcopy(slice_)
    moved["endpoints"] = [{"addresses": ["10.1.0.54"]}]
    assert mapper_keys(f, "EndpointSlice", slice_, moved) == {key("milan")}
    assert mapper_keys(f, "EndpointSlice", slice_, copy.deepcopy(slice_)) == set()  # nothing read changed
    other = endpoint_slice("metrics-a", "kube-system", "metrics-server", "10.1.0.80")
    assert mapper_keys(f, "EndpointSlice", None, other) == set()


def test_another_peers_configuration_wakes_the_peerings_naming_internet() -> None:
    objs = without_milans_policy()
    f = Fixture([*objs, *naming("internet")])
    rome_conf = next(o for o in objs if o["kind"] == "Configuration" and o["metadata"]["name"] == "rome")
    changed = copy.deepcopy(rome_conf)
    changed["status"]["remote"]["cidr"]["pod"] = ["40.71.0.0/16"]
    assert mapper_keys(f, "Configuration", rome_conf, changed) == {key("rome"), key("milan")}
    f2 = Fixture(cluster("rome", "milan"))  # nobody names internet: only rome's own peering
    assert mapper_keys(f2, "Configuration", rome_conf, changed) == {key("rome")}
    assert mapping.configuration_keys is {w.kind: w.mapper for w in watched_resources()}["Configuration"]


# ----- the command line -----
def write(tmp_path: Path, objects: list[Obj]) -> str:
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump_all(objects))
    return str(path)


def test_render_and_matrix_warn_about_ipv6_pods(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = write(tmp_path, world(dual("cart-1", "shop-rome", "10.1.5.11", "fd00::5:11", origin="rome")))
    assert main(["render", "-f", f]) == 0
    err = capsys.readouterr().err
    assert err.startswith("liqosec render: warning: PeeringConnectivity liqo-tenant-rome/rome: 1 pod")
    assert "shop-rome/cart-1 (fd00::5:11)" in err
    assert main(["matrix", "-f", f]) == 0
    assert "liqosec matrix: warning: PeeringConnectivity liqo-tenant-rome/rome: 1 pod" in capsys.readouterr().err


def test_render_says_nothing_of_ipv6_when_no_pod_holds_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "-f", write(tmp_path, world())]) == 0
    assert capsys.readouterr().err == ""


def test_explain_shows_a_pods_ipv6_addresses_and_refuses_an_ipv6_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = write(
        tmp_path,
        world(
            dual("cart-1", "shop-rome", "10.1.5.11", "fd00::5:11", origin="rome"),
            v6_only("cart-2", "shop-rome", "fd00::5:12", origin="rome"),
        ),
    )
    assert main(["explain", "-f", f, "--from", "shop-rome/cart-1", "--to", "8.8.8.8"]) == 0
    out = capsys.readouterr().out
    assert "  IPv6:      fd00::5:11: its IPv6 packets pass unfiltered" in out
    assert main(["explain", "-f", f, "--from", "shop-rome/cart-1", "--to", "8.8.8.8", "-o", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["from"]["ipv6Unfiltered"] == ["fd00::5:11"] and "ipv6Unfiltered" not in data["to"]
    assert main(["explain", "-f", f, "--from", "shop-rome/cart-2", "--to", "8.8.8.8"]) == 1
    assert "pod shop-rome/cart-2 holds IPv6 addresses only (fd00::5:12)" in capsys.readouterr().err
    assert main(["explain", "-f", f, "--from", "fd00::5:11", "--to", "8.8.8.8"]) == 1
    assert "--from fd00::5:11 is an IPv6 address: no firewall of liqosec judges its packets" in capsys.readouterr().err


def test_the_readme_example_compiles(tmp_path: Path) -> None:
    """The README's example of these groups, with the objects it speaks of."""
    readme = (HERE.parents[1] / "README.md").read_text()
    start = readme.index("# more-groups-example")
    block = readme[start : readme.index("```", start)]
    objects = load_objects([write(tmp_path, world())])
    spec = yaml.safe_load(block)["spec"]
    pc = next(o for o in objects if o["kind"] == "PeeringConnectivity")
    pc["spec"] = spec
    m = build_matrix(objects)
    assert m.connect("10.1.5.10", "10.1.0.53") and not m.packet("10.1.5.10", "8.8.8.8")
