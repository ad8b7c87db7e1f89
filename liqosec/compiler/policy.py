"""A PeeringConnectivity as an ordered list of clauses, and their meaning.

A clause names its ends by term (a group value, `namespace:<ns>` or an
internal term of a security mode; None is any address). `decide` is the
reference semantics of docs/semantics.md ("Evaluation"): the compiler must produce a
firewall that agrees with it on every packet, and the tests check that.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from liqosec.api.peeringconnectivity import Action, Party, PeeringConnectivitySpec
from liqosec.compiler.modes import mode_clauses
from liqosec.compiler.ports import L4, PortSpan, covers, spans_of
from liqosec.groups.resolve import ResolvedGroups, namespace_term


@dataclass(frozen=True)
class Clause:
    src: str | None
    dst: str | None
    action: Action
    origin: str  # where it came from, for messages: "spec.rules[3]" or "securityMode"
    # The protocols and destination ports it matches (`liqosec.compiler.ports`); () is every packet.
    ports: tuple[PortSpan, ...] = ()


def party_term(party: Party) -> str | None:
    if party.selects_pods:  # canonical text: equal selectors, equal terms (and compile cache hits)
        return party.describe()
    if party.group is not None:
        return party.group.value
    if party.namespace is not None:
        return namespace_term(party.namespace)
    return None


def clauses_of(spec: PeeringConnectivitySpec) -> tuple[Clause, ...]:
    """Explicit rules in order, then the security mode's preset."""
    explicit = [
        Clause(party_term(r.source), party_term(r.destination), r.action, f"spec.rules[{i}]", spans_of(r.ports))
        for i, r in enumerate(spec.rules)
    ]
    preset = [Clause(src, dst, action, "securityMode") for src, dst, action in mode_clauses(spec.security_mode)]
    return tuple(explicit + preset)


def namespaces_of(clauses: Iterable[Clause]) -> list[str]:
    prefix = "namespace:"
    return sorted({t[len(prefix) :] for c in clauses for t in (c.src, c.dst) if t and t.startswith(prefix)})


def selections_of(spec: PeeringConnectivitySpec) -> tuple[Party, ...]:
    """The selector parties of the rules, each once, for the resolver (their term is `party_term`)."""
    found = {p for r in spec.rules for p in (r.source, r.destination) if p.selects_pods}
    return tuple(sorted(found, key=Party.describe))


def in_scope(groups: ResolvedGroups, src: str | int, dst: str | int) -> bool:
    space = groups.peer_space
    return src in space or dst in space


def decide(
    clauses: Iterable[Clause],
    groups: ResolvedGroups,
    default: Action,
    src: str | int,
    dst: str | int,
    l4: L4 | None = None,
) -> Action | None:
    """First-match verdict of a packet, or None when it is not this peering's traffic.

    `l4` is the packet's protocol and destination port; None is a packet no clause's ports cover.
    """
    if not in_scope(groups, src, dst):
        return None
    clause = first_match(clauses, groups, src, dst, l4)
    return default if clause is None else clause.action


def first_match(
    clauses: Iterable[Clause], groups: ResolvedGroups, src: str | int, dst: str | int, l4: L4 | None = None
) -> Clause | None:
    """The first clause whose source, destination and ports hold the packet (scope aside), or None."""
    for clause in clauses:
        if (
            (clause.src is None or src in groups.get(clause.src))
            and (clause.dst is None or dst in groups.get(clause.dst))
            and (not clause.ports or covers(clause.ports, l4))
        ):
            return clause
    return None
