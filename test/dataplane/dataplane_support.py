"""Scope: helpers shared by the dataplane tests: probe every cell, compare, re-check misses."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from liqosec.dataplane.netns import Topology

# A cell that disagrees is probed again with a long timeout before it counts, so
# a slow host cannot turn an accept into a "drop"; a real drop still times out.
RECHECK_TIMEOUT = 2.0


@dataclass(frozen=True)
class Cells:
    observed: dict[tuple[str, str], bool]
    expected: dict[tuple[str, str], bool]

    @property
    def disagreements(self) -> dict[tuple[str, str], tuple[bool, bool]]:
        """(src, dst) -> (observed, expected) where packets and expectation differ."""
        return {k: (v, self.expected[k]) for k, v in self.observed.items() if v != self.expected[k]}

    @property
    def agreed(self) -> int:
        return len(self.observed) - len(self.disagreements)


def check_cells(topo: Topology, expect: Callable[[str, str], bool],
                pairs: Sequence[tuple[str, str]] | None = None) -> Cells:
    """Probe every ordered pair (or the given ones) and compare with expect(src, dst)."""
    todo = list(pairs) if pairs is not None else topo.all_pairs()
    observed = topo.probe_pairs(todo)
    expected = {p: expect(*p) for p in todo}
    misses = [p for p in todo if observed[p] != expected[p]]
    if misses:
        observed.update(topo.probe_pairs(misses, timeout=RECHECK_TIMEOUT))
    return Cells(observed, expected)


def describe(cells: Cells, names: dict[str, str]) -> str:
    return "\n".join(f"{names.get(s, s)} -> {names.get(d, d)}: packets say {o}, expected {e}"
                     for (s, d), (o, e) in sorted(cells.disagreements.items()))


def chain(rules: list[dict[str, Any]], *, table: str = "lqs_hand", policy: str = "accept",
          name: str = "forward") -> dict[str, Any]:
    """A FirewallConfiguration with one forward filter chain, as the lead's compiler shapes them."""
    return {"apiVersion": "networking.liqo.io/v1beta1", "kind": "FirewallConfiguration",
            "metadata": {"name": table, "namespace": "liqo-tenant-hand"},
            "spec": {"table": {"name": table, "family": "IPV4", "chains": [
                {"name": name, "hook": "forward", "type": "filter", "priority": 0, "policy": policy,
                 "rules": {"filterRules": rules}}]}}}


def ip(position: str, value: str, op: str = "eq") -> dict[str, Any]:
    return {"op": op, "ip": {"position": position, "value": value}}


def rule(name: str, *matches: dict[str, Any], action: str = "drop") -> dict[str, Any]:
    return {"name": name, "action": action, "counter": True, "match": list(matches)}


ESTABLISHED = {"op": "eq", "ctstate": {"value": ["established", "related"]}}
