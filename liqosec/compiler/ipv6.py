"""IPv6: what liqosec cannot filter, named instead of passed over in silence.

liqosec writes IPv4 tables only. The FirewallConfiguration schema's table family
accepts `IPV6`, but Liqo v1.2.0's agent forges every IP match for IPv4
(`pkg/firewall/utils/match.go`, `applyMatchIPSingleIP`, `applyMatchIPPoolSubnet`,
`applyMatchIPRange`): a payload load of `Len: 4` bytes at offset 12 (source) or
16 (destination) of the network header, the IPv4 header's, compared with
`net.ParseIP(value).To4()`, which is nil for an IPv6 address. In an IPv6 table
those offsets fall inside the IPv6 source address, so no rule could match what
it says: compiling one would be a firewall that only looks like one. So IPv6
packets pass liqosec's tables, and where a policy's groups hold pods with IPv6
addresses, the status (`IPv6Unfiltered`), `liqosec render` and `liqosec explain`
name them (docs/semantics.md, "IPv6").
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from liqosec.api.peeringconnectivity import PEER_GROUPS
from liqosec.compiler.firewallconfiguration import CompiledPeering
from liqosec.compiler.policy import clauses_of
from liqosec.groups.resolve import IPv6Member

CONDITION = "IPv6Unfiltered"
REASON = "IPv6PodsUnfiltered"
# Members named in a message; the rest are counted.
MAX_NAMED = 5
WHY = "liqosec's firewalls are IPv4 tables: Liqo v1.2.0's agent matches IPv4 addresses only"


def covered_terms(outcome: CompiledPeering) -> set[str]:
    """The terms whose IPv6 members matter: those the policy's clauses name (the security mode's
    included), and the peer's groups, which decide what is this peering's traffic at all."""
    named = {t for c in clauses_of(outcome.peering.spec) for t in (c.src, c.dst) if t is not None}
    return named | {g.value for g in PEER_GROUPS}


def unfiltered(outcome: CompiledPeering) -> tuple[IPv6Member, ...]:
    """Pods (and EndpointSlices) of the policy's groups holding IPv6 addresses, which no table filters."""
    return outcome.groups.ipv6_members(covered_terms(outcome))


def describe(members: Sequence[IPv6Member]) -> str:
    """`3 pods hold IPv6 addresses ...: shop/a (fd00::5), ... and 1 more`; "" when there are none."""
    if not members:
        return ""
    pods = sum(1 for m in members if m.kind == "Pod")
    slices = len(members) - pods
    who = " and ".join(
        part
        for part in (
            f"{pods} pod{'s' if pods != 1 else ''}" if pods else "",
            f"{slices} EndpointSlice{'s' if slices != 1 else ''}" if slices else "",
        )
        if part
    )
    named = ", ".join(str(m) for m in members[:MAX_NAMED])
    more = f" and {len(members) - MAX_NAMED} more" if len(members) > MAX_NAMED else ""
    verb = "holds" if len(members) == 1 else "hold"
    return f"{who} of this policy's groups {verb} IPv6 addresses whose packets pass unfiltered ({WHY}): {named}{more}"


def notes(results: Iterable[CompiledPeering]) -> list[str]:
    """One line per peering with unfiltered IPv6 members, for `liqosec render`, `matrix` and `explain`."""
    out = []
    for o in results:
        text = describe(unfiltered(o))
        if text:
            out.append(f"PeeringConnectivity {o.peering.key}: {text}")
    return out
