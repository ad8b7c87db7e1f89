"""Bad input: the CRD rejects what a schema can say; the controller reports the rest, keeping the last good firewall."""

from __future__ import annotations

from typing import Any

import pytest
from support import example, running_controller, unique_peer, wait_for

from harness.objects import apply, ensure_namespace, tenant_namespace_labels
from liqosec.controller.resources import FIREWALL_CONFIGURATIONS, PEERING_CONNECTIVITIES
from liqosec.kube import errors
from liqosec.kube.client import EVENTS, NAMESPACES, KubeClient


def pc(name: str, ns: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "security.liqo.io/v1",
        "kind": "PeeringConnectivity",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"rules": rules},
    }


def condition(kube: KubeClient, name: str, ns: str, type_: str) -> dict[str, Any] | None:
    obj = kube.get(PEERING_CONNECTIVITIES, name, namespace=ns)
    return next((dict(c) for c in (obj.get("status") or {}).get("conditions") or () if c["type"] == type_), None)


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"source": {"group": "ofloaded"}}, 'spec.rules[0].source.group: Unsupported value: "ofloaded"'),
        (
            {"destination": {"group": "offloaded", "namespace": "x"}},
            "a party selects exactly one of group or namespace",
        ),
        ({"action": "permit"}, 'spec.rules[0].action: Unsupported value: "permit"'),
    ],
)
def test_the_crd_rejects_what_its_schema_can_say(kube: KubeClient, rule: dict[str, Any], message: str) -> None:
    ns = f"liqo-tenant-{unique_peer()}"
    ensure_namespace(kube, ns)
    with pytest.raises(errors.Invalid) as info:
        kube.create(PEERING_CONNECTIVITIES, pc("bad", ns, [rule]))
    assert message in str(info.value)


def test_outside_a_tenant_namespace_is_invalid_and_writes_nothing(kube: KubeClient, local_pod_cidr: None) -> None:
    ns = f"apps-{unique_peer()}"
    ensure_namespace(kube, ns)
    apply(kube, [pc("stray", ns, [])])
    with running_controller(kube):
        valid = wait_for(
            "Valid=False", lambda: (c := condition(kube, "stray", ns, "Valid")) and c["status"] == "False" and c
        )
        assert valid["reason"] == "NotTenantNamespace"
        assert valid["message"].startswith(f"metadata.namespace: '{ns}' is not a tenant namespace")
        with pytest.raises(errors.NotFound):
            kube.get(FIREWALL_CONFIGURATIONS, "liqosec-stray", namespace=ns)
        events = kube.list(EVENTS, ns, limit=50, continue_token=None)["items"]
        assert any(e["reason"] == "NotTenantNamespace" and e["type"] == "Warning" for e in events)


def test_an_invalid_change_keeps_the_last_good_firewall(kube: KubeClient, local_pod_cidr: None) -> None:
    peer = unique_peer()
    ns = f"edge-{peer}"  # a tenant namespace by Liqo's labels only, whatever its name
    kube.create(
        NAMESPACES,
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": tenant_namespace_labels(peer)}},
    )
    apply(kube, [pc(peer, ns, [{"source": {"group": "remote-cluster"}, "action": "deny"}])])
    with running_controller(kube):
        fc = wait_for("the firewall", lambda: _get(kube, f"liqosec-{peer}", ns))
        live = kube.get(NAMESPACES, ns)
        live["metadata"]["labels"] = {}
        kube.update(NAMESPACES, live)
        valid = wait_for(
            "Valid=False", lambda: (c := condition(kube, peer, ns, "Valid")) and c["status"] == "False" and c
        )
        assert "metadata.namespace" in valid["message"]
        ready = condition(kube, peer, ns, "Ready")
        assert ready and ready["status"] == "False" and "last good FirewallConfiguration is kept" in ready["message"]
        after = kube.get(FIREWALL_CONFIGURATIONS, f"liqosec-{peer}", namespace=ns)
        assert after["metadata"]["resourceVersion"] == fc["metadata"]["resourceVersion"]


def test_a_second_policy_for_one_peering_is_refused(kube: KubeClient, local_pod_cidr: None) -> None:
    peer = unique_peer()
    ns = f"liqo-tenant-{peer}"
    apply(kube, example("quick-start.yaml", peer=peer))
    with running_controller(kube):
        wait_for("the firewall", lambda: _get(kube, f"liqosec-{peer}", ns))
        apply(kube, [pc("zz-second", ns, [])])
        valid = wait_for(
            "Valid=False", lambda: (c := condition(kube, "zz-second", ns, "Valid")) and c["status"] == "False" and c
        )
        assert valid["reason"] == "Conflict" and repr(peer) in valid["message"]
        assert _get(kube, "liqosec-zz-second", ns) is None


def _get(kube: KubeClient, name: str, ns: str) -> dict[str, Any] | None:
    try:
        return kube.get(FIREWALL_CONFIGURATIONS, name, namespace=ns)
    except errors.NotFound:
        return None
