"""Reflector: keeps a ``Store`` equal to the server's collection via LIST then WATCH.

Guarantees:
- The first full (paginated) LIST replaces the store and sets ``has_synced()``; from then on
  the store and the handler's view follow the server in resourceVersion order.
- Exactly-once view for the handler: every object it saw added gets ``on_delete`` when it
  disappears, including objects deleted while disconnected (a relist diffs against the store);
  ``on_update`` is emitted only when the resourceVersion changed (except resync, below).
  Handlers receive the stored (transformed) copies; ``on_delete`` gets the last stored copy.
  Handler calls are serialised (one at a time, under the reflector's dispatch lock).
- WATCH resumes from the last seen resourceVersion: after a server-side timeout or a transient
  error it does not relist. BOOKMARK events advance the resourceVersion and emit nothing.
- 410 Gone (from the watch, or an expired continue token during LIST) relists from scratch
  (no continue token). Other failures back off exponentially with jitter (0.8 s to 30 s),
  reset after a healthy watch; ``Retry-After`` of a 429 is honoured as a minimum.
- Resync: every ``resync_period`` seconds (0 = never) the handler gets ``on_update(obj, obj)``
  for every stored object, so level-triggered consumers re-check everything periodically.
- ``run(stop)`` returns promptly once ``stop`` is set (the open watch is closed).

Caller duties:
- Handlers must not block for long and must not mutate the objects they receive.
- Run one reflector per store, and call ``run`` once; nothing else writes to that store.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from liqosec.kube import errors
from liqosec.kube.client import ItemTransform, JsonDict, KubeClient, ResourceRef, WatchStream
from liqosec.kube.clock import Clock, RealClock
from liqosec.kube.store import Store, resource_version

# Page size of the initial LIST: client-go's pager default; keeps each response (and the
# server's memory per request) bounded while a 10k-pod cluster lists in ~20 round trips.
LIST_PAGE_SIZE = 500
# Server-side watch timeout is drawn from [5, 10] minutes (client-go's minWatchTimeout and 2x):
# watches end regularly so stuck connections are noticed, and randomising spreads reconnects of
# many reflectors (and controllers) so they do not hit the API server in lockstep.
MIN_WATCH_TIMEOUT_SECONDS = 300
MAX_WATCH_TIMEOUT_SECONDS = 600
# Backoff after failures, client-go's reflector values: start at 0.8 s, double, cap at 30 s so an
# API-server outage costs at most one attempt per 30 s per reflector; jitter spreads the herd.
BACKOFF_INITIAL_SECONDS = 0.8
BACKOFF_CAP_SECONDS = 30.0
BACKOFF_FACTOR = 2.0
BACKOFF_JITTER = 1.0  # each delay is scaled by a random factor in [1, 1 + jitter], then capped
# A watch that ends sooner than this with no events is a failure (client-go's "very short watch"):
# otherwise a proxy that drops connections at once would make us reconnect in a hot loop.
MIN_HEALTHY_WATCH_SECONDS = 1.0


class ListWatch(Protocol):
    """The seam to the API server for one collection.

    ``list`` returns a page whose items went through ``transform`` (the store's), each as it was
    decoded: a page of full objects is never held decoded at once.
    """

    def list(self, *, limit: int, continue_token: str | None, transform: ItemTransform) -> JsonDict: ...

    def watch(self, *, resource_version: str, timeout_seconds: int, allow_bookmarks: bool) -> WatchStream: ...


@dataclass(frozen=True)
class ClientListWatch:
    """``ListWatch`` over a ``KubeClient`` for one resource, namespace and selector."""

    client: KubeClient
    ref: ResourceRef
    namespace: str | None = None
    label_selector: str | None = None

    def list(self, *, limit: int, continue_token: str | None, transform: ItemTransform) -> JsonDict:
        return self.client.list(
            self.ref,
            self.namespace,
            limit=limit,
            continue_token=continue_token,
            label_selector=self.label_selector,
            transform=transform,
        )

    def watch(self, *, resource_version: str, timeout_seconds: int, allow_bookmarks: bool) -> WatchStream:
        return self.client.watch(
            self.ref,
            self.namespace,
            resource_version=resource_version,
            timeout_seconds=timeout_seconds,
            allow_bookmarks=allow_bookmarks,
            label_selector=self.label_selector,
        )


class EventHandler(Protocol):
    def on_add(self, obj: JsonDict) -> None: ...

    def on_update(self, old: JsonDict, new: JsonDict) -> None: ...

    def on_delete(self, obj: JsonDict) -> None: ...


class ReflectorMetrics(Protocol):
    def relist(self, resource: str) -> None: ...

    def watch_restart(self, resource: str) -> None: ...


class _NoopHandler:
    def on_add(self, obj: JsonDict) -> None: ...

    def on_update(self, old: JsonDict, new: JsonDict) -> None: ...

    def on_delete(self, obj: JsonDict) -> None: ...


class NoopReflectorMetrics:
    def relist(self, resource: str) -> None: ...

    def watch_restart(self, resource: str) -> None: ...


class Backoff:
    """Exponential backoff with jitter and a cap; ``reset`` after success."""

    def __init__(
        self,
        *,
        initial: float = BACKOFF_INITIAL_SECONDS,
        cap: float = BACKOFF_CAP_SECONDS,
        factor: float = BACKOFF_FACTOR,
        jitter: float = BACKOFF_JITTER,
        rng: random.Random | None = None,
    ) -> None:
        if initial <= 0 or cap < initial or factor < 1 or jitter < 0:
            raise ValueError("backoff needs 0 < initial <= cap, factor >= 1 and jitter >= 0")
        self._initial, self._cap, self._factor, self._jitter = initial, cap, factor, jitter
        self._rng = rng or random.Random()
        self.attempt = 0

    def next(self) -> float:
        base = self._initial * self._factor ** min(self.attempt, 64)
        self.attempt += 1
        return min(self._cap, base * (1.0 + self._jitter * self._rng.random()))

    def reset(self) -> None:
        self.attempt = 0


class _ShortWatch(Exception):
    """The watch closed at once without events: treated as a failure to back off from."""


class Reflector:
    """LIST + WATCH one collection into a ``Store`` and notify a handler."""

    def __init__(
        self,
        list_watch: ListWatch,
        store: Store,
        *,
        resource: str,
        clock: Clock | None = None,
        resync_period: float = 0.0,
        handler: EventHandler | None = None,
        metrics: ReflectorMetrics | None = None,
        rng: random.Random | None = None,
        page_size: int = LIST_PAGE_SIZE,
    ) -> None:
        if not resource:
            raise ValueError("resource name is required: it labels logs and metrics")
        if resync_period < 0:
            raise ValueError("resync_period must be >= 0 (0 disables resync)")
        if page_size < 1:
            raise ValueError("page_size must be >= 1")
        self._lw = list_watch
        self._store = store
        self._resource = resource
        self._clock: Clock = clock or RealClock()
        self._resync_period = resync_period
        self._handler: EventHandler = handler or _NoopHandler()
        self._metrics: ReflectorMetrics = metrics or NoopReflectorMetrics()
        self._rng = rng or random.Random()
        self._page_size = page_size
        self._backoff = Backoff(rng=self._rng)
        self._dispatch = threading.RLock()
        self._synced = threading.Event()
        self._last_rv = ""
        self._events_since_list = 0
        self._stream: WatchStream | None = None
        self._stream_lock = threading.Lock()
        self._log = structlog.get_logger(__name__).bind(resource=resource)

    def has_synced(self) -> bool:
        return self._synced.is_set()

    # ----- loop -----
    def run(self, stop: threading.Event) -> None:
        helper = threading.Thread(
            target=self._resync_until_stopped,
            args=(stop,),
            daemon=True,
            name=f"reflector-resync-{self._resource}",
        )
        helper.start()
        need_list = True
        gone_streak = 0  # Gone answers with no watch event in between
        while not stop.is_set():
            try:
                if need_list:
                    self._list_and_replace(stop)
                    need_list = False
                    if stop.is_set():
                        break
                self._watch_once(stop)
                if stop.is_set():
                    break
                self._backoff.reset()
                self._metrics.watch_restart(self._resource)
                self._log.debug("watch ended, resuming", rv=self._last_rv)
            except errors.Gone as exc:
                need_list = True
                gone_streak = 1 if self._events_since_list else gone_streak + 1
                self._events_since_list = 0
                self._metrics.relist(self._resource)
                self._log.info("resource version expired, relisting", rv=self._last_rv, error=str(exc))
                if gone_streak > 1:  # a relist that changed nothing: do not spin
                    self._clock.wait_event(stop, self._backoff.next())
            except Exception as exc:  # top of the reflector loop: every failure is retried
                if stop.is_set():
                    break  # the stream was closed under us on purpose
                self._back_off(stop, exc, listing=need_list)
        helper.join(timeout=1.0)

    def _back_off(self, stop: threading.Event, exc: Exception, *, listing: bool) -> None:
        delay = self._backoff.next()
        if isinstance(exc, errors.ApiError) and exc.retry_after is not None:
            delay = max(delay, exc.retry_after)
        if not listing:
            self._metrics.watch_restart(self._resource)
        self._log.warning(
            "list failed, backing off" if listing else "watch failed, backing off",
            rv=self._last_rv,
            attempt=self._backoff.attempt,
            delay=round(delay, 3),
            error=str(exc) or type(exc).__name__,
        )
        self._clock.wait_event(stop, delay)

    # ----- list -----
    def _list_and_replace(self, stop: threading.Event) -> None:
        items: list[JsonDict] = []
        token: str | None = None
        rv = ""
        while True:
            # Slim each item as it is decoded: holding a 10k-pod LIST in full would cost ~100 MB, and
            # even one page of 500 full pods decoded at once leaves the allocator's arenas half-used.
            page = self._lw.list(limit=self._page_size, continue_token=token, transform=self._store.transform)
            items.extend(page.get("items") or [])
            meta: dict[str, Any] = page.get("metadata") or {}
            rv = str(meta.get("resourceVersion") or rv)
            token = meta.get("continue") or None
            if not token:
                break
            if stop.is_set():
                return
        with self._dispatch:
            delta = self._store.replace(items, rv, transformed=True)
            self._last_rv = rv
            for obj in delta.added:
                self._notify_add(obj)
            for old, new in delta.updated:
                self._notify_update(old, new)
            for obj in delta.deleted:
                self._notify_delete(obj)
            self._synced.set()
        self._log.info(
            "listed objects",
            rv=rv,
            count=len(items),
            added=len(delta.added),
            updated=len(delta.updated),
            deleted=len(delta.deleted),
        )

    # ----- watch -----
    def _watch_once(self, stop: threading.Event) -> bool:
        """Watch until the stream ends; True when at least one event arrived."""
        timeout = self._rng.randint(MIN_WATCH_TIMEOUT_SECONDS, MAX_WATCH_TIMEOUT_SECONDS)
        stream = self._lw.watch(resource_version=self._last_rv, timeout_seconds=timeout, allow_bookmarks=True)
        with self._stream_lock:
            self._stream = stream
        if stop.is_set():
            stream.close()
        started = self._clock.now()
        events = 0
        try:
            for event in stream:
                if stop.is_set():
                    break
                self._apply(event)
                events += 1
                self._events_since_list += 1
                if events == 1:
                    self._backoff.reset()  # the connection works again
        finally:
            with self._stream_lock:
                self._stream = None
            stream.close()
        if stop.is_set():
            return events > 0
        if events == 0 and self._clock.now() - started < MIN_HEALTHY_WATCH_SECONDS:
            raise _ShortWatch("watch closed without events")
        return events > 0

    def _apply(self, event: JsonDict) -> None:
        kind = event.get("type")
        obj = event.get("object")
        if kind == "ERROR":
            raise errors.from_status_object(obj if isinstance(obj, dict) else {})
        if not isinstance(obj, dict):
            raise errors.InternalError(500, "BadWatchEvent", "watch event without object")
        rv = resource_version(obj)
        with self._dispatch:
            if kind == "BOOKMARK":
                pass
            elif kind in ("ADDED", "MODIFIED"):
                old, new = self._store.add(obj)
                if old is None:
                    self._notify_add(new)
                elif resource_version(old) != resource_version(new):
                    self._notify_update(old, new)
            elif kind == "DELETED":
                gone = self._store.delete(obj)
                if gone is not None:
                    self._notify_delete(gone)
            else:
                raise errors.InternalError(500, "BadWatchEvent", f"unknown event type {kind!r}")
            if rv:
                self._last_rv = rv

    # One typed method per handler call (no dispatch by name), each guarded the same way.
    def _notify_add(self, obj: JsonDict) -> None:
        self._guarded("on_add", lambda: self._handler.on_add(obj))

    def _notify_update(self, old: JsonDict, new: JsonDict) -> None:
        self._guarded("on_update", lambda: self._handler.on_update(old, new))

    def _notify_delete(self, obj: JsonDict) -> None:
        self._guarded("on_delete", lambda: self._handler.on_delete(obj))

    def _guarded(self, handler: str, call: Callable[[], None]) -> None:
        try:
            call()
        except Exception as exc:  # a failing handler must not stop the cache from following
            self._log.exception("event handler failed", handler=handler, error=str(exc))

    # ----- resync and stop -----
    def _resync_until_stopped(self, stop: threading.Event) -> None:
        period = self._resync_period if self._resync_period > 0 else None
        while not self._clock.wait_event(stop, period):
            if self.has_synced():
                self.resync()
        with self._stream_lock:
            stream = self._stream
        if stream is not None:
            stream.close()

    def resync(self) -> None:
        """Replay every stored object to the handler as ``on_update(obj, obj)``."""
        with self._dispatch:
            for obj in self._store.list():
                self._notify_update(obj, obj)
