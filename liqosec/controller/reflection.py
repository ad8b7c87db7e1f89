"""What Liqo's reflection settings do to a policy's meaning, said on its status.

Two settings of Liqo's virtual kubelet change what a policy can see or what the peer can select:
- `--disable-ip-reflection` (pkg/virtualKubelet/reflection/workload/podns.go applies
  `forge.OpaqueIPTranslationMutator`): the shadow pods of our offloaded workloads get no IP, so
  `vc-remote` is silently empty for them;
- `offloading.reflection.skip.labels` (chart), stored as the VirtualNode's
  `spec.offloadingPatch.labelsNotReflected` (apis/offloading/v1beta1/virtualnode_types.go):
  the pods we offload lose those labels on the provider (pkg/virtualKubelet/forge/pods.go,
  `FilterNotReflected`), so the peer's policies cannot select them by those keys.
Each condition is present only when it applies, so other policies' statuses do not change.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from liqosec.api.liqo import SHADOW_POD
from liqosec.api.peeringconnectivity import Group, PeeringConnectivitySpec
from liqosec.compiler.policy import clauses_of
from liqosec.controller.status import Condition, named
from liqosec.groups.readers import node_name
from liqosec.groups.resolve import VIRTUAL_CLUSTER, virtual_nodes
from liqosec.groups.view import ClusterView, Obj, meta

SHADOW_PODS_WITHOUT_IP, IP_NOT_REFLECTED = "ShadowPodsWithoutIP", "IPNotReflected"
LABELS_NOT_REFLECTED, PEER_CANNOT_SELECT = "LabelsNotReflected", "PeerCannotSelect"
VIRTUAL_NODE_KIND = "VirtualNode"


def _section(obj: Obj | Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = obj.get(key)
    return value if isinstance(value, Mapping) else {}


def uses_vc_remote(spec: PeeringConnectivitySpec) -> bool:
    """The policy's clauses (its security mode's included) name `vc-remote`, alone or narrowed by selectors."""
    terms = {t for c in clauses_of(spec) for t in (c.src, c.dst)}
    if Group.VC_REMOTE.value in terms or VIRTUAL_CLUSTER in terms:
        return True
    return any(p.group is Group.VC_REMOTE for r in spec.rules for p in (r.source, r.destination))


def shadow_pods_without_ip(view: ClusterView, peer: str) -> list[str]:
    """The peer's running shadow pods (ours, on its virtual nodes) holding no address, as `namespace/name`."""
    mine = virtual_nodes(view, peer)
    out = []
    for pod in view.by_label("Pod", SHADOW_POD, "true"):
        status = _section(pod, "status")
        if node_name(pod) not in mine or status.get("phase") != "Running":
            continue
        if not status.get("podIP") and not status.get("podIPs"):
            out.append(f"{meta(pod).get('namespace')}/{meta(pod).get('name')}")
    return sorted(out)


def labels_not_reflected(view: ClusterView, peer: str) -> dict[str, list[str]]:
    """Label key -> the VirtualNodes (`namespace/name`) for `peer` that do not reflect it."""
    out: dict[str, list[str]] = {}
    for vn in view.list(VIRTUAL_NODE_KIND):
        spec = _section(vn, "spec")
        if spec.get("clusterID") != peer:
            continue
        keys = _section(spec, "offloadingPatch").get("labelsNotReflected")
        for k in keys if isinstance(keys, list) else ():
            out.setdefault(str(k), []).append(f"{meta(vn).get('namespace')}/{meta(vn).get('name')}")
    return out


def selector_uses(spec: PeeringConnectivitySpec, keys: Iterable[str]) -> list[tuple[str, list[str]]]:
    """(field path of a podSelector, the keys of `keys` it names) for the parties that may select the pods
    we offload or their local peers: no group (any pod), `vc-remote` or `vc-local`."""
    wanted = set(keys)
    out = []
    for i, rule in enumerate(spec.rules):
        for end, party in (("source", rule.source), ("destination", rule.destination)):
            if party.pod_selector is None or party.group not in (None, Group.VC_REMOTE, Group.VC_LOCAL):
                continue
            used = sorted({r.key for r in party.pod_selector.requirements} & wanted)
            if used:
                out.append((f"spec.rules[{i}].{end}.podSelector", used))
    return out


def conditions(view: ClusterView, spec: PeeringConnectivitySpec, peer: str) -> list[Condition]:
    """`ShadowPodsWithoutIP` and `LabelsNotReflected`, each only when it applies."""
    out: list[Condition] = []
    if uses_vc_remote(spec):
        missing = shadow_pods_without_ip(view, peer)
        if missing:
            out.append(Condition(SHADOW_PODS_WITHOUT_IP, True, IP_NOT_REFLECTED, _no_ip_message(peer, missing)))
    not_reflected = labels_not_reflected(view, peer)
    if not_reflected:
        uses = selector_uses(spec, not_reflected)
        if uses:
            out.append(
                Condition(LABELS_NOT_REFLECTED, True, PEER_CANNOT_SELECT, _labels_message(peer, not_reflected, uses))
            )
    return out


def _no_ip_message(peer: str, pods: Sequence[str]) -> str:
    count = f"{len(pods)} running shadow pod{'s' if len(pods) != 1 else ''}"
    verb = "holds" if len(pods) == 1 else "hold"
    return (
        f"{count} of workloads offloaded to {peer} {verb} no IP address, so vc-remote misses "
        f"{'it' if len(pods) == 1 else 'them'} and this policy's clauses on vc-remote do not match "
        f"{'its' if len(pods) == 1 else 'their'} traffic (Liqo's virtual kubelet runs with --disable-ip-reflection, "
        f"or has not reflected the address yet): {named(pods)}"
    )


def _labels_message(peer: str, not_reflected: Mapping[str, list[str]], uses: Sequence[tuple[str, list[str]]]) -> str:
    keys = sorted({k for _, used in uses for k in used})
    sources = sorted({vn for k in keys for vn in not_reflected[k]})
    where = "; ".join(f"{path} ({', '.join(used)})" for path, used in uses)
    return (
        f"Liqo does not reflect the label{'s' if len(keys) != 1 else ''} {', '.join(keys)} to {peer} "
        f"(VirtualNode {', '.join(sources)}: spec.offloadingPatch.labelsNotReflected): the pods offloaded there "
        f"lose {'it' if len(keys) == 1 else 'them'}, so {peer}'s policies cannot select them by "
        f"{'that key' if len(keys) == 1 else 'those keys'}, which this policy's selectors use: {where}"
    )
