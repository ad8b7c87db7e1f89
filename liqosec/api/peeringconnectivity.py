"""The PeeringConnectivity API (security.liqo.io/v1) as frozen values.

A PeeringConnectivity is an ordered list of allow/deny rules between groups
of addresses of one peering. This module only describes the shape; parsing
and validation live in `liqosec.api.validation`, meaning in `liqosec.compiler`.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
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
    # Resolved only for a policy that names them (docs/semantics.md, "Groups"): the Internet
    # is nearly all the address space, and policies that do not use them stay as they were.
    INTERNET = "internet"
    NAMESERVER = "nameserver"
    LEAF = "leaf"

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
    """Liqo's security modes (Liqo issue 1879), offered per peering at run time."""

    FULL_POD_TO_POD = "FullPodToPod"
    INTRA_CLUSTER_TRAFFIC_SEGREGATION = "IntraClusterTrafficSegregation"
    PROTECTED_BORDERS = "ProtectedBorders"


class Enforcement(str, enum.Enum):
    """Whether the controller writes the firewall, or only reports what it would change (docs/semantics.md)."""

    ENFORCE = "Enforce"
    DRY_RUN = "DryRun"


# Groups that make a packet part of a peering's traffic: a policy acts only on
# packets with an end in the peer's address space (docs/semantics.md, "Evaluation").
PEER_GROUPS: frozenset[Group] = frozenset({Group.REMOTE_CLUSTER, Group.OFFLOADED, Group.VC_REMOTE})


class Operator(str, enum.Enum):
    """Label selector operators, as in Kubernetes' LabelSelectorRequirement."""

    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"


# The label the API server puts on every namespace: its name. Resolution adds it to namespaces
# that lack it (objects from a file), so a namespaceSelector on it means the same everywhere.
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


@dataclass(frozen=True, order=True)
class Requirement:
    """One label requirement; `values` sorted and without duplicates, so equal meaning, equal value."""

    key: str
    operator: Operator
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator is Operator.EXISTS:
            return self.key in labels
        if self.operator is Operator.DOES_NOT_EXIST:
            return self.key not in labels
        found = self.key in labels and labels[self.key] in self.values
        return found if self.operator is Operator.IN else not found  # NotIn holds when the label is absent

    def describe(self) -> str:
        """kubectl's selector syntax: `app=web`, `tier in (a,b)`, `tier notin (c)`, `x`, `!x`."""
        if self.operator is Operator.EXISTS:
            return self.key
        if self.operator is Operator.DOES_NOT_EXIST:
            return f"!{self.key}"
        if self.operator is Operator.IN and len(self.values) == 1:
            return f"{self.key}={self.values[0]}"
        word = "in" if self.operator is Operator.IN else "notin"
        return f"{self.key} {word} ({','.join(self.values)})"


@dataclass(frozen=True)
class LabelSelector:
    """matchLabels and matchExpressions as one canonical, sorted tuple of requirements (all must hold).

    matchLabels `{app: web}` is the requirement `app In [web]`, so two spellings of the
    same selector are equal values and compile to the same term. No requirement selects everything.
    """

    requirements: tuple[Requirement, ...] = ()

    @classmethod
    def of(
        cls, match_labels: Mapping[str, str] | None = None, expressions: Iterable[Requirement] = ()
    ) -> LabelSelector:
        reqs = {Requirement(k, Operator.IN, (v,)) for k, v in (match_labels or {}).items()}
        reqs |= {Requirement(r.key, r.operator, tuple(sorted(set(r.values)))) for r in expressions}
        return cls(tuple(sorted(reqs)))

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)

    def describe(self) -> str:
        return ",".join(r.describe() for r in self.requirements)


EVERYTHING = LabelSelector()


@dataclass(frozen=True)
class Party:
    """One end of a rule. Every field None means "any address".

    With a pod or namespace selector, the party is the pods those select, narrowed to
    the addresses of `group` or to the pods of `namespace` when one is given too.
    """

    group: Group | None = None
    namespace: str | None = None
    pod_selector: LabelSelector | None = None
    namespace_selector: LabelSelector | None = None

    @property
    def selects_pods(self) -> bool:
        return self.pod_selector is not None or self.namespace_selector is not None

    def describe(self) -> str:
        """Also the party's term in a clause (docs/semantics.md, "Groups"): readable and canonical."""
        if self.selects_pods:
            text = f"pods{{{(self.pod_selector or EVERYTHING).describe()}}}"
            if self.namespace_selector is not None and self.namespace_selector.requirements:
                text += f" ns{{{self.namespace_selector.describe()}}}"
            if self.group is not None:
                text += f" in {self.group.value}"
            elif self.namespace is not None:
                text += f" in namespace:{self.namespace}"
            return text
        if self.group is not None:
            return self.group.value
        if self.namespace is not None:
            return f"namespace:{self.namespace}"
        return "any"


ANY = Party()


class Protocol(str, enum.Enum):
    """Transport protocols a rule's destination ports may name (NetworkPolicy's)."""

    TCP = "TCP"
    UDP = "UDP"
    SCTP = "SCTP"  # parsed to be refused by name: Liqo v1.2.0's firewall matches TCP and UDP only


# Protocols Liqo v1.2.0's FirewallConfiguration can match (pkg/firewall/utils/match.go).
ENFORCEABLE_PROTOCOLS: frozenset[Protocol] = frozenset({Protocol.TCP, Protocol.UDP})
MAX_PORT = 65535


@dataclass(frozen=True)
class PortRange:
    """One entry of `destination.ports`: a protocol and, optionally, a port or a port range.

    No port means every port of the protocol; `end_port` (with `port`) makes it a range.
    """

    protocol: Protocol = Protocol.TCP
    port: int | None = None
    end_port: int | None = None

    @property
    def first(self) -> int:
        return 0 if self.port is None else self.port

    @property
    def last(self) -> int:
        if self.port is None:
            return MAX_PORT
        return self.port if self.end_port is None else self.end_port

    def describe(self) -> str:
        if self.port is None:
            return self.protocol.value.lower()
        span = str(self.port) if self.end_port in (None, self.port) else f"{self.port}-{self.end_port}"
        return f"{self.protocol.value.lower()}/{span}"


@dataclass(frozen=True)
class Rule:
    source: Party = ANY
    destination: Party = ANY
    action: Action = Action.DENY  # an omitted action denies (the original engine's API)
    # `destination.ports`: the rule matches only these protocols and destination ports; () is any packet.
    ports: tuple[PortRange, ...] = ()


@dataclass(frozen=True)
class PeeringConnectivitySpec:
    rules: tuple[Rule, ...] = ()
    default_action: Action = Action.ALLOW
    security_mode: SecurityMode = SecurityMode.FULL_POD_TO_POD
    enforcement: Enforcement = Enforcement.ENFORCE


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
