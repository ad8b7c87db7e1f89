"""Nodes and endpoints in network namespaces, for probing Liqo's nftables with real packets.

Topology: `n` node namespaces, each forwarding (ip_forward=1), joined by a
bridge in a "fabric" namespace (node i has 169.254.200.(i+1)/24 on its
`fabric` link). An endpoint namespace hangs off one node on a veth pair,
holds its address as a /32 on `eth0` and reaches everything through the
gateway 169.254.1.1 (an address every node-side veth carries, as Calico does).
Its node routes the /32 to the veth; every other node routes it through the
fabric to that node. So any IPv4 address of a scenario works, and a packet
between endpoints on two nodes crosses the forward hook of both, as pod
traffic does between Liqo nodes.

Guarantees:
- Only namespaces named with the cluster's unique prefix (`lqs-<pid>-<n>-`)
  are created, and `close()` deletes them all, whatever failed; `sweep`
  removes leftovers of a crashed run.
- `attach` adds endpoints on chosen nodes; `detach` removes them and their
  routes, leaving the nodes (and whatever nftables they hold) in place.
- Listeners are in-process sockets created inside each endpoint namespace
  (setns on the calling thread, then back), served by one acceptor thread
  that stops on `detach`/`close()` or after `LISTENER_LIFETIME` seconds.
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
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

PORT = 8080
# Ports probes may use besides PORT (`Cluster.listen_on`); every endpoint listens on all of them.
# UDP endpoints echo each datagram back, so a probe sees the reply from the port to its own.
EXTRA_TCP_PORTS = (22, 443, 8443)
UDP_PORTS = (53, 8053)
GATEWAY = "169.254.1.1"
FABRIC_NET = "169.254.200"
# Routes a cluster adds for endpoints on other nodes carry this protocol number, so
# `detach` can flush them without touching anything else.
ROUTE_PROTO = "99"
# A dropped SYN shows as a timeout; veth round trips are microseconds, so half a
# second separates drop from accept with a wide margin even on a loaded host.
CONNECT_TIMEOUT = 0.5
# Probes mostly wait (a drop waits out the timeout), so many threads cost little.
PROBE_WORKERS = 64
# Hard bound on a listener's life, in case a caller forgets to detach.
LISTENER_LIFETIME = 3600.0
COMMAND_TIMEOUT = 20.0
MAX_NODES = 16
MAX_ENDPOINTS = 400
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
    node: int
    veth: str  # the node-side end of its link


class Cluster:
    """Node namespaces joined by a fabric bridge; endpoints come and go on them."""

    def __init__(self, nodes: int = 2, *, prefix: str | None = None) -> None:
        if not 1 <= nodes <= MAX_NODES:
            raise ValueError(f"need 1..{MAX_NODES} nodes, got {nodes}")
        self.prefix = prefix or f"lqs-{os.getpid()}-{next(_counter)}-"
        self.fabric = f"{self.prefix}fabric"
        self.nodes = [f"{self.prefix}node{i}" for i in range(nodes)]
        self.endpoints: dict[str, Endpoint] = {}
        self._veths = itertools.count()
        self._listeners: list[socket.socket] = []
        self._stop = threading.Event()
        self._acceptor: threading.Thread | None = None
        # What endpoints attached from now on listen on: PORT only unless a test asks for more.
        self.tcp_ports: tuple[int, ...] = (PORT,)
        self.udp_ports: tuple[int, ...] = ()
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def netns_path(self, node: int) -> Path:
        return NETNS_DIR / self.nodes[node]

    def _build(self) -> None:
        run(["ip", "-batch", "-"], stdin="".join(f"netns add {n}\n" for n in [self.fabric, *self.nodes]))
        fabric = ["link set lo up", "link add br0 type bridge", "link set br0 up"]
        for i, node in enumerate(self.nodes):
            fabric += [
                f"link add n{i} type veth peer name fabric netns {node}",
                f"link set n{i} master br0",
                f"link set n{i} up",
            ]
        run(["ip", "-n", self.fabric, "-batch", "-"], stdin="\n".join(fabric) + "\n")
        for i, node in enumerate(self.nodes):
            run(
                [
                    "ip",
                    "netns",
                    "exec",
                    node,
                    "sysctl",
                    "-qw",
                    "net.ipv4.ip_forward=1",
                    "net.ipv4.conf.all.rp_filter=0",
                    "net.ipv4.conf.default.rp_filter=0",
                ]
            )
            cmds = ["link set lo up", "link set fabric up", f"addr add {FABRIC_NET}.{i + 1}/24 dev fabric"]
            run(["ip", "-n", node, "-batch", "-"], stdin="\n".join(cmds) + "\n")

    # ---- endpoints ----

    def attach(self, placement: Mapping[str, int], names: Mapping[str, str] | None = None) -> None:
        """Add an endpoint namespace for each address, on the node index it maps to, and listen."""
        new = [ip for ip in placement if ip not in self.endpoints]
        if len(self.endpoints) + len(new) > MAX_ENDPOINTS:
            raise ValueError(f"at most {MAX_ENDPOINTS} endpoints")
        if GATEWAY in new:
            raise ValueError(f"{GATEWAY} is the harness gateway and cannot be an endpoint")
        added = []
        for ip in new:
            n = next(self._veths)
            e = Endpoint(
                name=(names or {}).get(ip, ip), ip=ip, netns=f"{self.prefix}e{n}", node=placement[ip], veth=f"v{n}"
            )
            self.endpoints[ip] = e
            added.append((n, e))
        if not added:
            return
        run(["ip", "-batch", "-"], stdin="".join(f"netns add {e.netns}\n" for _, e in added))
        per_node: dict[int, list[str]] = {i: [] for i in range(len(self.nodes))}
        for _, e in added:
            dev = e.veth
            per_node[e.node] += [
                f"link add {dev} type veth peer name eth0 netns {e.netns}",
                f"link set {dev} up",
                f"addr add {GATEWAY}/32 dev {dev}",
                f"route add {e.ip}/32 dev {dev}",
            ]
            for other in range(len(self.nodes)):
                if other != e.node:
                    per_node[other].append(
                        f"route add {e.ip}/32 via {FABRIC_NET}.{e.node + 1} dev fabric proto {ROUTE_PROTO}"
                    )
        for i, cmds in per_node.items():
            if cmds:
                run(["ip", "-n", self.nodes[i], "-batch", "-"], stdin="\n".join(cmds) + "\n")
        for _, e in added:
            cmds = [
                "link set lo up",
                "link set eth0 up",
                f"addr add {e.ip}/32 dev eth0",
                f"route add {GATEWAY}/32 dev eth0 scope link",
                f"route add default via {GATEWAY} dev eth0",
            ]
            run(["ip", "-n", e.netns, "-batch", "-"], stdin="\n".join(cmds) + "\n")
        self._listen([e for _, e in added])

    def detach(self) -> None:
        """Remove every endpoint and its routes; the nodes stay.

        The node-side veths are deleted explicitly: a namespace's own devices go only when the
        kernel gets round to freeing it, and their routes would clash with the next scenario's.
        """
        self._stop_listeners()
        self.tcp_ports, self.udp_ports = (PORT,), ()
        for i, node in enumerate(self.nodes):
            cmds = [f"link del {e.veth}" for e in self.endpoints.values() if e.node == i]
            if cmds:
                subprocess.run(
                    ["ip", "-n", node, "-force", "-batch", "-"],
                    input="\n".join(cmds) + "\n",
                    capture_output=True,
                    text=True,
                    timeout=COMMAND_TIMEOUT,
                    check=False,
                )
            subprocess.run(
                ["ip", "-n", node, "route", "flush", "proto", ROUTE_PROTO],
                capture_output=True,
                timeout=COMMAND_TIMEOUT,
                check=False,
            )
        for e in self.endpoints.values():
            subprocess.run(["ip", "netns", "del", e.netns], capture_output=True, timeout=COMMAND_TIMEOUT, check=False)
        self.endpoints.clear()

    def _listen(self, endpoints: Sequence[Endpoint]) -> None:
        if self._acceptor is None:
            self._stop = threading.Event()
            self._selector = selectors.DefaultSelector()
            self._acceptor = threading.Thread(
                target=self._accept_loop, args=(self._selector, self._stop), name=f"{self.prefix}accept", daemon=True
            )
            self._acceptor.start()
        for e in endpoints:
            for kind, port in [(socket.SOCK_STREAM, p) for p in self.tcp_ports] + [
                (socket.SOCK_DGRAM, p) for p in self.udp_ports
            ]:
                with in_netns(e.netns):
                    s = socket.socket(socket.AF_INET, kind)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((e.ip, port))
                if kind == socket.SOCK_STREAM:
                    s.listen(256)
                s.setblocking(False)
                self._selector.register(s, selectors.EVENT_READ)
                self._listeners.append(s)

    def listen_on(self, tcp: Sequence[int] = (PORT, *EXTRA_TCP_PORTS), udp: Sequence[int] = UDP_PORTS) -> None:
        """Endpoints attached from now on listen on these TCP ports and echo UDP on these (until reset)."""
        self.tcp_ports, self.udp_ports = tuple(tcp), tuple(udp)

    @staticmethod
    def _accept_loop(sel: selectors.BaseSelector, stop: threading.Event) -> None:
        deadline = time.monotonic() + LISTENER_LIFETIME
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                ready = sel.select(timeout=0.2)
            except (OSError, ValueError):
                time.sleep(0.05)  # a listener was closed under us; its unregister follows
                continue
            for key, _ in ready:
                sock: socket.socket = key.fileobj  # type: ignore[assignment]
                try:
                    if sock.type == socket.SOCK_DGRAM:
                        data, peer = sock.recvfrom(2048)
                        sock.sendto(data, peer)  # the reply, from the probed port back to the client's
                    else:
                        conn, _addr = sock.accept()
                        conn.close()
                except OSError:
                    pass

    def _stop_listeners(self) -> None:
        self._stop.set()
        if self._acceptor is not None:
            self._acceptor.join(timeout=5)
            self._selector.close()
        self._acceptor = None
        for s in self._listeners:
            s.close()
        self._listeners.clear()

    def close(self) -> None:
        """Stop listeners and delete every namespace this cluster created."""
        self._stop_listeners()
        sweep(self.prefix)

    # ---- nftables in the nodes ----

    def nft_json(self, node: int, *args: str) -> dict[str, Any]:
        out = run(["ip", "netns", "exec", self.nodes[node], "nft", "-j", "-a", "list", *(args or ("ruleset",))])
        data: dict[str, Any] = json.loads(out) if out.strip() else {"nftables": []}
        return data

    def rule_names(self, node: int) -> dict[tuple[str, str], list[str]]:
        """(table, chain) -> rule comments in node order, as Liqo's agent names them."""
        out: dict[tuple[str, str], list[str]] = {}
        for item in self.nft_json(node)["nftables"]:
            if "chain" in item:
                out.setdefault((item["chain"]["table"], item["chain"]["name"]), [])
            elif "rule" in item:
                r = item["rule"]
                out.setdefault((r["table"], r["chain"]), []).append(str(r.get("comment", "")))
        return out

    def chain_policies(self, node: int) -> dict[tuple[str, str], str]:
        return {
            (c["table"], c["name"]): str(c.get("policy", ""))
            for c in (i["chain"] for i in self.nft_json(node)["nftables"] if "chain" in i)
        }

    def tables(self, node: int) -> list[str]:
        return [i["table"]["name"] for i in self.nft_json(node, "tables")["nftables"] if "table" in i]

    def flush_ruleset(self, node: int) -> None:
        run(["ip", "netns", "exec", self.nodes[node], "nft", "flush", "ruleset"])

    # ---- packets ----

    def probe(
        self, src: str, dst: str, *, timeout: float = CONNECT_TIMEOUT, port: int = PORT, proto: str = "tcp"
    ) -> bool:
        """True when a TCP connection from src's namespace to dst:port completes within timeout, or
        (proto "udp") when a datagram to dst:port comes back echoed within it."""
        kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
        with in_netns(self.endpoints[src].netns):
            s = socket.socket(socket.AF_INET, kind)
        try:
            s.settimeout(timeout)
            if kind == socket.SOCK_STREAM:
                s.connect((dst, port))
                return True
            token = os.urandom(8)
            s.sendto(token, (dst, port))
            deadline = time.monotonic() + timeout
            while True:  # only our own echo counts
                s.settimeout(max(0.001, deadline - time.monotonic()))
                data, peer = s.recvfrom(64)
                if data == token and peer == (dst, port):
                    return True
        except OSError:  # a timeout, refused, unreachable
            return False
        finally:
            s.close()

    def probe_pairs(
        self,
        pairs: Sequence[tuple[str, str]],
        *,
        timeout: float = CONNECT_TIMEOUT,
        port: int = PORT,
        proto: str = "tcp",
    ) -> dict[tuple[str, str], bool]:
        """Probe many (src, dst) pairs concurrently with a bounded pool."""
        with ThreadPoolExecutor(max_workers=min(PROBE_WORKERS, max(1, len(pairs)))) as pool:
            results = list(pool.map(lambda p: self.probe(p[0], p[1], timeout=timeout, port=port, proto=proto), pairs))
        return dict(zip(pairs, results))

    def all_pairs(self) -> list[tuple[str, str]]:
        ips = list(self.endpoints)
        return [(s, d) for s in ips for d in ips if s != d]
