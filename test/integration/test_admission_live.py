"""Admission on the real API server: the CRD's CEL rules, and the webhook registered and called by it."""

from __future__ import annotations

import base64
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import unique_peer, wait_for

from harness.objects import ensure_namespace, tenant_namespace_labels
from harness.pki import write_pki
from liqosec.admission.server import ClusterLookup, serve
from liqosec.controller.resources import PEERING_CONNECTIVITIES
from liqosec.kube import errors
from liqosec.kube.client import NAMESPACES, KubeClient, ResourceRef

WEBHOOKS = ResourceRef(
    "admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations", False, "ValidatingWebhookConfiguration"
)
WEBHOOK_NAME = "peeringconnectivities.security.liqo.io"


def pc(name: str, ns: str, rules: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "security.liqo.io/v1",
        "kind": "PeeringConnectivity",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"rules": rules, **spec},
    }


def refused(kube: KubeClient, obj: dict[str, Any]) -> str:
    with pytest.raises(errors.Invalid) as info:
        kube.create(PEERING_CONNECTIVITIES, obj)
    return str(info.value)


@pytest.fixture()
def tenant(kube: KubeClient) -> str:
    ns = f"liqo-tenant-{unique_peer()}"
    ensure_namespace(kube, ns)
    return ns


@pytest.mark.parametrize(
    ("name", "rules", "spec", "message"),
    [
        (
            "ports",
            [{"destination": {"group": "vc-local", "ports": [{"port": 90, "endPort": 80}]}, "action": "allow"}],
            {},
            "spec.rules[0].destination.ports[0].endPort: Invalid value",
        ),
        (
            "nsboth",
            [{"source": {"namespace": "shop", "namespaceSelector": {}}, "action": "allow"}],
            {},
            "namespace and namespaceSelector both select the namespace",
        ),
        ("p" * 64, [], {}, "metadata.name: Too long: may not be more than 63 bytes"),
    ],
)
def test_cel_rules_refuse_with_the_field_named(
    kube: KubeClient, tenant: str, name: str, rules: list[dict[str, Any]], spec: dict[str, Any], message: str
) -> None:
    assert message in refused(kube, pc(name, tenant, rules, **spec))


def test_redundant_rules_are_left_to_the_webhook(kube: KubeClient, tenant: str) -> None:
    """A duplicate rule, a rule after a catch-all and a mode after it never decide, but compile: the CRD stores them."""
    rules = [{"action": "deny"}, *[{"source": {"group": "offloaded"}, "action": "allow"}] * 2]
    created = kube.create(PEERING_CONNECTIVITIES, pc("redundant", tenant, rules, securityMode="ProtectedBorders"))
    assert len(created["spec"]["rules"]) == 3


def test_cel_rules_pass_the_largest_policy_the_schema_allows(kube: KubeClient, tenant: str) -> None:
    """256 distinct rules with selectors and ports: the rules' runtime cost stays within the API server's budget."""
    rules = [
        {
            "source": {"group": "offloaded", "podSelector": {"matchLabels": {"app": f"a{i}"}}},
            "destination": {"namespace": f"ns-{i}", "ports": [{"protocol": "TCP", "port": 80, "endPort": 90 + i}]},
            "action": "allow" if i % 2 else "deny",
        }
        for i in range(255)
    ] + [{"action": "deny"}]
    created = kube.create(PEERING_CONNECTIVITIES, pc("big", tenant, rules, securityMode="FullPodToPod"))
    assert len(created["spec"]["rules"]) == 256


# ----- the webhook -----


@pytest.fixture()
def webhook(kube: KubeClient, tmp_path: Path) -> Iterator[str]:
    """liqosec's webhook on 127.0.0.1, registered with the API server for namespaces labelled with a test id.

    failurePolicy Fail: a webhook the API server could not call would refuse everything, so
    an object admitted below was checked by it.
    """
    certs = tmp_path / "certs"
    write_pki(certs, hosts=["127.0.0.1"])
    shutil.copy(certs / "serving.crt", certs / "tls.crt")
    shutil.copy(certs / "serving.key", certs / "tls.key")
    server = serve("127.0.0.1:0", str(certs), ClusterLookup(kube))
    test_id = unique_peer("wh")
    config = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": f"liqosec-{test_id}"},
        "webhooks": [
            {
                "name": WEBHOOK_NAME,
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "failurePolicy": "Fail",
                "timeoutSeconds": 10,
                "clientConfig": {
                    "url": f"https://127.0.0.1:{server.server_address[1]}/validate",
                    "caBundle": base64.b64encode((certs / "ca.crt").read_bytes()).decode(),
                },
                "rules": [
                    {
                        "apiGroups": ["security.liqo.io"],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE", "UPDATE"],
                        "resources": ["peeringconnectivities"],
                        "scope": "Namespaced",
                    }
                ],
                "namespaceSelector": {"matchLabels": {"liqosec-webhook-test": test_id}},
            }
        ],
    }
    kube.create(WEBHOOKS, config)
    try:
        yield test_id
    finally:
        kube.delete(WEBHOOKS, config["metadata"]["name"])
        server.shutdown()
        server.server_close()


def labelled_namespace(kube: KubeClient, name: str, test_id: str, **labels: str) -> str:
    kube.create(
        NAMESPACES,
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": {"liqosec-webhook-test": test_id, **labels}},
        },
    )
    return name


SHADOWED = [
    {"destination": {"group": "offloaded"}, "action": "deny"},
    {"source": {"group": "remote-cluster"}, "destination": {"group": "offloaded"}, "action": "allow"},
]


def test_the_api_server_refuses_a_contradiction_with_the_webhooks_message(kube: KubeClient, webhook: str) -> None:
    ns = labelled_namespace(kube, f"liqo-tenant-{webhook}", webhook, **tenant_namespace_labels(webhook))
    expected = (
        f'admission webhook "{WEBHOOK_NAME}" denied the request: PeeringConnectivity {ns}/contradiction: '
        "spec.rules[1]: can never decide: spec.rules[0] (any -> offloaded: deny) matches every packet it matches, "
        "first, with the opposite action"
    )
    # The API server picks a new webhook configuration up within a moment.
    message = wait_for("the webhook's refusal", lambda: _try(kube, ns, "contradiction"))
    assert expected in message
    good = kube.create(PEERING_CONNECTIVITIES, pc("good", ns, SHADOWED[::-1]))
    assert good["metadata"]["name"] == "good"
    # One policy per peering: a second is refused with the controller's words.
    second = refused(kube, pc("second", ns, []))
    assert f"metadata.name: the peering of '{ns}' is already governed by 'good'" in second
    # Staged (DryRun) policies sit beside it; promoting one while 'good' is enforced is refused.
    staged = kube.create(PEERING_CONNECTIVITIES, pc("staged", ns, [], enforcement="DryRun"))
    promoted = {**staged, "spec": {**staged["spec"], "enforcement": "Enforce"}}
    with pytest.raises(errors.Invalid, match="already governed by 'good'.*set spec.enforcement: DryRun"):
        kube.update(PEERING_CONNECTIVITIES, promoted)
    # An update that breaks the policy is refused; one leaving the spec alone is not.
    live = kube.get(PEERING_CONNECTIVITIES, "good", namespace=ns)
    broken = {**live, "spec": {**live["spec"], "rules": SHADOWED}}
    with pytest.raises(errors.Invalid, match="spec.rules\\[1\\]: can never decide"):
        kube.update(PEERING_CONNECTIVITIES, broken)
    labelled = {**live, "metadata": {**live["metadata"], "labels": {"team": "net"}}}
    assert kube.update(PEERING_CONNECTIVITIES, labelled)["metadata"]["labels"] == {"team": "net"}


def _try(kube: KubeClient, ns: str, name: str = "probe") -> str:
    """Create a contradictory policy: the refusal, or '' when the webhook is not called yet (the object is removed)."""
    try:
        kube.create(PEERING_CONNECTIVITIES, pc(name, ns, SHADOWED))
    except errors.Invalid as err:
        return str(err)
    kube.delete(PEERING_CONNECTIVITIES, name, namespace=ns)
    return ""


def test_the_webhook_refuses_a_policy_outside_a_tenant_namespace(kube: KubeClient, webhook: str) -> None:
    ns = labelled_namespace(kube, f"apps-{webhook}", webhook)
    message = wait_for("the webhook's refusal", lambda: _try(kube, ns))
    assert WEBHOOK_NAME in message
    stray = refused(kube, pc("stray", ns, []))
    assert f"metadata.namespace: '{ns}' is not a tenant namespace" in stray
    # Nor is a namespace Liqo made for a consumer's offloaded workloads (the remote cluster id alone).
    offloaded = labelled_namespace(kube, f"shop-{webhook}", webhook, **{"liqo.io/remote-cluster-id": webhook})
    assert "lacks liqo.io/tenant-namespace" in refused(kube, pc("stray", offloaded, []))
    # A namespace Liqo labels as a tenant namespace is one, whatever its name.
    edge = labelled_namespace(kube, f"edge-{webhook}", webhook, **tenant_namespace_labels(webhook))
    assert kube.create(PEERING_CONNECTIVITIES, pc("edge", edge, []))["metadata"]["namespace"] == edge
