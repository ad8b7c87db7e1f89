"""The FirewallConfiguration versions this controller wrote: their watch echoes wake no one twice, and
until the watch brings a write back, its answer stands in for the cache's older copy.

A firewall write comes back on the watch. The pass that wrote it already used the write's
answer (`firewalls.Applied`), so for the peering that wrote it the echo is not news: queueing
it would cost a second pass per pod change that finds nothing to do. Anyone else the change
concerns (DryRun policies of the namespace) is still woken, and any later version (Liqo's
agents reporting, another writer) is news for everyone.

The echo can also come late: a busy reflector thread, or a pass queued for another reason,
runs the peering again before the cache holds what the last pass wrote. That pass must not
take the old copy for the truth (a create refused as AlreadyExists, an update refused as a
Conflict, a status saying "not written yet" that nothing would correct), so `fresher` hands it
the answer, as client-go's MutationCache does, while the cache still shows the version the
write replaced (or nothing, for a create).

Guarantees:
- `wrote`, `writer_of`, `fresher`, `seen` and `gone` are safe from any thread (workers write and
  read, the reflector reports).
- One entry per firewall name, dropped when the firewall is deleted; an answer is held only
  until the cache shows any other version than the one it replaced: the size follows the
  number of firewalls, not the number of writes, and at most one object each while in flight.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


def _id(obj: Mapping[str, Any]) -> tuple[str, str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or ""), str(meta.get("resourceVersion") or "")


@dataclass(frozen=True)
class _Write:
    version: str  # the version the write made
    key: str  # the peering whose pass wrote it
    replaced: str | None  # the version it replaced; None for a create
    answer: Mapping[str, Any] | None  # the API server's answer, until the cache moves past `replaced`


class OwnWrites:
    """Per firewall (namespace, name): the version our last write got, the peering key that wrote it, and
    its answer while the cache is behind it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: dict[tuple[str, str], _Write] = {}

    def wrote(self, key: str, answer: Mapping[str, Any], replaced: str | None = None) -> None:
        """`key`'s pass wrote this version (the API server's answer to a create, or to an update of `replaced`)."""
        namespace, name, version = _id(answer)
        if name and version:
            with self._lock:
                self._last[(namespace, name)] = _Write(version, key, replaced, answer)

    def writer_of(self, obj: Mapping[str, Any]) -> str | None:
        """The peering key whose write this version is, or None when someone else made it."""
        namespace, name, version = _id(obj)
        with self._lock:
            found = self._last.get((namespace, name))
        return found.key if found is not None and found.version == version else None

    def fresher(self, namespace: str, name: str, cached: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
        """Our write's answer while `cached` is still what it replaced; else `cached`."""
        with self._lock:
            found = self._last.get((namespace, name))
        if found is None or found.answer is None or not _behind(found, cached):
            return cached
        return found.answer

    def seen(self, obj: Mapping[str, Any]) -> None:
        """The cache now holds `obj`: once that is past what our write replaced, the answer is not needed."""
        namespace, name, _ = _id(obj)
        with self._lock:
            found = self._last.get((namespace, name))
            if found is not None and found.answer is not None and not _behind(found, obj):
                self._last[(namespace, name)] = _Write(found.version, found.key, found.replaced, None)

    def gone(self, obj: Mapping[str, Any]) -> None:
        namespace, name, _ = _id(obj)
        with self._lock:
            self._last.pop((namespace, name), None)


def _behind(write: _Write, cached: Mapping[str, Any] | None) -> bool:
    """Whether the cache still shows the copy `write` replaced (nothing, for a create)."""
    if cached is None:
        return write.replaced is None
    return write.replaced is not None and _id(cached)[2] == write.replaced
