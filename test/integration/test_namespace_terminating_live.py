"""How the real API server refuses a create in a namespace being deleted, as liqosec reads it.

`liqoctl unpeer --delete-namespaces` deletes a tenant namespace under a policy; the namespace
controller may delete liqosec's firewall first, and liqosec's re-create is then refused. liqosec
tells that refusal (no failure: the policy goes with its namespace) from an RBAC one by the cause
the API server's NamespaceLifecycle admission adds; this reads that cause off the wire.
"""

from __future__ import annotations

import uuid

import pytest

from liqosec.controller.resources import FIREWALL_CONFIGURATIONS
from liqosec.kube import errors
from liqosec.kube.client import EVENTS, NAMESPACES, KubeClient

pytestmark = pytest.mark.integration

HOLD = "liqosec.test/hold"  # a finalizer nobody removes: the namespace stays Terminating


def test_a_create_in_a_terminating_namespace_is_told_apart_from_rbac(kube: KubeClient) -> None:
    ns = f"going-{uuid.uuid4().hex[:8]}"
    kube.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": "held.", "namespace": ns, "finalizers": [HOLD]},
        "involvedObject": {"kind": "Namespace", "name": ns, "namespace": ns},
        "reason": "Held",
        "message": "keeps the namespace Terminating",
    }
    held = kube.create_event(event)
    kube.delete(NAMESPACES, ns)
    assert kube.get(NAMESPACES, ns)["status"]["phase"] == "Terminating"
    fc = {
        "apiVersion": "networking.liqo.io/v1beta1",
        "kind": "FirewallConfiguration",
        "metadata": {"name": "liqosec-late", "namespace": ns},
        "spec": {"table": {"name": "liqosec-late", "family": "IPV4", "chains": []}},
    }
    try:
        for create in (
            lambda: kube.create_event({**event, "metadata": {"generateName": "late.", "namespace": ns}}),
            lambda: kube.create(FIREWALL_CONFIGURATIONS, fc, namespace=ns),
        ):
            with pytest.raises(errors.Forbidden) as refused:
                create()
            assert errors.namespace_terminating(refused.value), refused.value.causes
    finally:
        kube.update(EVENTS, {**held, "metadata": {**held["metadata"], "finalizers": []}})
