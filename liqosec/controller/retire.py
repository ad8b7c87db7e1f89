"""Retiring a FirewallConfiguration without leaving its rules behind on some node.

Every node's Liqo agent shares one finalizer name. When a FirewallConfiguration
is deleted, the agents that see it while it still carries the finalizer delete
their table; one that comes after the first removed the finalizer finds the
object gone and keeps its table, rules and all (docs/semantics.md, "Liqo's
agent"). So liqosec never deletes a FirewallConfiguration that still holds
rules: it first empties it (no rules, policy accept: a table that lets
everything through), waits `GRACE_SECONDS` for the agents to apply that, and
only then deletes it. A table the race leaves behind is then harmless.

Pure: the reconcile asks `next_step` and performs it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from liqosec.compiler.firewallconfiguration import rules_set

RETIRED_ANNOTATION = "security.liqo.io/retired-at"
# The peering's own finalizer: its firewalls are retired before it goes.
FINALIZER = "security.liqo.io/firewall-cleanup"
# Liqo's agents apply an update in well under a second (median 0.16 s in the
# dataplane suite); ten seconds leave room for a busy node.
GRACE_SECONDS = 10.0
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


@dataclass(frozen=True)
class Neutralize:
    """Write this body: no rules, policy accept, the retirement time stamped."""

    body: dict[str, Any]


@dataclass(frozen=True)
class Wait:
    seconds: float


@dataclass(frozen=True)
class Delete:
    pass


Step = Neutralize | Wait | Delete


def neutral_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The same table and chains, with no rules and an accept policy."""
    table = dict(spec.get("table") or {})
    table["chains"] = [{**dict(c), "policy": "accept", "rules": rules_set([])} for c in table.get("chains") or ()]
    return {**dict(spec), "table": table}


def _stamp(now: datetime) -> str:
    return now.astimezone(UTC).strftime(_TIME_FORMAT)


def _retired_at(fc: Mapping[str, Any]) -> datetime | None:
    value = ((fc.get("metadata") or {}).get("annotations") or {}).get(RETIRED_ANNOTATION)
    try:
        return datetime.strptime(str(value), _TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


def retiring(fc: Mapping[str, Any]) -> bool:
    """Emptied for its deletion: it lets everything through, and no policy holds it any more."""
    spec = fc.get("spec") or {}
    return _retired_at(fc) is not None and spec == neutral_spec(spec)


def next_step(fc: Mapping[str, Any], now: datetime, grace: float = GRACE_SECONDS) -> Step:
    """What to do with a FirewallConfiguration liqosec no longer wants."""
    spec = fc.get("spec") or {}
    since = _retired_at(fc)
    if spec != neutral_spec(spec) or since is None:
        meta = dict(fc.get("metadata") or {})
        meta["annotations"] = {**(meta.get("annotations") or {}), RETIRED_ANNOTATION: _stamp(now)}
        return Neutralize({**dict(fc), "metadata": meta, "spec": neutral_spec(spec)})
    elapsed = (now - since).total_seconds()
    return Delete() if elapsed >= grace else Wait(grace - elapsed)
