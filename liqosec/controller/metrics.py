"""The controller's Prometheus metrics, named as controller-runtime names them, plus liqosec's own.

Guarantees:
- All metrics live in a registry passed in (no import-time globals), so two controllers in one
  test process do not share counters.
- Per-peering series stay linear in the peerings: `liqosec_peering_ready` has one series per
  peering (the old reason's goes when the reason changes), `liqosec_firewall_apply_failed` one per
  failing node, and `forget` removes every gauge of a peering that is gone. Counters stay, as
  Prometheus expects of counters.

Caller duties:
- Call `forget(peering)` when the peering is gone.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from liqosec.compiler.dryrun import DryRunReport
from liqosec.compiler.firewallconfiguration import CompiledPeering

CONTROLLER = "peeringconnectivity"
DRY_RUN_CHANGES = ("newly_denied", "newly_allowed")  # values of liqosec_dryrun_pairs' `change` label
# Seconds from an input's change to the firewall write carrying it: a direct write takes tens of
# milliseconds, a burst held by the batch window up to its 5 s cap, retries with backoff longer.
CHANGE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
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
        self.ready = Gauge(
            "liqosec_peering_ready",
            "The peering's Ready condition as its status says it: 1 True, 0 False; its reason as a label",
            ["peering", "reason"],
            registry=registry,
        )
        self._ready_reasons: dict[str, str] = {}  # the reason each peering's ready series carries
        self.apply_failed = Gauge(
            "liqosec_firewall_apply_failed",
            "1 for each node whose Liqo agent reports Applied=False on a FirewallConfiguration of the peering",
            ["peering", "node"],
            registry=registry,
        )
        self._failed_nodes: dict[str, frozenset[str]] = {}
        self.write_errors = Counter(
            "liqosec_firewall_write_errors_total",
            "FirewallConfiguration writes that failed, by reason: Forbidden (RBAC), Invalid (refused by an "
            "admission webhook or the API server), Conflict (kept changing past the retries), Other",
            ["peering", "reason"],
            registry=registry,
        )
        self.objects = Gauge(
            "liqosec_firewall_objects",
            "FirewallConfigurations the peering has in force (its shards; 0 in DryRun)",
            ["peering"],
            registry=registry,
        )
        self.change_latency = Histogram(
            "liqosec_change_to_firewall_seconds",
            "Time from the informer event that changed a peering's inputs (a pod's IP, a label, the policy) "
            "to the FirewallConfiguration write carrying it",
            buckets=CHANGE_BUCKETS,
            registry=registry,
        )
        self._groups: dict[str, frozenset[str]] = {}  # the groups each peering's address series name
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

    def firewall_write_failed(self, peering: str, reason: str) -> None:
        self.write_errors.labels(peering, reason).inc()

    def firewall_objects(self, peering: str, count: int) -> None:
        self.objects.labels(peering).set(count)

    def change_written(self, seconds: float) -> None:
        """A firewall write carried a change of the peering's inputs, `seconds` after its informer event."""
        self.change_latency.observe(max(seconds, 0.0))

    def compiled(self, peering: str, outcome: CompiledPeering) -> None:
        self.rules.labels(peering).set(outcome.chain.rule_count)
        self.bytes.labels(peering).set(outcome.size_bytes)
        counts = outcome.groups.counts()
        for group in self._groups.get(peering, frozenset()) - set(counts):
            self.addresses.remove(peering, group)
        self._groups[peering] = frozenset(counts)
        for group, count in counts.items():
            self.addresses.labels(peering, group).set(count)

    def ready_condition(self, peering: str, status: bool, reason: str) -> None:
        """Ready as the status says it: one series per peering, so a reason change replaces the series."""
        before = self._ready_reasons.get(peering)
        if before is not None and before != reason:
            self.ready.remove(peering, before)
        self._ready_reasons[peering] = reason
        self.ready.labels(peering, reason).set(1 if status else 0)

    def apply_failures(self, peering: str, nodes: frozenset[str]) -> None:
        """The nodes whose agent reports Applied=False now: series only for them, the healed ones go."""
        before = self._failed_nodes.get(peering, frozenset())
        for node in before - nodes:
            self.apply_failed.remove(peering, node)
        for node in nodes - before:
            self.apply_failed.labels(peering, node).set(1)
        if nodes:
            self._failed_nodes[peering] = nodes
        else:
            self._failed_nodes.pop(peering, None)

    def forget(self, peering: str) -> None:
        """The peering is gone: every gauge of it goes, so dashboards and alerts stop showing it."""
        reason = self._ready_reasons.pop(peering, None)
        if reason is not None:
            self.ready.remove(peering, reason)
        self.apply_failures(peering, frozenset())
        for group in self._groups.pop(peering, frozenset()):
            self.addresses.remove(peering, group)
        for gauge in (self.rules, self.bytes, self.objects):
            gauge.remove(peering)
        self.dry_run(peering, None)

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
