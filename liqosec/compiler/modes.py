"""Liqo's security modes (Liqo issue 1879) as per-peering presets of clauses.

Each preset is evaluated after the explicit rules. Both halves of
IntraClusterTrafficSegregation always apply: each names groups that are empty
on the other side of the peering, so a cluster that is both consumer and
provider of the same peer simply gets both (docs/semantics.md, "Security modes").
ProtectedBorders lets the virtual cluster talk inside itself and denies the
rest of the peering's traffic; holes are explicit rules.
"""

from __future__ import annotations

from liqosec.api.peeringconnectivity import Action, Group, SecurityMode
from liqosec.groups.resolve import (
    OFFLOADED_SERVICE_BACKENDS,
    OUTSIDE_POD_CIDRS,
    REFLECTED_SERVICE_BACKENDS,
    VIRTUAL_CLUSTER,
)

Preset = tuple[tuple[str | None, str | None, Action], ...]

_LOCAL = Group.LOCAL_CLUSTER.value
_REMOTE = Group.REMOTE_CLUSTER.value
_OFFLOADED = Group.OFFLOADED.value
_VC_REMOTE = Group.VC_REMOTE.value

_SEGREGATION: Preset = (
    # The peer is our provider: we reach what we offloaded (P1 to P4) and the
    # peer reaches the local backends of services we offloaded (P5 to S2).
    (None, _VC_REMOTE, Action.ALLOW),
    (_REMOTE, OFFLOADED_SERVICE_BACKENDS, Action.ALLOW),
    # The peer is our consumer: its offloaded pods talk to it, to our pods and
    # to the Internet, and our pods reach the services it reflected here.
    (_REMOTE, _OFFLOADED, Action.ALLOW),
    (_OFFLOADED, _REMOTE, Action.ALLOW),
    (_OFFLOADED, _LOCAL, Action.ALLOW),
    (_LOCAL, _OFFLOADED, Action.ALLOW),
    (_OFFLOADED, OUTSIDE_POD_CIDRS, Action.ALLOW),
    (OUTSIDE_POD_CIDRS, _OFFLOADED, Action.ALLOW),
    (_LOCAL, REFLECTED_SERVICE_BACKENDS, Action.ALLOW),
    # Everything else across the peering is cut.
    (None, None, Action.DENY),
)

_PROTECTED_BORDERS: Preset = (
    # Inside the virtual cluster everything passes, both ways: vc-local, vc-remote,
    # offloaded, and the local backends of offloaded and of reflected services.
    (VIRTUAL_CLUSTER, VIRTUAL_CLUSTER, Action.ALLOW),
    # Everything else across the peering is cut; holes are explicit rules.
    (None, None, Action.DENY),
)

PRESETS: dict[SecurityMode, Preset] = {
    SecurityMode.FULL_POD_TO_POD: (),
    SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION: _SEGREGATION,
    SecurityMode.PROTECTED_BORDERS: _PROTECTED_BORDERS,
}


def mode_clauses(mode: SecurityMode) -> Preset:
    return PRESETS[mode]
