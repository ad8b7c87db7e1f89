"""Prometheus implementations of the queue, reflector and leader-election metric hooks.

Guarantees:
- Metric names match controller-runtime's (``workqueue_*`` with label ``name``,
  ``leader_election_master_status{name}``) so existing dashboards work, plus
  ``liqosec_informer_relists_total{resource}`` and ``liqosec_watch_restarts_total{resource}``.
- Everything registers in the ``CollectorRegistry`` passed in; importing this module touches
  no global registry, so tests and several controllers in one process do not collide.

Caller duties:
- Create one ``KubeMetrics`` per registry (a second one on the same registry raises, as
  prometheus-client refuses duplicate names) and expose that registry yourself.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from liqosec.kube.queue import CounterMetric, GaugeMetric, HistogramMetric, SettableGaugeMetric

# Buckets of controller-runtime's workqueue histograms: 1 µs to ~17 min, factor 10, so both a
# fast in-memory hop and a stuck reconcile land in a meaningful bucket.
DURATION_BUCKETS = tuple(10.0**e for e in range(-8, 4))


class KubeMetrics:
    """Holds every runtime metric; implements MetricsProvider, ReflectorMetrics, LeaderMetrics."""

    def __init__(self, registry: CollectorRegistry) -> None:
        if registry is None:
            raise ValueError("a CollectorRegistry is required: no global default registry")
        r = registry
        self._depth: Any = Gauge("workqueue_depth", "Current depth of workqueue", ["name"], registry=r)
        self._adds: Any = Counter("workqueue_adds", "Total number of adds handled by workqueue", ["name"], registry=r)
        self._latency: Any = Histogram(
            "workqueue_queue_duration_seconds",
            "How long in seconds an item stays in workqueue before being requested",
            ["name"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self._work: Any = Histogram(
            "workqueue_work_duration_seconds",
            "How long in seconds processing an item from workqueue takes",
            ["name"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self._unfinished: Any = Gauge(
            "workqueue_unfinished_work_seconds",
            "How many seconds of work has been done that is in progress and hasn't been observed by work_duration",
            ["name"],
            registry=r,
        )
        self._longest: Any = Gauge(
            "workqueue_longest_running_processor_seconds",
            "How many seconds has the longest running processor for workqueue been running",
            ["name"],
            registry=r,
        )
        self._retries: Any = Counter(
            "workqueue_retries", "Total number of retries handled by workqueue", ["name"], registry=r
        )
        self._leader: Any = Gauge(
            "leader_election_master_status",
            "Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, 1 indicates master",
            ["name"],
            registry=r,
        )
        self._relists: Any = Counter(
            "liqosec_informer_relists",
            "Full relists after the watch's resource version expired",
            ["resource"],
            registry=r,
        )
        self._restarts: Any = Counter(
            "liqosec_watch_restarts", "Watches re-established after ending or failing", ["resource"], registry=r
        )

    # ----- queue.MetricsProvider -----
    def new_depth_metric(self, name: str) -> GaugeMetric:
        metric: GaugeMetric = self._depth.labels(name=name)
        return metric

    def new_adds_metric(self, name: str) -> CounterMetric:
        metric: CounterMetric = self._adds.labels(name=name)
        return metric

    def new_latency_metric(self, name: str) -> HistogramMetric:
        metric: HistogramMetric = self._latency.labels(name=name)
        return metric

    def new_work_duration_metric(self, name: str) -> HistogramMetric:
        metric: HistogramMetric = self._work.labels(name=name)
        return metric

    def new_unfinished_work_seconds_metric(self, name: str) -> SettableGaugeMetric:
        metric: SettableGaugeMetric = self._unfinished.labels(name=name)
        return metric

    def new_longest_running_processor_seconds_metric(self, name: str) -> SettableGaugeMetric:
        metric: SettableGaugeMetric = self._longest.labels(name=name)
        return metric

    def new_retries_metric(self, name: str) -> CounterMetric:
        metric: CounterMetric = self._retries.labels(name=name)
        return metric

    # ----- reflector.ReflectorMetrics -----
    def relist(self, resource: str) -> None:
        self._relists.labels(resource=resource).inc()

    def watch_restart(self, resource: str) -> None:
        self._restarts.labels(resource=resource).inc()

    # ----- leaderelection.LeaderMetrics -----
    def leading(self, name: str, is_leader: bool) -> None:
        self._leader.labels(name=name).set(1 if is_leader else 0)
