"""A burst of pod changes coalesces into a few FirewallConfiguration writes."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from support import example, offloaded_pod, running_controller, unique_peer, wait_for

from harness.objects import apply, set_status
from liqosec.controller.resources import FIREWALL_CONFIGURATIONS
from liqosec.firewall.evaluate import Packet, node_accepts
from liqosec.kube.client import PODS, KubeClient

PODS_IN_BURST = 100
CHANGES = 500


def offloaded(i: int, ns: str, peer: str) -> dict[str, Any]:
    return offloaded_pod(f"burst-{i}", ns, f"10.1.{100 + i // 200}.{1 + i % 200}", peer)


def test_500_pod_changes_lead_to_a_handful_of_writes(kube: KubeClient, local_pod_cidr: None) -> None:
    peer = unique_peer()
    key = f"liqo-tenant-{peer}/{peer}"
    ns = f"shop-{peer}-{peer}"
    apply(kube, example("provider-isolate-offloaded.yaml", peer=peer))
    live = apply(kube, [offloaded(i, ns, peer) for i in range(PODS_IN_BURST)])
    with running_controller(kube) as ctl:
        wait_for(
            "convergence",
            lambda: ctl.metric("liqosec_firewall_noop_writes_skipped_total", peering=key) >= 1,
            timeout=60,
        )
        writes_before = sum(
            ctl.metric("liqosec_firewall_writes_total", peering=key, operation=o) for o in ("create", "update")
        )

        def move(n: int) -> None:
            pod = live[n % PODS_IN_BURST]
            ip = f"10.1.{150 + n // 250}.{1 + n % 250}"
            set_status(
                kube,
                PODS,
                kube.get(PODS, pod["metadata"]["name"], namespace=ns),
                {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]},
            )

        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(move, range(CHANGES)))
        burst_seconds = time.monotonic() - started
        last_ip = f"10.1.{150 + (CHANGES - 1) // 250}.{1 + (CHANGES - 1) % 250}"

        def at_final_ips() -> bool:
            fc = kube.get(FIREWALL_CONFIGURATIONS, f"liqosec-{peer}", namespace=f"liqo-tenant-{peer}")
            return not node_accepts([fc["spec"]["table"]], Packet.of(last_ip, "10.1.1.10"))

        wait_for("the firewall to reach the final IPs", at_final_ips, timeout=60)
        wait_for("the last batch to be written", ctl.idle)  # no change held, queued or in a pass
        writes = (
            sum(ctl.metric("liqosec_firewall_writes_total", peering=key, operation=o) for o in ("create", "update"))
            - writes_before
        )
        print(f"{CHANGES} pod changes in {burst_seconds:.1f}s -> {writes:.0f} FirewallConfiguration writes")
        assert 1 <= writes <= max(10, 3 * burst_seconds)
