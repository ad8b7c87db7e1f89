"""Which PeeringConnectivity governs a peering: the one rule, and the one message when it is broken.

A peering has one firewall, so at most one of its policies is enforced: the
oldest enforced PeeringConnectivity of its tenant namespace, then by name. A
second enforced policy is reported as conflicting instead of fighting over the
table. DryRun policies write no firewall and govern nothing: any number may sit
beside the enforced one (a staged policy, as Calico calls it).

The offline pipeline (`liqosec.offline`), the reconciler and the admission
webhook all ask `conflict`, so the three refuse the same policies with the same
words.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from liqosec.api.peeringconnectivity import Enforcement
from liqosec.groups.view import meta


def is_dry_run(obj: Mapping[str, Any]) -> bool:
    """A DryRun policy, by its spec as written: it enforces nothing, so it governs nothing.

    Any other value counts as Enforce (omitted is Enforce; a typo is invalid and keeps the
    last good firewall, so it must keep its place too).
    """
    spec = obj.get("spec")
    return isinstance(spec, Mapping) and spec.get("enforcement") == Enforcement.DRY_RUN.value


def governors(peerings: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """The enforced PeeringConnectivity that governs each tenant namespace: the oldest, then by name.

    DryRun policies are left out. A caller deciding on a newcomer (a create, or a DryRun policy
    promoted to Enforce) leaves the newcomer out too: it comes after the enforced one, however old.
    """
    winners: dict[str, tuple[str, str]] = {}
    for obj in peerings:
        if is_dry_run(obj):
            continue
        m = meta(obj)
        ns, name = str(m.get("namespace") or ""), str(m.get("name") or "")
        rank = (str(m.get("creationTimestamp") or ""), name)
        if ns not in winners or rank < winners[ns]:
            winners[ns] = rank
    return {ns: rank[1] for ns, rank in winners.items()}


def conflict(obj: Mapping[str, Any], governing: Mapping[str, str]) -> str | None:
    """Why `obj` may not be enforced, given its namespace's governor (`governors`), or None when it may.

    The message completes `metadata.name: ...`: it names the governing policy and how to stage
    this one beside it instead.
    """
    if is_dry_run(obj):
        return None
    m = meta(obj)
    namespace, name = str(m.get("namespace") or ""), str(m.get("name") or "")
    winner = governing.get(namespace)
    if winner is None or winner == name:
        return None
    return (
        f"the peering of {namespace!r} is already governed by {winner!r}: at most one policy "
        "per peering has spec.enforcement Enforce; set spec.enforcement: DryRun to stage this one beside it"
    )
