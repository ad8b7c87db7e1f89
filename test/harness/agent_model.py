"""A model of Liqo's firewall agent: what a node's nftables hold after it reconciles.

Liqo's agent (pkg/firewall in liqotech/liqo) does not replace a table when a
FirewallConfiguration changes; it patches it. The order rules end up in on a
node therefore depends on history, and a compiled chain is only correct if
its verdicts survive that history. This module replays the agent so the
compiler and the dataplane tests can check exactly that.

Guarantees (each mirrors the agent's code, not its comments):
- One table per FirewallConfiguration, keyed by (family, `spec.table.name`).
  Tables whose FirewallConfiguration is gone are removed (the agent deletes
  them from its finalizer).
- A live chain is deleted when the FC no longer names it or when any of its
  type, hook, priority or policy differs from the FC (policy included: the
  agent's comment says otherwise, its code compares it). New chains are
  created with the FC's properties and no rules.
- A live rule is deleted when it has no name, when no FC rule has its name,
  or when the first FC rule with its name forges different expressions.
  Expressions are compared as the agent does: same count, and every live
  expression occurs somewhere in the new rule (counters ignored). So
  swapping the values of two matches on the same field is not a change.
- FC rules whose name is not on the node after cleaning are appended at the
  end of the chain, in FC order. Nothing is ever reordered.

Invariants: every value here is immutable (frozen dataclasses, tuples, rule
bodies stored as canonical JSON), so states can be shared and compared.
Callers pass FirewallConfiguration objects as plain dicts; `apply` never
mutates them. Pure: no I/O.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

# CRD defaults the API server fills in; the agent sees them as set.
DEFAULT_PRIORITY = 0
DEFAULT_COUNTER = True
# Base chains created without a policy accept (nftables default).
DEFAULT_POLICY = "accept"

Expr = tuple[Any, ...]


@dataclass(frozen=True)
class Rule:
    """A rule as the node holds it: its name (the nft comment) and its FC body."""

    name: str
    body: str  # canonical JSON of the FC filter rule

    @staticmethod
    def from_spec(spec: Mapping[str, Any]) -> Rule:
        name = spec.get("name")
        if not isinstance(name, str) or not name:
            # The agent dereferences the name while forging a rule; unnamed rules crash it.
            raise ValueError(f"filter rule without a name: {dict(spec)!r}")
        return Rule(name=name, body=json.dumps(spec, sort_keys=True))

    def as_spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = json.loads(self.body)
        return spec

    def expressions(self) -> tuple[Expr, ...]:
        """The nft expressions the agent forges for this rule, counter left out."""
        return forge_expressions(self.as_spec())


@dataclass(frozen=True)
class Chain:
    """A live chain: its properties as created and its rules in node order."""

    name: str
    hook: str | None
    type: str
    priority: int
    policy: str
    rules: tuple[Rule, ...] = ()

    def as_spec(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "hook": self.hook,
            "type": self.type,
            "priority": self.priority,
            "policy": self.policy,
            "rules": {"filterRules": [r.as_spec() for r in self.rules]},
        }


@dataclass(frozen=True)
class Table:
    """A live table, shaped like an FC's `spec.table` through `as_spec`."""

    name: str
    family: str
    chains: tuple[Chain, ...] = ()

    def as_spec(self) -> dict[str, Any]:
        return {"name": self.name, "family": self.family, "chains": [c.as_spec() for c in self.chains]}


NodeState = tuple[Table, ...]
EMPTY: NodeState = ()


def table_spec(fc: Mapping[str, Any]) -> Mapping[str, Any]:
    """The `spec.table` of a FirewallConfiguration object (or a bare table spec)."""
    if "spec" in fc:
        table: Mapping[str, Any] = fc["spec"]["table"]
        return table
    return fc


def apply(state: NodeState, fcs: Iterable[Mapping[str, Any]]) -> NodeState:
    """Reconcile the node with the FirewallConfigurations now present, as the agent does.

    FCs are reconciled in the given order; two FCs naming the same table
    fight over it and the last one wins, as on a real node.
    """
    tables: dict[tuple[str, str], Table] = {(t.family, t.name): t for t in state}
    wanted: list[tuple[str, str]] = []
    for fc in fcs:
        spec = table_spec(fc)
        key = (str(spec["family"]), str(spec["name"]))
        tables[key] = _reconcile_table(tables.get(key), spec)
        if key not in wanted:
            wanted.append(key)
    return tuple(t for key, t in tables.items() if key in wanted)


def rule_order(state: NodeState, table: str, chain: str) -> list[str]:
    """Rule names of one chain in node order (empty when absent)."""
    for t in state:
        if t.name != table:
            continue
        for c in t.chains:
            if c.name == chain:
                return [r.name for r in c.rules]
    return []


def from_specs(tables: Iterable[Mapping[str, Any]]) -> NodeState:
    """A node state holding these table specs verbatim, rules in the given order."""
    return tuple(
        Table(
            name=str(t["name"]),
            family=str(t["family"]),
            chains=tuple(_new_chain(c, rules=_filter_rules(c)) for c in t.get("chains") or ()),
        )
        for t in tables
    )


def _filter_rules(chain: Mapping[str, Any]) -> tuple[Rule, ...]:
    rules = (chain.get("rules") or {}).get("filterRules") or ()
    return tuple(Rule.from_spec(r) for r in rules)


def _new_chain(spec: Mapping[str, Any], *, rules: tuple[Rule, ...] = ()) -> Chain:
    priority = spec.get("priority")
    return Chain(
        name=str(spec["name"]),
        hook=spec.get("hook"),
        type=str(spec.get("type") or "filter"),
        priority=DEFAULT_PRIORITY if priority is None else int(priority),
        policy=str(spec.get("policy") or DEFAULT_POLICY),
        rules=rules,
    )


def _chain_modified(live: Chain, spec: Mapping[str, Any]) -> bool:
    """The agent compares only the properties the FC sets."""
    checks = (
        ("type", live.type),
        ("hook", live.hook),
        ("priority", live.priority),
        ("policy", live.policy),
    )
    for key, current in checks:
        value = spec.get(key)
        if value is None or value == "":
            continue
        if (int(value) if key == "priority" else value) != current:
            return True
    return False


def _first_by_name(specs: Sequence[Mapping[str, Any]], name: str) -> Mapping[str, Any] | None:
    for s in specs:
        if s.get("name") == name:
            return s
    return None


def _reconcile_table(live: Table | None, spec: Mapping[str, Any]) -> Table:
    chain_specs: list[Mapping[str, Any]] = list(spec.get("chains") or ())
    names = [str(c["name"]) for c in chain_specs]
    if len(set(names)) != len(names):
        raise ValueError(f"table {spec['name']!r} names a chain twice: {names}")
    # Phase 1 (cleanTable): drop outdated chains and rules.
    kept: list[Chain] = []
    for chain in live.chains if live else ():
        cspec = _first_by_name(chain_specs, chain.name)
        if cspec is None or _chain_modified(chain, cspec):
            continue
        kept.append(_clean_chain(chain, cspec))
    # Phase 2 (addChains/addRules): create missing chains, append missing rules.
    by_name = {c.name: c for c in kept}
    for cspec in chain_specs:
        found = by_name.get(str(cspec["name"]))
        current = found if found is not None else _new_chain(cspec)
        if found is None:
            kept.append(current)
        present = {r.name for r in current.rules}  # one snapshot, as the agent lists once
        added = tuple(r for r in _filter_rules(cspec) if r.name not in present)
        updated = replace(current, rules=current.rules + added)
        kept = [updated if c.name == updated.name else c for c in kept]
        by_name[updated.name] = updated
    return Table(name=str(spec["name"]), family=str(spec["family"]), chains=tuple(kept))


def _clean_chain(chain: Chain, spec: Mapping[str, Any]) -> Chain:
    rule_specs = list((spec.get("rules") or {}).get("filterRules") or ())
    kept = []
    for rule in chain.rules:
        desired = _first_by_name(rule_specs, rule.name)
        if desired is not None and agent_equal(rule.expressions(), forge_expressions(desired)):
            kept.append(rule)
    return replace(chain, rules=tuple(kept))


def agent_equal(live: Sequence[Expr], new: Sequence[Expr]) -> bool:
    """The agent's rule comparison: same length, each live expression found in the new rule."""
    return len(live) == len(new) and all(e in new for e in live)


def forge_expressions(rule: Mapping[str, Any]) -> tuple[Expr, ...]:
    """Mirror of the agent's forgeFilterRule at the level of nft expressions (no counter)."""
    exprs: list[Expr] = []
    for match in rule.get("match") or ():
        exprs.extend(_match_expressions(match))
    action = rule.get("action")
    if action in ("accept", "drop"):
        exprs.append(("verdict", action))
    elif action == "reject":
        exprs.append(("reject", 0, 0))
    else:
        exprs.append(("action", action, rule.get("value")))
    return tuple(exprs)


def _match_expressions(m: Mapping[str, Any]) -> list[Expr]:
    op = m.get("op", "eq")
    out: list[Expr] = []
    if "ctstate" in m:
        states = tuple(sorted((m["ctstate"] or {}).get("value") or ()))
        out += [("ct", "state"), ("bitwise", states), ("cmp", "neq" if op == "eq" else "eq", 0)]
    if m.get("proto"):
        # The agent always matches the protocol with eq, whatever op says.
        out += [("meta", "l4proto"), ("cmp", "eq", m["proto"]["value"])]
    if m.get("dev"):
        out += [("meta", f"{m['dev']['position']}ifname"), ("cmp", op, m["dev"]["value"])]
    if m.get("ip"):
        out += _ip_expressions(m["ip"], op)
    if m.get("port"):
        offset = 0 if m["port"]["position"] == "src" else 2
        value = str(m["port"]["value"])
        out.append(("payload", "transport", offset, 2))
        if "-" in value:
            lo, hi = (int(p) for p in value.split("-", 1))
            out += [("cmp", "gte", lo), ("cmp", "lte", hi)]  # op ignored by the agent
        else:
            out.append(("cmp", op, int(value)))
    return out


def _ip_expressions(ip: Mapping[str, Any], op: str) -> list[Expr]:
    offset = 12 if ip["position"] == "src" else 16
    value = str(ip["value"]).strip()
    load: Expr = ("payload", "network", offset, 4)
    if "/" in value:
        iface = ipaddress.ip_interface(value)
        # The agent compares against the address as written, host bits included.
        return [load, ("bitwise", str(iface.network.netmask)), ("cmp", op, str(iface.ip))]
    if "-" in value:
        lo, hi = (str(ipaddress.ip_address(p.strip())) for p in value.split("-", 1))
        return [load, ("range", op, lo, hi)]
    return [load, ("cmp", op, str(ipaddress.ip_address(value)))]


# NFT_RULE_MAXEXPRS: the kernel refuses a longer rule with EINVAL (measured on 6.x:
# 128 expressions load, 129 do not), and the agent then fails the whole FC.
MAX_RULE_EXPRESSIONS = 128


def expression_count(rule: Mapping[str, Any]) -> int:
    """Kernel expressions the agent forges for a rule: matches, counter, verdict."""
    return len(forge_expressions(rule)) + (1 if rule.get("counter", DEFAULT_COUNTER) else 0)
