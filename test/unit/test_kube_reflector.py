"""Scope: Reflector list/watch/relist/backoff/resync behaviour against a scripted fake server on
fake time."""

from __future__ import annotations

import builtins
import random
import threading
from collections import deque
from collections.abc import Iterator
from typing import Any

import pytest

from harness.fakeclock import FakeClock
from harness.peek import last_resource_version
from harness.waiting import wait_until
from liqosec.kube import errors
from liqosec.kube.client import ItemTransform
from liqosec.kube.reflector import (
    BACKOFF_CAP_SECONDS,
    BACKOFF_INITIAL_SECONDS,
    MAX_WATCH_TIMEOUT_SECONDS,
    MIN_WATCH_TIMEOUT_SECONDS,
    Backoff,
    Reflector,
)
from liqosec.kube.store import Store

JsonDict = dict[str, Any]
BLOCK = "block"  # stream step: hang like an idle watch until closed
TIMEOUT = "timeout"  # stream step: the server's timeoutSeconds passed; stream ends normally
END = "end"  # stream step: the connection ends at once, no time passing


def obj(name: str, rv: str) -> JsonDict:
    return {"metadata": {"name": name, "namespace": "ns", "resourceVersion": rv}}


def ev(kind: str, name: str, rv: str) -> JsonDict:
    return {"type": kind, "object": obj(name, rv)}


def page(items: list[JsonDict], rv: str, cont: str | None = None) -> JsonDict:
    meta: JsonDict = {"resourceVersion": rv}
    if cont:
        meta["continue"] = cont
    return {"items": items, "metadata": meta}


class FakeStream:
    def __init__(self, steps: list[Any], clock: FakeClock, timeout: int) -> None:
        self.steps, self.clock, self.timeout = steps, clock, timeout
        self.closed = threading.Event()

    def __iter__(self) -> Iterator[JsonDict]:
        for step in self.steps:
            if isinstance(step, Exception):
                raise step
            if step == BLOCK:
                self.closed.wait(5)
                return
            if step == END:
                return
            if step == TIMEOUT:
                self.clock.advance(self.timeout)
                return
            yield step
        self.closed.wait(5)  # script exhausted: idle until closed

    def close(self) -> None:
        self.closed.set()


class ScriptedListWatch:
    """Answers LIST and WATCH calls from scripts, recording each call."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.lists: deque[JsonDict | Exception] = deque()
        self.watches: deque[list[Any]] = deque()
        self.calls: list[tuple[str, Any]] = []
        self.lock = threading.Lock()

    def list(self, *, limit: int, continue_token: str | None, transform: ItemTransform) -> JsonDict:
        with self.lock:
            self.calls.append(("list", continue_token))
            answer = self.lists.popleft() if self.lists else page([], "1")
        if isinstance(answer, Exception):
            raise answer
        return {**answer, "items": [transform(o) for o in answer.get("items") or []]}

    def watch(self, *, resource_version: str, timeout_seconds: int, allow_bookmarks: bool) -> FakeStream:
        assert allow_bookmarks
        assert MIN_WATCH_TIMEOUT_SECONDS <= timeout_seconds <= MAX_WATCH_TIMEOUT_SECONDS
        with self.lock:
            self.calls.append(("watch", resource_version))
            steps = self.watches.popleft() if self.watches else [BLOCK]
        return FakeStream(steps, self.clock, timeout_seconds)

    def count(self, kind: str) -> int:
        with self.lock:
            return sum(1 for k, _ in self.calls if k == kind)

    def of(self, kind: str) -> builtins.list[Any]:
        with self.lock:
            return [arg for k, arg in self.calls if k == kind]


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []

    def on_add(self, o: JsonDict) -> None:
        self.events.append(("add", o["metadata"]["name"], o["metadata"]["resourceVersion"]))

    def on_update(self, old: JsonDict, new: JsonDict) -> None:
        self.events.append(("update", new["metadata"]["name"], new["metadata"]["resourceVersion"]))

    def on_delete(self, o: JsonDict) -> None:
        self.events.append(("delete", o["metadata"]["name"], o["metadata"]["resourceVersion"]))


class Counts:
    def __init__(self) -> None:
        self.relists = 0
        self.restarts = 0

    def relist(self, resource: str) -> None:
        self.relists += 1

    def watch_restart(self, resource: str) -> None:
        self.restarts += 1


class Harness:
    def __init__(self, *, resync: float = 0.0) -> None:
        self.clock = FakeClock()
        self.lw = ScriptedListWatch(self.clock)
        self.store = Store()
        self.handler = Recorder()
        self.counts = Counts()
        self.stop = threading.Event()
        self.reflector = Reflector(
            self.lw,
            self.store,
            resource="pods",
            clock=self.clock,
            resync_period=resync,
            handler=self.handler,
            metrics=self.counts,
            rng=random.Random(7),
        )
        self.thread = threading.Thread(target=self.reflector.run, args=(self.stop,))

    def __enter__(self) -> Harness:
        return self

    def start(self) -> None:
        self.thread.start()

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(3)
        assert not self.thread.is_alive(), "reflector did not stop"

    def names(self) -> list[str]:
        return sorted(self.store.keys())

    def pending_delay(self) -> float:
        wait_until(lambda: self.clock.next_deadline() is not None)
        deadline = self.clock.next_deadline()
        assert deadline is not None
        return deadline - self.clock.now()


def test_lists_all_pages_then_watches_from_list_rv() -> None:
    with Harness() as h:
        h.lw.lists.extend([page([obj("a", "5")], "10", "tok1"), page([obj("b", "7")], "10")])
        h.start()
        wait_until(lambda: h.lw.count("watch") == 1)
        assert h.lw.of("list") == [None, "tok1"]
        assert h.lw.of("watch") == ["10"]
        assert h.names() == ["ns/a", "ns/b"]
        assert h.reflector.has_synced()
        assert sorted(h.handler.events) == [("add", "a", "5"), ("add", "b", "7")]


def test_not_synced_before_first_list_completes() -> None:
    with Harness() as h:
        h.lw.lists.append(errors.ServiceUnavailable(503, "", "starting"))
        h.start()
        h.pending_delay()
        assert not h.reflector.has_synced()
        h.clock.advance(BACKOFF_CAP_SECONDS)
        wait_until(h.reflector.has_synced)


def test_watch_events_update_store_and_handler() -> None:
    with Harness() as h:
        h.lw.lists.append(page([obj("a", "5")], "10"))
        h.lw.watches.append([ev("ADDED", "b", "11"), ev("MODIFIED", "a", "12"), ev("DELETED", "b", "13")])
        h.start()
        wait_until(lambda: len(h.handler.events) == 4)
        assert h.handler.events == [("add", "a", "5"), ("add", "b", "11"), ("update", "a", "12"), ("delete", "b", "11")]
        assert h.names() == ["ns/a"]
        assert last_resource_version(h.reflector) == "13"


def test_event_with_unchanged_rv_is_not_reemitted() -> None:
    with Harness() as h:
        h.lw.lists.append(page([obj("a", "5")], "10"))
        h.lw.watches.append([ev("ADDED", "a", "5"), ev("MODIFIED", "a", "5"), ev("DELETED", "zz", "14")])
        h.start()
        wait_until(lambda: last_resource_version(h.reflector) == "14")
        assert h.handler.events == [("add", "a", "5")]


def test_relists_after_410_gone() -> None:
    with Harness() as h:
        h.lw.lists.extend([page([obj("a", "5")], "10"), page([obj("a", "5")], "50")])
        h.lw.watches.append([ev("MODIFIED", "a", "11"), errors.Gone(410, "Expired", "too old")])
        h.start()
        wait_until(lambda: h.lw.count("watch") == 2)
        assert h.lw.of("list") == [None, None]
        assert h.lw.of("watch") == ["10", "50"]
        assert h.counts.relists == 1


def test_watch_error_event_with_410_relists() -> None:
    with Harness() as h:
        h.lw.lists.extend([page([], "10"), page([], "60")])
        h.lw.watches.append([{"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}}])
        h.start()
        wait_until(lambda: h.lw.count("watch") == 2)
        assert h.lw.of("watch") == ["10", "60"]


def test_expired_continue_token_relists_from_scratch() -> None:
    with Harness() as h:
        h.lw.lists.extend(
            [
                page([obj("a", "5")], "10", "tok1"),
                errors.Gone(410, "Expired", "The provided continue parameter is too old"),
                page([obj("a", "5")], "20", "tok2"),
                page([obj("b", "6")], "20"),
            ]
        )
        h.start()
        wait_until(lambda: h.lw.count("watch") == 1)
        assert h.lw.of("list") == [None, "tok1", None, "tok2"]
        assert h.lw.of("watch") == ["20"]
        assert h.names() == ["ns/a", "ns/b"]


def test_watch_timeout_resumes_without_relist() -> None:
    with Harness() as h:
        h.lw.lists.append(page([], "10"))
        h.lw.watches.append(
            [ev("ADDED", "a", "11"), {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "15"}}}, TIMEOUT]
        )
        h.start()
        wait_until(lambda: h.lw.count("watch") == 2)
        assert h.lw.count("list") == 1
        assert h.lw.of("watch") == ["10", "15"]
        assert h.counts.restarts == 1 and h.counts.relists == 0


def test_relist_emits_deletes_for_objects_gone_while_disconnected() -> None:
    with Harness() as h:
        h.lw.lists.extend(
            [
                page([obj("keep", "1"), obj("changed", "2"), obj("gone", "3")], "10"),
                page([obj("keep", "1"), obj("changed", "20"), obj("new", "21")], "30"),
            ]
        )
        h.lw.watches.append([errors.Gone(410, "Expired", "")])
        h.start()
        wait_until(lambda: h.lw.count("watch") == 2)
        after_relist = h.handler.events[3:]
        assert sorted(after_relist) == [("add", "new", "21"), ("delete", "gone", "3"), ("update", "changed", "20")]
        assert h.names() == ["ns/changed", "ns/keep", "ns/new"]


def test_bookmark_advances_rv_without_event() -> None:
    with Harness() as h:
        h.lw.lists.append(page([obj("a", "5")], "10"))
        h.lw.watches.append([{"type": "BOOKMARK", "object": {"kind": "Pod", "metadata": {"resourceVersion": "99"}}}])
        h.start()
        wait_until(lambda: last_resource_version(h.reflector) == "99")
        assert h.handler.events == [("add", "a", "5")]
        assert h.names() == ["ns/a"]


def test_backoff_with_jitter_caps_at_30s() -> None:
    with Harness() as h:
        h.lw.lists.append(page([], "10"))
        for _ in range(10):
            h.lw.watches.append([errors.ConnectionFailure(0, "refused", "")])
        h.start()
        delays = []
        for n in range(10):
            wait_until(lambda n=n: h.lw.count("watch") == n + 1)  # type: ignore[misc]
            delays.append(h.pending_delay())
            h.clock.advance(delays[-1])
        for attempt, delay in enumerate(delays):
            nominal = min(BACKOFF_CAP_SECONDS, BACKOFF_INITIAL_SECONDS * 2**attempt)
            assert nominal <= delay <= min(2 * nominal, BACKOFF_CAP_SECONDS)
        assert delays[-1] == BACKOFF_CAP_SECONDS
        assert h.lw.count("list") == 1, "transient watch errors resume, they do not relist"


def test_backoff_resets_after_healthy_watch() -> None:
    with Harness() as h:
        h.lw.lists.append(page([], "10"))
        failure = errors.InternalError(500, "", "boom")
        h.lw.watches.extend([[failure], [failure], [ev("ADDED", "a", "11"), failure]])
        h.start()
        first = h.pending_delay()
        h.clock.advance(first)
        wait_until(lambda: h.lw.count("watch") == 2)
        second = h.pending_delay()
        h.clock.advance(second)
        wait_until(lambda: h.lw.count("watch") == 3)
        third = h.pending_delay()
        assert second >= 2 * BACKOFF_INITIAL_SECONDS
        assert third <= 2 * BACKOFF_INITIAL_SECONDS


def test_too_many_requests_honours_retry_after() -> None:
    with Harness() as h:
        h.lw.lists.append(errors.TooManyRequests(429, "", "slow down", retry_after=17))
        h.start()
        assert h.pending_delay() == 17


def test_short_watch_without_events_is_backed_off() -> None:
    with Harness() as h:
        h.lw.lists.append(page([], "10"))
        h.lw.watches.append([END])
        h.start()
        assert h.pending_delay() >= BACKOFF_INITIAL_SECONDS
        assert h.lw.count("watch") == 1


def test_repeated_gone_without_progress_backs_off() -> None:
    with Harness() as h:
        h.lw.lists.extend([page([], "10"), page([], "10"), page([], "10")])
        h.lw.watches.extend([[errors.Gone(410, "", "")], [errors.Gone(410, "", "")]])
        h.start()
        wait_until(lambda: h.lw.count("list") == 2)
        assert h.pending_delay() >= BACKOFF_INITIAL_SECONDS  # second Gone in a row waits
        assert h.lw.count("list") == 2


def test_resync_replays_updates() -> None:
    with Harness(resync=30) as h:
        h.lw.lists.append(page([obj("a", "5"), obj("b", "6")], "10"))
        h.start()
        wait_until(lambda: h.lw.count("watch") == 1)
        wait_until(lambda: h.clock.next_deadline() is not None)
        h.clock.advance(30)
        wait_until(lambda: len(h.handler.events) == 4)
        assert sorted(h.handler.events[2:]) == [("update", "a", "5"), ("update", "b", "6")]


def test_stop_closes_open_watch_and_returns() -> None:
    h = Harness()
    h.lw.lists.append(page([], "10"))
    h.start()
    wait_until(lambda: h.lw.count("watch") == 1)
    h.stop.set()
    h.thread.join(2)
    assert not h.thread.is_alive()


def test_failing_handler_does_not_stop_the_cache() -> None:
    with Harness() as h:

        def explode(o: JsonDict) -> None:
            raise RuntimeError("handler bug")

        h.handler.on_add = explode  # type: ignore[method-assign]
        h.lw.lists.append(page([obj("a", "5")], "10"))
        h.lw.watches.append([ev("ADDED", "b", "11")])
        h.start()
        wait_until(lambda: h.names() == ["ns/a", "ns/b"])


def test_backoff_doubles_with_bounded_jitter() -> None:
    backoff = Backoff(initial=1, cap=8, jitter=0.5, rng=random.Random(1))
    delays = [backoff.next() for _ in range(6)]
    for n, delay in enumerate(delays):
        assert min(8, 2**n) <= delay <= min(8, 1.5 * 2**n)
    backoff.reset()
    assert backoff.next() <= 1.5


@pytest.mark.parametrize(
    "kwargs", [{"resource": ""}, {"resource": "p", "resync_period": -1}, {"resource": "p", "page_size": 0}]
)
def test_constructor_rejects_bad_configuration(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Reflector(ScriptedListWatch(FakeClock()), Store(), **kwargs)


def test_list_pages_are_transformed_once_as_they_arrive() -> None:
    calls: list[str] = []

    def slim_name_only(o: JsonDict) -> JsonDict:
        calls.append(o["metadata"]["name"])
        meta = o["metadata"]
        return {"metadata": {k: meta[k] for k in ("name", "namespace", "resourceVersion")}}

    clock = FakeClock()
    lw = ScriptedListWatch(clock)
    big = obj("a", "5")
    big["spec"] = {"containers": ["x"] * 100}
    lw.lists.extend([page([big], "10", "t"), page([obj("b", "6")], "10")])
    store = Store(transform=slim_name_only)
    handler = Recorder()
    stop = threading.Event()
    reflector = Reflector(lw, store, resource="pods", clock=clock, handler=handler)
    thread = threading.Thread(target=reflector.run, args=(stop,))
    thread.start()
    wait_until(lambda: lw.count("watch") == 1)
    stop.set()
    thread.join(3)
    assert calls == ["a", "b"]
    assert store.get("ns/a") == {"metadata": {"name": "a", "namespace": "ns", "resourceVersion": "5"}}
