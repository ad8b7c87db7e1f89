"""The small HTTP server both the probes/metrics endpoint and the admission webhook stand on."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def parse_address(address: str) -> tuple[str, int]:
    """`host:port` or `:port` (every interface), as controller-runtime's bind-address flags take."""
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        raise ValueError(f"bind address {address!r} must be host:port or :port")
    return host or "0.0.0.0", int(port)


class Server(ThreadingHTTPServer):
    """One daemon thread a request, so a stuck client never holds up shutdown; rebinds at once on restart."""

    daemon_threads = True
    allow_reuse_address = True


class Handler(BaseHTTPRequestHandler):
    """A handler that answers in one call and keeps the access log quiet (callers log what matters)."""

    def reply(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return
