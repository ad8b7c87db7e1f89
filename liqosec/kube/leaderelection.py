"""Leader election on a ``coordination.k8s.io/v1`` Lease, after client-go's leaderelection.

Guarantees:
- At most one candidate believes it leads at a time, provided clocks advance at similar rates:
  expiry is judged only from when *this* process last saw the lease record change (local
  monotonic clock), never from timestamps written by other hosts.
- Acquire and renew are optimistic writes carrying the lease's resourceVersion; a concurrent
  writer makes ours fail with Conflict, which counts as "not acquired" (no retry storm).
- A leader that cannot renew for ``renew_deadline`` stops leading (its ``stop_event`` is set
  and ``on_stopped_leading`` runs) before its lease can expire for others
  (``lease_duration`` > ``renew_deadline``). The deadline counts from when the last successful
  renewal was *sent* and is kept by a watchdog thread, so a renewal call that hangs (a stalled
  API server, a dead connection waiting out its read timeout) cannot hold leadership past it:
  the work is stopped at the deadline whatever that call is doing (client-go bounds the renewal
  with a context timeout for the same reason).
- With ``release_on_cancel`` a leader stopped by its caller clears holderIdentity and sets
  leaseDurationSeconds=1, so a successor takes over at once instead of after expiry.

Caller duties:
- ``on_started_leading(stop_event)`` runs in its own thread and must return soon after
  ``stop_event`` is set; ``on_new_leader`` and ``on_stopped_leading`` run in the election
  thread and must not block.
- Give every candidate a unique identity (pod name, plus a random suffix if pods restart).
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import structlog

from liqosec.kube import errors
from liqosec.kube.client import LEASES, JsonDict, KubeClient
from liqosec.kube.clock import Clock, RealClock

# client-go / controller-runtime defaults. Lease 15 s: how long others wait after the last
# renewal they observed before taking over (the failover time after a crash).
LEASE_DURATION_SECONDS = 15.0
# Renew deadline 10 s: the leader gives up this long after its last successful renewal,
# comfortably before the 15 s others wait, so two leaders never overlap.
RENEW_DEADLINE_SECONDS = 10.0
# Retry 2 s: spacing of acquire/renew attempts; several tries fit inside the renew deadline.
RETRY_PERIOD_SECONDS = 2.0
# Jitter on acquire retries (client-go JitterFactor 1.2) so candidates do not collide in step;
# also the margin required between renew_deadline and retry_period.
JITTER_FACTOR = 1.2


class LeaderMetrics(Protocol):
    def leading(self, name: str, is_leader: bool) -> None: ...


class _NoopLeaderMetrics:
    def leading(self, name: str, is_leader: bool) -> None: ...


@dataclass(frozen=True)
class LeaderCallbacks:
    on_started_leading: Callable[[threading.Event], None]
    on_stopped_leading: Callable[[], None]
    on_new_leader: Callable[[str], None] = lambda identity: None


def _micro_time(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """Campaign for, hold and release one Lease."""

    def __init__(
        self,
        client: KubeClient,
        *,
        namespace: str,
        name: str,
        identity: str,
        callbacks: LeaderCallbacks,
        clock: Clock | None = None,
        lease_duration: float = LEASE_DURATION_SECONDS,
        renew_deadline: float = RENEW_DEADLINE_SECONDS,
        retry_period: float = RETRY_PERIOD_SECONDS,
        release_on_cancel: bool = True,
        metrics: LeaderMetrics | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if not identity:
            raise ValueError("identity must be non-empty: it is how leaders tell each other apart")
        if not namespace or not name:
            raise ValueError("lease namespace and name are required")
        if lease_duration <= renew_deadline:
            raise ValueError("lease_duration must exceed renew_deadline, or leaders overlap")
        if renew_deadline <= JITTER_FACTOR * retry_period:
            raise ValueError("renew_deadline must exceed JITTER_FACTOR * retry_period")
        if retry_period <= 0:
            raise ValueError("retry_period must be > 0")
        self._client = client
        self._namespace, self._name, self.identity = namespace, name, identity
        self._callbacks = callbacks
        self._clock: Clock = clock or RealClock()
        self._lease_duration = lease_duration
        self._renew_deadline = renew_deadline
        self._retry = retry_period
        self._release_on_cancel = release_on_cancel
        self._metrics: LeaderMetrics = metrics or _NoopLeaderMetrics()
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._observed_spec: dict[str, Any] | None = None
        self._observed_time = 0.0
        self._observed_rv = ""
        self._reported_leader = ""
        self._leading = False
        self._renewed_at = 0.0  # local time the last successful acquire or renewal was sent
        self._log = structlog.get_logger(__name__).bind(resource=f"lease/{namespace}/{name}")

    # ----- public -----
    def is_leader(self) -> bool:
        with self._lock:
            return self._leading

    def run(self, stop: threading.Event) -> None:
        """Campaign until leading, lead until the lease is lost or ``stop`` is set."""
        if not self._acquire(stop):
            return
        leading_stop = threading.Event()
        worker = threading.Thread(
            target=self._callbacks.on_started_leading,
            args=(leading_stop,),
            name="leader-work",
            daemon=True,
        )
        watchdog = threading.Thread(
            target=self._keep_deadline, args=(stop, leading_stop), name="lease-deadline", daemon=True
        )
        self._set_leading(True)
        worker.start()
        watchdog.start()
        try:
            self._renew(leading_stop)
        finally:
            leading_stop.set()
            if stop.is_set() and self._release_on_cancel:
                self.release()
            self._set_leading(False)
            self._callbacks.on_stopped_leading()

    def release(self) -> bool:
        """Give the lease up if we hold it (holder cleared, 1 s duration)."""
        with self._lock:
            spec, rv = self._observed_spec, self._observed_rv
        if not spec or spec.get("holderIdentity") != self.identity:
            return False
        now = _micro_time(self._clock.wall())
        released = {
            **spec,
            "holderIdentity": "",
            "leaseDurationSeconds": 1,
            "acquireTime": now,
            "renewTime": now,
        }
        try:
            self._write_update(released, rv)
        except errors.ApiError as exc:
            self._log.warning("lease release failed", error=str(exc))
            return False
        self._log.info("lease released", identity=self.identity)
        return True

    # ----- phases -----
    def _acquire(self, stop: threading.Event) -> bool:
        attempt = 0
        while not stop.is_set():
            attempt += 1
            sent = self._clock.now()
            if self.try_acquire_or_renew():
                self._renewed(sent)
                self._log.info("lease acquired", identity=self.identity, attempt=attempt)
                return True
            delay = self._retry * (1.0 + self._rng.random() * (JITTER_FACTOR - 1.0))
            self._clock.wait_event(stop, delay)
        return False

    def _renew(self, leading_stop: threading.Event) -> None:
        """Renew every retry period until leading stops: the caller's stop or the renewal deadline,
        both kept by the watchdog (``_keep_deadline``), which sets ``leading_stop``."""
        while not self._clock.wait_event(leading_stop, self._retry):
            sent = self._clock.now()
            renewed = self.try_acquire_or_renew()
            if renewed and not leading_stop.is_set():  # a success after the deadline does not count
                self._renewed(sent)

    def _keep_deadline(self, stop: threading.Event, leading_stop: threading.Event) -> None:
        """The watchdog: end leading at the caller's stop or at the renewal deadline, whatever the
        election thread is doing (a renewal call may hang for its whole read timeout)."""
        while not leading_stop.is_set():
            if self._deadline_passed():
                self._log.warning("lease not renewed by the renewal deadline, stopping leading", identity=self.identity)
                self._set_leading(False)
                leading_stop.set()
                return
            with self._lock:
                left = self._renewed_at + self._renew_deadline - self._clock.now()
            if self._clock.wait_event(stop, min(max(left, 0.0), self._retry)):
                leading_stop.set()
                return

    def _renewed(self, sent: float) -> None:
        """A renewal sent at ``sent`` succeeded: others count the lease from no earlier than that."""
        with self._lock:
            self._renewed_at = max(self._renewed_at, sent)

    def _deadline_passed(self) -> bool:
        with self._lock:
            return self._clock.now() - self._renewed_at >= self._renew_deadline

    # ----- one attempt -----
    def try_acquire_or_renew(self) -> bool:
        """One acquire-or-renew round trip; True when we hold the lease afterwards."""
        now_wall = _micro_time(self._clock.wall())
        try:
            lease = self._client.get(LEASES, self._name, namespace=self._namespace)
        except errors.NotFound:
            return self._create(now_wall)
        except errors.ApiError as exc:
            self._log.warning("lease read failed", error=str(exc))
            return False
        spec: dict[str, Any] = dict(lease.get("spec") or {})
        rv = str((lease.get("metadata") or {}).get("resourceVersion") or "")
        self._observe(spec, rv)
        holder = str(spec.get("holderIdentity") or "")
        if holder and holder != self.identity and not self._observed_expired():
            return False
        if holder == self.identity:
            desired = {**spec, "renewTime": now_wall, "leaseDurationSeconds": int(self._lease_duration)}
        else:
            desired = {
                **spec,
                "holderIdentity": self.identity,
                "acquireTime": now_wall,
                "renewTime": now_wall,
                "leaseDurationSeconds": int(self._lease_duration),
                "leaseTransitions": int(spec.get("leaseTransitions") or 0) + 1,
            }
        try:
            self._write_update(desired, rv)
        except errors.ApiError as exc:  # Conflict: someone else wrote first; not acquired
            self._log.info("lease update failed", error=str(exc), rv=rv)
            return False
        return True

    def _create(self, now_wall: str) -> bool:
        spec = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(self._lease_duration),
            "acquireTime": now_wall,
            "renewTime": now_wall,
            "leaseTransitions": 0,
        }
        body: JsonDict = {
            "apiVersion": LEASES.api_version,
            "kind": LEASES.kind,
            "metadata": {"name": self._name, "namespace": self._namespace},
            "spec": spec,
        }
        try:
            created = self._client.create(LEASES, body, namespace=self._namespace)
        except errors.ApiError as exc:  # AlreadyExists: another candidate created it first
            self._log.info("lease create failed", error=str(exc))
            return False
        self._observe(spec, str((created.get("metadata") or {}).get("resourceVersion") or ""))
        return True

    def _write_update(self, spec: dict[str, Any], rv: str) -> None:
        body: JsonDict = {
            "apiVersion": LEASES.api_version,
            "kind": LEASES.kind,
            "metadata": {"name": self._name, "namespace": self._namespace, "resourceVersion": rv},
            "spec": spec,
        }
        updated = self._client.update(LEASES, body)
        self._observe(spec, str((updated.get("metadata") or {}).get("resourceVersion") or ""))

    # ----- observation (local clock only) -----
    def _observe(self, spec: dict[str, Any], rv: str) -> None:
        with self._lock:
            changed = spec != self._observed_spec
            if changed:
                self._observed_spec = spec
                self._observed_time = self._clock.now()
            self._observed_rv = rv
        holder = str(spec.get("holderIdentity") or "")
        if changed and holder and holder != self._reported_leader:
            self._reported_leader = holder
            self._log.info("new leader observed", identity=holder)
            self._callbacks.on_new_leader(holder)

    def _observed_expired(self) -> bool:
        with self._lock:
            duration = float((self._observed_spec or {}).get("leaseDurationSeconds") or self._lease_duration)
            return self._observed_time + duration <= self._clock.now()

    def _set_leading(self, leading: bool) -> None:
        with self._lock:
            changed, self._leading = self._leading != leading, leading
        if changed:
            self._metrics.leading(self._name, leading)
