"""FullCollections: Python's full garbage collections run on a schedule, not whenever the young ones add up."""

from __future__ import annotations

import gc
import threading

import pytest

from liqosec.kube.heap import NEVER, Collected, FullCollections


class RecordingCollector:
    """Keeps thresholds as gc does and hears collections; the Nth sets `stop`, as a controller stopping would."""

    def __init__(self, stop: threading.Event, collections: int) -> None:
        self.threshold = (700, 10, 10)
        self.collected: list[int] = []
        self._stop, self._collections = stop, collections

    def get_threshold(self) -> tuple[int, int, int]:
        return self.threshold

    def set_threshold(self, threshold0: int, threshold1: int = 10, threshold2: int = 10, /) -> None:
        self.threshold = (threshold0, threshold1, threshold2)

    def collect(self, generation: int = 2) -> int:
        self.collected.append(generation)
        if len(self.collected) == self._collections:
            self._stop.set()
        return 3


def test_the_young_collections_stay_and_full_ones_come_every_period() -> None:
    stop = threading.Event()
    collector = RecordingCollector(stop, collections=3)
    heard: list[Collected] = []
    FullCollections(period=0.001, collector=collector).run(stop, heard.append)
    assert collector.threshold == (700, 10, NEVER)
    assert collector.collected == [2, 2, 2]  # full ones: every generation
    assert [c.found for c in heard] == [3, 3, 3]


def test_a_stopped_controller_collects_nothing() -> None:
    stop = threading.Event()
    stop.set()
    collector = RecordingCollector(stop, collections=1)
    FullCollections(collector=collector).run(stop)
    assert collector.collected == []


def test_with_the_real_collector_young_cycles_still_go_and_old_ones_wait_for_the_schedule() -> None:
    class Node:
        def __init__(self) -> None:
            self.me = self

    before = gc.get_threshold()
    try:
        gc.collect()
        FullCollections().take_over()
        assert gc.get_threshold()[2] == NEVER
        Node()  # a young cycle: the next young collection frees it
        assert gc.collect(0) >= 1
        old = Node()
        gc.collect(1)  # `old` is reachable: it ages into the oldest generation
        del old  # now garbage that only a full collection finds
        assert gc.collect(1) == 0
        assert FullCollections().collect().found >= 1
    finally:
        gc.set_threshold(*before)  # the rest of the test session collects as usual


def test_a_period_of_zero_is_refused() -> None:
    with pytest.raises(ValueError, match="period"):
        FullCollections(period=0)
