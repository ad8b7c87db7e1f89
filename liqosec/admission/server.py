"""The webhook's HTTPS server: POST /validate answers AdmissionReviews, GET /healthz answers probes.

Served by `liqosec run --webhook-bind-address` (README, "Admission"). The serving certificate is
read from `--webhook-cert-dir` (`tls.crt`, `tls.key`, as a kubernetes.io/tls Secret mounts them)
and read again when the files change, so cert-manager's renewals need no restart. Every request
is bounded (body size, socket timeout) and every failure is an HTTP answer, never a dead thread:
a body that is not an AdmissionReview gets 400 with the reason, which the API server reports
under the webhook's failurePolicy.
"""

from __future__ import annotations

import json
import os
import ssl
import sys
import threading
from collections.abc import Mapping, Sequence
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import structlog

from liqosec.admission.review import BadReview, LookupFailed, review
from liqosec.api.peeringconnectivity import GROUP, KIND, PLURAL, VERSION
from liqosec.kube import errors, serving
from liqosec.kube.client import NAMESPACES, KubeClient, ResourceRef

CERT_FILE, KEY_FILE = "tls.crt", "tls.key"
# An AdmissionReview carries the object twice (object, oldObject); the API server takes 3 MiB a request.
MAX_BODY_BYTES = 8 * 2**20
SOCKET_TIMEOUT_SECONDS = 10.0
VALIDATE_PATH = "/validate"
PEERING_CONNECTIVITIES = ResourceRef(GROUP, VERSION, PLURAL, True, KIND)


class ClusterLookup:
    """The webhook's reads: one GET and one LIST per review, answered from the API server."""

    def __init__(self, client: KubeClient) -> None:
        self._client = client

    def namespace(self, name: str) -> Mapping[str, Any] | None:
        try:
            return self._client.get(NAMESPACES, name)
        except errors.NotFound:
            return None
        except errors.ApiError as err:
            raise LookupFailed(" ".join(str(err).split())[:200]) from None

    def peerings(self, namespace: str) -> Sequence[Mapping[str, Any]]:
        try:
            listed = self._client.list(PEERING_CONNECTIVITIES, namespace, limit=500, continue_token=None)
        except errors.ApiError as err:
            raise LookupFailed(" ".join(str(err).split())[:200]) from None
        items = listed.get("items")
        return [i for i in items if isinstance(i, Mapping)] if isinstance(items, list) else []


class Certificates:
    """The serving certificate from a directory, reloaded when its files change."""

    def __init__(self, directory: str) -> None:
        self._cert, self._key = Path(directory) / CERT_FILE, Path(directory) / KEY_FILE
        self._lock = threading.Lock()
        self._stamp: tuple[float, float] | None = None
        self._context: ssl.SSLContext | None = None
        self.context()  # a missing or bad certificate is a start-up error, not a failed handshake later

    def context(self) -> ssl.SSLContext:
        try:
            stamp = (os.stat(self._cert).st_mtime, os.stat(self._key).st_mtime)
        except OSError as err:
            if self._context is not None:
                return self._context  # a Secret update swaps the files: keep serving the last good pair
            raise ValueError(f"cannot read {err.filename}: {err.strerror}") from None
        with self._lock:
            if self._context is None or stamp != self._stamp:
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                context.minimum_version = ssl.TLSVersion.TLSv1_2
                try:
                    context.load_cert_chain(self._cert, self._key)
                except (OSError, ssl.SSLError) as err:
                    if self._context is not None:
                        return self._context
                    raise ValueError(f"cannot load {self._cert} and {self._key}: {err}") from None
                self._context, self._stamp = context, stamp
            return self._context


class _Server(serving.Server):
    certificates: Certificates

    def get_request(self) -> tuple[Any, Any]:
        sock, address = self.socket.accept()
        sock.settimeout(SOCKET_TIMEOUT_SECONDS)
        # The handshake happens on the first read, in the request's own thread.
        wrapped = self.certificates.context().wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return wrapped, address

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that fails the handshake or goes away: one log line, not a traceback."""
        log = structlog.get_logger("liqosec.admission")
        err = sys.exc_info()[1]
        log.info("webhook connection failed", client=str(client_address[0]), error=f"{type(err).__name__}: {err}")


def serve(address: str, cert_dir: str, lookup: Any = None) -> ThreadingHTTPServer:
    """Start the webhook in a daemon thread; call `shutdown()` to stop.

    `lookup` (a `review.Lookup`) reads the cluster; None leaves those checks to the controller.
    Raises `OSError` when the address cannot be bound and `ValueError` for a bad address or certificate.
    """
    log = structlog.get_logger("liqosec.admission")
    certificates = Certificates(cert_dir)

    class Handler(serving.Handler):
        timeout = SOCKET_TIMEOUT_SECONDS
        protocol_version = "HTTP/1.1"  # the API server keeps its connections open

        def do_GET(self) -> None:  # noqa: N802 (http.server dispatches by this name)
            if self.path == "/healthz":
                self.reply(200, b"ok", "text/plain")
            else:
                self.reply(404, b"not found", "text/plain")

        def do_POST(self) -> None:  # noqa: N802 (http.server dispatches by this name)
            if self.path.partition("?")[0] != VALIDATE_PATH:
                self.reply(404, f"not found: POST AdmissionReviews to {VALIDATE_PATH}".encode(), "text/plain")
                return
            try:
                length = int(self.headers.get("Content-Length") or "")
            except ValueError:
                self.close_connection = True  # where the body ends is unknown
                self.reply(411, b"a Content-Length is required", "text/plain")
                return
            if not 0 <= length <= MAX_BODY_BYTES:
                self.close_connection = True
                self.reply(413, f"body over {MAX_BODY_BYTES} bytes".encode(), "text/plain")
                return
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw)
            except (ValueError, RecursionError) as err:
                self.reply(400, f"not JSON: {err}".encode(), "text/plain")
                return
            try:
                answer = review(body, lookup)
            except BadReview as err:
                self.reply(400, f"not an AdmissionReview: {err}".encode(), "text/plain")
                return
            result = answer["response"]
            log.info(
                "admission reviewed",
                allowed=result["allowed"],
                uid=result["uid"],
                message=(result.get("status") or {}).get("message"),
            )
            self.reply(200, json.dumps(answer).encode(), "application/json")

    server = _Server(serving.parse_address(address), Handler)
    server.certificates = certificates
    threading.Thread(target=server.serve_forever, name=f"webhook-{address}", daemon=True).start()
    return server
