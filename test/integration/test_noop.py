"""Every write is deliberate: after convergence, resyncs and a restart write nothing."""

from __future__ import annotations

from support import example, running_controller, unique_peer, wait_for

from harness.objects import apply
from liqosec.controller.resources import FIREWALL_CONFIGURATIONS, PEERING_CONNECTIVITIES
from liqosec.kube.client import KubeClient


def versions(kube: KubeClient, peer: str) -> tuple[str, str]:
    ns = f"liqo-tenant-{peer}"
    fc = kube.get(FIREWALL_CONFIGURATIONS, f"liqosec-{peer}", namespace=ns)
    pc = kube.get(PEERING_CONNECTIVITIES, peer, namespace=ns)
    return fc["metadata"]["resourceVersion"], pc["metadata"]["resourceVersion"]


def test_no_writes_after_convergence_resync_and_restart(kube: KubeClient, local_pod_cidr: None) -> None:
    peer = unique_peer()
    key = f"liqo-tenant-{peer}/{peer}"
    apply(kube, example("provider-isolate-offloaded.yaml", peer=peer))
    with running_controller(kube, resync_seconds=1.0) as first:
        wait_for("status written", lambda: first.metric("liqosec_status_writes_total", peering=key) >= 1)
        wait_for("a no-op pass", lambda: first.metric("liqosec_firewall_noop_writes_skipped_total", peering=key) >= 1)
        before = versions(kube, peer)
        writes = first.metric("liqosec_firewall_writes_total", peering=key, operation="update")
        noops = first.metric("liqosec_firewall_noop_writes_skipped_total", peering=key)
        passes = first.passes(key)
        wait_for("two more resync passes", lambda: first.passes(key) >= passes + 2)
        wait_for("the last pass to finish", first.idle)
        # Each resync looked at the live firewall and found nothing to write (a pass that ends before
        # the firewall step, e.g. woken by its own status echo, counts as a pass but not a no-op).
        assert first.metric("liqosec_firewall_noop_writes_skipped_total", peering=key) >= noops + 1
        assert first.metric("liqosec_firewall_writes_total", peering=key, operation="update") == writes
        assert versions(kube, peer) == before
    with running_controller(kube) as second:
        wait_for(
            "the restarted controller to look",
            lambda: second.metric("liqosec_firewall_noop_writes_skipped_total", peering=key) >= 1,
        )
        wait_for("its first pass to finish", second.idle)
        assert versions(kube, peer) == before
        for op in ("create", "update", "delete"):
            assert second.metric("liqosec_firewall_writes_total", peering=key, operation=op) == 0
        assert second.metric("liqosec_status_writes_total", peering=key) == 0
