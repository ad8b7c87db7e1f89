"""What the installed FirewallConfiguration API can express.

Liqo's CRD grows over time (a `ctstate` match, named `sets`); the API server
silently prunes fields it does not know, so the compiler may only emit what
the installed schema accepts. Capabilities are read from the CRD object.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

FIREWALL_CRD_NAME = "firewallconfigurations.networking.liqo.io"
FIREWALL_VERSION = "v1beta1"


@dataclass(frozen=True)
class Capabilities:
    ctstate: bool = False  # conntrack state match: replies of allowed flows pass
    sets: bool = False  # named sets in a table (detected and reported; not used yet)

    @property
    def stateful(self) -> bool:
        return self.ctstate


STATELESS = Capabilities()


def _version_schema(crd: Mapping[str, Any]) -> Mapping[str, Any]:
    for version in (crd.get("spec") or {}).get("versions") or ():
        if version.get("name") == FIREWALL_VERSION:
            return ((version.get("schema") or {}).get("openAPIV3Schema")) or {}
    return {}


def _props(schema: Mapping[str, Any], *path: str) -> Mapping[str, Any]:
    node: Mapping[str, Any] = schema
    for step in path:
        if step == "[]":
            node = node.get("items") or {}
        else:
            node = (node.get("properties") or {}).get(step) or {}
    return node.get("properties") or {}


def from_crd(crd: Mapping[str, Any]) -> Capabilities:
    """Read capabilities from the FirewallConfiguration CRD as installed."""
    schema = _version_schema(crd)
    match = _props(schema, "spec", "table", "chains", "[]", "rules", "filterRules", "[]", "match", "[]")
    table = _props(schema, "spec", "table")
    return Capabilities(ctstate="ctstate" in match, sets="sets" in table)
