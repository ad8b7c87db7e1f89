"""HTTP endpoints: /metrics for Prometheus, /healthz and /readyz for the kubelet.

Ready means every informer has synced: before that a reconcile would compile
from partial caches and could write a narrower firewall than the truth. A
failing `/readyz` says why in its body (`not_ready`), e.g. which CRD is missing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from liqosec.kube import serving
from liqosec.kube.serving import parse_address

__all__ = ["parse_address", "serve"]


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

    class Handler(serving.Handler):
        def do_GET(self) -> None:  # noqa: N802 (http.server dispatches by this name)
            if self.path == "/metrics" and registry is not None:
                self.reply(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif self.path == "/healthz" and healthy is not None:
                ok = healthy()
                self.reply(200 if ok else 500, b"ok" if ok else b"unhealthy", "text/plain")
            elif self.path == "/readyz" and ready is not None:
                ok = ready()
                why = (not_ready() if not_ready is not None and not ok else "") or "informers not synced"
                self.reply(200 if ok else 503, b"ok" if ok else why.encode(), "text/plain")
            else:
                self.reply(404, b"not found", "text/plain")

    server = serving.Server(parse_address(address), Handler)
    threading.Thread(target=server.serve_forever, name=f"http-{address}", daemon=True).start()
    return server
