"""A node and its endpoints in network namespaces, for probing nftables with real packets.

Topology: one "node" namespace forwards (ip_forward=1) between veth pairs,
one per endpoint namespace. Each endpoint holds its address as a /32 on
`eth0`, reaches everything through the gateway 169.254.1.1 (an address every
node-side veth carries, as Calico does), and the node routes each endpoint's
/32 to its veth. So any IPv4 address of a scenario works, whatever subnet it
is in, and every packet between two endpoints crosses the node's forward hook.

Guarantees:
- Only namespaces named with this topology's unique prefix
  (`lqs-<pid>-<n>-`) are created, and `close()` (also `__exit__`) deletes
  them all, whatever failed; `sweep(prefix)` removes leftovers.
- Listeners are in-process sockets created inside each endpoint namespace
  (setns on the calling thread, then back), served by one acceptor thread
  that stops on `close()` or after `LISTENER_LIFETIME` seconds.
- `probe` is a TCP connect with a timeout from the source namespace: True
  when the handshake completes (request and reply both forwarded).
Caller duties: run as root with `ip` and `nft` present; use addresses only
inside these namespaces; call `close()`.
"""

from __future__ import annotations

import ctypes
import itertools
import json
import os
import selectors
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

PORT = 8080
GATEWAY = "169.254.1.1"
# A dropped SYN shows as a timeout; veth round trips are microseconds, so half a
# second separates drop from accept with a wide margin even on a loaded host.
CONNECT_TIMEOUT = 0.5
# Probes mostly wait (a drop waits out the timeout), so many threads cost little;
# 64 keeps a 15-endpoint scenario (210 cells) under a few seconds.
PROBE_WORKERS = 64
# Hard bound on a listener's life, in case a caller forgets to close; long enough
# for a soak of a thousand random policies on one topology.
LISTENER_LIFETIME = 3600.0
COMMAND_TIMEOUT = 20.0
MAX_ENDPOINTS = 64
NETNS_DIR = Path("/var/run/netns")
_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
_counter = itertools.count()


class CommandError(RuntimeError):
    """A command in the harness failed; the message carries its stderr."""


def run(args: Sequence[str], *, stdin: str | None = None, timeout: float = COMMAND_TIMEOUT) -> str:
    """Run one command, bounded in time, raising CommandError with stderr on failure."""
    proc = subprocess.run(list(args), input=stdin, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise CommandError(f"{' '.join(args)}: exit {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


@contextmanager
def in_netns(name: str) -> Iterator[None]:
    """Switch the calling thread into a named network namespace, and back."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(str(NETNS_DIR / name), os.O_RDONLY)
    try:
        if _libc.setns(target, _CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {name}")
        try:
            yield
        finally:
            if _libc.setns(home, _CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back home")  # thread is unusable now
    finally:
        os.close(target)
        os.close(home)


def sweep(prefix: str) -> list[str]:
    """Delete leftover namespaces whose name starts with prefix."""
    gone = []
    for path in sorted(NETNS_DIR.glob(f"{prefix}*")) if NETNS_DIR.exists() else []:
        subprocess.run(["ip", "netns", "del", path.name], capture_output=True, timeout=COMMAND_TIMEOUT, check=False)
        gone.append(path.name)
    return gone


@dataclass(frozen=True)
class Endpoint:
    name: str
    ip: str
    netns: str


class Topology:
    """A node namespace routing between one namespace per endpoint address."""

    def __init__(self, addresses: Sequence[str], *, prefix: str | None = None) -> None:
        ips = list(dict.fromkeys(addresses))
        if not ips or len(ips) > MAX_ENDPOINTS:
            raise ValueError(f"need 1..{MAX_ENDPOINTS} distinct addresses, got {len(ips)}")
        if GATEWAY in ips:
            raise ValueError(f"{GATEWAY} is the harness gateway and cannot be an endpoint")
        self.prefix = prefix or f"lqs-{os.getpid()}-{next(_counter)}-"
        self.node = f"{self.prefix}node"
        self.endpoints = {ip: Endpoint(name=f"e{i}", ip=ip, netns=f"{self.prefix}e{i}") for i, ip in enumerate(ips)}
        self._listeners: list[socket.socket] = []
        self._stop = threading.Event()
        self._acceptor: threading.Thread | None = None
        try:
            self._build()
            self._listen()
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Topology:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def _build(self) -> None:
        names = [self.node] + [e.netns for e in self.endpoints.values()]
        run(["ip", "-batch", "-"], stdin="".join(f"netns add {n}\n" for n in names))
        run(["ip", "netns", "exec", self.node, "sysctl", "-qw", "net.ipv4.ip_forward=1",
             "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0"])
        node_cmds = ["link set lo up"]
        for i, e in enumerate(self.endpoints.values()):
            dev = f"v{i}"
            node_cmds += [f"link add {dev} type veth peer name eth0 netns {e.netns}",
                          f"link set {dev} up", f"addr add {GATEWAY}/32 dev {dev}",
                          f"route add {e.ip}/32 dev {dev}"]
        run(["ip", "-n", self.node, "-batch", "-"], stdin="\n".join(node_cmds) + "\n")
        for e in self.endpoints.values():
            cmds = ["link set lo up", "link set eth0 up", f"addr add {e.ip}/32 dev eth0",
                    f"route add {GATEWAY}/32 dev eth0 scope link", f"route add default via {GATEWAY} dev eth0"]
            run(["ip", "-n", e.netns, "-batch", "-"], stdin="\n".join(cmds) + "\n")

    def _listen(self) -> None:
        sel = selectors.DefaultSelector()
        for e in self.endpoints.values():
            with in_netns(e.netns):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((e.ip, PORT))
            s.listen(256)
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ)
            self._listeners.append(s)
        self._acceptor = threading.Thread(target=self._accept_loop, args=(sel,), name=f"{self.prefix}accept",
                                          daemon=True)
        self._acceptor.start()

    def _accept_loop(self, sel: selectors.BaseSelector) -> None:
        deadline = time.monotonic() + LISTENER_LIFETIME
        while not self._stop.is_set() and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=0.2):
                try:
                    conn, _addr = key.fileobj.accept()  # type: ignore[union-attr]
                    conn.close()
                except OSError:
                    pass
        sel.close()

    def close(self) -> None:
        """Stop listeners and delete every namespace this topology created."""
        self._stop.set()
        if self._acceptor is not None:
            self._acceptor.join(timeout=5)
        for s in self._listeners:
            s.close()
        self._listeners.clear()
        sweep(self.prefix)

    # ---- nftables in the node ----

    def nft(self, script: str) -> None:
        """Load an nft script into the node namespace, atomically."""
        if script.strip():
            run(["ip", "netns", "exec", self.node, "nft", "-f", "-"], stdin=script)

    def nft_json(self, *args: str) -> dict[str, Any]:
        out = run(["ip", "netns", "exec", self.node, "nft", "-j", "-a", "list", *args])
        data: dict[str, Any] = json.loads(out) if out.strip() else {"nftables": []}
        return data

    def flush_ruleset(self) -> None:
        run(["ip", "netns", "exec", self.node, "nft", "flush", "ruleset"])

    # ---- packets ----

    def probe(self, src: str, dst: str, *, timeout: float = CONNECT_TIMEOUT) -> bool:
        """True when a TCP connection from src's namespace to dst completes within timeout."""
        with in_netns(self.endpoints[src].netns):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.settimeout(timeout)
            s.connect((dst, PORT))
            return True
        except OSError:
            return False
        finally:
            s.close()

    def probe_pairs(self, pairs: Sequence[tuple[str, str]], *,
                    timeout: float = CONNECT_TIMEOUT) -> dict[tuple[str, str], bool]:
        """Probe many (src, dst) pairs concurrently with a bounded pool."""
        with ThreadPoolExecutor(max_workers=min(PROBE_WORKERS, max(1, len(pairs)))) as pool:
            results = list(pool.map(lambda p: self.probe(p[0], p[1], timeout=timeout), pairs))
        return dict(zip(pairs, results))

    def all_pairs(self) -> list[tuple[str, str]]:
        ips = list(self.endpoints)
        return [(s, d) for s in ips for d in ips if s != d]
