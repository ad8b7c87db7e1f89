"""Evaluate FirewallConfiguration tables on a packet, as nftables would on a node.

This is what `liqosec matrix` shows and what the dataplane tests hold against
real packets, so it follows nftables, not the policy: rules in node order,
matches ANDed, the first rule with a verdict decides its chain, the policy
when none does. Every base chain on the hook runs; a drop anywhere is final,
an accept only ends its own chain.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from liqosec.firewall.addresses import ip_to_int, parse_value

TERMINAL = frozenset({"accept", "drop", "reject"})


@dataclass(frozen=True)
class Packet:
    src: int
    dst: int
    established: bool = False  # conntrack state: a reply of an accepted flow

    @classmethod
    def of(cls, src: str, dst: str, *, established: bool = False) -> Packet:
        return cls(ip_to_int(src), ip_to_int(dst), established)


def _match(m: Mapping[str, Any], packet: Packet) -> bool:
    negate = m.get("op") == "neq"
    if "ip" in m and m["ip"] is not None:
        start, end = parse_value(str(m["ip"]["value"]))
        addr = packet.src if m["ip"]["position"] == "src" else packet.dst
        hit = start <= addr <= end
    elif "ctstate" in m and m["ctstate"] is not None:
        state = "established" if packet.established else "new"
        hit = state in set(m["ctstate"].get("value") or ())
    elif "proto" in m and m["proto"] is not None:
        hit = m["proto"].get("value") == "tcp"  # the matrix probes with TCP
    else:
        raise ValueError(f"unsupported match {dict(m)!r}")
    return hit != negate


def deciding_rule(chain: Mapping[str, Any], packet: Packet) -> Mapping[str, Any] | None:
    """The first rule with a verdict whose matches all hold, or None: the chain's policy decides."""
    for rule in (chain.get("rules") or {}).get("filterRules") or ():
        if rule.get("action") in TERMINAL and all(_match(m, packet) for m in rule.get("match") or ()):
            return rule  # type: ignore[no-any-return]
    return None


def chain_verdict(chain: Mapping[str, Any], packet: Packet) -> str:
    rule = deciding_rule(chain, packet)
    if rule is not None:
        action = rule.get("action")
        return "drop" if action == "reject" else str(action)
    return str(chain.get("policy") or "accept")


def tables_of(firewalls: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The tables of FirewallConfiguration objects (or pass tables through)."""
    return [fw["spec"]["table"] if "spec" in fw else fw for fw in firewalls]


def node_accepts(tables: Sequence[Mapping[str, Any]], packet: Packet, *, hook: str = "forward") -> bool:
    for table in tables:
        for chain in table.get("chains") or ():
            if chain.get("hook") == hook and chain_verdict(chain, packet) == "drop":
                return False
    return True


def connects(tables: Sequence[Mapping[str, Any]], src: str, dst: str) -> bool:
    """A TCP connection from src to dst opens: the SYN passes, and so does the reply.

    The kernel always sees the reply as established; only a chain with a
    ctstate rule lets that through, otherwise the reply is judged by the
    address rules, which is how one-way rules break stateless connections.
    """
    if not node_accepts(tables, Packet.of(src, dst)):
        return False
    return node_accepts(tables, Packet.of(dst, src, established=True))
