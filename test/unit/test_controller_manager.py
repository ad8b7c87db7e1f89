"""The whole controller on the fake API server: CRDs first, informers, workers, no hot loop; the probes."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fake_kube import FakeKubeClient, cluster, configuration, key, peering, ref_of, virtual_node_cr
from prometheus_client import CollectorRegistry

from harness.fakeclock import FakeClock
from harness.waiting import wait_until
from liqosec.api.peeringconnectivity import KIND
from liqosec.controller import health
from liqosec.controller.manager import Controller, Exit, Options, _QueueAffectedPeerings, missing_crds_message
from liqosec.controller.mapping import Change, KeyMapper, firewall_configuration_keys
from liqosec.controller.metrics import CONTROLLER
from liqosec.controller.ownwrites import OwnWrites
from liqosec.controller.resources import CRDS, FIREWALL_CONFIGURATIONS, PEERING_CONNECTIVITIES, watched_resources
from liqosec.kube import errors
from liqosec.kube.queue import RateLimitingQueue

ALL_CRDS = tuple(w.crd for w in watched_resources() if w.crd)


def server_with(objects: list[dict[str, Any]], crds: tuple[str, ...] = ALL_CRDS) -> FakeKubeClient:
    client = FakeKubeClient()
    for name in crds:
        client.seed(
            CRDS,
            {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": name}},
        )
    for obj in objects:
        client.seed(ref_of(obj["kind"]), obj)
    return client


@contextmanager
def running(client: FakeKubeClient, *, queue_clock: FakeClock | None = None, **options: Any) -> Iterator[Controller]:
    """The controller on its own thread; with `queue_clock`, its queue (delays, retries) runs on that fake time."""
    opts = Options(identity="unit", leader_elect=False, batch_seconds=0.0, **options)
    queue = None if queue_clock is None else RateLimitingQueue[str](CONTROLLER, clock=queue_clock)
    controller = Controller(client, opts, registry=CollectorRegistry(), queue=queue)
    stop = threading.Event()
    result: list[Exit] = []
    thread = threading.Thread(target=lambda: result.append(controller.run(stop)), daemon=True)
    queued_at_start: list[str] = []  # what the controller queues once leading: every peering it knows
    add = controller.queue.add

    def add_noting(item: str) -> None:
        add(item)
        if threading.current_thread() is thread:
            queued_at_start.append(item)

    controller.queue.add = add_noting  # type: ignore[method-assign]
    controller.queued_at_start = queued_at_start  # type: ignore[attr-defined]
    thread.start()
    try:
        yield controller
    finally:
        stop.set()
        thread.join(10)
        assert not thread.is_alive() and result == [Exit.STOPPED]


def successes(c: Controller) -> float:
    return float(
        c.registry.get_sample_value(
            "controller_runtime_reconcile_total", {"controller": CONTROLLER, "result": "success"}
        )
        or 0
    )


def test_the_controller_writes_the_firewall_once_synced() -> None:
    client = server_with(cluster("rome"))
    with running(client) as c:
        wait_until(lambda: client.stored(FIREWALL_CONFIGURATIONS, "liqosec-rome", "liqo-tenant-rome"), "the firewall")
        assert c.synced() and c.not_ready_reason() == ""
        wait_until(lambda: "Applied" in str(client.stored(PEERING_CONNECTIVITIES, "rome", "liqo-tenant-rome")), "Ready")
    assert client.events and client.events[0]["reason"] == "FirewallCreated"


def test_missing_crds_keep_it_unready_with_one_event_until_installed() -> None:
    crds = tuple(c for c in ALL_CRDS if c != "peeringconnectivities.security.liqo.io")
    client = server_with(cluster("rome"), crds=crds)
    with running(client, pod=("liqo", "liqosec-0")) as c:
        polls = count_calls(c, "missing_crds")
        wait_until(lambda: client.events, "the wait to be reported")
        assert c.not_ready_reason() == "waiting for CustomResourceDefinitions: peeringconnectivities.security.liqo.io"
        assert not c.synced()
        seen = polls[0]
        wait_until(lambda: polls[0] >= seen + 5, "several more polls")  # still one Event, and nothing else listed
        [event] = client.events
        assert event["type"] == "Warning" and event["reason"] == "CustomResourceDefinitionMissing"
        assert event["involvedObject"] == {
            **event["involvedObject"],
            "kind": "Pod",
            "apiVersion": "v1",
            "name": "liqosec-0",
            "namespace": "liqo",
        }
        assert "install liqosec's CRD (peeringconnectivities.security.liqo.io" in event["message"]
        assert {a.resource for a in client.actions if a.verb == "list"} == {"customresourcedefinitions"}
        client.seed(
            CRDS, {"kind": "CustomResourceDefinition", "metadata": {"name": "peeringconnectivities.security.liqo.io"}}
        )
        wait_until(lambda: client.stored(FIREWALL_CONFIGURATIONS, "liqosec-rome", "liqo-tenant-rome"), "the firewall")
        assert c.synced() and c.not_ready_reason() == ""


def test_missing_liqo_crds_say_to_install_liqo_and_no_event_without_a_pod() -> None:
    client = server_with([], crds=("peeringconnectivities.security.liqo.io",))
    with running(client) as c:
        wait_until(lambda: "waiting" in c.not_ready_reason(), "the wait")
        assert "firewallconfigurations.networking.liqo.io" in c.not_ready_reason()
    assert client.events == []
    message = missing_crds_message(("firewallconfigurations.networking.liqo.io", "networks.ipam.liqo.io"))
    assert message.endswith(
        "install Liqo, whose CRDs liqosec reads (firewallconfigurations.networking.liqo.io, networks.ipam.liqo.io)"
    )
    assert "\n" not in message


def count_calls(c: Controller, method: str) -> list[int]:
    """Count the calls of one of the controller's methods from now on (in a one-item list)."""
    calls = [0]
    original = getattr(c, method)

    def counting(*args: Any) -> Any:
        calls[0] += 1
        return original(*args)

    setattr(c, method, counting)
    return calls


def settled(c: Controller, client: FakeKubeClient) -> float | None:
    """The success count once the controller has queued every peering it leads for, every change has
    reached the informers and the queue is idle: nothing queued, waiting or being processed, and no
    change since (None while it moves)."""
    before, version = successes(c), client.resource_version
    started = set(c.queued_at_start) >= set(c.stores[KIND].keys())  # type: ignore[attr-defined]
    delivered = started and client.delivered()
    quiet = len(c.queue) == 0 and c.queue.waiting() == 0 and not c.queue._processing
    still = delivered and quiet and client.resource_version == version and successes(c) == before
    return before if still and before >= 1 else None


def test_invalid_cluster_state_is_not_retried_in_a_loop() -> None:
    objs = [o for o in cluster("rome") if o["kind"] != "Configuration"]
    client = server_with([*objs, configuration("rome", "10.70.0.1/16")])
    clock = FakeClock()
    with running(client, queue_clock=clock) as c:
        wait_until(
            lambda: "InvalidClusterState" in str(client.stored(PEERING_CONNECTIVITIES, "rome", "liqo-tenant-rome")),
            "InvalidClusterState",
        )
        # Informers may still hand over their first lists: those events are real and may wake the peering
        # once more. Wait for them to settle, then watch for a loop.
        done = wait_until(lambda: settled(c, client), "the initial events to settle")
        # Settled means nothing waits in the queue either; a second's time on the queue's clock (a
        # requeue would come back within the rate limiter's first delays, 5 ms and up) changes nothing.
        clock.advance_and_settle(1.0)
        assert wait_until(lambda: settled(c, client), "the queue to settle again") == done
        assert successes(c) == done
        assert c.queue.num_requeues(key("rome")) == 0
        assert c.registry.get_sample_value("liqosec_invalid_cluster_state_total", {"peering": key("rome")}) == done
        # The fix comes back through the informer.
        client.seed(ref_of("Configuration"), configuration("rome", "10.70.0.0/16"))
        wait_until(lambda: client.stored(FIREWALL_CONFIGURATIONS, "liqosec-rome", "liqo-tenant-rome"), "the firewall")
    assert [e["reason"] for e in client.events if e["type"] == "Warning"] == ["InvalidClusterState"]


def test_stopping_while_waiting_for_crds_returns_promptly() -> None:
    client = server_with([], crds=())
    started = time.monotonic()
    with running(client) as c:
        wait_until(lambda: "waiting" in c.not_ready_reason(), "the wait")
    assert time.monotonic() - started < 5


def test_a_mapper_that_fails_wakes_every_peering() -> None:
    client = server_with(cluster("rome", "milan"))
    controller = Controller(client, Options(identity="unit", leader_elect=False), registry=CollectorRegistry())
    for w in controller.watched:
        controller.stores[w.kind].replace([o for o in client.of(w.ref)], client.resource_version)
    queued: list[str] = []

    def broken(keys: KeyMapper, change: Change) -> set[str]:
        raise TypeError("unreadable")

    handler = _QueueAffectedPeerings("Pod", broken, KeyMapper(controller.view), queued.append)
    handler.on_add({"metadata": {"name": "x"}})
    assert sorted(queued) == [key("milan"), key("rome")]


def test_probes_say_why_not_ready() -> None:
    state = {"ready": False}
    registry = CollectorRegistry()
    server = health.serve(
        "127.0.0.1:0",
        registry=registry,
        healthy=lambda: True,
        ready=lambda: state["ready"],
        not_ready=lambda: "waiting for CustomResourceDefinitions: x",
    )
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"{base}/readyz", timeout=5)
        assert info.value.code == 503 and info.value.read() == b"waiting for CustomResourceDefinitions: x"
        state["ready"] = True
        assert urllib.request.urlopen(f"{base}/readyz", timeout=5).read() == b"ok"
        assert urllib.request.urlopen(f"{base}/healthz", timeout=5).read() == b"ok"
        assert urllib.request.urlopen(f"{base}/metrics", timeout=5).status == 200
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"{base}/nothing", timeout=5)
        assert info.value.code == 404
    finally:
        server.shutdown()
        server.server_close()


def test_a_bind_address_without_a_port_is_refused() -> None:
    with pytest.raises(ValueError, match="host:port"):
        health.parse_address("localhost")
    assert health.parse_address(":8080") == ("0.0.0.0", 8080)


def test_a_missing_optional_crd_does_not_stop_the_controller_and_is_watched_once_installed() -> None:
    """VirtualNode (labelsNotReflected) only adds a status note: without its CRD the controller runs."""
    selecting = peering(
        "rome",
        "liqo-tenant-rome",
        [{"source": {"podSelector": {"matchLabels": {"team": "shop"}}}, "action": "deny"}],
    )
    objs = [o for o in cluster("rome") if o["kind"] != "PeeringConnectivity"]
    crds = tuple(c for c in ALL_CRDS if c != "virtualnodes.offloading.liqo.io")
    client = server_with([*objs, selecting], crds=crds)
    with running(client) as c:
        wait_until(lambda: client.stored(FIREWALL_CONFIGURATIONS, "liqosec-rome", "liqo-tenant-rome"), "the firewall")
        assert c.synced() and c.not_ready_reason() == ""
        assert "virtualnodes" not in {a.resource for a in client.actions if a.verb == "list"}
        client.seed(CRDS, {"kind": "CustomResourceDefinition", "metadata": {"name": "virtualnodes.offloading.liqo.io"}})
        client.seed(ref_of("VirtualNode"), virtual_node_cr("rome", "team"))
        wait_until(
            lambda: "PeerCannotSelect" in str(client.stored(PEERING_CONNECTIVITIES, "rome", "liqo-tenant-rome")),
            "LabelsNotReflected",
        )
        assert c.synced()


def test_a_write_liqos_webhook_keeps_refusing_is_retried_with_backoff_not_in_a_loop() -> None:
    client = server_with(cluster("rome"))
    denial = errors.Forbidden(
        403, "Forbidden", 'admission webhook "firewallconfiguration.validate.liqo.io" denied the request: no'
    )
    for _ in range(100):
        client.fail_once("create", FIREWALL_CONFIGURATIONS, denial)
    clock = FakeClock()
    with running(client, queue_clock=clock) as c:
        wait_until(
            lambda: "RefusedByLiqo" in str(client.stored(PEERING_CONNECTIVITIES, "rome", "liqo-tenant-rome")),
            "RefusedByLiqo",
        )
        for _ in range(200):  # one second of the queue's time, 5 ms at a time, each retry done before the next step
            clock.advance_and_settle(0.005)
            wait_until(lambda: len(c.queue) == 0 and not c.queue._processing, "the retry to be done")
        creates = [a for a in client.actions if a.verb == "create" and a.resource == "firewallconfigurations"]
        assert 1 <= len(creates) <= 12  # 5 ms doubling: about 8 tries in a second, not thousands
        assert c.queue.num_requeues(key("rome")) >= 1
        assert [e["reason"] for e in client.events if e["type"] == "Warning"] == ["RefusedByLiqo"]
        client._failures.clear()  # the cause goes: the next retry writes it
        wait_until(
            lambda: clock.advance(0.5) or client.stored(FIREWALL_CONFIGURATIONS, "liqosec-rome", "liqo-tenant-rome"),
            "the firewall",
            timeout=15,
        )


def test_a_firewall_version_a_pass_wrote_wakes_not_that_pass_but_a_later_version_does() -> None:
    """The pass that wrote a firewall used the write's answer: its echo on the watch would be a
    second pass per pod change finding nothing to do. Liqo's agents reporting on it are news."""
    client = server_with(cluster("rome"))
    with running(client) as c:
        fc = wait_until(lambda: client.stored(FIREWALL_CONFIGURATIONS, "liqosec-rome", "liqo-tenant-rome"), "the fc")
        wait_until(lambda: c.view.get("FirewallConfiguration", "liqosec-rome", "liqo-tenant-rome"), "the echo")
    own = OwnWrites()
    queued: list[str] = []
    handler = _QueueAffectedPeerings(
        "FirewallConfiguration", firewall_configuration_keys, KeyMapper(c.view), queued.append, own=own
    )
    older = {**fc, "metadata": {**fc["metadata"], "resourceVersion": "1"}, "spec": {}}
    own.wrote(key("rome"), fc)
    handler.on_update(older, fc)  # our write coming back
    assert queued == []
    reported = {**fc, "metadata": {**fc["metadata"], "resourceVersion": "999"}, "status": {"conditions": []}}
    handler.on_update(fc, reported)  # an agent's report: a version we did not write
    assert queued == [key("rome")]
    handler.on_delete(reported)  # gone: forgotten, so the same version made again is news
    queued.clear()
    handler.on_add(fc)
    assert queued == [key("rome")]
