"""Which policy governs a peering: one rule, and the same words from render, the controller and the webhook."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from fake_kube import Fixture, cluster, peering

from liqosec.admission.review import review
from liqosec.compiler.governance import conflict, governors, is_dry_run
from liqosec.controller.resources import PEERING_CONNECTIVITIES as PCS
from liqosec.inputs import RenderError
from liqosec.offline import outcomes

ROME = "liqo-tenant-rome"
RULES = [{"source": {"group": "offloaded"}, "destination": {"group": "local-cluster"}, "action": "deny"}]


def two_enforced() -> list[dict[str, Any]]:
    """Rome's cluster with its policy `rome` (older) and a second enforced policy `second`."""
    objs = cluster("rome")
    first = next(o for o in objs if o["kind"] == "PeeringConnectivity")
    first["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    second = peering("second", ROME, RULES)
    second["metadata"]["creationTimestamp"] = "2026-02-01T00:00:00Z"
    return [*objs, second]


class Lookup:
    def __init__(self, objects: Sequence[Mapping[str, Any]]) -> None:
        self.objects = objects

    def namespace(self, name: str) -> Mapping[str, Any] | None:
        return next((o for o in self.objects if o["kind"] == "Namespace" and o["metadata"]["name"] == name), None)

    def peerings(self, namespace: str) -> Sequence[Mapping[str, Any]]:
        return [
            o for o in self.objects if o["kind"] == "PeeringConnectivity" and o["metadata"]["namespace"] == namespace
        ]


def test_render_the_controller_and_the_webhook_refuse_a_second_enforced_policy_in_the_same_words() -> None:
    objs = two_enforced()
    second = objs[-1]
    expected = conflict(second, {ROME: "rome"})
    assert expected is not None and "already governed by 'rome'" in expected

    with pytest.raises(RenderError) as rendered:
        outcomes(objs)
    assert f"PeeringConnectivity {ROME}/second: metadata.name: {expected}" in rendered.value.errors

    f = Fixture(objs)
    for _ in range(4):
        f.reconcile(f"{ROME}/second")
        f.sync()
    stored = f.client.stored(PCS, "second", ROME)
    assert stored is not None
    valid = next(c for c in stored["status"]["conditions"] if c["type"] == "Valid")
    assert (valid["reason"], valid["message"]) == ("Conflict", f"metadata.name: {expected}")

    body = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "1",
            "kind": {"group": "security.liqo.io", "version": "v1", "kind": "PeeringConnectivity"},
            "operation": "CREATE",
            "namespace": ROME,
            "object": second,
        },
    }
    response = review(body, Lookup(objs[:-1]))["response"]
    assert response["allowed"] is False
    assert response["status"]["message"] == f"PeeringConnectivity {ROME}/second: metadata.name: {expected}"


def test_the_oldest_enforced_policy_governs_and_dry_run_ones_govern_nothing() -> None:
    objs = two_enforced()
    policies = [o for o in objs if o["kind"] == "PeeringConnectivity"]
    assert governors(policies) == {ROME: "rome"}
    assert conflict(policies[0], governors(policies)) is None
    staged = {**policies[1], "spec": {**policies[1]["spec"], "enforcement": "DryRun"}}
    assert is_dry_run(staged) and conflict(staged, governors(policies)) is None
    assert governors([staged]) == {}
