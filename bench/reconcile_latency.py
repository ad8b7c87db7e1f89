"""Reconcile latency on a real API server: from a pod change to the FirewallConfiguration that covers it.

Starts the local control plane (hack/build-control-plane.sh must have run),
applies the seed's Example 1 with N extra offloaded pods, runs the controller
in-process, then repeatedly adds one offloaded pod and measures the time
until the live FirewallConfiguration isolates it. Reports the end-to-end
latency (which includes the controller's 0.5 s batch window for pods), the
reconcile time from `controller_runtime_reconcile_time_seconds`, and writes.

    python bench/reconcile_latency.py [--pods 1000] [--rounds 20] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "test" / "integration"))

from support import example, offloaded_pod

from harness.controlplane import ControlPlane, find_binaries
from harness.objects import apply
from liqosec.controller.manager import Controller, Options
from liqosec.controller.resources import FIREWALL_CONFIGURATIONS
from liqosec.firewall.evaluate import Packet, node_accepts
from liqosec.kube.client import RestKubeClient

PEER = "rome"
LOCAL_POD = "10.1.1.10"


def isolated(kube: RestKubeClient, ip: str) -> bool:
    fc = kube.get(FIREWALL_CONFIGURATIONS, f"liqosec-{PEER}", namespace=f"liqo-tenant-{PEER}")
    return not node_accepts([fc["spec"]["table"]], Packet.of(ip, LOCAL_POD))


def run(pods: int, rounds: int) -> dict[str, Any]:
    with ControlPlane(find_binaries(REPO)) as cp:
        cp.install_crds([REPO / "hack" / "liqo-crds", REPO / "manifests" / "crds"])
        with cp.api_client() as api:
            kube = RestKubeClient(api)
            net = {
                "apiVersion": "ipam.liqo.io/v1alpha1",
                "kind": "Network",
                "metadata": {
                    "name": "pod-cidr",
                    "namespace": "liqo",
                    "labels": {"ipam.liqo.io/network-type": "pod-cidr"},
                },
                "spec": {"cidr": "10.1.0.0/16"},
            }
            ns = f"shop-{PEER}-{PEER}"
            apply(kube, [net, *example("provider-isolate-offloaded.yaml", peer=PEER, old_peer=PEER)])
            apply(
                kube, [offloaded_pod(f"bulk-{i}", ns, f"10.1.{20 + i // 250}.{1 + i % 250}", PEER) for i in range(pods)]
            )
            registry = CollectorRegistry()
            controller = Controller(kube, Options(identity="bench", leader_elect=False), registry=registry)
            stop = threading.Event()
            threading.Thread(target=controller.run, args=(stop,), daemon=True).start()
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not _safe(
                lambda: isolated(kube, f"10.1.{20 + (pods - 1) // 250}.{1 + (pods - 1) % 250}")
            ):
                time.sleep(0.05)
            latencies = []
            for r in range(rounds):
                ip = f"10.1.200.{1 + r}"
                started = time.monotonic()
                apply(kube, [offloaded_pod(f"probe-{r}", ns, ip, PEER)])
                while not _safe(lambda ip=ip: isolated(kube, ip)):
                    time.sleep(0.01)
                latencies.append(time.monotonic() - started)
            count = (
                registry.get_sample_value(
                    "controller_runtime_reconcile_time_seconds_count", {"controller": "peeringconnectivity"}
                )
                or 0
            )
            total = (
                registry.get_sample_value(
                    "controller_runtime_reconcile_time_seconds_sum", {"controller": "peeringconnectivity"}
                )
                or 0
            )
            writes = sum(
                s.value
                for m in registry.collect()
                if m.name == "liqosec_firewall_writes"
                for s in m.samples
                if s.name.endswith("_total")
            )
            stop.set()
    latencies.sort()
    return {
        "pods": pods,
        "rounds": rounds,
        "latency_median_s": round(statistics.median(latencies), 3),
        "latency_p90_s": round(latencies[int(0.9 * (len(latencies) - 1))], 3),
        "latency_max_s": round(latencies[-1], 3),
        "reconciles": int(count),
        "reconcile_mean_s": round(total / count, 4) if count else None,
        "firewall_writes": int(writes),
    }


def _safe(probe: Any) -> bool:
    try:
        return bool(probe())
    except Exception:  # not written yet
        return False


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pods", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    result = run(args.pods, args.rounds)
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:<20} {v}")


if __name__ == "__main__":
    main()
