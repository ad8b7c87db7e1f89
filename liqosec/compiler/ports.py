"""Destination ports of clauses: the (protocol, port) space cut into classes no clause tells apart.

A clause with `ports` matches a packet only when the packet's protocol and destination port are
in them; a clause without matches any packet. So the verdict of a pair of addresses depends on
which port-carrying clauses cover the packet's (protocol, port): packets covered by the same
clauses (the same signature) get the same verdict. The base signature, covered by none, holds
every other protocol (ICMP, SCTP, ...) and every TCP or UDP port no clause names: there the
policy is the one without its port-carrying clauses.

Liqo v1.2.0's firewall matches only `tcp` and `udp` (the proto match ignores `op`), and a port
range ignores `op` too: so the compiler can match a class positively, never its complement.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from liqosec.api.peeringconnectivity import MAX_PORT, PortRange

PortSpan = tuple[str, int, int]  # protocol ("tcp" | "udp"), first and last destination port
L4 = tuple[str, int]  # a packet's protocol ("tcp", "udp", or any other name) and destination port
PROTOCOLS = ("tcp", "udp")
# The destination port of a reply is the client's ephemeral port (Linux picks it in 32768-60999):
# `liqosec matrix`, `liqosec explain` and the one-way analysis judge replies at `evaluate.EPHEMERAL_PORT`.
EPHEMERAL_RANGE = (32768, 60999)


def spans_of(ranges: Iterable[PortRange]) -> tuple[PortSpan, ...]:
    """A rule's ports as sorted, merged (protocol, first, last) spans."""
    by_proto: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for r in ranges:
        by_proto[r.protocol.value.lower()].append((r.first, r.last))
    out: list[PortSpan] = []
    for proto in sorted(by_proto):
        merged: list[list[int]] = []
        for lo, hi in sorted(by_proto[proto]):
            if merged and lo <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], hi)
            else:
                merged.append([lo, hi])
        out.extend((proto, lo, hi) for lo, hi in merged)
    return tuple(out)


def covers(spans: Sequence[PortSpan], l4: L4 | None) -> bool:
    """`l4` is in `spans`; None (no transport information) is in none."""
    if l4 is None:
        return False
    proto, port = l4
    return any(p == proto and lo <= port <= hi for p, lo, hi in spans)


def describe_spans(spans: Sequence[PortSpan]) -> str:
    """As a person writes them: `tcp/443, udp/53, tcp/8000-8080`, or `tcp` for every port."""
    out = []
    for proto, lo, hi in spans:
        if (lo, hi) == (0, MAX_PORT):
            out.append(proto)
        else:
            out.append(f"{proto}/{lo}" if lo == hi else f"{proto}/{lo}-{hi}")
    return ", ".join(out)


@dataclass(frozen=True)
class PortClass:
    """Packets covered by exactly the port-carrying clauses `clauses` (indices), at `spans`."""

    clauses: frozenset[int]
    spans: tuple[PortSpan, ...]


def port_classes(ports: Sequence[Sequence[PortSpan]]) -> list[PortClass]:
    """The classes of TCP and UDP ports, from each clause's spans (empty: a clause without ports).

    The base class (signature empty) lists only its TCP and UDP spans; it also holds every other
    protocol. Classes come sorted by signature, base first.
    """
    by_sig: dict[frozenset[int], list[PortSpan]] = defaultdict(list)
    for proto in PROTOCOLS:
        cuts = {0, MAX_PORT + 1}
        for spans in ports:
            for p, lo, hi in spans:
                if p == proto:
                    cuts |= {lo, hi + 1}
        points = sorted(cuts)
        for lo, nxt in zip(points, points[1:]):
            sig = frozenset(i for i, spans in enumerate(ports) if spans and covers(spans, (proto, lo)))
            held = by_sig[sig]
            if held and held[-1][0] == proto and held[-1][2] + 1 == lo:
                held[-1] = (proto, held[-1][1], nxt - 1)
            else:
                held.append((proto, lo, nxt - 1))
    return [PortClass(sig, tuple(by_sig[sig])) for sig in sorted(by_sig, key=lambda s: (len(s), sorted(s)))]


def signature(ports: Sequence[Sequence[PortSpan]], l4: L4 | None) -> frozenset[int]:
    """Which port-carrying clauses cover a packet of `l4`."""
    return frozenset(i for i, spans in enumerate(ports) if spans and covers(spans, l4))


def parse_port(text: str) -> L4:
    """`80/tcp`, `53/udp` or `80` (TCP) as given to `--port`; ValueError says what is wrong."""
    number, _, proto = text.strip().partition("/")
    proto = (proto or "tcp").lower()
    if proto not in PROTOCOLS:
        raise ValueError(f"--port {text!r}: protocol must be tcp or udp (e.g. 80/tcp, 53/udp)")
    if not number.isdigit() or not 1 <= int(number) <= MAX_PORT:
        raise ValueError(f"--port {text!r}: port must be a number from 1 to {MAX_PORT} (e.g. 80/tcp)")
    return proto, int(number)
