"""Liqo's objects for a peering's state, made by Liqo's own code: `liqo-agent forge` (hack/liqo-agent/forge.go).

Why: liqosec reads objects Liqo writes (tenant namespaces, the Configuration and its remapped status,
offloaded and shadow pods, virtual nodes' labels, NamespaceOffloading statuses, the unknown-source
IP). Tests that write such objects by hand can drift from what Liqo really writes; `forge` returns
them as Liqo v-pinned's functions and reconcilers make them (on fake clients), so tests can check
their shapes or use them as input.

Guarantees:
- `forge(spec)` returns the objects as plain dicts, each with apiVersion and kind; the same spec
  (and stage) is forged once per process and served from a cache afterwards (a copy each time).
- A missing binary raises `harness.agents.AgentMissing` naming `hack/liqo.sh agent`; a refused spec
  or a failure in Liqo's code raises `ForgeError` with the command's stderr.
- Owner references keep the empty uid the fake client gave them; `for_apply` drops them before an
  object goes to a real API server (harness.objects.apply, which also writes the status).

The spec's fields are forgeSpec's in forge.go (localClusterID, peerClusterID, localPodCIDR,
localExternalCIDR, peerPodCIDR[Remapped], peerExternalCIDR[Remapped], stage pending|remapped,
virtualNodeName, virtualNodeLabels, otherProviders, namespaces with a clusterSelector, pods of kind
offloaded|shadow, remappingFirewalls: Liqo's pod CIDR remapping FirewallConfiguration).
"""

from __future__ import annotations

import copy
import json
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.agents import find_agent

TIMEOUT_S = 60.0
# One peering as the suites forge it: "home" consumes "rome" (and "milan", whose ClusterSelector
# leaves "shop" out), both peers using our own CIDRs, so Liqo's IPAM remaps them.
PEERING_SPEC: dict[str, Any] = {
    "localClusterID": "home",
    "peerClusterID": "rome",
    "localPodCIDR": "10.200.0.0/16",
    "localExternalCIDR": "10.70.0.0/16",
    # The peer uses the same CIDRs: Liqo's IPAM remaps them.
    "peerPodCIDR": "10.200.0.0/16",
    "peerPodCIDRRemapped": "10.81.0.0/16",
    "peerExternalCIDR": "10.70.0.0/16",
    "peerExternalCIDRRemapped": "10.82.0.0/16",
    "virtualNodeLabels": {"topology.example/region": "south"},
    "otherProviders": [{"clusterID": "milan", "labels": {"topology.example/region": "north"}}],
    "namespaces": [
        {
            "name": "shop",
            "clusterSelector": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "topology.example/region", "operator": "In", "values": ["south"]}]}
                ]
            },
        }
    ],
    "pods": [
        {"kind": "offloaded", "name": "guest", "namespace": "guests", "ip": "10.200.1.5", "labels": {"app": "guest"}},
        {"kind": "shadow", "name": "cart", "namespace": "shop", "ip": "10.200.3.7", "labels": {"app": "cart"}},
    ],
}

_CACHE: dict[str, list[dict[str, Any]]] = {}


class ForgeError(RuntimeError):
    """`liqo-agent forge` refused the spec or Liqo's code failed; the message carries its stderr."""


def forge(spec: Mapping[str, Any], *, stage: str | None = None, agent: Path | None = None) -> list[dict[str, Any]]:
    """Liqo's objects for this state; `stage` ("pending" or "remapped") overrides the spec's."""
    body = dict(spec) if stage is None else {**spec, "stage": stage}
    key = json.dumps(body, sort_keys=True)
    if key not in _CACHE:
        _CACHE[key] = _run(key, agent or find_agent())
    return copy.deepcopy(_CACHE[key])


def _run(spec_json: str, agent: Path) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [str(agent), "forge", "--output=json"],
        input=spec_json,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.splitlines()[-20:])
        raise ForgeError(f"liqo-agent forge exited with {proc.returncode}:\n{tail}")
    items: list[dict[str, Any]] = json.loads(proc.stdout)["items"]
    return items


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o.get("kind") == kind]


def one(objects: list[dict[str, Any]], kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
    """The object of that kind and name (and namespace, when given); KeyError names what exists."""
    found = [
        o
        for o in of_kind(objects, kind)
        if o["metadata"]["name"] == name and (namespace is None or o["metadata"].get("namespace") == namespace)
    ]
    if len(found) != 1:
        have = [f"{o['metadata'].get('namespace', '')}/{o['metadata']['name']}" for o in of_kind(objects, kind)]
        raise KeyError(f"{len(found)} {kind} named {name!r} in Liqo's forged objects (have {have})")
    return found[0]


def for_apply(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A copy fit for a real API server: no owner references (their uid is empty, their owner absent)."""
    out = copy.deepcopy(dict(obj))
    out["metadata"].pop("ownerReferences", None)
    return out
