"""The PeeringConnectivity API (security.liqo.io/v1) as frozen values.

A PeeringConnectivity is an ordered list of allow/deny rules between groups
of addresses of one peering. This module only describes the shape; parsing
and validation live in `liqosec.api.validation`, meaning in `liqosec.compiler`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

GROUP = "security.liqo.io"
VERSION = "v1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "PeeringConnectivity"
PLURAL = "peeringconnectivities"


class Group(str, enum.Enum):
    """Well-known address groups of a peering (docs/semantics.md, "Groups")."""

    LOCAL_CLUSTER = "local-cluster"
    REMOTE_CLUSTER = "remote-cluster"
    OFFLOADED = "offloaded"
    VC_LOCAL = "vc-local"
    VC_REMOTE = "vc-remote"
    PRIVATE_SUBNETS = "private-subnets"

    @classmethod
    def _missing_(cls, value: object) -> Group | None:
        """An alias names its canonical group: `Group("slice-local") is Group.VC_LOCAL`."""
        canonical = GROUP_ALIASES.get(value) if isinstance(value, str) else None
        return cls(canonical) if canonical is not None else None


# Names the later form of the original engine gives the virtual-cluster groups. They parse to
# the canonical group, so a policy compiles to the same FirewallConfiguration whichever it uses.
GROUP_ALIASES: dict[str, str] = {"slice-local": "vc-local", "slice-remote": "vc-remote"}


class Action(str, enum.Enum):
    ALLOW = "allow"
    DENY = "deny"


class SecurityMode(str, enum.Enum):
    """Liqo's security modes (seed 003), offered per peering at run time."""

    FULL_POD_TO_POD = "FullPodToPod"
    INTRA_CLUSTER_TRAFFIC_SEGREGATION = "IntraClusterTrafficSegregation"
    PROTECTED_BORDERS = "ProtectedBorders"


# Groups that make a packet part of a peering's traffic: a policy acts only on
# packets with an end in the peer's address space (docs/semantics.md, "Evaluation").
PEER_GROUPS: frozenset[Group] = frozenset({Group.REMOTE_CLUSTER, Group.OFFLOADED, Group.VC_REMOTE})


@dataclass(frozen=True)
class Party:
    """One end of a rule. Both fields None means "any address"."""

    group: Group | None = None
    namespace: str | None = None

    @property
    def is_any(self) -> bool:
        return self.group is None and self.namespace is None

    def describe(self) -> str:
        if self.group is not None:
            return self.group.value
        if self.namespace is not None:
            return f"namespace:{self.namespace}"
        return "any"


ANY = Party()


@dataclass(frozen=True)
class Rule:
    source: Party = ANY
    destination: Party = ANY
    action: Action = Action.DENY  # an omitted action denies (seed 000's API)


@dataclass(frozen=True)
class PeeringConnectivitySpec:
    rules: tuple[Rule, ...] = ()
    default_action: Action = Action.ALLOW
    security_mode: SecurityMode = SecurityMode.FULL_POD_TO_POD


@dataclass(frozen=True)
class PeeringConnectivity:
    name: str
    namespace: str
    spec: PeeringConnectivitySpec
    uid: str = ""
    generation: int = 0

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"
