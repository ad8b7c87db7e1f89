"""When each peering's inputs changed without a pass having seen it yet: where its change-to-firewall latency starts.

Guarantees:
- Per key, only the oldest change no pass has taken is kept (one float a peering), so memory is
  bounded by the peerings and a burst counts from its first change.
- `take(key)` hands the mark to the pass about to read the caches that hold the change; a pass
  that fails gives it back (`restore`), so the retry that finally writes measures from the first
  change, backoff included.
- Thread-safe: informer handlers mark, workers take.

Caller duties:
- Call `changed(key)` only once the store holds the change (the reflector's handler runs after
  the store is updated), and `take(key)` before the pass reads the caches.
- Call `forget(key)` when the peering is gone.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class ChangeTimes:
    """The oldest unhandled input change per peering key, on an injected monotonic clock (seconds)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._since: dict[str, float] = {}

    def changed(self, key: str) -> None:
        """An informer event changed `key`'s inputs; a mark already there is older and stays."""
        now = self._clock()
        with self._lock:
            self._since.setdefault(key, now)

    def take(self, key: str) -> float | None:
        """The mark for the pass about to run (None: no input changed since the last pass)."""
        with self._lock:
            return self._since.pop(key, None)

    def restore(self, key: str, since: float | None) -> None:
        """The pass that took `since` failed: the key keeps the older of it and any newer mark."""
        if since is None:
            return
        with self._lock:
            newer = self._since.get(key)
            self._since[key] = since if newer is None else min(since, newer)

    def age(self, since: float) -> float:
        """Seconds from a mark to now."""
        return self._clock() - since

    def forget(self, key: str) -> None:
        with self._lock:
            self._since.pop(key, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._since)
