"""Compile a peering's ordered clauses into one order-proof firewall chain.

Liqo's agent keeps rules by name and appends new ones; it never reorders. So
the chain must give the same verdict whatever order its rules end up in:
every rule carries the same verdict and the chain policy is the other one.
The compiler decides the verdict of every pair of atoms (see `partition`),
then spells the pairs that differ from the policy as rectangles (see
`cover`), trying both polarities and both groupings and keeping the smallest.

Guarantees:
- for every packet, the chain's verdict equals `policy.decide` (accept when
  the packet is not this peering's traffic), in any order of its rules;
- rule names are a hash of their content, so unchanged rules keep their name;
- with conntrack (`Capabilities.ctstate`) established/related packets are
  accepted first; the chain name changes with it so the agent creates the
  chain afresh and that rule really comes first;
- an accept-rules chain (policy drop) stays within `max_expressions`: it
  cannot be split over several FirewallConfigurations, a drop-rules chain can
  (see `firewallconfiguration.shard`).
"""

from __future__ import annotations

import bisect
import hashlib
import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

from liqosec.api.peeringconnectivity import Action, Group
from liqosec.compiler.cover import Match, Plan, Term, plan
from liqosec.compiler.partition import Partition, partition
from liqosec.compiler.policy import Clause
from liqosec.firewall.addresses import AddressSet
from liqosec.firewall.capabilities import Capabilities
from liqosec.groups.resolve import ResolvedGroups

ACCEPT, DROP = "accept", "drop"
CHAIN_STATELESS = "peering-filter"
CHAIN_STATEFUL = "peering-filter-ct"
CHAIN_PRIORITY = 0  # filter priority: every chain on the forward hook must accept anyway
CTSTATE_RULE_NAME = "accept-established-related"
# Kernel expressions Liqo's agent forges (pkg/firewall/utils): a CIDR match is payload,
# bitwise and cmp; an address or a range is payload and cmp (or range); a ct state match
# is ct and bitwise and cmp; every rule adds a counter and a verdict.
CIDR_EXPRESSIONS, VALUE_EXPRESSIONS, CTSTATE_EXPRESSIONS, RULE_OVERHEAD = 3, 2, 3, 2
_SCOPE = (Group.REMOTE_CLUSTER.value, Group.OFFLOADED.value, Group.VC_REMOTE.value)


@dataclass(frozen=True)
class FilterRule:
    name: str
    action: str
    matches: Term
    ctstate: tuple[str, ...] = ()
    # Where the rule sits in the address space (the chunk it spells), for placing it in a
    # shard near the rules a pod change also touches; None for rules about no chunk.
    locality: int | None = field(default=None, compare=False)

    @cached_property
    def expressions(self) -> int:
        """What the kernel holds for this rule once Liqo's agent forged it."""
        return (
            RULE_OVERHEAD
            + sum(match_expressions(m) for m in self.matches)
            + (CTSTATE_EXPRESSIONS if self.ctstate else 0)
        )

    def to_api(self) -> dict[str, object]:
        """The rule as the CRD spells it. Kept: shared by every object built from this rule, never mutated."""
        return self._api

    @cached_property
    def _api(self) -> dict[str, object]:
        match: list[dict[str, object]] = [m.to_api() for m in self.matches]
        if self.ctstate:
            match.insert(0, {"op": "eq", "ctstate": {"value": list(self.ctstate)}})
        return {"name": self.name, "action": self.action, "counter": True, "match": match}

    @cached_property
    def json_size(self) -> int:
        """Bytes of the rule as compact JSON, for an object's size without encoding it whole."""
        return len(json.dumps(self._api, separators=(",", ":")))


@dataclass(frozen=True)
class CompiledChain:
    name: str
    policy: str
    rules: tuple[FilterRule, ...]
    atoms: int
    one_way: bool  # some allowed flow has its reverse denied: replies need conntrack
    # The clauses (explicit rules, the mode's, or the default as origin "defaultAction")
    # that allow such a flow, in evaluation order: where replies need a rule of their own.
    one_way_clauses: tuple[Clause, ...] = ()

    @property
    def match_count(self) -> int:
        return sum(len(r.matches) for r in self.rules)

    @property
    def expressions(self) -> int:
        return sum(r.expressions for r in self.rules)


def match_expressions(m: Match) -> int:
    return CIDR_EXPRESSIONS if "/" in m.value else VALUE_EXPRESSIONS


_NAMES: dict[tuple[str, Term], str] = {}
_NAMES_LIMIT = 200_000


def rule_name(action: str, matches: Term) -> str:
    """Stable and content-derived: the agent replaces a rule only when this changes."""
    key = (action, matches)
    name = _NAMES.get(key)
    if name is None:
        if len(_NAMES) >= _NAMES_LIMIT:
            _NAMES.clear()
        name = _NAMES[key] = _rule_name(action, matches)
    return name


def _rule_name(action: str, matches: Term) -> str:
    canon = json.dumps([action, [[m.position, m.op, m.value] for m in sorted(matches)]], separators=(",", ":"))
    return f"{action}-{hashlib.sha256(canon.encode()).hexdigest()[:16]}"


def _match_order(m: Match) -> tuple[bool, str, str]:
    return (m.position != "src", m.op, m.value)


def _verdicts(
    part: Partition, clauses: Sequence[Clause], default: Action
) -> tuple[dict[tuple[int, int], str], dict[tuple[int, int], int]]:
    """The verdict of every pair of atoms, and which clause decided it (len(clauses): the default)."""
    scope = 0
    for term in _SCOPE:
        scope |= part.bit(term)
    masks = [
        (None if c.src is None else part.bit(c.src), None if c.dst is None else part.bit(c.dst), c.action)
        for c in clauses
    ]
    out: dict[tuple[int, int], str] = {}
    deciders: dict[tuple[int, int], int] = {}
    for a in part.atoms:
        for b in part.atoms:
            verdict = ACCEPT
            if (a | b) & scope:
                action, decider = default, len(masks)
                for i, (src, dst, act) in enumerate(masks):
                    if (src is None or a & src) and (dst is None or b & dst):
                        action, decider = act, i
                        break
                verdict = ACCEPT if action is Action.ALLOW else DROP
                deciders[(a, b)] = decider
            out[(a, b)] = verdict
    return out, deciders


def _rectangles(part: Partition, region: set[tuple[int, int]], by_source: bool) -> list[tuple[AddressSet, AddressSet]]:
    rows: dict[int, set[int]] = defaultdict(set)
    for a, b in region:
        key, other = (a, b) if by_source else (b, a)
        rows[key].add(other)
    grouped: dict[frozenset[int], list[int]] = defaultdict(list)
    for key, others in rows.items():
        grouped[frozenset(others)].append(key)
    out = []
    for targets, keys in sorted(grouped.items(), key=lambda kv: min(kv[1])):
        first, second = part.union(sorted(keys)), part.union(sorted(targets))
        out.append((first, second) if by_source else (second, first))
    return out


def _candidates(part: Partition, verdicts: dict[tuple[int, int], str]) -> list[tuple[str, Plan]]:
    out = []
    memo: dict[object, object] = {}
    for policy in (ACCEPT, DROP):
        region = {pair for pair, v in verdicts.items() if v != policy}
        for by_source in (True, False):
            out.append((policy, plan(_rectangles(part, region, by_source), memo)))
    return out


def _fits(policy: str, candidate: Plan, max_expressions: int | None) -> bool:
    """A drop policy holds accept rules, which must all sit in one chain: keep it within the budget."""
    if policy == ACCEPT or max_expressions is None:
        return True
    bound = candidate.rules * (RULE_OVERHEAD + CTSTATE_EXPRESSIONS) + candidate.matches * CIDR_EXPRESSIONS
    if bound <= max_expressions:
        return True
    exact = sum(RULE_OVERHEAD + sum(match_expressions(m) for m in term) for term in candidate.terms())
    return exact + CTSTATE_EXPRESSIONS + RULE_OVERHEAD <= max_expressions


def _decide(
    clauses: Sequence[Clause], default: Action, groups: ResolvedGroups
) -> tuple[Partition, dict[tuple[int, int], str], dict[tuple[int, int], int]]:
    terms = sorted({*_SCOPE, *(t for c in clauses for t in (c.src, c.dst) if t is not None)})
    part = partition(terms, [groups.get(t) for t in terms])
    verdicts, deciders = _verdicts(part, clauses, default)
    return part, verdicts, deciders


def _one_way(
    clauses: Sequence[Clause],
    default: Action,
    verdicts: dict[tuple[int, int], str],
    deciders: dict[tuple[int, int], int],
) -> tuple[bool, tuple[Clause, ...]]:
    one_way_pairs = [(a, b) for (a, b), v in verdicts.items() if v == ACCEPT and verdicts[(b, a)] == DROP]
    # Out of scope pairs accept without a clause and their reverse is out of scope too.
    holes = sorted({deciders[pair] for pair in one_way_pairs if pair in deciders})
    everything = (*clauses, Clause(None, None, default, "defaultAction"))
    return bool(one_way_pairs), tuple(everything[i] for i in holes)


def _chain(
    action: str, terms: Sequence[tuple[Term, int | None]], capabilities: Capabilities
) -> tuple[str, tuple[FilterRule, ...]]:
    rules: dict[str, FilterRule] = {}
    if capabilities.ctstate:
        rules[CTSTATE_RULE_NAME] = FilterRule(CTSTATE_RULE_NAME, ACCEPT, (), ("established", "related"))
    for term, where in terms:
        name = rule_name(action, term)
        if name not in rules:
            rules[name] = FilterRule(name, action, tuple(sorted(term, key=_match_order)), locality=where)
    return (CHAIN_STATEFUL if capabilities.ctstate else CHAIN_STATELESS), tuple(rules.values())


def compile_chain(
    clauses: Sequence[Clause],
    default: Action,
    groups: ResolvedGroups,
    capabilities: Capabilities,
    *,
    max_expressions: int | None = None,
) -> CompiledChain:
    part, verdicts, deciders = _decide(clauses, default, groups)
    # Fewest rules, then fewest matches; on a tie prefer the accept policy so a
    # half-applied chain fails open for traffic it does not govern. Only a
    # candidate that would win is costed exactly (formatting its terms is slow).
    ranked = sorted(_candidates(part, verdicts), key=lambda c: (c[1].rules, c[1].matches, c[0] != ACCEPT))
    policy, best = next(c for c in ranked if _fits(c[0], c[1], max_expressions))
    name, rules = _chain(DROP if policy == ACCEPT else ACCEPT, best.located_terms(), capabilities)
    one_way, one_way_clauses = _one_way(clauses, default, verdicts, deciders)
    return CompiledChain(
        name=name,
        policy=policy,
        rules=rules,
        atoms=len(part.atoms),
        one_way=one_way,
        one_way_clauses=one_way_clauses,
    )


def _pieces(part: Partition, hosted: AddressSet) -> dict[int, AddressSet]:
    """`hosted` cut along the atoms: signature -> the hosted addresses of that atom."""
    bounds = part.sorted_intervals()
    starts = [iv[0] for iv in bounds]
    out: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for start, end in hosted.intervals:
        i = max(0, bisect.bisect_right(starts, start) - 1)
        while i < len(bounds) and bounds[i][0] <= end:
            lo, hi, sig = bounds[i]
            if hi >= start:
                out[sig].append((max(lo, start), min(hi, end)))
            i += 1
    return {sig: AddressSet.from_intervals(ivs) for sig, ivs in out.items()}


def _node_duties(
    part: Partition, verdicts: dict[tuple[int, int], str], anywhere: AddressSet
) -> tuple[dict[int, AddressSet], dict[int, AddressSet]]:
    """Per atom, what a node drops from its addresses in it (row) and towards them (column).

    A packet between two hosted addresses crosses both their nodes: one of them dropping
    it is enough. The source's node drops the whole row when that is the cheaper spelling
    (fewer intervals; for example "everything but the peer's CIDR"); otherwise only towards
    addresses no node hosts (the peer, the outside), and the destination's node catches the
    rest in its column. A column may include sources whose row already drops the packet
    when that spells shorter.
    """
    atoms = sorted(part.atoms)
    rows: dict[int, AddressSet] = {}
    full: dict[int, bool] = {}
    for a in atoms:
        whole = part.union(tuple(b for b in atoms if verdicts[(a, b)] == DROP))
        outside = whole.difference(anywhere)
        full[a] = len(whole.intervals) <= len(outside.intervals)
        rows[a] = whole if full[a] else outside
    cols: dict[int, AddressSet] = {}
    for b in atoms:
        sources = tuple(a for a in atoms if verdicts[(a, b)] == DROP)
        widest = part.union(sources)
        parts = (part.atoms[a].difference(anywhere) if full[a] else part.atoms[a] for a in sources)
        needed = AddressSet.from_intervals(iv for p in parts for iv in p.intervals)
        cols[b] = widest if len(widest.intervals) <= len(needed.intervals) else needed
    return rows, cols


@dataclass(frozen=True)
class NodeChains:
    """One chain per node (see `compile_node_chains`) and what the whole policy says."""

    chains: dict[str, CompiledChain]
    summary: CompiledChain  # every node's rules, for counts and the status


def compile_node_chains(
    clauses: Sequence[Clause],
    default: Action,
    groups: ResolvedGroups,
    capabilities: Capabilities,
    hosted: Mapping[str, AddressSet],
) -> NodeChains:
    """A chain per node holding only packets with an end on that node (`hosted[node]`).

    A packet of the peering crosses the forward hook of the node hosting each of its local
    ends, and a node neither end is on (a gateway it only transits) passes it. Node N drops,
    from its addresses in atom a, `N_a x row(a)`, and towards them `column(b) x N_b`, with
    rows and columns from `_node_duties`: every denied packet is dropped by at least one of
    the nodes it crosses, no allowed one by any. Rows and columns are the same for every
    node and their spellings are shared (`cover`'s caches), so a node's chain costs about
    its own addresses, and a pod change rewrites only its node's chain unless it changes a
    row or a column. Policy accept: an accept-rules chain would have to spell "no end here".
    """
    part, verdicts, deciders = _decide(clauses, default, groups)
    anywhere = AddressSet.from_intervals(iv for h in hosted.values() for iv in h.intervals)
    rows, cols = _node_duties(part, verdicts, anywhere)
    memo: dict[object, object] = {}
    chains: dict[str, CompiledChain] = {}
    everything: dict[str, FilterRule] = {}
    for node in sorted(hosted):
        pieces = _pieces(part, hosted[node])
        by_row: dict[AddressSet, list[int]] = defaultdict(list)
        by_col: dict[AddressSet, list[int]] = defaultdict(list)
        for sig in sorted(pieces):
            if rows[sig]:
                by_row[rows[sig]].append(sig)
            if cols[sig]:
                by_col[cols[sig]].append(sig)
        rectangles = [
            (AddressSet.from_intervals(iv for s in sigs for iv in pieces[s].intervals), targets)
            for targets, sigs in by_row.items()
        ] + [
            (sources, AddressSet.from_intervals(iv for s in sigs for iv in pieces[s].intervals))
            for sources, sigs in by_col.items()
        ]
        name, rules = _chain(DROP, plan(rectangles, memo).located_terms(), capabilities)
        chains[node] = CompiledChain(name=name, policy=ACCEPT, rules=rules, atoms=len(part.atoms), one_way=False)
        everything.update((r.name, r) for r in rules)
    one_way, one_way_clauses = _one_way(clauses, default, verdicts, deciders)
    name, _ = _chain(DROP, (), capabilities)
    summary = CompiledChain(
        name=name,
        policy=ACCEPT,
        rules=tuple(everything.values()),
        atoms=len(part.atoms),
        one_way=one_way,
        one_way_clauses=one_way_clauses,
    )
    for node, chain in chains.items():
        chains[node] = CompiledChain(
            chain.name, chain.policy, chain.rules, chain.atoms, one_way=one_way, one_way_clauses=one_way_clauses
        )
    return NodeChains(chains=chains, summary=summary)
