"""Wire the controller: informers -> stores -> key mapping -> queue -> workers -> API.

Guarantees:
- Workers start only once every informer has synced (a reconcile on partial
  caches could write a narrower firewall than the truth) and, with leader
  election, only while this instance leads: only the leader writes.
- Losing the lease stops the workers at once and `run` returns `LOST`, so
  the process exits and restarts clean, as controller-runtime does.
- `stop` (SIGTERM) lets in-flight reconciles finish, releases the lease and
  returns within the grace period.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog
from prometheus_client import CollectorRegistry

from liqosec.api.peeringconnectivity import KIND
from liqosec.controller.events import EventRecorder
from liqosec.controller.mapping import KeyMapper
from liqosec.controller.metrics import CONTROLLER, ControllerMetrics
from liqosec.controller.reconcile import Reconciler
from liqosec.controller.resources import StoreView, Watched, watched_resources
from liqosec.firewall.capabilities import FIREWALL_CRD_NAME, STATELESS, Capabilities, from_crd
from liqosec.kube.client import JsonDict, KubeClient
from liqosec.kube.errors import ApiError
from liqosec.kube.leaderelection import LeaderCallbacks, LeaderElector
from liqosec.kube.metrics import KubeMetrics
from liqosec.kube.queue import RateLimitingQueue
from liqosec.kube.reflector import ClientListWatch, Reflector
from liqosec.kube.store import Store

# How often `run` looks at informer sync and the stop flag while starting.
SYNC_POLL_SECONDS = 0.1
# Pods and endpoints churn in bursts (a rollout, a scale-up). Their changes
# reach the queue after this window, so a burst coalesces into a few writes of
# a large FirewallConfiguration instead of one per pod; policy changes skip it.
# Our own FirewallConfiguration writes echo back as events: batched too, so
# the echo of one write does not cut the next window short.
BATCH_SECONDS = 0.5
BATCHED_KINDS = frozenset({"Pod", "EndpointSlice", "FirewallConfiguration"})


class Exit(enum.Enum):
    STOPPED = "stopped"
    LOST = "lost-leadership"


@dataclass(frozen=True)
class Options:
    identity: str
    workers: int = 2
    resync_seconds: float = 600.0
    leader_elect: bool = True
    leader_election_namespace: str = "liqo"
    leader_election_id: str = "liqosec"
    lease_seconds: tuple[float, float, float] = field(default=(15.0, 10.0, 2.0))  # lease, renew, retry
    batch_seconds: float = BATCH_SECONDS

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError("workers must be at least 1")
        if self.batch_seconds < 0:
            raise ValueError("batch window must be >= 0 seconds")
        if self.resync_seconds < 0:
            raise ValueError("resync must be >= 0 seconds (0 disables it)")
        if not self.identity:
            raise ValueError("identity is required: leader election tells instances apart by it")


class _Enqueue:
    """Reflector handler: map each change to peering keys and queue them."""

    def __init__(self, kind: str, mapper: KeyMapper, add: Callable[[str], None]) -> None:
        self._kind, self._mapper, self._add = kind, mapper, add

    def _queue(self, old: JsonDict | None, new: JsonDict | None) -> None:
        for key in self._mapper.keys_for(self._kind, old, new):
            self._add(key)

    def on_add(self, obj: JsonDict) -> None:
        self._queue(None, obj)

    def on_update(self, old: JsonDict, new: JsonDict) -> None:
        self._queue(old, new)

    def on_delete(self, obj: JsonDict) -> None:
        self._queue(obj, None)


class Controller:
    def __init__(self, client: KubeClient, options: Options, *, registry: CollectorRegistry | None = None) -> None:
        self.options = options
        self.registry = registry or CollectorRegistry()
        self._client = client
        self._kube_metrics = KubeMetrics(self.registry)
        self.metrics = ControllerMetrics(self.registry, workers=options.workers)
        self.queue: RateLimitingQueue[str] = RateLimitingQueue(CONTROLLER, metrics_provider=self._kube_metrics)
        self.stores: dict[str, Store] = {}
        self.reflectors: list[Reflector] = []
        self.view = StoreView(self.stores)
        mapper = KeyMapper(self.view)
        for watched in watched_resources():
            self._add_informer(watched, mapper)
        self.reconciler = Reconciler(
            client=client,
            view=self.view,
            capabilities=self.capabilities,
            recorder=EventRecorder(client, instance=options.identity),
            metrics=self.metrics,
        )
        self._caps_cache: tuple[str, Capabilities] = ("", STATELESS)
        self._log = structlog.get_logger(__name__).bind(controller=CONTROLLER)
        self._leading = threading.Event()
        self._elector: LeaderElector | None = None

    def _add_informer(self, watched: Watched, mapper: KeyMapper) -> None:
        store = watched.new_store()
        self.stores[watched.kind] = store
        self.reflectors.append(
            Reflector(
                ClientListWatch(self._client, watched.ref, label_selector=watched.label_selector),
                store,
                resource=watched.ref.plural,
                resync_period=self.options.resync_seconds if watched.kind == KIND else 0.0,
                handler=_Enqueue(watched.kind, mapper, self._enqueuer(watched.kind)),
                metrics=self._kube_metrics,
            )
        )

    def _enqueuer(self, kind: str) -> Callable[[str], None]:
        if kind in BATCHED_KINDS and self.options.batch_seconds > 0:
            return lambda key: self.queue.add_after(key, self.options.batch_seconds)
        return self.queue.add

    # ----- state -----
    def synced(self) -> bool:
        return all(r.has_synced() for r in self.reflectors)

    def leading(self) -> bool:
        return self._leading.is_set()

    def capabilities(self) -> Capabilities:
        """Read from the installed FirewallConfiguration CRD, re-parsed only when it changes."""
        crd = self.stores["CustomResourceDefinition"].get(FIREWALL_CRD_NAME)
        if crd is None:
            return STATELESS
        rv = str((crd.get("metadata") or {}).get("resourceVersion") or "")
        if self._caps_cache[0] != rv:
            self._caps_cache = (rv, from_crd(crd))
        return self._caps_cache[1]

    # ----- run -----
    def run(self, stop: threading.Event) -> Exit:
        for reflector in self.reflectors:
            threading.Thread(target=reflector.run, args=(stop,), name=f"reflector-{id(reflector)}", daemon=True).start()
        while not self.synced():
            if stop.wait(SYNC_POLL_SECONDS):
                return Exit.STOPPED
        self._log.info("informers synced", resources=len(self.reflectors))
        if not self.options.leader_elect:
            self._lead(stop)
            return Exit.STOPPED
        lease, renew, retry = self.options.lease_seconds
        self._elector = LeaderElector(
            self._client,
            namespace=self.options.leader_election_namespace,
            name=self.options.leader_election_id,
            identity=self.options.identity,
            callbacks=LeaderCallbacks(
                on_started_leading=self._lead,
                on_stopped_leading=lambda: self._log.info("stopped leading"),
                on_new_leader=lambda who: self._log.info("leader observed", leader=who),
            ),
            lease_duration=lease,
            renew_deadline=renew,
            retry_period=retry,
            metrics=self._kube_metrics,
        )
        self._elector.run(stop)
        self.queue.shutdown()
        return Exit.STOPPED if stop.is_set() else Exit.LOST

    def _lead(self, leading_stop: threading.Event) -> None:
        """Work while leading: start the workers, queue every peering, stop with leadership."""
        self._leading.set()
        self._log.info("started leading", workers=self.options.workers)
        workers = [
            threading.Thread(target=self._worker, args=(leading_stop,), name=f"worker-{i}", daemon=True)
            for i in range(self.options.workers)
        ]
        for w in workers:
            w.start()
        for store_key in self.stores[KIND].keys():
            self.queue.add(store_key)
        leading_stop.wait()
        self._leading.clear()
        self.queue.shutdown_with_drain()
        for w in workers:
            w.join(timeout=10)

    def _worker(self, leading_stop: threading.Event) -> None:
        while not leading_stop.is_set():
            key, shutdown = self.queue.get()
            if shutdown or key is None:
                return
            if leading_stop.is_set():  # leadership lost between get and now: do not write
                self.queue.done(key)
                return
            self._process(key)

    def _process(self, key: str) -> None:
        started = time.monotonic()
        self.metrics.active_workers.labels(CONTROLLER).inc()
        try:
            self.reconciler.reconcile(key)
        except Exception as err:  # the top of a worker: every failure is retried with backoff
            self.queue.add_rate_limited(key)
            self.metrics.reconcile_errors.labels(CONTROLLER).inc()
            self.metrics.reconcile_total.labels(CONTROLLER, "error").inc()
            self._log.error("reconcile failed, will retry", peering=key, error=str(err),
                            attempt=self.queue.num_requeues(key), exc_info=not _expected(err))
        else:
            self.queue.forget(key)
            self.metrics.reconcile_total.labels(CONTROLLER, "success").inc()
        finally:
            self.metrics.active_workers.labels(CONTROLLER).dec()
            self.metrics.reconcile_time.labels(CONTROLLER).observe(time.monotonic() - started)
            self.queue.done(key)


def _expected(err: Exception) -> bool:
    """API failures are routine (a restart, a conflict): no traceback in the logs for them."""
    return isinstance(err, ApiError)
