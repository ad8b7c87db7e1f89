"""Spell a set of (source, destination) pairs as firewall rules without sets.

A Liqo filter rule is a conjunction of matches, each `ip src|dst eq|neq
<value>`. A rectangle S x T (S, T address sets) becomes the product of the
terms spelling S and those spelling T. One side can be spelled:
- as one term of `neq` matches over the gaps of S (S's complement), when few;
- or as chunks of S's intervals: `eq <span of the chunk>` plus `neq` for the
  gaps inside it, so a chunk of n intervals costs n matches.
Chunk boundaries are content-defined (a hash of the interval decides), so a
pod added or removed changes the one chunk it falls in, not every chunk
after it, and the rule names of the others stay put.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from liqosec.firewall.addresses import MAX_IP, AddressSet, format_interval

# The kernel takes at most 128 expressions a rule (NFT_RULE_MAXEXPRS); the
# agent spends 3 on a CIDR match (payload, bitwise, cmp), 2 on an IP or a
# range, plus a counter and a verdict. Liqo's agent is tighter: it reads its
# chains back with a netlink dump, and once a chain holds a few dozen rules of
# over a page (4 KiB) each, it sees only part of the chain and re-adds the
# rest as duplicates (measured with Liqo v1.2.0: 40 range matches a rule broke
# at 50 rules; 32 range or 20 CIDR matches held at 400). 20 matches stay under
# a page whatever their kind.
MAX_MATCHES_PER_RULE = 20

# Budgets one side may take of a rule's matches; the rest goes to the other.
_SPLITS = (0, 1, 2, 4, 8, 12, 16, 18, 19, 20)


@dataclass(frozen=True, order=True, slots=True)  # thousands live in the compile caches: no __dict__ each
class Match:
    position: str  # "src" | "dst" ("" for a protocol)
    op: str  # "eq" | "neq"
    value: str
    kind: str = "ip"  # "ip" | "proto" (value tcp or udp) | "port" (a port or a range "a-b")
    _api: dict[str, object] | None = field(default=None, init=False, repr=False, compare=False)

    def to_api(self) -> dict[str, object]:
        """The match as the CRD spells it. Kept: shared by every rule holding this match, never mutated."""
        if self._api is None:
            if self.kind == "proto":
                api: dict[str, object] = {"op": self.op, "proto": {"value": self.value}}
            else:
                api = {"op": self.op, self.kind: {"position": self.position, "value": self.value}}
            object.__setattr__(self, "_api", api)
            return api
        return self._api


Term = tuple[Match, ...]


@dataclass(frozen=True, slots=True)
class Spelling:
    """One side, not yet formatted: costed first, formatted only if it wins.

    kind "any" is no match; "holes" is one term of `neq` over `intervals`
    (the complement); "chunks" cuts `intervals` after each index in `ends`.
    """

    kind: str
    intervals: tuple[tuple[int, int], ...] = ()
    ends: tuple[int, ...] = ()

    @property
    def terms(self) -> int:
        return len(self.ends) if self.kind == "chunks" else (1 if self.kind != "none" else 0)

    @property
    def matches(self) -> int:
        return 0 if self.kind in ("any", "none") else len(self.intervals)


NONE = Spelling("none")


# Work that repeats from one compile to the next: most sets and chunks are the same after a
# pod change (content-defined chunks), so their hashes, costings and formatted matches are
# kept. Plain dicts emptied when full: a lookup is cheaper than an LRU's bookkeeping, and a
# refill costs one compile. (An interval's hash is not kept on its own: a crc32 costs about
# 0.5 us, a kept one ~160 bytes for as long as the controller runs; sets keep theirs.)
_CACHE_LIMIT = 200_000
_RECTANGLES: dict[tuple[Any, ...], tuple[int, int, Spelling, Spelling]] = {}
_RECTANGLES_LIMIT = 512
_FORMATTED: dict[tuple[str, tuple[tuple[int, int], ...]], Term] = {}
_SETS: dict[tuple[tuple[int, int], ...], tuple[Any, tuple[tuple[int, int], ...] | None]] = {}
_SETS_LIMIT = 256


def _bounded(cache: dict[Any, Any], limit: int = _CACHE_LIMIT) -> dict[Any, Any]:
    if len(cache) >= limit:
        cache.clear()
    return cache


def _boundaries(intervals: tuple[tuple[int, int], ...]) -> list[int]:
    return [zlib.crc32(f"{start}-{end}".encode()) for start, end in intervals]


class _Hashes(list[int]):
    """Boundary hashes of one set, with the natural cut points found per target (reused across budgets)."""

    def ends(self, cap: int) -> tuple[int, ...]:
        """`_chunk_ends` of these hashes, kept per cap: every rectangle with this side asks again."""
        found: dict[int, tuple[int, ...]] = self.__dict__.setdefault("_ends", {})
        if cap not in found:
            found[cap] = _chunk_ends(self, cap)
        return found[cap]

    def natural(self, target: int) -> list[int]:
        found: dict[int, list[int]] = self.__dict__.setdefault("_natural", {})
        if target not in found:
            found[target] = [i for i, digest in enumerate(self) if digest % target == 0]
        return found[target]


def _set_info(addresses: AddressSet) -> tuple[_Hashes, tuple[tuple[int, int], ...] | None]:
    """A set's boundary hashes and its complement, shared by every rectangle that has it as a side.

    The complement only when one rule can spell it (`_spell` uses it no other way): a group's
    complement is as long as the group, and kept it would double what a kept set costs.
    """
    info = _SETS.get(addresses.intervals)
    if info is None:
        holes = addresses.complement().intervals if _holes(addresses) <= MAX_MATCHES_PER_RULE else None
        info = (_Hashes(_boundaries(addresses.intervals)), holes)
        _bounded(_SETS, _SETS_LIMIT)[addresses.intervals] = info
    return info


def _holes(addresses: AddressSet) -> int:
    """How many intervals the complement of `addresses` has."""
    ivs = addresses.intervals
    if not ivs:
        return 1
    return len(ivs) + 1 - (ivs[0][0] == 0) - (ivs[-1][1] == MAX_IP)


def _chunk_ends(hashes: list[int], cap: int) -> tuple[int, ...]:
    """Cut after content-defined boundaries, and wherever a chunk would pass `cap`."""
    target = max(1, cap // 2)
    if isinstance(hashes, _Hashes):
        natural = hashes.natural(target)
    else:
        natural = [i for i, digest in enumerate(hashes) if digest % target == 0]
    ends: list[int] = []
    last = -1
    for end in [*natural, len(hashes) - 1]:
        while end - last > cap:
            last += cap
            ends.append(last)
        if end > last:
            ends.append(end)
            last = end
    return tuple(ends)


def _spell(
    addresses: AddressSet, holes: tuple[tuple[int, int], ...] | None, hashes: list[int], budget: int
) -> Spelling | None:
    """Terms whose union is `addresses`, each of at most `budget` matches; None if impossible."""
    if not addresses:
        return NONE
    if addresses.intervals == ((0, MAX_IP),):
        return Spelling("any")
    if budget <= 0:
        return None
    ends = hashes.ends(budget) if isinstance(hashes, _Hashes) else _chunk_ends(hashes, budget)
    chunks = Spelling("chunks", addresses.intervals, ends)
    if holes is not None and len(holes) <= budget and (chunks.terms > 1 or len(holes) < len(addresses.intervals)):
        return Spelling("holes", holes)
    return chunks


def _chunks(spelling: Spelling) -> list[tuple[tuple[int, int], ...]]:
    """A "chunks" spelling's intervals, cut after each of its `ends`: one term each."""
    out, begin = [], 0
    for end in spelling.ends:
        out.append(spelling.intervals[begin : end + 1])
        begin = end + 1
    return out


def _format(spelling: Spelling, position: str, keep: bool = True) -> list[Term]:
    if spelling.kind == "none":
        return []
    if spelling.kind == "any":
        return [()]
    if spelling.kind == "holes":
        return [tuple(Match(position, "neq", format_interval(*h)) for h in spelling.intervals)]
    return [_format_chunk(chunk, position, keep) for chunk in _chunks(spelling)]


# A term before formatting: the interval of each of its matches, in order (a chunk's `eq` span,
# then its `neq` gaps; or a complement's `neq` holes). Costing one needs no strings.
Shape = tuple[tuple[int, int], ...]


def _complement_spelling(addresses: AddressSet) -> Spelling:
    outside = addresses.complement()
    hashes, holes = _set_info(outside)
    spelling = _spell(outside, holes, hashes, MAX_MATCHES_PER_RULE)
    assert spelling is not None  # a full budget always spells
    return spelling


def complement_terms(addresses: AddressSet, position: str, keep: bool = True) -> list[Term]:
    """Terms, each of at most `MAX_MATCHES_PER_RULE` matches, whose union is every address not in `addresses`.

    `keep=False` when only costing them: what was not formatted before is not kept for later.
    """
    return _format(_complement_spelling(addresses), position, keep)


def complement_shapes(addresses: AddressSet) -> list[Shape]:
    """The shapes of `complement_terms(addresses, ...)`, term for term, without formatting a match."""
    spelling = _complement_spelling(addresses)
    if spelling.kind == "none":
        return []
    if spelling.kind == "any":
        return [()]
    if spelling.kind == "holes":
        return [spelling.intervals]
    return [_chunk_shape(chunk) for chunk in _chunks(spelling)]


def _locations(spelling: Spelling) -> list[int | None]:
    """Per chunk, the start of its last interval: near every address the chunk is about.

    (Its first interval may reach far out: a group's complement starts at 0.0.0.0.) A pod
    change touches neighbouring chunks of each group it is in, and their locations are
    neighbours too.
    """
    return [spelling.intervals[end][0] for end in spelling.ends]


def _chunk_shape(ivs: tuple[tuple[int, int], ...]) -> Shape:
    """A chunk as one term: `eq` its span, `neq` each gap between its intervals."""
    return ((ivs[0][0], ivs[-1][1]), *((x[1] + 1, y[0] - 1) for x, y in zip(ivs, ivs[1:])))


def _format_chunk(ivs: tuple[tuple[int, int], ...], position: str, keep: bool = True) -> Term:
    """A chunk's term; kept for the next compile (`keep`) when it is written, not when only costed."""
    key = (position, ivs)
    term = _FORMATTED.get(key)
    if term is None:
        span, *gaps = _chunk_shape(ivs)
        term = (
            Match(position, "eq", format_interval(*span)),
            *(Match(position, "neq", format_interval(*gap)) for gap in gaps),
        )
        if keep:
            _bounded(_FORMATTED)[key] = term
    return term


@dataclass(frozen=True)
class Plan:
    """A chosen spelling of some rectangles: costed first, formatted only if it wins."""

    pieces: tuple[tuple[Spelling, Spelling], ...]
    rules: int
    matches: int

    def terms(self) -> list[Term]:
        """The terms, formatted to be costed: what was not formatted before is not kept for later."""
        return [term for term, _ in self.located_terms(keep=False)]

    def located_terms(self, keep: bool = True) -> list[tuple[Term, int | None]]:
        """Terms, each with where it sits in the address space (see `_locations`), if anywhere."""
        out: list[tuple[Term, int | None]] = []
        for s, d in self.pieces:
            src_terms, dst_terms = _format(s, "src", keep), _format(d, "dst", keep)
            by_src = s.kind == "chunks" and (d.kind != "chunks" or len(s.ends) >= len(d.ends))
            if by_src:
                keys = _locations(s)
                out.extend((a + b, keys[i]) for i, a in enumerate(src_terms) for b in dst_terms)
            else:
                keys = _locations(d) if d.kind == "chunks" else [None] * len(dst_terms)
                out.extend((a + b, keys[j]) for a in src_terms for j, b in enumerate(dst_terms))
        return out


def _rectangle(src: AddressSet, dst: AddressSet, reserve: int = 0) -> tuple[int, int, Spelling, Spelling]:
    """The fewest rules (then matches) spelling src x dst within the match budget, less `reserve`."""
    key: tuple[Any, ...] = (src.intervals, dst.intervals) if not reserve else (src.intervals, dst.intervals, reserve)
    known = _RECTANGLES.get(key)
    if known is not None:
        return known
    src_hashes, src_holes = _set_info(src)
    dst_hashes, dst_holes = _set_info(dst)
    best: tuple[int, int, Spelling, Spelling] | None = None
    for src_budget in _SPLITS:
        if src_budget > MAX_MATCHES_PER_RULE - reserve:
            continue
        s = _spell(src, src_holes, src_hashes, src_budget)
        d = _spell(dst, dst_holes, dst_hashes, MAX_MATCHES_PER_RULE - reserve - src_budget)
        if s is None or d is None:
            continue
        cost = (s.terms * d.terms, s.matches * d.terms + d.matches * s.terms)
        if best is None or cost < best[:2]:
            best = (*cost, s, d)
    if best is None:  # pragma: no cover - a 20/20 split always fits
        raise AssertionError("no split fits the match budget")
    _bounded(_RECTANGLES, _RECTANGLES_LIMIT)[key] = best
    return best


def rectangle_cost(src: AddressSet, dst: AddressSet) -> tuple[int, int, int]:
    """Drop rules spelling src x dst, and the terms of each side: (rules, source terms, destination terms)."""
    rules, _, s, d = _rectangle(src, dst)
    return rules, s.terms, d.terms


def plan(
    rectangles: Iterable[tuple[AddressSet, AddressSet]], memo: dict[Any, Any] | None = None, reserve: int = 0
) -> Plan:
    """Spell rectangles; `memo` shares work across candidate plans of one compile; `reserve`
    keeps that many matches of each rule free (for a protocol and a port)."""
    memo = {} if memo is None else memo
    pieces, rules, matches = [], 0, 0
    for src, dst in rectangles:
        key: tuple[Any, ...] = (
            (src.intervals, dst.intervals) if not reserve else (src.intervals, dst.intervals, reserve)
        )
        if key not in memo:
            memo[key] = _rectangle(src, dst, reserve)
        n_rules, n_matches, s, d = memo[key]
        pieces.append((s, d))
        rules += n_rules
        matches += n_matches
    return Plan(tuple(pieces), rules, matches)
