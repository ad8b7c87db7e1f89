"""HTTP endpoints: /metrics for Prometheus, /healthz and /readyz for the kubelet.

Ready means every informer has synced: before that a reconcile would compile
from partial caches and could write a narrower firewall than the truth. A
failing `/readyz` says why in its body (`not_ready`), e.g. which CRD is missing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


def parse_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        raise ValueError(f"bind address {address!r} must be host:port or :port")
    return host or "0.0.0.0", int(port)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def serve(
    address: str,
    *,
    registry: CollectorRegistry | None = None,
    healthy: Callable[[], bool] | None = None,
    ready: Callable[[], bool] | None = None,
    not_ready: Callable[[], str] | None = None,
) -> ThreadingHTTPServer:
    """Start a server in a daemon thread; call `shutdown()` on it to stop.

    Raises `OSError` when the address cannot be bound (in use, not ours) and
    `ValueError` when it is not host:port.
    """

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics" and registry is not None:
                self._reply(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif self.path == "/healthz" and healthy is not None:
                ok = healthy()
                self._reply(200 if ok else 500, b"ok" if ok else b"unhealthy", "text/plain")
            elif self.path == "/readyz" and ready is not None:
                ok = ready()
                why = (not_ready() if not_ready is not None and not ok else "") or "informers not synced"
                self._reply(200 if ok else 503, b"ok" if ok else why.encode(), "text/plain")
            else:
                self._reply(404, b"not found", "text/plain")

        def _reply(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return  # probes every few seconds would drown the logs

    server = _Server(parse_address(address), Handler)
    threading.Thread(target=server.serve_forever, name=f"http-{address}", daemon=True).start()
    return server
