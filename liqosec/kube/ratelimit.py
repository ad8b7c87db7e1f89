"""Rate limiters for work-queue retries, after client-go's ``util/workqueue``.

Guarantees:
- ``when(item)`` returns how long (seconds, >= 0) the item should wait before its next try
  and records the attempt; ``forget(item)`` clears the item's history; ``num_requeues(item)``
  counts the ``when`` calls since the last ``forget``.
- ``ItemExponentialFailureRateLimiter``: per item ``base * 2**failures``, capped at ``cap``
  (never overflows however many failures).
- ``BucketRateLimiter``: an overall token bucket on the injected clock (``qps`` refill,
  ``burst`` capacity); each ``when`` reserves a token, possibly in the future, so N calls in a
  burst are spread at 1/qps once the bucket is empty. It keeps no per-item state.
- ``MaxOfRateLimiter``: the largest delay of its limiters; forget/requeues fan out.
- All limiters are thread-safe.

Caller duties:
- Call ``forget(item)`` when the item succeeds, or its backoff keeps growing.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable
from typing import Protocol

from liqosec.kube.clock import Clock, RealClock

# client-go's DefaultControllerRateLimiter: retries start at 5 ms and double up to 1000 s per
# item, while the whole queue is held to 10 qps with bursts of 100 so a mass failure (e.g. the
# API server restarting) does not turn into a retry storm.
DEFAULT_BASE_DELAY = 0.005
DEFAULT_MAX_DELAY = 1000.0
DEFAULT_QPS = 10.0
DEFAULT_BURST = 100


class RateLimiter(Protocol):
    def when(self, item: Hashable) -> float: ...

    def forget(self, item: Hashable) -> None: ...

    def num_requeues(self, item: Hashable) -> int: ...


class ItemExponentialFailureRateLimiter:
    """Per-item exponential backoff: base, 2*base, 4*base, ... capped at ``cap``."""

    def __init__(self, base: float = DEFAULT_BASE_DELAY, cap: float = DEFAULT_MAX_DELAY) -> None:
        if base <= 0:
            raise ValueError("base delay must be > 0: a zero base never backs off")
        if cap < base:
            raise ValueError("cap must be >= base")
        self._base = base
        self._cap = cap
        self._lock = threading.Lock()
        self._failures: dict[Hashable, int] = {}

    def when(self, item: Hashable) -> float:
        with self._lock:
            exp = self._failures.get(item, 0)
            self._failures[item] = exp + 1
        # 2**exp grows without bound; compare in float space and stop once past the cap.
        if exp > 1023:
            return self._cap
        return min(self._base * float(2**exp), self._cap)

    def forget(self, item: Hashable) -> None:
        with self._lock:
            self._failures.pop(item, None)

    def num_requeues(self, item: Hashable) -> int:
        with self._lock:
            return self._failures.get(item, 0)


class BucketRateLimiter:
    """An overall token bucket: ``burst`` immediate tries, then ``qps`` per second."""

    def __init__(self, qps: float = DEFAULT_QPS, burst: int = DEFAULT_BURST, *, clock: Clock | None = None) -> None:
        if qps <= 0:
            raise ValueError("qps must be > 0")
        if burst < 1:
            raise ValueError("burst must be >= 1: a bucket that holds no token never admits")
        self._qps = qps
        self._burst = float(burst)
        self._clock = clock or RealClock()
        self._lock = threading.Lock()
        self._tokens = float(burst)
        self._last = self._clock.now()

    def when(self, item: Hashable) -> float:
        with self._lock:
            now = self._clock.now()
            self._tokens = min(self._burst, self._tokens + (now - self._last) * self._qps)
            self._last = now
            self._tokens -= 1.0  # reserve; a negative balance is a reservation in the future
            return 0.0 if self._tokens >= 0 else -self._tokens / self._qps

    def forget(self, item: Hashable) -> None:
        return None

    def num_requeues(self, item: Hashable) -> int:
        return 0


class MaxOfRateLimiter:
    """The worst (longest) delay among several limiters."""

    def __init__(self, *limiters: RateLimiter) -> None:
        if not limiters:
            raise ValueError("MaxOfRateLimiter needs at least one limiter")
        self._limiters = limiters

    def when(self, item: Hashable) -> float:
        return max(limiter.when(item) for limiter in self._limiters)

    def forget(self, item: Hashable) -> None:
        for limiter in self._limiters:
            limiter.forget(item)

    def num_requeues(self, item: Hashable) -> int:
        return max(limiter.num_requeues(item) for limiter in self._limiters)


def default_controller_rate_limiter(clock: Clock | None = None) -> MaxOfRateLimiter:
    """client-go's default: per-item 5 ms..1000 s exponential, overall 10 qps burst 100."""
    return MaxOfRateLimiter(
        ItemExponentialFailureRateLimiter(DEFAULT_BASE_DELAY, DEFAULT_MAX_DELAY),
        BucketRateLimiter(DEFAULT_QPS, DEFAULT_BURST, clock=clock),
    )
