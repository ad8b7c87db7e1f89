"""The webhook's HTTPS server: answers reviews over TLS, refuses garbage with a reason, reloads its certificate."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.pki import write_pki
from liqosec.admission.server import MAX_BODY_BYTES, serve
from liqosec.cli import parser


def cert_dir(directory: Path) -> Path:
    """A kubernetes.io/tls Secret's files (tls.crt, tls.key) and the CA that signed them."""
    write_pki(directory, hosts=["127.0.0.1"])
    shutil.copy(directory / "serving.crt", directory / "tls.crt")
    shutil.copy(directory / "serving.key", directory / "tls.key")
    return directory


@pytest.fixture()
def webhook(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    certs = cert_dir(tmp_path / "certs")
    server = serve("127.0.0.1:0", str(certs))
    try:
        yield server.server_address[1], certs
    finally:
        server.shutdown()
        server.server_close()


def call(port: int, ca: Path, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    context = ssl.create_default_context(cafile=str(ca))
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def review_body(rules: list[Any]) -> bytes:
    obj = {
        "apiVersion": "security.liqo.io/v1",
        "kind": "PeeringConnectivity",
        "metadata": {"name": "rome", "namespace": "liqo-tenant-rome"},
        "spec": {"rules": rules},
    }
    return json.dumps(
        {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "u-1",
                "kind": {"group": "security.liqo.io", "version": "v1", "kind": "PeeringConnectivity"},
                "operation": "CREATE",
                "namespace": "liqo-tenant-rome",
                "object": obj,
            },
        }
    ).encode()


def test_a_review_over_tls_is_answered(webhook: tuple[int, Path]) -> None:
    port, certs = webhook
    status, body = call(port, certs / "ca.crt", "POST", "/validate", review_body([{"action": "allow"}]))
    assert status == 200 and json.loads(body)["response"] == {"uid": "u-1", "allowed": True}
    status, body = call(port, certs / "ca.crt", "POST", "/validate", review_body([{"action": "allow"}] * 2))
    response = json.loads(body)["response"]
    assert status == 200 and response["allowed"] is False
    assert "spec.rules[1]: the same rule as spec.rules[0]" in response["status"]["message"]
    assert call(port, certs / "ca.crt", "GET", "/healthz") == (200, b"ok")


@pytest.mark.parametrize(
    ("path", "body", "status", "words"),
    [
        ("/validate", b"{not json", 400, b"not JSON"),
        ("/validate", b'{"kind": "Pod"}', 400, b"not an AdmissionReview: expected kind AdmissionReview"),
        ("/validate", b"[]", 400, b"got list"),
        ("/mutate", b"{}", 404, b"POST AdmissionReviews to /validate"),
        ("/validate", b"[" * 100_000, 400, b"not JSON"),
    ],
)
def test_garbage_gets_an_http_error_with_the_reason(
    webhook: tuple[int, Path], path: str, body: bytes, status: int, words: bytes
) -> None:
    port, certs = webhook
    got_status, got = call(port, certs / "ca.crt", "POST", path, body)
    assert got_status == status and words in got


def test_an_oversized_body_is_refused_unread(webhook: tuple[int, Path]) -> None:
    port, certs = webhook
    context = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    conn.putrequest("POST", "/validate")
    conn.putheader("Content-Length", str(MAX_BODY_BYTES + 1))
    conn.endheaders()
    assert conn.getresponse().status == 413
    conn.close()


def test_a_client_failing_the_handshake_does_not_stop_the_server(webhook: tuple[int, Path]) -> None:
    port, certs = webhook
    with pytest.raises(ssl.SSLError):
        _untrusted(port)  # the client does not trust our CA: the handshake fails on both sides
    assert call(port, certs / "ca.crt", "GET", "/healthz") == (200, b"ok")


def _untrusted(port: int) -> None:
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ssl.create_default_context(), timeout=10)
    try:
        conn.request("GET", "/healthz")
    finally:
        conn.close()


def test_a_renewed_certificate_is_served_without_a_restart(webhook: tuple[int, Path], tmp_path: Path) -> None:
    port, certs = webhook
    renewed = cert_dir(tmp_path / "renewed")
    for name in ("tls.crt", "tls.key"):
        shutil.copy(renewed / name, certs / name)
        later = time.time() + 5
        os.utime(certs / name, (later, later))
    assert call(port, renewed / "ca.crt", "GET", "/healthz") == (200, b"ok")
    with pytest.raises(ssl.SSLError):
        call(port, certs / "ca.crt", "GET", "/healthz")


def test_a_missing_certificate_fails_at_start_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="tls.crt"):
        serve("127.0.0.1:0", str(tmp_path))


def test_run_takes_the_webhook_flags() -> None:
    args = parser().parse_args(["run", "--webhook-bind-address=:9443", "--webhook-cert-dir=/certs"])
    assert (args.webhook_bind_address, args.webhook_cert_dir) == (":9443", "/certs")
    assert parser().parse_args(["run"]).webhook_bind_address == "0"


def test_run_says_what_to_fix_when_the_webhook_cannot_start(tmp_path: Path) -> None:
    from liqosec.run import StartupError, _listen_webhook

    args = parser().parse_args(["run", "--webhook-bind-address=127.0.0.1:0", f"--webhook-cert-dir={tmp_path}"])
    with pytest.raises(StartupError) as info:
        _listen_webhook(args, client=None, started=[])  # type: ignore[arg-type]
    assert f"cannot serve the webhook on 127.0.0.1:0 (cannot read {tmp_path}/tls.crt" in str(info.value)
    assert "--webhook-cert-dir" in str(info.value)
    assert _listen_webhook(parser().parse_args(["run"]), client=None, started=[]) == []  # type: ignore[arg-type]
