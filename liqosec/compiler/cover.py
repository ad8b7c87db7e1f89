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
from dataclasses import dataclass

from liqosec.firewall.addresses import MAX_IP, AddressSet, format_interval

# The kernel takes at most 128 expressions a rule (NFT_RULE_MAXEXPRS). The
# agent spends 3 on a CIDR match (payload, bitwise, cmp), 2 on an IP or a
# range, plus a counter and a verdict: 40 matches stay under it in every case.
MAX_MATCHES_PER_RULE = 40

# Budgets one side may take of a rule's matches; the rest goes to the other.
_SPLITS = (0, 1, 2, 4, 8, 12, 16, 20, 24, 28, 32, 36, 38, 39, 40)


@dataclass(frozen=True, order=True)
class Match:
    position: str  # "src" | "dst"
    op: str  # "eq" | "neq"
    value: str

    def to_api(self) -> dict[str, object]:
        return {"op": self.op, "ip": {"position": self.position, "value": self.value}}


Term = tuple[Match, ...]


def _boundary(start: int, end: int, target: int) -> bool:
    return zlib.crc32(f"{start}-{end}".encode()) % target == 0


def _chunks(intervals: tuple[tuple[int, int], ...], cap: int) -> list[tuple[tuple[int, int], ...]]:
    target = max(1, cap // 2)
    out: list[tuple[tuple[int, int], ...]] = []
    current: list[tuple[int, int]] = []
    for iv in intervals:
        current.append(iv)
        if len(current) >= cap or _boundary(iv[0], iv[1], target):
            out.append(tuple(current))
            current = []
    if current:
        out.append(tuple(current))
    return out


def _chunk_term(chunk: tuple[tuple[int, int], ...], position: str) -> Term:
    span = Match(position, "eq", format_interval(chunk[0][0], chunk[-1][1]))
    gaps = [Match(position, "neq", format_interval(a[1] + 1, b[0] - 1)) for a, b in zip(chunk, chunk[1:])]
    return (span, *gaps)


def side_terms(addresses: AddressSet, position: str, budget: int) -> list[Term] | None:
    """Terms whose union is `addresses`, each of at most `budget` matches; None if impossible."""
    if not addresses:
        return []
    if addresses.intervals == ((0, MAX_IP),):
        return [()]
    holes = addresses.complement().intervals
    if budget <= 0:
        return None
    options: list[list[Term]] = [[_chunk_term(c, position) for c in _chunks(addresses.intervals, budget)]]
    if len(holes) <= budget:
        options.append([tuple(Match(position, "neq", format_interval(*h)) for h in holes)])
    return min(options, key=lambda terms: (len(terms), sum(len(t) for t in terms)))


def rectangle(src: AddressSet, dst: AddressSet) -> list[Term]:
    """The fewest rules (then matches) spelling src x dst within the match budget."""
    best: list[Term] | None = None
    for src_budget in _SPLITS:
        src_terms = side_terms(src, "src", src_budget)
        dst_terms = side_terms(dst, "dst", MAX_MATCHES_PER_RULE - src_budget)
        if src_terms is None or dst_terms is None:
            continue
        rules = [s + d for s in src_terms for d in dst_terms]
        if best is None or (len(rules), sum(map(len, rules))) < (len(best), sum(map(len, best))):
            best = rules
    if best is None:  # pragma: no cover - a 20/20 split always fits
        raise AssertionError("no split fits the match budget")
    return best


def cover(rectangles: Iterable[tuple[AddressSet, AddressSet]]) -> list[Term]:
    rules: list[Term] = []
    for src, dst in rectangles:
        rules.extend(rectangle(src, dst))
    return rules
