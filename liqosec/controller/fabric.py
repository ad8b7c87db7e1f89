"""Where Liqo's fabric agent runs: the hosts whose `Applied` reports `Ready` waits for.

Liqo v1.2.0's agent writes its per-host condition on a FirewallConfiguration under its
pod's name (cmd/fabric/main.go passes `options.PodName`), and its DaemonSet
(deployments/liqo/templates/liqo-fabric-daemonset.yaml) may be kept off some nodes
(nodeSelector, affinity, tolerations). So the hosts are the fabric pods, each tied to
the node it runs on (per-node firewalls are picked by node: `firewall-unique=<node>`),
and a node without one enforces nothing (docs/semantics.md, "Status").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from liqosec.api.liqo import APP_NAME, FABRIC_LABELS, NODE_TYPE, VIRTUAL_NODE
from liqosec.groups.view import ClusterView, Obj, labels, meta

FINISHED = ("Succeeded", "Failed")


def _section(obj: Obj, key: str) -> Mapping[str, Any]:
    value = obj.get(key)
    return value if isinstance(value, Mapping) else {}


def is_fabric(pod: Obj) -> bool:
    found = labels(pod)
    return all(found.get(k) == v for k, v in FABRIC_LABELS.items())


def host_of(pod: Obj | None) -> tuple[str, str] | None:
    """(pod name, node name) of a fabric pod that runs or will run an agent: scheduled and not finished."""
    if pod is None or not is_fabric(pod):
        return None
    node = _section(pod, "spec").get("nodeName")
    if not node or _section(pod, "status").get("phase") in FINISHED:
        return None
    return str(meta(pod).get("name") or ""), str(node)


@dataclass(frozen=True)
class Hosts:
    """The hosts expected to report `Applied`, each with its node, and the nodes no host covers."""

    by_host: Mapping[str, str]  # host -> node
    fabric: bool  # True: the hosts are fabric pods; False: no fabric pod, hosts named after the nodes
    uncovered: tuple[str, ...] = ()  # physical nodes running no fabric pod (only when `fabric`)


def expected_hosts(view: ClusterView) -> Hosts:
    """Fabric pods on physical nodes; without any, the physical nodes themselves.

    The fallback keeps the behaviour of clusters with no fabric pod at all: the project's
    test agents (hack/liqo-agent, test/harness) report under their node's name, and the demo
    has neither fabric pods nor Node objects (then nothing is expected: the firewall
    matching the spec is enough).
    """
    physical = {str(meta(n).get("name")): n for n in view.list("Node") if labels(n).get(NODE_TYPE) != VIRTUAL_NODE}
    virtual = {str(meta(n).get("name")) for n in view.list("Node") if labels(n).get(NODE_TYPE) == VIRTUAL_NODE}
    by_host: dict[str, str] = {}
    for pod in view.by_label("Pod", APP_NAME, FABRIC_LABELS[APP_NAME]):
        found = host_of(pod)
        if found is not None and found[1] not in virtual:
            by_host[found[0]] = found[1]
    if not by_host:
        return Hosts({name: name for name in sorted(physical)}, fabric=False)
    covered = set(by_host.values())
    return Hosts(by_host, fabric=True, uncovered=tuple(sorted(n for n in physical if n not in covered)))
