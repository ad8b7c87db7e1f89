"""A peering's status writes, and the Events that say the same once.

Guarantees:
- The status is written only when it differs (`desired_status`), against a fresh read after a
  conflict (`retry_on_conflict`); a peering gone meanwhile is no error.
- Figures alone (`status.FIGURES`: counts that follow every pod change) are written at most once
  per `FIGURES_REFRESH_SECONDS` per peering; `write` then says when to look again.
- One problem makes one Event, not one per pass: the last warning said per key is kept here
  (the status in the cache may lag our own write), and a message already on the status is not
  said again.

Caller duties:
- Call `settled(key)` once a pass went through, and `forget(key)` when the peering is gone, so
  the next problem is said again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from liqosec.api.peeringconnectivity import API_VERSION, KIND
from liqosec.compiler.firewallconfiguration import FC_KIND, CompiledPeering, firewall_name
from liqosec.controller.firewalls import Recorder, Refused, WriteMetrics
from liqosec.controller.resources import PEERING_CONNECTIVITIES, StoreView
from liqosec.controller.status import (
    FIGURES_REFRESH_SECONDS,
    READY,
    VALID,
    Condition,
    Rollout,
    condition,
    desired_status,
    invalid_conditions,
    only_figures_differ,
)
from liqosec.groups.view import ClusterStateError, RemapPending
from liqosec.kube import errors
from liqosec.kube.client import JsonDict, KubeClient
from liqosec.kube.retry import retry_on_conflict

INVALID_CLUSTER_STATE = "InvalidClusterState"
# Ready's reason when an admission webhook refuses a firewall write: Liqo's (its name ends in
# `.liqo.io`, e.g. firewallconfiguration.validate.liqo.io), or another's.
REFUSED_BY_LIQO, REFUSED_BY_WEBHOOK = "RefusedByLiqo", "RefusedByWebhook"
# An unexpected exception's text goes on a status condition and an Event: bounded.
MAX_ERROR_CHARS = 512


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


def _with_ready(conds: Sequence[Condition], reason: str, message: str) -> list[Condition]:
    return [c if c.type != READY else Condition(READY, False, reason, message) for c in conds]


class StatusWriter:
    """Writes PeeringConnectivity status and says each distinct problem once (an Event and a log line)."""

    def __init__(
        self,
        *,
        client: KubeClient,
        view: StoreView,
        recorder: Recorder,
        metrics: WriteMetrics,
        seconds: Callable[[], float],
    ) -> None:
        self._client = client
        self._view = view
        self._recorder = recorder
        self._metrics = metrics
        self._seconds = seconds  # the injected clock, in seconds
        # The last warning emitted per key: the status in the cache may lag our own write,
        # and one problem must make one Event, not one per pass.
        self._warned: dict[str, str] = {}
        self._written_at: dict[str, float] = {}  # when each peering's status was last written

    def settled(self, key: str) -> None:
        """The pass went through: the next problem of this peering is said again."""
        self._warned.pop(key, None)

    def forget(self, key: str) -> None:
        """The peering is gone."""
        self._warned.pop(key, None)
        self._written_at.pop(key, None)

    def write(
        self,
        key: str,
        obj: Mapping[str, Any],
        conds: list[Condition],
        outcome: CompiledPeering | None,
        log: Any,
        progress: Rollout | None = None,
        dry_run: Mapping[str, Any] | None = None,
    ) -> float | None:
        """Write the status these conditions make, if it differs from the peering's.

        Returns the seconds after which to look again when only figures differ and were
        written less than `FIGURES_REFRESH_SECONDS` ago, else None.
        """
        namespace, _, name = key.partition("/")
        later: float | None = None

        def read() -> Mapping[str, Any]:
            current: Mapping[str, Any] = self._client.get(PEERING_CONNECTIVITIES, name, namespace=namespace)
            return current

        def mutate(current: Mapping[str, Any]) -> JsonDict | None:
            status = current.get("status") or {}
            generation = int(_meta(current).get("generation") or 0)
            desired = desired_status(status, conds, generation, outcome, progress, dry_run)
            if desired == status:
                return None
            last = self._written_at.get(key)
            if last is not None and only_figures_differ(status, desired):
                wait = last + FIGURES_REFRESH_SECONDS - self._seconds()
                if wait > 0:
                    nonlocal later
                    later = wait
                    return None
            return {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "metadata": {k: v for k, v in _meta(current).items() if k in ("name", "namespace", "resourceVersion")},
                "status": desired,
            }

        def write(body: JsonDict) -> None:
            try:
                self._client.update_status(PEERING_CONNECTIVITIES, body)
            except errors.NotFound:
                return
            self._written_at[key] = self._seconds()
            self._metrics.status_write(key)

        def conflicted(attempt: int) -> None:
            log.info("peering changed under us, reading it again", attempt=attempt)

        retry_on_conflict(read, mutate, write, current=obj, what=f"{KIND} {key} status", on_conflict=conflicted)
        ready = next((c for c in conds if c.type == READY), None)
        if ready is not None:  # the status carries it now, written or already so
            self._metrics.ready_condition(key, ready.status, ready.reason)
        return later

    def _firewall_kept(self, obj: Mapping[str, Any]) -> bool:
        name, namespace = str(_meta(obj).get("name")), str(_meta(obj).get("namespace"))
        return self._view.get(FC_KIND, firewall_name(name), namespace) is not None

    def reject(
        self, key: str, obj: Mapping[str, Any], invalid: Invalid, log: Any, err: Exception | None = None
    ) -> None:
        """Say why on the status, warn once per distinct message, and leave every firewall as it is."""
        kept = self._firewall_kept(obj)
        conds = invalid_conditions(invalid.message, invalid.reason, firewall_kept=kept, cause=invalid.cause)
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
        self.write(key, obj, conds, None, log)

    def forbidden(
        self,
        key: str,
        obj: Mapping[str, Any],
        outcome: CompiledPeering,
        conds: list[Condition],
        err: errors.ApiError,
        log: Any,
    ) -> None:
        """A write our RBAC does not allow: say so where the user looks, not only in our log.

        `conds` are the valid policy's conditions; Ready becomes False with the reason.
        """
        detail = " ".join(str(err).split())[:MAX_ERROR_CHARS]
        message = (
            f"forbidden: the controller may not write the FirewallConfigurations ({detail}); "
            "check its ServiceAccount's RBAC (the chart's rbac.yaml)"
        )
        if self._warned.get(key) != message:
            log.warning("firewall write forbidden", error=detail)
            self._recorder.event(obj, kind=KIND, reason="Forbidden", message=message, warning=True)
        self._warned[key] = message
        try:
            self.write(key, obj, _with_ready(conds, "Forbidden", message), outcome, log)
        except errors.ApiError:
            pass  # the status may be forbidden too: the Event and the log remain

    def refused(
        self,
        key: str,
        obj: Mapping[str, Any],
        outcome: CompiledPeering,
        conds: list[Condition],
        refused: Refused,
        log: Any,
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
        self.write(key, obj, _with_ready(conds, reason, message), outcome, log)

    def wait_for_liqo(self, key: str, obj: Mapping[str, Any], pending: RemapPending, log: Any) -> None:
        """Liqo has not finished an object the peering needs (the peer's CIDRs not remapped yet).

        A waiting state, not a broken one: no Warning, no `liqosec_invalid_cluster_state_total`;
        one Normal Event per distinct message; the last firewall stays; no requeue (the
        Configuration's update brings the key back). Other peerings do not wait with it.
        """
        where = ": ".join(p for p in (str(pending.ref), pending.path) if p)
        kept = (
            "the last good FirewallConfiguration is kept"
            if self._firewall_kept(obj)
            else "no FirewallConfiguration is written"
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
        self.write(key, obj, conds, None, log)
