"""Split the address space into atoms: maximal sets of addresses no term tells apart.

Every clause of a policy matches whole atoms, so the verdict of a packet
depends only on the atoms of its source and destination; the compiler decides
once per pair of atoms instead of once per address. An atom is named by its
signature, the bit mask of the terms that contain it (bit i is `terms[i]`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from liqosec.firewall.addresses import MAX_IP, AddressSet


@dataclass(frozen=True)
class Partition:
    terms: tuple[str, ...]
    atoms: dict[int, AddressSet]
    # Candidate plans ask for the same unions again and again.
    _unions: dict[tuple[int, ...], AddressSet] = field(default_factory=dict, compare=False, repr=False)
    _sorted: list[tuple[int, int, int]] = field(default_factory=list, compare=False, repr=False)

    def bit(self, term: str) -> int:
        return 1 << self.terms.index(term)

    def sorted_intervals(self) -> list[tuple[int, int, int]]:
        """Every atom's intervals in address order, with the atom's signature."""
        if not self._sorted:
            self._sorted.extend(sorted((lo, hi, sig) for sig, s in self.atoms.items() for lo, hi in s.intervals))
        return self._sorted

    def union(self, signatures: Sequence[int]) -> AddressSet:
        key = tuple(signatures)
        out = self._unions.get(key)
        if out is None:
            if len(key) == 1:
                out = self.atoms[key[0]]
            else:
                out = AddressSet.from_intervals(iv for sig in key for iv in self.atoms[sig].intervals)
            self._unions[key] = out
        return out


def partition(terms: Sequence[str], sets: Sequence[AddressSet]) -> Partition:
    """Atoms of the space by membership in `sets` (aligned with `terms`).

    A sweep over interval ends: each set toggles its bit where one of its
    intervals starts and just past where it ends. Merged, non-adjacent
    intervals never toggle the same bit twice at one point, so XOR is exact.
    """
    if len(terms) != len(sets):
        raise ValueError("terms and sets must align")
    toggles: dict[int, int] = defaultdict(int)
    for i, s in enumerate(sets):
        for start, end in s.intervals:
            toggles[start] ^= 1 << i
            toggles[end + 1] ^= 1 << i
    pieces: dict[int, list[tuple[int, int]]] = defaultdict(list)
    signature, cursor = 0, 0
    for point in sorted(toggles):
        if point > cursor:
            pieces[signature].append((cursor, point - 1))
        signature ^= toggles[point]
        cursor = point
    if cursor <= MAX_IP:
        pieces[signature].append((cursor, MAX_IP))
    return Partition(tuple(terms), {sig: AddressSet(tuple(ivs)) for sig, ivs in pieces.items()})
