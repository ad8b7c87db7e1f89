"""Scope: RestKubeClient on the wire against a tiny local HTTP server: paths, query, bodies,
status-to-error mapping and streamed watches."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.peek import last_resource_version
from liqosec.kube import errors
from liqosec.kube.client import LEASES, PODS, ResourceRef, RestKubeClient, transport_retries
from liqosec.kube.jsonwire import decode_list

JsonDict = dict[str, Any]


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


@dataclass
class Reply:
    status: int = 200
    body: Any = field(default_factory=dict)
    lines: list[Any] | None = None  # streamed, one JSON document per chunk
    headers: dict[str, str] = field(default_factory=dict)
    between_lines: Callable[[int], object] | None = None


class Server:
    def __init__(self) -> None:
        self.replies: list[Reply] = []
        self.seen: list[Seen] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                url = urlsplit(self.path)
                outer.seen.append(
                    Seen(
                        self.command,
                        url.path,
                        parse_qs(url.query),
                        {k.lower(): v for k, v in self.headers.items()},
                        json.loads(raw) if raw else None,
                    )
                )
                reply = outer.replies.pop(0) if outer.replies else Reply(404, {"kind": "Status"})
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                if reply.lines is None:
                    data = json.dumps(reply.body).encode()
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    for i, line in enumerate(reply.lines):
                        if reply.between_lines:
                            reply.between_lines(i)
                        chunk = (json.dumps(line) + "\n").encode()
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.01,), daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.close()


def make_client(url: str) -> RestKubeClient:
    from kubernetes import client as k8s

    cfg = k8s.Configuration()
    cfg.host = url
    cfg.retries = transport_retries()
    cfg.api_key = {"authorization": "sekret"}
    cfg.api_key_prefix = {"authorization": "Bearer"}
    return RestKubeClient(k8s.ApiClient(cfg), request_timeout=(2.0, 5.0))


def status(code: int, reason: str, message: str = "") -> JsonDict:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "code": code,
        "reason": reason,
        "message": message,
    }


def test_client_maps_410_to_gone(server: Server) -> None:
    server.replies.append(Reply(410, status(410, "Expired", "continue token too old")))
    with pytest.raises(errors.Gone) as info:
        make_client(server.url).list(PODS, "ns", limit=500, continue_token="tok")
    assert info.value.reason == "Expired" and "too old" in info.value.message


def test_list_sends_paging_and_selector_with_bearer_token(server: Server) -> None:
    server.replies.append(
        Reply(200, {"kind": "PodList", "items": [], "metadata": {"resourceVersion": "7", "continue": "next"}})
    )
    page = make_client(server.url).list(PODS, "ns", limit=500, continue_token="abc", label_selector="a=b")
    assert page["metadata"]["continue"] == "next"
    seen = server.seen[0]
    assert (seen.method, seen.path) == ("GET", "/api/v1/namespaces/ns/pods")
    assert seen.query == {"limit": ["500"], "continue": ["abc"], "labelSelector": ["a=b"]}
    assert seen.headers["authorization"] == "Bearer sekret"


def test_list_with_a_transform_hands_back_transformed_items(server: Server) -> None:
    pods = [{"metadata": {"name": f"p{i}"}, "spec": {"containers": [{"name": "c"}]}} for i in range(3)]
    server.replies.append(Reply(200, {"kind": "PodList", "metadata": {"resourceVersion": "7"}, "items": pods}))
    seen: list[str] = []

    def slim(obj: dict[str, Any]) -> dict[str, Any]:
        seen.append(obj["metadata"]["name"])
        return {"metadata": obj["metadata"]}

    page = make_client(server.url).list(PODS, "ns", limit=500, continue_token=None, transform=slim)
    assert page == {
        "kind": "PodList",
        "metadata": {"resourceVersion": "7"},
        "items": [{"metadata": {"name": f"p{i}"}} for i in range(3)],
    }
    assert seen == ["p0", "p1", "p2"]


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@given(
    st.dictionaries(st.text(max_size=6), _JSON, max_size=4),
    st.one_of(st.none(), st.lists(_JSON, max_size=4)),
    st.booleans(),
)
def test_decoding_a_list_item_by_item_equals_decoding_it_whole(top: dict[str, Any], items: Any, indent: bool) -> None:
    body = {**top, "items": items} if items is not None or "items" in top else top
    data = json.dumps(body, indent=2 if indent else None).encode()
    decoded = decode_list(data, lambda item: ["T", item])
    expected = json.loads(data)
    if isinstance(expected.get("items"), list):
        expected["items"] = [["T", item] for item in expected["items"]]
    assert decoded == expected


@pytest.mark.parametrize(
    "body",
    ["", "[]", "{", '{"items":[1,]}', '{"items":[1 2]}', '{"a":1,}', '{"a" 1}', "{1:2}", '{"a":1} x', '{"items":['],
)
def test_decoding_a_list_refuses_what_is_not_one_json_object(body: str) -> None:
    with pytest.raises(ValueError):
        decode_list(body.encode(), lambda item: item)


def test_watch_streams_events_line_by_line(server: Server) -> None:
    first_received = threading.Event()

    def hold_second_line(i: int) -> None:
        if i == 1:
            assert first_received.wait(3), "client must see line 1 before line 2 is sent"

    server.replies.append(
        Reply(
            lines=[
                {"type": "ADDED", "object": {"metadata": {"name": "a", "resourceVersion": "2"}}},
                {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "3"}}},
            ],
            between_lines=hold_second_line,
        )
    )
    stream = make_client(server.url).watch(LEASES, "ns", resource_version="1", timeout_seconds=300)
    events = []
    for event in stream:
        events.append(event["type"])
        first_received.set()
    assert events == ["ADDED", "BOOKMARK"]
    assert server.seen[0].query == {
        "watch": ["true"],
        "resourceVersion": ["1"],
        "timeoutSeconds": ["300"],
        "allowWatchBookmarks": ["true"],
    }


def test_watch_error_event_410_raises_gone(server: Server) -> None:
    server.replies.append(Reply(lines=[{"type": "ERROR", "object": status(410, "Expired")}]))
    stream = make_client(server.url).watch(PODS, resource_version="1", timeout_seconds=300)
    with pytest.raises(errors.Gone):
        list(stream)


def test_watch_http_error_status_raises_before_streaming(server: Server) -> None:
    server.replies.append(Reply(403, status(403, "Forbidden", "no watch for you")))
    with pytest.raises(errors.Forbidden):
        make_client(server.url).watch(PODS, resource_version="1", timeout_seconds=300)


def test_watch_close_from_another_thread_ends_iteration(server: Server) -> None:
    release = threading.Event()
    server.replies.append(
        Reply(
            lines=[
                {"type": "ADDED", "object": {"metadata": {"name": "a"}}},
                {"type": "ADDED", "object": {"metadata": {"name": "b"}}},
            ],
            between_lines=lambda i: None if i != 1 else bool(release.wait(3)) and None,
        )
    )
    stream = make_client(server.url).watch(PODS, resource_version="1", timeout_seconds=300)
    got = []
    for event in stream:
        got.append(event)
        threading.Timer(0.05, stream.close).start()
        threading.Timer(0.5, release.set).start()
    assert len(got) <= 2


def test_update_with_stale_resource_version_raises_conflict(server: Server) -> None:
    server.replies.append(Reply(409, status(409, "Conflict", "the object has been modified")))
    lease = {"metadata": {"name": "l", "namespace": "ns", "resourceVersion": "3"}, "spec": {}}
    with pytest.raises(errors.Conflict):
        make_client(server.url).update(LEASES, lease)
    seen = server.seen[0]
    assert (seen.method, seen.path) == ("PUT", "/apis/coordination.k8s.io/v1/namespaces/ns/leases/l")
    assert seen.body["metadata"]["resourceVersion"] == "3"


def test_create_conflict_with_already_exists_reason(server: Server) -> None:
    server.replies.append(Reply(409, status(409, "AlreadyExists", "exists")))
    with pytest.raises(errors.AlreadyExists):
        make_client(server.url).create(LEASES, {"metadata": {"name": "l", "namespace": "ns"}})
    assert server.seen[0].path == "/apis/coordination.k8s.io/v1/namespaces/ns/leases"


def test_update_status_uses_status_subresource(server: Server) -> None:
    ref = ResourceRef("security.liqo.io", "v1alpha1", "peeringconnectivities", True, "PeeringConnectivity")
    server.replies.append(Reply(200, {"status": {"ok": True}}))
    out = make_client(server.url).update_status(
        ref, {"metadata": {"name": "p", "namespace": "t"}, "status": {"ok": True}}
    )
    assert out == {"status": {"ok": True}}
    assert server.seen[0].path == ("/apis/security.liqo.io/v1alpha1/namespaces/t/peeringconnectivities/p/status")


@pytest.mark.parametrize(
    "patch_type,body,content_type",
    [
        ("merge", {"spec": {"a": 1}}, "application/merge-patch+json"),
        ("json", [{"op": "replace", "path": "/spec/a", "value": 1}], "application/json-patch+json"),
    ],
)
def test_patch_sends_the_right_content_type(server: Server, patch_type: Any, body: Any, content_type: str) -> None:
    server.replies.append(Reply(200, {}))
    make_client(server.url).patch(PODS, "p", body, namespace="ns", patch_type=patch_type)
    assert server.seen[0].headers["content-type"] == content_type
    assert server.seen[0].body == body


def test_delete_and_not_found(server: Server) -> None:
    server.replies.append(Reply(404, status(404, "NotFound", 'pods "p" not found')))
    with pytest.raises(errors.NotFound):
        make_client(server.url).delete(PODS, "p", namespace="ns")
    assert server.seen[0].method == "DELETE"


def test_create_event_posts_to_the_event_namespace(server: Server) -> None:
    server.replies.append(Reply(201, {"kind": "Event"}))
    make_client(server.url).create_event({"metadata": {"generateName": "x.", "namespace": "t"}, "reason": "Compiled"})
    assert (server.seen[0].method, server.seen[0].path) == ("POST", "/api/v1/namespaces/t/events")


def test_throttling_carries_retry_after(server: Server) -> None:
    server.replies.append(
        Reply(429, {"kind": "Status", "code": 429, "reason": "TooManyRequests"}, headers={"Retry-After": "3"})
    )
    with pytest.raises(errors.TooManyRequests) as info:
        make_client(server.url).get(PODS, "p", namespace="ns")
    assert info.value.retry_after == 3.0


def test_connection_refused_is_a_connection_failure() -> None:
    s = Server()
    url = s.url
    s.close()
    client = make_client(url)
    with pytest.raises(errors.ConnectionFailure) as info:
        client.get(PODS, "p", namespace="ns")
    assert info.value.status == 0


def test_resource_ref_validates_and_builds_paths() -> None:
    assert PODS.path() == "/api/v1/pods"
    nodes = ResourceRef("", "v1", "nodes", False, "Node")
    assert nodes.path(name="n1") == "/api/v1/nodes/n1"
    with pytest.raises(ValueError):
        nodes.path("ns")
    with pytest.raises(ValueError):
        ResourceRef("g", "", "x", True, "X")
    with pytest.raises(ValueError):
        RestKubeClient(None)


def test_load_api_client_reads_kubeconfig_and_disables_status_retries(tmp_path: Any) -> None:
    from liqosec.kube.client import load_api_client

    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: k, cluster: {server: 'http://127.0.0.1:6443'}}]\n"
        "users: [{name: u, user: {token: abc}}]\n"
        "contexts: [{name: c, context: {cluster: k, user: u}}]\n"
    )
    api = load_api_client(str(kubeconfig))
    assert api.configuration.host == "http://127.0.0.1:6443"
    assert api.configuration.retries.status == 0


def test_reflector_follows_a_real_http_watch_and_stops_promptly(server: Server) -> None:
    from liqosec.kube.reflector import ClientListWatch, Reflector
    from liqosec.kube.store import Store

    streaming = threading.Event()
    hang = threading.Event()

    def between(i: int) -> None:
        if i == 1:
            streaming.set()
            hang.wait(5)  # an idle watch: the server holds the connection open

    pod = {"metadata": {"name": "a", "namespace": "ns", "resourceVersion": "5"}}
    server.replies.append(Reply(200, {"items": [pod], "metadata": {"resourceVersion": "10"}}))
    server.replies.append(
        Reply(
            lines=[
                {"type": "MODIFIED", "object": {**pod, "metadata": {**pod["metadata"], "resourceVersion": "11"}}},
                {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "12"}}},
            ],
            between_lines=between,
        )
    )
    store = Store()
    reflector = Reflector(ClientListWatch(make_client(server.url), PODS, "ns"), store, resource="pods")
    stop = threading.Event()
    thread = threading.Thread(target=reflector.run, args=(stop,))
    thread.start()
    try:
        assert streaming.wait(3)
        deadline = threading.Event()
        for _ in range(300):
            if last_resource_version(reflector) == "11":
                break
            deadline.wait(0.01)
        assert store.get("ns/a") is not None
        assert store.get("ns/a")["metadata"]["resourceVersion"] == "11"  # type: ignore[index]
        assert reflector.has_synced()
    finally:
        stop.set()
        thread.join(3)
        hang.set()
    assert not thread.is_alive(), "stop must close the open HTTP watch"
    assert [s.query.get("watch") for s in server.seen] == [None, ["true"]]
    assert server.seen[1].query["resourceVersion"] == ["10"]


def test_load_api_client_prefers_in_cluster_config_inside_a_pod(monkeypatch: Any) -> None:
    from kubernetes import config as k8s_config

    from liqosec.kube.client import load_api_client

    seen: list[str] = []

    def fake_incluster(client_configuration: Any) -> None:
        seen.append("in-cluster")
        client_configuration.host = "https://10.96.0.1:443"

    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setattr(k8s_config, "load_incluster_config", fake_incluster)
    api = load_api_client()
    assert seen == ["in-cluster"]
    assert api.configuration.host == "https://10.96.0.1:443"
