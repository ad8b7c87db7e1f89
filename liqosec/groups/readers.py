"""Readers of the fields group resolution reads, one per field, each checking what it reads.

A malformed object raises `ClusterStateError` naming it and the field, never a Python error from
deep inside: pod addresses, Network and Configuration CIDRs (with Liqo's remapping conditions),
EndpointSlice addresses, namespace offloading, node pod CIDRs. `check_object` runs the same
readers on one object up front, so `liqosec render` can reject a bad file whole.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import lru_cache
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any

from liqosec.api.liqo import (
    OFFLOADING_REQUIRED,
    REMAP_CONDITION,
)
from liqosec.groups.view import (
    ClusterStateError,
    Obj,
    ObjectRef,
    RemapPending,
    labels,
    mapping_at,
    name_of,
    namespace_of,
    shown,
    wrong_type,
)

FINISHED_PHASES = frozenset({"Succeeded", "Failed"})


_NOT_AN_ADDRESS = -1


@lru_cache(maxsize=1 << 16)
def _parse_address(text: str) -> int | None:
    """IPv4 as an int, IPv6 as None, anything else -1. Cached: a pod's IP is read several times."""
    try:
        return int(IPv4Address(text))
    except ValueError:
        pass
    try:
        IPv6Address(text)
    except ValueError:
        return _NOT_AN_ADDRESS
    return None


def _address(obj: Obj, path: str, value: object) -> int | None:
    """An IPv4 address as an int; None for an IPv6 one (set aside by the caller)."""
    if not isinstance(value, str):
        raise wrong_type(obj, path, "an IP address as text", value)
    parsed = _parse_address(value)
    if parsed == _NOT_AN_ADDRESS:
        raise ClusterStateError(
            ObjectRef.of(obj), path, f"{shown(value)} is not an IPv4 or IPv6 address", reason="InvalidAddress"
        )
    return parsed


def _cidr(obj: Obj, path: str, value: object) -> tuple[int, int] | None:
    """A CIDR as an inclusive interval; None for an IPv6 one. Host bits are an error, as for the agent."""
    if not isinstance(value, str):
        raise wrong_type(obj, path, "a CIDR as text", value)
    for network in (IPv4Network, IPv6Network):
        try:
            net = network(value, strict=True)
        except ValueError:
            try:
                loose = network(value, strict=False)
            except ValueError:
                continue
            problem = f"{shown(value)} has host bits set; the network is {loose}"
            raise ClusterStateError(ObjectRef.of(obj), path, problem, reason="HostBitsSet") from None
        return (int(net.network_address), int(net.broadcast_address)) if isinstance(net, IPv4Network) else None
    problem = f"{shown(value)} is not an IPv4 or IPv6 CIDR"
    raise ClusterStateError(ObjectRef.of(obj), path, problem, reason="InvalidCIDR")


def _text(obj: Obj, path: str, value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise wrong_type(obj, path, "text", value)


def node_name(pod: Obj) -> str | None:
    return _text(pod, "spec.nodeName", mapping_at(pod, "spec").get("nodeName"))


# Parsed addresses per pod object: the store replaces an object on every change, so
# an object's identity is its version. The object is kept in the entry, so a reused
# id() never matches a newer object. Emptied when full.
_PARSED: dict[int, tuple[Obj, tuple[list[int], tuple[str, ...]]]] = {}
_PARSED_LIMIT = 250_000


def _pod_ips(pod: Obj) -> tuple[list[int], tuple[str, ...]]:
    """IPv4 addresses (as ints) a pod holds now, and the IPv6 ones the IPv4 firewall cannot filter."""
    known = _PARSED.get(id(pod))
    if known is not None and known[0] is pod:
        return known[1]
    parsed = _parse_pod_ips(pod)
    if len(_PARSED) >= _PARSED_LIMIT:
        _PARSED.clear()
    _PARSED[id(pod)] = (pod, parsed)
    return parsed


def _parse_pod_ips(pod: Obj) -> tuple[list[int], tuple[str, ...]]:
    spec, status = mapping_at(pod, "spec"), mapping_at(pod, "status")
    host_network = spec.get("hostNetwork")
    if host_network is not None and not isinstance(host_network, bool):
        raise wrong_type(pod, "spec.hostNetwork", "true or false", host_network)
    phase = _text(pod, "status.phase", status.get("phase"))
    raw = status.get("podIPs")
    if raw is not None and not isinstance(raw, list):
        raise wrong_type(pod, "status.podIPs", "a list of {ip: ...}", raw)
    parsed: list[tuple[int | None, str]] = []
    for i, entry in enumerate(raw or ()):
        if not isinstance(entry, Mapping):
            raise wrong_type(pod, f"status.podIPs[{i}]", "an object {ip: ...}", entry)
        if entry.get("ip") not in (None, ""):
            parsed.append((_address(pod, f"status.podIPs[{i}].ip", entry["ip"]), entry["ip"]))
    single = status.get("podIP")
    if single not in (None, ""):  # checked even when podIPs wins: the API server keeps them equal
        address = _address(pod, "status.podIP", single)
        parsed = parsed or [(address, single)]
    if host_network or phase in FINISHED_PHASES:
        return [], ()
    v4 = [ip for ip, _ in parsed if ip is not None]
    return v4, tuple(str(IPv6Address(text)) for ip, text in parsed if ip is None)


def pod_addresses(pod: Obj) -> tuple[list[str], int]:
    """IPv4 addresses a pod holds now, and how many IPv6 ones were set aside."""
    v4, v6 = _pod_ips(pod)
    return [str(IPv4Address(ip)) for ip in v4], len(v6)


def pod_ipv6_addresses(pod: Obj) -> tuple[str, ...]:
    """The IPv6 addresses a pod holds now: an IPv4 firewall never sees their packets."""
    return _pod_ips(pod)[1]


def network_cidr(network: Obj, section: str) -> tuple[int, int] | None:
    """A Network's `spec.cidr` or `status.cidr` (`section`); None when absent or IPv6."""
    value = mapping_at(network, section).get("cidr")
    return None if value is None or value == "" else _cidr(network, f"{section}.cidr", value)


def _cidr_list(conf: Obj, section: str, kind: str) -> list[object] | None:
    raw = mapping_at(conf, section, "remote", "cidr").get(kind)
    if raw is not None and not isinstance(raw, list):
        raise wrong_type(conf, f"{section}.remote.cidr.{kind}", "a list of CIDRs", raw)
    return raw


def _remote_cidrs(conf: Obj, kind: str, *, waiting: bool = False) -> list[tuple[int, int] | None]:
    """`status.remote.cidr.<kind>` of a Configuration: the peer's CIDRs as remapped here (None: IPv6).

    Never `.spec`: that is the peer's own view, which Liqo may remap here. `""` entries (what
    Liqo's Configuration controller means by "not remapped yet") are skipped, or with `waiting`
    (the peering's own Configuration) raise `RemapPending`, as do a status shorter than the spec
    and Liqo's `NetworkCIDRsConfigured` condition not True for the current generation.
    """
    raw = _cidr_list(conf, "status", kind)
    path = f"status.remote.cidr.{kind}"
    if waiting:
        wanted = _cidr_list(conf, "spec", kind) or []
        have = raw or []
        for i, value in enumerate(have):
            if value == "":
                raise RemapPending(ObjectRef.of(conf), f"{path}[{i}]", _pending_text(wanted, i))
        if raw is not None and len(have) < len(wanted):
            raise RemapPending(ObjectRef.of(conf), path, _pending_text(wanted, len(have)))
        _check_remap_condition(conf)
    return [_cidr(conf, f"{path}[{i}]", c) for i, c in enumerate(raw or ()) if c != ""]


def _check_remap_condition(conf: Obj) -> None:
    """Liqo's own word, where it wrote one: `NetworkCIDRsConfigured` True for this generation.

    Liqo's CRD types the remapped CIDRs `format: cidr`, so the API server refuses a status update
    holding `""`: the status keeps the previous remap (or none) and the condition of its generation.
    A condition behind the spec's generation is a remap not done yet.
    """
    conditions = mapping_at(conf, "status").get("conditions")
    if not isinstance(conditions, list):
        return
    for i, cond in enumerate(conditions):
        if not isinstance(cond, Mapping) or cond.get("type") != REMAP_CONDITION:
            continue
        observed, generation = cond.get("observedGeneration"), mapping_at(conf, "metadata").get("generation")
        behind = isinstance(observed, int) and isinstance(generation, int) and observed < generation
        if cond.get("status") != "True" or behind:
            why = f"Liqo says {REMAP_CONDITION}={shown(cond.get('status'))}"
            if behind:
                why = f"Liqo's {REMAP_CONDITION} is for generation {observed}, the spec is at {generation}"
            raise RemapPending(ObjectRef.of(conf), f"status.conditions[{i}]", f"{why}: the peering waits")


def _pending_text(spec: list[object], index: int) -> str:
    what = f"the peer's {shown(spec[index])}" if index < len(spec) else "a CIDR of the peer's"
    return f"Liqo has not remapped {what} yet (its IPAM has not answered); the peering waits"


def _unremapped(conf: Obj, kind: str) -> RemapPending:
    """The Configuration asks for CIDRs of `kind`; neither its status nor a Network holds one yet."""
    wanted = _cidr_list(conf, "spec", kind) or []
    return RemapPending(ObjectRef.of(conf), f"status.remote.cidr.{kind}", _pending_text(wanted, 0))


def configuration_pod_cidrs(conf: Obj, *, waiting: bool = False) -> list[tuple[int, int] | None]:
    """The peer's pod CIDRs as remapped here; with `waiting`, `RemapPending` until they all are."""
    return _remote_cidrs(conf, "pod", waiting=waiting)


def configuration_external_cidrs(conf: Obj, *, waiting: bool = False) -> list[tuple[int, int] | None]:
    """The peer's external CIDRs as remapped here (the `leaf` group)."""
    return _remote_cidrs(conf, "external", waiting=waiting)


def slice_addresses(endpoint_slice: Obj) -> list[int | None]:
    """Endpoint addresses of an EndpointSlice (None: IPv6); an FQDN slice holds names, not addresses."""
    address_type = _text(endpoint_slice, "addressType", endpoint_slice.get("addressType"))
    raw = endpoint_slice.get("endpoints")
    if raw is None or address_type == "FQDN":
        return []
    if not isinstance(raw, list):
        raise wrong_type(endpoint_slice, "endpoints", "a list of endpoints", raw)
    out: list[int | None] = []
    for i, ep in enumerate(raw):
        if not isinstance(ep, Mapping):
            raise wrong_type(endpoint_slice, f"endpoints[{i}]", "an object {addresses: [...]}", ep)
        addresses = ep.get("addresses")
        if addresses is None:
            continue
        if not isinstance(addresses, list):
            raise wrong_type(endpoint_slice, f"endpoints[{i}].addresses", "a list of IP addresses", addresses)
        out.extend(_address(endpoint_slice, f"endpoints[{i}].addresses[{j}]", a) for j, a in enumerate(addresses))
    return out


def _slice_ipv6(endpoint_slice: Obj) -> tuple[str, ...]:
    """The IPv6 endpoint addresses of a slice `slice_addresses` has already checked."""
    return tuple(
        str(IPv6Address(a))
        for ep in endpoint_slice.get("endpoints") or ()
        for a in ep.get("addresses") or ()
        if _parse_address(a) is None
    )


def offloading_peers(nso: Obj) -> Mapping[str, Any]:
    """`status.remoteNamespacesConditions` of a NamespaceOffloading: keyed by every peered provider.

    Liqo's NamespaceOffloading controller keeps a key for every provider it has a NamespaceMap of,
    the ones its ClusterSelector excludes included: a key is not an offloading.
    """
    value = mapping_at(nso, "status").get("remoteNamespacesConditions")
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise wrong_type(nso, "status.remoteNamespacesConditions", "an object keyed by cluster id", value)
    for peer, conditions in value.items():
        path = f"status.remoteNamespacesConditions.{shown(peer)}"
        if not isinstance(conditions, list):
            raise wrong_type(nso, path, "a list of conditions", conditions)
        for i, cond in enumerate(conditions):
            if not isinstance(cond, Mapping):
                raise wrong_type(nso, f"{path}[{i}]", "a condition {type, status}", cond)
    return value


def offloads_to(nso: Obj, peer: str) -> bool:
    """The namespace is offloaded to `peer`: its ClusterSelector picked it (`OffloadingRequired` True).

    Liqo writes `OffloadingRequired=False` (reason `ClusterNotSelected`) for the providers the
    ClusterSelector leaves out; their key is there all the same.
    """
    return any(
        c.get("type") == OFFLOADING_REQUIRED and c.get("status") == "True"
        for c in offloading_peers(nso).get(peer) or ()
    )


_CHECKS: Mapping[str, Callable[[Obj], object]] = {
    "Pod": lambda o: (_pod_ips(o), node_name(o)),
    "Network": lambda o: (network_cidr(o, "spec"), network_cidr(o, "status")),
    "Configuration": lambda o: (configuration_pod_cidrs(o), configuration_external_cidrs(o)),
    "EndpointSlice": slice_addresses,
    "NamespaceOffloading": offloading_peers,
    "Namespace": labels,
    "Node": labels,
    "Service": labels,
}
# The kinds resolution reads; objects of other kinds never reach it.
READ_KINDS: frozenset[str] = frozenset(_CHECKS)


def check_object(obj: Obj) -> None:
    """Read every field resolution reads from `obj`; raises `ClusterStateError` for the first malformed one.

    Up front instead of during resolution: an error then does not depend on
    which peering happens to read the object, and the caller knows its file.
    """
    if not name_of(obj):
        raise ClusterStateError(ObjectRef.of(obj), "metadata.name", "is required", reason="Missing")
    namespace_of(obj)
    labels(obj)
    kind = obj.get("kind")
    check = _CHECKS.get(kind) if isinstance(kind, str) else None
    if check is not None:
        check(obj)


def node_pod_cidrs(node: Obj) -> list[tuple[int, int]]:
    """A Node's IPv4 `spec.podCIDRs` (or the older `spec.podCIDR`): where its pods get addresses."""
    spec = mapping_at(node, "spec")
    raw = spec.get("podCIDRs")
    if raw is None and spec.get("podCIDR"):
        raw = [spec["podCIDR"]]
    if raw is not None and not isinstance(raw, list):
        raise wrong_type(node, "spec.podCIDRs", "a list of CIDRs", raw)
    found = (_cidr(node, f"spec.podCIDRs[{i}]", v) for i, v in enumerate(raw or ()))
    return [c for c in found if c is not None]
