"""`liqosec matrix`: who can open a connection to whom, before a policy is applied.

The verdicts come from evaluating the compiled FirewallConfigurations the way
nftables runs them on a node (`liqosec.firewall.evaluate`), not from the
policy, so the matrix shows what the firewall will really do; the dataplane
tests hold it against real packets. Endpoints are every pod of the input
with an IPv4 address, a sample address of each pod CIDR no pod uses, and an
Internet address.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from liqosec.api.peeringconnectivity import Enforcement, Group
from liqosec.compiler.firewallconfiguration import CompiledPeering
from liqosec.compiler.ports import L4
from liqosec.firewall.addresses import AddressSet, int_to_ip, ip_to_int
from liqosec.firewall.capabilities import Capabilities
from liqosec.firewall.evaluate import Packet, connects, node_accepts, tables_of
from liqosec.groups.readers import pod_addresses
from liqosec.groups.resolve import MASQUERADE_SOURCE
from liqosec.groups.view import ClusterStateError, name_of, namespace_of
from liqosec.inputs import RenderError
from liqosec.offline import Waiting, outcomes

# TEST-NET-2 (RFC 5737): never a pod, never routed; stands for the Internet.
INTERNET = "198.51.100.10"
# Each cell of the grid evaluates the node's tables (~0.2 ms): 200 endpoints are
# 40,000 cells, seconds per grid; a 20,000-pod dump would take days. Past this
# the input is refused with a message instead.
MAX_ENDPOINTS = 200


@dataclass(frozen=True)
class Endpoint:
    name: str
    ip: str
    kind: str = "pod"  # "pod" | "sample"
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class Matrix:
    endpoints: tuple[Endpoint, ...]
    firewalls: tuple[dict[str, Any], ...]
    outcomes: tuple[CompiledPeering, ...] = field(default=(), compare=False)
    # The probe: protocol and destination port (`--port 80/tcp`); None is TCP to a port no rule names.
    port: L4 | None = None

    @property
    def probe(self) -> tuple[str, int]:
        return self.port if self.port is not None else ("tcp", 0)

    def _tables(self, peer: str | None) -> list[Mapping[str, Any]]:
        """Every table in force (None), a peer's, or one PeeringConnectivity's (`peer` its `ns/name`)."""
        picked = in_force([o for o in self.outcomes if peer is None or peer in (o.peer, o.peering.key)])
        chosen = [fw for o in picked for fw in o.firewalls]
        return tables_of(chosen if self.outcomes else self.firewalls)

    def packet(self, src: str, dst: str, *, peer: str | None = None) -> bool:
        """A new packet from src to dst passes every table (or only `peer`'s)."""
        proto, port = self.probe
        return node_accepts(self._tables(peer), Packet.of(src, dst, proto=proto, dport=port))

    def connect(self, src: str, dst: str, *, peer: str | None = None) -> bool:
        proto, port = self.probe
        return connects(self._tables(peer), src, dst, proto=proto, port=port)

    def grid(self, *, peer: str | None = None) -> list[list[bool]]:
        tables = self._tables(peer)
        proto, port = self.probe
        return [[connects(tables, a.ip, b.ip, proto=proto, port=port) for b in self.endpoints] for a in self.endpoints]

    @property
    def peers(self) -> list[str]:
        return [o.peer for o in self.outcomes]


def in_force(outcomes_: Sequence[CompiledPeering]) -> list[CompiledPeering]:
    """What nodes apply: the enforced policies' firewalls; a DryRun policy's only where its peering has no
    enforced policy (shown as it would enforce). A staged policy beside an enforced one is shown on its own."""
    enforced = {o.peer for o in outcomes_ if o.peering.spec.enforcement is not Enforcement.DRY_RUN}
    return [o for o in outcomes_ if o.peering.spec.enforcement is not Enforcement.DRY_RUN or o.peer not in enforced]


def _pod_endpoints(objects: Sequence[Mapping[str, Any]]) -> list[Endpoint]:
    out: list[Endpoint] = []
    for obj in objects:
        if obj.get("kind") != "Pod":
            continue
        v4, _ = pod_addresses(obj)
        name = f"{namespace_of(obj)}/{name_of(obj)}"
        out.extend(Endpoint(name if i == 0 else f"{name}#{i}", ip) for i, ip in enumerate(v4))
    return out


def _sample(space: AddressSet, used: AddressSet) -> str | None:
    """The highest usable address of `space` no pod holds (away from pod IPs, which count up)."""
    free = space.difference(used)
    for start, end in reversed(free.intervals):
        candidate = end - 1 if end - 1 >= start else end
        return int_to_ip(candidate)
    return None


def _label(ep: Endpoint, outcomes_: Sequence[CompiledPeering]) -> Endpoint:
    groups = []
    for o in outcomes_:
        for g in Group:
            if g is not Group.PRIVATE_SUBNETS and ip_to_int(ep.ip) in o.groups.get(g.value):
                groups.append(f"{g.value}" if len(outcomes_) == 1 else f"{g.value}@{o.peer}")
        for term in sorted(t for t in o.groups.sets if t.startswith("pods{")):  # selector parties the pod is in
            if ip_to_int(ep.ip) in o.groups.get(term):
                groups.append(term if len(outcomes_) == 1 else f"{term}@{o.peer}")
    return Endpoint(ep.name, ep.ip, ep.kind, tuple(dict.fromkeys(groups)))  # a peering's policies share groups


def build_matrix(
    objects: Sequence[Mapping[str, Any]],
    *,
    capabilities: Capabilities | None = None,
    max_endpoints: int | None = MAX_ENDPOINTS,
    port: L4 | None = None,
    waiting: Waiting | None = None,
) -> Matrix:
    """Endpoints and verdicts; `max_endpoints` bounds the grid a person is shown (None: no bound);
    `port` is the probe's protocol and destination port (None: TCP to a port no rule names);
    `waiting` hears of the peerings waiting on Liqo, which the matrix leaves out."""
    results = outcomes(objects, capabilities=capabilities, waiting=waiting)
    try:
        endpoints = _pod_endpoints(objects)
    except ClusterStateError as err:
        raise RenderError([str(err)], problems=[err]) from err
    used = AddressSet.of(ep.ip for ep in endpoints)
    samples: dict[str, str] = {}
    for o in results:
        for group in (Group.LOCAL_CLUSTER, Group.REMOTE_CLUSTER, Group.LEAF):  # leaf: only when a rule names it
            ip = _sample(o.groups.get(group.value).difference(o.groups.get(MASQUERADE_SOURCE)), used)
            if ip and ip not in samples.values():
                samples[group.value if group is Group.LOCAL_CLUSTER else f"{group.value}/{o.peer}"] = ip
        # The peer's masqueraded traffic (its nodes, hostNetwork pods, NodePorts) arrives from this one address.
        for start, _ in o.groups.get(MASQUERADE_SOURCE).intervals:
            if int_to_ip(start) not in samples.values():
                samples[f"masquerade/{o.peer}"] = int_to_ip(start)
    endpoints += [Endpoint(f"({name})", ip, "sample") for name, ip in samples.items()]
    endpoints.append(Endpoint("(internet)", INTERNET, "sample"))
    if max_endpoints is not None and len(endpoints) > max_endpoints:
        raise RenderError(
            [
                f"the matrix would have {len(endpoints):,} endpoints (pods with an IPv4 address and samples); "
                f"it shows at most {max_endpoints}: give it fewer pods (e.g. a namespace's), or use `liqosec render`"
            ]
        )
    labelled = tuple(_label(ep, results) for ep in endpoints)
    return Matrix(labelled, tuple(fw for o in results for fw in o.firewalls), tuple(results), port)
