"""Time as a seam: every mechanism in ``liqosec.kube`` reads and waits on an injected clock.

Guarantees:
- ``now()`` is monotonic seconds, for durations and deadlines; ``wall()`` is UTC wall time, only
  for timestamps written to the API (lease renewTime); never compare the two.
- ``wait_condition(cond, timeout)`` and ``wait_event(event, timeout)`` behave like
  ``Condition.wait`` / ``Event.wait`` but on the clock's timeline, so a fake clock (the tests'
  ``harness.fakeclock.FakeClock``) can drive every timed wait in the package deterministically.

Caller duties:
- Hold ``cond``'s lock when calling ``wait_condition`` (as for ``Condition.wait``) and re-check
  the predicate in a loop: wake-ups may be early (another waiter's deadline) or spurious.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    """Monotonic time, wall time and timed waits that a fake can drive."""

    def now(self) -> float: ...

    def wall(self) -> datetime: ...

    def sleep(self, seconds: float) -> None: ...

    def wait_condition(self, cond: threading.Condition, timeout: float | None) -> bool:
        """Wait on ``cond`` (lock held) up to ``timeout`` clock seconds; False when timed out."""
        ...

    def wait_event(self, event: threading.Event, timeout: float | None) -> bool:
        """Wait for ``event`` up to ``timeout`` clock seconds; return ``event.is_set()``."""
        ...


class RealClock:
    """The process clock: ``time.monotonic`` and UTC wall time."""

    def now(self) -> float:
        return time.monotonic()

    def wall(self) -> datetime:
        return datetime.now(UTC)

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    def wait_condition(self, cond: threading.Condition, timeout: float | None) -> bool:
        return cond.wait(timeout)

    def wait_event(self, event: threading.Event, timeout: float | None) -> bool:
        return event.wait(timeout)
