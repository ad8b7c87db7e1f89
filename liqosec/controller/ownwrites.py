"""The FirewallConfiguration versions this controller wrote, so their watch echoes wake no one twice.

A firewall write comes back on the watch. The pass that wrote it already used the write's
answer (`firewalls.Applied`), so for the peering that wrote it the echo is not news: queueing
it would cost a second pass per pod change that finds nothing to do. Anyone else the change
concerns (DryRun policies of the namespace) is still woken, and any later version (Liqo's
agents reporting, another writer) is news for everyone.

Guarantees:
- `wrote` and `writer_of` are safe from any thread (workers record, the reflector asks).
- One entry per firewall name, dropped when the firewall is deleted: the size follows the
  number of firewalls, not the number of writes.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any


def _id(obj: Mapping[str, Any]) -> tuple[str, str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or ""), str(meta.get("resourceVersion") or "")


class OwnWrites:
    """Per firewall (namespace, name): the resourceVersion our last write got, and the peering key that wrote it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: dict[tuple[str, str], tuple[str, str]] = {}

    def wrote(self, key: str, answer: Mapping[str, Any]) -> None:
        """`key`'s pass wrote this version (the API server's answer to a create or update)."""
        namespace, name, version = _id(answer)
        if name and version:
            with self._lock:
                self._last[(namespace, name)] = (version, key)

    def writer_of(self, obj: Mapping[str, Any]) -> str | None:
        """The peering key whose write this version is, or None when someone else made it."""
        namespace, name, version = _id(obj)
        with self._lock:
            found = self._last.get((namespace, name))
        return found[1] if found is not None and found[0] == version else None

    def gone(self, obj: Mapping[str, Any]) -> None:
        namespace, name, _ = _id(obj)
        with self._lock:
            self._last.pop((namespace, name), None)
