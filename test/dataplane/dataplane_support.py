"""Scope: helpers shared by the dataplane tests: probe every cell, compare, re-check misses."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from harness.netns import Cluster

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


def check_cells(
    topo: Cluster, expect: Callable[[str, str], bool], pairs: Sequence[tuple[str, str]] | None = None
) -> Cells:
    """Probe every ordered pair (or the given ones) and compare with expect(src, dst)."""
    todo = list(pairs) if pairs is not None else topo.all_pairs()
    observed = topo.probe_pairs(todo)
    expected = {p: expect(*p) for p in todo}
    misses = [p for p in todo if observed[p] != expected[p]]
    if misses:
        observed.update(topo.probe_pairs(misses, timeout=RECHECK_TIMEOUT))
    return Cells(observed, expected)


def describe(cells: Cells, names: dict[str, str]) -> str:
    return "\n".join(
        f"{names.get(s, s)} -> {names.get(d, d)}: packets say {o}, expected {e}"
        for (s, d), (o, e) in sorted(cells.disagreements.items())
    )


# Hand-written firewalls go straight to Liqo's agents, which serve every FirewallConfiguration
# with these labels on every node; liqosec leaves them alone (no managed-by label).
HAND_NAMESPACE = "liqo-tenant-hand"
HAND_LABELS = {
    "networking.liqo.io/firewall-category": "fabric",
    "networking.liqo.io/firewall-subcategory": "all-nodes",
    "test.liqosec.io/hand": "true",
}


def chain(
    rules: list[dict[str, Any]], *, table: str = "lqs_hand", policy: str = "accept", name: str = "forward"
) -> dict[str, Any]:
    """A hand-written FirewallConfiguration with one forward filter chain, as the compiler shapes them."""
    return {
        "apiVersion": "networking.liqo.io/v1beta1",
        "kind": "FirewallConfiguration",
        "metadata": {"name": table.replace("_", "-"), "namespace": HAND_NAMESPACE, "labels": HAND_LABELS},
        "spec": {
            "table": {
                "name": table,
                "family": "IPV4",
                "chains": [
                    {
                        "name": name,
                        "hook": "forward",
                        "type": "filter",
                        "priority": 0,
                        "policy": policy,
                        "rules": {"filterRules": rules},
                    }
                ],
            }
        },
    }


def ip(position: str, value: str, op: str = "eq") -> dict[str, Any]:
    return {"op": op, "ip": {"position": position, "value": value}}


def rule(name: str, *matches: dict[str, Any], action: str = "drop") -> dict[str, Any]:
    return {"name": name, "action": action, "counter": True, "match": list(matches)}


ESTABLISHED = {"op": "eq", "ctstate": {"value": ["established", "related"]}}


# ---- an independent reading of docs/semantics.md ("Evaluation", "Security modes"), for end-to-end checks ----

_SEGREGATION = [  # "Security modes", in the order written there; evaluated after the explicit rules
    (None, "vc-remote", "allow"),
    ("remote-cluster", "@offloaded-service-backends", "allow"),
    ("remote-cluster", "offloaded", "allow"),
    ("offloaded", "remote-cluster", "allow"),
    ("offloaded", "local-cluster", "allow"),
    ("local-cluster", "offloaded", "allow"),
    ("offloaded", "@outside", "allow"),
    ("@outside", "offloaded", "allow"),
    ("local-cluster", "@reflected-service-backends", "allow"),
    (None, None, "deny"),
]

# "Security modes", ProtectedBorders: the virtual cluster talks inside itself, then deny.
_VIRTUAL_CLUSTER = ("vc-local", "vc-remote", "offloaded", "@offloaded-service-backends", "@reflected-service-backends")
_PROTECTED_BORDERS = [("@vc", "@vc", "allow"), (None, None, "deny")]
_ALIASES = {"slice-local": "vc-local", "slice-remote": "vc-remote"}  # "Groups"


def _term(party: dict[str, Any] | None) -> str | None:
    if not party:
        return None
    if "podSelector" in party or "namespaceSelector" in party:  # read by `_selected`, from the YAML
        return "@selector:" + json.dumps(party, sort_keys=True)
    return _ALIASES.get(party["group"], party["group"]) if "group" in party else f"namespace:{party['namespace']}"


def _label_selector_holds(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """Kubernetes' label selector semantics, re-derived: every matchLabels pair and expression holds."""
    if selector is None:
        return True
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for e in selector.get("matchExpressions") or ():
        present, value = e["key"] in labels, labels.get(e["key"])
        holds = {
            "In": present and value in e.get("values", []),
            "NotIn": not (present and value in e.get("values", [])),
            "Exists": present,
            "DoesNotExist": not present,
        }[e["operator"]]
        if not holds:
            return False
    return True


def _selected(objects: Sequence[dict[str, Any]], party: dict[str, Any]) -> set[int]:
    """The pod IPs a selector party names (docs/semantics.md, "Selector parties"); its group applied by the caller."""
    from liqosec.firewall.addresses import ip_to_int

    ns_labels = {
        o["metadata"]["name"]: {
            "kubernetes.io/metadata.name": o["metadata"]["name"],
            **(o["metadata"].get("labels") or {}),
        }
        for o in objects
        if o.get("kind") == "Namespace"
    }
    out: set[int] = set()
    for o in objects:
        if o.get("kind") != "Pod" or (o.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        ns = o["metadata"].get("namespace", "default")
        if party.get("namespace") not in (None, ns):
            continue
        if not _label_selector_holds(
            party.get("namespaceSelector"), ns_labels.get(ns, {"kubernetes.io/metadata.name": ns})
        ):
            continue
        if not _label_selector_holds(party.get("podSelector"), o["metadata"].get("labels") or {}):
            continue
        out |= {ip_to_int(p["ip"]) for p in (o.get("status") or {}).get("podIPs") or () if "." in p["ip"]}
    return out


def policy_connects(objects: Sequence[dict[str, Any]], *, stateful: bool) -> Callable[[str, str], bool]:
    """What the policies mean for a TCP connection, read from the YAML, not from the compiler.

    Group membership comes from the core's resolver (tested elsewhere); rule order,
    scope, defaults, modes, the both-tables rule and conntrack are re-derived here.
    """
    from liqosec.firewall.addresses import ip_to_int
    from liqosec.firewall.capabilities import Capabilities
    from liqosec.offline import outcomes

    found = outcomes(objects, capabilities=Capabilities(ctstate=stateful))
    specs = {(o.peering.namespace, o.peering.name): o for o in found}
    policies = []
    for obj in objects:
        if obj.get("kind") != "PeeringConnectivity":
            continue
        md, spec = obj["metadata"], obj.get("spec") or {}
        o = specs[(md["namespace"], md["name"])]
        clauses = [
            (_term(r.get("source")), _term(r.get("destination")), r.get("action") or "deny")
            for r in spec.get("rules") or ()
        ]
        if spec.get("securityMode") == "IntraClusterTrafficSegregation":
            clauses += _SEGREGATION
        elif spec.get("securityMode") == "ProtectedBorders":
            clauses += _PROTECTED_BORDERS
        policies.append((o.groups, clauses, spec.get("defaultAction") or "allow"))

    def member(groups: Any, term: str | None, addr: int) -> bool:
        if term is None:
            return True
        if term == "@outside":
            return addr not in groups.get("local-cluster") and addr not in groups.get("remote-cluster")
        if term == "@vc":
            return any(addr in groups.get(g) for g in _VIRTUAL_CLUSTER)
        if term.startswith("@selector:"):
            party = json.loads(term[len("@selector:") :])
            group = _ALIASES.get(party.get("group", ""), party.get("group"))
            return addr in _selected(objects, party) and (group is None or addr in groups.get(group))
        return addr in groups.get(term)

    def accepts(src: int, dst: int, *, reply: bool) -> bool:
        for groups, clauses, default in policies:
            space = [groups.get(g) for g in ("remote-cluster", "offloaded", "vc-remote")]
            if not any(src in s or dst in s for s in space):
                continue  # not this peering's traffic: its chain lets it pass
            if reply and stateful:
                continue  # established: accepted before any rule
            verdict = next((a for s, d, a in clauses if member(groups, s, src) and member(groups, d, dst)), default)
            if verdict == "deny":
                return False
        return True

    def connects(src: str, dst: str) -> bool:
        a, b = ip_to_int(src), ip_to_int(dst)
        return accepts(a, b, reply=False) and accepts(b, a, reply=True)

    return connects
