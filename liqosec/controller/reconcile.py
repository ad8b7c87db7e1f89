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
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog

from liqosec.api.peeringconnectivity import API_VERSION, KIND, Enforcement
from liqosec.api.validation import ValidationError, parse_peering_connectivity
from liqosec.compiler.dryrun import NO_FIREWALL, DryRunReport, enforced_by, report_for
from liqosec.compiler.firewallconfiguration import (
    ALL_NODES,
    FC_KIND,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    OWNER_LABEL,
    Inputs,
    Outcome,
    compile_inputs,
    firewall_name,
    gather,
)
from liqosec.compiler.governance import conflict, governors
from liqosec.controller import fabric, reflection, retire
from liqosec.controller.resources import FIREWALL_CONFIGURATIONS, PEERING_CONNECTIVITIES, StoreView
from liqosec.controller.status import (
    READY,
    VALID,
    Condition,
    Rollout,
    condition,
    desired_status,
    dry_run_conditions,
    invalid_conditions,
    rollout,
    valid_conditions,
)
from liqosec.firewall.addresses import AddressSet
from liqosec.firewall.capabilities import Capabilities
from liqosec.firewall.evaluate import tables_of
from liqosec.groups.resolve import hosted_addresses
from liqosec.groups.view import ClusterStateError, RemapPending
from liqosec.kube import errors
from liqosec.kube.client import JsonDict, KubeClient

# A conflict means our cached copy was stale; a fresh read almost always
# fixes it at once. Past this, hand the key back to the rate-limited queue.
CONFLICT_RETRIES = 3
INVALID_CLUSTER_STATE = "InvalidClusterState"
# Ready's reason when an admission webhook refuses a firewall write: Liqo's (its name ends in
# `.liqo.io`, e.g. firewallconfiguration.validate.liqo.io), or another's.
REFUSED_BY_LIQO, REFUSED_BY_WEBHOOK = "RefusedByLiqo", "RefusedByWebhook"
# An unexpected exception's text goes on a status condition and an Event: bounded.
MAX_ERROR_CHARS = 512
# At most one FirewallUpdated Event per peering in this many seconds (creates always get one).
UPDATE_EVENT_SECONDS = 60.0


class Recorder(Protocol):
    def event(self, obj: Mapping[str, Any], *, kind: str, reason: str, message: str, warning: bool = False) -> None: ...


class WriteMetrics(Protocol):
    def firewall_write(self, peering: str, operation: str) -> None: ...

    def firewall_noop(self, peering: str) -> None: ...

    def status_write(self, peering: str) -> None: ...

    def compiled(self, peering: str, outcome: Outcome) -> None: ...

    def cluster_state_invalid(self, peering: str) -> None: ...

    def dry_run(self, peering: str, report: DryRunReport | None) -> None: ...


@dataclass(frozen=True)
class Invalid:
    reason: str
    message: str
    cause: str = "spec not applied"  # what the Ready condition says could not be done


def cluster_state_problem(err: Exception) -> Invalid:
    """What the status says about an object the compiler cannot use, or an unexpected failure compiling."""
    if isinstance(err, ClusterStateError):
        where = ": ".join(p for p in (str(err.ref), err.path) if p)
        message = f"{where}: {err.message}"
    else:
        text = " ".join(str(err).split())
        text = text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 3] + "..."
        message = f"compiling failed: {type(err).__name__}" + (f": {text}" if text else "")
    return Invalid(INVALID_CLUSTER_STATE, message, cause="cluster state not usable")


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def firewall_differs(live: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    """Semantic difference: spec, our labels, our owner reference. Others' additions are kept."""
    if live.get("spec") != desired.get("spec"):
        return True
    live_labels = _meta(live).get("labels") or {}
    if any(live_labels.get(k) != v for k, v in (_meta(desired).get("labels") or {}).items()):
        return True
    live_uids = {o.get("uid") for o in _meta(live).get("ownerReferences") or ()}
    return any(o.get("uid") not in live_uids for o in _meta(desired).get("ownerReferences") or ())


def _rule_names(fc: Mapping[str, Any]) -> set[str]:
    chains = ((fc.get("spec") or {}).get("table") or {}).get("chains") or ()
    return {str(r.get("name")) for c in chains for r in (c.get("rules") or {}).get("filterRules") or ()}


def merged_firewall(live: Mapping[str, Any], desired: Mapping[str, Any]) -> JsonDict:
    meta = dict(_meta(live))
    meta["labels"] = {**(meta.get("labels") or {}), **(_meta(desired).get("labels") or {})}
    owners = [o for o in meta.get("ownerReferences") or () if not o.get("controller")]
    meta["ownerReferences"] = owners + list(_meta(desired).get("ownerReferences") or ())
    return {**dict(live), "metadata": meta, "spec": desired["spec"]}


class Reconciler:
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
    ) -> None:
        self._scope = scope
        self._retire_grace = retire_grace
        self._now = now
        self._client = client
        self._view = view
        self._capabilities = capabilities
        self._recorder = recorder
        self._metrics = metrics
        # The last compile per key, reused while its inputs are equal (compiling is most of a
        # reconcile's CPU; reading the inputs is a few lookups in the caches).
        self._compiled: dict[str, tuple[Inputs, Capabilities, Outcome]] = {}
        self._update_events: dict[str, datetime] = {}  # when each peering last had a FirewallUpdated Event
        self._hosted_kept: tuple[tuple[int, int], Mapping[str, AddressSet]] | None = None
        self._hosts_kept: tuple[tuple[int, int], fabric.Hosts] | None = None
        # The last DryRun report per key, reused while its outcome, the pods and the firewall in force are the same.
        self._reports: dict[str, tuple[Outcome, int, list[Mapping[str, Any]], DryRunReport]] = {}
        # The last warning emitted per key: the status in the cache may lag our own write,
        # and one problem must make one Event, not one per pass.
        self._warned: dict[str, str] = {}

    def reconcile(self, key: str) -> float | None:
        """Make the peering's firewalls and status right; return seconds after which to look again, if any."""
        namespace, _, name = key.partition("/")
        log = structlog.get_logger(__name__).bind(peering=key)
        obj = self._view.get(KIND, name, namespace)
        if obj is None or _meta(obj).get("deletionTimestamp"):
            self._warned.pop(key, None)
            self._compiled.pop(key, None)
            self._reports.pop(key, None)
            self._metrics.dry_run(key, None)
            wait = self._remove_orphans(namespace, name, log)
            if wait is None and obj is not None:
                self._set_finalizer(obj, present=False)
            return wait
        obj = self._set_finalizer(obj, present=True)
        caps = self._capabilities()
        try:
            outcome = self._compile(obj, caps)
        except _InvalidSpec as bad:
            self._reject(key, obj, bad.invalid, log)
            return None
        except RemapPending as pending:
            self._wait_for_liqo(key, obj, pending, log)
            return None  # the Configuration's update brings the key back (mapping.configuration_keys)
        except errors.ApiError:
            raise  # not the cluster's state: the worker retries it
        except Exception as err:  # any failure compiling is this peering's alone
            self._metrics.cluster_state_invalid(key)
            self._reject(key, obj, cluster_state_problem(err), log, err)
            return None
        if outcome.peering.spec.enforcement is Enforcement.DRY_RUN:
            try:
                report = self._dry_run_report(key, outcome)
            except errors.ApiError:
                raise
            except Exception as err:  # a firewall or pod the comparison cannot read: this peering's alone
                self._metrics.cluster_state_invalid(key)
                self._reject(key, obj, cluster_state_problem(err), log, err)
                return None
            self._warned.pop(key, None)
            return self._dry_run(key, obj, outcome, report, caps, log)
        self._reports.pop(key, None)
        self._metrics.dry_run(key, None)
        try:
            wait = self._apply_firewalls(key, obj, outcome, log)
        except _Refused as refused:
            self._refused(key, obj, outcome, caps, refused, log)
            raise refused.first from None  # the worker retries with backoff, until the cause goes
        except errors.Forbidden as err:
            self._forbidden(key, obj, outcome, caps, err, log)
            raise  # the worker retries with backoff: fixing the RBAC brings it back
        # Only now: a warning said while the writes kept failing is said once, not once per retry.
        self._warned.pop(key, None)
        self._metrics.compiled(key, outcome)
        progress = self._rollout(namespace, outcome)
        conds = valid_conditions(outcome, stateful=caps.ctstate, progress=progress) + self._notes(outcome)
        self._write_status(key, obj, conds, outcome, log, progress)
        return wait

    def _dry_run(
        self, key: str, obj: Mapping[str, Any], outcome: Outcome, report: DryRunReport, caps: Capabilities, log: Any
    ) -> float | None:
        """DryRun: retire this policy's own firewalls as on deletion (never the enforced policy's), and say what
        enforcing would change."""
        namespace, _, name = key.partition("/")
        wait = self._remove_orphans(namespace, name, log)
        self._metrics.compiled(key, outcome)
        self._metrics.dry_run(key, report)
        conds = dry_run_conditions(outcome, report, stateful=caps.ctstate) + self._notes(outcome)
        self._write_status(key, obj, conds, outcome, log, dry_run=report.to_status())
        return wait

    def _dry_run_report(self, key: str, outcome: Outcome) -> DryRunReport:
        """Computed only in DryRun, and again only when the compiled outcome, the pods or the enforced firewall changed.

        What is enforced now is the firewall of the peering's enforced policy (`_enforced_now`),
        or none at all: a lone policy in DryRun retires its own (the same pass empties it, then
        deletes it).
        """
        pods = self._view.generation("Pod")
        owners, enforced = self._enforced_now(key)
        kept = self._reports.get(key)
        if kept is not None and kept[0] is outcome and kept[1] == pods and pods >= 0 and kept[2] == enforced:
            return kept[3]
        report = report_for(
            outcome.peer,
            outcome.groups,
            self._view.list("Pod"),
            tables_of(outcome.firewalls),
            enforced,
            compared_with=enforced_by(owners, len(enforced)) if enforced else NO_FIREWALL,
        )
        self._reports[key] = (outcome, pods, enforced, report)
        return report

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

    def _hosted(self, view: Any) -> Mapping[str, AddressSet]:
        """Per-node addresses, derived once per change of the pods or nodes, not once per peering."""
        stamp = (self._view.generation("Pod"), self._view.generation("Node"))
        kept = self._hosted_kept
        if kept is None or kept[0] != stamp or stamp[0] < 0:
            kept = self._hosted_kept = (stamp, hosted_addresses(view))
        return kept[1]

    def _forbidden(
        self, key: str, obj: Mapping[str, Any], outcome: Outcome, caps: Capabilities, err: errors.ApiError, log: Any
    ) -> None:
        """A write our RBAC does not allow: say so where the user looks, not only in our log."""
        detail = " ".join(str(err).split())[:MAX_ERROR_CHARS]
        message = (
            f"forbidden: the controller may not write the FirewallConfigurations ({detail}); "
            "check its ServiceAccount's RBAC (the chart's rbac.yaml)"
        )
        if self._warned.get(key) != message:
            log.warning("firewall write forbidden", error=detail)
            self._recorder.event(obj, kind=KIND, reason="Forbidden", message=message, warning=True)
        self._warned[key] = message
        conds = [
            c if c.type != READY else Condition(READY, False, "Forbidden", message)
            for c in valid_conditions(outcome, stateful=caps.ctstate) + self._notes(outcome)
        ]
        try:
            self._write_status(key, obj, conds, outcome, log)
        except errors.ApiError:
            pass  # the status may be forbidden too: the Event and the log remain

    def _refused(
        self, key: str, obj: Mapping[str, Any], outcome: Outcome, caps: Capabilities, refused: _Refused, log: Any
    ) -> None:
        """An admission webhook (Liqo's, failurePolicy Fail) refused a firewall write: say so where the user looks.

        Nothing of the peering is torn down: the other shards were written, none is retired,
        and the live firewalls stay as they were. The worker retries with the queue's backoff;
        once the cause goes (say, the old FirewallConfiguration holding the same table is deleted)
        the write goes through. The message quotes the webhook (bounded), so it stays the same
        while the cause does: one Event and one status write, not one per retry.
        """
        name, err = refused.refusals[0]
        webhook = errors.admission_webhook(err) or ""
        reason = REFUSED_BY_LIQO if webhook.endswith(".liqo.io") else REFUSED_BY_WEBHOOK
        detail = " ".join(err.message.split())
        detail = detail if len(detail) <= MAX_ERROR_CHARS else detail[: MAX_ERROR_CHARS - 3] + "..."
        others = f" (and {len(refused.refusals) - 1} more)" if len(refused.refusals) > 1 else ""
        message = (
            f"FirewallConfiguration {name}{others} not written: {detail}; "
            "the FirewallConfigurations in force are kept, and the write is retried with backoff"
        )
        if self._warned.get(key) != message:
            log.warning("firewall write refused by an admission webhook", webhook=webhook, error=detail, resource=name)
            self._recorder.event(obj, kind=KIND, reason=reason, message=message, warning=True)
        self._warned[key] = message
        conds = [
            c if c.type != READY else Condition(READY, False, reason, message)
            for c in valid_conditions(outcome, stateful=caps.ctstate) + self._notes(outcome)
        ]
        self._write_status(key, obj, conds, outcome, log)

    def _wait_for_liqo(self, key: str, obj: Mapping[str, Any], pending: RemapPending, log: Any) -> None:
        """Liqo has not finished an object the peering needs (the peer's CIDRs not remapped yet).

        A waiting state, not a broken one: no Warning, no `liqosec_invalid_cluster_state_total`;
        one Normal Event per distinct message; the last firewall stays; no requeue (the
        Configuration's update brings the key back). Other peerings do not wait with it.
        """
        where = ": ".join(p for p in (str(pending.ref), pending.path) if p)
        live = self._view.get(FC_KIND, firewall_name(str(_meta(obj).get("name"))), str(_meta(obj).get("namespace")))
        kept = (
            "the last good FirewallConfiguration is kept" if live is not None else "no FirewallConfiguration is written"
        )
        message = f"waiting for Liqo: {where}: {pending.message}; {kept}"
        conds = [
            Condition(VALID, True, "Valid", "the spec is valid; it compiles once Liqo has remapped the peer's CIDRs"),
            Condition(READY, False, RemapPending.REASON, message),
        ]
        before = condition(obj.get("status") or {}, READY)
        said = before is not None and before.get("reason") == RemapPending.REASON and before.get("message") == message
        if not said and self._warned.get(key) != message:
            log.info("peering waits for Liqo to remap the peer's CIDRs", where=where, detail=pending.message)
            self._recorder.event(obj, kind=KIND, reason=RemapPending.REASON, message=message)
        self._warned[key] = message
        self._write_status(key, obj, conds, None, log)

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

    def _rollout(self, namespace: str, outcome: Outcome) -> Rollout:
        """Liqo's agents' reports, from the cache: a report arriving brings this key back.

        The hosts are Liqo's fabric pods, each tied to its node (`fabric.expected_hosts`);
        with none in the cluster, the physical nodes, as the project's test agents name themselves.
        """
        live = {
            fw["metadata"]["name"]: self._view.get(FC_KIND, fw["metadata"]["name"], namespace)
            for fw in outcome.firewalls
        }
        hosts = self._hosts()
        if hosts.fabric:
            return rollout(outcome.firewalls, live, hosts.by_host, hosts.uncovered)
        return rollout(outcome.firewalls, live, list(hosts.by_host))

    def _notes(self, outcome: Outcome) -> list[Condition]:
        """What Liqo's reflection settings change for this policy (`reflection`), present only when it applies."""
        return reflection.conditions(self._view, outcome.peering.spec, outcome.peer)

    def _hosts(self) -> fabric.Hosts:
        """The hosts expected to apply firewalls, derived once per change of the pods or nodes."""
        stamp = (self._view.generation("Pod"), self._view.generation("Node"))
        kept = self._hosts_kept
        if kept is None or kept[0] != stamp or min(stamp) < 0:
            kept = self._hosts_kept = (stamp, fabric.expected_hosts(self._view))
        return kept[1]

    # ----- phases -----
    def _compile(self, obj: Mapping[str, Any], caps: Capabilities) -> Outcome:
        namespace, name = str(_meta(obj).get("namespace")), str(_meta(obj).get("name"))
        key = f"{namespace}/{name}"
        problem = conflict(obj, governors(self._view.list(KIND, namespace)))
        if problem is not None:
            raise _InvalidSpec(Invalid("Conflict", f"metadata.name: {problem}"))
        try:
            inputs = gather(self._view, parse_peering_connectivity(obj), self._scope, self._hosted)
            last = self._compiled.get(key)
            if last is not None and last[0] == inputs and last[1] == caps:
                return last[2]  # an echo of our own write, a resync, a change resolution does not read
            outcome = compile_inputs(inputs, caps)
            if inputs.hosted is not None and any(c.ports for c in inputs.clauses):
                if last is None or last[0].clauses != inputs.clauses:  # once per spec, not per pod change
                    structlog.get_logger(__name__).info(
                        "rules name ports: the peering is compiled for all nodes, not per node", peering=key
                    )
            self._compiled[key] = (inputs, caps, outcome)
            return outcome
        except ValidationError as err:
            reason = err.errors[0].reason if err.errors else "InvalidSpec"
            raise _InvalidSpec(Invalid(reason, "; ".join(str(e) for e in err.errors))) from err

    def _reject(
        self, key: str, obj: Mapping[str, Any], invalid: Invalid, log: Any, err: Exception | None = None
    ) -> None:
        """Say why on the status, warn once per distinct message, and leave every firewall as it is."""
        live = self._view.get(FC_KIND, firewall_name(str(_meta(obj).get("name"))), str(_meta(obj).get("namespace")))
        conds = invalid_conditions(invalid.message, invalid.reason, firewall_kept=live is not None, cause=invalid.cause)
        before = condition(obj.get("status") or {}, VALID)
        said = before is not None and before.get("status") == "False" and before.get("message") == invalid.message
        if not said and self._warned.get(key) != invalid.message:
            unexpected = err is not None and not isinstance(err, ClusterStateError)
            log.warning(
                "peering not compiled, firewall left as it was",
                reason=invalid.reason,
                error=invalid.message,
                exc_info=err if unexpected else None,
            )
            self._recorder.event(obj, kind=KIND, reason=invalid.reason, message=invalid.message, warning=True)
        self._warned[key] = invalid.message
        self._write_status(key, obj, conds, None, log)

    def _apply_firewalls(self, key: str, obj: Mapping[str, Any], outcome: Outcome, log: Any) -> float | None:
        """Write every shard that differs, those gaining rules first; then delete shards no longer wanted.

        A rule moving between shards is thus briefly in both (harmless: all shards drop), never in none.
        """
        namespace, name = key.partition("/")[0], key.partition("/")[2]

        def gained(desired: Mapping[str, Any]) -> int:
            live = self._view.get(FC_KIND, desired["metadata"]["name"], namespace)
            return len(_rule_names(desired) - (_rule_names(live) if live else set()))

        refused: list[tuple[str, errors.ApiError]] = []
        for desired in sorted(outcome.firewalls, key=gained, reverse=True):
            try:
                self._apply_firewall(key, obj, outcome, desired, log)
            except errors.ApiError as err:
                if errors.admission_webhook(err) is None:
                    raise
                refused.append((desired["metadata"]["name"], err))  # the other shards are still written
        if refused:
            # What is enforced stays: no firewall of the peering is retired while its replacement is refused.
            raise _Refused(refused)
        return self._remove_orphans(namespace, name, log, keep={fw["metadata"]["name"] for fw in outcome.firewalls})

    def _apply_firewall(
        self, key: str, obj: Mapping[str, Any], outcome: Outcome, desired: Mapping[str, Any], log: Any
    ) -> None:
        name, namespace = desired["metadata"]["name"], desired["metadata"]["namespace"]
        live = self._view.get(FC_KIND, name, namespace)
        for attempt in range(CONFLICT_RETRIES):
            if live is None:
                try:
                    self._client.create(FIREWALL_CONFIGURATIONS, dict(desired))
                except errors.AlreadyExists:
                    live = self._client.get(FIREWALL_CONFIGURATIONS, name, namespace=namespace)
                    continue
                except errors.ApiError as err:
                    # Admission runs before the API server's own AlreadyExists check: with a stale cache,
                    # Liqo's validating webhook refuses our create ("table name ... already used") of an
                    # object that is there. Read it; if it is, update it, else the refusal stands.
                    if errors.admission_webhook(err) is None:
                        raise
                    try:
                        live = self._client.get(FIREWALL_CONFIGURATIONS, name, namespace=namespace)
                    except errors.NotFound:
                        raise err from None
                    continue
                self._wrote(key, obj, "create", outcome, desired, log)
                return
            if not firewall_differs(live, desired):
                self._metrics.firewall_noop(key)
                return
            try:
                self._client.update(FIREWALL_CONFIGURATIONS, merged_firewall(live, desired))
            except errors.Conflict:
                log.info("firewall changed under us, reading it again", attempt=attempt)
                live = self._client.get(FIREWALL_CONFIGURATIONS, name, namespace=namespace)
                continue
            except errors.NotFound:
                live = None
                continue
            self._wrote(key, obj, "update", outcome, desired, log)
            return
        raise errors.Conflict(409, "Conflict", f"FirewallConfiguration {namespace}/{name} kept changing")

    def _wrote(
        self, key: str, obj: Mapping[str, Any], operation: str, outcome: Outcome, desired: Mapping[str, Any], log: Any
    ) -> None:
        self._metrics.firewall_write(key, operation)
        rules = len(_rule_names(desired))
        name = desired["metadata"]["name"]
        log.info(
            "firewall written",
            operation=operation,
            resource=name,
            rules=rules,
            shards=len(outcome.firewalls),
            bytes=outcome.size_bytes,
        )
        if operation == "update":
            # Pods churn: one Event per update would be an extra API write per pod change.
            last = self._update_events.get(key)
            now = self._now()
            if last is not None and (now - last).total_seconds() < UPDATE_EVENT_SECONDS:
                return
            self._update_events[key] = now
        message = f"FirewallConfiguration {name} {operation}d: {rules} rules"
        self._recorder.event(obj, kind=KIND, reason=f"Firewall{operation.capitalize()}d", message=message)

    def _write_status(
        self,
        key: str,
        obj: Mapping[str, Any],
        conds: list[Condition],
        outcome: Outcome | None,
        log: Any,
        progress: Rollout | None = None,
        dry_run: Mapping[str, Any] | None = None,
    ) -> None:
        current: Mapping[str, Any] = obj
        for attempt in range(CONFLICT_RETRIES):
            status = current.get("status") or {}
            generation = int(_meta(current).get("generation") or 0)
            desired = desired_status(status, conds, generation, outcome, progress, dry_run)
            if desired == status:
                return
            body = {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "metadata": {k: v for k, v in _meta(current).items() if k in ("name", "namespace", "resourceVersion")},
                "status": desired,
            }
            try:
                self._client.update_status(PEERING_CONNECTIVITIES, body)
            except errors.Conflict:
                log.info("peering changed under us, reading it again", attempt=attempt)
                namespace, _, name = key.partition("/")
                current = self._client.get(PEERING_CONNECTIVITIES, name, namespace=namespace)
                continue
            except errors.NotFound:
                return
            self._metrics.status_write(key)
            return
        raise errors.Conflict(409, "Conflict", f"{KIND} {key} status kept changing")

    def _remove_orphans(
        self, namespace: str, name: str, log: Any, keep: frozenset[str] | set[str] = frozenset()
    ) -> float | None:
        """Retire the peering's firewalls not in `keep`: empty each, then delete it after the grace.

        Returns the seconds until the next one may be deleted, or None when none is left.
        """
        wait: float | None = None
        for fc in list(self._view.by_label(FC_KIND, OWNER_LABEL, name)):
            ours = (_meta(fc).get("labels") or {}).get(MANAGED_BY_LABEL) == MANAGED_BY
            if _meta(fc).get("namespace") != namespace or not ours or _meta(fc).get("name") in keep:
                continue
            step = retire.next_step(fc, self._now(), self._retire_grace)
            fc_name = str(_meta(fc)["name"])
            try:
                if isinstance(step, retire.Neutralize):
                    self._client.update(FIREWALL_CONFIGURATIONS, step.body)
                    self._metrics.firewall_write(f"{namespace}/{name}", "retire")
                    log.info("firewall emptied before its deletion", resource=fc_name, grace=self._retire_grace)
                    step = retire.Wait(self._retire_grace)
                elif isinstance(step, retire.Delete):
                    self._client.delete(FIREWALL_CONFIGURATIONS, fc_name, namespace=namespace)
                    self._metrics.firewall_write(f"{namespace}/{name}", "delete")
                    log.info("retired firewall removed", resource=fc_name)
                    continue
            except errors.NotFound:
                continue
            except errors.Conflict:
                step = retire.Wait(0.0)  # our cached copy was stale: look again at once
            if isinstance(step, retire.Wait):
                wait = step.seconds if wait is None else min(wait, step.seconds)
        return wait


class _Refused(Exception):
    """Admission webhooks refused some of the peering's firewall writes (name, error), the others went through."""

    def __init__(self, refusals: list[tuple[str, errors.ApiError]]) -> None:
        super().__init__("; ".join(f"{name}: {err}" for name, err in refusals))
        self.refusals = refusals
        self.first = refusals[0][1]


class _InvalidSpec(Exception):
    def __init__(self, invalid: Invalid) -> None:
        super().__init__(invalid.message)
        self.invalid = invalid
