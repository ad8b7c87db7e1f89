"""What bench/run.py watches: the firewalls (writes, coverage of pod changes), the controller
process (CPU, RSS, readiness, exit), and the API server's own write latency.

Firewalls. `FirewallWatch` lists and then watches every FirewallConfiguration of the cluster
from the bench's own client. Each event is stamped when it is read, then applied in order to a
copy of the store by a second thread, so a stamp is when a watcher of the API server first
could see that state. An event is a write (create, update or delete: a new resourceVersion);
it belongs to a peering by the owner label `security.liqo.io/peering-connectivity`, else by
its tenant namespace `liqo-tenant-<peer>`.

Coverage is pluggable (`COVERAGES`):
- `evaluate` (liqosec's output): the peering's FirewallConfigurations that apply to the pod's
  node (all-nodes ones, and single-node ones whose `networking.liqo.io/firewall-unique` is the
  node) drop a packet from the pod to a non-allowed address (`web`, 10.1.1.10), as nftables
  would (liqosec.firewall.evaluate, through bench/reconcile_latency.py's `isolates`);
- `mentions` (any controller): the pod's IP appears, as a whole address, in the JSON of some
  FirewallConfiguration of the peering. Weaker: an address inside a range is not seen.
A change is timed from just before its API write until the first watched state where
`covered(pod) == wanted` (True after a create or a relabel into the group, False after a delete
or a relabel out of it).

Process. `ProcessSampler` reads utime+stime (/proc/PID/stat) and VmRSS (/proc/PID/status)
of the controller and its descendants every interval; CPU is cumulative over the run's
controller instances (a restart adds the new process's CPU on top).
"""

from __future__ import annotations

import functools
import ipaddress
import json
import os
import queue
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from reconcile_latency import LOCAL_POD, isolates

import liqosec.firewall.evaluate
from liqosec.api.liqo import TENANT_PREFIX
from liqosec.compiler.firewallconfiguration import OWNER_LABEL, SUBCATEGORY_LABEL
from liqosec.controller.resources import FIREWALL_CONFIGURATIONS
from liqosec.kube import errors
from liqosec.kube.client import KubeClient, ResourceRef

UNIQUE_LABEL = "networking.liqo.io/firewall-unique"  # Liqo's: the node of a single-node firewall
SINGLE_NODE = "single-node"
CONFIGMAPS = ResourceRef("", "v1", "configmaps", True, "ConfigMap")
WATCH_TIMEOUT_S = 60
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


# The bench evaluates many packets against the same rules; parsing a match's address is a pure
# function of its text, so memoising it (in this process only) makes evaluate 5-8x faster and keeps
# the bench's own CPU, which competes with the controller's, small.
liqosec.firewall.evaluate.parse_value = functools.lru_cache(maxsize=1 << 18)(liqosec.firewall.evaluate.parse_value)


class BenchError(RuntimeError):
    """The run cannot go on; the message says what happened and what was seen."""


# ----- coverage ---------------------------------------------------------------------------------


def _labels(obj: dict[str, Any]) -> dict[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}


def applies_to_node(fc: dict[str, Any], node: str) -> bool:
    labels = _labels(fc)
    return labels.get(SUBCATEGORY_LABEL) != SINGLE_NODE or labels.get(UNIQUE_LABEL) == node


class Coverage(Protocol):
    name: str

    def covered(self, fcs: list[dict[str, Any]], ip: str, node: str) -> bool: ...


class EvaluateCoverage:
    """The firewalls on the pod's node drop its traffic to a non-allowed address."""

    name = "evaluate"
    other = LOCAL_POD

    def covered(self, fcs: list[dict[str, Any]], ip: str, node: str) -> bool:
        try:
            return isolates([fc for fc in fcs if applies_to_node(fc, node)], ip)
        except (KeyError, TypeError, ValueError):  # not liqosec's shape: never covers
            return False


class MentionsCoverage:
    """The pod's IP is written in some firewall of the peering, alone or inside a small range or CIDR.

    For a controller whose output `evaluate` cannot read. Literals wider than `MAX_SPAN`
    addresses are taken for cluster CIDRs, not pods, and ignored.
    """

    name = "mentions"
    MAX_SPAN = 256
    LITERAL = re.compile(r"(?<![\d.])(\d{1,3}(?:\.\d{1,3}){3})(?:/(\d{1,2})|-(\d{1,3}(?:\.\d{1,3}){3}))?(?![\d.])")

    def __init__(self) -> None:
        self._spans: dict[tuple[str, str], tuple[str, list[tuple[int, int]]]] = {}  # (ns, name) -> (rv, spans)
        self._lock = threading.Lock()

    def _spans_of(self, fc: dict[str, Any]) -> list[tuple[int, int]]:
        meta = fc.get("metadata") or {}
        key, rv = (meta.get("namespace", ""), meta.get("name", "")), meta.get("resourceVersion", "")
        with self._lock:
            cached = self._spans.get(key)
        if cached is not None and cached[0] == rv and rv:
            return cached[1]
        spans = []
        for m in self.LITERAL.finditer(json.dumps(fc.get("spec"))):
            try:
                start = int(ipaddress.IPv4Address(m.group(1)))
                if m.group(2) is not None:
                    net = ipaddress.IPv4Network(f"{m.group(1)}/{m.group(2)}", strict=False)
                    start, end = int(net.network_address), int(net.broadcast_address)
                elif m.group(3) is not None:
                    end = int(ipaddress.IPv4Address(m.group(3)))
                else:
                    end = start
            except ValueError:
                continue
            if 0 <= end - start < self.MAX_SPAN:
                spans.append((start, end))
        with self._lock:
            self._spans[key] = (rv, spans)
        return spans

    def covered(self, fcs: list[dict[str, Any]], ip: str, node: str) -> bool:
        addr = int(ipaddress.IPv4Address(ip))
        return any(start <= addr <= end for fc in fcs for start, end in self._spans_of(fc))


COVERAGES: dict[str, Callable[[], Coverage]] = {"evaluate": EvaluateCoverage, "mentions": MentionsCoverage}


# ----- firewall watch ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Write:
    t: float  # run clock, when the bench read the event
    peer: str | None
    name: str  # namespace/name
    type: str  # ADDED, MODIFIED, DELETED
    node: str | None  # firewall-unique of a single-node firewall
    bytes: int


@dataclass
class Expectation:
    peer: str
    ip: str
    node: str
    want: bool
    t_done: float | None = None
    already: bool = False  # the state was already as wanted when registered (a bench bug if it happens)


@dataclass
class _Goal:
    pods: list[tuple[str, str]]  # (ip, node), all must be covered
    t_done: float | None = None
    first_missing: int = 0


class FirewallWatch:
    """The cluster's FirewallConfigurations as a watcher sees them, with write log and coverage waits."""

    def __init__(self, kube: KubeClient, peers: Iterable[str], coverage: Coverage, clock: Callable[[], float]) -> None:
        self.kube = kube
        self.peers = set(peers)
        self.coverage = coverage
        self.clock = clock
        self.writes: list[Write] = []
        self.relists = 0
        self.watch_errors: list[str] = []
        self.evaluation_errors = 0
        self._store: dict[str | None, dict[str, dict[str, Any]]] = defaultdict(dict)
        self._cond = threading.Condition()
        self._queue: queue.Queue[tuple[float, str, Any]] = queue.Queue()
        self._expect: dict[str, list[Expectation]] = defaultdict(list)
        self._goals: dict[str, _Goal] = {}
        self._stop = threading.Event()
        self._rv = ""
        self._applied = 0
        self._queued = 0
        self.last_write_t = float("-inf")
        self._threads: list[threading.Thread] = []

    # -- lifecycle --
    def start(self) -> None:
        self._relist(initial=True)
        for target in (self._read, self._apply_loop):
            t = threading.Thread(target=target, daemon=True, name=f"fcwatch-{target.__name__}")
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        self._queue.put((0.0, "STOP", None))

    def _relist(self, initial: bool = False) -> None:
        items: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            page = self.kube.list(FIREWALL_CONFIGURATIONS, None, limit=100, continue_token=token)
            items += page.get("items") or []
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                break
        self._rv = (page.get("metadata") or {}).get("resourceVersion", "")
        if initial:
            with self._cond:
                for obj in items:
                    self._store[self._peer_of(obj)][self._key(obj)] = obj
        else:
            self.relists += 1
            self._queued += 1
            self._queue.put((self.clock(), "RELIST", items))

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                stream = self.kube.watch(
                    FIREWALL_CONFIGURATIONS, None, resource_version=self._rv, timeout_seconds=WATCH_TIMEOUT_S
                )
                for event in stream:
                    t = self.clock()
                    if self._stop.is_set():
                        stream.close()
                        return
                    obj = event.get("object") or {}
                    rv = (obj.get("metadata") or {}).get("resourceVersion")
                    if rv:
                        self._rv = rv
                    if event.get("type") in ("ADDED", "MODIFIED", "DELETED"):
                        self._queued += 1
                        self._queue.put((t, str(event["type"]), obj))
            except errors.Gone:
                self._relist()
            except Exception as err:  # a broken watch: retry from the last resourceVersion
                if self._stop.is_set():
                    return
                self.watch_errors.append(f"{type(err).__name__}: {err}"[:300])
                time.sleep(0.2)

    def _apply_loop(self) -> None:
        while True:
            t, kind, obj = self._queue.get()
            if kind == "STOP":
                return
            with self._cond:
                touched: set[str | None] = set()
                if kind == "RELIST":
                    fresh = {self._key(o): o for o in obj}
                    for store in self._store.values():
                        for key in [k for k in store if k not in fresh]:
                            touched.add(self._peer_of(store.pop(key)))
                    for key, o in fresh.items():
                        self._store[self._peer_of(o)][key] = o
                        touched.add(self._peer_of(o))
                else:
                    peer, key = self._peer_of(obj), self._key(obj)
                    if kind == "DELETED":
                        self._store[peer].pop(key, None)
                    else:
                        self._store[peer][key] = obj
                    labels = _labels(obj)
                    node = labels.get(UNIQUE_LABEL) if labels.get(SUBCATEGORY_LABEL) == SINGLE_NODE else None
                    size = len(json.dumps(obj, separators=(",", ":")))
                    self.writes.append(Write(t, peer, key, kind, node, size))
                    self.last_write_t = t
                    touched.add(peer)
                for peer in touched:
                    if peer is not None:
                        self._check(peer, t)
                self._applied += 1
                self._cond.notify_all()

    # -- helpers (under the lock) --
    @staticmethod
    def _key(obj: dict[str, Any]) -> str:
        meta = obj.get("metadata") or {}
        return f"{meta.get('namespace', '')}/{meta.get('name', '')}"

    def _peer_of(self, obj: dict[str, Any]) -> str | None:
        owner = _labels(obj).get(OWNER_LABEL)
        if owner in self.peers:
            return owner
        ns = (obj.get("metadata") or {}).get("namespace") or ""
        if ns.startswith(TENANT_PREFIX) and ns[len(TENANT_PREFIX) :] in self.peers:
            return ns[len(TENANT_PREFIX) :]
        return None

    def _covered(self, peer: str, ip: str, node: str) -> bool:
        try:
            return self.coverage.covered(list(self._store[peer].values()), ip, node)
        except Exception:
            self.evaluation_errors += 1
            return False

    def _check(self, peer: str, t: float) -> None:
        pending = self._expect.get(peer)
        if pending:
            still = []
            for exp in pending:
                if self._covered(peer, exp.ip, exp.node) == exp.want:
                    exp.t_done = t
                else:
                    still.append(exp)
            self._expect[peer] = still
        goal = self._goals.get(peer)
        if goal is not None and goal.t_done is None and self._goal_met(peer, goal):
            goal.t_done = t

    def _goal_met(self, peer: str, goal: _Goal) -> bool:
        n = len(goal.pods)
        for step in range(n):  # start where it failed last time: that pod is the likeliest to fail again
            i = (goal.first_missing + step) % n
            ip, node = goal.pods[i]
            if not self._covered(peer, ip, node):
                goal.first_missing = i
                return False
        return True

    # -- public waits --
    def expect(self, peer: str, ip: str, node: str, want: bool) -> Expectation:
        """Register before making the change: the first state after it where covered == want completes it."""
        exp = Expectation(peer, ip, node, want)
        with self._cond:
            if self._covered(peer, ip, node) == want:
                exp.already = True
            else:
                self._expect[peer].append(exp)
        return exp

    def forget(self, exp: Expectation) -> None:
        with self._cond:
            if exp in self._expect.get(exp.peer, []):
                self._expect[exp.peer].remove(exp)

    def wait(self, exp: Expectation, timeout: float, alive: Callable[[], None]) -> float | None:
        """The run-clock time the expectation was met; None after `timeout` seconds or when it was met already."""
        deadline = time.monotonic() + timeout
        while True:
            with self._cond:
                if exp.t_done is not None or exp.already:
                    return exp.t_done
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(min(left, 0.5))
                if exp.t_done is not None:
                    return exp.t_done
            alive()
        self.forget(exp)
        return None

    def wait_converged(
        self, pods_by_peer: dict[str, list[tuple[str, str]]], timeout: float, alive: Callable[[], None]
    ) -> dict[str, float]:
        """Wait until every peering's firewall covers all its pods; run-clock time per peering."""
        with self._cond:
            for peer, pods in pods_by_peer.items():
                goal = _Goal(list(pods))
                self._goals[peer] = goal
                if self._goal_met(peer, goal):
                    goal.t_done = self.clock()
        deadline = time.monotonic() + timeout
        try:
            while True:
                with self._cond:
                    missing = [p for p in pods_by_peer if self._goals[p].t_done is None]
                    if not missing:
                        return {p: self._goals[p].t_done or 0.0 for p in pods_by_peer}
                    if time.monotonic() > deadline:
                        raise BenchError(self._not_converged(missing, pods_by_peer, timeout))
                    self._cond.wait(0.5)
                alive()
        finally:
            with self._cond:
                for peer in pods_by_peer:
                    self._goals.pop(peer, None)

    def _not_converged(self, missing: list[str], pods_by_peer: dict[str, list[tuple[str, str]]], timeout: float) -> str:
        lines = [
            f"the firewalls did not cover every pod within {timeout:.1f} s: "
            f"{len(missing)} of {len(pods_by_peer)} peerings not converged (coverage: {self.coverage.name})"
        ]
        for peer in missing[:5]:
            uncovered = [ip for ip, node in pods_by_peer[peer] if not self._covered(peer, ip, node)]
            objs = sorted(self._store[peer])
            lines.append(
                f"  {peer}: {len(uncovered)} of {len(pods_by_peer[peer])} pods uncovered (e.g. {uncovered[:3]}); "
                f"firewalls seen: {objs[:4] or 'none'}{' ...' if len(objs) > 4 else ''}"
            )
        lines.append(f"  firewall writes seen so far: {len(self.writes)}; watch errors: {self.watch_errors[-2:]}")
        if self.coverage.name == "mentions" and self.writes:
            lines.append(
                "  (coverage 'mentions' sees addresses written out, alone or in small ranges; a firewall that "
                "spells a group as a wide range with exceptions, as liqosec does, needs --coverage evaluate)"
            )
        return "\n".join(lines)

    def drain(self, timeout: float = 10.0) -> None:
        """Until every event read so far is applied."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._applied < self._queued and time.monotonic() < deadline:
                self._cond.wait(0.1)

    def wait_quiet(self, quiet: float, max_wait: float, alive: Callable[[], None], since: float | None = None) -> bool:
        """Until no firewall write for `quiet` seconds (counted from `since` at the earliest); False after max_wait."""
        deadline = time.monotonic() + max_wait
        start = self.clock() if since is None else since
        while True:
            self.drain(1.0)
            now = self.clock()
            if now - max(self.last_write_t, start) >= quiet:
                return True
            if time.monotonic() > deadline:
                return False
            alive()
            time.sleep(min(0.1, quiet / 4))

    def writes_between(self, t1: float, t2: float) -> list[Write]:
        with self._cond:
            return [w for w in self.writes if t1 <= w.t <= t2]

    def objects(self) -> list[dict[str, Any]]:
        with self._cond:
            return [o for store in self._store.values() for o in store.values()]

    def objects_of(self, peer: str) -> list[dict[str, Any]]:
        with self._cond:
            return list(self._store[peer].values())


# ----- the controller process -------------------------------------------------------------------


def _read_proc(pid: int) -> tuple[int, int, int] | None:
    """(ppid, utime+stime ticks, rss bytes) of a live process, or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
        with open(f"/proc/{pid}/statm", "rb") as f:
            statm = f.read().split()
    except OSError:
        return None
    rest = stat.rpartition(")")[2].split()
    # after ")": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime ...
    return int(rest[1]), int(rest[11]) + int(rest[12]), int(statm[1]) * PAGE


def process_tree(root: int) -> dict[int, tuple[int, int]]:
    """pid -> (cpu ticks, rss bytes) for `root` and its descendants."""
    info: dict[int, tuple[int, int, int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            got = _read_proc(int(entry))
            if got is not None:
                info[int(entry)] = got
    out: dict[int, tuple[int, int]] = {}
    frontier = [root] if root in info else []
    while frontier:
        pid = frontier.pop()
        out[pid] = info[pid][1:]
        frontier += [p for p, v in info.items() if v[0] == pid and p not in out]
    return out


def cpu_by_command(root: int) -> dict[str, float]:
    """CPU seconds so far of `root`'s live descendants, summed by command name (etcd, kube-apiserver, ...)."""
    out: dict[str, float] = {}
    for pid, (ticks, _) in process_tree(root).items():
        if pid == root:
            continue
        try:
            argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        name = Path(argv0).name or "?"
        out[name] = round(out.get(name, 0.0) + ticks / CLK_TCK, 2)
    return out


class ProcessSampler:
    """CPU seconds (cumulative over instances) and RSS of the attached controller, sampled in a thread."""

    def __init__(self, interval: float, clock: Callable[[], float]) -> None:
        self.interval = interval
        self.tree = False  # count descendants too (a wrapper command's children)
        self.clock = clock
        self.samples: list[tuple[float, float, int, str]] = []  # (t, cumulative cpu s, rss bytes, instance)
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._label = ""
        self._offset = 0.0  # CPU of instances already detached
        self._last_cpu = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="procsampler")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def attach(self, pid: int, label: str, *, tree: bool = False) -> None:
        with self._lock:
            self._pid, self._label, self._last_cpu, self.tree = pid, label, 0.0, tree

    def detach(self) -> None:
        """Before stopping the process: its CPU so far is added to the offset."""
        self.sample()
        with self._lock:
            self._offset += self._last_cpu
            self._pid, self._last_cpu = None, 0.0

    def sample(self) -> tuple[float, int]:
        """(cumulative CPU s, RSS bytes) now, recorded as a sample."""
        with self._lock:
            pid, label = self._pid, self._label
        if pid is None:
            return self._offset, 0
        if self.tree:
            tree = process_tree(pid)
        else:
            got = _read_proc(pid)
            tree = {pid: got[1:]} if got else {}
        if not tree:
            return self._offset + self._last_cpu, 0
        cpu = sum(c for c, _ in tree.values()) / CLK_TCK
        rss = sum(r for _, r in tree.values())
        with self._lock:
            if self._pid != pid:
                return self._offset, 0
            self._last_cpu = max(self._last_cpu, cpu)
            total = self._offset + self._last_cpu
            self.samples.append((round(self.clock(), 3), round(total, 3), rss, label))
        return total, rss

    def cpu(self) -> float:
        return self.sample()[0]

    def rss_median(self, t1: float, t2: float) -> int | None:
        values = sorted(s[2] for s in self.samples if t1 <= s[0] <= t2 and s[2] > 0)
        return values[len(values) // 2] if values else None

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()


def _die_with_parent() -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


@dataclass
class ControllerProcess:
    """One controller instance run as a subprocess, its output in a log file."""

    argv: list[str]
    log_path: Path
    label: str
    health_port: int | None = None
    metrics_port: int | None = None
    env: dict[str, str] = field(default_factory=dict)
    popen: subprocess.Popen[bytes] | None = None
    t_start: float = 0.0

    def start(self, clock: Callable[[], float]) -> None:
        log = open(self.log_path, "ab")  # the child keeps its own descriptor
        self.t_start = clock()
        try:
            self.popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        except OSError as err:
            raise BenchError(f"cannot start the controller {self.argv[:3]}...: {err}") from None
        finally:
            log.close()

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def check(self, during: str = "") -> None:
        if self.popen is not None and self.popen.poll() is not None:
            raise BenchError(
                f"the controller ({self.label}) exited with code {self.popen.returncode}"
                f"{' during ' + during if during else ''}; its log ({self.log_path}) ends:\n{self.log_tail()}"
            )

    def wait_ready(self, timeout: float, clock: Callable[[], float]) -> float | None:
        """Run-clock time /readyz first answered 200, or None when there is no health port to ask."""
        if self.health_port is None:
            return None
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.health_port}/readyz"
        last = "no answer"
        while time.monotonic() < deadline:
            self.check("start-up")
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if resp.status == 200:
                        return clock()
            except urllib.error.HTTPError as err:
                last = f"HTTP {err.code}: {err.read()[:200].decode(errors='replace')}"
            except (urllib.error.URLError, OSError) as err:
                last = str(err)
            time.sleep(0.02)
        raise BenchError(
            f"the controller ({self.label}) was not ready within {timeout:g} s ({url}: {last}); "
            f"its log ends:\n{self.log_tail()}"
        )

    def scrape(self, names: Iterable[str]) -> dict[str, float]:
        """Sum of each named Prometheus counter over its labels, from /metrics (empty without a metrics port)."""
        if self.metrics_port is None or not self.alive():
            return {}
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as resp:
                text = resp.read().decode(errors="replace")
        except (urllib.error.URLError, OSError):
            return {}
        out: dict[str, float] = {}
        for line in text.splitlines():
            for name in names:
                if line.startswith(name) and line[len(name) : len(name) + 1] in ("{", " "):
                    try:
                        out[name] = out.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
                    except ValueError:
                        pass
        return out

    def stop(self, grace: float = 15.0) -> int | None:
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        return self.popen.returncode

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


# ----- the API server's own write latency -------------------------------------------------------


class ApiWrites:
    """Times merge-patches of one ConfigMap: the API server's own write latency, seen by this client."""

    NAME = "liqosec-bench-api-probe"

    def __init__(self, kube: KubeClient, clock: Callable[[], float], namespace: str = "default") -> None:
        self.kube, self.clock, self.namespace = kube, clock, namespace
        self.samples: list[tuple[float, float]] = []  # (t, seconds)
        self._n = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        try:
            kube.create(
                CONFIGMAPS,
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": self.NAME}, "data": {"n": "0"}},
                namespace=namespace,
            )
        except errors.AlreadyExists:
            pass

    def write(self) -> float:
        with self._lock:
            self._n += 1
            n = self._n
        started = time.perf_counter()
        self.kube.patch(CONFIGMAPS, self.NAME, {"data": {"n": str(n)}}, namespace=self.namespace)
        took = time.perf_counter() - started
        with self._lock:
            self.samples.append((round(self.clock(), 3), took))
        return took

    def measure(self, count: int, pause: float = 0.02) -> list[float]:
        out = []
        for _ in range(count):
            out.append(self.write())
            time.sleep(pause)
        return out

    def start_background(self, period: float) -> None:
        """One write every `period` seconds until stop(): the API server's latency over the whole run."""

        def loop() -> None:
            while not self._stop.wait(period):
                try:
                    self.write()
                except errors.ApiError:
                    pass

        self._thread = threading.Thread(target=loop, daemon=True, name="apiwrites")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
