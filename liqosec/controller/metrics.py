"""The controller's Prometheus metrics, named as controller-runtime names them, plus liqosec's own.

All metrics live in a registry passed in (no import-time globals), so two
controllers in one test process do not share counters.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from liqosec.compiler.dryrun import DryRunReport
from liqosec.compiler.firewallconfiguration import CompiledPeering

CONTROLLER = "peeringconnectivity"
DRY_RUN_CHANGES = ("newly_denied", "newly_allowed")  # values of liqosec_dryrun_pairs' `change` label
# controller-runtime's reconcile time buckets, in seconds.
RECONCILE_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.15,
    0.2,
    0.25,
    0.3,
    0.35,
    0.4,
    0.45,
    0.5,
    0.6,
    0.7,
    0.8,
    0.9,
    1.0,
    1.25,
    1.5,
    1.75,
    2.0,
    2.5,
    3.0,
    3.5,
    4.0,
    4.5,
    5,
    6,
    7,
    8,
    9,
    10,
    15,
    20,
    25,
    30,
    40,
    50,
    60,
)


class ControllerMetrics:
    def __init__(self, registry: CollectorRegistry, *, workers: int) -> None:
        self.reconcile_total = Counter(
            "controller_runtime_reconcile_total",
            "Total number of reconciliations per controller",
            ["controller", "result"],
            registry=registry,
        )
        self.reconcile_errors = Counter(
            "controller_runtime_reconcile_errors_total",
            "Total number of reconciliation errors per controller",
            ["controller"],
            registry=registry,
        )
        self.reconcile_time = Histogram(
            "controller_runtime_reconcile_time_seconds",
            "Length of time per reconciliation per controller",
            ["controller"],
            buckets=RECONCILE_BUCKETS,
            registry=registry,
        )
        self.active_workers = Gauge(
            "controller_runtime_active_workers",
            "Number of currently used workers per controller",
            ["controller"],
            registry=registry,
        )
        max_workers = Gauge(
            "controller_runtime_max_concurrent_reconciles",
            "Maximum number of concurrent reconciles per controller",
            ["controller"],
            registry=registry,
        )
        max_workers.labels(CONTROLLER).set(workers)
        self.writes = Counter(
            "liqosec_firewall_writes_total",
            "FirewallConfiguration writes by operation",
            ["peering", "operation"],
            registry=registry,
        )
        self.noops = Counter(
            "liqosec_firewall_noop_writes_skipped_total",
            "Reconciles that found the FirewallConfiguration already right",
            ["peering"],
            registry=registry,
        )
        self.status_writes = Counter(
            "liqosec_status_writes_total", "PeeringConnectivity status writes", ["peering"], registry=registry
        )
        self.invalid_cluster_state = Counter(
            "liqosec_invalid_cluster_state_total",
            "Reconciles stopped by a cluster object the compiler cannot use (the last good firewall is kept)",
            ["peering"],
            registry=registry,
        )
        self.rules = Gauge("liqosec_firewall_rules", "Rules in the compiled chain", ["peering"], registry=registry)
        self.bytes = Gauge(
            "liqosec_firewall_bytes", "Size of the FirewallConfiguration", ["peering"], registry=registry
        )
        self.addresses = Gauge(
            "liqosec_group_addresses", "Addresses resolved per group", ["peering", "group"], registry=registry
        )
        self.dry_run_pairs = Gauge(
            "liqosec_dryrun_pairs",
            "Running pod pairs whose TCP connection enforcing a DryRun policy would change",
            ["peering", "change"],
            registry=registry,
        )
        self._dry_run_peerings: set[str] = set()  # peerings with dry-run series exported
        self.dry_run_compared = Gauge(
            "liqosec_dryrun_compared_pairs",
            "Running pod pairs of a DryRun peering's traffic compared (fewer than the pairs when capped)",
            ["peering"],
            registry=registry,
        )
        for result in ("success", "error"):
            self.reconcile_total.labels(CONTROLLER, result)
        self.reconcile_errors.labels(CONTROLLER)
        self.active_workers.labels(CONTROLLER).set(0)

    # WriteMetrics, for the reconciler
    def firewall_write(self, peering: str, operation: str) -> None:
        self.writes.labels(peering, operation).inc()

    def firewall_noop(self, peering: str) -> None:
        self.noops.labels(peering).inc()

    def status_write(self, peering: str) -> None:
        self.status_writes.labels(peering).inc()

    def cluster_state_invalid(self, peering: str) -> None:
        self.invalid_cluster_state.labels(peering).inc()

    def compiled(self, peering: str, outcome: CompiledPeering) -> None:
        self.rules.labels(peering).set(outcome.chain.rule_count)
        self.bytes.labels(peering).set(outcome.size_bytes)
        for group, count in outcome.groups.counts().items():
            self.addresses.labels(peering, group).set(count)

    def dry_run(self, peering: str, report: DryRunReport | None) -> None:
        """The DryRun counts; None (enforced, or deleted) removes the series, so no stale count lingers."""
        if report is None:
            if peering in self._dry_run_peerings:  # every enforced reconcile asks: a set lookup, then nothing
                self._dry_run_peerings.discard(peering)
                for change in DRY_RUN_CHANGES:
                    self.dry_run_pairs.remove(peering, change)
                self.dry_run_compared.remove(peering)
            return
        self._dry_run_peerings.add(peering)
        self.dry_run_pairs.labels(peering, "newly_denied").set(report.newly_denied)
        self.dry_run_pairs.labels(peering, "newly_allowed").set(report.newly_allowed)
        self.dry_run_compared.labels(peering).set(report.compared_pairs)
