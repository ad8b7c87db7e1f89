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
- an accept-rules chain (policy drop) costs at most `max_expressions`
  (`unsplit_cost`: kernel expressions plus `UNSPLIT_RULE_WEIGHT` a rule): it
  cannot be split over several FirewallConfigurations, a drop-rules chain can
  (see `firewallconfiguration.shard`); product chains included.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import orjson

from liqosec.api.peeringconnectivity import MAX_PORT, Action, Group
from liqosec.compiler.cover import Match, Plan, Shape, Term, plan, rectangle_cost
from liqosec.compiler.partition import Partition, partition
from liqosec.compiler.policy import Clause
from liqosec.compiler.ports import PortClass, PortSpan, port_classes, signature
from liqosec.compiler.products import ProductPlan, product_plan, rectangle_label
from liqosec.firewall.addresses import AddressSet, cidr_prefix
from liqosec.firewall.capabilities import Capabilities
from liqosec.firewall.evaluate import EPHEMERAL_PORT
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
# A port range is payload and two cmps; a protocol is meta and cmp, a single port payload and cmp.
PORT_RANGE_EXPRESSIONS = 3
# What one unsplittable chain may cost: a policy-drop chain (accept rules: a product chain, a holes
# table, a main chain of policy drop) cannot be cut into shards, so it gets the largest object Liqo's
# agent was seen to apply, with margin, rather than a drop-rules shard's budget
# (`firewallconfiguration.MAX_EXPRESSIONS_PER_FIREWALL`, 1,500). The agent fails when the echo of its
# netlink batch overflows the socket buffer; that echo grows with each rule's expressions and, per
# rule, its header (table name, chain, rule name): a rule costs its kernel expressions plus
# UNSPLIT_RULE_WEIGHT (`unsplit_cost`). Measured with Liqo v1.2.0's agent and the longest table name
# liqosec writes (101 characters): chains of one-match rules failed from 600 rules (cost 4,800),
# two-match from 500 (5,000), product-chain rules from 214 (4,850), 20-CIDR rules from 61 (4,026);
# the lowest cost seen to fail is 4,026, so 3,500 keeps 13% below it (docs/semantics.md, "Liqo's
# agent"; test/dataplane/test_scale.py loads chains at this budget and sees one past the limit fail).
UNSPLIT_BUDGET = 3500
UNSPLIT_RULE_WEIGHT = 4
_SCOPE = (Group.REMOTE_CLUSTER.value, Group.OFFLOADED.value, Group.VC_REMOTE.value)


def compact_json_size(obj: Any) -> int:
    """len(json.dumps(obj, separators=(",", ":"))) for the ASCII objects the compiler makes, several
    times faster (orjson writes the same compact form)."""
    return len(orjson.dumps(obj))


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
        return compact_json_size(self._api)


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
    # Chains of rules with protocol and port matches that cannot join this one, each written as a
    # table of its own which the packet must pass too (`compile_ports`): (PORTS, drop rules) when
    # this chain's policy is drop, (HOLES, accept rules) when holes would make this chain too large.
    extra: tuple[tuple[str, CompiledChain], ...] = ()

    @property
    def rule_count(self) -> int:
        """Rules of every table this chain is written as (the extra chains' too)."""
        return len(self.rules) + sum(len(c.rules) for _, c in self.extra)

    @property
    def expressions(self) -> int:
        return sum(r.expressions for r in self.rules)

    @property
    def unsplit_cost(self) -> int:
        """What this chain costs against `UNSPLIT_BUDGET` when it must sit in one object (policy drop)."""
        return unsplit_cost(self.rules)


def unsplit_cost(rules: Sequence[FilterRule]) -> int:
    """Kernel expressions plus `UNSPLIT_RULE_WEIGHT` a rule: what an unsplittable chain's rules cost."""
    return sum(r.expressions + UNSPLIT_RULE_WEIGHT for r in rules)


def match_expressions(m: Match) -> int:
    if m.kind == "port" and "-" in m.value:
        return PORT_RANGE_EXPRESSIONS
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
    canon = json.dumps(
        [
            action,
            [
                [m.position, m.op, m.value] if m.kind == "ip" else [m.kind, m.position, m.op, m.value]
                for m in sorted(matches)
            ],
        ],
        separators=(",", ":"),
    )
    return f"{action}-{hashlib.sha256(canon.encode()).hexdigest()[:16]}"


def _match_order(m: Match) -> tuple[bool, bool, bool, str, str]:
    """Addresses (sources first), then the protocol, then the port."""
    return (m.kind != "ip", m.kind != "proto", m.position != "src", m.op, m.value)


def _verdicts(
    part: Partition, clauses: Sequence[Clause], default: Action, active: frozenset[int] | None = None
) -> tuple[dict[tuple[int, int], str], dict[tuple[int, int], int]]:
    """The verdict of every pair of atoms, and which clause decided it (len(clauses): the default).

    `active`: only these clauses can match (the others' ports do not cover the packets judged).
    """
    scope = 0
    for term in _SCOPE:
        scope |= part.bit(term)
    masks = [
        (None if c.src is None else part.bit(c.src), None if c.dst is None else part.bit(c.dst), c.action)
        if active is None or i in active
        else (0, 0, c.action)
        for i, c in enumerate(clauses)
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


def _keyed_rectangles(
    part: Partition, region: set[tuple[int, int]], by_source: bool
) -> list[tuple[AddressSet, AddressSet, tuple[tuple[int, ...], tuple[int, ...]]]]:
    """Rectangles covering `region`, grouped by source (or destination) atom, each with the atoms
    of its source and destination sides."""
    rows: dict[int, set[int]] = defaultdict(set)
    for a, b in region:
        key, other = (a, b) if by_source else (b, a)
        rows[key].add(other)
    grouped: dict[frozenset[int], list[int]] = defaultdict(list)
    for key, others in rows.items():
        grouped[frozenset(others)].append(key)
    out = []
    for targets, keys in sorted(grouped.items(), key=lambda kv: min(kv[1])):
        first_atoms, second_atoms = tuple(sorted(keys)), tuple(sorted(targets))
        first, second = part.union(first_atoms), part.union(second_atoms)
        if by_source:
            out.append((first, second, (first_atoms, second_atoms)))
        else:
            out.append((second, first, (second_atoms, first_atoms)))
    return out


def _rectangles(part: Partition, region: set[tuple[int, int]], by_source: bool) -> list[tuple[AddressSet, AddressSet]]:
    return [(src, dst) for src, dst, _ in _keyed_rectangles(part, region, by_source)]


@dataclass(frozen=True)
class _Candidate:
    """A policy, the rules of its chain, and (policy accept only) the product chains beside it."""

    policy: str
    plan: Plan
    products: tuple[ProductPlan, ...] = ()

    @property
    def rules(self) -> int:
        return self.plan.rules + sum(p.rules for p in self.products)

    @property
    def matches(self) -> int:
        return self.plan.matches + sum(p.matches for p in self.products)

    @property
    def rank(self) -> tuple[int, int, bool]:
        """Fewest rules, then fewest matches; on a tie the accept policy, so a half-applied chain
        fails open for traffic it does not govern."""
        return (self.rules, self.matches, self.policy != ACCEPT)


def _term_expressions(term: Term) -> int:
    return RULE_OVERHEAD + sum(match_expressions(m) for m in term)


def _term_cost(term: Term) -> int:
    """A rule of `term` in an unsplittable chain (`unsplit_cost`)."""
    return _term_expressions(term) + UNSPLIT_RULE_WEIGHT


def _shape_cost(shape: Shape) -> int:
    """`_term_cost` of the address term `shape` spells, from its intervals (a CIDR's match costs more)."""
    return (
        RULE_OVERHEAD
        + sum(CIDR_EXPRESSIONS if cidr_prefix(*iv) is not None else VALUE_EXPRESSIONS for iv in shape)
        + UNSPLIT_RULE_WEIGHT
    )


# A product chain keeps room for the conntrack accept (ct, bitwise, cmp, counter, verdict) and its weight.
_PRODUCT_HEAD = CTSTATE_EXPRESSIONS + RULE_OVERHEAD + UNSPLIT_RULE_WEIGHT


def _drop_plan(
    part: Partition, region: set[tuple[int, int]], by_source: bool, memo: dict[object, object], budget: int
) -> tuple[Plan, tuple[ProductPlan, ...]]:
    """Drop rules for `region`, but a rectangle whose sides are both scattered (its drop rules are
    the product of its sides' chunks) becomes product chains when they spell it in fewer rules
    (see `products`)."""
    kept: list[tuple[AddressSet, AddressSet]] = []
    products: list[ProductPlan] = []
    for src, dst, atoms in _keyed_rectangles(part, region, by_source):
        rules, src_terms, dst_terms = rectangle_cost(src, dst)
        if src_terms >= 2 and dst_terms >= 2:
            key = ("product", src.intervals, dst.intervals, budget)
            if key not in memo:
                label = rectangle_label(part.terms, atoms)
                memo[key] = product_plan(label, src, dst, budget, _shape_cost, head=_PRODUCT_HEAD)
            product = memo[key]
            assert isinstance(product, ProductPlan)
            if product.rules + 1 < rules:  # a product chain is an object more: keep small rectangles in the chain
                products.append(product)
                continue
        kept.append((src, dst))
    return plan(kept, memo), tuple(products)


def _candidates(
    part: Partition, verdicts: dict[tuple[int, int], str], max_expressions: int | None = None
) -> list[_Candidate]:
    out = []
    memo: dict[object, object] = {}
    budget = UNSPLIT_BUDGET if max_expressions is None else max_expressions
    for policy in (ACCEPT, DROP):
        region = {pair for pair, v in verdicts.items() if v != policy}
        for by_source in (True, False):
            if policy == ACCEPT:
                out.append(_Candidate(policy, *_drop_plan(part, region, by_source, memo, budget)))
            else:
                out.append(_Candidate(policy, plan(_rectangles(part, region, by_source), memo)))
    return out


def _choose(part: Partition, verdicts: dict[tuple[int, int], str], max_expressions: int | None) -> _Candidate:
    """The smallest candidate whose accept rules (policy drop) fit one FirewallConfiguration.

    Only a candidate that would win is costed exactly (formatting its terms is slow).
    """
    ranked = sorted(_candidates(part, verdicts, max_expressions), key=lambda c: c.rank)
    return next(c for c in ranked if _fits(c.policy, c.plan, max_expressions))


def _product_chains(
    products: Sequence[ProductPlan],
    capabilities: Capabilities,
    atoms: int,
    one_way: bool,
    one_way_clauses: tuple[Clause, ...],
) -> list[tuple[str, CompiledChain]]:
    """Each product chain as a chain of its own: policy drop, accepting what its block pair does not hold."""
    out = []
    for product in products:
        for kind, terms in product.chains:
            name, rules = _chain(ACCEPT, [(term, None) for term in terms], capabilities)
            out.append((kind, CompiledChain(name, DROP, rules, atoms, one_way, one_way_clauses)))
    return out


def _fits(policy: str, candidate: Plan, max_expressions: int | None) -> bool:
    """A drop policy holds accept rules, which must all sit in one chain: keep its `unsplit_cost` within the budget."""
    if policy == ACCEPT or max_expressions is None:
        return True
    bound = (
        candidate.rules * (RULE_OVERHEAD + CTSTATE_EXPRESSIONS + UNSPLIT_RULE_WEIGHT)
        + candidate.matches * CIDR_EXPRESSIONS
    )
    if bound <= max_expressions:
        return True
    exact = sum(_term_cost(term) for term in candidate.terms())
    return exact + _PRODUCT_HEAD <= max_expressions


def _partition(clauses: Sequence[Clause], groups: ResolvedGroups) -> Partition:
    terms = sorted({*_SCOPE, *(t for c in clauses for t in (c.src, c.dst) if t is not None)})
    return partition(terms, [groups.get(t) for t in terms])


def _decide(
    clauses: Sequence[Clause], default: Action, groups: ResolvedGroups
) -> tuple[Partition, dict[tuple[int, int], str], dict[tuple[int, int], int]]:
    part = _partition(clauses, groups)
    verdicts, deciders = _verdicts(part, clauses, default)
    return part, verdicts, deciders


def _one_way(
    clauses: Sequence[Clause],
    default: Action,
    verdicts: dict[tuple[int, int], str],
    deciders: dict[tuple[int, int], int],
) -> tuple[bool, tuple[Clause, ...]]:
    one_way, holes = _one_way_holes(verdicts, deciders, verdicts)
    everything = (*clauses, Clause(None, None, default, "defaultAction"))
    return one_way, tuple(everything[i] for i in sorted(holes))


def _one_way_holes(
    verdicts: dict[tuple[int, int], str], deciders: dict[tuple[int, int], int], back: dict[tuple[int, int], str]
) -> tuple[bool, set[int]]:
    """Whether some pair is accepted (`verdicts`) while its reply is dropped (`back`), and the deciding clauses."""
    one_way_pairs = [(a, b) for (a, b), v in verdicts.items() if v == ACCEPT and back[(b, a)] == DROP]
    # Out of scope pairs accept without a clause and their reverse is out of scope too.
    return bool(one_way_pairs), {deciders[pair] for pair in one_way_pairs if pair in deciders}


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
    if any(c.ports for c in clauses):
        return compile_ports(clauses, default, groups, capabilities, max_expressions=max_expressions)
    part, verdicts, deciders = _decide(clauses, default, groups)
    best = _choose(part, verdicts, max_expressions)
    name, rules = _chain(DROP if best.policy == ACCEPT else ACCEPT, best.plan.located_terms(), capabilities)
    one_way, one_way_clauses = _one_way(clauses, default, verdicts, deciders)
    return CompiledChain(
        name=name,
        policy=best.policy,
        rules=rules,
        atoms=len(part.atoms),
        one_way=one_way,
        one_way_clauses=one_way_clauses,
        extra=tuple(_product_chains(best.products, capabilities, len(part.atoms), one_way, one_way_clauses)),
    )


class ChainTooLarge(ValueError):
    """An accept-rules chain over one FirewallConfiguration's budget: it cannot be cut into shards."""


PORTS, HOLES = "ports", "holes"
# the extra chains of `compile_ports`, named in their objects and tables
L4_MATCHES = 2  # a protocol and a port: what a rule of a port class adds to its addresses


def _l4_terms(spans: Sequence[PortSpan]) -> list[Term]:
    """One term per span: the protocol, and the destination port or range unless it is every port."""
    out: list[Term] = []
    for proto, lo, hi in spans:
        proto_match = Match("", "eq", proto, "proto")
        if (lo, hi) == (0, MAX_PORT):
            out.append((proto_match,))
        else:
            out.append((proto_match, Match("dst", "eq", str(lo) if lo == hi else f"{lo}-{hi}", "port")))
    return out


def _smallest(part: Partition, region: set[tuple[int, int]], memo: dict[object, object], reserve: int) -> Plan:
    plans = [plan(_rectangles(part, region, by_source), memo, reserve) for by_source in (True, False)]
    return min(plans, key=lambda p: (p.rules, p.matches))


def _with_l4(located: Sequence[tuple[Term, int | None]], spans: Sequence[PortSpan]) -> list[tuple[Term, int | None]]:
    return [(term + l4, where) for term, where in located for l4 in _l4_terms(spans)]


def compile_ports(
    clauses: Sequence[Clause],
    default: Action,
    groups: ResolvedGroups,
    capabilities: Capabilities,
    *,
    max_expressions: int | None = None,
    holes_table: bool | None = None,
) -> CompiledChain:
    """`compile_chain` for clauses with destination ports, still order-proof.

    The (protocol, port) space is cut into classes (`ports.port_classes`); B is the verdict of
    every pair of atoms for the base class (other protocols, ports no clause names) and V_c for
    class c. Where V_c = B everywhere, this is `compile_chain` of B. Otherwise, per class,
    X_c = pairs B accepts and V_c drops, Y_c = pairs B drops and V_c accepts. Liqo's firewall
    can match a protocol and a port only positively, so:
    - with no Y_c, the chain is B's, and X_c's rectangles become drop rules carrying the class's
      protocol and port; they join B's chain when its policy is accept;
    - with some Y_c, the chain has policy drop and accept rules: B's accepted pairs (no protocol
      match) and Y_c's rectangles with the class's protocol and port;
    - drop rules that cannot join a policy-drop chain go into a PORTS chain, policy accept, in a
      table of its own: every chain on the forward hook must accept, so the verdict is
      (B or Y_c) and not X_c, which is V_c for class c and B elsewhere;
    - when that one accept-rules chain would not fit one FirewallConfiguration (B's accepted pairs
      can be many: accept rules cannot be cut into shards), or `holes_table` says so, the chain is
      compiled from B with every Y_c pair accepted (any policy, shardable), and a HOLES chain,
      policy drop, accepts every pair outside the Y_c and Y_c's rectangles with c's protocol and
      port: a pair of some Y_c passes only in a class that opens it.
    Replies are judged at the client's ephemeral port (`ports.EPHEMERAL_PORT`) for the one-way analysis.
    """
    a = _analyse_port_classes(clauses, default, groups)
    single = _single_accept_chain(a, capabilities, max_expressions, holes_table)
    extra: list[tuple[str, CompiledChain]] = []
    if single is not None:
        _fit(single, max_expressions)
        main = single
    else:
        main, extra = _base_and_holes_chains(a, capabilities, max_expressions)
    if a.drops and main.policy == DROP:
        extra.append((PORTS, a.chain_of(ACCEPT, a.drops, capabilities)))
    return CompiledChain(
        name=main.name,
        policy=main.policy,
        rules=main.rules,
        atoms=a.atoms,
        one_way=a.one_way,
        one_way_clauses=a.one_way_clauses,
        extra=tuple(extra),
    )


_Located = list[tuple[Term, int | None]]
_Judged = tuple[dict[tuple[int, int], str], dict[tuple[int, int], int]]


@dataclass
class _PortAnalysis:
    """Per port class c, against the base class B: X_c's drop rules and Y_c's accept rules (with
    the class's protocol and port), the pairs some class opens, and the one-way analysis."""

    part: Partition
    base: dict[tuple[int, int], str]  # B's verdict of every pair of atoms
    memo: dict[object, object]
    drops: _Located = field(default_factory=list)
    accepts: _Located = field(default_factory=list)
    opened: set[tuple[int, int]] = field(default_factory=set)  # the union of the Y_c
    hole_classes: list[tuple[PortClass, set[tuple[int, int]]]] = field(default_factory=list)
    one_way: bool = False
    one_way_clauses: tuple[Clause, ...] = ()

    @property
    def atoms(self) -> int:
        return len(self.part.atoms)

    def smallest(self, region: set[tuple[int, int]], reserve: int) -> Plan:
        return _smallest(self.part, region, self.memo, reserve)

    def chain_of(
        self, policy: str, terms: Sequence[tuple[Term, int | None]], capabilities: Capabilities
    ) -> CompiledChain:
        name, rules = _chain(DROP if policy == ACCEPT else ACCEPT, terms, capabilities)
        return CompiledChain(
            name, policy, rules, self.atoms, one_way=self.one_way, one_way_clauses=self.one_way_clauses
        )


def _analyse_port_classes(clauses: Sequence[Clause], default: Action, groups: ResolvedGroups) -> _PortAnalysis:
    """Step one of `compile_ports`: the verdicts per port class, and what each class changes from B."""
    part = _partition(clauses, groups)
    spans = [c.ports for c in clauses]
    portless = frozenset(i for i, c in enumerate(clauses) if not c.ports)
    judged: dict[frozenset[int], _Judged] = {}

    def verdicts_of(sig: frozenset[int]) -> _Judged:
        if sig not in judged:
            judged[sig] = _verdicts(part, clauses, default, portless | sig)
        return judged[sig]

    base, _ = verdicts_of(frozenset())
    a = _PortAnalysis(part, base, {})
    for pc in (pc for pc in port_classes(spans) if pc.clauses):
        v, _ = verdicts_of(pc.clauses)
        x = {pair for pair, verdict in v.items() if verdict == DROP and base[pair] == ACCEPT}
        y = {pair for pair, verdict in v.items() if verdict == ACCEPT and base[pair] == DROP}
        if x:
            a.drops += _with_l4(a.smallest(x, L4_MATCHES).located_terms(), pc.spans)
        if y:
            a.accepts += _with_l4(a.smallest(y, L4_MATCHES).located_terms(), pc.spans)
            a.opened |= y
            a.hole_classes.append((pc, y))
    a.one_way, holes = _port_one_way(spans, [pc.spans for pc in port_classes(spans)], verdicts_of)
    everything = (*clauses, Clause(None, None, default, "defaultAction"))
    a.one_way_clauses = tuple(everything[i] for i in sorted(holes))
    return a


def _single_accept_chain(
    a: _PortAnalysis, capabilities: Capabilities, max_expressions: int | None, holes_table: bool | None
) -> CompiledChain | None:
    """Step two of `compile_ports`, the choice: the one policy-drop chain of B's accepted pairs and
    every Y_c, or None for B's chain with a holes table (no Y_c, asked to, or the one chain too large)."""
    if not a.accepts or holes_table is True:
        return None
    allowed = a.smallest({pair for pair, verdict in a.base.items() if verdict == ACCEPT}, 0)
    single = a.chain_of(DROP, [*allowed.located_terms(), *a.accepts], capabilities)
    if holes_table is None and max_expressions is not None and single.unsplit_cost > max_expressions:
        return None  # too large for one FirewallConfiguration: a holes table instead
    return single


def _base_and_holes_chains(
    a: _PortAnalysis, capabilities: Capabilities, max_expressions: int | None
) -> tuple[CompiledChain, list[tuple[str, CompiledChain]]]:
    """Step three of `compile_ports` without the single chain: B's chain with every Y_c pair accepted
    (any policy, shardable, X_c's drop rules joining it when its policy is accept), its product
    chains, and the HOLES chain when some class opens pairs."""
    extra: list[tuple[str, CompiledChain]] = []
    if a.accepts:
        # The holes chain lets the Y_c pairs through only in their class: it accepts every other
        # pair, and in class c the pairs of Y_c, or (when that spells shorter, often as "any") every
        # pair but those only other classes open.
        others = {pair for pair in a.base if pair not in a.opened}
        kept = a.smallest(others, 0).located_terms()
        in_class: _Located = []
        for pc, y in a.hole_classes:
            wide = {pair for pair in a.base if pair not in a.opened or pair in y}
            narrow, widest = a.smallest(y, L4_MATCHES), a.smallest(wide, L4_MATCHES)
            best = min((widest, narrow), key=lambda p: (p.rules, p.matches))
            in_class += _with_l4(best.located_terms(), pc.spans)
        holes_chain = a.chain_of(DROP, [*kept, *in_class], capabilities)
        _fit(holes_chain, max_expressions, "; name fewer ports or narrower groups")
        extra.append((HOLES, holes_chain))
    verdicts = {pair: (ACCEPT if pair in a.opened else verdict) for pair, verdict in a.base.items()}
    chosen = _choose(a.part, verdicts, max_expressions)
    policy = chosen.policy
    main = a.chain_of(policy, [*chosen.plan.located_terms(), *(a.drops if policy == ACCEPT else [])], capabilities)
    extra += _product_chains(chosen.products, capabilities, a.atoms, a.one_way, a.one_way_clauses)
    return main, extra


def _fit(chain: CompiledChain, max_expressions: int | None, advice: str = "") -> None:
    """ChainTooLarge when an accept-rules chain of `compile_ports` is over one FirewallConfiguration's budget."""
    if max_expressions is not None and chain.unsplit_cost > max_expressions:
        raise ChainTooLarge(
            f"the rules with ports compile to an accept-rules chain of {chain.expressions} kernel "
            f"expressions in {len(chain.rules)} rules (cost {chain.unsplit_cost}, at {UNSPLIT_RULE_WEIGHT} a rule "
            f"more), over the {max_expressions} one FirewallConfiguration may hold{advice}"
        )


def _port_one_way(
    spans: Sequence[Sequence[PortSpan]],
    all_spans: Sequence[Sequence[PortSpan]],
    verdicts_of: Callable[[frozenset[int]], tuple[dict[tuple[int, int], str], dict[tuple[int, int], int]]],
) -> tuple[bool, set[int]]:
    """One-way flows of every class: a request of a class, its reply at the ephemeral port of its protocol."""
    kinds = {(frozenset[int](), frozenset[int]())}  # other protocols: request and reply in the base class
    for class_spans in all_spans:
        for proto, lo, _ in class_spans:
            kinds.add((signature(spans, (proto, lo)), signature(spans, (proto, EPHEMERAL_PORT))))
    found, holes = False, set()
    for request, reply in sorted(kinds, key=lambda k: (sorted(k[0]), sorted(k[1]))):
        verdicts, deciders = verdicts_of(request)
        one_way, these = _one_way_holes(verdicts, deciders, verdicts_of(reply)[0])
        found |= one_way
        holes |= these
    return found, holes
