"""Scope: per-item exponential backoff, the overall token bucket and their combination."""

from __future__ import annotations

import pytest

from harness.fakeclock import FakeClock
from liqosec.kube.ratelimit import (
    BucketRateLimiter,
    ItemExponentialFailureRateLimiter,
    MaxOfRateLimiter,
    default_controller_rate_limiter,
)


def test_backoff_doubles_and_caps() -> None:
    limiter = ItemExponentialFailureRateLimiter(0.005, 1.0)
    delays = [limiter.when("a") for _ in range(10)]
    assert delays[:4] == [0.005, 0.01, 0.02, 0.04]
    assert delays[-1] == 1.0
    assert limiter.num_requeues("a") == 10


def test_backoff_never_overflows() -> None:
    limiter = ItemExponentialFailureRateLimiter(0.005, 1000.0)
    for _ in range(3000):
        delay = limiter.when("a")
    assert delay == 1000.0


def test_forget_resets_item_backoff_only() -> None:
    limiter = ItemExponentialFailureRateLimiter(1.0, 100.0)
    limiter.when("a"), limiter.when("a"), limiter.when("b")
    limiter.forget("a")
    assert limiter.num_requeues("a") == 0
    assert limiter.when("a") == 1.0
    assert limiter.when("b") == 2.0


def test_bucket_admits_burst_then_spaces_at_qps() -> None:
    clock = FakeClock()
    bucket = BucketRateLimiter(10, 3, clock=clock)
    assert [bucket.when(i) for i in range(3)] == [0, 0, 0]
    assert bucket.when(3) == pytest.approx(0.1)
    assert bucket.when(4) == pytest.approx(0.2)


def test_bucket_limits_overall_rate() -> None:
    clock = FakeClock()
    bucket = BucketRateLimiter(10, 100, clock=clock)
    # 1100 items in one instant: the last may go only after 1000 extra tokens at 10/s.
    delays = [bucket.when(i) for i in range(1100)]
    assert max(delays) == pytest.approx(100.0)
    clock.advance(200)  # refill saturates at burst
    assert [bucket.when(i) for i in range(100)] == [0.0] * 100


def test_max_of_takes_worst_delay() -> None:
    clock = FakeClock()
    limiter = MaxOfRateLimiter(ItemExponentialFailureRateLimiter(1.0, 10.0), BucketRateLimiter(1, 1, clock=clock))
    assert limiter.when("a") == 1.0
    assert limiter.when("a") == 2.0
    assert limiter.when("b") == pytest.approx(2.0)  # bucket already two tokens in debt
    limiter.forget("a")
    assert limiter.num_requeues("a") == 0


def test_default_controller_limiter_starts_at_5ms() -> None:
    limiter = default_controller_rate_limiter(FakeClock())
    assert limiter.when("x") == 0.005


@pytest.mark.parametrize(
    "factory",
    [
        lambda: ItemExponentialFailureRateLimiter(0, 1),
        lambda: ItemExponentialFailureRateLimiter(2, 1),
        lambda: BucketRateLimiter(0, 1),
        lambda: BucketRateLimiter(1, 0),
        lambda: MaxOfRateLimiter(),
    ],
)
def test_constructors_reject_bad_configuration(factory: object) -> None:
    with pytest.raises(ValueError):
        factory()  # type: ignore[operator]
