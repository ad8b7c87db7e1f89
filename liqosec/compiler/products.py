"""Drop regions S x T whose sides are both scattered, each as chains of their own ("product chains").

Spelled as drop rules, S x T costs chunks(S) x chunks(T) rules: quadratic in the pods. A base
chain with policy drop that accepts `src not in S_k` and `dst not in T_l` drops exactly
S_k x T_l, at the cost of spelling both complements: linear. Every base chain on the forward
hook must accept a packet, so these chains AND with the peering's main chain, as its ports and
holes tables already do; they only drop pairs the policy drops, so the main chain may leave
those pairs out.

Accept rules cannot be cut into shards (a table lacking one would drop what it accepts), so a
product chain must fit one FirewallConfiguration on its own, within the budget of an unsplittable
chain (`compile.UNSPLIT_BUDGET`, larger than a drop-rules shard's): S and T are cut into blocks by
address (a CIDR split in two while its block's spelling passes its share of the budget), one
chain per pair of blocks. Blocks are named by their CIDR, so a pod change rewrites the chains
of its block only. No spelling of S x T with Liqo's matches escapes a quadratic term once both
sides pass one object's budget (docs/semantics.md, "Product chains"): at that point the number
of chains grows with the product of the blocks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from liqosec.compiler.cover import Shape, Term, complement_shapes, complement_terms
from liqosec.firewall.addresses import AddressSet

PRODUCT = "x"  # a product chain's kind (its object's and table's suffix) starts with it

# What a chain's ctstate accept costs (ct, bitwise, cmp, counter, verdict): kept free in every product
# chain (the caller adds what its cost model charges a rule, `compile.UNSPLIT_RULE_WEIGHT`).
_HEAD = 5


@dataclass(frozen=True)
class Block:
    """Part of one side of a product: the addresses whose intervals start in the CIDR `label` names.

    Costed by counts only: its terms are spelled when a chain holding it is written (`terms`), so a
    product costed and not chosen (the common case) leaves no matches behind in the caches.
    """

    label: str  # "<prefix as 8 hex digits><prefix length, 2 digits>", e.g. "0a01800011" for 10.1.128.0/17
    intervals: tuple[tuple[int, int], ...]  # the block's addresses
    position: str  # "src" | "dst"
    count: int  # accept terms whose union is the complement of the block
    matches: int  # over those terms
    expressions: int

    @property
    def terms(self) -> tuple[Term, ...]:
        """The accept terms whose union is the complement of the block."""
        return tuple(complement_terms(AddressSet(self.intervals), self.position))


@dataclass(frozen=True)
class ProductPlan:
    """The chains dropping `src` x `dst`: one per pair of blocks, each `(kind, accept terms)`."""

    label: str
    pairs: tuple[tuple[Block, Block], ...]
    rules: int
    matches: int

    @property
    def chains(self) -> tuple[tuple[str, tuple[Term, ...]], ...]:
        """Each pair of blocks' chain, `(kind, accept terms)`: spelled now, for writing."""
        return tuple((f"{PRODUCT}{self.label}-{s.label}-{d.label}", s.terms + d.terms) for s, d in self.pairs)


_SPELLED: dict[tuple[tuple[tuple[int, int], ...], str], tuple[int, int, int]] = {}
_SPELLED_LIMIT = 50_000


def _block(intervals: tuple[tuple[int, int], ...], position: str, label: str, cost: Callable[[Shape], int]) -> Block:
    key = (intervals, position)
    known = _SPELLED.get(key)
    if known is None:
        shapes = complement_shapes(AddressSet(intervals))
        known = (len(shapes), sum(len(t) for t in shapes), sum(cost(t) for t in shapes))
        if len(_SPELLED) >= _SPELLED_LIMIT:
            _SPELLED.clear()
        _SPELLED[key] = known
    return Block(label, intervals, position, *known)


def blocks(addresses: AddressSet, position: str, budget: int, cost: Callable[[Shape], int]) -> list[Block]:
    """`addresses` cut by CIDR (split in two while a block's complement costs over `budget`), in address order.

    A block's complement spells at least one match of at least two expressions per interval but
    one, so a block plainly too large is split without spelling it.
    """
    out: list[Block] = []
    pending: list[tuple[int, int, tuple[tuple[int, int], ...]]] = [(0, 0, addresses.intervals)]
    while pending:
        prefix, depth, ivs = pending.pop()
        label = f"{prefix:08x}{depth:02d}"
        if len(ivs) == 1 or depth == 32 or 2 * (len(ivs) - 1) <= budget:
            block = _block(ivs, position, label, cost)
            if block.expressions <= budget or len(ivs) == 1 or depth == 32:
                out.append(block)
                continue
        half = 1 << (31 - depth)
        for bit in (half, 0):
            part = tuple(iv for iv in ivs if (iv[0] & half) == bit)
            if part:
                pending.append((prefix | bit, depth + 1, part))
    return out


def _quantized(cost: int, step: int) -> int:
    return -(-cost // step) * step


def product_plan(
    label: str, src: AddressSet, dst: AddressSet, budget: int, cost: Callable[[Shape], int], head: int = _HEAD
) -> ProductPlan:
    """The product chains of `src` x `dst`, each costing at most `budget` (`cost` a rule, `head` kept free).

    The caller's budget is an unsplittable chain's (`compile.UNSPLIT_BUDGET`: kernel expressions plus
    a weight a rule), not a drop-rules shard's: a policy-drop chain cannot be cut.

    Both sides share a chain's budget: when one side's whole complement takes at most a quarter
    of it, that side is one block and the other gets the rest (rounded to quarters, so a pod
    change on the small side does not move the other side's blocks); otherwise each gets half.
    """
    room = budget - head
    whole_src, whole_dst = (
        _block(src.intervals, "src", "0000000000", cost),
        _block(dst.intervals, "dst", "0000000000", cost),
    )
    if whole_src.expressions + whole_dst.expressions <= room:
        src_blocks, dst_blocks = [whole_src], [whole_dst]
    elif whole_dst.expressions <= budget // 4:
        src_blocks = blocks(src, "src", room - _quantized(whole_dst.expressions, budget // 4), cost)
        dst_blocks = [whole_dst]
    elif whole_src.expressions <= budget // 4:
        src_blocks = [whole_src]
        dst_blocks = blocks(dst, "dst", room - _quantized(whole_src.expressions, budget // 4), cost)
    else:
        src_blocks, dst_blocks = blocks(src, "src", room // 2, cost), blocks(dst, "dst", room // 2, cost)
    pairs = tuple((s, d) for s in src_blocks for d in dst_blocks)
    rules = len(dst_blocks) * sum(s.count for s in src_blocks) + len(src_blocks) * sum(d.count for d in dst_blocks)
    matches = len(dst_blocks) * sum(s.matches for s in src_blocks) + len(src_blocks) * sum(
        d.matches for d in dst_blocks
    )
    return ProductPlan(label, pairs, rules, matches)


def rectangle_label(terms: Sequence[str], key: object) -> str:
    """A short, stable name for a rectangle of atoms: pods coming and going do not change it."""
    return hashlib.sha256(repr((tuple(terms), key)).encode()).hexdigest()[:6]
