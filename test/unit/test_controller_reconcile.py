"""Every outcome of one reconcile, against a fake API server that records each call (sample-controller's style).

The stores are the real informer stores (`watched_resources()` transforms and
indexes); `Fixture.sync()` plays the informers catching up, so a test decides
whether the reconcile sees a fresh or a stale cache.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fake_kube import (
    ISOLATE,
    Action,
    Fixture,
    cluster,
    configuration,
    fabric_pod,
    key,
    namespace,
    node,
    peering,
    pod,
    ref_of,
    remote_network,
    virtual_node,
    virtual_node_cr,
)

import liqosec.compiler.firewallconfiguration as fcm
from harness.reconciling import converge
from liqosec.controller import reconcile as reconcile_module
from liqosec.controller.resources import FIREWALL_CONFIGURATIONS as FCS
from liqosec.controller.resources import PEERING_CONNECTIVITIES as PCS
from liqosec.controller.status import FIGURES_REFRESH_SECONDS
from liqosec.controller.statuswrites import INVALID_CLUSTER_STATE, MAX_ERROR_CHARS
from liqosec.firewall.capabilities import Capabilities
from liqosec.groups.view import ObjectRef, RemapPending
from liqosec.kube import errors
from liqosec.kube.retry import CONFLICT_RETRIES

ROME, MILAN = "liqo-tenant-rome", "liqo-tenant-milan"


def verbs(actions: list[Action]) -> list[tuple[str, str, str]]:
    return [(a.verb, a.resource, a.name) for a in actions]


def status_of(f: Fixture, name: str, ns: str) -> dict[str, Any]:
    obj = f.client.stored(PCS, name, ns)
    assert obj is not None
    return dict(obj.get("status") or {})


def cond(f: Fixture, name: str, ns: str, type_: str) -> dict[str, Any]:
    found = [c for c in status_of(f, name, ns).get("conditions") or () if c["type"] == type_]
    assert len(found) == 1, f"no single {type_} condition on {ns}/{name}"
    return dict(found[0])


def warnings(f: Fixture) -> list[dict[str, Any]]:
    return [e for e in f.client.events if e["type"] == "Warning"]


def fc_rv(f: Fixture, name: str, ns: str) -> str:
    live = f.client.stored(FCS, name, ns)
    assert live is not None, f"{ns}/{name} does not exist"
    return str(live["metadata"]["resourceVersion"])


# ----- created, updated, no-op -----
def test_the_first_pass_creates_the_firewall_then_says_so() -> None:
    f = Fixture(cluster("rome"))
    actions = f.reconcile(key("rome"))
    assert verbs(actions) == [
        ("create", "firewallconfigurations", "liqosec-rome"),
        ("create_event", "events", ""),
        ("update_status", "peeringconnectivities/status", "rome"),
    ]
    body = actions[0].body
    assert body is not None
    assert body["metadata"]["labels"]["security.liqo.io/peering-connectivity"] == "rome"
    [owner] = body["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("PeeringConnectivity", "rome", True)
    assert owner["uid"] == f.client.stored(PCS, "rome", ROME)["metadata"]["uid"]  # type: ignore[index]
    assert body["spec"]["table"]["name"] == "liqosec-rome"
    assert f.client.events[0]["reason"] == "FirewallCreated" and f.client.events[0]["type"] == "Normal"
    # The cache has not seen the create yet; the create's answer is the firewall as written.
    assert cond(f, "rome", ROME, "Ready")["reason"] == "Applied"
    assert cond(f, "rome", ROME, "Valid")["status"] == "True"
    assert f.metric("liqosec_firewall_writes_total", peering=key("rome"), operation="create") == 1
    assert f.metric("liqosec_status_writes_total", peering=key("rome")) == 1


def test_a_converged_peering_makes_no_call_at_all() -> None:
    f = Fixture(cluster("rome"))
    converge(f, key("rome"))
    assert cond(f, "rome", ROME, "Ready")["status"] == "True"
    noops = f.metric("liqosec_firewall_noop_writes_skipped_total", peering=key("rome"))
    assert f.reconcile(key("rome")) == []  # no write, no read, no Event: everything came from the cache
    assert f.metric("liqosec_firewall_noop_writes_skipped_total", peering=key("rome")) == noops + 1


def test_the_cached_firewall_holds_the_compiled_spec_not_a_copy() -> None:
    f = Fixture(cluster("rome"))
    converge(f, key("rome"))
    name = f"{ROME}/liqosec-rome"
    cached = f.stores["FirewallConfiguration"].get(name)
    assert cached is not None and cached["spec"] is f.desired.spec(name)
    # Someone else's edit is cached as it is, and the next pass writes the compiled spec back.
    live = f.client.stored(FCS, "liqosec-rome", ROME)
    assert live is not None
    live["spec"]["table"]["chains"][0]["priority"] = 5
    f.seed(live)
    cached = f.stores["FirewallConfiguration"].get(name)
    assert cached is not None and cached["spec"] == live["spec"] and cached["spec"] is not f.desired.spec(name)
    assert verbs(f.reconcile(key("rome")))[0] == ("update", "firewallconfigurations", "liqosec-rome")
    f.sync()
    cached = f.stores["FirewallConfiguration"].get(name)
    assert cached is not None and cached["spec"] is f.desired.spec(name)
    # A deleted peering's specs are forgotten.
    f.client.delete(PCS, "rome", namespace=ROME)
    f.sync()
    f.reconcile(key("rome"))
    assert f.desired.spec(name) is None


def test_a_new_pod_updates_the_firewall_and_keeps_what_others_added() -> None:
    f = Fixture(cluster("rome"))
    converge(f, key("rome"))
    live = f.client.stored(FCS, "liqosec-rome", ROME)
    assert live is not None
    live["metadata"]["labels"]["team"] = "net"
    live["metadata"]["ownerReferences"].append({"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": "u-x"})
    f.seed(live)
    f.seed(pod("rome-1", "shop-rome", "10.1.30.30", origin="rome"))
    before = fc_rv(f, "liqosec-rome", ROME)
    actions = f.reconcile(key("rome"))
    assert verbs(actions)[:2] == [("update", "firewallconfigurations", "liqosec-rome"), ("create_event", "events", "")]
    body = actions[0].body
    assert body is not None and body["metadata"]["resourceVersion"] == before
    assert body["metadata"]["labels"]["team"] == "net"
    assert {o["uid"] for o in body["metadata"]["ownerReferences"]} >= {"u-x"}
    assert "10.1.30.30" in str(body["spec"])
    assert f.client.events[-1]["reason"] == "FirewallUpdated"
    assert f.metric("liqosec_firewall_writes_total", peering=key("rome"), operation="update") == 1


def test_ready_counts_the_hosts_liqos_agents_report() -> None:
    f = Fixture([*cluster("rome"), node("n1"), node("n2"), virtual_node("liqo-rome", "rome")])
    converge(f, key("rome"))
    ready = cond(f, "rome", ROME, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "Applying")
    assert status_of(f, "rome", ROME)["appliedNodes"] == "0/2"  # the virtual node runs no agent

    def report(**hosts: str) -> None:
        live = f.client.stored(FCS, "liqosec-rome", ROME)
        assert live is not None
        live["status"] = {"conditions": [{"host": h, "type": "Applied", "status": s} for h, s in hosts.items()]}
        f.seed(live)

    report(n1="True")
    converge(f, key("rome"))
    assert status_of(f, "rome", ROME)["appliedNodes"] == "1/2"
    report(n1="True", n2="True")
    converge(f, key("rome"))
    assert cond(f, "rome", ROME, "Ready")["status"] == "True"
    assert status_of(f, "rome", ROME)["appliedNodes"] == "2/2"
    report(n1="True", n2="False")
    converge(f, key("rome"))
    failed = cond(f, "rome", ROME, "Ready")
    assert failed["reason"] == "ApplyFailed" and "n2" in failed["message"] and "n1" not in failed["message"]


def test_a_pod_change_writes_the_firewall_and_the_status_figures_follow_within_their_refresh() -> None:
    f = Fixture([*cluster("rome"), node("n1"), node("n2")])
    converge(f, key("rome"))
    report(f, "liqosec-rome", n1="True", n2="True")
    converge(f, key("rome"))
    assert cond(f, "rome", ROME, "Ready")["status"] == "True"
    statuses = f.metric("liqosec_status_writes_total", peering=key("rome"))
    offloaded = status_of(f, "rome", ROME)["addresses"]["offloaded"]
    for i in range(3):
        f.seed(pod(f"rome-{i}", "shop-rome", f"10.1.{40 + 3 * i}.9", origin="rome"))
        actions = f.reconcile(key("rome"))
        assert [a for a in verbs(actions) if a[0] != "create_event"] == [
            ("update", "firewallconfigurations", "liqosec-rome")
        ]
        assert f.again is not None and 0 < f.again <= FIGURES_REFRESH_SECONDS  # the figures are due then
        f.sync()  # the watch brings our own write back: nothing more to write
        assert f.reconcile(key("rome")) == []
        f.now += timedelta(seconds=1)
    assert f.metric("liqosec_status_writes_total", peering=key("rome")) == statuses
    # Liqo's agents' reports still say applied (they report their last pass), and the figures catch up.
    assert cond(f, "rome", ROME, "Ready")["status"] == "True"
    f.now += timedelta(seconds=FIGURES_REFRESH_SECONDS)
    assert verbs(f.reconcile(key("rome"))) == [("update_status", "peeringconnectivities/status", "rome")]
    assert status_of(f, "rome", ROME)["addresses"]["offloaded"] > offloaded


def test_a_condition_change_is_written_at_once_with_the_figures() -> None:
    f = Fixture([*cluster("rome"), node("n1"), node("n2")])
    converge(f, key("rome"))
    report(f, "liqosec-rome", n1="True", n2="True")
    converge(f, key("rome"))
    f.seed(pod("rome-0", "shop-rome", "10.1.30.30", origin="rome"))
    converge(f, key("rome"))
    report(f, "liqosec-rome", n1="True", n2="False")  # within the figures' refresh
    converge(f, key("rome"))
    assert cond(f, "rome", ROME, "Ready")["reason"] == "ApplyFailed"
    assert status_of(f, "rome", ROME)["addresses"]["offloaded"] >= 1


# ----- Ready: the hosts are Liqo's fabric pods -----
def report(f: Fixture, fc_name: str, ns: str = ROME, **hosts: str) -> None:
    """Liqo's agents write their per-host Applied condition on a firewall (by host name)."""
    live = f.client.stored(FCS, fc_name, ns)
    assert live is not None, f"{ns}/{fc_name} does not exist"
    live["status"] = {"conditions": [{"host": h, "type": "Applied", "status": s} for h, s in hosts.items()]}
    f.seed(live)


FABRIC_A, FABRIC_B = "liqo-fabric-7xk2p", "liqo-fabric-q9z4m"


def test_ready_counts_fabric_pods_by_the_pod_name_liqos_agent_reports_under() -> None:
    """Liqo v1.2.0's agent writes `host: <its pod's name>`; the node it runs on is what it covers."""
    f = Fixture([*cluster("rome"), node("n1"), node("n2"), fabric_pod(FABRIC_A, "n1"), fabric_pod(FABRIC_B, "n2")])
    converge(f, key("rome"))
    assert status_of(f, "rome", ROME)["appliedNodes"] == "0/2"
    report(f, "liqosec-rome", n1="True", n2="True")  # reports under node names are no fabric pod's
    converge(f, key("rome"))
    assert (cond(f, "rome", ROME, "Ready")["reason"], status_of(f, "rome", ROME)["appliedNodes"]) == ("Applying", "0/2")
    report(f, "liqosec-rome", **{FABRIC_A: "True"})
    converge(f, key("rome"))
    assert cond(f, "rome", ROME, "Ready")["reason"] == "Applying"
    report(f, "liqosec-rome", **{FABRIC_A: "True", FABRIC_B: "True"})
    converge(f, key("rome"))
    ready = cond(f, "rome", ROME, "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "Applied")
    assert status_of(f, "rome", ROME)["appliedNodes"] == "2/2"


def test_a_node_without_a_fabric_pod_is_named_but_does_not_block_ready() -> None:
    """The fabric DaemonSet kept off a node (nodeSelector, taints): nothing is enforced there, and Ready says
    what is, instead of waiting forever for an agent that will never run."""
    f = Fixture([*cluster("rome"), node("n1"), node("edge-1"), node("edge-2"), fabric_pod(FABRIC_A, "n1")])
    converge(f, key("rome"))
    report(f, "liqosec-rome", **{FABRIC_A: "True"})
    converge(f, key("rome"))
    assert cond(f, "rome", ROME, "Ready")["status"] == "True"
    assert status_of(f, "rome", ROME)["appliedNodes"] == "1/1"
    uncovered = cond(f, "rome", ROME, "NodesUnfiltered")
    assert (uncovered["status"], uncovered["reason"]) == ("True", "NodesWithoutFabric")
    assert uncovered["message"].startswith("2 nodes run no Liqo fabric pod")
    assert uncovered["message"].endswith(": edge-1, edge-2")
    f.seed(fabric_pod(FABRIC_B, "edge-1"), fabric_pod("liqo-fabric-c", "edge-2"))
    converge(f, key("rome"))
    assert "NodesUnfiltered" not in {c["type"] for c in status_of(f, "rome", ROME)["conditions"]}
    assert cond(f, "rome", ROME, "Ready")["reason"] == "Applying"  # two more agents to wait for


def test_a_replaced_fabric_pods_stale_report_neither_counts_nor_fails() -> None:
    """No agent removes another host's condition: a deleted fabric pod's Applied stays on the object."""
    f = Fixture([*cluster("rome"), node("n1"), fabric_pod(FABRIC_B, "n1")])
    converge(f, key("rome"))
    report(f, "liqosec-rome", **{FABRIC_A: "False", "liqo-fabric-gone": "True"})
    converge(f, key("rome"))
    ready = cond(f, "rome", ROME, "Ready")
    assert (ready["reason"], status_of(f, "rome", ROME)["appliedNodes"]) == ("Applying", "0/1")
    report(f, "liqosec-rome", **{FABRIC_A: "False", FABRIC_B: "True"})
    converge(f, key("rome"))
    assert cond(f, "rome", ROME, "Ready")["status"] == "True"
    report(f, "liqosec-rome", **{FABRIC_A: "True", FABRIC_B: "False"})
    converge(f, key("rome"))
    failed = cond(f, "rome", ROME, "Ready")
    assert failed["reason"] == "ApplyFailed" and FABRIC_B in failed["message"] and FABRIC_A not in failed["message"]


def test_only_scheduled_unfinished_fabric_pods_on_physical_nodes_are_hosts() -> None:
    unscheduled = fabric_pod("liqo-fabric-pending", "n1", phase="Pending")
    del unscheduled["spec"]["nodeName"]
    f = Fixture(
        [
            *cluster("rome"),
            node("n1"),
            node("n2"),
            virtual_node("liqo-rome", "rome"),
            fabric_pod(FABRIC_A, "n1"),
            fabric_pod("liqo-fabric-done", "n2", phase="Succeeded"),
            fabric_pod("liqo-fabric-virtual", "liqo-rome"),
            unscheduled,
        ]
    )
    converge(f, key("rome"))
    assert status_of(f, "rome", ROME)["appliedNodes"] == "0/1"
    report(f, "liqosec-rome", **{FABRIC_A: "True"})
    converge(f, key("rome"))
    assert cond(f, "rome", ROME, "Ready")["status"] == "True"
    assert cond(f, "rome", ROME, "NodesUnfiltered")["message"].endswith(": n2")  # its fabric pod has finished


def test_per_node_firewalls_wait_for_the_fabric_pod_on_their_node() -> None:
    """Per-node scope: `firewall-unique=<node>` is applied by the agent of the fabric pod running on that node."""
    worker = {**node("worker-1"), "spec": {"podCIDRs": ["10.1.10.0/24"]}}
    other = {**node("worker-2"), "spec": {"podCIDRs": ["10.1.20.0/24"]}}
    f = Fixture(
        [*cluster("rome"), worker, other, fabric_pod(FABRIC_A, "worker-1"), fabric_pod(FABRIC_B, "worker-2")],
        scope=fcm.PER_NODE,
    )
    converge(f, key("rome"))
    mine = fcm.firewall_name("rome", node="worker-1")
    assert [o["metadata"]["name"] for o in f.client.of(FCS)] == [mine]
    report(f, mine, **{FABRIC_B: "True"})  # worker-2's agent does not apply worker-1's firewall
    converge(f, key("rome"))
    assert status_of(f, "rome", ROME)["appliedNodes"] == "1/2"  # worker-2 has no firewall to wait for
    report(f, mine, **{FABRIC_A: "True"})
    converge(f, key("rome"))
    assert cond(f, "rome", ROME, "Ready")["status"] == "True"
    assert status_of(f, "rome", ROME)["appliedNodes"] == "2/2"


def test_conntrack_capability_changes_the_chain_and_the_condition() -> None:
    f = Fixture(cluster("rome"), capabilities=Capabilities(ctstate=True))
    converge(f, key("rome"))
    live = f.client.stored(FCS, "liqosec-rome", ROME)
    assert live is not None and live["spec"]["table"]["chains"][0]["name"] == "peering-filter-ct"
    assert cond(f, "rome", ROME, "StatelessFiltering")["status"] == "False"
    f.capabilities = Capabilities()
    actions = f.reconcile(key("rome"))
    assert ("update", "firewallconfigurations", "liqosec-rome") in verbs(actions)
    f.sync()
    assert cond(f, "rome", ROME, "StatelessFiltering")["reason"] == "NoConntrackMatch"


# ----- conflicts -----
def test_a_stale_cache_gets_409_once_and_the_retry_reads_fresh() -> None:
    f = Fixture(cluster("rome"))
    converge(f, key("rome"))
    f.seed(pod("rome-1", "shop-rome", "10.1.30.30", origin="rome"))
    live = f.client.stored(FCS, "liqosec-rome", ROME)
    assert live is not None
    live["metadata"]["labels"]["team"] = "net"
    f.seed(live, sync=False)  # someone wrote the firewall; our cache has not seen it
    fresh = fc_rv(f, "liqosec-rome", ROME)
    actions = [a for a in f.reconcile(key("rome")) if a.resource == "firewallconfigurations"]
    assert verbs(actions) == [
        ("update", "firewallconfigurations", "liqosec-rome"),
        ("get", "firewallconfigurations", "liqosec-rome"),
        ("update", "firewallconfigurations", "liqosec-rome"),
    ]
    assert actions[0].body is not None and actions[0].body["metadata"]["resourceVersion"] != fresh
    assert actions[2].body is not None and actions[2].body["metadata"]["resourceVersion"] == fresh
    assert actions[2].body["metadata"]["labels"]["team"] == "net"  # the fresh read's addition is kept
    assert f.metric("liqosec_firewall_writes_total", peering=key("rome"), operation="update") == 1


def test_a_pass_run_before_the_echo_of_the_last_write_takes_the_write_for_the_truth() -> None:
    """Queued twice, the peering runs again before the watch brings back what its last pass wrote: the
    write's answer stands in for the cache. No create refused as AlreadyExists, and no status
    taking Ready back to "not written yet" with nothing left to correct it."""
    f = Fixture(cluster("rome"))
    created = f.reconcile(key("rome"))  # no sync after: the caches have seen neither write
    assert ("create", "firewallconfigurations", "liqosec-rome") in verbs(created)
    ready = cond(f, "rome", ROME, "Ready")
    again = f.reconcile(key("rome"))
    assert [a for a in again if a.resource == "firewallconfigurations"] == []
    assert cond(f, "rome", ROME, "Ready") == ready
    f.seed(pod("rome-1", "shop-rome", "10.1.30.30", origin="rome"), sync=False)  # the pod cache alone catches up
    f.stores["Pod"].replace(f.client.of(ref_of("Pod")), f.client.resource_version)
    updated = [a for a in f.reconcile(key("rome")) if a.resource == "firewallconfigurations"]
    assert verbs(updated) == [("update", "firewallconfigurations", "liqosec-rome")]  # no 409 first
    assert "10.1.30.30" in str(f.client.stored(FCS, "liqosec-rome", ROME))


def test_an_injected_status_conflict_is_retried_against_a_fresh_read() -> None:
    f = Fixture(cluster("rome"))
    f.client.fail_once("update_status", PCS, errors.Conflict(409, "Conflict", "modified"))
    actions = [a for a in f.reconcile(key("rome")) if a.resource.startswith("peeringconnectivities")]
    assert verbs(actions) == [
        ("update_status", "peeringconnectivities/status", "rome"),
        ("get", "peeringconnectivities", "rome"),
        ("update_status", "peeringconnectivities/status", "rome"),
    ]
    assert cond(f, "rome", ROME, "Valid")["status"] == "True"


def test_conflicts_past_the_budget_go_back_to_the_worker() -> None:
    f = Fixture(cluster("rome"))
    converge(f, key("rome"))
    f.seed(pod("rome-1", "shop-rome", "10.1.30.30", origin="rome"))
    for _ in range(CONFLICT_RETRIES):
        f.client.fail_once("update", FCS, errors.Conflict(409, "Conflict", "modified"))
    with pytest.raises(errors.Conflict, match="kept changing"):
        f.reconcile(key("rome"))
    fc_calls = [a.verb for a in f.client.actions[-2 * CONFLICT_RETRIES :]]
    assert fc_calls == ["update", "get"] * CONFLICT_RETRIES
    assert f.client.events[-1]["reason"] == "FirewallCreated"  # nothing claimed an update


def test_a_create_racing_another_writer_becomes_an_update() -> None:
    f = Fixture(cluster("rome"))
    f.client.seed(
        FCS,
        {
            "apiVersion": "networking.liqo.io/v1beta1",
            "kind": "FirewallConfiguration",
            "metadata": {"name": "liqosec-rome", "namespace": ROME},
            "spec": {"table": {}},
        },
    )
    actions = [a for a in f.reconcile(key("rome")) if a.resource == "firewallconfigurations"]
    assert [a.verb for a in actions] == ["create", "get", "update"]
    assert f.client.stored(FCS, "liqosec-rome", ROME)["spec"]["table"]["name"] == "liqosec-rome"  # type: ignore[index]


def test_a_status_write_for_a_vanished_peering_is_dropped() -> None:
    f = Fixture(cluster("rome"))
    f.client.fail_once("update_status", PCS, errors.NotFound(404, "NotFound", "gone"))
    actions = f.reconcile(key("rome"))  # no exception: the deletion brings the key back
    assert f.client.stored(FCS, "liqosec-rome", ROME) is not None
    assert [a.verb for a in actions if a.resource == f"{PCS.plural}/status"] == ["update_status"]
    stored = f.client.stored(PCS, "rome", ROME)
    assert stored is not None and not stored.get("status")  # the write was dropped, not retried


# ----- invalid spec -----
def test_an_invalid_spec_keeps_the_last_good_firewall_and_warns_once() -> None:
    f = Fixture(cluster("rome"))
    converge(f, key("rome"))
    before = fc_rv(f, "liqosec-rome", ROME)
    bad = f.client.stored(PCS, "rome", ROME)
    assert bad is not None
    bad["spec"]["rules"] = [{"source": {"group": "ofloaded"}}]
    bad["metadata"]["generation"] = 2
    f.seed(bad)
    assert verbs(f.reconcile(key("rome"))) == [
        ("create_event", "events", ""),
        ("update_status", "peeringconnectivities/status", "rome"),
    ]
    valid = cond(f, "rome", ROME, "Valid")
    assert (valid["status"], valid["reason"]) == ("False", "InvalidSpec")
    assert valid["message"].startswith("spec.rules[0].source.group: unknown group 'ofloaded'")
    assert cond(f, "rome", ROME, "Ready")["message"] == "spec not applied; the last good FirewallConfiguration is kept"
    assert status_of(f, "rome", ROME)["compiledRules"] >= 1  # the last good compile's figures stay
    stale = f.reconcile(key("rome"))  # the cache has not seen our status write: it retries that, no second Event
    assert verbs(stale) == [
        ("update_status", "peeringconnectivities/status", "rome"),
        ("get", "peeringconnectivities", "rome"),
    ]
    f.sync()
    assert f.reconcile(key("rome")) == []
    assert [e["reason"] for e in warnings(f)] == ["InvalidSpec"]
    assert fc_rv(f, "liqosec-rome", ROME) == before


def test_a_policy_outside_a_tenant_namespace_writes_no_firewall() -> None:
    f = Fixture([*cluster("rome"), namespace("apps"), peering("stray", "apps", ISOLATE)])
    actions = f.reconcile("apps/stray")
    assert not [a for a in actions if a.resource == "firewallconfigurations"]
    valid = cond(f, "stray", "apps", "Valid")
    assert valid["reason"] == "NotTenantNamespace"
    assert cond(f, "stray", "apps", "Ready")["message"] == "spec not applied; no FirewallConfiguration is written"


def test_a_second_policy_for_one_peering_conflicts() -> None:
    second = peering("zz-second", ROME, [])
    second["metadata"]["creationTimestamp"] = "2026-06-01T00:00:00Z"
    f = Fixture([*cluster("rome"), second])
    f.reconcile(f"{ROME}/zz-second")
    valid = cond(f, "zz-second", ROME, "Valid")
    assert valid["reason"] == "Conflict" and "'rome'" in valid["message"]
    assert f.client.stored(FCS, "liqosec-zz-second", ROME) is None


# ----- invalid cluster state -----
def _break_rome(f: Fixture, cidr: str = "10.70.0.1/16") -> None:
    f.seed(configuration("rome", cidr))


def test_host_bits_in_a_peers_network_affect_only_that_peering() -> None:
    objs = [o for o in cluster("rome", "milan") if (o["kind"], o["metadata"]["name"]) != ("Configuration", "rome")]
    f = Fixture([*objs, remote_network("rome", "10.70.0.5/16")])
    converge(f, key("rome"))
    converge(f, key("milan"))
    valid = cond(f, "rome", ROME, "Valid")
    assert (valid["status"], valid["reason"]) == ("False", INVALID_CLUSTER_STATE)
    assert valid["message"].startswith("Network liqo-tenant-rome/rome-pod: status.cidr: '10.70.0.5/16' has host bits")
    ready = cond(f, "rome", ROME, "Ready")
    assert ready["message"] == "cluster state not usable; no FirewallConfiguration is written"
    assert f.client.stored(FCS, "liqosec-rome", ROME) is None
    assert cond(f, "milan", MILAN, "Ready")["status"] == "True"
    assert [e["involvedObject"]["name"] for e in warnings(f)] == ["rome"]
    assert f.metric("liqosec_invalid_cluster_state_total", peering=key("rome")) == 2  # two passes, one Event
    assert f.metric("liqosec_invalid_cluster_state_total", peering=key("milan")) == 0


def test_a_broken_object_keeps_the_last_good_firewall_until_fixed() -> None:
    f = Fixture(cluster("rome"))
    converge(f, key("rome"))
    before = fc_rv(f, "liqosec-rome", ROME)
    _break_rome(f)
    assert verbs(f.reconcile(key("rome"))) == [
        ("create_event", "events", ""),
        ("update_status", "peeringconnectivities/status", "rome"),
    ]
    valid = cond(f, "rome", ROME, "Valid")
    assert valid["message"] == (
        "Configuration liqo-tenant-rome/rome: status.remote.cidr.pod[0]: '10.70.0.1/16' has host bits set; "
        "the network is 10.70.0.0/16"
    )
    kept = "cluster state not usable; the last good FirewallConfiguration is kept"
    assert cond(f, "rome", ROME, "Ready")["message"] == kept
    stale = f.reconcile(key("rome"))  # the cache lags our status write: still one Event
    assert [a.verb for a in stale] == ["update_status", "get"]
    f.sync()
    assert f.reconcile(key("rome")) == []
    assert len(warnings(f)) == 1 and warnings(f)[0]["reason"] == INVALID_CLUSTER_STATE
    assert fc_rv(f, "liqosec-rome", ROME) == before
    assert f.metric("liqosec_invalid_cluster_state_total", peering=key("rome")) == 3

    _break_rome(f, "10.70.0.0/16")  # fixed
    converge(f, key("rome"))
    assert cond(f, "rome", ROME, "Valid")["status"] == "True"
    assert fc_rv(f, "liqosec-rome", ROME) == before  # same addresses: the firewall never moved
    _break_rome(f)  # the same problem again is news again
    f.reconcile(key("rome"))
    assert len(warnings(f)) == 2


def test_a_fault_compiling_one_peering_leaves_the_others_converging(monkeypatch: pytest.MonkeyPatch) -> None:
    f = Fixture(cluster("rome", "milan"))
    converge(f, key("rome"))
    converge(f, key("milan"))
    real = reconcile_module.compile_inputs

    def faulty(inputs: Any, caps: Any) -> Any:
        if inputs.peering.name == "rome":
            raise RuntimeError("injected\nfault")
        return real(inputs, caps)

    monkeypatch.setattr(reconcile_module, "compile_inputs", faulty)
    rome_rv = fc_rv(f, "liqosec-rome", ROME)
    f.seed(
        pod("rome-1", "shop-rome", "10.1.40.40", origin="rome"),
        pod("milan-1", "shop-milan", "10.1.41.41", origin="milan"),
    )
    converge(f, key("rome"))
    converge(f, key("milan"))
    assert cond(f, "rome", ROME, "Valid")["message"] == "compiling failed: RuntimeError: injected fault"
    assert fc_rv(f, "liqosec-rome", ROME) == rome_rv
    assert "10.1.41.41" in str(f.client.stored(FCS, "liqosec-milan", MILAN))
    assert cond(f, "milan", MILAN, "Ready")["status"] == "True"
    assert [e["involvedObject"]["name"] for e in warnings(f)] == ["rome"]

    monkeypatch.setattr(reconcile_module, "compile_inputs", real)
    converge(f, key("rome"))
    assert "10.1.40.40" in str(f.client.stored(FCS, "liqosec-rome", ROME))
    assert cond(f, "rome", ROME, "Ready")["status"] == "True"


def test_an_unexpected_error_is_named_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    def huge(*_: Any) -> Any:
        raise KeyError("x" * 10_000)

    monkeypatch.setattr(reconcile_module, "compile_inputs", huge)
    f = Fixture(cluster("rome"))
    f.reconcile(key("rome"))
    message = cond(f, "rome", ROME, "Valid")["message"]
    assert message.startswith("compiling failed: KeyError: 'xxx")
    assert len(message) <= len("compiling failed: KeyError: ") + MAX_ERROR_CHARS and message.endswith("...")


def test_api_errors_while_compiling_go_back_to_the_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    def unavailable(*_: Any) -> Any:
        raise errors.ServiceUnavailable(503, "ServiceUnavailable", "later")

    monkeypatch.setattr(reconcile_module, "read_compile_inputs", unavailable)
    f = Fixture(cluster("rome"))
    with pytest.raises(errors.ServiceUnavailable):
        f.reconcile(key("rome"))
    assert f.client.events == []


@pytest.mark.parametrize(
    ("extra", "check"),
    [
        (pod("v6", "shop-rome", "fd00::5", origin="rome"), lambda s: s["ipv6Skipped"] == 1),
        (pod("no-ip", "shop-rome", None, origin="rome"), lambda s: s["addresses"]["offloaded"] == 1),
    ],
    ids=["ipv6-only-pod", "pod-without-ip"],
)
def test_pods_without_an_ipv4_address_are_no_error(extra: dict[str, Any], check: Any) -> None:
    f = Fixture([*cluster("rome"), extra])
    converge(f, key("rome"))
    assert cond(f, "rome", ROME, "Valid")["status"] == "True"
    assert check(status_of(f, "rome", ROME))


def test_a_configuration_without_status_falls_back_to_the_networks() -> None:
    bare = configuration("rome")
    del bare["status"]
    objs = [o for o in cluster("rome") if o["kind"] != "Configuration"]
    f = Fixture([*objs, bare, remote_network("rome", "10.70.0.0/16")])
    converge(f, key("rome"))
    assert cond(f, "rome", ROME, "Valid")["status"] == "True"
    assert status_of(f, "rome", ROME)["addresses"]["remote-cluster"] == 65536


# ----- gone: orphans -----
def test_a_deleted_peering_leaves_no_firewall_of_its_own() -> None:
    f = Fixture(cluster("rome"))
    converge(f, key("rome"))
    other = f.client.stored(FCS, "liqosec-rome", ROME)
    assert other is not None
    other["metadata"].update(name="liqosec-other", resourceVersion=None)
    other["metadata"]["labels"]["security.liqo.io/peering-connectivity"] = "other"
    f.seed(other)
    f.client.remove(PCS, "rome", ROME)
    f.sync()
    # Emptied first (Liqo's agents share one finalizer: a node may keep a deleted table), then deleted.
    assert verbs(f.reconcile(key("rome"))) == [("update", "firewallconfigurations", "liqosec-rome")]
    emptied = f.client.stored(FCS, "liqosec-rome", ROME)
    assert emptied is not None and emptied["spec"]["table"]["chains"][0]["rules"] == {}  # no rules, as Liqo stores them
    assert emptied["spec"]["table"]["chains"][0]["policy"] == "accept"
    assert f.again == pytest.approx(10.0)
    f.sync()
    assert verbs(f.reconcile(key("rome"))) == [] and 0 < (f.again or 0) <= 10.0  # within the grace: wait
    f.after_grace()
    assert verbs(f.reconcile(key("rome"))) == [("delete", "firewallconfigurations", "liqosec-rome")]
    assert f.again is None
    assert f.client.stored(FCS, "liqosec-other", ROME) is not None
    assert f.metric("liqosec_firewall_writes_total", peering=key("rome"), operation="delete") == 1
    assert f.metric("liqosec_firewall_writes_total", peering=key("rome"), operation="retire") == 1


def test_a_peering_being_deleted_is_treated_as_gone() -> None:
    f = Fixture(cluster("rome"))
    converge(f, key("rome"))
    dying = f.client.stored(PCS, "rome", ROME)
    assert dying is not None
    dying["metadata"]["deletionTimestamp"] = "2026-01-02T00:00:00Z"
    f.seed(dying)
    assert verbs(f.reconcile(key("rome"))) == [("update", "firewallconfigurations", "liqosec-rome")]
    f.sync()
    f.after_grace()
    # The firewall goes, then our finalizer: the API server then removes the policy.
    assert verbs(f.reconcile(key("rome"))) == [
        ("delete", "firewallconfigurations", "liqosec-rome"),
        ("patch", "peeringconnectivities", "rome"),
    ]
    assert f.client.stored(PCS, "rome", ROME) is None


def test_a_new_policy_gets_the_finalizer_before_its_firewall() -> None:
    f = Fixture(
        [
            o if o["kind"] != "PeeringConnectivity" else peering("rome", ROME, ISOLATE, finalized=False)
            for o in cluster("rome")
        ]
    )
    assert verbs(f.reconcile(key("rome")))[:2] == [
        ("patch", "peeringconnectivities", "rome"),
        ("create", "firewallconfigurations", "liqosec-rome"),
    ]
    live = f.client.stored(PCS, "rome", ROME)
    assert live is not None and live["metadata"]["finalizers"] == ["security.liqo.io/firewall-cleanup"]


def test_a_missing_peering_without_firewalls_makes_no_call() -> None:
    f = Fixture(cluster("rome"))
    assert f.reconcile(f"{ROME}/nobody") == []


def test_a_firewall_already_gone_is_no_error() -> None:
    f = Fixture(cluster("rome"))
    converge(f, key("rome"))
    f.client.remove(PCS, "rome", ROME)
    f.client.remove(FCS, "liqosec-rome", ROME)
    f.sync()
    f.client.seed(FCS, {"kind": "FirewallConfiguration", "metadata": {"name": "x", "namespace": "elsewhere"}})
    f.stores["FirewallConfiguration"].add(
        {
            "kind": "FirewallConfiguration",
            "metadata": {
                "name": "liqosec-rome",
                "namespace": ROME,
                "resourceVersion": "1",
                "labels": {"security.liqo.io/peering-connectivity": "rome", "app.kubernetes.io/managed-by": "liqosec"},
            },
        }
    )
    assert verbs(f.reconcile(key("rome"))) == [("update", "firewallconfigurations", "liqosec-rome")]
    assert f.metric("liqosec_firewall_writes_total", peering=key("rome"), operation="retire") == 0


def _small_shards(monkeypatch: pytest.MonkeyPatch) -> None:
    real = fcm.shards
    monkeypatch.setattr(fcm, "shards", lambda chain, max_expressions=60: real(chain, max_expressions))


def _many_pods() -> list[dict[str, Any]]:
    return [pod(f"rome-{i}", "shop-rome", f"10.1.{i}.10", origin="rome") for i in range(20, 200, 3)]


def test_shards_gaining_rules_are_written_first(monkeypatch: pytest.MonkeyPatch) -> None:
    _small_shards(monkeypatch)
    f = Fixture([*cluster("rome"), *_many_pods()])
    creates = [a for a in f.reconcile(key("rome")) if a.verb == "create"]
    assert len(creates) > 2
    rules = [len(a.body["spec"]["table"]["chains"][0]["rules"].get("filterRules", [])) for a in creates if a.body]
    assert rules == sorted(rules, reverse=True)
    f.sync()
    assert status_of(f, "rome", ROME)["firewallShards"] == len(creates)


def test_a_shard_no_longer_wanted_is_deleted_after_the_others_are_written(monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as patch:
        _small_shards(patch)
        f = Fixture([*cluster("rome"), *_many_pods()])
        converge(f, key("rome"))
    shards = sorted(o["metadata"]["name"] for o in f.client.of(FCS))
    # Shards beyond the first are named after the CIDR whose rules they hold.
    assert len(shards) > 2 and "liqosec-rome-10-1-64-0-18" in shards
    f.seed(pod("rome-late", "shop-rome", "10.1.250.10", origin="rome"))  # new inputs: compiled again
    actions = f.reconcile(key("rome"))  # the normal bound: one firewall holds it all
    writes = [(a.verb, a.name) for a in actions if a.resource == "firewallconfigurations"]
    assert writes[0] == ("update", "liqosec-rome")
    # The others are emptied first, and deleted once the agents had the grace to apply that.
    assert sorted(writes[1:]) == [("update", s) for s in shards if s != "liqosec-rome"]
    f.sync()
    f.after_grace()
    writes = [(a.verb, a.name) for a in f.reconcile(key("rome")) if a.resource == "firewallconfigurations"]
    assert sorted(writes) == [("delete", s) for s in shards if s != "liqosec-rome"]
    f.sync()
    assert [o["metadata"]["name"] for o in f.client.of(FCS)] == ["liqosec-rome"]
    assert status_of(f, "rome", ROME)["firewallShards"] == 1


def test_equal_inputs_are_not_compiled_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """An echo of our own write or a resync costs a read of the caches, not a compile."""
    calls: list[str] = []
    real = reconcile_module.compile_inputs

    def counting(inputs: Any, caps: Any) -> Any:
        calls.append(inputs.peering.name)
        return real(inputs, caps)

    monkeypatch.setattr(reconcile_module, "compile_inputs", counting)
    f = Fixture(cluster("rome"))
    converge(f, key("rome"))
    compiled = len(calls)
    assert verbs(f.reconcile(key("rome"))) == []
    assert len(calls) == compiled
    f.seed(pod("rome-9", "shop-rome", "10.1.49.49", origin="rome"))
    converge(f, key("rome"))
    assert len(calls) == compiled + 1 and "10.1.49.49" in str(f.client.stored(FCS, "liqosec-rome", ROME))


def test_a_forbidden_firewall_write_is_a_warning_and_a_ready_condition_not_only_a_log() -> None:
    """RBAC missing `create` on FirewallConfigurations: the user sees it on the peering."""
    f = Fixture(cluster("rome"))
    f.client.fail_once(
        "create", FCS, errors.Forbidden(403, "Forbidden", 'firewallconfigurations is forbidden: cannot "create"')
    )
    with pytest.raises(errors.Forbidden):
        f.reconcile(key("rome"))
    ready = cond(f, "rome", ROME, "Ready")
    assert ready["status"] == "False" and ready["reason"] == "Forbidden" and "RBAC" in ready["message"]
    assert [e["reason"] for e in warnings(f)] == ["Forbidden"]
    converge(f, key("rome"))  # allowed again: the retry writes it
    assert cond(f, "rome", ROME, "Ready")["reason"] != "Forbidden"
    assert f.client.stored(FCS, "liqosec-rome", ROME) is not None


def namespace_terminating() -> errors.ApiError:
    """As the API server's NamespaceLifecycle admission refuses a create in a namespace being deleted."""
    return errors.from_status_object(
        {
            "kind": "Status",
            "code": 403,
            "reason": "Forbidden",
            "message": 'firewallconfigurations.networking.liqo.io "liqosec-rome" is forbidden: unable to create new '
            "content in namespace liqo-tenant-rome because it is being terminated",
            "details": {
                "name": "liqosec-rome",
                "group": "networking.liqo.io",
                "kind": "firewallconfigurations",
                "causes": [
                    {
                        "reason": "NamespaceTerminating",
                        "message": "namespace liqo-tenant-rome is being terminated",
                        "field": "metadata.namespace",
                    }
                ],
            },
        }
    )


def test_a_create_refused_because_the_tenant_namespace_is_going_is_no_failure() -> None:
    """Seen when `liqoctl unpeer --delete-namespaces` deletes a tenant namespace under a policy: the
    namespace controller deletes the firewall before the policy, and re-creating it is refused. The
    policy goes with its namespace: no retry, no Forbidden on the status, no warning."""
    f = Fixture(cluster("rome"))
    f.client.fail_once("create", FCS, namespace_terminating())
    f.reconcile(key("rome"))  # not raised: the worker does not retry it
    assert f.client.stored(FCS, "liqosec-rome", ROME) is None
    assert warnings(f) == []  # no Forbidden Event, nor the Ready=False Forbidden that goes with it
    rbac = errors.Forbidden(403, "Forbidden", "firewallconfigurations is forbidden")
    assert errors.namespace_terminating(namespace_terminating()) and not errors.namespace_terminating(rbac)


# ----- an admission webhook refusing a firewall write (Liqo's, failurePolicy Fail) -----
LIQO_DENIAL = (
    'admission webhook "firewallconfiguration.validate.liqo.io" denied the request: table name liqosec-rome '
    "with labels map[networking.liqo.io/firewall-category:fabric networking.liqo.io/firewall-subcategory:all-nodes] "
    "already used"
)


def liqo_denial() -> errors.ApiError:
    """As the API server answers controller-runtime's `admission.Denied`: 403, reason Forbidden, prefixed text."""
    return errors.from_status_object({"kind": "Status", "code": 403, "reason": "Forbidden", "message": LIQO_DENIAL})


def test_a_webhook_denial_is_told_apart_from_an_rbac_forbidden() -> None:
    rbac = errors.Forbidden(403, "Forbidden", 'firewallconfigurations is forbidden: User "x" cannot create')
    assert errors.admission_webhook(liqo_denial()) == "firewallconfiguration.validate.liqo.io"
    assert errors.admission_webhook(rbac) is None
    errored = errors.from_status(
        400, '{"kind":"Status","code":400,"message":"admission webhook \\"w.x.io\\" denied the request: cannot decode"}'
    )
    assert errors.admission_webhook(errored) == "w.x.io"  # admission.Errored(400, ...)
    assert errors.admission_webhook(errors.InternalError(500, "", 'failed calling webhook "w.x.io"')) is None
    policy = errors.Forbidden(
        403,
        "Forbidden",
        'firewallconfigurations.networking.liqo.io "liqosec-a" is forbidden: ValidatingAdmissionPolicy '
        "'liqosec-firewalls' with binding 'liqosec-firewalls' denied request: FirewallConfiguration ns/liqosec-a ...",
    )
    assert errors.admission_webhook(policy) == "liqosec-firewalls"  # the chart's policy, not the RBAC


def test_a_firewall_refused_by_liqos_webhook_is_a_warning_and_ready_false_quoting_liqo() -> None:
    f = Fixture(cluster("rome"))
    f.client.fail_once("create", FCS, liqo_denial())
    with pytest.raises(errors.ApiError):  # back to the worker: the queue's backoff, not a hot loop
        f.reconcile(key("rome"))
    ready = cond(f, "rome", ROME, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "RefusedByLiqo")
    assert "table name liqosec-rome with labels" in ready["message"] and "RBAC" not in ready["message"]
    assert cond(f, "rome", ROME, "Valid")["status"] == "True"
    [warning] = warnings(f)
    assert warning["reason"] == "RefusedByLiqo" and "firewallconfiguration.validate.liqo.io" in warning["message"]
    f.sync()
    f.client.fail_once("create", FCS, liqo_denial())  # still refused: no second Event, no status write
    mark = len(f.client.actions)
    with pytest.raises(errors.ApiError):
        f.reconcile(key("rome"))
    # the create, and the read that tells a refusal from a stale cache (the object is not there)
    assert verbs(f.client.actions[mark:]) == [
        ("create", "firewallconfigurations", "liqosec-rome"),
        ("get", "firewallconfigurations", "liqosec-rome"),
    ]
    assert len(warnings(f)) == 1
    converge(f, key("rome"))  # the old table's owner is gone: the write goes through
    assert cond(f, "rome", ROME, "Ready")["reason"] != "RefusedByLiqo"
    assert f.client.stored(FCS, "liqosec-rome", ROME) is not None


def test_a_long_refusal_is_bounded_on_the_status() -> None:
    f = Fixture(cluster("rome"))
    huge = errors.Forbidden(
        403,
        "Forbidden",
        'admission webhook "firewallconfiguration.validate.liqo.io" denied the request: ' + "x" * 10_000,
    )
    f.client.fail_once("create", FCS, huge)
    with pytest.raises(errors.ApiError):
        f.reconcile(key("rome"))
    assert len(cond(f, "rome", ROME, "Ready")["message"]) < MAX_ERROR_CHARS + 200


def test_a_refused_shard_keeps_every_other_firewall_and_retires_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Going from shards back to one firewall, the first one's update is refused: the shards it would
    replace stay as they are (never emptied, never deleted), so nothing enforced is torn down."""
    with monkeypatch.context() as patch:
        _small_shards(patch)
        f = Fixture([*cluster("rome"), *_many_pods()])
        converge(f, key("rome"))
    shards = {o["metadata"]["name"]: o["metadata"]["resourceVersion"] for o in f.client.of(FCS)}
    assert len(shards) > 2
    f.seed(pod("rome-late", "shop-rome", "10.1.250.10", origin="rome"))
    f.client.fail_once("update", FCS, liqo_denial())
    with pytest.raises(errors.ApiError):
        f.reconcile(key("rome"))
    assert {o["metadata"]["name"]: o["metadata"]["resourceVersion"] for o in f.client.of(FCS)} == shards
    assert cond(f, "rome", ROME, "Ready")["reason"] == "RefusedByLiqo"
    f.sync()
    f.reconcile(key("rome"))  # allowed again: written, and only now are the other shards retired
    f.sync()
    f.after_grace()
    converge(f, key("rome"))
    assert [o["metadata"]["name"] for o in f.client.of(FCS)] == ["liqosec-rome"]


def test_other_shards_are_still_written_when_one_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    _small_shards(monkeypatch)
    f = Fixture([*cluster("rome"), *_many_pods()])
    f.client.fail_once("create", FCS, liqo_denial())
    with pytest.raises(errors.ApiError):
        f.reconcile(key("rome"))
    creates = [a for a in f.client.actions if a.verb == "create" and a.resource == "firewallconfigurations"]
    assert len(creates) > 2 and len(f.client.of(FCS)) == len(creates) - 1
    assert "(and" not in cond(f, "rome", ROME, "Ready")["message"]


def test_another_webhooks_refusal_is_named_as_such() -> None:
    f = Fixture(cluster("rome"))
    f.client.fail_once(
        "create",
        FCS,
        errors.Forbidden(403, "Forbidden", 'admission webhook "validate.kyverno.svc" denied the request: no'),
    )
    with pytest.raises(errors.ApiError):
        f.reconcile(key("rome"))
    assert cond(f, "rome", ROME, "Ready")["reason"] == "RefusedByWebhook"


# ----- Liqo still remapping the peer's CIDRs -----
def _remap_pending_for(monkeypatch: pytest.MonkeyPatch, peer: str) -> None:
    real = reconcile_module.read_compile_inputs

    def pending(view: Any, pc: Any, *args: Any) -> Any:
        if pc.name == peer:
            ref = ObjectRef("Configuration", f"liqo-tenant-{peer}", peer)
            raise RemapPending(ref, "status.remote.cidr.pod[0]", "not remapped yet ('')")
        return real(view, pc, *args)

    monkeypatch.setattr(reconcile_module, "read_compile_inputs", pending)


def test_a_pending_remap_waits_keeping_the_firewall_with_one_normal_event(monkeypatch: pytest.MonkeyPatch) -> None:
    f = Fixture(cluster("rome", "milan"))
    converge(f, key("rome"))
    before = fc_rv(f, "liqosec-rome", ROME)
    _remap_pending_for(monkeypatch, "rome")
    f.seed(
        pod("rome-1", "shop-rome", "10.1.30.30", origin="rome"),
        pod("milan-1", "shop-milan", "10.1.31.31", origin="milan"),
    )
    f.reconcile(key("rome"))
    assert f.again is None  # no requeue: the Configuration's update brings it back
    ready = cond(f, "rome", ROME, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "RemapPending")
    assert ready["message"].startswith(
        "waiting for Liqo: Configuration liqo-tenant-rome/rome: status.remote.cidr.pod[0]"
    )
    assert ready["message"].endswith("the last good FirewallConfiguration is kept")
    assert cond(f, "rome", ROME, "Valid")["status"] == "True"
    assert warnings(f) == []
    assert [e["reason"] for e in f.client.events if e["type"] == "Normal"][-1] == "RemapPending"
    assert f.metric("liqosec_invalid_cluster_state_total", peering=key("rome")) == 0
    f.reconcile(key("rome"))  # stale cache: no second Event
    f.sync()
    assert f.reconcile(key("rome")) == []
    assert [e["reason"] for e in f.client.events].count("RemapPending") == 1
    assert fc_rv(f, "liqosec-rome", ROME) == before
    converge(f, key("milan"))  # milan does not wait with rome
    assert "10.1.31.31" in str(f.client.stored(FCS, "liqosec-milan", MILAN))
    assert cond(f, "milan", MILAN, "Ready")["status"] == "True"
    monkeypatch.undo()  # remapped: Liqo's update of the Configuration brings rome back
    converge(f, key("rome"))
    assert cond(f, "rome", ROME, "Ready")["status"] == "True"
    assert "10.1.30.30" in str(f.client.stored(FCS, "liqosec-rome", ROME))


def test_a_new_peering_waiting_for_its_remap_writes_no_firewall_until_liqo_remaps() -> None:
    """Liqo's Configuration controller writes `""` until its IPAM has remapped the peer's CIDR."""
    objs = [o for o in cluster("rome") if o["kind"] != "Configuration"]
    f = Fixture([*objs, configuration("rome", "")])
    f.reconcile(key("rome"))
    assert f.again is None and f.client.stored(FCS, "liqosec-rome", ROME) is None
    ready = cond(f, "rome", ROME, "Ready")
    assert ready["reason"] == "RemapPending" and ready["message"].endswith("no FirewallConfiguration is written")
    assert "Configuration liqo-tenant-rome/rome: status.remote.cidr.pod[0]" in ready["message"]
    assert warnings(f) == [] and f.metric("liqosec_invalid_cluster_state_total", peering=key("rome")) == 0
    f.seed(configuration("rome", "10.70.0.0/16"))  # remapped
    converge(f, key("rome"))
    assert cond(f, "rome", ROME, "Ready")["status"] == "True"
    assert [e["reason"] for e in f.client.events].count("RemapPending") == 1


# ----- what Liqo's reflection settings change for a policy -----
def shadow(name: str, ip: str | None, *, phase: str = "Running", **labels: str) -> dict[str, Any]:
    """A shadow pod of a workload we offloaded to rome, on rome's virtual node."""
    out = pod(name, "shop", ip, node="liqo-rome", **{"liqo.io/shadowPod": "true", **labels})
    out["status"]["phase"] = phase
    return out


def conditions_of(f: Fixture, name: str = "rome", ns: str = ROME) -> set[str]:
    return {c["type"] for c in status_of(f, name, ns)["conditions"]}


def test_shadow_pods_without_an_ip_are_named_when_the_policy_uses_vc_remote() -> None:
    """Liqo's --disable-ip-reflection leaves shadow pods without an IP: vc-remote is silently empty."""
    borders = peering("rome", ROME, [], securityMode="ProtectedBorders")  # its preset names vc-remote
    objs = [o for o in cluster("rome") if o["kind"] != "PeeringConnectivity"]
    f = Fixture(
        [
            *objs,
            borders,
            virtual_node("liqo-rome", "rome"),
            shadow("api-0", None),
            shadow("api-1", None),
            shadow("api-2", None, phase="Pending"),  # not started yet: no IP is expected
            shadow("web-0", "10.70.0.5"),
        ]
    )
    converge(f, key("rome"))
    found = cond(f, "rome", ROME, "ShadowPodsWithoutIP")
    assert (found["status"], found["reason"]) == ("True", "IPNotReflected")
    assert found["message"].startswith("2 running shadow pods of workloads offloaded to rome hold no IP address")
    assert found["message"].endswith(": shop/api-0, shop/api-1")
    assert f.reconcile(key("rome")) == []  # written once, not again
    f.seed(shadow("api-0", "10.70.0.6"), shadow("api-1", "10.70.0.7"))
    converge(f, key("rome"))
    assert "ShadowPodsWithoutIP" not in conditions_of(f)
    # A policy that does not use vc-remote is not told.
    g = Fixture([*cluster("rome"), virtual_node("liqo-rome", "rome"), shadow("api-0", None)])
    converge(g, key("rome"))
    assert "ShadowPodsWithoutIP" not in conditions_of(g)


def _selecting(group: str | None) -> dict[str, Any]:
    party: dict[str, Any] = {"podSelector": {"matchLabels": {"team": "shop", "app": "api"}}}
    if group:
        party["group"] = group
    rules = [{"source": party, "destination": {"group": "remote-cluster"}, "action": "allow"}]
    return peering("rome", ROME, rules)


@pytest.mark.parametrize("group", [None, "vc-remote", "vc-local"])
def test_labels_liqo_does_not_reflect_are_named_when_a_selector_uses_them(group: str | None) -> None:
    """`reflection.skip.labels` (the VirtualNode's labelsNotReflected): rome never sees those labels on what we
    offload, so its policies cannot select our pods by them."""
    objs = [o for o in cluster("rome") if o["kind"] != "PeeringConnectivity"]
    f = Fixture([*objs, _selecting(group), virtual_node_cr("rome", "team", "owner")])
    converge(f, key("rome"))
    found = cond(f, "rome", ROME, "LabelsNotReflected")
    assert (found["status"], found["reason"]) == ("True", "PeerCannotSelect")
    assert found["message"].startswith(
        "Liqo does not reflect the label team to rome (VirtualNode liqo-tenant-rome/rome: "
        "spec.offloadingPatch.labelsNotReflected)"
    )
    assert found["message"].endswith("spec.rules[0].source.podSelector (team)")
    assert f.reconcile(key("rome")) == []


def test_labels_not_reflected_say_nothing_when_no_selector_of_the_policy_could_use_them() -> None:
    objs = [o for o in cluster("rome") if o["kind"] != "PeeringConnectivity"]
    f = Fixture([*objs, _selecting("offloaded"), virtual_node_cr("rome", "team"), virtual_node_cr("milan", "app")])
    converge(f, key("rome"))
    assert "LabelsNotReflected" not in conditions_of(f)
    g = Fixture([*cluster("rome"), virtual_node_cr("rome", "team")])  # no selector at all
    converge(g, key("rome"))
    assert "LabelsNotReflected" not in conditions_of(g)


def test_a_create_liqos_webhook_refuses_because_a_stale_cache_missed_the_object_updates_it() -> None:
    """Admission runs before the API server's AlreadyExists check: creating an object that is there is
    refused by Liqo's validator ("already used"), not 409. The firewall is read, and updated."""
    f = Fixture(cluster("rome"))
    converge(f, key("rome"))
    live = f.client.stored(FCS, "liqosec-rome", ROME)
    assert live is not None
    f.restart()  # a new leader: no write of its own tells it the object is there
    f.stores["FirewallConfiguration"].delete(live)  # the informer has not seen it (yet)
    f.client.fail_once("create", FCS, liqo_denial())
    f.seed(pod("cart-9", "shop-rome", "10.1.5.99", origin="rome"), sync=False)
    f.stores["Pod"].replace(f.client.of(ref_of("Pod")), f.client.resource_version)
    actions = verbs(f.reconcile(key("rome")))
    assert ("create", "firewallconfigurations", "liqosec-rome") in actions
    assert ("update", "firewallconfigurations", "liqosec-rome") in actions
    assert warnings(f) == []
    assert cond(f, "rome", ROME, "Ready")["reason"] != "RefusedByLiqo"
