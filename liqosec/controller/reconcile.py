"""Reconcile one PeeringConnectivity: make its FirewallConfiguration and status what the caches say.

Level-triggered and idempotent: every call re-reads the caches, compiles, and
writes only what differs. Outcomes, as in sample-controller:
- done: firewall and status match (maybe after a write);
- invalid spec: status says why (field path), an Event is emitted once, the
  last good firewall stays; no retry (a spec change brings the key back);
- invalid cluster state: an object the compiler reads is unusable (a CIDR with
  host bits, a field of the wrong type), or resolution or compilation raised
  anything at all. Only the peerings reading it are affected: their status
  names the object and field (reason `InvalidClusterState`), an Event is
  emitted once, `liqosec_invalid_cluster_state_total` counts it and the last
  good firewalls stay. No retry: the object's fix brings the key back through
  the informer mapping, so a broken object costs no hot loop;
- not found: the PeeringConnectivity is gone; FirewallConfigurations it
  left behind (when garbage collection cannot act) are deleted;
- error: raised to the worker, which retries with backoff. Conflicts on a
  write are retried here first, against a fresh read.

The parts: `firewalls.FirewallWriter` writes and retires FirewallConfigurations,
`statuswrites.StatusWriter` writes status and says each problem once,
`caches.Derived` keeps what may be reused; this module decides which outcome a
pass has.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from time import monotonic
from typing import Any

import structlog

from liqosec.api.peeringconnectivity import KIND, Enforcement
from liqosec.api.validation import ValidationError, parse_peering_connectivity
from liqosec.compiler.dryrun import NO_FIREWALL, DryRunReport, enforced_by, report_for
from liqosec.compiler.firewallconfiguration import (
    ALL_NODES,
    FC_KIND,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    OWNER_LABEL,
    CompiledPeering,
    compile_inputs,
    read_compile_inputs,
)
from liqosec.compiler.governance import conflict, governors
from liqosec.controller import reflection, retire
from liqosec.controller.caches import Derived, DesiredSpecs
from liqosec.controller.changetimes import ChangeTimes
from liqosec.controller.firewalls import FirewallWriter, Recorder, Refused, WriteMetrics
from liqosec.controller.ownwrites import OwnWrites
from liqosec.controller.resources import PEERING_CONNECTIVITIES, StoreView
from liqosec.controller.status import (
    Condition,
    Rollout,
    dry_run_conditions,
    rollout,
    valid_conditions,
)
from liqosec.controller.statuswrites import Invalid, StatusWriter, cluster_state_problem
from liqosec.firewall.capabilities import Capabilities
from liqosec.firewall.evaluate import tables_of
from liqosec.groups.view import RemapPending
from liqosec.kube import errors
from liqosec.kube.client import KubeClient


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


class Reconciler:
    """Reconciles one PeeringConnectivity key at a time, from the caches (`view`) to the API server (`client`).

    Safe to call for any key, any number of times, from one worker at a time per key (the
    queue's guarantee). Holds no state but what may be derived again: its caches (`Derived`),
    the FirewallUpdated Event times (`FirewallWriter`), the last warning said per key
    (`StatusWriter`) and when each key's inputs changed unhandled (`changes`, which the
    informers' handlers mark: the start of `liqosec_change_to_firewall_seconds`).
    """

    def __init__(
        self,
        *,
        client: KubeClient,
        view: StoreView,
        capabilities: Callable[[], Capabilities],
        recorder: Recorder,
        metrics: WriteMetrics,
        retire_grace: float = retire.GRACE_SECONDS,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        scope: str = ALL_NODES,
        own_writes: OwnWrites | None = None,
        desired: DesiredSpecs | None = None,
        changes: ChangeTimes | None = None,
    ) -> None:
        self._scope = scope
        self._changes = changes if changes is not None else ChangeTimes(monotonic)
        self._client = client
        self._view = view
        self._capabilities = capabilities
        self._metrics = metrics
        self._derived = Derived(view, desired)
        self._firewalls = FirewallWriter(
            client=client,
            view=view,
            recorder=recorder,
            metrics=metrics,
            now=now,
            retire_grace=retire_grace,
            own_writes=own_writes or OwnWrites(),
        )
        self._status = StatusWriter(
            client=client, view=view, recorder=recorder, metrics=metrics, seconds=lambda: now().timestamp()
        )

    def reconcile(self, key: str) -> float | None:
        """Make the peering's firewalls and status right; return seconds after which to look again, if any."""
        since = self._changes.take(key)  # before the caches are read: a later change marks the key again
        try:
            return self._reconcile(key, since)
        except BaseException:
            self._changes.restore(key, since)  # the retry's write carries the change
            raise

    def _reconcile(self, key: str, since: float | None) -> float | None:
        namespace, _, name = key.partition("/")
        log = structlog.get_logger(__name__).bind(peering=key)
        obj = self._view.get(KIND, name, namespace)
        if obj is None or _meta(obj).get("deletionTimestamp"):  # not found, or being deleted
            self._status.forget(key)
            self._derived.forget(key)
            self._changes.forget(key)
            self._metrics.forget(key)
            wait = self._firewalls.remove_orphans(namespace, name, log)
            if wait is None and obj is not None:
                self._set_finalizer(obj, present=False)
            return wait
        obj = self._set_finalizer(obj, present=True)
        caps = self._capabilities()
        try:
            outcome = self._compile(obj, caps)
        except _InvalidSpec as bad:  # invalid spec
            self._status.reject(key, obj, bad.invalid, log)
            return None
        except RemapPending as pending:
            self._status.wait_for_liqo(key, obj, pending, log)
            return None  # the Configuration's update brings the key back (mapping.configuration_keys)
        except errors.ApiError:
            raise  # not the cluster's state: the worker retries it
        except Exception as err:  # invalid cluster state: any failure compiling is this peering's alone
            self._metrics.cluster_state_invalid(key)
            self._status.reject(key, obj, cluster_state_problem(err), log, err)
            return None
        if outcome.peering.spec.enforcement is Enforcement.DRY_RUN:
            return self._dry_run(key, obj, outcome, caps, log)
        self._derived.forget_report(key)
        self._metrics.dry_run(key, None)
        try:
            applied = self._firewalls.apply(key, obj, outcome, log)
        except Refused as refused:
            self._status.refused(key, obj, outcome, self._valid(outcome, caps), refused, log)
            raise refused.first from None  # the worker retries with backoff, until the cause goes
        except errors.Forbidden as err:
            if errors.namespace_terminating(err):  # the tenant namespace, the policy with it, is going
                log.info("tenant namespace being deleted: the policy and its firewalls go with it")
                return None
            self._status.forbidden(key, obj, outcome, self._valid(outcome, caps), err, log)
            raise  # the worker retries with backoff: fixing the RBAC brings it back
        # Only now: a warning said while the writes kept failing is said once, not once per retry.
        self._status.settled(key)
        if since is not None and applied.wrote:
            self._metrics.change_written(self._changes.age(since))
        self._metrics.compiled(key, outcome)
        self._metrics.firewall_objects(key, len(outcome.firewalls))
        progress = self._rollout(namespace, outcome)
        self._metrics.apply_failures(key, self._failed_nodes(progress))
        conds = valid_conditions(outcome, stateful=caps.ctstate, progress=progress) + self._notes(outcome)
        later = self._status.write(key, obj, conds, outcome, log, progress)
        return _sooner(applied.retry_after, later)

    def _dry_run(
        self, key: str, obj: Mapping[str, Any], outcome: CompiledPeering, caps: Capabilities, log: Any
    ) -> float | None:
        """DryRun: retire this policy's own firewalls as on deletion (never the enforced policy's), and say what
        enforcing would change."""
        try:
            report = self._dry_run_report(key, outcome)
        except errors.ApiError:
            raise
        except Exception as err:  # a firewall or pod the comparison cannot read: this peering's alone
            self._metrics.cluster_state_invalid(key)
            self._status.reject(key, obj, cluster_state_problem(err), log, err)
            return None
        self._status.settled(key)
        namespace, _, name = key.partition("/")
        wait = self._firewalls.remove_orphans(namespace, name, log)
        self._metrics.compiled(key, outcome)
        self._metrics.firewall_objects(key, 0)
        self._metrics.apply_failures(key, frozenset())
        self._metrics.dry_run(key, report)
        conds = dry_run_conditions(outcome, report, stateful=caps.ctstate) + self._notes(outcome)
        later = self._status.write(key, obj, conds, outcome, log, dry_run=report.to_status())
        return _sooner(wait, later)

    def _dry_run_report(self, key: str, outcome: CompiledPeering) -> DryRunReport:
        """Computed only in DryRun, and again only when the compiled outcome, the pods or the enforced firewall changed.

        What is enforced now is the firewall of the peering's enforced policy (`_enforced_now`),
        or none at all: a lone policy in DryRun retires its own (the same pass empties it, then
        deletes it).
        """
        pods = self._view.generation("Pod")
        owners, enforced = self._enforced_now(key)
        return self._derived.report(
            key,
            outcome,
            pods,
            enforced,
            lambda: report_for(
                outcome.peer,
                outcome.groups,
                self._view.list("Pod"),
                tables_of(outcome.firewalls),
                enforced,
                compared_with=enforced_by(owners, len(enforced)) if enforced else NO_FIREWALL,
            ),
        )

    def _enforced_now(self, key: str) -> tuple[list[str], list[Mapping[str, Any]]]:
        """The policies (names) and tables of the peering's firewall in force: liqosec's other FirewallConfigurations of
        the namespace, as written (the cache of those we manage), those being retired (emptied) aside.

        Normally the enforced policy's; a conflicting policy's last good firewall too, since it is in force as well.
        """
        namespace, _, name = key.partition("/")
        owners: set[str] = set()
        tables: list[tuple[str, Mapping[str, Any]]] = []
        for fc in self._view.list(FC_KIND, namespace):
            labels = _meta(fc).get("labels") or {}
            owner = labels.get(OWNER_LABEL)
            if labels.get(MANAGED_BY_LABEL) != MANAGED_BY or not owner or owner == name or retire.retiring(fc):
                continue
            owners.add(str(owner))
            tables.append((str(_meta(fc).get("name")), (fc.get("spec") or {}).get("table") or {}))
        return sorted(owners), [t for _, t in sorted(tables, key=lambda nt: nt[0])]

    def _set_finalizer(self, obj: Mapping[str, Any], *, present: bool) -> Mapping[str, Any]:
        """Our finalizer holds a deleted peering until its firewalls are retired (see `retire`).

        Returns the peering as it now is (the patch's answer), so the status written later in
        this pass carries the new resourceVersion instead of meeting a conflict.
        """
        finalizers = list(_meta(obj).get("finalizers") or ())
        if (retire.FINALIZER in finalizers) == present:
            return obj
        wanted = [*finalizers, retire.FINALIZER] if present else [f for f in finalizers if f != retire.FINALIZER]
        patch = {"metadata": {"finalizers": wanted, "resourceVersion": _meta(obj).get("resourceVersion")}}
        try:
            patched = self._client.patch(
                PEERING_CONNECTIVITIES, str(_meta(obj)["name"]), patch, namespace=str(_meta(obj).get("namespace"))
            )
        except errors.NotFound:
            return obj
        return patched if isinstance(patched, Mapping) and patched.get("metadata") else obj

    def _rollout(self, namespace: str, outcome: CompiledPeering) -> Rollout:
        """Liqo's agents' reports, from the cache: a report arriving brings this key back.

        An object a pass wrote is read from the write's answer while the cache has not seen it
        (`FirewallWriter.live`): a pod change then costs no status write saying "not written yet"
        and another taking it back, and a pass run before the echo says no such thing either.
        The hosts are Liqo's fabric pods, each tied to its node (`fabric.expected_hosts`);
        with none in the cluster, the physical nodes, as the project's test agents name themselves.
        """
        live = {
            fw["metadata"]["name"]: self._firewalls.live(fw["metadata"]["name"], namespace) for fw in outcome.firewalls
        }
        hosts = self._derived.hosts()
        if hosts.fabric:
            return rollout(outcome.firewalls, live, hosts.by_host, hosts.uncovered)
        return rollout(outcome.firewalls, live, list(hosts.by_host))

    def _failed_nodes(self, progress: Rollout) -> frozenset[str]:
        """The nodes of the hosts reporting Applied=False (a fabric pod's node; else the host is the node)."""
        by_host = self._derived.hosts().by_host
        return frozenset(by_host.get(host, host) for host in progress.failed)

    def _valid(self, outcome: CompiledPeering, caps: Capabilities) -> list[Condition]:
        """A valid policy's conditions, before any rollout: what a failed write amends."""
        return valid_conditions(outcome, stateful=caps.ctstate) + self._notes(outcome)

    def _notes(self, outcome: CompiledPeering) -> list[Condition]:
        """What Liqo's reflection settings change for this policy (`reflection`), present only when it applies."""
        return reflection.conditions(self._view, outcome.peering.spec, outcome.peer)

    def _compile(self, obj: Mapping[str, Any], caps: Capabilities) -> CompiledPeering:
        namespace, name = str(_meta(obj).get("namespace")), str(_meta(obj).get("name"))
        key = f"{namespace}/{name}"
        problem = conflict(obj, governors(self._view.list(KIND, namespace)))
        if problem is not None:
            raise _InvalidSpec(Invalid("Conflict", f"metadata.name: {problem}"))
        try:
            inputs = read_compile_inputs(self._view, parse_peering_connectivity(obj), self._scope, self._derived.hosted)
            last = self._derived.compiled(key)
            if last is not None and last[0] == inputs and last[1] == caps:
                return last[2]  # an echo of our own write, a resync, a change resolution does not read
            outcome = compile_inputs(inputs, caps)
            if inputs.hosted is not None and any(c.ports for c in inputs.clauses):
                if last is None or last[0].clauses != inputs.clauses:  # once per spec, not per pod change
                    structlog.get_logger(__name__).info(
                        "rules name ports: the peering is compiled for all nodes, not per node", peering=key
                    )
            self._derived.keep_compiled(key, inputs, caps, outcome)
            return outcome
        except ValidationError as err:
            reason = err.errors[0].reason if err.errors else "InvalidSpec"
            raise _InvalidSpec(Invalid(reason, "; ".join(str(e) for e in err.errors))) from err


def _sooner(a: float | None, b: float | None) -> float | None:
    """The earlier of two look-again delays (None: no need)."""
    return b if a is None else a if b is None else min(a, b)


class _InvalidSpec(Exception):
    def __init__(self, invalid: Invalid) -> None:
        super().__init__(invalid.message)
        self.invalid = invalid
