"""A step-driven clock for the tests of ``liqosec.kube``: time moves only when the test says so.

``FakeClock`` never moves on its own: time advances only in ``advance``/``set``, which wake every
timed waiter so it can re-check its deadline. Never shipped: it lives beside the tests.
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
        self._waits_started = 0  # timed waits ever begun: a waiter that woke and waits again adds one

    # ----- Clock protocol -----
    def now(self) -> float:
        with self._lock:
            return self._now

    def wall(self) -> datetime:
        with self._lock:
            return self._wall_start + timedelta(seconds=self._now - self._start)

    def sleep(self, seconds: float) -> None:
        with self._lock:
            deadline = self._now + seconds
            self._deadlines.append(deadline)
            self._waits_started += 1
            try:
                while self._now < deadline:
                    self._lock.wait()
            finally:
                self._deadlines.remove(deadline)

    def wait_condition(self, cond: threading.Condition, timeout: float | None) -> bool:
        with self._lock:
            deadline = None if timeout is None else self._now + timeout
            if deadline is not None and self._now >= deadline:
                return False
            self._cond_waits.append(cond)
            self._waits_started += 1
            if deadline is not None:
                self._deadlines.append(deadline)
        try:
            # advance() notifies cond under cond's lock, which we hold until wait() releases it,
            # so a wake-up between registration and wait() cannot be lost.
            cond.wait()
        finally:
            with self._lock:
                self._cond_waits.remove(cond)
                if deadline is not None:
                    self._deadlines.remove(deadline)
        return deadline is None or self.now() < deadline

    def wait_event(self, event: threading.Event, timeout: float | None) -> bool:
        with self._lock:
            deadline = None if timeout is None else self._now + timeout
            self._waits_started += 1
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
            if deadline is not None:
                with self._lock:
                    self._deadlines.remove(deadline)

    # ----- test driving -----
    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("FakeClock cannot go backwards: time is monotonic")
        with self._lock:
            self._now += seconds
            conds = list({id(c): c for c in self._cond_waits}.values())
            self._lock.notify_all()
        for cond in conds:
            with cond:
                cond.notify_all()

    def advance_and_settle(self, seconds: float, *, waiters: int = 1, real_timeout: float = 5.0) -> None:
        """Advance, then block (real time) until `waiters` timed waits have begun since: each waiting
        thread has looked at the new time and gone back to waiting, so what it did not do, it will not."""
        with self._lock:
            target = self._waits_started + waiters
        self.advance(seconds)
        end = time.monotonic() + real_timeout
        while True:
            with self._lock:
                if self._waits_started >= target:
                    return
            if time.monotonic() > end:
                raise AssertionError(f"expected {waiters} clock wait(s) to begin after advancing {seconds} s")
            time.sleep(0.001)

    def waiters(self) -> int:
        """Number of timed waits in progress (sleep, wait_condition with timeout, wait_event)."""
        with self._lock:
            return len(self._deadlines)

    def next_deadline(self) -> float | None:
        """The earliest deadline still in the future (waiters already due are ignored)."""
        with self._lock:
            future = [d for d in self._deadlines if d > self._now]
            return min(future) if future else None

    def advance_to_next_deadline(self, *, real_timeout: float = 5.0) -> float:
        """Wait (real time) for a future deadline, jump to it, and return the step taken."""
        end = time.monotonic() + real_timeout
        while (deadline := self.next_deadline()) is None:
            if time.monotonic() > end:
                raise AssertionError("no clock waiter with a future deadline")
            time.sleep(0.001)
        step = deadline - self.now()
        self.advance(step)
        return step

    def block_until_waiters(self, count: int, *, real_timeout: float = 5.0) -> None:
        """Block (real time) until ``count`` timed waits are registered; AssertionError if not."""
        end = time.monotonic() + real_timeout
        while self.waiters() < count:
            if time.monotonic() > end:
                raise AssertionError(f"expected {count} clock waiters, have {self.waiters()}")
            time.sleep(0.001)
