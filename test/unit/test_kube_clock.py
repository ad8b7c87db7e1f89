"""Scope: the FakeClock drives every timed wait deterministically; RealClock basics."""

from __future__ import annotations

import threading

import pytest

from harness.fakeclock import FakeClock
from liqosec.kube.clock import RealClock


def test_fake_time_moves_only_when_advanced() -> None:
    clock = FakeClock(10.0)
    assert clock.now() == 10.0
    clock.advance(2.5)
    assert clock.now() == 12.5


def test_wall_follows_monotonic_advances() -> None:
    clock = FakeClock(0.0)
    before = clock.wall()
    clock.advance(90)
    assert (clock.wall() - before).total_seconds() == 90


def test_cannot_go_backwards() -> None:
    with pytest.raises(ValueError):
        FakeClock().advance(-1)


def test_sleep_wakes_when_time_passes_deadline() -> None:
    clock = FakeClock()
    done = threading.Event()

    def sleeper() -> None:
        clock.sleep(5)
        done.set()

    t = threading.Thread(target=sleeper)
    t.start()
    clock.block_until_waiters(1)
    clock.advance(4)
    assert not done.wait(0.02)
    clock.advance(1)
    assert done.wait(2)
    t.join()


def test_wait_event_times_out_on_fake_time() -> None:
    clock = FakeClock()
    event = threading.Event()
    result: list[bool] = []
    t = threading.Thread(target=lambda: result.append(clock.wait_event(event, 3)))
    t.start()
    clock.block_until_waiters(1)
    clock.advance(3)
    t.join(2)
    assert result == [False]


def test_wait_event_returns_early_when_set() -> None:
    clock = FakeClock()
    event = threading.Event()
    result: list[bool] = []
    t = threading.Thread(target=lambda: result.append(clock.wait_event(event, 100)))
    t.start()
    clock.block_until_waiters(1)
    event.set()
    t.join(2)
    assert result == [True]


def test_wait_condition_wakes_at_deadline() -> None:
    clock = FakeClock()
    cond = threading.Condition()
    result: list[bool] = []

    def waiter() -> None:
        with cond:
            result.append(clock.wait_condition(cond, 2))

    t = threading.Thread(target=waiter)
    t.start()
    clock.block_until_waiters(1)
    clock.advance(2)
    t.join(2)
    assert result == [False]
    assert clock.waiters() == 0


def test_real_clock_is_monotonic() -> None:
    clock = RealClock()
    a = clock.now()
    assert clock.now() >= a
    assert clock.wait_event(threading.Event(), 0.001) is False
