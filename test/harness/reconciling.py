"""Driving a reconciler by hand: pass after pass until one writes nothing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol


class Reconciles(Protocol):
    """A fixture that reconciles a key (returning the API calls it made) and lets its informers catch up."""

    def reconcile(self, key: str) -> Sequence[Any]: ...

    def sync(self) -> None: ...


def converge(f: Reconciles, *keys: str, passes: int = 5) -> list[Any]:
    """Reconcile `keys` (each once a pass) and let the informers catch up, until a pass writes nothing;
    the writes of every pass. AssertionError when `passes` are not enough."""
    writes: list[Any] = []
    for _ in range(passes):
        wrote = [a for k in keys for a in f.reconcile(k) if a.write]
        f.sync()
        if not wrote:
            return writes
        writes += wrote
    raise AssertionError(f"{', '.join(keys)} did not converge in {passes} passes")


def firewall_writes(writes: Sequence[Any]) -> int:
    """How many of `writes` wrote a FirewallConfiguration."""
    return sum(a.resource == "firewallconfigurations" for a in writes)
