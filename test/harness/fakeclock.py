"""A step-driven clock for the tests of ``liqosec.kube``: time moves only when the test says so.

``FakeClock`` never moves on its own: time advances only in ``advance``/``set``, which wake every
timed waiter so it can re-check its deadline. Never shipped: it lives beside the tests.

``advance_and_settle`` is how a test makes a negative assertion on fake time: it advances, then
blocks until every thread whose wait came due has looked at the new time and waits again (or has
ended), so what that thread did not do, it will not do before the next advance.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

# FakeClock.wait_event polls the event at this real-time interval: Event.set() cannot notify the
# clock, so without the poll a set event would only be noticed at the next advance().
_FAKE_EVENT_POLL_SECONDS = 0.005


class FakeClock:
    """A step-driven clock for tests: time moves only when the test says so."""

    def __init__(self, start: float = 1000.0, *, wall_start: datetime | None = None) -> None:
        if start < 0:
            raise ValueError("FakeClock start must be >= 0: monotonic time is never negative")
        self._lock = threading.Condition()
        self._now = start
        self._start = start
        self._wall_start = wall_start or datetime(2026, 1, 1, tzinfo=UTC)
        self._cond_waits: list[threading.Condition] = []
        self._deadlines: list[float] = []
        self._generation = 0  # advances so far
        self._seen: dict[int, int] = {}  # thread id -> the generation of the time it last read
        self._waits_begun: dict[int, int] = {}  # thread id -> timed waits it has begun
        self._waiting: dict[int, tuple[str, float | None]] = {}  # thread id -> (kind, deadline) of its wait

    # ----- Clock protocol -----
    def now(self) -> float:
        with self._lock:
            self._seen[threading.get_ident()] = self._generation
            return self._now

    def _begin(self, kind: str, deadline: float | None) -> None:
        """Note a timed wait beginning on this thread (clock lock held)."""
        me = threading.get_ident()
        self._waits_begun[me] = self._waits_begun.get(me, 0) + 1
        self._waiting[me] = (kind, deadline)

    def _end(self) -> None:
        self._waiting.pop(threading.get_ident(), None)

    def wall(self) -> datetime:
        with self._lock:
            return self._wall_start + timedelta(seconds=self._now - self._start)

    def sleep(self, seconds: float) -> None:
        with self._lock:
            deadline = self._now + seconds
            self._deadlines.append(deadline)
            self._begin("sleep", deadline)
            try:
                while self._now < deadline:
                    self._lock.wait()
            finally:
                self._deadlines.remove(deadline)
                self._end()

    def wait_condition(self, cond: threading.Condition, timeout: float | None) -> bool:
        with self._lock:
            me = threading.get_ident()
            if self._seen.get(me, self._generation) < self._generation:
                # This thread read the time before the last advance and has not looked since: wake at
                # once (a spurious wake-up, which callers handle) so it re-reads instead of sleeping
                # through the advance it missed.
                self._seen[me] = self._generation
                return True
            deadline = None if timeout is None else self._now + timeout
            if deadline is not None and self._now >= deadline:
                return False
            self._cond_waits.append(cond)
            self._begin("condition", deadline)
            if deadline is not None:
                self._deadlines.append(deadline)
        try:
            # advance() notifies cond under cond's lock, which we hold until wait() releases it,
            # so a wake-up between registration and wait() cannot be lost.
            cond.wait()
        finally:
            with self._lock:
                self._cond_waits.remove(cond)
                self._end()
                if deadline is not None:
                    self._deadlines.remove(deadline)
        return deadline is None or self.now() < deadline

    def wait_event(self, event: threading.Event, timeout: float | None) -> bool:
        with self._lock:
            deadline = None if timeout is None else self._now + timeout
            self._begin("event", deadline)
            if deadline is not None:
                self._deadlines.append(deadline)
        try:
            while not event.is_set():
                with self._lock:
                    if deadline is not None and self._now >= deadline:
                        return False
                    self._lock.wait(_FAKE_EVENT_POLL_SECONDS)
            return True
        finally:
            with self._lock:
                self._end()
                if deadline is not None:
                    self._deadlines.remove(deadline)

    # ----- test driving -----
    def advance(self, seconds: float) -> None:
        self._advance(seconds)

    def _advance(self, seconds: float) -> dict[int, int]:
        """Move time on and wake the waiters; return the threads whose wait comes due, with the
        number of waits each had begun."""
        if seconds < 0:
            raise ValueError("FakeClock cannot go backwards: time is monotonic")
        with self._lock:
            self._now += seconds
            self._generation += 1
            due = {
                ident: self._waits_begun[ident]
                for ident, (kind, deadline) in self._waiting.items()
                if kind == "condition" or (deadline is not None and deadline <= self._now)
            }
            conds = list({id(c): c for c in self._cond_waits}.values())
            self._lock.notify_all()
        for cond in conds:
            with cond:
                cond.notify_all()
        return due

    def advance_and_settle(self, seconds: float, *, real_timeout: float = 5.0) -> None:
        """Advance, then block (real time) until every thread whose timed wait came due has begun
        waiting again or ended: each has looked at the new time, so what it did not do, it will not.

        A thread woken here that then blocks on something other than this clock (not a timed wait)
        never settles: AssertionError after ``real_timeout``.
        """
        self._settle(self._advance(seconds), f"advancing {seconds} s", real_timeout)

    def _settle(self, due: dict[int, int], what: str, real_timeout: float) -> None:
        alive = {t.ident for t in threading.enumerate()}
        end = time.monotonic() + real_timeout
        while True:
            with self._lock:
                pending = [
                    ident
                    for ident, begun in due.items()
                    if ident in alive and not (self._waits_begun[ident] > begun and ident in self._waiting)
                ]
            if not pending:
                return
            if time.monotonic() > end:
                raise AssertionError(f"{len(pending)} thread(s) did not wait again after {what}")
            time.sleep(0.001)
            alive = {t.ident for t in threading.enumerate()}

    def waiters(self) -> int:
        """Number of timed waits in progress (sleep, wait_condition with timeout, wait_event)."""
        with self._lock:
            return len(self._deadlines)

    def next_deadline(self) -> float | None:
        """The earliest deadline still in the future (waiters already due are ignored)."""
        with self._lock:
            future = [d for d in self._deadlines if d > self._now]
            return min(future) if future else None

    def advance_to_next_deadline(self, *, settle: bool = False, real_timeout: float = 5.0) -> float:
        """Wait (real time) for a future deadline, jump to it, and return the step taken; with
        ``settle``, then block as ``advance_and_settle`` does."""
        end = time.monotonic() + real_timeout
        while (deadline := self.next_deadline()) is None:
            if time.monotonic() > end:
                raise AssertionError("no clock waiter with a future deadline")
            time.sleep(0.001)
        step = deadline - self.now()
        due = self._advance(step)
        if settle:
            self._settle(due, f"advancing {step} s", real_timeout)
        return step

    def block_until_waiters(self, count: int, *, real_timeout: float = 5.0) -> None:
        """Block (real time) until ``count`` timed waits are registered; AssertionError if not."""
        end = time.monotonic() + real_timeout
        while self.waiters() < count:
            if time.monotonic() > end:
                raise AssertionError(f"expected {count} clock waiters, have {self.waiters()}")
            time.sleep(0.001)
