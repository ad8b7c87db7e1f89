"""`liqosec explain`: why a TCP connection between two addresses opens or not, under one peering.

For a request from one end to the other and its reply, it says which groups
each end is in, whether the packet is the peering's traffic at all, which
clause of the policy decides it (`policy.first_match`, the reference
semantics) and which rule of the compiled FirewallConfigurations enforces it
(`evaluate.deciding_rule`, as nftables runs them). The verdicts come from the
firewall, exactly as `liqosec matrix` computes its cells, so the two always
agree; the policy's clause is the reason, and the compiler guarantees both
say the same (`Step.agrees` shows it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from ipaddress import AddressValueError, IPv4Address, IPv6Address
from typing import Any

from liqosec.api.liqo import SERVICE_NAME
from liqosec.api.peeringconnectivity import PEER_GROUPS, Action, Group
from liqosec.compiler import ipv6
from liqosec.compiler.compile import CHAIN_STATEFUL
from liqosec.compiler.firewallconfiguration import CompiledPeering
from liqosec.compiler.policy import Clause, clauses_of, first_match, in_scope
from liqosec.compiler.ports import L4, describe_spans
from liqosec.firewall.evaluate import EPHEMERAL_PORT, Packet, connects, deciding_rule, node_accepts, tables_of
from liqosec.groups.readers import pod_addresses, pod_ipv6_addresses, slice_addresses
from liqosec.groups.resolve import OFFLOADED_SERVICE_BACKENDS, OUTSIDE_POD_CIDRS, REFLECTED_SERVICE_BACKENDS
from liqosec.groups.view import ClusterStateError, labels, name_of, namespace_of
from liqosec.inputs import RenderError
from liqosec.offline import outcomes

OUT_OF_SCOPE = "outOfScope"
DEFAULT_ACTION = "spec.defaultAction"
PRESET = "securityMode"


class ExplainError(ValueError):
    """A question explain cannot answer (an unknown pod or peering, a bad address): one line for the user."""


@dataclass(frozen=True)
class End:
    """One end of the connection, as the peering sees it."""

    ip: str
    pod: str | None  # namespace/name of the pod holding the address in the input
    namespace: str | None
    groups: tuple[str, ...]  # the groups a rule may name (docs/semantics.md, "Groups")
    terms: tuple[str, ...]  # namespace parties and internal terms of the security modes
    services: tuple[str, ...]  # namespace/service whose EndpointSlices hold the address
    peer_space: bool  # in remote-cluster, offloaded or vc-remote: makes a packet this peering's
    ipv6: tuple[str, ...] = ()  # the pod's IPv6 addresses: their packets pass the IPv4 tables unfiltered

    @property
    def label(self) -> str:
        return f"{self.pod} ({self.ip})" if self.pod else self.ip


@dataclass(frozen=True)
class Decision:
    """What the policy says of one packet, and which clause says it."""

    origin: str  # spec.rules[i], securityMode, spec.defaultAction or outOfScope
    index: int | None  # i of spec.rules[i], or of the clause in the mode's preset
    source: str | None  # the clause's parties (None for the default action and out of scope)
    destination: str | None
    action: str | None  # allow | deny (None out of scope)
    verdict: str  # accept | drop

    @property
    def where(self) -> str:
        if self.origin == PRESET:
            return f"securityMode preset clause {self.index}"
        return self.origin


@dataclass(frozen=True)
class Enforcement:
    """The rule of the compiled firewall that decides one packet (or the chain policy when none does)."""

    verdict: str  # accept | drop
    firewall: str  # namespace/name of the FirewallConfiguration (the shard)
    shard: int
    table: str
    chain: str
    policy: str
    rule: str | None  # None: no rule matches, the chain's policy decides
    action: str | None
    matches: tuple[str, ...]


@dataclass(frozen=True)
class Step:
    """One packet of the connection."""

    src: str
    dst: str
    established: bool
    in_scope: bool
    decision: Decision  # the policy's clause, for the addresses (conntrack aside)
    enforcement: Enforcement
    passes: bool  # this peering's tables accept it

    @property
    def agrees(self) -> bool:
        """The compiled rules say what the policy says (the ctstate rule aside)."""
        return self.established or (self.decision.verdict == "accept") == self.passes


@dataclass(frozen=True)
class Explanation:
    peering: str  # namespace/name of the PeeringConnectivity
    peer: str
    security_mode: str
    default_action: str
    stateful: bool  # the chain accepts established/related first (a ctstate match)
    source: End
    destination: End
    request: Step
    reply: Step  # as the kernel sees it: established (only a ctstate rule cares)
    reply_by_address: Step  # the reply judged by the address rules: what stateless filtering does
    node_opens: bool  # every peering's tables together, as on a node (`liqosec matrix`'s grid)
    dropped_by: tuple[str, ...]  # other peerings whose tables stop the connection
    port: L4 | None = None  # the probe's protocol and destination port (None: TCP, a port no rule lists)

    @property
    def opens(self) -> bool:
        """Under this peering's firewall: `liqosec matrix`'s cell for this peering."""
        return self.request.passes and self.reply.passes

    @property
    def opens_stateless(self) -> bool:
        return self.request.passes and self.reply_by_address.passes

    @property
    def opens_with_conntrack(self) -> bool:
        return self.request.passes

    @property
    def conntrack_changes_it(self) -> bool:
        return self.opens_stateless != self.opens_with_conntrack


# ----- the ends -----

_TERM_MEANING = {
    OFFLOADED_SERVICE_BACKENDS: "a backend of a service offloaded to {peer}",
    REFLECTED_SERVICE_BACKENDS: "a backend of a service {peer} reflected here",
    OUTSIDE_POD_CIDRS: "outside both pod CIDRs (e.g. the Internet)",
    "@virtual-cluster": "the virtual cluster: vc-local, vc-remote, offloaded and the service backends",
}


def term_meaning(term: str, peer: str) -> str:
    """A term as a person reads it: namespace parties and internal terms spelled out."""
    if term.startswith("namespace:"):
        return f"namespace {term[len('namespace:') :]}"
    if term.startswith("pods{"):  # a selector party (`Party.describe`)
        return f"{term} (pods selected by labels: pods{{...}} of the pod, ns{{...}} of its namespace)"
    meaning = _TERM_MEANING.get(term, "an internal term of the security modes" if term.startswith("@") else "")
    return f"{term} ({meaning.format(peer=peer)})" if meaning else term


def _parse_ip(text: str, what: str) -> str:
    try:
        return str(IPv4Address(text))
    except (AddressValueError, ValueError):
        pass
    try:
        v6 = IPv6Address(text)
    except (AddressValueError, ValueError):
        raise ExplainError(f"{what} {text!r} is neither a pod (namespace/name) nor an IPv4 address") from None
    raise ExplainError(f"{what} {v6} is an IPv6 address: no firewall of liqosec judges its packets ({ipv6.WHY})")


def _pods(objects: Sequence[Mapping[str, Any]]) -> list[tuple[str, list[str]]]:
    out = []
    for obj in objects:
        if obj.get("kind") == "Pod":
            out.append((f"{namespace_of(obj)}/{name_of(obj)}", pod_addresses(obj)[0]))
    return out


def endpoint_address(objects: Sequence[Mapping[str, Any]], text: str, what: str) -> tuple[str, str | None]:
    """The address of `--from`/`--to` (a pod's first IPv4, or the IPv4 given) and the pod holding it."""
    pods = _pods(objects)
    if "/" in text:
        for name, ips in pods:
            if name == text:
                if not ips:
                    v6 = _pod_ipv6(objects, name)
                    if v6:
                        raise ExplainError(
                            f"{what} pod {text} holds IPv6 addresses only ({', '.join(v6)}): "
                            f"no firewall of liqosec judges its packets ({ipv6.WHY})"
                        )
                    raise ExplainError(f"{what} pod {text} holds no IPv4 address (no IP yet, hostNetwork, or finished)")
                return ips[0], name
        raise ExplainError(f"{what} pod {text} is not in the input")
    ip = _parse_ip(text, what)
    return ip, next((name for name, ips in pods if ip in ips), None)


def _pod_ipv6(objects: Sequence[Mapping[str, Any]], pod: str | None) -> tuple[str, ...]:
    """The IPv6 addresses of pod `namespace/name` in the input."""
    for obj in objects:
        if pod is not None and obj.get("kind") == "Pod" and f"{namespace_of(obj)}/{name_of(obj)}" == pod:
            return pod_ipv6_addresses(obj)
    return ()


def _services(objects: Sequence[Mapping[str, Any]], ip: str) -> tuple[str, ...]:
    value = int(IPv4Address(ip))
    out = set()
    for obj in objects:
        if obj.get("kind") == "EndpointSlice" and value in slice_addresses(obj):
            service = labels(obj).get(SERVICE_NAME) or name_of(obj)
            out.add(f"{namespace_of(obj)}/{service}")
    return tuple(sorted(out))


def describe_end(objects: Sequence[Mapping[str, Any]], outcome: CompiledPeering, ip: str, pod: str | None) -> End:
    sets = outcome.groups.sets
    groups = tuple(g.value for g in Group if ip in outcome.groups.get(g.value))
    terms = tuple(t for t in sorted(sets) if t not in {g.value for g in Group} and ip in outcome.groups.get(t))
    namespace = pod.split("/", 1)[0] if pod else None
    peer_space = any(ip in outcome.groups.get(g.value) for g in PEER_GROUPS)
    return End(ip, pod, namespace, groups, terms, _services(objects, ip), peer_space, _pod_ipv6(objects, pod))


# ----- one packet -----


def _decision(outcome: CompiledPeering, src: str, dst: str, l4: L4) -> Decision:
    groups, spec = outcome.groups, outcome.peering.spec
    if not in_scope(groups, src, dst):
        return Decision(OUT_OF_SCOPE, None, None, None, None, "accept")
    clauses: Sequence[Clause] = clauses_of(spec)
    clause = first_match(clauses, groups, src, dst, l4)
    if clause is None:
        action = spec.default_action
        return Decision(DEFAULT_ACTION, None, None, None, action.value, _verdict(action))
    position = clauses.index(clause)
    index = position if clause.origin != PRESET else position - len(spec.rules)
    destination = clause.dst or "any"
    if clause.ports:
        destination += f" ports {describe_spans(clause.ports)}"
    return Decision(
        clause.origin,
        index,
        clause.src or "any",
        destination,
        clause.action.value,
        _verdict(clause.action),
    )


def decisions(outcome: CompiledPeering, src: str, dst: str, port: L4 | None = None) -> tuple[Decision, Decision | None]:
    """What decides a connection under one peering, as explain names it: the policy's clause for the request, and
    for the reply when the firewall judges replies by their addresses (None: conntrack passes them).
    `liqosec matrix -o svg|html` names these in each cell."""
    proto, number = port if port is not None else ("tcp", 0)
    request = _decision(outcome, src, dst, (proto, number))
    if outcome.chain.name == CHAIN_STATEFUL:
        return request, None
    return request, _decision(outcome, dst, src, (proto, EPHEMERAL_PORT))


def _verdict(action: Action) -> str:
    return "accept" if action is Action.ALLOW else "drop"


def format_match(m: Mapping[str, Any]) -> str:
    op = "!=" if m.get("op") == "neq" else "=="
    if m.get("ip") is not None:
        return f"ip {m['ip']['position']} {op} {m['ip']['value']}"
    if m.get("ctstate") is not None:
        return f"ct state {op} {','.join(m['ctstate'].get('value') or ())}"
    if m.get("proto") is not None:
        return f"proto == {m['proto'].get('value')}"  # Liqo's agent ignores op for proto
    if m.get("port") is not None:
        value = str(m["port"].get("value"))
        return f"port {m['port'].get('position')} {'in' if '-' in value else op} {value}"
    return str(dict(m))


def _enforcement(outcome: CompiledPeering, packet: Packet) -> Enforcement:
    """The shard that drops the packet (the first), else the one whose rule accepts it, else the policy."""
    found: list[Enforcement] = []
    for index, fw in enumerate(outcome.firewalls):
        table = fw["spec"]["table"]
        for chain in table.get("chains") or ():
            if chain.get("hook") != "forward":
                continue
            rule = deciding_rule(chain, packet)
            policy = str(chain.get("policy") or "accept")
            matches: tuple[str, ...] = ()
            if rule is None:
                verdict, name, action = policy, None, None
            else:
                action = str(rule.get("action"))
                verdict = "drop" if action == "reject" else action
                name = str(rule.get("name"))
                matches = tuple(format_match(m) for m in rule.get("match") or ())
            meta = fw["metadata"]
            where = f"{meta.get('namespace')}/{meta.get('name')}"
            found.append(
                Enforcement(
                    verdict, where, index, str(table["name"]), str(chain["name"]), policy, name, action, matches
                )
            )
    drops = [e for e in found if e.verdict == "drop"]
    by_rule = [e for e in found if e.rule is not None]
    return (drops or by_rule or found)[0]


def _step(
    outcome: CompiledPeering, src: str, dst: str, probe: L4, *, established: bool = False, reply: bool = False
) -> Step:
    """One packet of the probe: the request to its port, or (`reply`) the reply back to the client's ephemeral port."""
    proto, port = probe
    sport, dport = (port, EPHEMERAL_PORT) if reply else (EPHEMERAL_PORT, port)
    packet = Packet.of(src, dst, established=established, proto=proto, sport=sport, dport=dport)
    enforcement = _enforcement(outcome, packet)
    passes = node_accepts(tables_of(outcome.firewalls), packet)
    decision = _decision(outcome, src, dst, (proto, dport))
    return Step(src, dst, established, in_scope(outcome.groups, src, dst), decision, enforcement, passes)


# ----- the whole question -----


def choose(results: Sequence[CompiledPeering], peering: str | None) -> CompiledPeering:
    keys = [o.peering.key for o in results]
    if peering is not None:
        for o in results:
            if o.peering.key == peering:
                return o
        known = ", ".join(keys) if keys else "none"
        raise ExplainError(f"no PeeringConnectivity {peering} in the input (it holds: {known})")
    if not results:
        raise ExplainError("the input holds no PeeringConnectivity: nothing to explain")
    if len(results) > 1:
        raise ExplainError(
            f"the input holds {len(results)} PeeringConnectivities ({', '.join(keys)}): "
            "choose one with --peering NS/NAME"
        )
    return results[0]


def explain_outcome(
    objects: Sequence[Mapping[str, Any]],
    results: Sequence[CompiledPeering],
    outcome: CompiledPeering,
    src: str,
    dst: str,
    *,
    src_pod: str | None = None,
    dst_pod: str | None = None,
    port: L4 | None = None,
) -> Explanation:
    others = [o for o in results if o is not outcome]
    probe = port if port is not None else ("tcp", 0)
    proto, number = probe
    everything = tables_of([fw for o in results for fw in o.firewalls])
    spec = outcome.peering.spec
    return Explanation(
        peering=outcome.peering.key,
        peer=outcome.peer,
        security_mode=spec.security_mode.value,
        default_action=spec.default_action.value,
        stateful=outcome.chain.name == CHAIN_STATEFUL,
        source=describe_end(objects, outcome, src, src_pod),
        destination=describe_end(objects, outcome, dst, dst_pod),
        request=_step(outcome, src, dst, probe),
        reply=_step(outcome, dst, src, probe, established=True, reply=True),
        reply_by_address=_step(outcome, dst, src, probe, reply=True),
        node_opens=connects(everything, src, dst, proto=proto, port=number),
        dropped_by=tuple(
            o.peering.key for o in others if not connects(tables_of(o.firewalls), src, dst, proto=proto, port=number)
        ),
        port=port,
    )


def explain(
    objects: Sequence[Mapping[str, Any]],
    source: str,
    destination: str,
    *,
    peering: str | None = None,
    results: Sequence[CompiledPeering] | None = None,
    port: L4 | None = None,
) -> Explanation:
    """Why a TCP connection from `source` to `destination` (pods as namespace/name, or IPv4 addresses) opens or not.

    `results` are the input's outcomes when the caller already has them (`render.outcomes`); `port` the
    protocol and destination port probed (None: TCP to a port no rule lists, as `liqosec matrix`).
    """
    if results is None:
        results = outcomes(objects)
    outcome = choose(results, peering)
    try:
        src, src_pod = endpoint_address(objects, source, "--from")
        dst, dst_pod = endpoint_address(objects, destination, "--to")
    except ClusterStateError as err:
        raise RenderError([str(err)], problems=[err]) from err
    return explain_outcome(objects, results, outcome, src, dst, src_pod=src_pod, dst_pod=dst_pod, port=port)


# ----- output -----


def _end_json(end: End, peer: str) -> dict[str, Any]:
    return {
        "ip": end.ip,
        "pod": end.pod,
        "namespace": end.namespace,
        "groups": list(end.groups),
        "terms": [{"term": t, "meaning": term_meaning(t, peer)} for t in end.terms],
        "services": list(end.services),
        "peerSpace": end.peer_space,
    } | ({"ipv6Unfiltered": list(end.ipv6)} if end.ipv6 else {})


def _step_json(step: Step) -> dict[str, Any]:
    d, e = step.decision, step.enforcement
    return {
        "src": step.src,
        "dst": step.dst,
        "established": step.established,
        "inScope": step.in_scope,
        "decidedBy": {
            "origin": d.origin,
            "index": d.index,
            "source": d.source,
            "destination": d.destination,
            "action": d.action,
            "verdict": d.verdict,
        },
        "firewall": {
            "verdict": e.verdict,
            "firewallConfiguration": e.firewall,
            "shard": e.shard,
            "table": e.table,
            "chain": e.chain,
            "policy": e.policy,
            "rule": e.rule,
            "action": e.action,
            "matches": list(e.matches),
        },
        "passes": step.passes,
    }


def explanation_json(x: Explanation) -> dict[str, Any]:
    return {
        "peering": {
            "peeringConnectivity": x.peering,
            "peer": x.peer,
            "securityMode": x.security_mode,
            "defaultAction": x.default_action,
            "stateful": x.stateful,
        },
        **({"probe": {"protocol": x.port[0], "port": x.port[1]}} if x.port is not None else {}),
        "from": _end_json(x.source, x.peer),
        "to": _end_json(x.destination, x.peer),
        "inScope": x.request.in_scope,
        "request": _step_json(x.request),
        "reply": _step_json(x.reply),
        "replyByAddress": _step_json(x.reply_by_address),
        "connection": {
            "opens": x.opens,
            "stateless": x.opens_stateless,
            "withConntrack": x.opens_with_conntrack,
            "conntrackChangesIt": x.conntrack_changes_it,
            "node": {"opens": x.node_opens, "droppedBy": list(x.dropped_by)},
        },
    }


def _end_lines(title: str, end: End, peer: str) -> list[str]:
    lines = [f"{title} {end.label}"]
    if end.namespace:
        lines.append(f"  namespace: {end.namespace}")
    lines.append(f"  groups:    {', '.join(end.groups) or '(none)'}")
    if end.terms:
        meanings = [term_meaning(t, peer) for t in end.terms]
        lines.append(f"  terms:     {meanings[0]}")
        lines.extend(f"             {m}" for m in meanings[1:])
    if end.services:
        lines.append(f"  backend of {', '.join(end.services)}")
    if end.ipv6:
        lines.append(f"  IPv6:      {', '.join(end.ipv6)}: its IPv6 packets pass unfiltered ({ipv6.WHY})")
    return lines


def decision_text(d: Decision) -> str:
    if d.origin == OUT_OF_SCOPE:
        return "none: the packet is not this peering's traffic, its chain accepts it"
    if d.origin == DEFAULT_ACTION:
        return f"no clause matches: {DEFAULT_ACTION} {d.action}"
    return f"{d.where}: {d.source} -> {d.destination}: {d.action}"


def _enforcement_text(e: Enforcement) -> list[str]:
    place = f"            in FirewallConfiguration {e.firewall} (shard {e.shard}), table {e.table}, chain {e.chain}"
    if e.rule is None:
        return [f"no rule matches: chain policy {e.policy}", place]
    return [f"rule {e.rule} ({e.action})", place, f"            matches: {', '.join(e.matches) or '(any)'}"]


def _step_lines(title: str, step: Step) -> list[str]:
    state = "established" if step.established else "new"
    lines = [f"{title} {step.src} -> {step.dst} ({state})"]
    lines.append(f"  policy:   {decision_text(step.decision)}")
    lines.append(f"  firewall: {_enforcement_text(step.enforcement)[0]}")
    lines.extend(_enforcement_text(step.enforcement)[1:])
    lines.append(f"  verdict:  {'passes' if step.passes else 'dropped'}")
    return lines


def format_explanation(x: Explanation) -> str:
    scope = "in scope" if x.request.in_scope else "out of scope"
    ends = [name for name, e in (("source", x.source), ("destination", x.destination)) if e.peer_space]
    why = (
        f"the {' and the '.join(ends)} {'are' if len(ends) > 1 else 'is'} in {x.peer}'s address space "
        "(remote-cluster, offloaded, vc-remote)"
        if ends
        else f"neither end is in {x.peer}'s address space: this peering's chain accepts it"
    )
    probe = "TCP" if x.port is None else f"{x.port[0].upper()} port {x.port[1]}:"
    lines = [
        f"{probe} {x.source.label} -> {x.destination.label}",
        f"peering {x.peering} (peer {x.peer}, securityMode {x.security_mode}, defaultAction {x.default_action}, "
        f"{'stateful: replies of allowed flows pass' if x.stateful else 'stateless'})",
        "",
        *_end_lines("from", x.source, x.peer),
        *_end_lines("to  ", x.destination, x.peer),
        "",
        f"scope: {scope}: {why}",
        "",
        *_step_lines("request", x.request),
        "",
    ]
    if x.stateful:
        lines += _step_lines("reply (conntrack)", x.reply)
        lines += [f"  without conntrack the address rules would say: {decision_text(x.reply_by_address.decision)}"]
    else:
        judged = "its addresses" if x.port is None else f"its addresses and port {x.port[1]} -> {EPHEMERAL_PORT}"
        lines += _step_lines(f"reply (stateless: judged by {judged})", x.reply)
    lines.append("")
    if x.opens:
        verdict = "opens"
    elif not x.request.passes:
        verdict = "does not open: the request is dropped"
    else:
        verdict = "does not open: the request passes but the reply is dropped"
    lines.append(f"connection: {verdict}")
    if not x.conntrack_changes_it:
        lines.append("  conntrack would not change it" if not x.stateful else "  it would without conntrack too")
    elif x.stateful:
        lines.append("  without conntrack it would not: the address rules drop the reply")
    else:
        lines.append("  with conntrack (--ctstate) it would open: the reply would pass as established")
    if x.dropped_by:
        also = " too" if not x.opens else ""
        lines.append(f"  on a node (all peerings) it does not open: {', '.join(x.dropped_by)} stops it{also}")
    elif x.node_opens != x.opens:
        lines.append(f"  on a node (all peerings): {'opens' if x.node_opens else 'does not open'}")
    return "\n".join(lines)
