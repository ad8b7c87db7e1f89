"""Scope: Lease acquire/renew/release and leadership callbacks against an in-memory API with
resourceVersion semantics, on fake time."""

from __future__ import annotations

import copy
import threading
from typing import Any

import pytest

from harness.fakeclock import FakeClock
from harness.peek import observed_leader
from harness.waiting import wait_until
from liqosec.kube import errors
from liqosec.kube.client import LEASES, ResourceRef
from liqosec.kube.leaderelection import (
    LEASE_DURATION_SECONDS,
    RENEW_DEADLINE_SECONDS,
    RETRY_PERIOD_SECONDS,
    LeaderCallbacks,
    LeaderElector,
)

JsonDict = dict[str, Any]


class FakeLeaseApi:
    """Just enough of the API server for Leases: get/create/update with optimistic concurrency."""

    def __init__(self) -> None:
        self.objects: dict[str, JsonDict] = {}
        self.rv = 0
        self.fail_with: errors.ApiError | None = None
        self.updates: list[JsonDict] = []
        self.lock = threading.Lock()

    def _check(self) -> None:
        if self.fail_with is not None:
            raise self.fail_with

    def get(self, ref: ResourceRef, name: str, *, namespace: str | None = None) -> JsonDict:
        with self.lock:
            self._check()
            if name not in self.objects:
                raise errors.NotFound(404, "NotFound", name)
            return copy.deepcopy(self.objects[name])

    def create(self, ref: ResourceRef, obj: JsonDict, *, namespace: str | None = None) -> JsonDict:
        with self.lock:
            self._check()
            name = obj["metadata"]["name"]
            if name in self.objects:
                raise errors.AlreadyExists(409, "AlreadyExists", name)
            self.rv += 1
            stored = copy.deepcopy(obj)
            stored["metadata"]["resourceVersion"] = str(self.rv)
            self.objects[name] = stored
            return copy.deepcopy(stored)

    def update(self, ref: ResourceRef, obj: JsonDict) -> JsonDict:
        with self.lock:
            self._check()
            name = obj["metadata"]["name"]
            current = self.objects.get(name)
            if current is None:
                raise errors.NotFound(404, "NotFound", name)
            if obj["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
                raise errors.Conflict(409, "Conflict", "the object has been modified")
            self.rv += 1
            stored = copy.deepcopy(obj)
            stored["metadata"]["resourceVersion"] = str(self.rv)
            self.objects[name] = stored
            self.updates.append(copy.deepcopy(stored))
            return copy.deepcopy(stored)

    def holder(self) -> str:
        with self.lock:
            return str(self.objects["lease"]["spec"].get("holderIdentity") or "")

    def put_foreign_holder(self, identity: str) -> None:
        with self.lock:
            self.rv += 1
            self.objects["lease"] = {
                "metadata": {"name": "lease", "namespace": "ns", "resourceVersion": str(self.rv)},
                "spec": {
                    "holderIdentity": identity,
                    "leaseDurationSeconds": 15,
                    "renewTime": "2000-01-01T00:00:00.000000Z",
                    "leaseTransitions": 3,
                },
            }


class Events:
    def __init__(self) -> None:
        self.log: list[str] = []
        self.work_stop: threading.Event | None = None

    def callbacks(self) -> LeaderCallbacks:
        def started(stop: threading.Event) -> None:
            self.work_stop = stop
            self.log.append("started")

        return LeaderCallbacks(
            on_started_leading=started,
            on_stopped_leading=lambda: self.log.append("stopped"),
            on_new_leader=lambda identity: self.log.append(f"leader:{identity}"),
        )


class Candidate:
    def __init__(self, api: FakeLeaseApi, clock: FakeClock, identity: str = "me") -> None:
        self.events = Events()
        self.leading_metric: list[bool] = []
        self.stop = threading.Event()
        self.elector = LeaderElector(
            api,
            namespace="ns",
            name="lease",
            identity=identity,  # type: ignore[arg-type]
            callbacks=self.events.callbacks(),
            clock=clock,
            metrics=self,
        )
        self.thread = threading.Thread(target=self.elector.run, args=(self.stop,))

    def leading(self, name: str, is_leader: bool) -> None:
        self.leading_metric.append(is_leader)

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(3)
        assert not self.thread.is_alive()


def test_creates_lease_and_leads_when_none_exists() -> None:
    api, clock = FakeLeaseApi(), FakeClock()
    c = Candidate(api, clock)
    c.thread.start()
    wait_until(c.elector.is_leader)
    wait_until(lambda: "started" in c.events.log)
    assert api.holder() == "me"
    assert api.objects["lease"]["spec"]["leaseDurationSeconds"] == LEASE_DURATION_SECONDS
    c.finish()


def test_does_not_take_a_lease_held_by_a_live_leader() -> None:
    api, clock = FakeLeaseApi(), FakeClock()
    api.put_foreign_holder("other")
    c = Candidate(api, clock)
    c.thread.start()
    wait_until(lambda: "leader:other" in c.events.log)
    clock.block_until_waiters(1)  # it waits to retry, its next look due well within the advance
    clock.advance_and_settle(LEASE_DURATION_SECONDS - 1)  # it has looked again, one second short of expiry
    assert not c.elector.is_leader()
    assert observed_leader(c.elector) == "other"
    c.finish()
    assert api.holder() == "other", "a non-leader must not release someone else's lease"


def test_lease_acquired_when_expired() -> None:
    api, clock = FakeLeaseApi(), FakeClock()
    api.put_foreign_holder("other")
    c = Candidate(api, clock)
    c.thread.start()
    wait_until(lambda: "leader:other" in c.events.log)
    # Expiry counts from when *we* first saw this record, not from its (ancient) renewTime.
    waited = 0.0
    while not c.elector.is_leader():
        assert waited < LEASE_DURATION_SECONDS + 3 * 1.2 * RETRY_PERIOD_SECONDS
        waited += clock.advance_to_next_deadline(settle=True)
    assert waited >= LEASE_DURATION_SECONDS
    assert api.holder() == "me"
    assert api.objects["lease"]["spec"]["leaseTransitions"] == 4
    assert "leader:me" in c.events.log
    c.finish()


def test_conflicting_write_means_not_acquired() -> None:
    api, clock = FakeLeaseApi(), FakeClock()
    api.put_foreign_holder("")
    elector = Candidate(api, clock).elector
    original_update = api.update

    def racing_update(ref: ResourceRef, obj: JsonDict) -> JsonDict:
        api.put_foreign_holder("faster")  # someone else wrote between our get and update
        return original_update(ref, obj)

    api.update = racing_update  # type: ignore[method-assign]
    assert elector.try_acquire_or_renew() is False
    assert api.holder() == "faster"


def test_renews_while_leading() -> None:
    api, clock = FakeLeaseApi(), FakeClock()
    c = Candidate(api, clock)
    c.thread.start()
    wait_until(c.elector.is_leader)
    clock.block_until_waiters(2)  # the renewal loop and the deadline's watchdog
    for _ in range(3):
        # settle: both wait again before the next step, so each step is one retry period of both
        assert clock.advance_to_next_deadline(settle=True) == RETRY_PERIOD_SECONDS
    wait_until(lambda: len(api.updates) >= 3)
    assert c.elector.is_leader()
    c.finish()


def test_renew_failure_past_deadline_stops_leading() -> None:
    api, clock = FakeLeaseApi(), FakeClock()
    c = Candidate(api, clock)
    c.thread.start()
    wait_until(lambda: "started" in c.events.log)
    api.fail_with = errors.ServiceUnavailable(503, "", "etcd down")
    start = clock.now()
    while c.thread.is_alive():
        assert clock.now() - start <= RENEW_DEADLINE_SECONDS + RETRY_PERIOD_SECONDS
        clock.advance_to_next_deadline()
        wait_until(lambda: not c.thread.is_alive() or clock.next_deadline() is not None)
    c.thread.join(3)
    assert not c.thread.is_alive()
    assert clock.now() - start >= RENEW_DEADLINE_SECONDS
    assert clock.now() - start < LEASE_DURATION_SECONDS, "must stop before others may take over"
    assert c.events.log[-1] == "stopped"
    assert c.events.work_stop is not None and c.events.work_stop.is_set()
    assert not c.elector.is_leader()
    assert c.leading_metric == [True, False]


def test_a_renewal_that_hangs_does_not_keep_leading_past_the_deadline() -> None:
    """A stalled API server holds the renewal call for its whole read timeout: the work must still
    stop at the renewal deadline, before the lease can expire for others, not when the call returns."""
    api, clock = FakeLeaseApi(), FakeClock()
    c = Candidate(api, clock)
    c.thread.start()
    wait_until(lambda: "started" in c.events.log)
    assert c.events.work_stop is not None
    renewed_at = clock.now()  # the acquire was sent at this time: others count the lease from no earlier
    hung, released = threading.Event(), threading.Event()
    real_update = api.update

    def hanging_update(ref: ResourceRef, obj: JsonDict) -> JsonDict:
        hung.set()
        released.wait(30)
        return real_update(ref, obj)

    api.update = hanging_update  # type: ignore[method-assign]
    clock.block_until_waiters(2)  # the renewal loop's wait and the watchdog's, both due in one retry period
    clock.advance_to_next_deadline()  # the first renewal goes out and hangs
    wait_until(hung.is_set)
    while not c.events.work_stop.is_set():
        assert clock.now() - renewed_at < RENEW_DEADLINE_SECONDS, "still leading at the renewal deadline"
        clock.advance_to_next_deadline(settle=True)
    assert clock.now() - renewed_at == RENEW_DEADLINE_SECONDS
    assert clock.now() - renewed_at < LEASE_DURATION_SECONDS
    assert not c.elector.is_leader()
    assert c.leading_metric == [True, False]
    assert c.thread.is_alive(), "the election thread is still in the hung call"
    released.set()  # the call comes back, successful: too late to count
    c.thread.join(3)
    assert not c.thread.is_alive()
    assert c.events.log.count("started") == 1 and c.events.log[-1] == "stopped"
    assert c.leading_metric == [True, False]


def test_release_on_shutdown() -> None:
    api, clock = FakeLeaseApi(), FakeClock()
    c = Candidate(api, clock)
    c.thread.start()
    wait_until(lambda: "started" in c.events.log)
    c.finish()
    spec = api.objects["lease"]["spec"]
    assert spec["holderIdentity"] == ""
    assert spec["leaseDurationSeconds"] == 1
    assert c.events.log[-1] == "stopped"
    successor = Candidate(api, clock, identity="next")
    assert successor.elector.try_acquire_or_renew(), "a released lease is taken at once"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"identity": ""},
        {"lease_duration": 10.0, "renew_deadline": 10.0},
        {"renew_deadline": 2.0, "retry_period": 2.0},
    ],
)
def test_constructor_rejects_unsafe_timing(kwargs: dict[str, Any]) -> None:
    base: dict[str, Any] = {"namespace": "ns", "name": "lease", "identity": "me", "callbacks": Events().callbacks()}
    with pytest.raises(ValueError):
        LeaderElector(FakeLeaseApi(), **{**base, **kwargs})  # type: ignore[arg-type]


def test_lease_ref_is_coordination_v1() -> None:
    assert LEASES.path("ns", "x") == "/apis/coordination.k8s.io/v1/namespaces/ns/leases/x"
