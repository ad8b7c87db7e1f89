"""Waiting in real time for something a background thread does: poll a probe until it holds.

The tests' only real-time waits live here (and in the fake clock): a test waits on a condition,
never for a fixed time, so it neither races nor sleeps longer than it must.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def wait_until(
    probe: Callable[[], T], what: str = "the condition", *, timeout: float = 10.0, interval: float = 0.001
) -> T:
    """Poll ``probe`` until it returns something truthy, and return that; AssertionError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


def blocked_on(cond: threading.Condition) -> bool:
    """Whether some thread waits on ``cond`` (CPython's Condition keeps its waiters in ``_waiters``)."""
    waiters: Any = getattr(cond, "_waiters")  # noqa: B009 - private, on purpose: no public way to ask
    return len(waiters) > 0


def hold(seconds: float) -> None:
    """Keep a worker busy for ``seconds`` of real time, to widen a race window (the time is the point)."""
    time.sleep(seconds)
