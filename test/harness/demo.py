"""`python -m harness demo`: the controller on a local API server with demo peerings.

Starts etcd, kube-apiserver and kube-controller-manager on loopback, installs
Liqo's CRDs and ours, applies `demo.yaml` (one cluster, two peerings), runs
`liqosec run`'s controller in-process with leader election, waits until both
peerings are Ready, and prints what it wrote: the firewalls, the statuses,
and the connection matrix read back from the live FirewallConfigurations.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from prometheus_client import CollectorRegistry

from harness.controlplane import ControlPlane, find_binaries
from harness.objects import apply, ensure_namespace
from liqosec.controller import health
from liqosec.controller.manager import Controller, Options
from liqosec.controller.resources import FIREWALL_CONFIGURATIONS, PEERING_CONNECTIVITIES
from liqosec.firewall.evaluate import connects, tables_of
from liqosec.inputs import load_objects
from liqosec.kube import errors
from liqosec.kube.client import KubeClient, RestKubeClient
from liqosec.matrix import build_matrix

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO = Path(__file__).with_name("demo.yaml")
CONVERGE_SECONDS = 60.0


def _liqo_crds() -> Path:
    return Path(os.environ.get("LIQOSEC_LIQO_CRDS", REPO_ROOT / "hack" / "liqo-crds"))


def _ready(kube: KubeClient, objects: Sequence[dict[str, Any]]) -> list[dict[str, Any]] | None:
    out = []
    for pc in (o for o in objects if o["kind"] == "PeeringConnectivity"):
        try:
            live = kube.get(PEERING_CONNECTIVITIES, pc["metadata"]["name"], namespace=pc["metadata"]["namespace"])
        except errors.ApiError:
            return None
        conds = {c["type"]: c for c in (live.get("status") or {}).get("conditions") or ()}
        if conds.get("Ready", {}).get("status") != "True":
            return None
        out.append(live)
    return out


def _report(kube: KubeClient, peerings: list[dict[str, Any]], objects: Sequence[dict[str, Any]], out: TextIO) -> None:
    firewalls = []
    for pc in peerings:
        status, meta = pc["status"], pc["metadata"]
        fc = kube.get(FIREWALL_CONFIGURATIONS, status["firewallConfiguration"], namespace=meta["namespace"])
        firewalls.append(fc)
        chain = fc["spec"]["table"]["chains"][0]
        out.write(
            f"\n{meta['namespace']}/{meta['name']} -> FirewallConfiguration {fc['metadata']['name']}: "
            f"table {fc['spec']['table']['name']}, chain {chain['name']} (policy {chain['policy']}, "
            f"{len(chain['rules']['filterRules'])} rules, {status['objectBytes']} bytes)\n"
        )
        out.write(f"  addresses: {status['addresses']}\n")
        for c in status["conditions"]:
            out.write(f"  {c['type']}={c['status']} ({c['reason']}): {c['message']}\n")
    endpoints = build_matrix(objects).endpoints
    tables = tables_of(firewalls)
    out.write("\nconnections under the live firewalls (rows: source, columns: destination)\n")
    for i, a in enumerate(endpoints):
        cells = " ".join("." if a is b else ("Y" if connects(tables, a.ip, b.ip) else "-") for b in endpoints)
        out.write(f"  {i + 1:>2} {a.name:<24} {cells}\n")


def demo(
    *, out: TextIO, once: bool, metrics_address: str = "127.0.0.1:8080", probe_address: str = "127.0.0.1:8081"
) -> int:
    stop = threading.Event()
    objects = load_objects([str(DEMO)])
    with ControlPlane(find_binaries(REPO_ROOT)) as cp:
        cp.install_crds([_liqo_crds(), REPO_ROOT / "manifests" / "crds"])
        with cp.api_client() as api:
            kube = RestKubeClient(api)
            ensure_namespace(kube, "liqo")
            apply(kube, objects)
            controller = Controller(
                kube, Options(identity="demo", leader_election_namespace="liqo"), registry=CollectorRegistry()
            )
            servers = [
                health.serve(metrics_address, registry=controller.registry),
                health.serve(probe_address, healthy=lambda: True, ready=controller.synced),
            ]
            runner = threading.Thread(target=controller.run, args=(stop,), daemon=True)
            runner.start()
            out.write(
                f"control plane {cp.server}; kubeconfig {cp.kubeconfig_path}\n"
                f"metrics http://{metrics_address}/metrics, probes http://{probe_address}/readyz\n"
            )
            peerings = None
            for _ in range(int(CONVERGE_SECONDS / 0.5)):
                peerings = _ready(kube, objects)
                if peerings or stop.wait(0.5):
                    break
            if not peerings:
                out.write("the peerings did not become Ready in time\n")
                stop.set()
                return 1
            _report(kube, peerings, objects, out)
            if not once:
                out.write("\nthe controller keeps running; Ctrl-C to stop\n")
                out.flush()
                try:
                    while not stop.wait(1.0):
                        pass
                except KeyboardInterrupt:
                    pass
            stop.set()
            runner.join(20)
            for server in servers:
                server.shutdown()
    return 0
