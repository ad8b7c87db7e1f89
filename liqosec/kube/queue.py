"""Work queues with client-go semantics, in three layers: base, delaying, rate-limited.

Guarantees (``WorkQueue``):
- Fair: items are handed out in the order they were added (FIFO).
- Stingy: an item added several times before it is processed is processed once (coalesced).
- Exclusive: an item is never handed to two workers at once. An ``add`` while the item is being
  processed marks it dirty; ``done`` puts it back on the queue, so the change is not lost.
- ``shutdown`` ignores later adds and wakes every ``get``; ``get`` keeps handing out what is
  still queued and reports shutdown once the queue is empty. ``shutdown_with_drain``
  additionally blocks until every item handed out has been marked ``done``.
``DelayingQueue`` adds ``add_after(item, seconds)`` on the injected clock (an item waiting
twice keeps the earlier time). ``add_coalesced(item, quiet, cap)`` adapts: a change to an item is added at once
unless the item is being processed or the changes come as a burst (several within ``quiet``
seconds); then it is held until ``quiet`` seconds pass without a change, or ``cap`` seconds after
the first held change. A burst of any length costs a hand-out at its start, one per ``cap`` while
it lasts and one at its end; steady changes slower than a burst wait for nothing.
``RateLimitingQueue`` adds ``add_rate_limited``/``forget``/``num_requeues`` over a ``RateLimiter``.

Caller duties:
- Call ``done(item)`` after every ``get()`` that returned an item, even when processing fails.
- Call ``forget(item)`` on success with a rate-limited queue, or its backoff keeps growing.
- Items must be hashable and immutable (use keys, not objects).
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections import deque
from collections.abc import Hashable
from typing import Generic, Protocol, TypeVar

from liqosec.kube.clock import Clock, RealClock
from liqosec.kube.ratelimit import RateLimiter, default_controller_rate_limiter

T = TypeVar("T", bound=Hashable)

# How often unfinished-work and longest-running-processor gauges are refreshed (client-go: 500 ms):
# they measure stuck workers, so sub-second freshness is plenty.
UNFINISHED_WORK_UPDATE_PERIOD = 0.5
# The delaying loop re-checks at least this often even with nothing due, as client-go's maxWait,
# so a missed wake-up can never strand a due item for long.
MAX_DELAY_LOOP_WAIT = 10.0


class CounterMetric(Protocol):
    def inc(self) -> None: ...


class GaugeMetric(Protocol):
    def inc(self) -> None: ...

    def dec(self) -> None: ...


class SettableGaugeMetric(Protocol):
    def set(self, value: float) -> None: ...


class HistogramMetric(Protocol):
    def observe(self, value: float) -> None: ...


class MetricsProvider(Protocol):
    """Creates per-queue metrics (client-go's ``workqueue.MetricsProvider``)."""

    def new_depth_metric(self, name: str) -> GaugeMetric: ...

    def new_adds_metric(self, name: str) -> CounterMetric: ...

    def new_latency_metric(self, name: str) -> HistogramMetric: ...

    def new_work_duration_metric(self, name: str) -> HistogramMetric: ...

    def new_unfinished_work_seconds_metric(self, name: str) -> SettableGaugeMetric: ...

    def new_longest_running_processor_seconds_metric(self, name: str) -> SettableGaugeMetric: ...

    def new_retries_metric(self, name: str) -> CounterMetric: ...


class _NoopMetric:
    def inc(self) -> None: ...

    def dec(self) -> None: ...

    def set(self, value: float) -> None: ...

    def observe(self, value: float) -> None: ...


class NoopMetricsProvider:
    def _noop(self, name: str) -> _NoopMetric:
        return _NoopMetric()

    new_depth_metric = new_adds_metric = new_latency_metric = new_work_duration_metric = _noop
    new_unfinished_work_seconds_metric = new_longest_running_processor_seconds_metric = _noop
    new_retries_metric = _noop


class _QueueMetrics(Generic[T]):
    """Per-queue bookkeeping; called with the queue lock held."""

    def __init__(self, name: str, provider: MetricsProvider, clock: Clock) -> None:
        self._clock = clock
        self.depth = provider.new_depth_metric(name)
        self.adds = provider.new_adds_metric(name)
        self.latency = provider.new_latency_metric(name)
        self.work_duration = provider.new_work_duration_metric(name)
        self.unfinished = provider.new_unfinished_work_seconds_metric(name)
        self.longest = provider.new_longest_running_processor_seconds_metric(name)
        self.retries = provider.new_retries_metric(name)
        self._added_at: dict[T, float] = {}
        self._started_at: dict[T, float] = {}

    def on_add(self, item: T) -> None:
        self.adds.inc()
        self._added_at.setdefault(item, self._clock.now())

    def on_enqueue(self) -> None:
        self.depth.inc()

    def on_get(self, item: T) -> None:
        now = self._clock.now()
        self.depth.dec()
        added = self._added_at.pop(item, None)
        if added is not None:
            self.latency.observe(now - added)
        self._started_at[item] = now

    def on_done(self, item: T) -> None:
        started = self._started_at.pop(item, None)
        if started is not None:
            self.work_duration.observe(self._clock.now() - started)

    def update_unfinished(self) -> None:
        now = self._clock.now()
        ages = [now - t for t in self._started_at.values()]
        self.unfinished.set(sum(ages))
        self.longest.set(max(ages, default=0.0))


class WorkQueue(Generic[T]):
    """FIFO, coalescing, one-worker-per-item queue (client-go ``workqueue.Type``)."""

    def __init__(
        self,
        name: str = "",
        *,
        clock: Clock | None = None,
        metrics_provider: MetricsProvider | None = None,
    ) -> None:
        self.name = name
        self._clock: Clock = clock or RealClock()
        self._cond = threading.Condition()
        self._queue: deque[T] = deque()
        self._dirty: set[T] = set()  # queued or re-queue-on-done: the coalescing set
        self._processing: set[T] = set()
        self._shutting_down = False
        self._drain = False
        self._metrics: _QueueMetrics[T] = _QueueMetrics(name, metrics_provider or NoopMetricsProvider(), self._clock)
        self._stop_metrics = threading.Event()
        if metrics_provider is not None:
            threading.Thread(target=self._metrics_loop, name=f"workqueue-metrics-{name}", daemon=True).start()

    def add(self, item: T) -> None:
        with self._cond:
            if self._shutting_down or item in self._dirty:
                return
            self._dirty.add(item)
            self._metrics.on_add(item)
            if item in self._processing:
                return  # re-queued by done(): never two workers on one item
            self._queue.append(item)
            self._metrics.on_enqueue()
            self._cond.notify()

    def get(self) -> tuple[T | None, bool]:
        """Block for the next item; ``(None, True)`` once shut down and empty."""
        with self._cond:
            while not self._queue and not self._shutting_down:
                self._cond.wait()
            if not self._queue:
                return None, True
            item = self._queue.popleft()
            self._metrics.on_get(item)
            self._processing.add(item)
            self._dirty.discard(item)
            return item, False

    def done(self, item: T) -> None:
        with self._cond:
            self._metrics.on_done(item)
            self._processing.discard(item)
            if item in self._dirty:
                self._queue.append(item)
                self._metrics.on_enqueue()
                self._cond.notify()
            elif not self._processing:
                self._cond.notify_all()  # wakes shutdown_with_drain

    def __len__(self) -> int:
        with self._cond:
            return len(self._queue)

    def shutdown(self) -> None:
        with self._cond:
            self._shutting_down = True
            self._cond.notify_all()
        self._stop_metrics.set()

    def shutdown_with_drain(self) -> None:
        """Shut down, then block until every handed-out item is ``done``."""
        with self._cond:
            self._shutting_down = True
            self._drain = True
            self._cond.notify_all()
            while self._processing and self._drain:
                self._cond.wait()
        self._stop_metrics.set()

    def shutting_down(self) -> bool:
        with self._cond:
            return self._shutting_down

    def _metrics_loop(self) -> None:
        while not self._clock.wait_event(self._stop_metrics, UNFINISHED_WORK_UPDATE_PERIOD):
            with self._cond:
                self._metrics.update_unfinished()


class DelayingQueue(WorkQueue[T]):
    """A ``WorkQueue`` whose items can be added after a delay on the injected clock."""

    def __init__(
        self,
        name: str = "",
        *,
        clock: Clock | None = None,
        metrics_provider: MetricsProvider | None = None,
    ) -> None:
        super().__init__(name, clock=clock, metrics_provider=metrics_provider)
        self._delay_cond = threading.Condition()
        self._ready_at: dict[T, float] = {}
        self._heap: list[tuple[float, int, T]] = []
        self._seq = itertools.count()  # heap tie-break: items need not be orderable
        # add_coalesced: held items -> (first held change, last change, quiet, cap); their own heap;
        # each item's latest change times (to tell a burst)
        self._recent: dict[T, list[float]] = {}
        self._held: dict[T, tuple[float, float, float, float]] = {}
        self._held_heap: list[tuple[float, int, T]] = []
        self._delay_thread = threading.Thread(target=self._delay_loop, name=f"workqueue-delay-{name}", daemon=True)
        self._delay_thread.start()

    def add_after(self, item: T, seconds: float) -> None:
        if self.shutting_down():
            return
        self._metrics.retries.inc()
        if seconds <= 0:
            self.add(item)
            return
        with self._delay_cond:
            ready = self._clock.now() + seconds
            current = self._ready_at.get(item)
            if current is not None and current <= ready:
                return
            self._ready_at[item] = ready
            heapq.heappush(self._heap, (ready, next(self._seq), item))
            self._delay_cond.notify()

    def add_coalesced(self, item: T, quiet: float, cap: float, *, burst: int = 4, follow: bool = False) -> None:
        """At once unless ``item`` is being processed or in a burst; then held (see module doc).

        A burst is ``burst`` changes or more within ``quiet`` seconds. A change arriving while the
        item is processed is held too: with what follows it, it makes the next pass. ``follow``:
        a consequence of earlier work (an echo of our own write), not news: it joins a held burst
        without extending it, and otherwise is added at once.
        """
        if cap <= 0:
            self.add(item)
            return
        quiet = min(quiet, cap)
        with self._delay_cond:
            now = self._clock.now()
            held = self._held.get(item)
            if follow:
                if held is not None:
                    return  # the burst's release reads everything, this included
            else:
                recent = [t for t in self._recent.get(item, ()) if t > now - quiet][-(burst - 1) :] + [now]
                self._recent[item] = recent
                if len(self._recent) > 1024:  # forget items quiet for a while
                    self._recent = {k: v for k, v in self._recent.items() if v[-1] > now - quiet}
                with self._cond:  # lock order: delay_cond then cond
                    busy = item in self._processing
                if held is not None or busy or len(recent) >= burst:
                    first = held[0] if held is not None else now
                    self._held[item] = (first, now, quiet, cap)
                    heapq.heappush(self._held_heap, (min(now + quiet, first + cap), next(self._seq), item))
                    self._delay_cond.notify()
                    return
        self.add(item)

    def _release_held(self, now: float) -> list[T]:
        """Held items whose quiet time or cap has come; the others go back on their heap."""
        due: list[T] = []
        while self._held_heap and self._held_heap[0][0] <= now:
            _, _, item = heapq.heappop(self._held_heap)
            held = self._held.get(item)
            if held is None:
                continue  # released by an earlier entry
            first, last, quiet, cap = held
            at = min(last + quiet, first + cap)
            if at > now:
                heapq.heappush(self._held_heap, (at, next(self._seq), item))
                continue
            del self._held[item]
            due.append(item)
        return due

    def waiting(self) -> int:
        """Items waiting for their delay to pass."""
        with self._delay_cond:
            return len(self._ready_at) + len(self._held)

    def _pop_due(self, now: float) -> list[T]:
        due: list[T] = []
        while self._heap and self._heap[0][0] <= now:
            ready, _, item = heapq.heappop(self._heap)
            if self._ready_at.get(item) == ready:  # else superseded by an earlier add_after
                del self._ready_at[item]
                due.append(item)
        return due

    def _delay_loop(self) -> None:
        with self._delay_cond:
            while not self.shutting_down():
                now = self._clock.now()
                for item in self._pop_due(now) + self._release_held(now):
                    self.add(item)  # lock order: delay_cond then cond, never the reverse
                wait = MAX_DELAY_LOOP_WAIT
                if self._heap:
                    wait = min(wait, self._heap[0][0] - now)
                if self._held_heap:
                    wait = min(wait, self._held_heap[0][0] - now)
                self._clock.wait_condition(self._delay_cond, wait)

    def _wake_delay_loop(self) -> None:
        with self._delay_cond:
            self._delay_cond.notify_all()

    def shutdown(self) -> None:
        super().shutdown()
        self._wake_delay_loop()

    def shutdown_with_drain(self) -> None:
        super().shutdown_with_drain()
        self._wake_delay_loop()


class RateLimitingQueue(DelayingQueue[T]):
    """A ``DelayingQueue`` that spaces retries of an item with a ``RateLimiter``."""

    def __init__(
        self,
        name: str = "",
        *,
        rate_limiter: RateLimiter | None = None,
        clock: Clock | None = None,
        metrics_provider: MetricsProvider | None = None,
    ) -> None:
        clock = clock or RealClock()
        super().__init__(name, clock=clock, metrics_provider=metrics_provider)
        self._limiter = rate_limiter or default_controller_rate_limiter(clock)

    def add_rate_limited(self, item: T) -> None:
        self.add_after(item, self._limiter.when(item))

    def forget(self, item: T) -> None:
        self._limiter.forget(item)

    def num_requeues(self, item: T) -> int:
        return self._limiter.num_requeues(item)
