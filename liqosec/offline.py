"""The offline pipeline: cluster objects in, each policy's outcome out.

The controller's pure pipeline (resolve, compile, build) run on objects read
from files (`liqosec.inputs.load`) rather than from a cluster: `render`,
`matrix` and `explain` all start here. All or nothing: if any
PeeringConnectivity is invalid, `RenderError` lists every problem with its
field path and no outcome is returned.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from liqosec.api.peeringconnectivity import KIND
from liqosec.api.validation import FieldError, ValidationError, parse_peering_connectivity
from liqosec.compiler.firewallconfiguration import ALL_NODES, CompiledPeering, build
from liqosec.compiler.governance import conflict, governors
from liqosec.firewall.capabilities import STATELESS, Capabilities, from_crd
from liqosec.groups.view import ClusterStateError, RemapPending, Snapshot, name_of, namespace_of
from liqosec.inputs import CRD_KIND, RenderError, check_firewall_crd, check_peering, is_read


def capabilities_of(objects: Iterable[Mapping[str, Any]]) -> Capabilities:
    """The FirewallConfiguration CRD in the input decides; Liqo's current one is stateless."""
    for obj in objects:
        if is_read(obj) and obj.get("kind") == CRD_KIND:
            check_firewall_crd(obj)
            return from_crd(obj)
    return STATELESS


# Hears why a peering waiting on Liqo has no outcome (one line naming it).
Waiting = Callable[[str], None]


def outcomes(
    objects: Sequence[Mapping[str, Any]],
    *,
    capabilities: Capabilities | None = None,
    scope: str = ALL_NODES,
    waiting: Waiting | None = None,
) -> list[CompiledPeering]:
    """Every policy's outcome. A peering waiting on Liqo (`RemapPending`) has none: `waiting` hears
    why, naming it, and the others go on; without `waiting` it is an error like any other."""
    try:
        return _outcomes(objects, capabilities, scope, waiting)
    except ClusterStateError as err:
        raise RenderError([str(err)], problems=[err]) from err


def _outcomes(
    objects: Sequence[Mapping[str, Any]], capabilities: Capabilities | None, scope: str, waiting: Waiting | None
) -> list[CompiledPeering]:
    caps = capabilities if capabilities is not None else capabilities_of(objects)
    view = Snapshot(objects)
    peerings = [o for o in objects if o.get("kind") == KIND]
    errors: list[str] = []
    problems: list[ClusterStateError] = []
    for obj in peerings:
        try:
            check_peering(obj)
        except ClusterStateError as err:
            errors.append(str(err))
            problems.append(err)
    if errors:
        raise RenderError(errors, problems=problems)
    governing = governors(peerings)
    results: list[CompiledPeering] = []
    for obj in peerings:
        ns, name = namespace_of(obj), name_of(obj)
        try:
            problem = conflict(obj, governing)
            if problem is not None:
                raise ValidationError(
                    [FieldError("metadata.name", problem, reason="Conflict")], obj=f"{KIND} {ns}/{name}"
                )
            pc = parse_peering_connectivity(obj)
            results.append(build(view, pc, caps, scope))
        except ValidationError as err:
            errors.append(str(err))
        except RemapPending as err:
            if waiting is None:
                errors.append(str(err))
                problems.append(err)
            else:
                waiting(f"{KIND} {ns}/{name} waits, no firewall compiled: {err}")
        except ClusterStateError as err:  # an object this peering reads; another peering may read it too
            if str(err) not in errors:
                errors.append(str(err))
                problems.append(err)
    if errors:
        raise RenderError(errors, problems=problems)
    return results
