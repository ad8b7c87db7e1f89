"""Validation of PeeringConnectivity objects: every error names its field and the allowed values."""

from __future__ import annotations

from typing import Any

import pytest

from liqosec.api.peeringconnectivity import Action, Group, Party, SecurityMode
from liqosec.api.validation import MAX_RULES, ValidationError, parse_peering_connectivity


def pc(spec: Any, **meta: Any) -> dict[str, Any]:
    metadata = {"name": "rome", "namespace": "liqo-tenant-rome", **meta}
    return {"apiVersion": "security.liqo.io/v1", "kind": "PeeringConnectivity", "metadata": metadata, "spec": spec}


def errors_of(obj: dict[str, Any]) -> list[str]:
    with pytest.raises(ValidationError) as info:
        parse_peering_connectivity(obj)
    return [str(e) for e in info.value.errors]


def test_seed_quick_start_parses_with_omitted_parties_as_any() -> None:
    parsed = parse_peering_connectivity(pc({"rules": [{"source": {"group": "offloaded"}, "action": "deny"}]}))
    rule = parsed.spec.rules[0]
    assert rule.source.group is Group.OFFLOADED
    assert rule.destination == Party()  # any address
    assert rule.action is Action.DENY


def test_omitted_action_denies_and_defaults_allow_full_pod_to_pod() -> None:
    parsed = parse_peering_connectivity(pc({"rules": [{"source": {"group": "remote-cluster"}}]}))
    assert parsed.spec.rules[0].action is Action.DENY
    assert parsed.spec.default_action is Action.ALLOW
    assert parsed.spec.security_mode is SecurityMode.FULL_POD_TO_POD


def test_missing_spec_is_an_empty_policy() -> None:
    obj = pc(None)
    del obj["spec"]
    assert parse_peering_connectivity(obj).spec.rules == ()


def test_unknown_group_names_path_and_choices() -> None:
    spec = {"rules": [{}, {}, {"source": {"group": "ofloaded"}, "action": "allow"}]}
    [message] = errors_of(pc(spec))
    assert message.startswith("spec.rules[2].source.group: unknown group 'ofloaded'; expected one of \"local-cluster\"")
    assert '"vc-remote"' in message


def test_party_with_two_selectors_is_rejected() -> None:
    spec = {"rules": [{"destination": {"group": "offloaded", "namespace": "shop"}}]}
    assert errors_of(pc(spec)) == [
        "spec.rules[0].destination: names both group and namespace; a party selects exactly one"
    ]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"rules": [{"action": "permit"}]}, "spec.rules[0].action: unknown action 'permit'"),
        ({"defaultAction": "reject"}, "spec.defaultAction: unknown action 'reject'"),
        ({"securityMode": "Strict"}, "spec.securityMode: unknown security mode 'Strict'"),
        ({"rules": "all"}, "spec.rules: must be a list of rules"),
        ({"rules": ["x"]}, "spec.rules[0]: must be an object, got str"),
        ({"rules": [{"source": "offloaded"}]}, "spec.rules[0].source: must be an object"),
        ({"rules": [{"source": {"namespace": ""}}]}, "spec.rules[0].source.namespace: must be a non-empty"),
        ({"rules": [{"source": {"pod": "x"}}]}, "spec.rules[0].source.pod: unknown field"),
        ({"rules": [{"verdict": "allow"}]}, "spec.rules[0].verdict: unknown field"),
        ({"rule": []}, "spec.rule: unknown field"),
        ({"rules": [{}] * (MAX_RULES + 1)}, f"at most {MAX_RULES} are allowed"),
    ],
)
def test_each_error_path_is_reported(spec: dict[str, Any], expected: str) -> None:
    assert any(expected in m for m in errors_of(pc(spec)))


def test_all_errors_are_reported_at_once() -> None:
    spec = {"rules": [{"action": "x"}, {"source": {"group": "y"}}], "securityMode": "z"}
    assert len(errors_of(pc(spec))) == 3


def test_missing_namespace_and_wrong_api_version() -> None:
    obj = pc({}, namespace="")
    obj["apiVersion"] = "security.liqo.io/v2"
    messages = errors_of(obj)
    assert any(m.startswith("apiVersion:") for m in messages)
    assert any(m.startswith("metadata.namespace: is required") for m in messages)


def test_error_message_names_the_object() -> None:
    with pytest.raises(ValidationError, match=r"^PeeringConnectivity liqo-tenant-rome/rome: spec.defaultAction"):
        parse_peering_connectivity(pc({"defaultAction": "maybe"}))
