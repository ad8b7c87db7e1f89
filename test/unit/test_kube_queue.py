"""Scope: WorkQueue fairness/coalescing/exclusivity/shutdown, DelayingQueue timing on fake time,
RateLimitingQueue retries, and the metrics hooks."""

from __future__ import annotations

import threading
from collections import Counter

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from harness.fakeclock import FakeClock
from harness.waiting import blocked_on, hold, wait_until
from liqosec.kube.queue import DelayingQueue, RateLimitingQueue, WorkQueue
from liqosec.kube.ratelimit import ItemExponentialFailureRateLimiter


def test_items_come_out_in_insertion_order() -> None:
    q: WorkQueue[str] = WorkQueue()
    for key in "abc":
        q.add(key)
    assert [q.get()[0] for _ in range(3)] == ["a", "b", "c"]


def test_duplicates_coalesce_into_one_item() -> None:
    q: WorkQueue[str] = WorkQueue()
    for key in ("a", "b", "a"):
        q.add(key)
    assert len(q) == 2


def test_add_while_processing_requeues_after_done() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    item, _ = q.get()
    q.add("a")
    assert len(q) == 0, "must not be handed out while a worker holds it"
    q.done("a")
    assert len(q) == 1
    assert q.get() == ("a", False)


def test_done_without_new_add_does_not_requeue() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    q.get()
    q.done("a")
    assert len(q) == 0


def test_key_never_processed_by_two_workers() -> None:
    q: WorkQueue[int] = WorkQueue()
    lock = threading.Lock()
    active: set[int] = set()
    violations: list[int] = []
    processed: Counter[int] = Counter()

    def worker() -> None:
        while True:
            item, shutdown = q.get()
            if shutdown:
                return
            assert item is not None
            with lock:
                if item in active:
                    violations.append(item)
                active.add(item)
            hold(0.0002)  # busy a moment: another worker would take the key now if it could
            with lock:
                active.discard(item)
                processed[item] += 1
            q.done(item)

    workers = [threading.Thread(target=worker) for _ in range(8)]
    for w in workers:
        w.start()
    for i in range(2000):
        q.add(i % 5)
    q.shutdown_with_drain()
    for w in workers:
        w.join(5)
    assert violations == []
    assert set(processed) == set(range(5))


def test_shutdown_wakes_blocked_get() -> None:
    q: WorkQueue[str] = WorkQueue()
    result: list[tuple[str | None, bool]] = []
    t = threading.Thread(target=lambda: result.append(q.get()))
    t.start()
    wait_until(lambda: blocked_on(q._cond), "get() to block")
    q.shutdown()
    t.join(2)
    assert result == [(None, True)]


def test_get_hands_out_remaining_items_after_shutdown_and_ignores_new_adds() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    q.shutdown()
    q.add("b")
    assert q.get() == ("a", False)
    assert q.get() == (None, True)


def test_shutdown_with_drain_waits_for_inflight() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    q.get()
    drained = threading.Event()

    def drain() -> None:
        q.shutdown_with_drain()
        drained.set()

    t = threading.Thread(target=drain)
    t.start()
    assert not drained.wait(0.05)
    q.done("a")
    assert drained.wait(2)
    t.join()


def test_add_after_delivers_only_when_due() -> None:
    clock = FakeClock()
    q: DelayingQueue[str] = DelayingQueue(clock=clock)
    start = clock.now()
    q.add_after("a", 5)
    wait_until(lambda: clock.next_deadline() == start + 5)
    clock.advance_and_settle(4.9)  # the delay loop has looked at 4.9 s and waits again
    assert len(q) == 0 and q.waiting() == 1
    clock.advance(0.1)
    wait_until(lambda: len(q) == 1)
    assert q.waiting() == 0
    q.shutdown()


def test_add_after_keeps_earlier_ready_time() -> None:
    clock = FakeClock()
    q: DelayingQueue[str] = DelayingQueue(clock=clock)
    q.add_after("a", 10)
    q.add_after("a", 2)
    q.add_after("a", 8)  # later than the pending 2 s: ignored
    clock.advance(2)
    wait_until(lambda: len(q) == 1)
    clock.advance_and_settle(10)
    q.get()
    assert len(q) == 0
    q.shutdown()


def test_delayed_items_come_out_in_due_order() -> None:
    clock = FakeClock()
    q: DelayingQueue[str] = DelayingQueue(clock=clock)
    for key, delay in (("c", 3), ("a", 1), ("b", 2)):
        q.add_after(key, delay)
    for _ in range(3):
        clock.advance(1)
        n = 4 - q.waiting()
        wait_until(lambda n=n: len(q) == n - 1)  # type: ignore[misc]
    assert [q.get()[0] for _ in range(3)] == ["a", "b", "c"]
    q.shutdown()


def test_add_after_non_positive_adds_immediately() -> None:
    q: DelayingQueue[str] = DelayingQueue(clock=FakeClock())
    q.add_after("a", 0)
    assert len(q) == 1
    q.shutdown()


def test_rate_limited_requeue_backs_off_until_forgotten() -> None:
    clock = FakeClock()
    q: RateLimitingQueue[str] = RateLimitingQueue(
        rate_limiter=ItemExponentialFailureRateLimiter(1.0, 60.0), clock=clock
    )
    q.add_rate_limited("a")
    q.add_rate_limited("a")  # second failure would be 2 s, pending 1 s wins
    assert q.num_requeues("a") == 2
    clock.advance(1)
    wait_until(lambda: len(q) == 1)
    q.forget("a")
    assert q.num_requeues("a") == 0
    q.shutdown()


class _Recorder:
    def __init__(self) -> None:
        self.values: dict[str, list[float]] = {}

    def metric(self, kind: str) -> _Metric:
        return _Metric(self.values.setdefault(kind, []))

    def new_depth_metric(self, name: str) -> _Metric:
        return self.metric("depth")

    def new_adds_metric(self, name: str) -> _Metric:
        return self.metric("adds")

    def new_latency_metric(self, name: str) -> _Metric:
        return self.metric("latency")

    def new_work_duration_metric(self, name: str) -> _Metric:
        return self.metric("work")

    def new_unfinished_work_seconds_metric(self, name: str) -> _Metric:
        return self.metric("unfinished")

    def new_longest_running_processor_seconds_metric(self, name: str) -> _Metric:
        return self.metric("longest")

    def new_retries_metric(self, name: str) -> _Metric:
        return self.metric("retries")


class _Metric:
    def __init__(self, sink: list[float]) -> None:
        self.sink = sink

    def inc(self) -> None:
        self.sink.append(1)

    def dec(self) -> None:
        self.sink.append(-1)

    def set(self, value: float) -> None:
        self.sink.append(value)

    def observe(self, value: float) -> None:
        self.sink.append(value)


def test_metrics_record_depth_adds_latency_and_work_duration() -> None:
    clock = FakeClock()
    rec = _Recorder()
    q: RateLimitingQueue[str] = RateLimitingQueue("w", clock=clock, metrics_provider=rec)
    for key in ("a", "a", "b"):
        q.add(key)
    clock.advance(3)  # also lets the unfinished-work loop tick
    q.get()
    clock.advance(2)
    wait_until(lambda: 2.0 in rec.values.get("longest", []))
    q.done("a")
    q.add_rate_limited("a")
    q.shutdown()
    assert sum(rec.values["adds"]) == 2
    assert sum(rec.values["depth"]) == 1  # "b" still queued
    assert rec.values["latency"] == [3.0]
    assert rec.values["work"] == [2.0]
    assert sum(rec.values["retries"]) == 1


class QueueModel(RuleBasedStateMachine):
    """Single-threaded model check: the queue matches a reference model after any operations."""

    def __init__(self) -> None:
        super().__init__()
        self.q: WorkQueue[int] = WorkQueue()
        self.queued: list[int] = []
        self.processing: set[int] = set()
        self.dirty_processing: set[int] = set()

    @rule(key=st.integers(0, 4))
    def add(self, key: int) -> None:
        self.q.add(key)
        if key in self.processing:
            self.dirty_processing.add(key)
        elif key not in self.queued:
            self.queued.append(key)

    @precondition(lambda self: bool(self.queued))
    @rule()
    def get(self) -> None:
        item, shutdown = self.q.get()
        assert not shutdown
        assert item == self.queued.pop(0)
        assert item not in self.processing
        self.processing.add(item)

    @precondition(lambda self: bool(self.processing))
    @rule(data=st.data())
    def done(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.processing)))
        self.q.done(key)
        self.processing.discard(key)
        if key in self.dirty_processing:
            self.dirty_processing.discard(key)
            self.queued.append(key)

    @invariant()
    def same_length(self) -> None:
        assert len(self.q) == len(self.queued)


TestQueueModel = QueueModel.TestCase
TestQueueModel.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)


def test_add_coalesced_adds_slow_changes_at_once_and_holds_a_burst_until_it_is_quiet() -> None:
    clock = FakeClock()
    q: DelayingQueue[str] = DelayingQueue(clock=clock)
    for _ in range(5):  # steady changes 0.1 s apart: fewer than 4 within 0.2 s, each at once
        q.add_coalesced("a", 0.2, 2.0)
        assert len(q) == 1 and q.waiting() == 0
        q.get()
        q.done("a")
        clock.advance(0.1)
    clock.advance(1)
    for _ in range(10):  # a burst, 20 ms apart: the first three at once (coalesced), then held
        q.add_coalesced("a", 0.2, 2.0)
        clock.advance(0.02)
    assert len(q) == 1 and q.waiting() == 1
    q.get()
    q.done("a")
    clock.advance(0.2)  # quiet for 0.2 s: one trailing add
    wait_until(lambda: len(q) == 1)
    assert q.waiting() == 0
    q.get()
    q.done("a")
    q.add_coalesced("a", 0.2, 2.0)  # after the burst: at once again
    assert len(q) == 1
    q.add_coalesced("b", 0.2, 2.0)  # per item
    assert len(q) == 2
    q.shutdown()


def test_add_coalesced_releases_a_long_burst_at_the_cap() -> None:
    clock = FakeClock()
    q: DelayingQueue[str] = DelayingQueue(clock=clock)
    released = 0
    for _ in range(60):  # 3 s of changes every 50 ms: a burst that is never quiet for 0.2 s
        q.add_coalesced("a", 0.2, 0.5)
        clock.advance_and_settle(0.05)  # the delay loop has looked at the new time
        if len(q):
            q.get()
            q.done("a")
            released += 1
    # the first three at once, then the burst once per cap (0.5 s after its first held change): at
    # 0.65 s, 1.15 s, 1.65 s, 2.15 s and 2.65 s
    assert released == 3 + 5
    q.shutdown()


def test_add_coalesced_follow_neither_starts_nor_extends_a_burst() -> None:
    clock = FakeClock()
    q: DelayingQueue[str] = DelayingQueue(clock=clock)
    q.add_coalesced("a", 0.1, 2.0, follow=True)  # an echo: at once
    assert len(q) == 1 and q.waiting() == 0
    q.get()
    q.done("a")
    for _ in range(4):  # news, a burst: held from the fourth
        q.add_coalesced("a", 0.1, 2.0)
        clock.advance(0.01)
    assert q.waiting() == 1
    clock.advance(0.05)
    q.add_coalesced("a", 0.1, 2.0, follow=True)  # joins the held burst, does not extend it
    assert q.waiting() == 1
    clock.advance(0.06)  # 0.1 s after the last news: released
    wait_until(lambda: q.waiting() == 0)
    q.shutdown()


def test_add_coalesced_holds_a_change_arriving_while_the_item_is_processed() -> None:
    """It joins what follows into the next pass, instead of a pass of its own right after."""
    clock = FakeClock()
    q: DelayingQueue[str] = DelayingQueue(clock=clock)
    q.add_coalesced("a", 0.2, 5.0)
    q.get()
    q.add_coalesced("a", 0.2, 5.0)  # during the pass
    q.done("a")
    assert len(q) == 0 and q.waiting() == 1
    clock.advance(0.1)
    q.add_coalesced("a", 0.2, 5.0)  # joins it
    clock.advance(0.2)
    wait_until(lambda: len(q) == 1)
    assert q.waiting() == 0
    q.shutdown()
