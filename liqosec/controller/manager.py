"""Wire the controller: informers -> stores -> key mapping -> queue -> workers -> API.

Guarantees:
- Nothing is listed before the CRDs of the watched custom kinds are installed
  (`Watched.crd`): until then the controller runs, is not ready (`/readyz`
  says which CRDs it waits for), logs one error naming them and what to
  install, and emits a Warning Event on its own Pod when it knows it (POD_NAME,
  POD_NAMESPACE). It does not exit: a crash loop would not install a CRD, and
  the CRD landing later (Helm installs CRDs first, but `kubectl apply -k` may
  not) starts it without a restart.
- An optional kind (`Watched.optional`: Liqo's VirtualNode, read only for a
  status note) never holds the start or readiness back: its informer starts
  once its CRD is installed, whenever that is.
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
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog
from prometheus_client import CollectorRegistry

from liqosec.api.peeringconnectivity import KIND
from liqosec.compiler.firewallconfiguration import ALL_NODES, FC_KIND, PER_NODE
from liqosec.controller import retire
from liqosec.controller.caches import CrdCapabilities, DesiredSpecs
from liqosec.controller.changetimes import ChangeTimes
from liqosec.controller.events import EventRecorder
from liqosec.controller.mapping import KeyMapper, Mapper
from liqosec.controller.metrics import CONTROLLER, ControllerMetrics
from liqosec.controller.ownwrites import OwnWrites
from liqosec.controller.reconcile import Reconciler
from liqosec.controller.resources import CRDS, StoreView, Watched, watched_resources
from liqosec.firewall.capabilities import Capabilities
from liqosec.kube.client import JsonDict, KubeClient
from liqosec.kube.clock import Clock, RealClock
from liqosec.kube.errors import ApiError
from liqosec.kube.leaderelection import LeaderCallbacks, LeaderElector
from liqosec.kube.metrics import KubeMetrics
from liqosec.kube.queue import RateLimitingQueue
from liqosec.kube.reflector import ClientListWatch, Reflector
from liqosec.kube.store import Store

# How often `run` looks at informer sync and the stop flag while starting.
SYNC_POLL_SECONDS = 0.01
# How often an optional kind's missing CRD is looked for in the CRD informer's cache.
OPTIONAL_POLL_SECONDS = 0.5
# Pods and endpoints churn in bursts (a rollout, a scale-up). Their changes are
# coalesced per peering (the queue's `add_coalesced`): a change is reconciled at
# once unless the peering is being reconciled or the changes come as a burst (four
# or more within QUIET_SECONDS); then it is held until the peering has been quiet
# for QUIET_SECONDS, or for at most the window since the first held change. A
# burst thus costs a write at its start, one per window while it lasts and one at
# its end, whatever its length; steady churn and isolated changes wait for
# nothing. Policy changes skip it.
# FirewallConfiguration events (echoes of our writes, agents' Applied reports)
# follow: inside a held burst they wait for its release, without extending it;
# otherwise they are reconciled at once (cheap: the inputs did not change), so
# Ready moves on without starting a burst of their own.
BATCH_SECONDS = 5.0  # `--batch-window auto`: the longest a change waits while a burst goes on
QUIET_SECONDS = 0.2  # a burst ends after this long without a change
BATCHED_KINDS = frozenset({"Pod", "EndpointSlice", "FirewallConfiguration"})


class Exit(enum.Enum):
    STOPPED = "stopped"
    LOST = "lost-leadership"


@dataclass(frozen=True)
class Options:
    identity: str
    workers: int = 4
    resync_seconds: float = 600.0
    leader_elect: bool = True
    leader_election_namespace: str = "liqo"
    leader_election_id: str = "liqosec"
    lease_seconds: tuple[float, float, float] = field(default=(15.0, 10.0, 2.0))  # lease, renew, retry
    batch_seconds: float | None = None  # None: auto (BATCH_SECONDS); 0: every change at once, no window
    pod: tuple[str, str] | None = None  # (namespace, name) of this instance's Pod: Events about the controller go there
    retire_grace_seconds: float = retire.GRACE_SECONDS  # an emptied firewall's wait before its deletion
    firewall_scope: str = ALL_NODES  # or PER_NODE: one firewall per node (--firewall-scope)

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError("workers must be at least 1")
        if self.batch_seconds is not None and self.batch_seconds < 0:
            raise ValueError("batch window must be >= 0 seconds")
        if self.resync_seconds < 0:
            raise ValueError("resync must be >= 0 seconds (0 disables it)")
        if self.firewall_scope not in (ALL_NODES, PER_NODE):
            raise ValueError(f"firewall scope must be {ALL_NODES} or {PER_NODE}")
        if self.retire_grace_seconds < 0:
            raise ValueError("retire grace must be >= 0 seconds")
        if not self.identity:
            raise ValueError("identity is required: leader election tells instances apart by it")


class _QueueAffectedPeerings:
    """Reflector handler: map each change to peering keys (the kind's declared mapper) and queue them."""

    def __init__(
        self,
        kind: str,
        mapper: Mapper,
        keys: KeyMapper,
        add: Callable[[str], None],
        *,
        own: OwnWrites | None = None,
        changes: ChangeTimes | None = None,
    ) -> None:
        self._kind, self._mapper, self._keys, self._add = kind, mapper, keys, add
        self._own = own  # firewalls: versions our own passes wrote (their writer needs no echo)
        self._changes = changes  # inputs' kinds: when each key's inputs changed (not firewalls: their own output)

    def _queue(self, old: JsonDict | None, new: JsonDict | None) -> None:
        try:
            found = self._keys.keys(self._mapper, old, new)
        except Exception as err:  # a mapper that cannot read an object cannot say whom it affects
            # Wake every peering: those that read the object then report it on their status.
            structlog.get_logger(__name__).warning(
                "change not mapped, re-checking every peering", kind=self._kind, error=f"{type(err).__name__}: {err}"
            )
            found = self._keys.all_keys()
        if self._own is not None:
            if new is None and old is not None:
                self._own.gone(old)
            elif new is not None:
                self._own.seen(new)
                if (writer := self._own.writer_of(new)) is not None:
                    found = set(found) - {writer}
        for key in found:
            if self._changes is not None:
                self._changes.changed(key)
            self._add(key)

    def on_add(self, obj: JsonDict) -> None:
        self._queue(None, obj)

    def on_update(self, old: JsonDict, new: JsonDict) -> None:
        self._queue(old, new)

    def on_delete(self, obj: JsonDict) -> None:
        self._queue(obj, None)


class Controller:
    """The controller: informers feeding a rate-limited queue of peering keys, workers reconciling them, and
    leader election deciding which instance writes.

    Built as sample-controller's `NewController`: the client, the options, and optionally the
    metrics registry, the clock (every reflector, the queue, the leader elector, the reconciler
    and the reconcile timing read it) and the queue itself, so a test can drive it all on fake time.
    """

    def __init__(
        self,
        client: KubeClient,
        options: Options,
        *,
        registry: CollectorRegistry | None = None,
        clock: Clock | None = None,
        queue: RateLimitingQueue[str] | None = None,
    ) -> None:
        self.options = options
        self.clock: Clock = clock or RealClock()
        self.registry = registry or CollectorRegistry()
        self._client = client
        self._kube_metrics = KubeMetrics(self.registry)
        self.metrics = ControllerMetrics(self.registry, workers=options.workers)
        self.queue: RateLimitingQueue[str] = queue or RateLimitingQueue(
            CONTROLLER, clock=self.clock, metrics_provider=self._kube_metrics
        )
        self.stores: dict[str, Store] = {}
        self.reflectors: list[Reflector] = []
        self._reflector_of: dict[str, Reflector] = {}
        # The specs last compiled: the FirewallConfiguration cache stores them in place of equal copies.
        self.desired = DesiredSpecs()
        self.watched = watched_resources(self.desired.share)
        self.view = StoreView(self.stores)
        keys = KeyMapper(self.view, per_node=options.firewall_scope == PER_NODE)
        self._own_writes = OwnWrites()
        self._changes = ChangeTimes(self.clock.now)
        for watched in self.watched:
            self._add_informer(watched, keys)
        self._recorder = EventRecorder(client, instance=options.identity)
        self.reconciler = Reconciler(
            client=client,
            view=self.view,
            capabilities=self.capabilities,
            recorder=self._recorder,
            metrics=self.metrics,
            retire_grace=options.retire_grace_seconds,
            now=self.clock.wall,
            scope=options.firewall_scope,
            own_writes=self._own_writes,
            desired=self.desired,
            changes=self._changes,
        )
        self._capabilities = CrdCapabilities(self.stores[CRDS.kind])
        self._missing_crds: tuple[str, ...] = ()
        self._started: set[str] = set()  # kinds whose informer runs (an optional one waits for its CRD)
        self._log = structlog.get_logger(__name__).bind(controller=CONTROLLER)
        self._leading = threading.Event()
        self._elector: LeaderElector | None = None

    def _add_informer(self, watched: Watched, keys: KeyMapper) -> None:
        store = watched.new_store()
        self.stores[watched.kind] = store
        reflector = Reflector(
            ClientListWatch(self._client, watched.ref, label_selector=watched.label_selector),
            store,
            resource=watched.ref.plural,
            resync_period=self.options.resync_seconds if watched.kind == KIND else 0.0,
            handler=_QueueAffectedPeerings(
                watched.kind,
                watched.mapper,
                keys,
                self._enqueuer(watched.kind),
                own=self._own_writes if watched.kind == FC_KIND else None,
                changes=None if watched.kind == FC_KIND else self._changes,
            ),
            metrics=self._kube_metrics,
            clock=self.clock,
        )
        self.reflectors.append(reflector)
        self._reflector_of[watched.kind] = reflector

    def _enqueuer(self, kind: str) -> Callable[[str], None]:
        window = self.batch_window()
        if kind in BATCHED_KINDS and window > 0:
            follow = kind == "FirewallConfiguration"  # echoes and agents' reports: not news
            return lambda key: self.queue.add_coalesced(key, min(QUIET_SECONDS, window), window, follow=follow)
        return self.queue.add

    def batch_window(self) -> float:
        """Seconds of the leading/trailing-edge window for pod, endpoint and firewall changes."""
        return BATCH_SECONDS if self.options.batch_seconds is None else self.options.batch_seconds

    # ----- state -----
    def synced(self) -> bool:
        return all(r.has_synced() for kind, r in self._reflector_of.items() if self._counts(kind))

    def _counts(self, kind: str) -> bool:
        """Whether readiness waits for this kind's informer: every kind, an optional one only once started."""
        return kind in self._started or not self._optional(kind)

    def _optional(self, kind: str) -> bool:
        return any(w.optional for w in self.watched if w.kind == kind)

    def not_ready_reason(self) -> str:
        """Why `/readyz` fails, for a human; empty once every informer has synced."""
        if self._missing_crds:
            return f"waiting for CustomResourceDefinitions: {', '.join(self._missing_crds)}"
        pending = [w.kind for w in self.watched if self._counts(w.kind) and not self._reflector_of[w.kind].has_synced()]
        return f"informers not synced: {', '.join(pending)}" if pending else ""

    def missing_crds(self) -> tuple[str, ...]:
        """The CRDs of watched kinds the API server does not have (read from the CRD informer's cache)."""
        crds = self.stores[CRDS.kind]
        return tuple(w.crd for w in self.watched if w.crd and not w.optional and crds.get(w.crd) is None)

    def leading(self) -> bool:
        return self._leading.is_set()

    def capabilities(self) -> Capabilities:
        """Read from the installed FirewallConfiguration CRD, re-parsed only when it changes."""
        return self._capabilities()

    # ----- run -----
    def run(self, stop: threading.Event) -> Exit:
        crd_reflector = self._reflector_of[CRDS.kind]
        _start(crd_reflector, stop)
        if not self._wait_for_crds(crd_reflector, stop):
            return Exit.STOPPED
        crds = self.stores[CRDS.kind]
        later = []
        for watched in self.watched:
            if watched.kind == CRDS.kind:
                continue
            if watched.optional and watched.crd and crds.get(watched.crd) is None:
                later.append(watched)  # started once its CRD is installed; nothing waits for it
                continue
            self._started.add(watched.kind)
            _start(self._reflector_of[watched.kind], stop)
        if later:
            threading.Thread(
                target=self._start_when_installed, args=(later, stop), name="optional", daemon=True
            ).start()
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
            clock=self.clock,
        )
        self._elector.run(stop)
        self.queue.shutdown()
        return Exit.STOPPED if stop.is_set() else Exit.LOST

    def _wait_for_crds(self, crd_reflector: Reflector, stop: threading.Event) -> bool:
        """Block until every watched custom kind's CRD is installed; False when stopped first."""
        while not crd_reflector.has_synced():
            if stop.wait(SYNC_POLL_SECONDS):
                return False
        reported: tuple[str, ...] = ()
        while missing := self.missing_crds():
            self._missing_crds = missing
            if missing != reported:
                _report_missing(missing, self._recorder, self.options.pod)
                reported = missing
            if stop.wait(SYNC_POLL_SECONDS):
                return False
        if reported:
            self._log.info("CustomResourceDefinitions installed, starting", crds=list(reported))
        self._missing_crds = ()
        return True

    def _start_when_installed(self, waiting: list[Watched], stop: threading.Event) -> None:
        """Start each optional kind's informer once its CRD shows up in the CRD informer's cache."""
        crds = self.stores[CRDS.kind]
        while waiting and not stop.wait(OPTIONAL_POLL_SECONDS):
            for watched in [w for w in waiting if w.crd and crds.get(w.crd) is not None]:
                self._log.info("optional CustomResourceDefinition installed, watching it", crd=watched.crd)
                self._started.add(watched.kind)
                _start(self._reflector_of[watched.kind], stop)
                waiting.remove(watched)

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
        started = self.clock.now()
        self.metrics.active_workers.labels(CONTROLLER).inc()
        try:
            again = self.reconciler.reconcile(key)
        except Exception as err:  # the top of a worker: every failure is retried with backoff
            self.queue.add_rate_limited(key)
            self.metrics.reconcile_errors.labels(CONTROLLER).inc()
            self.metrics.reconcile_total.labels(CONTROLLER, "error").inc()
            self._log.error(
                "reconcile failed, will retry",
                peering=key,
                error=str(err),
                attempt=self.queue.num_requeues(key),
                exc_info=not _expected(err),
            )
        else:
            self.queue.forget(key)
            if again is not None:  # a firewall being retired: look again once its grace is over
                self.queue.add_after(key, again)
                self.metrics.reconcile_total.labels(CONTROLLER, "requeue_after").inc()
            else:
                self.metrics.reconcile_total.labels(CONTROLLER, "success").inc()
        finally:
            self.metrics.active_workers.labels(CONTROLLER).dec()
            self.metrics.reconcile_time.labels(CONTROLLER).observe(self.clock.now() - started)
            self.queue.done(key)


def _start(reflector: Reflector, stop: threading.Event) -> None:
    threading.Thread(target=reflector.run, args=(stop,), name=f"reflector-{id(reflector)}", daemon=True).start()


def _report_missing(missing: tuple[str, ...], recorder: EventRecorder, pod: tuple[str, str] | None) -> None:
    """Log which CRDs are missing and, when we know our Pod, say it in an Event on it."""
    message = missing_crds_message(missing)
    structlog.get_logger(__name__).bind(controller=CONTROLLER).error(message, missing=list(missing))
    if pod is not None:
        namespace, name = pod
        recorder.event(
            {"metadata": {"namespace": namespace, "name": name}},
            kind="Pod",
            api_version="v1",
            reason="CustomResourceDefinitionMissing",
            message=message,
            warning=True,
        )


def missing_crds_message(missing: tuple[str, ...]) -> str:
    """One line naming what to install: liqosec's own CRD, or Liqo's."""
    ours = [c for c in missing if c.endswith(".security.liqo.io")]
    liqos = [c for c in missing if c not in ours]
    todo = []
    if ours:
        todo.append(f"install liqosec's CRD ({', '.join(ours)}: kubectl apply -f manifests/crds/, or the Helm chart)")
    if liqos:
        todo.append(f"install Liqo, whose CRDs liqosec reads ({', '.join(liqos)})")
    return "CustomResourceDefinitions missing, not ready until they are installed: " + "; ".join(todo)


def _expected(err: Exception) -> bool:
    """API failures are routine (a restart, a conflict): no traceback in the logs for them."""
    return isinstance(err, ApiError)
