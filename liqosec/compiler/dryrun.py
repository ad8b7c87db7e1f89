"""What enforcing a policy would change for the pods running now (`spec.enforcement: DryRun`).

A dry run compiles the policy like any other but writes no firewall. Instead it
compares, for every ordered pair of running pods of the peering's groups whose
traffic is the peering's, whether a TCP connection opens under the firewall in
force now and under the compiled one, both evaluated the way nftables runs them
(`liqosec.firewall.evaluate`, as `liqosec matrix` does).

Pairs are not evaluated one by one: pods for which the same rules' source sides
and destination sides hold (and on the same side of the peer's address space)
are told apart by no rule, so they fall into classes, and one evaluation per pair
of classes decides all of its pod pairs: a thousand local pods no rule names cost
one class, not a million evaluations. The class pairs evaluated are bounded
(`MAX_COMPARISONS`); past the bound the report says it is capped and its counts
are lower bounds.

Pure: the reconciler passes the pods, the resolved groups and the tables.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from liqosec.api.peeringconnectivity import Group
from liqosec.firewall.addresses import AddressSet, int_to_ip, ip_to_int, parse_value
from liqosec.firewall.evaluate import connects
from liqosec.groups.readers import pod_addresses
from liqosec.groups.resolve import ResolvedGroups
from liqosec.groups.view import ClusterStateError, Obj, name_of, namespace_of

# Class pairs evaluated per report. Each costs two connection checks on the rules that
# may match the pair (~0.2 ms): about 2 s of one core at the bound (measured with 6,000
# and 10,000 scattered pods, 350 and 700 rules), spent only for a peering in DryRun and
# only when its compiled firewall or the pods change.
MAX_COMPARISONS = 10_000
# Pairs listed per direction of change in the status: enough to recognise the flows.
SAMPLE_SIZE = 10
NO_FIREWALL = "no firewall: liqosec's own is retired in DryRun, so every pair connects now"
CONDITION = "DryRun"


@dataclass(frozen=True, order=True)
class Endpoint:
    """A running pod, by the first IPv4 address it holds."""

    address: int
    name: str  # namespace/name


@dataclass(frozen=True)
class PairChange:
    source: Endpoint
    destination: Endpoint

    def to_status(self) -> dict[str, str]:
        return {
            "source": self.source.name,
            "sourceIP": int_to_ip(self.source.address),
            "destination": self.destination.name,
            "destinationIP": int_to_ip(self.destination.address),
        }


@dataclass(frozen=True)
class DryRunReport:
    """What enforcing would change, as `status.dryRun` and the `DryRun` condition say it."""

    peer: str
    compared_with: str
    pods: int  # running pods of the peering's groups
    pairs: int  # ordered pod pairs whose traffic is the peering's
    compared_pairs: int  # of those, the pairs compared (all of them unless capped)
    newly_denied: int  # connect now, would not
    newly_allowed: int  # do not connect now, would
    denied_sample: tuple[PairChange, ...] = ()
    allowed_sample: tuple[PairChange, ...] = ()

    @property
    def capped(self) -> bool:
        return self.compared_pairs < self.pairs

    @property
    def changes(self) -> bool:
        return bool(self.newly_denied or self.newly_allowed)

    def to_status(self) -> dict[str, Any]:
        return {
            "comparedWith": self.compared_with,
            "pods": self.pods,
            "pairs": self.pairs,
            "comparedPairs": self.compared_pairs,
            "capped": self.capped,
            "newlyDenied": self.newly_denied,
            "newlyAllowed": self.newly_allowed,
            "newlyDeniedSample": [p.to_status() for p in self.denied_sample],
            "newlyAllowedSample": [p.to_status() for p in self.allowed_sample],
        }

    def message(self) -> str:
        text = (
            f"spec.enforcement is DryRun: no FirewallConfiguration is written. Enforcing this policy would deny "
            f"{self.newly_denied:,} and newly allow {self.newly_allowed:,} of the {self.pairs:,} TCP connections "
            f"between running pods that are {self.peer}'s traffic ({self.pods:,} pods; compared with "
            f"{self.compared_with})"
        )
        if self.capped:
            text += (
                f"; only {self.compared_pairs:,} of the pairs were compared (the comparison is bounded), "
                "so the counts are lower bounds"
            )
        return text


def enforced_by(policies: Sequence[str], firewalls: int) -> str:
    """`comparedWith` when another policy's firewall is in force (a staged policy beside the enforced one)."""
    plural = "s" if firewalls != 1 else ""
    names = ", ".join(policies)
    return f"the firewall in force: {firewalls} FirewallConfiguration{plural} of PeeringConnectivity {names}"


def pod_scope(groups: ResolvedGroups) -> AddressSet:
    """Addresses of the peering's pods: the local and the peer's pod CIDRs, and every pod group."""
    out = groups.get(Group.LOCAL_CLUSTER.value).union(groups.peer_space)
    out = out.union(groups.get(Group.VC_LOCAL.value))
    for term, members in groups.sets.items():
        if term.startswith("namespace:"):
            out = out.union(members)
    return out


def running_endpoints(pods: Iterable[Obj], scope: AddressSet) -> list[Endpoint]:
    """Pods holding an IPv4 address in `scope`, sorted by address then name.

    Running as the groups count it: a pod holds its address from when it gets one until it
    has finished (`pod_addresses`), so the report and the firewall see the same pods. A pod
    whose fields cannot be read is left out: resolution reports the ones the groups read.
    """
    out = []
    for pod in pods:
        try:
            v4, _ = pod_addresses(pod)
            name = f"{namespace_of(pod)}/{name_of(pod)}"
        except ClusterStateError:
            continue
        if v4 and (address := ip_to_int(v4[0])) in scope:
            out.append(Endpoint(address, name))
    return sorted(out)


def _ipv4_tables(tables: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [t for t in tables if str(t.get("family") or "IPV4").upper() == "IPV4"]


# One address match: (start, end, negated). A rule's address matches on one side all hold, or it does not fire.
_Cond = tuple[int, int, bool]


@dataclass(frozen=True)
class _Rule:
    """A filter rule of one chain, with its address matches by side, parsed once."""

    table: int
    chain: int
    body: Mapping[str, Any]
    src: tuple[_Cond, ...]
    dst: tuple[_Cond, ...]


def _holding(conds: tuple[_Cond, ...]) -> AddressSet:
    """The addresses for which every condition of one side holds."""
    out = AddressSet.universe()
    for start, end, negated in conds:
        interval = AddressSet(((start, end),))
        out = out.difference(interval) if negated else out.intersection(interval)
    return out


def _masks(sets: Sequence[AddressSet], addresses: Sequence[int]) -> list[int]:
    """For each of the sorted `addresses`, the bit mask of the `sets` holding it.

    A sweep, not a test per address and set: bit k is toggled where an interval of set k
    starts and again after it ends, and a running XOR over the addresses reads the masks off.
    """
    toggles = [0] * (len(addresses) + 1)
    for k, members in enumerate(sets):
        bit = 1 << k
        for start, end in members.intervals:
            first, after = bisect.bisect_left(addresses, start), bisect.bisect_right(addresses, end)
            if first < after:
                toggles[first] ^= bit
                toggles[after] ^= bit
    out, mask = [], 0
    for toggle in toggles[:-1]:
        mask ^= toggle
        out.append(mask)
    return out


@dataclass(frozen=True)
class _Tables:
    """Tables whose rules are numbered in order (table, chain, position) and split by address side.

    A class of addresses is described by two bit masks: the rules whose source side holds for
    it, and those whose destination side holds. Two addresses with equal masks (and on the same
    side of the peer's space) are told apart by no rule, in either direction: the other matches
    of a rule (conntrack state, protocol, ports) do not read addresses. So one evaluation decides
    every pair of two classes, and it needs only the rules whose address sides hold for the pair
    (`pruned`): the others cannot match its request or its reply.
    """

    tables: tuple[Mapping[str, Any], ...]
    rules: tuple[_Rule, ...]
    bounds: tuple[int, ...]

    @classmethod
    def of(cls, tables: Sequence[Mapping[str, Any]], peer_space: AddressSet) -> _Tables:
        bounds = {0}
        for start, end in peer_space.intervals:
            bounds.update((start, end + 1))
        rules = []
        for t, table in enumerate(tables):
            for c, chain in enumerate(table.get("chains") or ()):
                for rule in (chain.get("rules") or {}).get("filterRules") or ():
                    src: list[_Cond] = []
                    dst: list[_Cond] = []
                    for match in rule.get("match") or ():
                        ip = match.get("ip")
                        if ip:
                            start, end = parse_value(str(ip["value"]))
                            bounds.update((start, end + 1))
                            side = src if ip.get("position") == "src" else dst
                            side.append((start, end, match.get("op") == "neq"))
                    rules.append(_Rule(t, c, rule, tuple(src), tuple(dst)))
        return cls(tuple(tables), tuple(rules), tuple(sorted(bounds)))

    def masks(self, addresses: Sequence[int]) -> list[_Masks]:
        """For each of the sorted `addresses`: the rules whose source side holds it, and whose destination side does."""
        src = _masks([_holding(r.src) for r in self.rules], addresses)
        dst = _masks([_holding(r.dst) for r in self.rules], addresses)
        return [_Masks(s, d) for s, d in zip(src, dst, strict=True)]

    def pruned(self, mask: int) -> list[Mapping[str, Any]]:
        """The tables with only the rules of `mask`, in their order; chains and policies kept."""
        kept: dict[tuple[int, int], list[Mapping[str, Any]]] = {}
        while mask:
            low = mask & -mask
            rule = self.rules[low.bit_length() - 1]
            kept.setdefault((rule.table, rule.chain), []).append(rule.body)
            mask ^= low
        out: list[Mapping[str, Any]] = []
        for t, table in enumerate(self.tables):
            chains = [
                {**chain, "rules": {"filterRules": kept.get((t, c), [])}}
                for c, chain in enumerate(table.get("chains") or ())
            ]
            out.append({**table, "chains": chains})
        return out


class _Masks(NamedTuple):
    """For one address, as bits of a side's rules: those whose source side holds it, and whose destination side does."""

    as_source: int
    as_destination: int


class _Class(NamedTuple):
    """What the comparison tells addresses apart by: addresses with equal keys are compared once."""

    in_peer_space: bool
    proposed: _Masks
    enforced: _Masks


@dataclass
class _Tally:
    compared: int = 0
    denied: int = 0
    allowed: int = 0


def _may_match(a: _Masks, b: _Masks) -> int:
    """The rules that may match a packet from a to b (the request) or from b to a (its reply)."""
    return (a.as_source & b.as_destination) | (b.as_source & a.as_destination)


def _sample(into: list[PairChange], sources: Sequence[Endpoint], destinations: Sequence[Endpoint], size: int) -> None:
    for src in sources:
        for dst in destinations:
            if len(into) >= size:
                return
            if src != dst:
                into.append(PairChange(src, dst))


def dry_run_report(
    peer: str,
    endpoints: Sequence[Endpoint],
    proposed: Sequence[Mapping[str, Any]],
    enforced: Sequence[Mapping[str, Any]],
    peer_space: AddressSet,
    *,
    compared_with: str = NO_FIREWALL,
    max_comparisons: int = MAX_COMPARISONS,
    sample_size: int = SAMPLE_SIZE,
) -> DryRunReport:
    """Compare `enforced` (the tables in force now; none: everything connects) with `proposed`."""
    proposed_side = _Tables.of(_ipv4_tables(proposed), peer_space)
    enforced_side = _Tables.of(_ipv4_tables(enforced), peer_space)
    bounds = sorted({*proposed_side.bounds, *enforced_side.bounds})
    # Addresses between two bounds share a class: one representative address per interval.
    firsts: dict[int, int] = {}
    for ep in endpoints:
        firsts.setdefault(bisect.bisect_right(bounds, ep.address), ep.address)
    reps = sorted(firsts.values())
    proposed_masks, enforced_masks = proposed_side.masks(reps), enforced_side.masks(reps)
    key_of = {
        address: _Class(address in peer_space, proposed_masks[i], enforced_masks[i]) for i, address in enumerate(reps)
    }
    classes: dict[_Class, list[Endpoint]] = {}  # in the order of their lowest address
    for ep in endpoints:
        classes.setdefault(key_of[firsts[bisect.bisect_right(bounds, ep.address)]], []).append(ep)
    keys = list(classes)
    total = len(endpoints)
    outside = sum(len(members) for key, members in classes.items() if not key.in_peer_space)
    pairs = total * (total - 1) - outside * (outside - 1)
    tally = _Tally()
    denied: list[PairChange] = []
    allowed: list[PairChange] = []
    evaluations = 0
    for a in keys:
        for b in keys:
            if not (a.in_peer_space or b.in_peer_space):
                continue  # neither end is the peer's: no table of the peering acts on it
            if evaluations >= max_comparisons:
                break
            evaluations += 1
            sources, destinations = classes[a], classes[b]
            count = len(sources) * len(destinations) - (len(sources) if a == b else 0)
            tally.compared += count
            src, dst = int_to_ip(sources[0].address), int_to_ip(destinations[0].address)
            # Rules that may match the request (a to b) or its reply (b to a); the rest cannot.
            then = connects(proposed_side.pruned(_may_match(a.proposed, b.proposed)), src, dst)
            now = connects(enforced_side.pruned(_may_match(a.enforced, b.enforced)), src, dst)
            if now and not then:
                tally.denied += count
                _sample(denied, sources, destinations, sample_size)
            elif then and not now:
                tally.allowed += count
                _sample(allowed, sources, destinations, sample_size)
    return DryRunReport(
        peer=peer,
        compared_with=compared_with,
        pods=total,
        pairs=pairs,
        compared_pairs=tally.compared,
        newly_denied=tally.denied,
        newly_allowed=tally.allowed,
        denied_sample=tuple(denied),
        allowed_sample=tuple(allowed),
    )


def report_for(
    peer: str,
    groups: ResolvedGroups,
    pods: Iterable[Obj],
    proposed: Sequence[Mapping[str, Any]],
    enforced: Sequence[Mapping[str, Any]] = (),
    *,
    compared_with: str = NO_FIREWALL,
    max_comparisons: int = MAX_COMPARISONS,
) -> DryRunReport:
    """The report for a peering: its running pods, its compiled tables against those in force."""
    endpoints = running_endpoints(pods, pod_scope(groups))
    return dry_run_report(
        peer,
        endpoints,
        proposed,
        enforced,
        groups.peer_space,
        compared_with=compared_with,
        max_comparisons=max_comparisons,
    )
