"""From a PeeringConnectivity and a view of the cluster to the FirewallConfiguration to write.

`build` is the whole pure pipeline for one peering: find the peer, resolve its
groups, compile the chain, shape the objects Liqo's CRD accepts, and check their
size. It raises `ValidationError` (with the field path) when the spec cannot
be honoured; callers then keep the last good firewall in place.

Liqo's agent applies one FirewallConfiguration in one netlink batch and reads
back an echo of every rule it added. Past about 4,000 kernel expressions the
echoes overflow the socket's default receive buffer (212,992 bytes): the batch
fails with ENOBUFS and the node keeps nothing of it (measured with Liqo v1.2.0;
docs/semantics.md, "Liqo's agent"). So a peering whose chain is larger is
written as several FirewallConfigurations ("shards"), each a table of its own
with part of the rules. Only a drop-rules chain splits this way (a packet
passes when no table drops it); the compiler keeps an accept-rules chain within
the budget of one unsplittable chain (`compile.UNSPLIT_BUDGET`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from liqosec.api.liqo import REMOTE_CLUSTER_ID
from liqosec.api.peeringconnectivity import API_VERSION, KIND, PeeringConnectivity
from liqosec.api.validation import FieldError, ValidationError
from liqosec.compiler.compile import (
    CHAIN_PRIORITY,
    DROP,
    UNSPLIT_BUDGET,
    ChainTooLarge,
    CompiledChain,
    FilterRule,
    compact_json_size,
    compile_chain,
)
from liqosec.compiler.nodechains import compile_node_chains
from liqosec.compiler.policy import Clause, clauses_of, namespaces_of, selections_of
from liqosec.compiler.products import PRODUCT
from liqosec.firewall.addresses import AddressSet, int_to_ip
from liqosec.firewall.capabilities import Capabilities
from liqosec.groups.resolve import (
    ResolvedGroups,
    hosted_addresses,
    peer_of_namespace,
    resolve_groups,
    tenant_namespace_problem,
)
from liqosec.groups.view import ClusterView

FC_API_VERSION = "networking.liqo.io/v1beta1"
FC_KIND = "FirewallConfiguration"
CATEGORY_LABEL = "networking.liqo.io/firewall-category"
SUBCATEGORY_LABEL = "networking.liqo.io/firewall-subcategory"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "liqosec"
OWNER_LABEL = "security.liqo.io/peering-connectivity"
PEER_LABEL = REMOTE_CLUSTER_ID

# etcd refuses values over 1.5 MiB (1,572,864 bytes). Keep ~270 kB of it for
# metadata, managedFields and status (filterRules is an atomic list, so
# managedFields stays small). 10,000 pods scattered one by one across a /16,
# the worst case without nft sets, compile to about 1.23 MB.
MAX_OBJECT_BYTES = 1_300_000
# Kernel expressions one FirewallConfiguration may hold: Liqo v1.2.0's agent failed
# from about 4,000 (see above); a quarter of margin.
MAX_EXPRESSIONS_PER_FIREWALL = 1500
MAX_SHARDS = 1024
# FirewallConfigurations one peering may have (shards, its ports and holes tables, product chains):
# past it the policy is refused as too large, with the numbers, rather than written in part.
MAX_FIREWALLS = 1024


class ShardError(ValueError):
    """A chain's drop rules cannot be cut into shards within the budget."""


@dataclass(frozen=True)
class CompiledPeering:
    peering: PeeringConnectivity
    peer: str
    groups: ResolvedGroups
    chain: CompiledChain
    firewalls: tuple[dict[str, Any], ...]  # shard 0 first
    size_bytes: int  # the largest shard's

    @property
    def firewall(self) -> dict[str, Any]:
        """The first shard: the one every peering has, named after it."""
        return self.firewalls[0]


NODE_SCOPE_LABEL = "networking.liqo.io/firewall-unique"  # Liqo's: the node a single-node firewall is for
ALL_NODES, PER_NODE = "all-nodes", "per-node"  # --firewall-scope
MAX_NAME = 253


def _bounded_name(name: str) -> str:
    """Object names are at most 253 characters: a long one keeps its start and gains a hash."""
    if len(name) <= MAX_NAME:
        return name
    return f"{name[: MAX_NAME - 9]}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def firewall_name(peering_name: str, shard: str | int = "", node: str | None = None) -> str:
    base = f"liqosec-{peering_name}" + (f"-node-{node}" if node is not None else "")
    return _bounded_name(base if shard in ("", 0) else f"{base}-{shard}")


def table_name(peer: str, shard: str | int = "", node: str | None = None) -> str:
    """One nft table per peering and shard on every node: the peer id makes it unique.

    `_` cannot occur in a cluster id (a DNS label), so shard names never collide with
    another peer's table. A node's own firewall (per-node scope) is the only one of the
    peering that node applies with that table, so the node's name is not needed in it.
    """
    base = f"liqosec-{peer}" + ("_node" if node is not None else "")
    return base if shard in ("", 0) else f"{base}_{shard}"


# A DryRun policy's would-be firewall, printed by `liqosec render --include-dry-run` only (the controller writes
# none): every name and table the controller writes starts with `liqosec-`, so these start with `dryrun-` and can
# name no enforced policy's object or table, whatever the policy or peer is called. Its labels leave out
# `managed-by: liqosec` and the owner label: the controller lists only what carries both (`FIREWALL_CONFIGURATIONS`'
# selector), so one applied by hand is neither compared, rewritten nor retired by it; nor does it carry the
# policy's owner reference (the garbage collector would delete it with rules still in it, see `retire`).
# Liqo's labels stay, so Liqo's agents apply it as they would the enforced one.
DRY_RUN_PREFIX = "dryrun-"
DRY_RUN_LABEL = "security.liqo.io/dry-run-of"


def dry_run_firewall(fc: Mapping[str, Any], policy: str, peer: str) -> dict[str, Any]:
    """`fc`, compiled for DryRun policy `policy` of `peer`, under a name and a table of its own.

    The table also names the policy (`dryrun-liqosec-<peer>_<policy>[_<shard>]`): any number of
    DryRun policies may sit beside the enforced one, and a node holds one table of a name. `_`
    occurs in neither a peer id nor a policy name, so no two policies' tables meet.
    """
    meta = fc["metadata"]
    enforced_table = fc["spec"]["table"]["name"]
    own = table_name(peer)
    if not enforced_table.startswith(own):
        raise ValueError(f"table {enforced_table!r} is not one of peer {peer!r}")
    labels = {k: v for k, v in meta["labels"].items() if k not in (MANAGED_BY_LABEL, OWNER_LABEL)}
    metadata = {
        "name": _bounded_name(DRY_RUN_PREFIX + meta["name"]),
        "namespace": meta["namespace"],
        "labels": {**labels, DRY_RUN_LABEL: policy},
    }
    table = {**fc["spec"]["table"], "name": f"{DRY_RUN_PREFIX}{own}_{policy}{enforced_table[len(own) :]}"}
    return {**fc, "metadata": metadata, "spec": {**fc["spec"], "table": table}}


@dataclass(frozen=True)
class Shard:
    """Part of a chain written as one FirewallConfiguration.

    `label` is "" for the first shard (the one every peering has); any other shard holds
    the rules whose addresses start in one CIDR, which names it ("10-1-128-0-17").
    """

    label: str
    rules: tuple[FilterRule, ...]


def _cidr_label(prefix: int, depth: int) -> str:
    return f"{int_to_ip(prefix).replace('.', '-')}-{depth}"


def shards(chain: CompiledChain, max_expressions: int = MAX_EXPRESSIONS_PER_FIREWALL) -> list[Shard]:
    """The chain's rules cut into shards of at most `max_expressions` each.

    Rules are placed by address: a drop-rules chain spells a group chunk by chunk, and
    the chunks a pod falls in are neighbours, so they sit in one shard and a pod coming
    or going rewrites one FirewallConfiguration. A shard is a CIDR, split in two while
    it holds more than the budget; rules without an address span (complements, "any")
    go to the first shard. Rules that must come first (the conntrack accept) go into
    every shard. An accept-rules chain is never cut (the compiler keeps it in budget).
    """
    if chain.expressions <= max_expressions or chain.policy == DROP:
        return [Shard("", chain.rules)]
    head = tuple(r for r in chain.rules if r.ctstate)
    room = max_expressions - sum(r.expressions for r in head)
    first = [r for r in chain.rules if not r.ctstate and r.locality is None]
    keyed = [(k, r) for r in chain.rules if not r.ctstate and (k := r.locality) is not None]
    if sum(r.expressions for r in first) > room:
        raise ShardError(
            f"{len(first)} rules without an address span take {sum(r.expressions for r in first)} kernel "
            f"expressions, over the {max_expressions} one FirewallConfiguration may hold"
        )
    out = [Shard("", head + tuple(first))]
    pending: list[tuple[int, int, list[tuple[int, FilterRule]]]] = [(0, 0, keyed)]
    while pending:
        prefix, depth, items = pending.pop()
        if sum(r.expressions for _, r in items) <= room:
            out.append(Shard(_cidr_label(prefix, depth), head + tuple(r for _, r in items)))
            continue
        if depth == 32 or len(out) + len(pending) >= MAX_SHARDS:
            raise ShardError(
                f"{len(keyed)} rules ({sum(r.expressions for _, r in keyed)} kernel expressions) cannot be cut "
                f"into at most {MAX_SHARDS} FirewallConfigurations of {max_expressions} expressions each"
            )
        half = 1 << (31 - depth)
        for bit in (half, 0):
            part = [(k, r) for k, r in items if (k & half) == bit]
            if part:
                pending.append((prefix | bit, depth + 1, part))
    return [out[0], *sorted(out[1:], key=lambda s: s.label)]


def shard(chain: CompiledChain, max_expressions: int = MAX_EXPRESSIONS_PER_FIREWALL) -> list[tuple[FilterRule, ...]]:
    """The rules of each shard, first shard first (see `shards`)."""
    return [s.rules for s in shards(chain, max_expressions)]


def extra_shard(kind: str, label: str) -> str:
    """The index of an extra chain's firewall: `liqosec-<name>-ports` (table `liqosec-<peer>_ports`),
    `liqosec-<name>-holes`; a shard of one adds its CIDR label."""
    return kind if not label else f"{kind}-{label}"


def firewall_labels(pc: PeeringConnectivity, peer: str, node: str | None = None) -> dict[str, str]:
    """Liqo's agent on a node applies the fabric firewalls labelled all-nodes, and the
    single-node ones whose firewall-unique label names that node."""
    labels = {
        CATEGORY_LABEL: "fabric",
        SUBCATEGORY_LABEL: "all-nodes" if node is None else "single-node",
        MANAGED_BY_LABEL: MANAGED_BY,
        OWNER_LABEL: pc.name,
        PEER_LABEL: peer,
    }
    if node is not None:
        labels[NODE_SCOPE_LABEL] = node
    return labels


def owner_reference(pc: PeeringConnectivity) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": pc.name,
        "uid": pc.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def firewall_object(
    pc: PeeringConnectivity,
    peer: str,
    chain: CompiledChain,
    rules: tuple[FilterRule, ...] | None = None,
    index: str | int = "",
    node: str | None = None,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": firewall_name(pc.name, index, node),
        "namespace": pc.namespace,
        "labels": firewall_labels(pc, peer, node),
    }
    if pc.uid:
        metadata["ownerReferences"] = [owner_reference(pc)]
    return {
        "apiVersion": FC_API_VERSION,
        "kind": FC_KIND,
        "metadata": metadata,
        "spec": {
            "table": {
                "name": table_name(peer, index, node),
                "family": "IPV4",
                "chains": [
                    {
                        "name": chain.name,
                        "type": "filter",
                        "hook": "forward",
                        "priority": CHAIN_PRIORITY,
                        "policy": chain.policy,
                        "rules": rules_set([r.to_api() for r in (chain.rules if rules is None else rules)]),
                    }
                ],
            }
        },
    }


def rules_set(filter_rules: list[dict[str, Any]]) -> dict[str, Any]:
    """A chain's `rules` as Liqo's API stores them: `filterRules` is `omitempty` in Liqo's RulesSet, and
    Liqo's mutating webhook re-encodes every object it admits, so an empty list is stored as `{}`.
    Written so, what we write is what we read back, and a rule-less chain compares equal."""
    return {"filterRules": filter_rules} if filter_rules else {}


def peer_of(view: ClusterView, pc: PeeringConnectivity) -> str:
    peer = peer_of_namespace(view, pc.namespace)
    if peer is None:
        problem = tenant_namespace_problem(view, pc.namespace) or f"{pc.namespace!r} is not a tenant namespace"
        raise ValidationError(
            [FieldError("metadata.namespace", problem, reason="NotTenantNamespace")],
            obj=f"{KIND} {pc.key}",
        )
    return peer


def _too_large(pc: PeeringConnectivity, size: int, rules: int) -> ValidationError:
    return ValidationError(
        [
            FieldError(
                "spec.rules",
                f"compiles to a FirewallConfiguration of {size} bytes ({rules} rules), over the "
                f"{MAX_OBJECT_BYTES}-byte bound; narrow the rules or the groups they name",
                reason="TooLarge",
            )
        ],
        obj=f"{KIND} {pc.key}",
    )


def _too_many(chain: CompiledChain, objects: int) -> str:
    products = sum(1 for kind, _ in chain.extra if kind.startswith(PRODUCT))
    why = (
        f", {products} of them product chains (source and destination both scattered sets: their count grows "
        "with the product of the two sets' sizes)"
        if products
        else ""
    )
    return (
        f"compiles to at least {objects} FirewallConfigurations ({chain.rule_count} rules){why}, over the "
        f"{MAX_FIREWALLS} one peering may have; narrow the rules or the groups they name"
    )


@dataclass(frozen=True)
class CompileInputs:
    """Everything a peering's firewalls are compiled from: equal inputs, equal firewalls."""

    peering: PeeringConnectivity
    peer: str
    clauses: tuple[Clause, ...]
    groups: ResolvedGroups
    hosted: Mapping[str, AddressSet] | None  # per node (per-node scope only)


def read_compile_inputs(
    view: ClusterView,
    pc: PeeringConnectivity,
    scope: str = ALL_NODES,
    hosted: Callable[[ClusterView], Mapping[str, AddressSet]] = hosted_addresses,
) -> CompileInputs:
    """Read the cluster for one peering: its peer, its groups' addresses and, per node, the node's
    (`hosted`: the same for every peering, so a caller may keep it between peerings)."""
    peer = peer_of(view, pc)
    clauses = tuple(clauses_of(pc.spec))
    groups = resolve_groups(
        view,
        peer,
        pc.namespace,
        namespaces=namespaces_of(clauses),
        selections=selections_of(pc.spec),
        named=[t for c in clauses for t in (c.src, c.dst)],
    )
    return CompileInputs(pc, peer, clauses, groups, hosted(view) if scope == PER_NODE else None)


def object_size(fc: Mapping[str, Any], rules: tuple[FilterRule, ...]) -> int:
    """len(json.dumps(fc, separators=(",", ":"))) of a one-chain object holding `rules`, without
    encoding the rules again (each keeps its own size)."""
    table = fc["spec"]["table"]
    hollow = {**fc, "spec": {"table": {**table, "chains": [{**table["chains"][0], "rules": rules_set([])}]}}}
    size = compact_json_size(hollow)
    if not rules:
        return size
    # `{"filterRules":[` + the rules, comma-separated, + `]`, where `{}` was.
    return size + len('"filterRules":[]') + sum(r.json_size for r in rules) + len(rules) - 1


def _refused(pc: PeeringConnectivity, message: str) -> ValidationError:
    return ValidationError([FieldError("spec.rules", message, reason="TooLarge")], obj=f"{KIND} {pc.key}")


def compile_inputs(inputs: CompileInputs, capabilities: Capabilities) -> CompiledPeering:
    """The peering's firewalls (`_compile_inputs`); a policy past Liqo's limits is refused as TooLarge."""
    try:
        return _compile_inputs(inputs, capabilities)
    except ShardError as err:
        raise _refused(
            inputs.peering,
            f"compiles to more than Liqo's agent can apply: {err}; narrow the rules or the groups they name",
        ) from err


def _compile_inputs(inputs: CompileInputs, capabilities: Capabilities) -> CompiledPeering:
    """The peering's firewalls: one chain for every node (sharded), or one per node (`hosted` given)."""
    pc, peer, clauses, groups = inputs.peering, inputs.peer, inputs.clauses, inputs.groups
    # Per-node chains hold drop rules by address only; a peering whose rules name ports is
    # compiled for all nodes instead (docs/semantics.md, "Per-node scope"), never wrongly.
    if inputs.hosted is not None and not any(c.ports for c in clauses):
        per_node = compile_node_chains(clauses, pc.spec.default_action, groups, capabilities, inputs.hosted)
        chain = per_node.summary
        built = [
            (firewall_object(pc, peer, node_chain, s.rules, s.label, node), s.rules)
            for node, node_chain in per_node.chains.items()
            if node_chain.rules
            for s in shards(node_chain)
        ]
        if not built:  # nothing to drop anywhere: the peering still has its (empty) firewall
            built = [(firewall_object(pc, peer, chain, ()), ())]
    else:
        try:
            chain = compile_chain(clauses, pc.spec.default_action, groups, capabilities, max_expressions=UNSPLIT_BUDGET)
        except ChainTooLarge as err:
            raise _refused(pc, str(err)) from err
        objects = 1 + len(chain.extra)
        if objects > MAX_FIREWALLS:  # before cutting shards: each extra chain is at least one object
            raise _refused(pc, _too_many(chain, objects))
        built = [(firewall_object(pc, peer, chain, s.rules, s.label), s.rules) for s in shards(chain)]
        for kind, extra in chain.extra:  # tables of their own: a packet must pass them all (`compile_ports`)
            built += [
                (firewall_object(pc, peer, extra, s.rules, extra_shard(kind, s.label)), s.rules) for s in shards(extra)
            ]
    if len(built) > MAX_FIREWALLS:
        raise _refused(pc, _too_many(chain, len(built)))
    objs = tuple(obj for obj, _ in built)
    size = max(object_size(obj, rules) for obj, rules in built)
    if size > MAX_OBJECT_BYTES:
        raise _too_large(pc, size, len(chain.rules))
    return CompiledPeering(peering=pc, peer=peer, groups=groups, chain=chain, firewalls=objs, size_bytes=size)


def build(
    view: ClusterView, pc: PeeringConnectivity, capabilities: Capabilities, scope: str = ALL_NODES
) -> CompiledPeering:
    """The whole pure pipeline for one peering (`read_compile_inputs`, then `compile_inputs`)."""
    return compile_inputs(read_compile_inputs(view, pc, scope), capabilities)
