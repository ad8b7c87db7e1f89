"""FirewallConfigurations as nft scripts, and the agent's incremental way of applying them.

The text is what Liqo's agent puts in the kernel, expression for expression
(checked with `nft --debug=netlink`), so packets meet the same chain:
- ip `eq|neq` of an address, a CIDR (payload, bitwise, cmp: written as
  `ip saddr & MASK == ADDR` so host bits stay, as the agent keeps them), or a
  range `a-b`; proto is always `eq` (`meta l4proto`); a port range ignores `op`
  (`th dport >= a th dport <= b`); dev is `iifname`/`oifname`.
- `reject` is the agent's bare reject expression: icmp net-unreachable.
- the hypothetical ctstate match (Liqo PR 3144) is `ct state established,related`.
- each rule carries its name as its comment; `counter` when the rule asks.

Incremental application (`plan_incremental`) follows the agent: delete
outdated chains and rules by handle, then add missing chains and append
missing rules in FC order. Whether a live rule is outdated is decided by
comparing nft's own JSON of the live rule with nft's JSON of the desired one
(`canonical_script` loads desired rules into a hook-less scratch table, which
filters nothing), so nft's normalisation cannot cause false changes.

Callers run the scripts with `nft -f` inside the node's network namespace;
this module does no I/O.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from liqosec.firewall.agent import NodeState, table_spec

FAMILIES = {"IPV4": "ip", "IPV6": "ip6", "INET": "inet", "ARP": "arp", "BRIDGE": "bridge", "NETDEV": "netdev"}
SCRATCH_TABLE = "lqs_canonical"


def family_keyword(family: str) -> str:
    try:
        return FAMILIES[family]
    except KeyError:
        raise ValueError(f"unknown table family {family!r}") from None


# nft's scanner identifier; nft 1.0.6 cannot quote table or chain names, so anything
# else (or a keyword such as `fwd`) cannot be written as text, though netlink takes it.
_IDENT = re.compile(r"[A-Za-z_.][A-Za-z0-9/\\_.-]*")


def ident(name: object) -> str:
    """A table or chain name as nft text, refused early when nft could not parse it."""
    text = str(name)
    if not _IDENT.fullmatch(text):
        raise ValueError(f"{text!r} cannot be written as an nft table or chain name")
    return text


def _quote(text: str) -> str:
    if '"' in text or "\\" in text or "\n" in text:
        raise ValueError(f"cannot quote {text!r} for nft")
    return f'"{text}"'


def match_text(m: Mapping[str, Any]) -> str:
    """One FC match element; its parts in the order the agent forges them."""
    op = m.get("op", "eq")
    if op not in ("eq", "neq"):
        raise ValueError(f"invalid match op {op!r}")
    neg = "!= " if op == "neq" else ""
    parts: list[str] = []
    if "ctstate" in m:
        states = ",".join((m["ctstate"] or {}).get("value") or ())
        if not states:
            raise ValueError("ctstate match without states")
        parts.append(f"ct state {states}" if op == "eq" else f"ct state & ({states.replace(',', '|')}) == 0")
    if m.get("proto"):
        parts.append(f"meta l4proto {m['proto']['value']}")
    if m.get("dev"):
        key = {"in": "iifname", "out": "oifname"}[m["dev"]["position"]]
        parts.append(f"{key} {neg}{_quote(str(m['dev']['value']))}")
    if m.get("ip"):
        parts.append(_ip_text(m["ip"], op))
    if m.get("port"):
        key = {"src": "th sport", "dst": "th dport"}[m["port"]["position"]]
        value = str(m["port"]["value"])
        if "-" in value:
            lo, hi = (int(p) for p in value.split("-", 1))
            parts.append(f"{key} >= {lo} {key} <= {hi}")
        else:
            parts.append(f"{key} {neg}{int(value)}")
    if not parts:
        raise ValueError(f"empty match element {dict(m)!r}")
    return " ".join(parts)


def _ip_text(ip: Mapping[str, Any], op: str) -> str:
    key = {"src": "ip saddr", "dst": "ip daddr"}[ip["position"]]
    value = str(ip["value"]).strip()
    neg = "!= " if op == "neq" else ""
    if "/" in value:
        iface = ipaddress.IPv4Interface(value)
        if iface.ip == iface.network.network_address:
            return f"{key} {neg}{iface.network}"
        cmp = "!=" if op == "neq" else "=="
        return f"{key} & {iface.network.netmask} {cmp} {iface.ip}"
    if "-" in value:
        lo, hi = (ipaddress.IPv4Address(p.strip()) for p in value.split("-", 1))
        return f"{key} {neg}{lo}-{hi}"
    return f"{key} {neg}{ipaddress.IPv4Address(value)}"


def rule_text(rule: Mapping[str, Any]) -> str:
    """A filter rule as the agent forges it: matches, counter, verdict, comment."""
    parts = [match_text(m) for m in rule.get("match") or ()]
    if rule.get("counter", True):
        parts.append("counter")
    action = rule.get("action")
    if action in ("accept", "drop"):
        parts.append(str(action))
    elif action == "reject":
        parts.append("reject with icmp type net-unreachable")
    else:
        raise ValueError(f"action {action!r} is not a filter verdict this harness models")
    parts.append(f"comment {_quote(str(rule['name']))}")
    return " ".join(parts)


def chain_header(chain: Mapping[str, Any]) -> str:
    prio = int(chain.get("priority") or 0)
    policy = chain.get("policy") or "accept"
    return f"type {chain.get('type') or 'filter'} hook {chain['hook']} priority {prio}; policy {policy};"


def _filter_rules(chain: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return list((chain.get("rules") or {}).get("filterRules") or ())


def table_script(table: Mapping[str, Any]) -> str:
    """A whole table, rules in the order given (a fresh node holds them in FC order)."""
    lines = [f"table {family_keyword(str(table['family']))} {ident(table['name'])} {{"]
    for chain in table.get("chains") or ():
        lines.append(f"  chain {ident(chain['name'])} {{")
        lines.append(f"    {chain_header(chain)}")
        lines.extend(f"    {rule_text(r)}" for r in _filter_rules(chain))
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def state_script(state: NodeState) -> str:
    """nft -f text recreating a node state, rules in node order."""
    return "".join(table_script(t.as_spec()) for t in state)


def fc_script(fcs: Iterable[Mapping[str, Any]]) -> str:
    """nft -f text a fresh node gets from these FirewallConfigurations (FC order)."""
    return "".join(table_script(table_spec(fc)) for fc in fcs)


# ---- the live node, read from `nft -j -a list ...` ----


@dataclass(frozen=True)
class LiveRule:
    handle: int
    name: str | None
    expr: tuple[Any, ...]  # nft JSON expressions, counters removed


@dataclass(frozen=True)
class LiveChain:
    name: str
    hook: str | None
    type: str | None
    priority: int | None
    policy: str | None
    rules: tuple[LiveRule, ...]


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def freeze_exprs(exprs: Sequence[Mapping[str, Any]]) -> tuple[Any, ...]:
    """nft JSON expressions as a hashable tuple, counters left out (their values move)."""
    return tuple(_freeze(e) for e in exprs if "counter" not in e)


def parse_live(listing: Mapping[str, Any], *, table: str) -> list[LiveChain]:
    """Chains of one table from `nft -j -a list table`, rules in node order."""
    items = [i for i in listing.get("nftables", ()) if isinstance(i, dict)]
    chains: dict[str, dict[str, Any]] = {}
    rules: dict[str, list[LiveRule]] = {}
    for item in items:
        if "chain" in item and item["chain"]["table"] == table:
            chains[item["chain"]["name"]] = item["chain"]
            rules.setdefault(item["chain"]["name"], [])
        elif "rule" in item and item["rule"]["table"] == table:
            r = item["rule"]
            rules.setdefault(r["chain"], []).append(
                LiveRule(handle=int(r["handle"]), name=r.get("comment"), expr=freeze_exprs(r["expr"])))
    return [
        LiveChain(name=name, hook=c.get("hook"), type=c.get("type"), priority=c.get("prio"),
                  policy=c.get("policy"), rules=tuple(rules[name]))
        for name, c in chains.items()
    ]


def rule_names(listing: Mapping[str, Any], *, table: str) -> dict[str, list[str | None]]:
    """Rule comments per chain, in node order: what `agent.rule_order` predicts."""
    return {c.name: [r.name for r in c.rules] for c in parse_live(listing, table=table)}


def canonical_script(table: Mapping[str, Any]) -> str:
    """The desired rules in a hook-less scratch table, to read back nft's canonical JSON."""
    fam = family_keyword(str(table["family"]))
    lines = [f"table {fam} {SCRATCH_TABLE} {{"]
    for chain in table.get("chains") or ():
        lines.append(f"  chain {ident(chain['name'])} {{")
        lines.extend(f"    {rule_text(r)}" for r in _filter_rules(chain))
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def canonical_rules(listing: Mapping[str, Any]) -> dict[tuple[str, str], tuple[Any, ...]]:
    """(chain, rule name) -> canonical expressions, first rule of a name winning (the agent's lookup)."""
    out: dict[tuple[str, str], tuple[Any, ...]] = {}
    for chain in parse_live(listing, table=SCRATCH_TABLE):
        for rule in chain.rules:
            if rule.name is not None:
                out.setdefault((chain.name, rule.name), rule.expr)
    return out


def _agent_equal(live: tuple[Any, ...], want: tuple[Any, ...]) -> bool:
    """The agent's bag comparison, at the granularity of nft JSON statements.

    Coarser than the agent's netlink expressions: a JSON match holds both the
    load and the compare, so swapping the values of two matches on one field
    reads as a change here while the agent keeps the stale rule. Rule names
    derived from content (as liqosec's are) never meet that case.
    """
    return len(live) == len(want) and all(e in want for e in live)


def _chain_outdated(live: LiveChain, spec: Mapping[str, Any]) -> bool:
    wanted = {"type": spec.get("type"), "hook": spec.get("hook"),
              "priority": spec.get("priority"), "policy": spec.get("policy")}
    have = {"type": live.type, "hook": live.hook, "priority": live.priority, "policy": live.policy}
    return any(v not in (None, "") and (int(v) if k == "priority" else v) != have[k] for k, v in wanted.items())


def plan_incremental(table: Mapping[str, Any], live: Sequence[LiveChain],
                     canonical: Mapping[tuple[str, str], tuple[Any, ...]]) -> tuple[str, str]:
    """The agent's two phases for one table as two nft scripts: (clean, add)."""
    fam, name = family_keyword(str(table["family"])), ident(table["name"])
    specs = {ident(c["name"]): c for c in table.get("chains") or ()}
    clean: list[str] = []
    present: dict[str, set[str]] = {}
    for chain in live:
        spec = specs.get(chain.name)
        if spec is None or _chain_outdated(chain, spec):
            clean += [f"flush chain {fam} {name} {chain.name}", f"delete chain {fam} {name} {chain.name}"]
            continue
        kept = set()
        for rule in chain.rules:
            want = canonical.get((chain.name, rule.name)) if rule.name is not None else None
            if want is None or not _agent_equal(rule.expr, want):
                clean.append(f"delete rule {fam} {name} {chain.name} handle {rule.handle}")
            elif rule.name is not None:
                kept.add(rule.name)
        present[chain.name] = kept
    add = [f"add table {fam} {name}"]
    for cname, spec in specs.items():
        if cname not in present:
            add.append(f"add chain {fam} {name} {cname} {{ {chain_header(spec)} }}")
        have = present.get(cname, set())
        add += [f"add rule {fam} {name} {cname} {rule_text(r)}" for r in _filter_rules(spec)
                if str(r["name"]) not in have]
    return ("\n".join(clean) + "\n" if clean else "", "\n".join(add) + "\n")


class NftNode(Protocol):
    """The node namespace as far as applying rules goes (Topology implements it)."""

    def nft(self, script: str) -> None: ...

    def nft_json(self, *args: str) -> dict[str, Any]: ...


def live_tables(node: NftNode) -> list[tuple[str, str]]:
    """(family keyword, name) of every table on the node."""
    return [(i["table"]["family"], i["table"]["name"]) for i in node.nft_json("tables").get("nftables", ())
            if isinstance(i, dict) and "table" in i]


def _canonical(node: NftNode, table: Mapping[str, Any]) -> dict[tuple[str, str], tuple[Any, ...]]:
    fam = family_keyword(str(table["family"]))
    reset = f"table {fam} {SCRATCH_TABLE} {{ }}\ndelete table {fam} {SCRATCH_TABLE}\n"
    node.nft(reset + canonical_script(table))
    try:
        return canonical_rules(node.nft_json("table", fam, SCRATCH_TABLE))
    finally:
        node.nft(f"delete table {fam} {SCRATCH_TABLE}\n")


def apply_incremental(node: NftNode, fcs: Iterable[Mapping[str, Any]]) -> None:
    """Patch the node towards these FCs as Liqo's agent does: clean, then append.

    Tables on the node that no FC names are deleted (the node namespace holds
    only FirewallConfiguration tables).
    """
    tables = [table_spec(fc) for fc in fcs]
    wanted = {(family_keyword(str(t["family"])), str(t["name"])) for t in tables}
    present = live_tables(node)
    clean = [f"delete table {fam} {name}" for fam, name in present if (fam, name) not in wanted]
    adds: list[str] = []
    for table in tables:
        fam, name = family_keyword(str(table["family"])), str(table["name"])
        live = parse_live(node.nft_json("table", fam, name), table=name) if (fam, name) in present else []
        drop, add = plan_incremental(table, live, _canonical(node, table))
        clean.append(drop)
        adds.append(add)
    node.nft("\n".join(c for c in clean if c.strip()) + "\n")
    node.nft("".join(adds))
