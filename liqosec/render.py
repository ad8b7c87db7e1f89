"""`liqosec render`: the FirewallConfigurations a set of cluster objects compiles to.

The objects come from `liqosec.inputs.load`, their outcomes from the offline
pipeline (`liqosec.offline.outcomes`); this module only renders those outcomes
as the FirewallConfigurations the controller would write. All or nothing: if
any PeeringConnectivity is invalid, `RenderError` lists every problem with its
field path and no firewall is returned.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from liqosec.compiler.firewallconfiguration import ALL_NODES, CompiledPeering
from liqosec.firewall.capabilities import Capabilities
from liqosec.offline import Waiting, outcomes


def render(
    objects: Sequence[Mapping[str, Any]],
    *,
    capabilities: Capabilities | None = None,
    scope: str = ALL_NODES,
    report: Callable[[Sequence[CompiledPeering]], None] | None = None,
    waiting: Waiting | None = None,
) -> list[dict[str, Any]]:
    """The FirewallConfigurations; `report` sees the outcomes first (the CLI's IPv6 warnings)."""
    results = outcomes(objects, capabilities=capabilities, scope=scope, waiting=waiting)
    if report is not None:
        report(results)
    return [fw for o in results for fw in o.firewalls]
