"""A network namespace on this machine wired to one kind node, holding addresses that live elsewhere.

On a kind node of a Liqo peering, packets from the peer (its pods, its masquerade source, the
Internet) arrive at the node and cross its forward hook, where Liqo's fabric applies liqosec's
tables. Here the peer's traffic cannot arrive for real (no Geneve: docs/liqo-real.md), so this
namespace stands in for it: its ``eth0`` holds each address as a /32, and the node routes those
/32s to it over a veth pair. A packet between a pod on that node and one of these addresses then
crosses the node's forward hook in both directions, exactly as the peer's would.

Guarantees:
- The namespace is named with this process's id; ``close()`` deletes it, and with it the veth pair
  and the node's routes through it, whatever failed.
- Listeners are in-process sockets made inside the namespace (setns on the calling thread, then
  back); each accepted connection is answered "ok" and closed.
- ``connects(src, dst)``: a TCP connection from address ``src`` here to ``dst``:PORT on the node's
  side opens and answers "ok" within the timeout.
Caller duties: run as root with ``ip``, ``nsenter`` and ``docker``; addresses only inside the
clusters' own CIDRs or the documentation ranges; call ``close()``.
"""

from __future__ import annotations

import os
import selectors
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType

from harness.netns import in_netns, run, sweep

PORT = 8080
# The veth's own addresses (link-local, never a pod's).
NODE_SIDE, HERE_SIDE = "169.254.123.1", "169.254.123.2"
# A drop shows as a timeout; a kind node's forward path answers in milliseconds.
CONNECT_TIMEOUT = 2.0
LISTENER_LIFETIME = 1800.0
PREFIX = "lqp-"


class NodeNamespace:
    def __init__(self, node: str, addresses: Sequence[str]) -> None:
        self.node = node
        self.addresses = tuple(addresses)
        tag = f"{os.getpid() % 100000}"
        self.netns = f"{PREFIX}{tag}"
        self._node_veth, self._here_veth = f"lqp{tag}n", f"lqp{tag}h"
        self._pid = run(["docker", "inspect", "-f", "{{.State.Pid}}", node]).strip()
        self._stop = threading.Event()
        self._listeners: list[socket.socket] = []
        self._acceptor: threading.Thread | None = None
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> NodeNamespace:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def _on_node(self, *args: str) -> None:
        run(["nsenter", "-t", self._pid, "-n", *args])

    def _here(self, *args: str) -> None:
        run(["ip", "-n", self.netns, *args])

    def _build(self) -> None:
        sweep(PREFIX)  # a crashed run's namespace (its veth and routes go with it)
        run(["ip", "netns", "add", self.netns])
        run(["ip", "link", "add", self._here_veth, "type", "veth", "peer", "name", self._node_veth])
        run(["ip", "link", "set", self._node_veth, "netns", self._pid])
        run(["ip", "link", "set", self._here_veth, "netns", self.netns])
        self._on_node("ip", "addr", "add", f"{NODE_SIDE}/30", "dev", self._node_veth)
        self._on_node("ip", "link", "set", self._node_veth, "up")
        for address in self.addresses:
            self._on_node("ip", "route", "add", f"{address}/32", "dev", self._node_veth)
        self._here("link", "set", "lo", "up")
        self._here("link", "set", self._here_veth, "name", "eth0")
        self._here("addr", "add", f"{HERE_SIDE}/30", "dev", "eth0")
        for address in self.addresses:
            self._here("addr", "add", f"{address}/32", "dev", "eth0")
        self._here("link", "set", "eth0", "up")
        self._here("route", "add", "default", "via", NODE_SIDE, "dev", "eth0")
        self._listen()

    def _listen(self) -> None:
        sel = selectors.DefaultSelector()
        for address in self.addresses:
            with in_netns(self.netns):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((address, PORT))
            s.listen(64)
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ)
            self._listeners.append(s)
        self._acceptor = threading.Thread(target=self._accept_loop, args=(sel,), name=self.netns, daemon=True)
        self._acceptor.start()

    def _accept_loop(self, sel: selectors.BaseSelector) -> None:
        deadline = time.monotonic() + LISTENER_LIFETIME
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                ready = sel.select(timeout=0.2)
            except (OSError, ValueError):
                return  # closed under us
            for key, _ in ready:
                sock: socket.socket = key.fileobj  # type: ignore[assignment]
                try:
                    conn, _addr = sock.accept()
                    conn.settimeout(1)
                    conn.sendall(b"ok")
                    conn.close()
                except OSError:
                    pass
        sel.close()

    def connects(self, src: str, dst: str, *, timeout: float = CONNECT_TIMEOUT) -> bool:
        """A TCP connection from ``src`` (one of this namespace's addresses) to ``dst``:PORT opens and answers."""
        with in_netns(self.netns):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.settimeout(timeout)
            s.bind((src, 0))
            s.connect((dst, PORT))
            return s.recv(2) == b"ok"
        except OSError:  # a timeout, refused, unreachable
            return False
        finally:
            s.close()

    def connects_all(self, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], bool]:
        with ThreadPoolExecutor(max_workers=max(1, min(32, len(pairs)))) as pool:
            return dict(zip(pairs, pool.map(lambda p: self.connects(*p), pairs), strict=True))

    def close(self) -> None:
        self._stop.set()
        if self._acceptor is not None:
            self._acceptor.join(timeout=5)
        for s in self._listeners:
            s.close()
        self._listeners.clear()
        # Deleting one end deletes both, and the node's routes through it, now: a namespace's own
        # devices go only when the kernel gets round to destroying it.
        for where in (["nsenter", "-t", self._pid, "-n"], []):  # the node's end; else a pair never moved
            subprocess.run([*where, "ip", "link", "del", self._node_veth], capture_output=True, timeout=20, check=False)
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True, timeout=20, check=False)
