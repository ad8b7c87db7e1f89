"""Scope: mapping HTTP statuses, Status bodies, ApiException and transport failures to typed
errors, and the predicates callers sort them by."""

from __future__ import annotations

import json

import pytest
import urllib3.exceptions

from liqosec.kube import errors


@pytest.mark.parametrize(
    "status,reason,cls",
    [
        (400, "BadRequest", errors.BadRequest),
        (403, "Forbidden", errors.Forbidden),
        (404, "NotFound", errors.NotFound),
        (409, "Conflict", errors.Conflict),
        (409, "AlreadyExists", errors.AlreadyExists),
        (410, "Expired", errors.Gone),
        (422, "Invalid", errors.Invalid),
        (429, "TooManyRequests", errors.TooManyRequests),
        (500, "InternalError", errors.InternalError),
        (502, "", errors.InternalError),
        (503, "ServiceUnavailable", errors.ServiceUnavailable),
        (418, "Teapot", errors.ApiError),
    ],
)
def test_status_body_maps_to_typed_error(status: int, reason: str, cls: type) -> None:
    body = json.dumps({"kind": "Status", "code": status, "reason": reason, "message": "m"})
    err = errors.from_status(status, body.encode())
    assert type(err) is cls
    assert (err.status, err.reason, err.message) == (status, reason, "m")


def test_non_json_body_keeps_its_text() -> None:
    err = errors.from_status(502, b"<html>bad gateway</html>")
    assert isinstance(err, errors.InternalError) and "bad gateway" in err.message


def test_retry_after_from_details_or_header() -> None:
    body = {"kind": "Status", "code": 429, "details": {"retryAfterSeconds": 4}}
    assert errors.from_status(429, json.dumps(body)).retry_after == 4.0
    assert errors.from_status(429, b"", headers={"Retry-After": "9"}).retry_after == 9.0


def test_watch_error_event_object_maps_410_to_gone() -> None:
    assert isinstance(errors.from_status_object({"code": 410, "reason": "Expired"}), errors.Gone)


def test_urllib3_failures_become_connection_failures() -> None:
    err = errors.from_transport_error(urllib3.exceptions.ProtocolError("reset"))
    assert isinstance(err, errors.ConnectionFailure) and err.status == 0
    assert isinstance(errors.from_transport_error(ConnectionRefusedError()), errors.ConnectionFailure)
