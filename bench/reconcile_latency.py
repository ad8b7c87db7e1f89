"""Reconcile latency on a real API server: from a pod's status write to the FirewallConfiguration write covering it.

Starts the local control plane (hack/build-control-plane.sh must have run),
applies the seed's Example 1 with N extra offloaded pods, runs the controller
in-process, then repeatedly gives one offloaded pod its IP (a status write, as
the kubelet does) and times until the controller's FirewallConfiguration write
that isolates it returns, and until the live object does (a GET poll).
Each round is split into stages from timestamps taken in the controller
(the pod's watch event reaching the handler, the reconcile that wrote it
starting, and the write returning), and each reconcile into phases. Optionally
a burst of status writes counts FirewallConfiguration writes, as
test/integration/test_burst.py does.

    python bench/reconcile_latency.py [--pods 1000] [--layout scattered] [--batch-window auto|SECONDS]
        [--rounds 20] [--burst 500] [--profile FILE.txt] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "test" / "integration"))
sys.path.insert(0, str(REPO / "test"))
sys.path.insert(0, str(REPO))  # this tree, whatever an editable install points at

from support import example, offloaded_pod

from harness.controlplane import ControlPlane, find_binaries
from harness.objects import apply, set_status
from liqosec.controller import firewalls, manager
from liqosec.controller.logging import configure
from liqosec.controller.manager import Controller, Options
from liqosec.controller.resources import FIREWALL_CONFIGURATIONS
from liqosec.firewall.evaluate import Packet, node_accepts
from liqosec.kube.client import PODS, RestKubeClient
from liqosec.run import parse_batch_window

PEER = "rome"
LOCAL_POD = "10.1.1.10"
NS = f"shop-{PEER}-{PEER}"


def isolates(fcs: list[dict[str, Any]], ip: str) -> bool:
    """Every shard is a table on the hook: a packet passes when none drops it."""
    return bool(fcs) and not node_accepts([fc["spec"]["table"] for fc in fcs], Packet.of(ip, LOCAL_POD))


def isolated(kube: RestKubeClient, ip: str) -> bool:
    return isolates(shards(kube), ip)


def shards(kube: RestKubeClient) -> list[dict[str, Any]]:
    ns = f"liqo-tenant-{PEER}"
    return list(kube.list(FIREWALL_CONFIGURATIONS, ns, limit=500, continue_token=None)["items"])


def addresses(layout: str, n: int, seed: int = 7) -> list[str]:
    """Bulk pod IPs; the probes use 10.1.200.0/24 and the burst 10.1.210.0/23, kept out of both."""
    if layout == "sequential":
        return [f"10.1.{20 + i // 250}.{1 + i % 250}" for i in range(n)]
    rng = random.Random(seed)
    pool = [f"10.1.{a}.{b}" for a in range(2, 200) for b in range(1, 255) if (a, b) != (1, 10)]
    return rng.sample(pool, n)


class Probe:
    """Timestamps taken inside the controller (monotonic), and seconds spent per reconcile phase."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.watched: dict[str, float] = {}  # pod IP -> when its watch event reached the handler
        self.live: dict[str, dict[str, Any]] = {}  # shard name -> last body written
        self.writes: list[tuple[float, float, list[dict[str, Any]]]] = []  # (reconcile start, returned, all shards)
        self.phases: dict[str, list[float]] = defaultdict(list)
        self.local = threading.local()

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.phases[name].append(time.perf_counter() - started)

    def timed(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*a: Any, **kw: Any) -> Any:
            with self.phase(name):
                return fn(*a, **kw)

        return wrapper


def instrument(controller: Controller, client: Any, probe: Probe) -> None:
    rec = controller.reconciler
    reconcile_fn = rec.reconcile

    def timed_reconcile(key: str) -> Any:
        probe.local.started = time.monotonic()
        with probe.phase("reconcile (total)"):
            return reconcile_fn(key)

    rec.reconcile = timed_reconcile  # type: ignore[method-assign]
    for name in ("_compile", "_rollout", "_set_finalizer"):
        setattr(rec, name, probe.timed(name.strip("_"), getattr(rec, name)))
    rec._status.write = probe.timed("write_status", rec._status.write)  # type: ignore[method-assign]
    rec._firewalls.remove_orphans = probe.timed("remove_orphans", rec._firewalls.remove_orphans)  # type: ignore[method-assign]
    firewalls.firewall_differs = probe.timed("semantic diff", firewalls.firewall_differs)  # type: ignore[assignment]
    update = client.update

    def timed_update(ref: Any, obj: dict[str, Any]) -> Any:
        with probe.phase("firewall PUT (JSON encode + request + decode)" if ref is FIREWALL_CONFIGURATIONS else "PUT"):
            out = update(ref, obj)
        if ref is FIREWALL_CONFIGURATIONS:
            with probe.lock:
                probe.live[obj["metadata"]["name"]] = obj
                probe.writes.append((probe.local.started, time.monotonic(), list(probe.live.values())))
        return out

    client.update = timed_update
    client.update_status = probe.timed("status PUT", client.update_status)
    client.create_event = probe.timed("event POST", client.create_event)
    original_queue = manager._QueueAffectedPeerings._queue

    def queue(self: Any, old: Any, new: Any) -> None:
        if self._kind == "Pod" and new is not None:
            ip = (new.get("status") or {}).get("podIP")
            if ip and ip not in probe.watched:
                probe.watched[ip] = time.monotonic()
        with probe.phase(f"map+enqueue {self._kind}"):
            original_queue(self, old, new)

    manager._QueueAffectedPeerings._queue = queue  # type: ignore[method-assign]


def run(
    pods: int, rounds: int, layout: str, batch: float | None, burst: int, profile: str | None, gap: float = 0.3
) -> dict[str, Any]:
    with ControlPlane(find_binaries(REPO)) as cp:
        cp.install_crds([REPO / "hack" / "liqo-crds", REPO / "manifests" / "crds"])
        with cp.api_client() as api, cp.api_client() as controller_api:
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
            apply(kube, [net, *example("provider-isolate-offloaded.yaml", peer=PEER, old_peer=PEER)])
            bulk = addresses(layout, pods)
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda i: apply(kube, [offloaded_pod(f"bulk-{i}", NS, bulk[i], PEER)]), range(pods)))
            # Probe pods exist before the controller starts, without an IP: a round is one status write.
            probes = []
            for r in range(rounds):
                pod = offloaded_pod(f"probe-{r}", NS, "0.0.0.0", PEER)
                del pod["status"]
                probes.append(apply(kube, [pod])[0])
            registry = CollectorRegistry()
            client = RestKubeClient(controller_api)
            controller = Controller(
                client, Options(identity="bench", leader_elect=False, batch_seconds=batch), registry=registry
            )
            probe = Probe()
            instrument(controller, client, probe)
            stop = threading.Event()
            threading.Thread(target=controller.run, args=(stop,), daemon=True).start()
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not _safe(lambda: isolated(kube, bulk[-1])):
                time.sleep(0.05)
            time.sleep(1.0)
            probe.live = {fc["metadata"]["name"]: fc for fc in shards(kube)}
            probe.phases.clear()
            writes_before = _writes(registry)
            reconciles_before = _reconciles(registry)
            profiler = None
            if profile:
                from pyinstrument import Profiler

                profiler = Profiler(interval=0.0005)
                _profile_workers(controller, profiler)
            rounds_out = []
            for r in range(rounds):
                ip = f"10.1.200.{1 + r}"
                time.sleep(gap)  # from the previous round's write: under a window, the change is part of a burst
                started = time.monotonic()
                set_status(kube, PODS, probes[r], {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]})
                while not _safe(lambda ip=ip: isolated(kube, ip)):
                    time.sleep(0.005)
                seen = time.monotonic()
                found = None
                while found is None and time.monotonic() < seen + 5:  # the write's wrapper may not have returned yet
                    with probe.lock:
                        found = next(((s, w) for s, w, b in probe.writes if w >= started and isolates(b, ip)), None)
                    time.sleep(0.01)
                start, wrote = found or (seen, seen)
                rounds_out.append(
                    {
                        "to_write": wrote - started,
                        "to_seen": seen - started,
                        "watch": probe.watched[ip] - started,
                        "queue": start - probe.watched[ip],
                        "reconcile_to_write": wrote - start,
                    }
                )
            round_writes = _writes(registry) - writes_before
            round_reconciles = _reconciles(registry) - reconciles_before
            phases = {k: (len(v), round(sum(v) / len(v) * 1000, 1)) for k, v in sorted(probe.phases.items())}
            if profiler is not None:
                with profiler.lock:
                    profiler.done = True
                Path(profile).write_text(profiler.output_text(unicode=False, color=False, show_all=False))  # type: ignore[arg-type]
            result: dict[str, Any] = {
                "pods": pods,
                "layout": layout,
                "batch_window": "auto" if batch is None else batch,
                "rounds": rounds,
                **_latency("status_write_to_firewall_write", [x["to_write"] for x in rounds_out]),
                **_latency("status_write_to_firewall_read", [x["to_seen"] for x in rounds_out]),
                "stages_median_ms": {
                    k: round(statistics.median(x[k] for x in rounds_out) * 1000, 1)
                    for k in ("watch", "queue", "reconcile_to_write")
                },
                "reconciles": round_reconciles,
                "firewall_writes": round_writes,
                "phases_count_mean_ms": phases,
            }
            if burst:
                result.update(_burst(kube, registry, probes, burst))
            stop.set()
    return result


def _burst(
    kube: RestKubeClient, registry: CollectorRegistry, probes: list[dict[str, Any]], changes: int
) -> dict[str, Any]:
    """`changes` status writes from 8 threads over the probe pods, as test_burst.py; writes until converged."""
    before = _writes(registry)
    live = [kube.get(PODS, p["metadata"]["name"], namespace=NS) for p in probes]
    locks = [threading.Lock() for _ in live]

    def move(n: int) -> None:
        i = n % len(live)
        ip = f"10.1.{210 + n // 250}.{1 + n % 250}"
        with locks[i]:
            live[i] = set_status(kube, PODS, live[i], {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]})

    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(move, range(changes)))
    burst_s = time.monotonic() - started
    last = f"10.1.{210 + (changes - 1) // 250}.{1 + (changes - 1) % 250}"
    while not _safe(lambda: isolated(kube, last)):
        time.sleep(0.01)
    converged = time.monotonic() - started
    time.sleep(1.5)
    return {
        "burst_changes": changes,
        "burst_seconds": round(burst_s, 2),
        "burst_converged_s": round(converged, 2),
        "burst_firewall_writes": _writes(registry) - before,
    }


def _profile_workers(controller: Controller, profiler: Any) -> None:
    """Profile the worker threads: pyinstrument samples the thread it starts on, so each reconcile starts it."""
    reconcile_fn = controller.reconciler.reconcile
    profiler.lock, profiler.done = threading.Lock(), False

    def profiled(key: str) -> Any:
        with profiler.lock:  # one session at a time: the profiler is not re-entrant across threads
            if profiler.done:
                return reconcile_fn(key)
            profiler.start()
            try:
                return reconcile_fn(key)
            finally:
                profiler.stop()

    controller.reconciler.reconcile = profiled  # type: ignore[method-assign]


def _latency(name: str, values: list[float]) -> dict[str, Any]:
    values = sorted(values)
    return {
        f"{name}_p50_s": round(statistics.median(values), 3),
        f"{name}_p90_s": round(values[int(0.9 * (len(values) - 1))], 3),
        f"{name}_p99_s": round(values[min(len(values) - 1, int(0.99 * len(values)))], 3),
        f"{name}_max_s": round(values[-1], 3),
    }


def _reconciles(registry: CollectorRegistry) -> int:
    v = registry.get_sample_value(
        "controller_runtime_reconcile_time_seconds_count", {"controller": "peeringconnectivity"}
    )
    return int(v or 0)


def _writes(registry: CollectorRegistry) -> int:
    return int(
        sum(
            s.value
            for m in registry.collect()
            if m.name == "liqosec_firewall_writes"
            for s in m.samples
            if s.name.endswith("_total")
        )
    )


def _safe(probe: Any) -> bool:
    try:
        return bool(probe())
    except Exception:  # not written yet
        return False


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pods", type=int, default=1000)
    p.add_argument("--layout", choices=("scattered", "sequential"), default="scattered")
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--batch-window", type=parse_batch_window, default=None, help="auto (default) or seconds")
    p.add_argument("--gap", type=float, default=0.3, help="seconds between a round's write and the next change")
    p.add_argument("--burst", type=int, default=0, help="then time this many pod status writes (0: skip)")
    p.add_argument("--profile", default=None, help="write a pyinstrument profile of the reconciles to this file")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    configure(level="error", fmt="console")  # the controller's logs would drown the result
    result = run(args.pods, args.rounds, args.layout, args.batch_window, args.burst, args.profile, args.gap)
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:<45} {v}")


if __name__ == "__main__":
    main()
