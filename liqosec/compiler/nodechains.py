"""Per-node firewall scope: one chain per node, holding only the packets with an end on that node."""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from liqosec.api.peeringconnectivity import Action
from liqosec.compiler.compile import ACCEPT, DROP, CompiledChain, FilterRule, _chain, _decide, _one_way
from liqosec.compiler.cover import plan
from liqosec.compiler.partition import Partition
from liqosec.compiler.policy import Clause
from liqosec.firewall.addresses import AddressSet
from liqosec.firewall.capabilities import Capabilities
from liqosec.groups.resolve import ResolvedGroups


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
