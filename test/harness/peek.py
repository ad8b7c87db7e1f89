"""Peeks at state of liqosec.kube that only tests ask about (the product never needs it, so it has no API)."""

from __future__ import annotations

from liqosec.kube.leaderelection import LeaderElector
from liqosec.kube.reflector import Reflector
from liqosec.kube.store import Store


def index_values(store: Store, index_name: str) -> list[str]:
    """The values an index holds objects under: an emptied value is gone."""
    with store._lock:
        return list(store._indices[index_name])


def last_resource_version(reflector: Reflector) -> str:
    """The resourceVersion the reflector last saw (a list's or an event's)."""
    with reflector._dispatch:
        return reflector._last_rv


def observed_leader(elector: LeaderElector) -> str:
    """The holder of the lease as the elector last read it."""
    with elector._lock:
        return str((elector._observed_spec or {}).get("holderIdentity") or "")
