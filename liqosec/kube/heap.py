"""Python's full garbage collections on a schedule, not every few seconds under churn.

CPython's full collection walks every tracked container. With 10,000 cached pods that is about a
million objects and 90-190 ms, and under churn it ran every ~5 s and found nothing to free (every
pass replaces a compiled firewall of thousands of dicts, which ages into the oldest generation):
it was the tail of pod-to-firewall latency (bench/README.md, "Garbage collection"). Freezing the
caches once (`gc.freeze`) was not enough: the churn's own survivors brought the pause back
within seconds.

The caches' objects are freed by reference counting when replaced; the cyclic collector finds
almost nothing among them. So `FullCollections` leaves the young generations' collections as
they are (young cycles, such as exceptions with their tracebacks, still go at once) and turns
off the automatic full ones (the oldest generation's threshold), running one itself every
`period`: one pause per period, and cyclic garbage that lived through the young collections
waits at most that long.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

PERIOD_SECONDS = 300.0
# The oldest generation's threshold counts younger collections between two full ones: this many
# never comes (one a millisecond would take 68 years).
NEVER = 2**31 - 1


class Collector(Protocol):
    """The part of the `gc` module this uses (injected, so a test sees the calls)."""

    def get_threshold(self) -> tuple[int, int, int]: ...

    def set_threshold(self, threshold0: int, threshold1: int = ..., threshold2: int = ..., /) -> None: ...

    def collect(self, generation: int = 2) -> int: ...


@dataclass(frozen=True)
class Collected:
    seconds: float  # the pause
    found: int  # unreachable objects freed


@dataclass(frozen=True)
class FullCollections:
    period: float = PERIOD_SECONDS
    collector: Collector = field(default_factory=lambda: gc)
    seconds: Callable[[], float] = time.perf_counter

    def __post_init__(self) -> None:
        if self.period <= 0:
            raise ValueError(f"full collection period must be > 0 seconds, not {self.period}")

    def take_over(self) -> None:
        """No automatic full collection from now on: `collect` runs them."""
        young, middle, _ = self.collector.get_threshold()
        self.collector.set_threshold(young, middle, NEVER)

    def collect(self) -> Collected:
        start = self.seconds()
        found = self.collector.collect(2)
        return Collected(self.seconds() - start, found)

    def run(self, stop: threading.Event, on_collected: Callable[[Collected], None] = lambda _: None) -> None:
        """Take over, then collect every `period` until `stop` is set."""
        self.take_over()
        while not stop.wait(self.period):
            on_collected(self.collect())
