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


# The client's port of a probe, hence the destination port of its reply (Linux's ephemeral range).
EPHEMERAL_PORT = 40000


@dataclass(frozen=True)
class Packet:
    src: int
    dst: int
    established: bool = False  # conntrack state: a reply of an accepted flow
    proto: str = "tcp"  # "tcp", "udp", or another protocol's name (which no proto match takes)
    sport: int = EPHEMERAL_PORT
    dport: int = 0  # 0: a port no rule names (the probe of `liqosec matrix` without --port)

    @classmethod
    def of(
        cls,
        src: str,
        dst: str,
        *,
        established: bool = False,
        proto: str = "tcp",
        sport: int = EPHEMERAL_PORT,
        dport: int = 0,
    ) -> Packet:
        return cls(ip_to_int(src), ip_to_int(dst), established, proto, sport, dport)


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
        return bool(m["proto"].get("value") == packet.proto)  # Liqo's agent ignores op for proto: always eq
    elif "port" in m and m["port"] is not None:
        if packet.proto not in ("tcp", "udp"):
            return False  # no transport header with ports to read (the compiler pairs ports with a proto)
        value = str(m["port"]["value"])
        port = packet.sport if m["port"]["position"] == "src" else packet.dport
        if "-" in value:  # Liqo's agent ignores op for a range: always "in range"
            first, _, last = value.partition("-")
            return int(first) <= port <= int(last)
        hit = port == int(value)
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


def connects(tables: Sequence[Mapping[str, Any]], src: str, dst: str, *, proto: str = "tcp", port: int = 0) -> bool:
    """A connection from src to dst (TCP, or UDP, to `port`) opens: the request passes, and so does the reply.

    The kernel always sees the reply as established; only a chain with a
    ctstate rule lets that through, otherwise the reply is judged by the
    address rules, which is how one-way rules break stateless connections.
    The reply goes from `port` back to the client's ephemeral port.
    """
    if not node_accepts(tables, Packet.of(src, dst, proto=proto, dport=port)):
        return False
    reply = Packet.of(dst, src, established=True, proto=proto, sport=port, dport=EPHEMERAL_PORT)
    return node_accepts(tables, reply)
