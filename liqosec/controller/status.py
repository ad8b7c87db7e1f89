"""The status a PeeringConnectivity should carry, and whether it differs from what it has.

Pure. Conditions follow metav1.Condition: `lastTransitionTime` moves only
when a condition's status flips, so recomputing an unchanged status gives an
equal object and the reconcile writes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from liqosec.compiler import ipv6
from liqosec.compiler.compile import CompiledChain
from liqosec.compiler.dryrun import CONDITION as DRY_RUN
from liqosec.compiler.dryrun import NO_FIREWALL, DryRunReport
from liqosec.compiler.firewallconfiguration import MAX_OBJECT_BYTES, NODE_SCOPE_LABEL, CompiledPeering
from liqosec.compiler.ports import EPHEMERAL_RANGE, describe_spans

VALID, READY, STATELESS, LARGE = "Valid", "Ready", "StatelessFiltering", "LargeFirewall"
# Physical nodes where no Liqo fabric pod runs: no agent applies any firewall there.
NODES_UNFILTERED, NODES_WITHOUT_FABRIC = "NodesUnfiltered", "NodesWithoutFabric"
# Names listed in a message; the rest are counted.
MAX_NAMED = 5
# Warn well before the bound, while there is room to act.
LARGE_FRACTION = 0.75
# The per-host condition Liqo's agent writes on a FirewallConfiguration.
AGENT_APPLIED = "Applied"
# One-way allows named in StatelessFiltering's message; the rest are counted.
MAX_HOLES_NAMED = 8


@dataclass(frozen=True)
class Rollout:
    """How far Liqo's agents have got with a peering's FirewallConfigurations.

    Liqo's agent writes one condition per host (its pod) and only when it flips:
    it says whether the agent's last pass succeeded, not which generation it
    applied. Its very first pass leaves a condition with no type, which counts
    as nothing yet (docs/semantics.md, "Liqo's agent").
    """

    nodes: int  # hosts expected to run the agent (fabric pods, else physical nodes; 0: unknown)
    applied: int  # expected hosts reporting Applied=True on every firewall meant for them
    failed: tuple[str, ...] = ()  # hosts reporting Applied=False on some shard
    pending: tuple[str, ...] = ()  # shards whose live spec is not the compiled one yet
    uncovered: tuple[str, ...] = ()  # physical nodes running no fabric pod: nothing enforced there

    @property
    def summary(self) -> str:
        return f"{min(self.applied, self.nodes)}/{self.nodes}" if self.nodes else f"{self.applied}/?"


def rollout(
    desired: Sequence[Mapping[str, Any]],
    live: Mapping[str, Mapping[str, Any] | None],
    nodes: int | Sequence[str] | Mapping[str, str],
    uncovered: Sequence[str] = (),
) -> Rollout:
    """Read the agents' conditions off the live firewalls (by name).

    `nodes`: a count; or node names, the hosts then being named after them (agents
    reporting under their node's name); or the hosts themselves, each with its node
    (Liqo's fabric pods: `liqosec.controller.fabric`), when only they count and a
    firewall for one node (per-node scope) is meant for the hosts on that node.
    A host counts as applied when it reports Applied=True on every firewall meant for it:
    all of them in the all-nodes scope; those of all nodes plus its node's own in the per-node one.
    """
    strict = isinstance(nodes, Mapping)
    hosts: dict[str, str] | None
    if isinstance(nodes, Mapping):
        hosts = {str(h): str(n) for h, n in nodes.items()}
    elif isinstance(nodes, int):
        hosts = None
    else:
        hosts = {n: n for n in nodes}
    pending, failed = [], set()
    reports: list[tuple[str | None, set[str]]] = []  # (the one node it is for, or None: all), hosts applied
    for fc in desired:
        name = fc["metadata"]["name"]
        got = live.get(name)
        if got is None or got.get("spec") != fc.get("spec"):
            pending.append(name)
            continue
        conds = [c for c in (got.get("status") or {}).get("conditions") or () if c.get("type") == AGENT_APPLIED]
        failed |= {str(c.get("host")) for c in conds if c.get("status") == "False"}
        for_node = (fc["metadata"].get("labels") or {}).get(NODE_SCOPE_LABEL)
        reports.append((for_node, {str(c.get("host")) for c in conds if c.get("status") == "True"}))
    if strict:
        # Only the fabric pods running now count: the conditions of a replaced pod stay on
        # the object (no agent removes another host's), and must neither count nor fail it.
        assert hosts is not None
        failed &= set(hosts)
        applied = (
            sum(1 for h, n in hosts.items() if all(h in ok for node, ok in reports if node in (None, n)))
            if reports
            else 0
        )
    elif hosts is not None and any(node is not None for node, _ in reports):
        applied = sum(1 for h, n in hosts.items() if all(h in ok for node, ok in reports if node in (None, n)))
    else:
        found: set[str] | None = None
        for _, ok in reports:
            found = set(ok) if found is None else found & ok
        applied = len(found or ())
    count = nodes if isinstance(nodes, int) else len(nodes)
    return Rollout(
        nodes=count, applied=applied, failed=tuple(sorted(failed)), pending=tuple(pending), uncovered=tuple(uncovered)
    )


def ready_condition(outcome: CompiledPeering, progress: Rollout | None) -> Condition:
    names = [fw["metadata"]["name"] for fw in outcome.firewalls]
    what = f"FirewallConfiguration {names[0]}" + (f" (+{len(names) - 1} shards)" if len(names) > 1 else "")
    if progress is None:
        return Condition(READY, True, "Applied", f"{what} matches the spec")
    if progress.pending:
        return Condition(READY, False, "Writing", f"{what}: {', '.join(progress.pending)} not written yet")
    if progress.failed:
        return Condition(
            READY,
            False,
            "ApplyFailed",
            f"{what}: Liqo's agent reports Applied=False on "
            f"{', '.join(progress.failed)}; see that agent's log and the FirewallConfiguration's events",
        )
    if not progress.nodes:
        return Condition(READY, True, "Applied", f"{what} matches the spec; no node to wait for")
    if progress.applied < progress.nodes:
        return Condition(READY, False, "Applying", f"{what} applied on {progress.summary} nodes")
    return Condition(READY, True, "Applied", f"{what} applied on {progress.summary} nodes")


@dataclass(frozen=True)
class Condition:
    type: str
    status: bool
    reason: str
    message: str


def valid_conditions(outcome: CompiledPeering, *, stateful: bool, progress: Rollout | None = None) -> list[Condition]:
    chain = outcome.chain
    conds = [Condition(VALID, True, "Valid", "the spec compiles"), ready_condition(outcome, progress)]
    if stateful:
        conds.append(
            Condition(STATELESS, False, "ConntrackAvailable", "established and related packets are accepted first")
        )
    else:
        conds.append(
            Condition(
                STATELESS,
                True,
                "NoConntrackMatch",
                "the installed FirewallConfiguration API has no ctstate match, so filtering is stateless; "
                + _one_way_message(chain),
            )
        )
    if outcome.size_bytes > LARGE_FRACTION * MAX_OBJECT_BYTES:
        conds.append(
            Condition(LARGE, True, "NearSizeBound", f"{outcome.size_bytes} bytes of {MAX_OBJECT_BYTES} allowed")
        )
    unfiltered = ipv6.unfiltered(outcome)
    if unfiltered:  # absent otherwise, as LargeFirewall: policies without IPv6 pods read as before
        conds.append(Condition(ipv6.CONDITION, True, ipv6.REASON, ipv6.describe(unfiltered)))
    if progress is not None and progress.uncovered:
        conds.append(Condition(NODES_UNFILTERED, True, NODES_WITHOUT_FABRIC, without_fabric(progress.uncovered)))
    return conds


def named(items: Sequence[str], limit: int = MAX_NAMED) -> str:
    """`a, b, c and 4 more`: the first `limit` items, the rest counted."""
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def without_fabric(nodes: Sequence[str]) -> str:
    """NodesUnfiltered's message: the nodes Liqo's fabric DaemonSet does not run on."""
    count = f"{len(nodes)} node{'s' if len(nodes) != 1 else ''}"
    verb = "runs" if len(nodes) == 1 else "run"
    return (
        f"{count} {verb} no Liqo fabric pod, so no agent applies this policy's FirewallConfigurations there and "
        f"packets crossing only {'that node' if len(nodes) == 1 else 'those nodes'} pass unfiltered (the fabric "
        f"DaemonSet's nodeSelector, affinity or tolerations keep it off): {named(nodes)}"
    )


def _term(term: str | None) -> str:
    return "any" if term is None else term


def _one_way_message(chain: CompiledChain) -> str:
    """Which allows are one way, and the rule each needs for its replies (docs/semantics.md, "Status")."""
    if not chain.one_way:
        return "every allowed flow is also allowed back, so connections open"
    holes = []
    for c in chain.one_way_clauses[:MAX_HOLES_NAMED]:
        if c.origin == "defaultAction":
            holes.append("defaultAction allows flows whose replies a deny drops")
            continue
        src, dst = _term(c.src), _term(c.dst)
        if c.ports:  # replies go to the client's ephemeral port, not to the ports the rule names
            holes.append(
                f"{c.origin} ({src} -> {dst} {describe_spans(c.ports)}) needs an allow of {dst} -> {src} "
                f"(with no ports, or ports {EPHEMERAL_RANGE[0]}-{EPHEMERAL_RANGE[1]}) for its replies"
            )
            continue
        holes.append(f"{c.origin} ({src} -> {dst}) needs an allow of {dst} -> {src} for its replies")
    more = len(chain.one_way_clauses) - MAX_HOLES_NAMED
    if more > 0:
        holes.append(f"and {more} more")
    return (
        "this policy allows some flows one way only, and their replies are judged as new packets and dropped: "
        "such connections do not open unless a rule evaluated before any deny of them allows the replies; "
        + "; ".join(holes)
    )


def dry_run_conditions(outcome: CompiledPeering, report: DryRunReport, *, stateful: bool) -> list[Condition]:
    """A valid policy in DryRun: not Ready (nothing is written, by request), and what enforcing would change."""
    promote = (
        "set it to Enforce to write it"
        if report.compared_with == NO_FIREWALL
        else "to enforce it, delete or stage the enforced policy first, then set it to Enforce"
    )
    ready = Condition(
        READY, False, "DryRun", f"spec.enforcement is DryRun: no FirewallConfiguration is written; {promote}"
    )
    conds = [ready if c.type == READY else c for c in valid_conditions(outcome, stateful=stateful)]
    conds.insert(2, Condition(DRY_RUN, True, "WouldChange" if report.changes else "NoChange", report.message()))
    return conds


def invalid_conditions(
    message: str, reason: str, *, firewall_kept: bool, cause: str = "spec not applied"
) -> list[Condition]:
    """`Valid` and `Ready` False for `reason`; `cause` says what was not done (the spec, or the cluster's state)."""
    kept = "the last good FirewallConfiguration is kept" if firewall_kept else "no FirewallConfiguration is written"
    return [
        Condition(VALID, False, reason, message),
        Condition(READY, False, reason, f"{cause}; {kept}"),
    ]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def render_conditions(
    conds: Sequence[Condition], existing: Sequence[Mapping[str, Any]], generation: int, now: str | None = None
) -> list[dict[str, Any]]:
    previous = {c.get("type"): c for c in existing}
    out = []
    for c in conds:
        status = "True" if c.status else "False"
        old = previous.get(c.type)
        when = old.get("lastTransitionTime") if old and old.get("status") == status else None
        out.append(
            {
                "type": c.type,
                "status": status,
                "reason": c.reason,
                "message": c.message,
                "observedGeneration": generation,
                "lastTransitionTime": when or now or _now(),
            }
        )
    return out


def desired_status(
    current: Mapping[str, Any],
    conds: Sequence[Condition],
    generation: int,
    outcome: CompiledPeering | None,
    progress: Rollout | None = None,
    dry_run: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The whole status; compiler figures stay from the last good outcome when the spec is invalid.

    `dry_run` is the DryRun report (`status.dryRun`): with a compiled outcome and no report,
    the policy is enforced and the block goes; with a report, no firewall is applied anywhere.
    """
    status: dict[str, Any] = {k: v for k, v in current.items() if k not in ("conditions", "observedGeneration")}
    if outcome is not None:
        status.update(
            peer=outcome.peer,
            firewallConfiguration=outcome.firewall["metadata"]["name"],
            firewallShards=len(outcome.firewalls),
            compiledRules=outcome.chain.rule_count,
            objectBytes=outcome.size_bytes,
            addresses=outcome.groups.counts(),
            ipv6Skipped=outcome.groups.ipv6_skipped,
        )
    if outcome is not None and dry_run is None:
        status.pop("dryRun", None)
    elif dry_run is not None:
        status["dryRun"] = dict(dry_run)
        status.pop("appliedNodes", None)
    if progress is not None:
        status["appliedNodes"] = progress.summary
    status["observedGeneration"] = generation
    status["conditions"] = render_conditions(conds, current.get("conditions") or (), generation)
    return status


# Status figures that follow every pod change. Written with any other change at once; on their own
# at most once per FIGURES_REFRESH_SECONDS per peering, so a pod change costs the firewall write
# and not a status write too, and the figures are never older than that.
FIGURES = ("firewallShards", "compiledRules", "objectBytes", "addresses", "ipv6Skipped")
FIGURES_REFRESH_SECONDS = 10.0


def only_figures_differ(current: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    """The two statuses differ in `FIGURES` alone."""
    keys = (set(current) | set(desired)) - set(FIGURES)
    return current != desired and all(current.get(k) == desired.get(k) for k in keys)


def condition(status: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    for c in status.get("conditions") or ():
        if c.get("type") == type_:
            return dict(c)
    return None
