"""Scope: the series the chart's alerts and dashboard read (Ready by reason, apply failures per node, write
errors by reason, objects per peering, change-to-firewall latency), fed through the reconciler's own paths
against the fake API server, as a scrape of the registry shows them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fake_kube import Fixture, cluster, fabric_pod, key, node, pod, ref_of
from prometheus_client import CollectorRegistry
from test_controller_manager import running, server_with

from harness.reconciling import converge
from harness.waiting import wait_until
from liqosec.controller.resources import FIREWALL_CONFIGURATIONS as FCS
from liqosec.controller.resources import PEERING_CONNECTIVITIES as PCS
from liqosec.kube import errors
from liqosec.kube.retry import CONFLICT_RETRIES

ROME = "liqo-tenant-rome"
FABRIC_A, FABRIC_B = "liqo-fabric-7xk2p", "liqo-fabric-q9z4m"
LATENCY = "liqosec_change_to_firewall_seconds"


def series(registry: CollectorRegistry, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Every sample named `name`, by its labels: what a scrape shows, absent series included as absent."""
    return {tuple(sorted(s.labels.items())): s.value for m in registry.collect() for s in m.samples if s.name == name}


def ready(f: Fixture) -> dict[tuple[tuple[str, str], ...], float]:
    return series(f.registry, "liqosec_peering_ready")


def ready_is(reason: str, value: float) -> dict[tuple[tuple[str, str], ...], float]:
    return {(("peering", key("rome")), ("reason", reason)): value}


def report(f: Fixture, **hosts: str) -> None:
    """Liqo's agents write their per-host Applied condition on the firewall."""
    live = f.client.stored(FCS, "liqosec-rome", ROME)
    assert live is not None
    live["status"] = {"conditions": [{"host": h, "type": "Applied", "status": s} for h, s in hosts.items()]}
    f.seed(live)


def edit_spec(f: Fixture, **spec: object) -> None:
    live = f.client.stored(PCS, "rome", ROME)
    assert live is not None
    live["spec"].update(spec)
    live["metadata"]["generation"] = int(live["metadata"].get("generation") or 1) + 1
    f.seed(live)


def delete_rome(f: Fixture) -> None:
    f.client.delete(PCS, "rome", namespace=ROME)
    f.sync()
    f.reconcile(key("rome"))


def test_ready_is_one_series_per_peering_that_follows_the_reason_and_goes_with_the_peering() -> None:
    f = Fixture([*cluster("rome"), node("n1")])
    converge(f, key("rome"))
    assert ready(f) == ready_is("Applying", 0)
    report(f, n1="True")
    converge(f, key("rome"))
    assert ready(f) == ready_is("Applied", 1)  # the Applying series is gone, not left at 0
    edit_spec(f, rules=[{"source": {"group": "ofloaded"}}])
    converge(f, key("rome"))
    assert ready(f) == ready_is("InvalidSpec", 0)
    delete_rome(f)
    assert ready(f) == {}


def test_ready_says_why_a_write_is_refused() -> None:
    f = Fixture(cluster("rome"))
    f.client.fail_once("create", FCS, errors.Forbidden(403, "Forbidden", "firewallconfigurations is forbidden"))
    with pytest.raises(errors.Forbidden):
        f.reconcile(key("rome"))
    assert ready(f) == ready_is("Forbidden", 0)


def test_apply_failures_name_the_node_of_each_failing_agent_and_go_when_it_heals() -> None:
    f = Fixture([*cluster("rome"), node("n1"), node("n2"), fabric_pod(FABRIC_A, "n1"), fabric_pod(FABRIC_B, "n2")])
    converge(f, key("rome"))
    assert series(f.registry, "liqosec_firewall_apply_failed") == {}
    report(f, **{FABRIC_A: "False", FABRIC_B: "True"})
    converge(f, key("rome"))
    failed = {(("node", "n1"), ("peering", key("rome"))): 1.0}
    assert series(f.registry, "liqosec_firewall_apply_failed") == failed
    assert ready(f) == ready_is("ApplyFailed", 0)
    report(f, **{FABRIC_A: "True", FABRIC_B: "True"})
    converge(f, key("rome"))
    assert series(f.registry, "liqosec_firewall_apply_failed") == {}
    assert ready(f) == ready_is("Applied", 1)


def test_apply_failures_go_with_the_peering() -> None:
    f = Fixture([*cluster("rome"), node("n1")])
    converge(f, key("rome"))
    report(f, n1="False")  # no fabric pod: the agents report under their node's name
    converge(f, key("rome"))
    assert series(f.registry, "liqosec_firewall_apply_failed") == {(("node", "n1"), ("peering", key("rome"))): 1.0}
    delete_rome(f)
    assert series(f.registry, "liqosec_firewall_apply_failed") == {}


LIQO_DENIAL = 'admission webhook "firewallconfiguration.validate.liqo.io" denied the request: table name already used'


def write_errors(f: Fixture) -> dict[str, float]:
    found = series(f.registry, "liqosec_firewall_write_errors_total")
    return {dict(labels)["reason"]: v for labels, v in found.items() if dict(labels)["peering"] == key("rome")}


@pytest.mark.parametrize(
    ("failure", "reason"),
    [
        (errors.Forbidden(403, "Forbidden", 'firewallconfigurations is forbidden: cannot "create"'), "Forbidden"),
        (errors.Forbidden(403, "Forbidden", LIQO_DENIAL), "Invalid"),  # Liqo's webhook, as controller-runtime denies
        (errors.Invalid(422, "Invalid", "spec.table.chains[0].rules: Invalid value"), "Invalid"),
        (errors.InternalError(500, "InternalError", "etcdserver: request timed out"), "Other"),
    ],
)
def test_a_failed_firewall_write_is_counted_by_reason(failure: errors.ApiError, reason: str) -> None:
    f = Fixture(cluster("rome"))
    f.client.fail_once("create", FCS, failure)
    with pytest.raises(errors.ApiError):
        f.reconcile(key("rome"))
    assert write_errors(f) == {reason: 1}
    converge(f, key("rome"))  # the retry goes through: nothing more is counted
    assert write_errors(f) == {reason: 1}


def test_only_conflicts_that_do_not_settle_are_write_errors() -> None:
    f = Fixture(cluster("rome"))
    converge(f, key("rome"))
    f.seed(pod("rome-1", "shop-rome", "10.1.30.30", origin="rome"))
    f.client.fail_once("update", FCS, errors.Conflict(409, "Conflict", "modified"))
    converge(f, key("rome"))  # one conflict, settled by a fresh read
    assert write_errors(f) == {}
    f.seed(pod("rome-2", "shop-rome", "10.1.30.31", origin="rome"))
    for _ in range(CONFLICT_RETRIES):
        f.client.fail_once("update", FCS, errors.Conflict(409, "Conflict", "modified"))
    with pytest.raises(errors.Conflict):
        f.reconcile(key("rome"))
    assert write_errors(f) == {"Conflict": 1}


def test_objects_per_peering_are_its_firewalls_in_force() -> None:
    f = Fixture(cluster("rome"))
    converge(f, key("rome"))
    objects = len([o for o in f.client.of(FCS) if o["metadata"]["namespace"] == ROME])
    assert objects == 1
    assert f.registry.get_sample_value("liqosec_firewall_objects", {"peering": key("rome")}) == objects
    edit_spec(f, enforcement="DryRun")
    converge(f, key("rome"))
    f.after_grace()
    converge(f, key("rome"))
    assert [o for o in f.client.of(FCS) if o["metadata"]["namespace"] == ROME] == []
    assert f.registry.get_sample_value("liqosec_firewall_objects", {"peering": key("rome")}) == 0
    delete_rome(f)
    for name in ("liqosec_firewall_objects", "liqosec_firewall_bytes", "liqosec_firewall_rules"):
        assert series(f.registry, name) == {}, name
    assert series(f.registry, "liqosec_group_addresses") == {}


def latency(f: Fixture) -> tuple[float, float]:
    """(count, sum) of the change-to-firewall histogram."""
    return (f.metric(f"{LATENCY}_count"), f.metric(f"{LATENCY}_sum"))


def test_latency_runs_from_the_oldest_unhandled_change_to_the_write_carrying_it() -> None:
    f = Fixture(cluster("rome"))
    converge(f, key("rome"))
    assert latency(f) == (0, 0)  # no informer event marked the key: nothing to measure from
    f.changes.changed(key("rome"))  # the pod's informer event
    f.seed(pod("rome-1", "shop-rome", "10.1.30.30", origin="rome"))
    f.now += timedelta(seconds=2)
    f.changes.changed(key("rome"))  # a second change of the same burst: the first one still counts
    f.now += timedelta(seconds=1)
    converge(f, key("rome"))
    assert latency(f) == (1, 3.0)
    assert f.metric(f"{LATENCY}_bucket", le="2.5") == 0 and f.metric(f"{LATENCY}_bucket", le="5.0") == 1


def test_a_pass_that_writes_nothing_clears_the_mark_without_a_sample() -> None:
    f = Fixture(cluster("rome"))
    converge(f, key("rome"))
    f.changes.changed(key("rome"))  # say, a label no selector reads
    f.now += timedelta(seconds=30)
    assert f.reconcile(key("rome")) == []
    assert latency(f) == (0, 0) and len(f.changes) == 0
    f.seed(pod("rome-1", "shop-rome", "10.1.30.30", origin="rome"))  # written with no mark: no sample
    converge(f, key("rome"))
    assert latency(f) == (0, 0)


def test_a_failed_write_keeps_the_mark_so_the_retry_measures_the_whole_wait() -> None:
    f = Fixture(cluster("rome"))
    converge(f, key("rome"))
    f.changes.changed(key("rome"))
    f.seed(pod("rome-1", "shop-rome", "10.1.30.30", origin="rome"))
    f.client.fail_once("update", FCS, errors.InternalError(500, "InternalError", "etcd timeout"))
    f.now += timedelta(seconds=1)
    with pytest.raises(errors.InternalError):
        f.reconcile(key("rome"))
    f.now += timedelta(seconds=4)  # the worker's backoff
    converge(f, key("rome"))
    assert latency(f) == (1, 5.0)


def test_the_controller_measures_a_pod_change_and_not_an_agents_report() -> None:
    """Wired as it runs: the pod informer's event marks the peering, the firewall's does not."""
    client = server_with(cluster("rome"))
    with running(client) as c:

        def count() -> float:
            return float(c.registry.get_sample_value(f"{LATENCY}_count") or 0)

        wait_until(lambda: "Applied" in str(client.stored(PCS, "rome", ROME)), "Ready")
        first = count()  # the start-up pass: the initial list's events marked it
        live = client.stored(FCS, "liqosec-rome", ROME)
        assert live is not None
        live["status"] = {"conditions": [{"host": "n1", "type": "Applied", "status": "False"}]}
        client.seed(FCS, live)  # an agent's report: the status changes, the firewall is not rewritten
        wait_until(lambda: "ApplyFailed" in str(client.stored(PCS, "rome", ROME)), "the report on the status")
        assert count() == first
        writes = len([a for a in client.actions if a.verb == "update" and a.resource == "firewallconfigurations"])
        client.seed(ref_of("Pod"), pod("rome-1", "shop-rome", "10.1.30.30", origin="rome"))
        wait_until(lambda: count() == first + 1, "the pod's change measured")
        updates = [a for a in client.actions if a.verb == "update" and a.resource == "firewallconfigurations"]
        assert len(updates) == writes + 1
        assert "10.1.30.30" in str(client.stored(FCS, "liqosec-rome", ROME))
