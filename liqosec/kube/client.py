"""Raw-REST Kubernetes client: JSON dicts in and out, typed errors, streamed watches.

Guarantees:
- Every call returns parsed JSON (``dict``) or raises an ``errors.ApiError`` subclass; HTTP
  statuses >= 400 are mapped by ``errors.from_status``, transport failures to
  ``ConnectionFailure``. Nothing here retries: retry policy belongs to the caller.
- ``watch`` streams the response line by line (one JSON event a line) without buffering the
  whole body; a watch ``ERROR`` event raises (code 410 as ``Gone``); the stream ends normally
  when the server closes it (its ``timeoutSeconds``) and ``close()`` ends it from any thread.
- ``update`` sends the object's ``metadata.resourceVersion``; the server answers a mismatch
  with 409, raised as ``Conflict``.
- ``list(..., transform=f)`` returns the page with every item passed through ``f``, each decoded
  and transformed before the next is decoded: a page of 500 full objects is never held as dicts
  at once (only its text), so a slimming transform keeps the LIST's peak, and the allocator
  arenas it leaves half-used, small.

Caller duties:
- Close every ``WatchStream`` (use it as a context manager or call ``close``).
- Objects passed in are serialised as they are: the client neither copies nor validates them.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol, cast
from urllib.parse import urlencode

import urllib3
import urllib3.exceptions

from liqosec.kube import errors, jsonwire

JsonDict = dict[str, Any]
JsonPatch = list[JsonDict]
ItemTransform = jsonwire.ItemTransform

# Default per-request timeout (connect, read) for non-watch calls: a hung API server must not
# wedge a worker forever; 30 s read matches kubectl's default request timeout order.
DEFAULT_REQUEST_TIMEOUT: tuple[float, float] = (10.0, 30.0)
# Extra read slack past the server-side watch timeout before we call the connection dead: the
# server closes the stream at timeoutSeconds, so silence beyond that means a broken connection.
WATCH_READ_SLACK_SECONDS = 30.0
_WATCH_CHUNK_BYTES = 64 * 1024


def transport_retries() -> urllib3.Retry:
    """urllib3 retry policy for the API client: reconnect only, never re-send on a status.

    urllib3's default re-sends 429/503 after sleeping Retry-After inside the call; that hides
    throttling from the work queue and blocks a worker, so statuses always reach the caller.
    """
    return urllib3.Retry(
        total=2,
        connect=2,
        read=0,
        redirect=0,
        status=0,
        other=0,
        respect_retry_after_header=False,
        raise_on_status=False,
    )


PatchType = Literal["merge", "json", "strategic"]
_PATCH_CONTENT_TYPES: dict[str, str] = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
    "strategic": "application/strategic-merge-patch+json",
}


@dataclass(frozen=True)
class ResourceRef:
    """Which REST collection an object lives in."""

    group: str
    version: str
    plural: str
    namespaced: bool
    kind: str

    def __post_init__(self) -> None:
        for field_name in ("version", "plural", "kind"):
            if not getattr(self, field_name):
                raise ValueError(f"ResourceRef.{field_name} must be non-empty")
        if "/" in self.plural or "/" in self.group:
            raise ValueError("ResourceRef group and plural must not contain '/'")

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None, name: str | None = None, *, subresource: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        elif not self.namespaced and namespace:
            raise ValueError(f"{self.kind} is cluster-scoped: no namespace allowed")
        base += f"/{self.plural}"
        if name:
            base += f"/{name}"
            if subresource:
                base += f"/{subresource}"
        return base


PODS = ResourceRef("", "v1", "pods", True, "Pod")
NODES = ResourceRef("", "v1", "nodes", False, "Node")
NAMESPACES = ResourceRef("", "v1", "namespaces", False, "Namespace")
EVENTS = ResourceRef("", "v1", "events", True, "Event")
LEASES = ResourceRef("coordination.k8s.io", "v1", "leases", True, "Lease")
ENDPOINT_SLICES = ResourceRef("discovery.k8s.io", "v1", "endpointslices", True, "EndpointSlice")


class WatchStream(Protocol):
    """An iterator of watch events (``{"type": ..., "object": {...}}``) that can be closed."""

    def __iter__(self) -> Iterator[JsonDict]: ...

    def close(self) -> None: ...


class KubeClient(Protocol):
    """What the runtime needs from the API server; fakes implement this in tests."""

    def list(
        self,
        ref: ResourceRef,
        namespace: str | None = None,
        *,
        limit: int,
        continue_token: str | None,
        label_selector: str | None = None,
        transform: ItemTransform | None = None,
    ) -> JsonDict: ...

    def watch(
        self,
        ref: ResourceRef,
        namespace: str | None = None,
        *,
        resource_version: str,
        timeout_seconds: int,
        allow_bookmarks: bool = True,
        label_selector: str | None = None,
    ) -> WatchStream: ...

    def get(self, ref: ResourceRef, name: str, *, namespace: str | None = None) -> JsonDict: ...

    def create(self, ref: ResourceRef, obj: JsonDict, *, namespace: str | None = None) -> JsonDict: ...

    def update(self, ref: ResourceRef, obj: JsonDict) -> JsonDict: ...

    def update_status(self, ref: ResourceRef, obj: JsonDict) -> JsonDict: ...

    def patch(
        self,
        ref: ResourceRef,
        name: str,
        body: JsonDict | JsonPatch,
        *,
        namespace: str | None = None,
        patch_type: PatchType = "merge",
    ) -> JsonDict: ...

    def delete(
        self, ref: ResourceRef, name: str, *, namespace: str | None = None, grace_seconds: int | None = None
    ) -> JsonDict: ...

    def create_event(self, event: JsonDict) -> JsonDict: ...


class _HttpWatchStream:
    """Splits a streamed HTTP body into JSON events; raises ERROR events as typed errors."""

    def __init__(self, response: Any) -> None:
        self._response = response
        self._closed = threading.Event()

    def close(self) -> None:
        self._closed.set()
        # Closing the response alone does not wake a thread blocked in recv() on its socket;
        # shutting the socket down does, so stop() is prompt even on an idle watch.
        sock = getattr(getattr(self._response, "connection", None), "sock", None)
        try:
            if sock is not None:
                sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already closed by the peer
        try:
            self._response.close()
        except Exception:  # closing a half-read socket from another thread may itself fail
            pass

    def __enter__(self) -> _HttpWatchStream:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[JsonDict]:
        buffer = b""
        try:
            for chunk in self._response.stream(_WATCH_CHUNK_BYTES, decode_content=True):
                buffer += chunk
                start = 0
                while (end := buffer.find(b"\n", start)) >= 0:  # each line once, not the rest copied per line
                    line = buffer[start:end]
                    start = end + 1
                    if line.strip():
                        yield self._event(line)
                buffer = buffer[start:]
            if buffer.strip():
                yield self._event(buffer)
        except errors.ApiError:
            raise
        except Exception as exc:  # a close() from another thread surfaces as arbitrary errors
            if self._closed.is_set():
                return
            raise errors.from_transport_error(exc) from exc
        finally:
            self.close()

    @staticmethod
    def _event(line: bytes) -> JsonDict:
        try:
            event = jsonwire.decode(line)
        except ValueError as exc:
            raise errors.InternalError(500, "BadWatchEvent", line[:200].decode("utf-8", "replace")) from exc
        if not isinstance(event, dict):
            raise errors.InternalError(500, "BadWatchEvent", "watch event is not an object")
        if event.get("type") == "ERROR":
            obj = event.get("object")
            raise errors.from_status_object(obj if isinstance(obj, dict) else {})
        return cast(JsonDict, event)


def _named_metadata(obj: JsonDict) -> JsonDict:
    meta = obj.get("metadata")
    if not isinstance(meta, dict) or not meta.get("name"):
        raise ValueError("update needs metadata.name")
    return meta


def _read_all(resp: Any) -> bytes:
    """Read a whole (non-streamed) body and hand the connection back to the pool."""
    try:
        return bytes(resp.read())
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise errors.from_transport_error(exc) from exc
    finally:
        resp.release_conn()


class RestKubeClient:
    """``KubeClient`` over a ``kubernetes.client.ApiClient``: its configuration, credentials and
    connection pool, with requests built here.

    The ApiClient's own request path copies every body through its model serialiser and
    wraps every response; for JSON dicts in and out that is most of a write's client-side
    cost, so bodies go to its urllib3 pool as bytes (`jsonwire`), with the headers its
    authentication settings make (a refreshed token included).
    """

    def __init__(self, api_client: Any, *, request_timeout: tuple[float, float] = DEFAULT_REQUEST_TIMEOUT) -> None:
        if api_client is None:
            raise ValueError("RestKubeClient needs an ApiClient (see load_api_client)")
        self._api = api_client
        self._pool = api_client.rest_client.pool_manager
        self._host = str(api_client.configuration.host).rstrip("/")
        self._timeout = request_timeout

    # ----- wire -----
    def _send(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: tuple[float, float] | None = None,
    ) -> Any:
        headers = {**self._api.default_headers, "Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        params = list(query or ())
        connect, read = timeout or self._timeout
        try:
            self._api.update_params_for_auth(headers, params, ["BearerToken"], path, method, None)
            url = self._host + path + (f"?{urlencode(params)}" if params else "")
            resp = self._pool.request(
                method,
                url,
                body=None if body is None else jsonwire.encode(body),
                headers=headers,
                timeout=urllib3.Timeout(connect=connect, read=read),
                preload_content=False,
            )
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise errors.from_transport_error(exc) from exc
        if resp.status >= 400:
            try:
                data = _read_all(resp)
            except errors.ApiError:
                data = b""
            raise errors.from_status(resp.status, data, headers=dict(resp.headers or {}))
        return resp

    def _json(self, method: str, path: str, *, items: ItemTransform | None = None, **kwargs: Any) -> JsonDict:
        data = _read_all(self._send(method, path, **kwargs))
        try:
            parsed: Any
            if not data:
                parsed = {}
            elif items is not None:
                parsed = jsonwire.decode_list(data, items)
            else:
                parsed = jsonwire.decode(data)
        except ValueError as exc:
            raise errors.InternalError(500, "BadResponse", "response is not JSON") from exc
        if not isinstance(parsed, dict):
            raise errors.InternalError(500, "BadResponse", "response is not a JSON object")
        return cast(JsonDict, parsed)

    # ----- KubeClient -----
    def list(
        self,
        ref: ResourceRef,
        namespace: str | None = None,
        *,
        limit: int,
        continue_token: str | None,
        label_selector: str | None = None,
        transform: ItemTransform | None = None,
    ) -> JsonDict:
        query = [("limit", str(limit))]
        if continue_token:
            query.append(("continue", continue_token))
        if label_selector:
            query.append(("labelSelector", label_selector))
        return self._json("GET", ref.path(namespace), query=query, items=transform)

    def watch(
        self,
        ref: ResourceRef,
        namespace: str | None = None,
        *,
        resource_version: str,
        timeout_seconds: int,
        allow_bookmarks: bool = True,
        label_selector: str | None = None,
    ) -> WatchStream:
        query = [
            ("watch", "true"),
            ("resourceVersion", resource_version),
            ("timeoutSeconds", str(timeout_seconds)),
            ("allowWatchBookmarks", "true" if allow_bookmarks else "false"),
        ]
        if label_selector:
            query.append(("labelSelector", label_selector))
        timeout = (self._timeout[0], timeout_seconds + WATCH_READ_SLACK_SECONDS)
        resp = self._send("GET", ref.path(namespace), query=query, timeout=timeout)
        return _HttpWatchStream(resp)

    def get(self, ref: ResourceRef, name: str, *, namespace: str | None = None) -> JsonDict:
        return self._json("GET", ref.path(namespace, name))

    def create(self, ref: ResourceRef, obj: JsonDict, *, namespace: str | None = None) -> JsonDict:
        ns = namespace or obj.get("metadata", {}).get("namespace")
        return self._json("POST", ref.path(ns), body=obj)

    def update(self, ref: ResourceRef, obj: JsonDict) -> JsonDict:
        meta = _named_metadata(obj)
        return self._json("PUT", ref.path(meta.get("namespace"), meta["name"]), body=obj)

    def update_status(self, ref: ResourceRef, obj: JsonDict) -> JsonDict:
        meta = _named_metadata(obj)
        return self._json("PUT", ref.path(meta.get("namespace"), meta["name"], subresource="status"), body=obj)

    def patch(
        self,
        ref: ResourceRef,
        name: str,
        body: JsonDict | JsonPatch,
        *,
        namespace: str | None = None,
        patch_type: PatchType = "merge",
    ) -> JsonDict:
        if patch_type == "json" and not isinstance(body, list):
            raise ValueError("a JSON patch is a list of operations")
        return self._json(
            "PATCH",
            ref.path(namespace, name),
            body=body,
            content_type=_PATCH_CONTENT_TYPES[patch_type],
        )

    def delete(
        self, ref: ResourceRef, name: str, *, namespace: str | None = None, grace_seconds: int | None = None
    ) -> JsonDict:
        query = [("gracePeriodSeconds", str(grace_seconds))] if grace_seconds is not None else None
        return self._json("DELETE", ref.path(namespace, name), query=query)

    def create_event(self, event: JsonDict) -> JsonDict:
        return self.create(EVENTS, event, namespace=event.get("metadata", {}).get("namespace"))


CONNECTION_POOL_SIZE = 32


def load_api_client(kubeconfig: str | None = None, context: str | None = None) -> Any:
    """An ``ApiClient``: in-cluster inside a pod (no kubeconfig given), else from kubeconfig.

    ``kubeconfig`` defaults to ``$KUBECONFIG`` and then ``~/.kube/config``.
    """
    from kubernetes import client as k8s_client
    from kubernetes import config as k8s_config

    configuration = k8s_client.Configuration()
    configuration.retries = transport_retries()
    # One long-lived connection per watch (a dozen informers) plus the workers' writes:
    # urllib3's default pool of 10 would churn connections.
    configuration.connection_pool_maxsize = CONNECTION_POOL_SIZE
    if kubeconfig is None and context is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        load_incluster = cast(Callable[..., None], k8s_config.load_incluster_config)
        load_incluster(client_configuration=configuration)
    else:
        path = kubeconfig or os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
        load_kubeconfig = cast(Callable[..., None], k8s_config.load_kube_config)
        load_kubeconfig(config_file=path, context=context, client_configuration=configuration)
    return k8s_client.ApiClient(configuration)
