"""Typed API failures: the runtime sorts them by class.

Guarantees:
- Every failure talking to the API server surfaces as an ``ApiError`` subclass chosen by HTTP
  status (and ``reason`` where one status has two meanings: 409 is ``AlreadyExists`` or
  ``Conflict``); transport failures (refused, reset, timeout) are ``ConnectionFailure``
  with status 0.
- ``from_status``/``from_transport_error`` never raise; unparsable
  bodies keep their text in ``message``.

Caller duties:
- Catch ``ApiError`` or a subclass, never match on message text (``admission_webhook`` does it
  once, for the one failure only the text tells apart: a webhook's refusal from an RBAC 403).
"""

from __future__ import annotations

import json
import re
from typing import Any, cast

import urllib3.exceptions


class ApiError(Exception):
    """An API request failed with an HTTP ``status`` (0 for transport failures)."""

    def __init__(
        self,
        status: int,
        reason: str,
        message: str,
        *,
        retry_after: float | None = None,
        causes: tuple[str, ...] = (),
    ) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.retry_after = retry_after
        self.causes = causes  # the type (`reason` on the wire) of each of the Status' details.causes


class BadRequest(ApiError): ...


class Unauthorized(ApiError): ...


class Forbidden(ApiError): ...


class NotFound(ApiError): ...


class MethodNotAllowed(ApiError): ...


class Conflict(ApiError): ...


class AlreadyExists(ApiError): ...


class Gone(ApiError):
    """410: the requested resourceVersion (or continue token) has been compacted away."""


class Invalid(ApiError): ...


class TooManyRequests(ApiError): ...


class InternalError(ApiError): ...


class ServiceUnavailable(ApiError): ...


class ServerTimeout(ApiError): ...


class ConnectionFailure(ApiError):
    """The request never got an HTTP answer (refused, reset, timed out, TLS failure)."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    405: MethodNotAllowed,
    409: Conflict,
    410: Gone,
    422: Invalid,
    429: TooManyRequests,
    500: InternalError,
    503: ServiceUnavailable,
    504: ServerTimeout,
}


def _error_class(status: int, reason: str) -> type[ApiError]:
    if status == 409 and reason == "AlreadyExists":
        return AlreadyExists
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    if 500 <= status < 600:
        return InternalError
    return ApiError


def from_status_object(status_obj: dict[str, Any], *, default_status: int = 500) -> ApiError:
    """Build an error from a ``metav1.Status`` dict (an HTTP error body or a watch ERROR event)."""
    code = status_obj.get("code")
    status = code if isinstance(code, int) else default_status
    reason = str(status_obj.get("reason") or "")
    message = str(status_obj.get("message") or "")
    details = status_obj.get("details")
    retry_after: float | None = None
    causes: tuple[str, ...] = ()
    if isinstance(details, dict):
        if isinstance(details.get("retryAfterSeconds"), int):
            retry_after = float(details["retryAfterSeconds"])
        if isinstance(details.get("causes"), list):
            # metav1.StatusCause's Type is `reason` on the wire.
            causes = tuple(str(c.get("reason") or "") for c in details["causes"] if isinstance(c, dict))
    return _error_class(status, reason)(status, reason, message, retry_after=retry_after, causes=causes)


def from_status(status: int, body: bytes | str | None, *, headers: dict[str, str] | None = None) -> ApiError:
    """Build an error from an HTTP status and its (normally ``metav1.Status``) body."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else (body or "")
    parsed: Any = None
    try:
        parsed = json.loads(text) if text else None
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and parsed.get("kind") == "Status":
        parsed.setdefault("code", status)
        err = from_status_object(cast(dict[str, Any], parsed), default_status=status)
        err.status = status
    else:
        err = _error_class(status, "")(status, "", text.strip()[:1000])
    header = (headers or {}).get("Retry-After")
    if err.retry_after is None and header is not None and header.strip().isdigit():
        err.retry_after = float(header.strip())
    return err


def from_transport_error(exc: Exception) -> ApiError:
    """Convert a urllib3/OS-level failure into ``ConnectionFailure``."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, urllib3.exceptions.HTTPError | OSError):
        return ConnectionFailure(0, type(exc).__name__, str(exc))
    return ConnectionFailure(0, type(exc).__name__, repr(exc))


# The cause the API server's NamespaceLifecycle admission adds when it refuses to create an object in a
# namespace being deleted (k8s.io/apiserver, pkg/admission/plugin/namespace/lifecycle;
# k8s.io/api/core/v1 `NamespaceTerminatingCause`).
NAMESPACE_TERMINATING = "NamespaceTerminating"


def namespace_terminating(exc: BaseException) -> bool:
    """True when the API server refused a create because the namespace is being deleted: whatever
    was to be written there goes with the namespace, so the refusal is no failure to retry."""
    return isinstance(exc, Forbidden) and NAMESPACE_TERMINATING in exc.causes


# How the API server words an admission webhook's refusal (k8s.io/apiserver,
# pkg/admission/plugin/webhook/errors/statuserror.go, `ToStatusErr`) and a ValidatingAdmissionPolicy's
# (pkg/admission/plugin/policy/validating/dispatcher.go), such as the chart's on FirewallConfigurations.
_WEBHOOK_DENIAL = re.compile(
    r'admission webhook "([^"]*)" denied the request'
    r"|ValidatingAdmissionPolicy '([^']*)'(?: with binding '[^']*')? denied request"
)


def admission_webhook(exc: BaseException) -> str | None:
    """The name of the admission webhook (or ValidatingAdmissionPolicy) that refused the request, or None
    for any other failure.

    The API server answers a webhook's refusal with the code the webhook gave (at least 400):
    controller-runtime's `admission.Denied` is 403 with reason `Forbidden`, `admission.Errored(400, ...)`
    is 400, so the status alone cannot tell a refusal from an RBAC 403. What does is the message the
    API server writes, `admission webhook "<name>" denied the request: <the webhook's message>`: the one
    place where matching the text is the only way.
    """
    if not isinstance(exc, ApiError) or not 400 <= exc.status < 500:
        return None
    found = _WEBHOOK_DENIAL.search(exc.message)
    return (found.group(1) or found.group(2)) if found else None
