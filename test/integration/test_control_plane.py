"""The dev control plane behaves like a real cluster where liqosec depends on it: Liqo CRDs served
with pruning, 410 Gone after etcd compaction, owner-reference garbage collection, data kept across an
API server restart."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from harness.controlplane import ControlPlane

GC_TIMEOUT_S = 30.0  # the garbage collector acts within seconds; 30 s absorbs a loaded CI box
WATCH_TIMEOUT_S = 5
HTTP_GONE = 410
HTTP_NOT_FOUND = 404


@pytest.fixture()
def namespace(kube_api: Any) -> Iterator[str]:
    core = client.CoreV1Api(kube_api)
    name = f"it-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    yield name
    core.delete_namespace(name)


def firewall_configuration(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "networking.liqo.io/v1beta1",
        "kind": "FirewallConfiguration",
        "metadata": {"name": name},
        "spec": {
            "notAField": "pruned",
            "table": {
                "name": "liqosec-test",
                "family": "IPV4",  # Liqo's webhook refuses a forward filter chain in INET
                "alsoNotAField": 1,
                "chains": [
                    {
                        "name": "forward",
                        "hook": "forward",
                        "policy": "accept",
                        "type": "filter",
                        "priority": 0,
                        "rules": {
                            "filterRules": [
                                {
                                    "name": "drop-one",
                                    "action": "drop",
                                    "match": [{"op": "eq", "ip": {"position": "src", "value": "10.1.0.1"}}],
                                }
                            ]
                        },
                    }
                ],
            },
        },
    }


def test_liqo_firewallconfiguration_round_trips_with_unknown_fields_pruned(kube_api: Any, namespace: str) -> None:
    custom = client.CustomObjectsApi(kube_api)
    args = ("networking.liqo.io", "v1beta1", namespace, "firewallconfigurations")
    custom.create_namespaced_custom_object(*args, firewall_configuration("fw"))

    got = custom.get_namespaced_custom_object(*args, "fw")

    table = got["spec"]["table"]
    assert table["chains"][0]["rules"]["filterRules"][0]["match"][0]["ip"]["value"] == "10.1.0.1"
    assert "notAField" not in got["spec"]
    assert "alsoNotAField" not in table
    # Schema defaults are applied by the server, as on a real Liqo cluster.
    assert table["chains"][0]["rules"]["filterRules"][0]["counter"] is True


def _first_watch_event(kube_api: Any, namespace: str, rv: str) -> dict[str, Any]:
    core = client.CoreV1Api(kube_api)
    resp = core.list_namespaced_config_map(
        namespace, watch=True, resource_version=rv, timeout_seconds=WATCH_TIMEOUT_S, _preload_content=False
    )
    buffer = b""
    try:
        # Chunks are not lines: one chunk may hold several events or part of one.
        for chunk in resp.stream(decode_content=True):
            buffer += chunk
            if b"\n" in buffer:
                event: dict[str, Any] = json.loads(buffer.split(b"\n", 1)[0])
                return event
    finally:
        resp.release_conn()
    raise AssertionError(f"watch closed without a complete event: {buffer!r}")


def test_watch_from_before_compaction_gets_410_gone(control_plane: ControlPlane, kube_api: Any, namespace: str) -> None:
    core = client.CoreV1Api(kube_api)
    cm = core.create_namespaced_config_map(namespace, {"metadata": {"name": "c"}, "data": {"n": "0"}})
    old_rv = cm.metadata.resource_version
    for n in range(1, 4):
        core.patch_namespaced_config_map("c", namespace, {"data": {"n": str(n)}})
    control_plane.compact_etcd()
    # The watch cache keeps serving recent history past etcd's compaction (checked: the same
    # watch without the restart replays the MODIFIED events); a restart makes it relist at the
    # compacted revision, as after any apiserver rollout, so the old rv is gone for both.
    control_plane.restart_apiserver()

    try:
        event = _first_watch_event(kube_api, namespace, old_rv)
    except ApiException as err:
        assert err.status == HTTP_GONE
        return
    assert event["type"] == "ERROR", event
    assert event["object"]["code"] == HTTP_GONE


def test_deleting_owner_garbage_collects_dependent(kube_api: Any, namespace: str) -> None:
    core = client.CoreV1Api(kube_api)
    owner = core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}})
    core.create_namespaced_config_map(
        namespace,
        {
            "metadata": {
                "name": "dependent",
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}
                ],
            }
        },
    )

    assert core.read_namespaced_config_map("dependent", namespace).metadata.owner_references
    core.delete_namespaced_config_map("owner", namespace)

    deadline = time.monotonic() + GC_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            core.read_namespaced_config_map("dependent", namespace)
        except ApiException as err:
            assert err.status == HTTP_NOT_FOUND
            return
        time.sleep(0.5)
    pytest.fail(f"dependent ConfigMap still present {GC_TIMEOUT_S} s after its owner was deleted")


def test_restart_apiserver_keeps_data(control_plane: ControlPlane, kube_api: Any, namespace: str) -> None:
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "kept"}, "data": {"k": "v"}})

    control_plane.restart_apiserver()

    assert core.read_namespaced_config_map("kept", namespace).data == {"k": "v"}
