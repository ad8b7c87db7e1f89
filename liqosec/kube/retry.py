"""Read, change, write; on a conflict read again and retry: client-go's `retry.RetryOnConflict`, for one object.

Guarantees:
- `write` runs at most `attempts` times; each run after the first sees a fresher copy: the
  one `read` returned after a `Conflict`, or the one a write handed back by raising `Stale`.
- `mutate` decides from the current copy: the body to write, or None when nothing needs
  writing (the function then returns None without writing).
- Past `attempts`, `errors.Conflict` names `what` ("... kept changing"); the worker's
  backoff takes over from there.

Caller duties:
- `mutate` must not change the copy it is given (it may be a cache's object).
- Errors other than `Conflict` and `Stale` are the caller's: they propagate as they are.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from liqosec.kube import errors

T = TypeVar("T")
D = TypeVar("D")
R = TypeVar("R")

# A conflict means our copy was stale; a fresh read almost always fixes it at once. Past this,
# hand the key back to the rate-limited queue.
CONFLICT_RETRIES = 3


class Stale(Exception, Generic[T]):
    """Raised by a write that found its copy stale and already holds the fresh one (`current`): no read needed."""

    def __init__(self, current: T) -> None:
        super().__init__("stale copy")
        self.current = current


def retry_on_conflict(
    read: Callable[[], T],
    mutate: Callable[[T], D | None],
    write: Callable[[D], R],
    *,
    current: T,
    what: str,
    attempts: int = CONFLICT_RETRIES,
    on_conflict: Callable[[int], None] | None = None,
) -> R | None:
    """`write(mutate(current))`, reading `current` again after each `Conflict`; None when there was nothing to write.

    `current` is the first copy (often the cache's, so no read is spent when it is fresh);
    `on_conflict(attempt)` hears each conflict (to log it) before the read.
    """
    if attempts < 1:
        raise ValueError(f"attempts must be at least 1, not {attempts}")
    for attempt in range(attempts):
        desired = mutate(current)
        if desired is None:
            return None
        try:
            return write(desired)
        except errors.Conflict:
            if on_conflict is not None:
                on_conflict(attempt)
            current = read()
        except Stale as stale:
            current = stale.current
    raise errors.Conflict(409, "Conflict", f"{what} kept changing")
