"""`liqosec render`: the FirewallConfigurations a set of cluster objects compiles to.

The objects come from `liqosec.inputs.load`, their outcomes from the offline
pipeline (`liqosec.offline.outcomes`); this module only renders those outcomes
as the FirewallConfigurations the controller would write: none for a DryRun
policy, unless asked (`include_dry_run`), and then under names and tables of
their own (`dry_run_firewall`), so that piping the output to `kubectl apply`
never replaces an enforced firewall. All or nothing: if any
PeeringConnectivity is invalid, `RenderError` lists every problem with its
field path and no firewall is returned.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from liqosec.api.peeringconnectivity import Enforcement
from liqosec.compiler.firewallconfiguration import ALL_NODES, CompiledPeering, dry_run_firewall
from liqosec.firewall.capabilities import Capabilities
from liqosec.offline import Waiting, outcomes


def is_dry_run(outcome: CompiledPeering) -> bool:
    return outcome.peering.spec.enforcement is Enforcement.DRY_RUN


def firewalls_of(outcome: CompiledPeering) -> list[dict[str, Any]]:
    """The outcome's firewalls as printed: a DryRun policy's under its `dryrun-` names."""
    if not is_dry_run(outcome):
        return list(outcome.firewalls)
    return [dry_run_firewall(fc, outcome.peering.name, outcome.peer) for fc in outcome.firewalls]


def render(
    objects: Sequence[Mapping[str, Any]],
    *,
    capabilities: Capabilities | None = None,
    scope: str = ALL_NODES,
    report: Callable[[Sequence[CompiledPeering]], None] | None = None,
    waiting: Waiting | None = None,
    include_dry_run: bool = False,
) -> list[dict[str, Any]]:
    """The FirewallConfigurations; `report` sees the outcomes first (the CLI's IPv6 and DryRun notes)."""
    results = outcomes(objects, capabilities=capabilities, scope=scope, waiting=waiting)
    if report is not None:
        report(results)
    return [fw for o in results if include_dry_run or not is_dry_run(o) for fw in firewalls_of(o)]
