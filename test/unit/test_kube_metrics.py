"""Scope: prometheus metrics wired to the queue, reflector and leader-election hooks, in a private
registry."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY, CollectorRegistry

from harness.fakeclock import FakeClock
from harness.waiting import wait_until
from liqosec.kube.metrics import KubeMetrics
from liqosec.kube.queue import RateLimitingQueue


def test_queue_metrics_use_controller_runtime_names() -> None:
    registry = CollectorRegistry()
    metrics = KubeMetrics(registry)
    clock = FakeClock()
    q: RateLimitingQueue[str] = RateLimitingQueue("peerings", clock=clock, metrics_provider=metrics)

    def sample(name: str) -> float | None:
        return registry.get_sample_value(name, {"name": "peerings"})

    def settles(unfinished: float, longest: float) -> None:
        """The gauges are refreshed by the queue's metrics loop, on the fake clock: wait for it (real time)."""
        names = ("workqueue_unfinished_work_seconds", "workqueue_longest_running_processor_seconds")
        wait_until(lambda: [sample(n) for n in names] == [unfinished, longest], "the gauges", timeout=5)
        assert [sample(n) for n in names] == [unfinished, longest]

    q.add("a")
    q.add("b")
    clock.advance(2)
    q.get()  # "a" starts at t+2
    clock.advance(1)
    q.get()  # "b" starts at t+3
    clock.advance(1.5)  # "a" has run 2.5 s, "b" 1.5 s
    settles(unfinished=2.5 + 1.5, longest=2.5)
    q.done("a")  # worked 2.5 s
    q.done("b")  # worked 1.5 s
    clock.advance(1)
    settles(unfinished=0.0, longest=0.0)
    q.add("c")
    q.add_rate_limited("a")
    q.shutdown()

    assert sample("workqueue_adds_total") == 3
    assert sample("workqueue_depth") == 1
    assert sample("workqueue_retries_total") == 1
    assert sample("workqueue_queue_duration_seconds_count") == 2
    assert sample("workqueue_queue_duration_seconds_sum") == 2 + 3
    assert sample("workqueue_work_duration_seconds_count") == 2
    assert sample("workqueue_work_duration_seconds_sum") == 2.5 + 1.5


def test_reflector_and_leader_hooks() -> None:
    registry = CollectorRegistry()
    metrics = KubeMetrics(registry)
    metrics.relist("pods")
    metrics.watch_restart("pods")
    metrics.watch_restart("pods")
    metrics.leading("liqosec", True)
    assert registry.get_sample_value("liqosec_informer_relists_total", {"resource": "pods"}) == 1
    assert registry.get_sample_value("liqosec_watch_restarts_total", {"resource": "pods"}) == 2
    assert registry.get_sample_value("leader_election_master_status", {"name": "liqosec"}) == 1
    metrics.leading("liqosec", False)
    assert registry.get_sample_value("leader_election_master_status", {"name": "liqosec"}) == 0


def test_nothing_lands_in_the_global_registry() -> None:
    KubeMetrics(CollectorRegistry())
    assert REGISTRY.get_sample_value("workqueue_depth", {"name": "x"}) is None
    assert "workqueue_depth" not in {m.name for m in REGISTRY.collect()}


def test_registry_is_required() -> None:
    with pytest.raises(ValueError):
        KubeMetrics(None)  # type: ignore[arg-type]
