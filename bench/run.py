"""The controller bench: one command, a fresh control plane per scale, the controller as a subprocess.

    python bench/run.py --scale smoke|1k|10k|100k[,...] [--json PATH] [--out DIR]
        [--controller-cmd 'CMD {kubeconfig} ...'] [--firewall-scope all-nodes|per-node] [--batch-window auto|S]
        [--layout scattered|per-node] [--coverage evaluate|mentions] [--pods N --peerings P --nodes N ...]

Per scale: start etcd + kube-apiserver + kube-controller-manager on loopback (test/harness), install
Liqo's CRDs and ours, build Example 1 for P peerings (bench/bench_world.py), then, in order:
baseline (the controller on an empty cluster, for memory), start-up, the API server's own write
latency, latency rounds, churn, burst, idle, restart. Prints a markdown table; --json writes the
results (shape: bench/README.md, "The controller bench"), --out the PNG plots (bench/plot.py).
Exit 1 with a message saying what was seen when a phase cannot complete (for instance a controller
that never converges); the JSON then has the phases done so far and `error`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shlex
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
for extra in (REPO / "test" / "integration", REPO / "test", REPO, HERE):
    sys.path.insert(0, str(extra))  # this tree, whatever an editable install points at

import bench_report
from bench_observe import (
    COVERAGES,
    ApiWrites,
    BenchError,
    ControllerProcess,
    FirewallWatch,
    ProcessSampler,
    Write,
    cpu_by_command,
)
from bench_world import (
    SCALE_FIELDS,
    SCALES,
    AddressPlan,
    PodRef,
    Scale,
    addressing_of,
    capacity_of,
    create_pod,
    create_pods,
    node_names,
    peer_names,
    running,
    setup_base,
    setup_peerings,
    spread,
)

from harness.controlplane import ControlPlane, ControlPlaneError, find_binaries
from harness.objects import set_status
from liqosec.api.liqo import ORIGIN
from liqosec.kube.client import PODS, RestKubeClient
from liqosec.run import parse_batch_window

METRICS = ("liqosec_firewall_writes_total", "controller_runtime_reconcile_total")
# etcd's backend quota for worlds past BIG_WORLD_PODS pod addresses: pods take ~3.6 MiB of etcd per 1,000
# (a create and a status write each, until the API server compacts every 5 min), so 100,000 overflow the
# harness's 256 MiB ("mvcc: database space exceeded"). A quota is a ceiling, not an allocation.
BIG_WORLD_PODS = 20_000
BIG_WORLD_ETCD_QUOTA_BYTES = 8 * 2**30
ROUND_GAP_S = 1.0  # between a round's firewall and the next change: each round is an isolated change
BASELINE_SETTLE_S = 1.5


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def fc_summary(objs: list[dict[str, Any]], peer_of: Any) -> dict[str, Any]:
    sizes = [len(json.dumps(o, separators=(",", ":"))) for o in objs]
    per_peer = Counter(peer_of(o) for o in objs)
    return {
        "objects": len(objs),
        "largest_bytes": max(sizes, default=0),
        "total_bytes": sum(sizes),
        "objects_per_peering_max": max(per_peer.values(), default=0),
    }


def _per_peer(writes: list[Write]) -> dict[str, int]:
    return dict(Counter(w.peer or "(other)" for w in writes))


class Bench:
    """One scale's run; `result` fills in phase by phase."""

    def __init__(self, scale: Scale, args: argparse.Namespace) -> None:
        self.scale = scale
        self.args = args
        self.t0 = time.monotonic()
        self.addressing = addressing_of(scale)
        self.peers = peer_names(scale.peerings, self.addressing.max_peerings)
        self.capacity = capacity_of(scale)
        self.plan = AddressPlan(
            args.layout,
            node_names(scale.nodes),
            seed=args.seed,
            capacity=self.capacity,
            cidr=self.addressing.local_pod_cidr,
        )
        self.rng = random.Random(args.seed)
        self.lock = threading.Lock()
        self.pods: dict[str, PodRef] = {}  # every pod with an IP the bench made, by name (in the group or not)
        self.pod_count = 0  # pods in the cluster, `web` and IP-less ones included
        self.busy: set[str] = set()
        self.ctl: ControllerProcess | None = None
        self.instances: list[dict[str, Any]] = []
        self.phases: list[dict[str, Any]] = []
        window = args.batch_window
        default_quiet = 2.0 if window in (None, "auto") else max(2.0, 2 * float(window) + 1.0)
        self.quiet = args.quiet if args.quiet is not None else default_quiet
        self.coverage = COVERAGES[args.coverage or ("mentions" if args.controller_cmd else "evaluate")]()
        self.result: dict[str, Any] = {
            "scale": scale.name,
            "controller": {
                "name": "command" if args.controller_cmd else "liqosec",
                "command": args.controller_cmd,
                "batch_window": args.batch_window
                if args.batch_window is not None
                else (None if args.controller_cmd else "auto"),
                "firewall_scope": args.firewall_scope,
                "log_level": args.log_level,
            },
            "coverage": self.coverage.name,
            "world": {
                "pods": scale.pods,
                "peerings": scale.peerings,
                "nodes": scale.nodes,
                "layout": args.layout,
                "policy": args.policy,
                "seed": args.seed,
                "addressing": self.addressing.name,
                "local_pod_cidr": self.addressing.local_pod_cidr,
            },
            "params": {f: getattr(scale, f) for f in SCALE_FIELDS if f != "name"} | {"quiet_s": self.quiet},
            "overrides": {
                f: getattr(scale, f)
                for f in SCALE_FIELDS
                if f != "name" and getattr(scale, f) != getattr(SCALES[scale.name], f)
            },
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
                "loadavg_start": [round(x, 2) for x in os.getloadavg()],
            },
        }

    def clock(self) -> float:
        return time.monotonic() - self.t0

    def alive(self) -> None:
        if self.ctl is not None:
            self.ctl.check()

    @contextmanager
    def phase(self, name: str) -> Iterator[dict[str, Any]]:
        rec: dict[str, Any] = {"name": name, "start": round(self.clock(), 3)}
        cpu0 = self.sampler.cpu()
        rec["_cpu0"] = cpu0
        _progress(f"[{self.clock():7.1f}s] {self.scale.name}: {name} ...")
        try:
            yield rec
        finally:
            rec.pop("_cpu0", None)
            rec["end"] = round(self.clock(), 3)
            rec["cpu_s"] = round(self.sampler.cpu() - cpu0, 3)
            self.phases.append(rec)

    # ----- the controller -----
    def start_controller(self, label: str) -> ControllerProcess:
        args = self.args
        hp, mp = _free_port(), _free_port()
        kubeconfig = str(self.cp.kubeconfig_path)
        env: dict[str, str] = {}
        if args.controller_cmd:
            values = {
                "{kubeconfig}": kubeconfig,
                "{health_port}": str(hp),
                "{metrics_port}": str(mp),
                "{health_addr}": f"127.0.0.1:{hp}",
                "{metrics_addr}": f"127.0.0.1:{mp}",
                "{batch_window}": args.batch_window or "",
                "{firewall_scope}": args.firewall_scope or "",
                "{python}": sys.executable,
                "{repo}": str(REPO),
            }
            argv = []
            for token in shlex.split(args.controller_cmd):
                for key, value in values.items():
                    token = token.replace(key, value)
                argv.append(token)
            health = hp if "{health_" in args.controller_cmd else None
            metrics = mp if "{metrics_" in args.controller_cmd else None
            env["KUBECONFIG"] = kubeconfig
        else:
            argv = [
                sys.executable,
                "-m",
                "liqosec",
                "run",
                "--kubeconfig",
                kubeconfig,
                "--no-leader-elect",
                "--identity",
                f"bench-{label}",
                "--metrics-bind-address",
                f"127.0.0.1:{mp}",
                "--health-probe-bind-address",
                f"127.0.0.1:{hp}",
                "--log-level",
                args.log_level,
                "--log-format",
                "json",
            ]
            if args.batch_window is not None:
                argv += ["--batch-window", args.batch_window]
            if args.firewall_scope:
                argv += ["--firewall-scope", args.firewall_scope]
            health, metrics = hp, mp
            env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
        ctl = ControllerProcess(argv, self.logdir / f"controller-{label}.log", label, health, metrics, env)
        ctl.start(self.clock)
        self.ctl = ctl
        self.sampler.attach(ctl.pid, label, tree=bool(args.controller_cmd))
        self.instances.append({"label": label, "argv": argv, "start": round(ctl.t_start, 3), "log": str(ctl.log_path)})
        return ctl

    def stop_controller(self) -> None:
        ctl = self.ctl
        if ctl is None:
            return
        inst = self.instances[-1]
        inst["metrics"] = ctl.scrape(METRICS)
        self.sampler.detach()
        self.ctl = None
        inst["exit_code"] = ctl.stop()
        inst["end"] = round(self.clock(), 3)

    def wait_ready(self, ctl: ControllerProcess, timeout: float) -> float | None:
        t = ctl.wait_ready(timeout, self.clock)
        return None if t is None else round(t - ctl.t_start, 3)

    # ----- the run -----
    def run(self) -> dict[str, Any]:
        try:
            binaries = find_binaries(REPO)
        except ControlPlaneError as err:
            raise BenchError(str(err)) from None
        with ExitStack() as stack:
            self.logdir = Path(tempfile.mkdtemp(prefix="liqosec-bench-"))
            self.sampler = ProcessSampler(self.scale.sample_interval, self.clock)
            self.sampler.start()
            stack.callback(self.sampler.stop)
            with self.phase("control plane"):
                quota = {"etcd_quota_bytes": BIG_WORLD_ETCD_QUOTA_BYTES} if self.capacity > BIG_WORLD_PODS else {}
                self.cp = stack.enter_context(ControlPlane(binaries, **quota))
                stack.callback(self._keep_control_plane_logs)  # runs before the control plane's work dir goes
                crds = (
                    [Path(d) for d in self.args.crds]
                    if self.args.crds
                    else [REPO / "hack" / "liqo-crds", REPO / "manifests" / "crds"]
                )
                self.cp.install_crds(crds)
            self.kube = RestKubeClient(stack.enter_context(self.cp.api_client()))
            watch_kube = RestKubeClient(stack.enter_context(self.cp.api_client()))
            api_kube = RestKubeClient(stack.enter_context(self.cp.api_client()))
            self.watch = FirewallWatch(watch_kube, self.peers, self.coverage, self.clock)
            self.api = ApiWrites(api_kube, self.clock)
            stack.callback(self.stop_controller)
            stack.callback(self.api.stop)
            try:
                self._run_phases()
            except BaseException as err:
                self.result["error"] = str(err) if isinstance(err, BenchError) else f"{type(err).__name__}: {err}"
                raise
            finally:
                self.stop_controller()
                self.watch.stop()
                self._finish()
        return self.result

    def _keep_control_plane_logs(self) -> None:
        """When the run failed, copy etcd's, the API server's and the controller manager's logs beside
        the controller's (the control plane's work dir is removed when it stops)."""
        if "error" not in self.result and sys.exc_info()[0] is None:
            return
        for log in sorted(self.cp.work_dir.glob("*.log")):
            try:
                shutil.copy(log, self.logdir / log.name)
            except OSError as err:
                _progress(f"could not keep {log}: {err}")

    def _run_phases(self) -> None:
        sc = self.scale
        with self.phase("world"):
            setup_base(self.kube, self.plan)
            self.watch.start()
        self._baseline()
        with self.phase("populate") as rec:
            setup_peerings(self.kube, self.peers, self.args.policy, self.addressing)
            bulk = spread("bulk", sc.pods, self.peers, self.plan)
            t_pods = self.clock()

            def progress(n: int) -> None:
                took = self.clock() - t_pods
                _progress(
                    f"[{self.clock():7.1f}s] {sc.name}: populate {n:,} of {len(bulk):,} pods, "
                    f"{n / took:.0f} pods/s ({2 * n / took:.0f} writes/s)"
                )

            create_pods(self.kube, bulk, threads=sc.create_threads, progress=progress)
            pods_s = self.clock() - t_pods
            self.probes = spread("probe", sc.rounds, self.peers, self.plan)
            self.probe_live = create_pods(self.kube, self.probes, with_ip=False)
            for ref in bulk:
                self.pods[ref.name] = ref
            self.pod_count = 1 + len(bulk) + len(self.probes)  # + web
            rec["pods_created"] = len(bulk) + len(self.probes)
        self.result["world"]["populate_s"] = round(rec["end"] - rec["start"], 2)
        # the bulk pods alone: a create and a status write each, `create_threads` at a time
        self.result["world"]["populate_pods_per_s"] = round(len(bulk) / pods_s, 1) if pods_s > 0 else None
        _progress(
            f"[{self.clock():7.1f}s] {sc.name}: populated {len(bulk):,} pods in {pods_s:.1f} s "
            f"({len(bulk) / max(pods_s, 1e-9):.0f} pods/s from {sc.create_threads} threads); "
            f"peerings and pods {rec['end'] - rec['start']:.1f} s"
        )
        self._startup()
        self._api_latency()
        self.api.start_background(1.0)
        self._latency_rounds()
        if sc.churn_rate > 0 and sc.churn_seconds > 0:
            self._churn()
        if sc.burst > 0:
            self._burst()
        self._idle()
        self._restart()

    def _pods_by_peer(self) -> dict[str, list[tuple[str, str]]]:
        out: dict[str, list[tuple[str, str]]] = {p: [] for p in self.peers}
        with self.lock:
            for ref in self.pods.values():
                if ref.in_group and ref.ip:
                    out[ref.peer].append((ref.ip, ref.node))
        return out

    def _baseline(self) -> None:
        """The controller against the cluster before any peering or pod: its memory with ~0 pods."""
        with self.phase("baseline") as rec:
            ctl = self.start_controller("baseline")
            ready = self.wait_ready(ctl, 120)
            if ready is None:
                time.sleep(self.args.ready_wait)
            time.sleep(BASELINE_SETTLE_S)
            rss = []
            for _ in range(5):
                rss.append(self.sampler.sample()[1])
                time.sleep(0.1)
            rss.sort()
            ctl.check("the baseline")
            self.stop_controller()
        self.result["baseline"] = {
            "ready_s": ready,
            "rss_bytes": rss[len(rss) // 2],
            "cpu_s": rec["cpu_s"],
            "writes": len(self.watch.writes_between(rec["start"], rec["end"])),
        }

    def _startup(self) -> None:
        sc = self.scale
        with self.phase("start-up") as rec:
            cpu0 = rec["_cpu0"]
            ctl = self.start_controller("main")
            ready = self.wait_ready(ctl, sc.converge_timeout)
            left = sc.converge_timeout - (self.clock() - ctl.t_start)
            try:
                done = self.watch.wait_converged(self._pods_by_peer(), max(left, 1.0), self.alive)
            except BenchError as err:
                raise BenchError(
                    f"{err}\n  the controller is running; its log ({ctl.log_path}) ends:\n{ctl.log_tail(15)}"
                ) from None
            t_conv = max(done.values())
            cpu_conv = self.sampler.cpu()
            quiet = self.watch.wait_quiet(self.quiet, 120, self.alive)
            t_quiet = self.clock()
        writes = self.watch.writes_between(ctl.t_start, t_quiet)
        per_peer = _per_peer(writes)
        times = sorted(t - ctl.t_start for t in done.values())
        rss = self.sampler.rss_median(t_quiet - self.quiet, t_quiet) or self.sampler.sample()[1]
        self.result["startup"] = {
            "ready_s": ready,
            "converge_s": round(t_conv - ctl.t_start, 3),
            "converge_first_s": round(times[0], 3),
            "converge_median_s": round(times[len(times) // 2], 3),
            "peerings": len(self.peers),
            "peerings_converged": len(done),
            "writes": len(writes),
            "writes_per_peering_max": max(per_peer.values(), default=0),
            "writes_per_peering_mean": round(len(writes) / len(self.peers), 2),
            "writes_per_peering": per_peer,
            "cpu_s": round(cpu_conv - cpu0, 3),
            "cpu_until_quiet_s": rec["cpu_s"],
            "quiet_reached": quiet,
        }
        base = self.result["baseline"]["rss_bytes"]
        self.result["memory"] = {
            "baseline_rss_bytes": base,
            "converged_rss_bytes": rss,
            "pods_cached": self.pod_count,
            "bytes_per_pod": round((rss - base) / self.pod_count),
        }
        self.result["firewalls_after_startup"] = fc_summary(self.watch.objects(), self.watch._peer_of)
        _progress(
            f"[{self.clock():7.1f}s] {sc.name}: converged in {t_conv - ctl.t_start:.2f} s "
            f"({len(writes)} firewall writes), RSS {rss / 2**20:.0f} MiB"
        )

    def _api_latency(self) -> None:
        with self.phase("api server writes"):
            samples = self.api.measure(self.scale.api_writes)
        stats = bench_report.latency_stats(samples, None)
        self.api_p50 = stats["p50_s"]
        self.result["apiserver"] = {k: stats[k] for k in ("n", "p50_s", "p90_s", "p99_s", "max_s", "mean_s")}

    def _change(
        self, ref: PodRef, want: bool, write: Any, *, timeout: float | None = None
    ) -> tuple[float, float | None, bool]:
        """Register, write, wait: (run-clock time of the write, latency or None, already-as-wanted)."""
        exp = self.watch.expect(ref.peer, ref.ip or "", ref.node, want)
        t_write = self.clock()
        write()
        done = self.watch.wait(exp, timeout or self.scale.change_timeout, self.alive)
        return t_write, (None if done is None else done - t_write), exp.already

    def _latency_rounds(self) -> None:
        sc = self.scale
        rounds: list[dict[str, Any]] = []
        with self.phase("latency rounds"):
            for ref, live in zip(self.probes, self.probe_live):
                time.sleep(ROUND_GAP_S)
                assert ref.ip is not None
                ip = ref.ip
                t_w, latency, already = self._change(
                    ref, True, lambda live=live, ip=ip: set_status(self.kube, PODS, live, running(ip))
                )
                rounds.append({"t": round(t_w, 3), "peer": ref.peer, "latency_s": latency, "already": already})
                with self.lock:
                    self.pods[ref.name] = ref
            end = self.clock()
        stats = bench_report.latency_stats([r["latency_s"] for r in rounds], self.api_p50)
        # Writes per change: those after a round's write and before the next round's.
        bounds = [r["t"] for r in rounds] + [end]
        objects, nodes, peerings = [], [], []
        for a, b in zip(bounds, bounds[1:]):
            ws = self.watch.writes_between(a, b)
            objects.append(len({w.name for w in ws}))
            nodes.append(len({w.node for w in ws if w.node}))
            peerings.append(len({w.peer for w in ws}))
        self.result["latency"] = {
            **stats,
            "gap_s": ROUND_GAP_S,
            "samples_s": [None if r["latency_s"] is None else round(r["latency_s"], 4) for r in rounds],
            "anomalies": sum(r["already"] for r in rounds),
            "objects_written_mean": round(sum(objects) / len(objects), 2) if objects else None,
            "objects_written_max": max(objects, default=None),
            "single_node_objects_written_mean": round(sum(nodes) / len(nodes), 2) if nodes else None,
            "peerings_written_mean": round(sum(peerings) / len(peerings), 2) if peerings else None,
        }
        _progress(
            f"[{self.clock():7.1f}s] {sc.name}: pod to firewall p50 {stats['p50_s']} s, p99 {stats['p99_s']} s "
            f"(x{stats['p50_ratio']} / x{stats['p99_ratio']} the API server's write p50 {self.api_p50} s)"
        )

    # ----- churn -----
    def _pick(self, in_group: bool) -> PodRef | None:
        with self.lock:
            cands = [r for r in self.pods.values() if r.in_group == in_group and r.ip and r.name not in self.busy]
            if not cands:
                return None
            ref = self.rng.choice(cands)
            self.busy.add(ref.name)
            return ref

    def _release(self, ref: PodRef) -> None:
        with self.lock:
            self.busy.discard(ref.name)

    def _op_create(self, i: int) -> tuple[str, str, float, float | None, bool]:
        with self.lock:
            peer = self.rng.choice(self.peers)
        node = self.plan.random_node()
        ref = PodRef(f"churn-{i}", peer, node, self.plan.take(node))
        live = create_pod(self.kube, ref, with_ip=False)
        with self.lock:
            self.pod_count += 1
        ip = ref.ip or ""
        t, lat, already = self._change(ref, True, lambda: set_status(self.kube, PODS, live, running(ip)))
        with self.lock:
            self.pods[ref.name] = ref
        return "create", peer, t, lat, already

    def _op_delete(self, i: int) -> tuple[str, str, float, float | None, bool] | None:
        ref = self._pick(True)
        if ref is None:
            return None
        try:
            t, lat, already = self._change(
                ref, False, lambda: self.kube.delete(PODS, ref.name, namespace=ref.namespace, grace_seconds=0)
            )
            with self.lock:
                self.pods.pop(ref.name, None)
                self.pod_count -= 1
            return "delete", ref.peer, t, lat, already
        finally:
            self._release(ref)

    def _op_relabel(self, i: int) -> tuple[str, str, float, float | None, bool] | None:
        with self.lock:
            back = self.rng.random() < 0.5
        ref = self._pick(False) if back else None
        if ref is None:
            ref = self._pick(True)
        if ref is None:
            return None
        try:
            join = not ref.in_group
            body = {"metadata": {"labels": {ORIGIN: ref.peer if join else None}}}
            t, lat, already = self._change(
                ref, join, lambda: self.kube.patch(PODS, ref.name, body, namespace=ref.namespace)
            )
            ref.in_group = join
            return "relabel-in" if join else "relabel-out", ref.peer, t, lat, already
        finally:
            self._release(ref)

    def _churn(self) -> None:
        sc = self.scale
        ops = [self._op_create, self._op_delete, self._op_relabel]
        count = int(sc.churn_rate * sc.churn_seconds)
        samples: list[dict[str, Any]] = []
        errors_seen: list[str] = []
        workers = int(min(64, max(8, sc.churn_rate * 4)))
        with self.phase("churn") as rec:
            start = self.clock()

            def one(i: int) -> None:
                try:
                    got = ops[i % 3](i)
                except Exception as err:  # an API error, or the controller gone (the main loop reports that)
                    errors_seen.append(f"{type(err).__name__}: {err}"[:200])
                    return
                if got is not None:
                    op, peer, t, lat, already = got
                    entry = {"t": round(t - start, 3), "op": op, "peer": peer, "latency_s": lat, "already": already}
                    with self.lock:
                        samples.append(entry)

            pool = ThreadPoolExecutor(workers, thread_name_prefix="churn")
            futures = []
            try:
                for i in range(count):
                    due = start + i / sc.churn_rate
                    while self.clock() < due:
                        time.sleep(min(0.05, due - self.clock()))
                    self.alive()
                    futures.append(pool.submit(one, i))
                _, pending = wait_futures(futures, timeout=sc.change_timeout + 30)
            finally:
                pool.shutdown(wait=False, cancel_futures=True)
            rec["ops"] = count
        ordered = sorted(samples, key=lambda x: x["t"])
        for x in ordered:
            if x["latency_s"] is not None:
                x["latency_s"] = round(x["latency_s"], 4)
        stats = bench_report.latency_stats([x["latency_s"] for x in ordered], self.api_p50)
        writes = self.watch.writes_between(rec["start"], rec["end"])
        self.result["churn"] = {
            "rate_per_s": sc.churn_rate,
            "seconds": sc.churn_seconds,
            "changes": len(ordered),
            "ops": dict(Counter(x["op"] for x in ordered)),
            "not_finished": len(pending),
            "api_errors": len(errors_seen),
            "api_error_examples": errors_seen[:3],
            "anomalies": sum(bool(x["already"]) for x in ordered),
            "latency": stats,
            "by_op": {
                op: bench_report.latency_stats([x["latency_s"] for x in ordered if x["op"] == op], self.api_p50)
                for op in sorted({x["op"] for x in ordered})
            },
            "writes": len(writes),
            "cpu_s": rec["cpu_s"],
            "samples": [{k: v for k, v in x.items() if k != "already"} for x in ordered],
        }
        _progress(
            f"[{self.clock():7.1f}s] {sc.name}: churn {len(ordered)} changes, p50 {stats['p50_s']} s, "
            f"p99 {stats['p99_s']} s, {stats['timeouts']} timed out"
        )

    # ----- burst, idle, restart -----
    def _burst(self) -> None:
        sc = self.scale
        with self.phase("burst: create IP-less pods"):
            refs = spread("burst", sc.burst, self.peers, self.plan)
            lives = create_pods(self.kube, refs, with_ip=False, threads=sc.create_threads)
            with self.lock:
                self.pod_count += len(refs)
            self.watch.wait_quiet(self.quiet, 120, self.alive)
        with self.phase("burst") as rec:
            exps = [self.watch.expect(r.peer, r.ip or "", r.node, True) for r in refs]
            t_first = self.clock()

            def give_ip(k: int) -> None:
                set_status(self.kube, PODS, lives[k], running(refs[k].ip or ""))

            with ThreadPoolExecutor(8) as pool:
                list(pool.map(give_ip, range(len(refs))))
            t_last = self.clock()
            deadline = time.monotonic() + sc.change_timeout
            done = [self.watch.wait(e, max(0.0, deadline - time.monotonic()), self.alive) for e in exps]
            quiet = self.watch.wait_quiet(self.quiet, 120, self.alive)
            t_quiet = self.clock()
        with self.lock:
            for r in refs:
                self.pods[r.name] = r
        writes = self.watch.writes_between(t_first, t_quiet)
        per_peer = _per_peer(writes)
        finished = [t for t in done if t is not None]
        self.result["burst"] = {
            "changes": len(refs),
            "write_seconds": round(t_last - t_first, 3),
            "writes": len(writes),
            "writes_per_peering_max": max(per_peer.values(), default=0),
            "writes_per_peering_mean": round(len(writes) / len(self.peers), 2),
            "writes_per_peering": per_peer,
            "not_covered": len(done) - len(finished),
            "anomalies": sum(e.already for e in exps),
            "covered_after_last_s": round(max(finished) - t_last, 3) if finished else None,
            "settled_after_last_s": round(max(w.t for w in writes) - t_last, 3) if writes else None,
            "quiet_reached": quiet,
            "cpu_s": rec["cpu_s"],
        }
        b = self.result["burst"]
        for key in ("covered_after_last_s", "settled_after_last_s"):
            b[key.replace("_s", "_ratio")] = bench_report.ratio(b[key], self.api_p50)
        _progress(
            f"[{self.clock():7.1f}s] {sc.name}: burst of {len(refs)}: {len(writes)} firewall writes, "
            f"settled {b['settled_after_last_s']} s after the last change"
        )

    def _idle(self) -> None:
        self.watch.wait_quiet(self.quiet, 120, self.alive)
        with self.phase("idle") as rec:
            end = time.monotonic() + self.scale.idle_seconds
            while time.monotonic() < end:
                self.alive()
                time.sleep(min(0.2, max(0.0, end - time.monotonic())))
            self.watch.drain()
        writes = self.watch.writes_between(rec["start"], self.clock())
        self.result["idle"] = {"seconds": self.scale.idle_seconds, "writes": len(writes), "cpu_s": rec["cpu_s"]}

    def _restart(self) -> None:
        sc = self.scale
        with self.phase("restart") as rec:
            t_stop = self.clock()
            self.stop_controller()
            ctl = self.start_controller("restarted")
            ready = self.wait_ready(ctl, sc.converge_timeout)
            if ready is None:
                time.sleep(self.args.ready_wait)
            self.watch.wait_converged(self._pods_by_peer(), sc.converge_timeout, self.alive)
            t_obs = self.clock()
            while self.clock() < t_obs + sc.restart_observe_seconds:
                self.alive()
                time.sleep(0.2)
            self.watch.drain()
            t_end = self.clock()
        writes = self.watch.writes_between(t_stop, t_end)
        rss = self.sampler.rss_median(t_obs, t_end)
        self.result["restart"] = {
            "ready_s": ready,
            "writes": len(writes),
            "writes_per_peering_max": max(_per_peer(writes).values(), default=0),
            "observed_s": round(t_end - t_stop, 2),
            "cpu_s": rec["cpu_s"],
        }
        mem = self.result["memory"]
        mem["restart_rss_bytes"] = rss
        mem["pods_cached_at_restart"] = self.pod_count
        if rss:
            mem["bytes_per_pod_restart"] = round((rss - mem["baseline_rss_bytes"]) / self.pod_count)

    def _finish(self) -> None:
        r = self.result
        r["firewalls"] = fc_summary(self.watch.objects(), self.watch._peer_of)
        r["cpu"] = {
            "total_s": round(self.sampler.cpu(), 3),
            "per_phase_s": {p["name"]: p["cpu_s"] for p in self.phases},
        }
        times = os.times()
        r["cpu"]["bench_s"] = round(times.user + times.system, 2)  # this process: the workload, watch, coverage
        r["cpu"]["others_s"] = cpu_by_command(os.getpid())  # the control plane (and a live controller), so far
        r["watch"] = {
            "writes_seen": len(self.watch.writes),
            "relists": self.watch.relists,
            "errors": self.watch.watch_errors[-5:],
            "evaluation_errors": self.watch.evaluation_errors,
        }
        r["instances"] = self.instances
        r["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
        r["duration_s"] = round(self.clock(), 1)
        r["timeline"] = {
            "phases": self.phases,
            "process": [list(s) for s in self.sampler.samples],
            "apiserver_writes": [[t, round(v, 5)] for t, v in self.api.samples],
            "firewall_writes": [[round(w.t, 3), w.peer, w.name, w.type, w.bytes] for w in self.watch.writes],
        }


def resolve_scales(args: argparse.Namespace) -> list[Scale]:
    out = []
    for name in [s.strip() for s in args.scale.split(",") if s.strip()]:
        if name not in SCALES:
            raise SystemExit(f"bench/run.py: unknown scale {name!r} (choose from {', '.join(SCALES)})")
        sc = SCALES[name]
        overrides = {f: getattr(args, f) for f in SCALE_FIELDS if f != "name" and getattr(args, f, None) is not None}
        out.append(replace(sc, **overrides))
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--scale", default="smoke", help="smoke, 1k, 10k, 100k, or several comma-separated (default smoke)")
    p.add_argument("--json", metavar="PATH", help="write the results here ('-': stdout, instead of the table)")
    p.add_argument("--out", metavar="DIR", help="write PNG plots here (needs matplotlib: pip install -e '.[bench]')")
    p.add_argument(
        "--controller-cmd",
        metavar="CMD",
        help="run this controller instead of liqosec; placeholders {kubeconfig} {health_addr} {health_port} "
        "{metrics_addr} {metrics_port} {batch_window} {firewall_scope} {python} {repo}; KUBECONFIG is set too. "
        "Ready = /readyz on {health_port} answers 200 when the command uses it, else --ready-wait seconds",
    )
    p.add_argument("--firewall-scope", choices=("all-nodes", "per-node"), help="liqosec run --firewall-scope")
    p.add_argument("--batch-window", metavar="auto|SECONDS", help="liqosec run --batch-window (default: its own)")
    p.add_argument("--layout", choices=("scattered", "per-node"), default="scattered", help="pod addresses")
    p.add_argument(
        "--policy",
        default="example-1",
        choices=("example-1", "protected-borders", "default-deny", "deny-offloaded-local", "segregation"),
        help="every peering's policy: Example 1 (default), or a shape bench/compile_bench.py measures",
    )
    p.add_argument(
        "--coverage",
        choices=sorted(COVERAGES),
        help="when a pod counts as in its firewall (default: evaluate for liqosec, mentions for --controller-cmd)",
    )
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    p.add_argument("--seed", type=int, default=7)
    p.add_argument(
        "--crds",
        action="append",
        metavar="DIR",
        help="install these CRD directories instead of Liqo's (hack/liqo-crds) and ours: for --controller-cmd",
    )
    p.add_argument("--quiet", type=float, help="seconds without a firewall write that count as settled")
    p.add_argument("--ready-wait", type=float, default=5.0, help="for a command without {health_port}")
    for f, kind in (
        ("pods", int),
        ("peerings", int),
        ("nodes", int),
        ("rounds", int),
        ("churn_rate", float),
        ("churn_seconds", float),
        ("burst", int),
        ("idle_seconds", float),
        ("restart_observe_seconds", float),
        ("converge_timeout", float),
        ("change_timeout", float),
        ("sample_interval", float),
        ("api_writes", int),
        ("create_threads", int),
    ):
        p.add_argument(f"--{f.replace('_', '-')}", dest=f, type=kind, help="override the scale's value")
    args = p.parse_args(argv)
    if args.batch_window is not None:
        try:
            parse_batch_window(args.batch_window)
        except argparse.ArgumentTypeError as err:
            p.error(f"--batch-window: {err}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    scales = resolve_scales(args)
    runs: list[dict[str, Any]] = []
    failed: str | None = None
    for scale in scales:
        bench = Bench(scale, args)
        try:
            runs.append(bench.run())
        except BenchError as err:
            failed = f"{scale.name}: {err}"
        except Exception as err:  # a bench bug or a broken cluster: still write what was measured
            failed = f"{scale.name}: {type(err).__name__}: {err}"
        except KeyboardInterrupt:
            bench.result.setdefault("error", "interrupted")
            failed = f"{scale.name}: interrupted"
        if failed:
            runs.append(bench.result)
            logs = getattr(bench, "logdir", None)
            if logs:
                failed += f"\n(controller logs kept in {logs})"
            break
        logs = getattr(bench, "logdir", None)
        if logs:
            for f in logs.iterdir():
                f.unlink()
            logs.rmdir()
    doc = {"schema": bench_report.SCHEMA, "runs": runs}
    if args.json == "-":
        print(json.dumps(doc, indent=1))
    else:
        print(bench_report.table(runs))
        if args.json:
            Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")
    if args.out:
        try:
            import plot
        except ImportError as err:
            _progress(f"PNG plots skipped: {err} (pip install -e '.[bench]' installs matplotlib)")
        else:
            for path in plot.write_all(runs, Path(args.out)):
                _progress(f"wrote {path}")
    if failed:
        print(f"bench/run.py: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
