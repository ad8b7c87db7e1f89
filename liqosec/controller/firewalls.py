"""A peering's FirewallConfiguration writes: create or update each shard that differs, retire the rest.

Guarantees:
- Writes only what differs (`firewall_differs`); others' labels and owner references are kept
  (`merged_firewall`).
- Shards gaining rules are written first, then shards no longer wanted are retired, so a rule
  moving between shards is briefly in both (harmless: all shards drop), never in none.
- A write an admission webhook refuses does not stop the other shards; nothing is retired
  while a replacement is refused (`Refused` lists the refusals).
- A conflict is retried against a fresh read (`retry_on_conflict`); past `CONFLICT_RETRIES`
  the worker's backoff takes over.
- At most one FirewallUpdated Event per peering in `UPDATE_EVENT_SECONDS` (creates always get one).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from liqosec.api.peeringconnectivity import KIND
from liqosec.compiler.dryrun import DryRunReport
from liqosec.compiler.firewallconfiguration import FC_KIND, MANAGED_BY, MANAGED_BY_LABEL, OWNER_LABEL, CompiledPeering
from liqosec.controller import retire
from liqosec.controller.ownwrites import OwnWrites
from liqosec.controller.resources import FIREWALL_CONFIGURATIONS, StoreView
from liqosec.kube import errors
from liqosec.kube.client import JsonDict, KubeClient
from liqosec.kube.retry import Stale, retry_on_conflict

# At most one FirewallUpdated Event per peering in this many seconds (creates always get one).
UPDATE_EVENT_SECONDS = 60.0


class Recorder(Protocol):
    def event(self, obj: Mapping[str, Any], *, kind: str, reason: str, message: str, warning: bool = False) -> None: ...


class WriteMetrics(Protocol):
    def firewall_write(self, peering: str, operation: str) -> None: ...

    def firewall_noop(self, peering: str) -> None: ...

    def status_write(self, peering: str) -> None: ...

    def compiled(self, peering: str, outcome: CompiledPeering) -> None: ...

    def cluster_state_invalid(self, peering: str) -> None: ...

    def dry_run(self, peering: str, report: DryRunReport | None) -> None: ...

    def firewall_write_failed(self, peering: str, reason: str) -> None: ...

    def firewall_objects(self, peering: str, count: int) -> None: ...

    def change_written(self, seconds: float) -> None: ...

    def ready_condition(self, peering: str, status: bool, reason: str) -> None: ...

    def apply_failures(self, peering: str, nodes: frozenset[str]) -> None: ...

    def forget(self, peering: str) -> None: ...


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def write_failure(err: errors.ApiError) -> str:
    """The reason a failed firewall write is counted under (`liqosec_firewall_write_errors_total`).

    An admission webhook's refusal is `Invalid` whatever its HTTP status: controller-runtime's
    `admission.Denied` answers 403, which must not read as our RBAC.
    """
    if errors.admission_webhook(err) is not None or isinstance(err, errors.Invalid | errors.BadRequest):
        return "Invalid"
    if isinstance(err, errors.Forbidden):
        return "Forbidden"
    if isinstance(err, errors.Conflict):
        return "Conflict"
    return "Other"


def firewall_differs(live: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    """Semantic difference: spec, our labels, our owner reference. Others' additions are kept."""
    if live.get("spec") != desired.get("spec"):
        return True
    live_labels = _meta(live).get("labels") or {}
    if any(live_labels.get(k) != v for k, v in (_meta(desired).get("labels") or {}).items()):
        return True
    live_uids = {o.get("uid") for o in _meta(live).get("ownerReferences") or ()}
    return any(o.get("uid") not in live_uids for o in _meta(desired).get("ownerReferences") or ())


def rule_names(fc: Mapping[str, Any]) -> set[str]:
    chains = ((fc.get("spec") or {}).get("table") or {}).get("chains") or ()
    return {str(r.get("name")) for c in chains for r in (c.get("rules") or {}).get("filterRules") or ()}


def merged_firewall(live: Mapping[str, Any], desired: Mapping[str, Any]) -> JsonDict:
    meta = dict(_meta(live))
    meta["labels"] = {**(meta.get("labels") or {}), **(_meta(desired).get("labels") or {})}
    owners = [o for o in meta.get("ownerReferences") or () if not o.get("controller")]
    meta["ownerReferences"] = owners + list(_meta(desired).get("ownerReferences") or ())
    return {**dict(live), "metadata": meta, "spec": desired["spec"]}


class Refused(Exception):
    """Admission webhooks refused some of the peering's firewall writes (name, error), the others went through."""

    def __init__(self, refusals: list[tuple[str, errors.ApiError]]) -> None:
        super().__init__("; ".join(f"{name}: {err}" for name, err in refusals))
        self.refusals = refusals
        self.first = refusals[0][1]


@dataclass(frozen=True)
class Applied:
    """What a pass did: when to look again (a retired shard's grace), and whether it wrote any object (the
    answers themselves stand in for the cache through `FirewallWriter.live`)."""

    retry_after: float | None
    wrote: bool = False


class FirewallWriter:
    """Writes and retires one controller's FirewallConfigurations, reading the live ones from the cache.

    Holds only when each peering last had a FirewallUpdated Event (the Event rate limit).
    """

    def __init__(
        self,
        *,
        client: KubeClient,
        view: StoreView,
        recorder: Recorder,
        metrics: WriteMetrics,
        now: Callable[[], datetime],
        retire_grace: float,
        own_writes: OwnWrites,
    ) -> None:
        self._client = client
        self._own_writes = own_writes
        self._view = view
        self._recorder = recorder
        self._metrics = metrics
        self._now = now
        self._retire_grace = retire_grace
        self._update_events: dict[str, datetime] = {}  # when each peering last had a FirewallUpdated Event

    def apply(self, key: str, obj: Mapping[str, Any], outcome: CompiledPeering, log: Any) -> Applied:
        """Write every shard that differs, those gaining rules first; then retire shards no longer wanted.

        Returns whether any object was written and the seconds until a retired shard may be deleted;
        raises `Refused` when an admission webhook refused a shard (the others are written, none retired).
        """
        namespace, name = key.partition("/")[0], key.partition("/")[2]

        def gained(desired: Mapping[str, Any]) -> int:
            live = self.live(desired["metadata"]["name"], namespace)
            return len(rule_names(desired) - (rule_names(live) if live else set()))

        refused: list[tuple[str, errors.ApiError]] = []
        wrote = False
        for desired in sorted(outcome.firewalls, key=gained, reverse=True):
            try:
                live = self._apply_one(key, obj, outcome, desired, log)
            except errors.ApiError as err:
                if errors.namespace_terminating(err):
                    raise  # not a failing write: the namespace is going (the reconciler stops there)
                self._metrics.firewall_write_failed(key, write_failure(err))
                if errors.admission_webhook(err) is None:
                    raise
                refused.append((desired["metadata"]["name"], err))  # the other shards are still written
                continue
            wrote = wrote or live is not None
        if refused:
            # What is enforced stays: no firewall of the peering is retired while its replacement is refused.
            raise Refused(refused)
        keep = {fw["metadata"]["name"] for fw in outcome.firewalls}
        return Applied(self.remove_orphans(namespace, name, log, keep=keep), wrote)

    def _apply_one(
        self, key: str, obj: Mapping[str, Any], outcome: CompiledPeering, desired: Mapping[str, Any], log: Any
    ) -> Mapping[str, Any] | None:
        """Write the shard if it differs; the object as the API server answered, or None when nothing was written."""
        name, namespace = desired["metadata"]["name"], desired["metadata"]["namespace"]

        def read() -> Mapping[str, Any] | None:
            live: Mapping[str, Any] = self._client.get(FIREWALL_CONFIGURATIONS, name, namespace=namespace)
            return live

        def mutate(live: Mapping[str, Any] | None) -> tuple[str, JsonDict] | None:
            if live is None:
                return "create", dict(desired)
            return ("update", merged_firewall(live, desired)) if firewall_differs(live, desired) else None

        def write(change: tuple[str, JsonDict]) -> tuple[str, JsonDict, str | None]:
            operation, body = change
            if operation == "update":
                replaced = str(_meta(body).get("resourceVersion") or "") or None
                try:
                    return operation, self._client.update(FIREWALL_CONFIGURATIONS, body), replaced
                except errors.NotFound:
                    self._own_writes.gone(body)  # deleted behind the cache: an answer we held is no copy of it
                    raise Stale(None) from None
            try:
                return operation, self._client.create(FIREWALL_CONFIGURATIONS, body), None
            except errors.AlreadyExists:
                raise Stale(read()) from None
            except errors.ApiError as err:
                # Admission runs before the API server's own AlreadyExists check: with a stale cache,
                # Liqo's validating webhook refuses our create ("table name ... already used") of an
                # object that is there. Read it; if it is, update it, else the refusal stands.
                if errors.admission_webhook(err) is None:
                    raise
                try:
                    live = read()
                except errors.NotFound:
                    raise err from None
                raise Stale(live) from None

        def conflicted(attempt: int) -> None:
            log.info("firewall changed under us, reading it again", attempt=attempt)

        done = retry_on_conflict(
            read,
            mutate,
            write,
            current=self.live(name, namespace),
            what=f"FirewallConfiguration {namespace}/{name}",
            on_conflict=conflicted,
        )
        if done is None:
            self._metrics.firewall_noop(key)
            return None
        operation, live, replaced = done
        self._own_writes.wrote(key, live, replaced)
        self._wrote(key, obj, operation, outcome, desired, log)
        return live

    def live(self, name: str, namespace: str) -> Mapping[str, Any] | None:
        """The firewall as it is: the cache's copy, or our write's answer while the cache is behind it."""
        return self._own_writes.fresher(namespace, name, self._view.get(FC_KIND, name, namespace))

    def _wrote(
        self,
        key: str,
        obj: Mapping[str, Any],
        operation: str,
        outcome: CompiledPeering,
        desired: Mapping[str, Any],
        log: Any,
    ) -> None:
        self._metrics.firewall_write(key, operation)
        rules = len(rule_names(desired))
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

    def remove_orphans(
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
                    self._own_writes.gone(fc)  # no answer of ours may stand in for it before the watch says so
                    self._metrics.firewall_write(f"{namespace}/{name}", "delete")
                    log.info("retired firewall removed", resource=fc_name)
                    continue
            except errors.NotFound:
                continue
            except errors.Conflict:
                step = retire.Wait(0.0)  # our cached copy was stale: look again at once
            except errors.ApiError as err:
                self._metrics.firewall_write_failed(f"{namespace}/{name}", write_failure(err))
                raise
            if isinstance(step, retire.Wait):
                wait = step.seconds if wait is None else min(wait, step.seconds)
        return wait
