"""Liqo's own FirewallConfiguration webhooks are in place on the test API server, and speak with Liqo's words.

The session's control plane registers `liqo-agent webhook` (Liqo v1.2.0's
pkg/webhooks/firewallconfiguration, test/harness/liqo_webhook.py) as Liqo's chart does; these
tests write FirewallConfigurations Liqo refuses or rewrites and read its answers back.
"""

from __future__ import annotations

import copy
import uuid
from typing import Any

import pytest
from support import unique_peer

from harness.liqo_webhook import CONFIGURATION_NAME, SKIP_LABEL
from harness.objects import ensure_namespace
from liqosec.controller.resources import FIREWALL_CONFIGURATIONS
from liqosec.kube import errors
from liqosec.kube.client import KubeClient, ResourceRef

MUTATING = ResourceRef(
    "admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations", False, "MutatingWebhookConfiguration"
)
VALIDATING = ResourceRef(
    "admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations", False, "ValidatingWebhookConfiguration"
)


def fc(name: str, ns: str, rules: list[dict[str, Any]], *, table: str | None = None, **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "networking.liqo.io/v1beta1",
        "kind": "FirewallConfiguration",
        "metadata": {"name": name, "namespace": ns, "labels": {"test": "liqo-webhook", **labels}},
        "spec": {
            "table": {
                "name": table or name.replace("-", "_"),
                "family": "IPV4",
                "chains": [
                    {
                        "name": "forward",
                        "hook": "forward",
                        "type": "filter",
                        "priority": 0,
                        "policy": "accept",
                        "rules": {"filterRules": rules},
                    }
                ],
            }
        },
    }


def drop(name: str | None, src: str = "10.0.0.1") -> dict[str, Any]:
    rule: dict[str, Any] = {
        "action": "drop",
        "counter": False,
        "match": [{"op": "eq", "ip": {"position": "src", "value": src}}],
    }
    return rule if name is None else {"name": name, **rule}


def refusal(write: Any) -> str:
    """Liqo's refusal, as the API server relays it."""
    with pytest.raises(errors.ApiError) as info:
        write()
    return str(info.value)


@pytest.fixture()
def ns(kube: KubeClient) -> str:
    name = f"liqo-tenant-{unique_peer('lw')}"
    ensure_namespace(kube, name)
    return name


def test_both_configurations_are_liqos_charts(kube: KubeClient) -> None:
    mutating = kube.get(MUTATING, CONFIGURATION_NAME)
    validating = kube.get(VALIDATING, CONFIGURATION_NAME)
    for config, name, path in (
        (mutating, "firewallconfiguration.mutate.liqo.io", "/mutate/firewallconfigurations"),
        (validating, "firewallconfiguration.validate.liqo.io", "/validate/firewallconfigurations"),
    ):
        [hook] = config["webhooks"]
        assert hook["name"] == name
        assert hook["clientConfig"]["url"].endswith(path)
        assert hook["failurePolicy"] == "Fail" and hook["sideEffects"] == "None"
        assert hook["admissionReviewVersions"] == ["v1", "v1beta1"]
        assert [(r["operations"], r["resources"]) for r in hook["rules"]] == [
            (["CREATE", "UPDATE"], ["firewallconfigurations"])
        ]
        assert hook["objectSelector"]["matchExpressions"] == [
            {"key": SKIP_LABEL, "operator": "NotIn", "values": ["true"]}
        ]


def test_duplicate_rule_names_are_refused(kube: KubeClient, ns: str) -> None:
    message = refusal(lambda: kube.create(FIREWALL_CONFIGURATIONS, fc("dup", ns, [drop("same"), drop("same")])))
    assert "firewallconfiguration.validate.liqo.io" in message
    assert "chain forward: name same is duplicated" in message


def test_a_table_rename_is_refused(kube: KubeClient, ns: str) -> None:
    live = kube.create(FIREWALL_CONFIGURATIONS, fc("rename", ns, [drop("one")]))
    renamed = copy.deepcopy(live)
    renamed["spec"]["table"]["name"] = "renamed"
    assert "table name is immutable" in refusal(lambda: kube.update(FIREWALL_CONFIGURATIONS, renamed))
    # The same object with its table kept is an ordinary update.
    live["spec"]["table"]["chains"][0]["rules"]["filterRules"].append(drop("two", "10.0.0.2"))
    kube.update(FIREWALL_CONFIGURATIONS, live)


def test_a_second_firewall_with_the_same_table_and_labels_is_refused(kube: KubeClient, ns: str) -> None:
    table = f"shared_{uuid.uuid4().hex[:8]}"
    kube.create(FIREWALL_CONFIGURATIONS, fc("first", ns, [drop("one")], table=table))
    message = refusal(lambda: kube.create(FIREWALL_CONFIGURATIONS, fc("second", ns, [drop("one")], table=table)))
    assert f"table name {table} with labels" in message and "already used" in message
    # Other labels (as liqosec's per-node firewalls carry) make it another firewall for Liqo.
    kube.create(FIREWALL_CONFIGURATIONS, fc("third", ns, [drop("one")], table=table, node="worker-1"))


def test_an_unnamed_rule_gets_a_uuid_name(kube: KubeClient, ns: str) -> None:
    created = kube.create(FIREWALL_CONFIGURATIONS, fc("unnamed", ns, [drop(None), drop("kept", "10.0.0.2")]))
    first, second = created["spec"]["table"]["chains"][0]["rules"]["filterRules"]
    assert str(uuid.UUID(first["name"])) == first["name"]
    assert second["name"] == "kept"


def test_the_skip_label_bypasses_liqos_webhooks(kube: KubeClient, ns: str) -> None:
    """Liqo's objectSelector: an object labelled liqo.io/webhook-skip=true is neither named nor checked."""
    skipped = fc("skipped", ns, [drop("same"), drop("same"), drop(None)], **{SKIP_LABEL: "true"})
    created = kube.create(FIREWALL_CONFIGURATIONS, skipped)
    names = [r.get("name") for r in created["spec"]["table"]["chains"][0]["rules"]["filterRules"]]
    assert names == ["same", "same", None]


def test_the_mutating_webhook_drops_an_empty_rule_list(kube: KubeClient, ns: str) -> None:
    """Liqo's mutator re-marshals the whole object: `filterRules: []` (omitempty in Liqo's RulesSet) is stored as
    `rules: {}`. A writer comparing its desired spec with the stored one must expect that."""
    created = kube.create(FIREWALL_CONFIGURATIONS, fc("empty", ns, []))
    assert created["spec"]["table"]["chains"][0]["rules"] == {}
