"""Reading a peering's firewall and checking a dry-run report against it, on a real API server."""

from __future__ import annotations

from typing import Any

from liqosec.compiler.dryrun import pod_scope
from liqosec.controller.resources import FIREWALL_CONFIGURATIONS
from liqosec.firewall.addresses import ip_to_int
from liqosec.firewall.evaluate import connects
from liqosec.groups.readers import pod_addresses
from liqosec.groups.resolve import resolve_groups
from liqosec.groups.view import Snapshot
from liqosec.kube import errors
from liqosec.kube.client import KubeClient
from liqosec.live import read_cluster


def firewall(kube: KubeClient, peer: str, namespace: str | None = None) -> dict[str, Any] | None:
    """The FirewallConfiguration liqosec writes for policy `peer` (in its tenant namespace unless told), or None."""
    try:
        return kube.get(FIREWALL_CONFIGURATIONS, f"liqosec-{peer}", namespace=namespace or f"liqo-tenant-{peer}")
    except errors.NotFound:
        return None


def pair_changes(kube: KubeClient, peer: str, now: list[Any] | None, then: list[Any]) -> tuple[int, int, int]:
    """(pairs of the peering's traffic, newly denied, newly allowed) from the tables `now` (None: no
    firewall, every pair connects) to the tables `then`, pod pair by pod pair, from the API server.

    The API server is shared with other tests: every pod of the peering's groups counts, as it
    does for the controller; the groups are resolved from the live objects as `explain` reads them.
    """
    objects, _ = read_cluster(kube)
    groups = resolve_groups(Snapshot(objects), peer, f"liqo-tenant-{peer}")
    scope, peer_space = pod_scope(groups), groups.peer_space
    ips = [v4[0] for o in objects if o["kind"] == "Pod" and (v4 := pod_addresses(o)[0]) and ip_to_int(v4[0]) in scope]
    pairs = denied = allowed = 0
    for i, src in enumerate(ips):
        for j, dst in enumerate(ips):
            if i == j or not (ip_to_int(src) in peer_space or ip_to_int(dst) in peer_space):
                continue
            pairs += 1
            before = True if now is None else connects(now, src, dst)
            after = connects(then, src, dst)
            denied += before and not after
            allowed += after and not before
    return pairs, denied, allowed
