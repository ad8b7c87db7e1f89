"""The admission webhook's review: what it refuses (each field named), what it lets through, and garbage."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from liqosec.admission.review import BadReview, LookupFailed, review
from liqosec.api.validation import ValidationError, parse_peering_connectivity
from liqosec.inputs import RenderError, load_objects
from liqosec.offline import outcomes

ROOT = Path(__file__).resolve().parents[2]
TENANT = "liqo-tenant-rome"


class FakeLookup:
    """The cluster as the webhook reads it: namespaces by name, peerings by namespace."""

    def __init__(self, objects: Sequence[Mapping[str, Any]] = (), *, fail: bool = False) -> None:
        self.objects = list(objects)
        self.fail = fail

    def namespace(self, name: str) -> Mapping[str, Any] | None:
        if self.fail:
            raise LookupFailed("connection refused")
        return next((o for o in self.objects if o["kind"] == "Namespace" and o["metadata"]["name"] == name), None)

    def peerings(self, namespace: str) -> Sequence[Mapping[str, Any]]:
        if self.fail:
            raise LookupFailed("connection refused")
        return [
            o
            for o in self.objects
            if o["kind"] == "PeeringConnectivity" and o["metadata"].get("namespace") == namespace
        ]


def pc(rules: list[Any], *, name: str = "rome", ns: str = TENANT, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "security.liqo.io/v1",
        "kind": "PeeringConnectivity",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"rules": rules, **spec},
    }


def admission(obj: Any, operation: str = "CREATE", old: Any = None, **request: Any) -> dict[str, Any]:
    body = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "0b1c",
            "kind": {"group": "security.liqo.io", "version": "v1", "kind": "PeeringConnectivity"},
            "operation": operation,
            "namespace": TENANT,
            "object": obj,
            "oldObject": old,
            **request,
        },
    }
    return body


def answer(obj: Any, lookup: Any = None, **kw: Any) -> dict[str, Any]:
    result = review(admission(obj, **kw), lookup)
    assert result["apiVersion"] == "admission.k8s.io/v1" and result["kind"] == "AdmissionReview"
    assert result["response"]["uid"] == "0b1c"
    return dict(result["response"])


def refusal(obj: Any, lookup: Any = None, **kw: Any) -> str:
    response = answer(obj, lookup, **kw)
    assert response["allowed"] is False, response
    assert response["status"]["code"] == 422
    return str(response["status"]["message"])


def test_every_example_policy_is_admitted() -> None:
    objects = load_objects([str(ROOT / "examples")])
    lookup = FakeLookup(objects)
    policies = [o for o in objects if o["kind"] == "PeeringConnectivity"]
    assert policies
    for obj in policies:
        others = FakeLookup([o for o in objects if o is not obj])
        assert answer(obj, others)["allowed"] is True, obj["metadata"]
        assert answer(obj, lookup, operation="UPDATE", old=pc([], name=obj["metadata"]["name"]))["allowed"] is True


@pytest.mark.parametrize(
    ("rules", "spec", "field"),
    [
        ([{"source": {"group": "ofloaded"}}], {}, "spec.rules[0].source.group: unknown group 'ofloaded'"),
        ([{"action": "permit"}], {}, "spec.rules[0].action: unknown action 'permit'"),
        ([{"source": {"group": "offloaded", "namespace": "x"}}], {}, "spec.rules[0].source: names both"),
        ([], {"securityMode": "Open"}, "spec.securityMode: unknown security mode 'Open'"),
        ([{"destination": {"ports": [{"port": 90, "endPort": 80}]}}], {}, "spec.rules[0].destination.ports[0].endPort"),
    ],
)
def test_what_the_controller_calls_invalid_is_refused_with_its_words(
    rules: list[Any], spec: dict[str, Any], field: str
) -> None:
    obj = pc(rules, **spec)
    message = refusal(obj)
    assert message.startswith(f"PeeringConnectivity {TENANT}/rome: ")
    assert field in message
    with pytest.raises(ValidationError) as controller:  # the controller's own parser says the same
        parse_peering_connectivity(obj)
    assert all(str(e) in message for e in controller.value.errors)


def test_a_name_too_long_for_a_label_is_refused() -> None:
    message = refusal(pc([], name="p" * 64))
    assert "metadata.name: is 64 characters; at most 63" in message


def test_outside_a_tenant_namespace_is_refused_as_render_says() -> None:
    obj = pc([], ns="apps")
    lookup = FakeLookup([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "apps"}}])
    message = refusal(obj, lookup, namespace="apps")
    assert "metadata.namespace: 'apps' is not a tenant namespace" in message
    with pytest.raises(RenderError) as rendered:
        outcomes([*lookup.objects, obj])
    assert rendered.value.errors[0].partition(": ")[2] in message


def test_a_namespace_labelled_as_tenant_is_accepted() -> None:
    labels = {"liqo.io/remote-cluster-id": "rome", "liqo.io/tenant-namespace": "true"}
    ns = {"kind": "Namespace", "metadata": {"name": "edge", "labels": labels}}
    assert answer(pc([], ns="edge"), FakeLookup([ns]), namespace="edge")["allowed"] is True


def test_a_second_policy_for_the_peering_is_refused_and_the_first_may_change() -> None:
    first = pc([], name="first")
    first["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    lookup = FakeLookup([first])
    message = refusal(pc([], name="second"), lookup)
    assert f"metadata.name: the peering of '{TENANT}' is already governed by 'first'" in message
    changed = pc([{"source": {"group": "offloaded"}}], name="first")
    changed["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    assert answer(changed, lookup, operation="UPDATE", old=first)["allowed"] is True


def test_staged_policies_sit_beside_the_enforced_one_and_a_promotion_waits_for_it() -> None:
    enforced = pc([], name="first")
    enforced["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    staged = pc([{"source": {"group": "offloaded"}}], name="trial", enforcement="DryRun")
    staged["metadata"]["creationTimestamp"] = "2025-01-01T00:00:00Z"  # older: age does not let it take over
    lookup = FakeLookup([enforced, staged])
    assert answer(pc([], name="another", enforcement="DryRun"), lookup)["allowed"] is True
    assert answer(staged, FakeLookup([enforced]))["allowed"] is True  # created beside the enforced one
    second = refusal(pc([], name="second"), lookup)  # a second enforced one is refused, saying how to stage it
    assert f"metadata.name: the peering of '{TENANT}' is already governed by 'first'" in second
    assert "set spec.enforcement: DryRun to stage this one" in second
    promoted = {**staged, "spec": {**staged["spec"], "enforcement": "Enforce"}}
    assert "already governed by 'first'" in refusal(promoted, lookup, operation="UPDATE", old=staged)
    # Staging the enforced one is allowed; then the promotion is too.
    demoted = {**enforced, "spec": {**enforced["spec"], "enforcement": "DryRun"}}
    assert answer(demoted, lookup, operation="UPDATE", old=enforced)["allowed"] is True
    assert answer(promoted, FakeLookup([demoted, staged]), operation="UPDATE", old=staged)["allowed"] is True


def test_a_policy_being_deleted_does_not_block_its_successor() -> None:
    going = pc([], name="old")
    going["metadata"]["deletionTimestamp"] = "2026-01-02T00:00:00Z"
    assert answer(pc([], name="new"), FakeLookup([going]))["allowed"] is True


@pytest.mark.parametrize(
    ("rules", "field", "words"),
    [
        (
            [
                {"destination": {"group": "offloaded"}, "action": "deny"},
                {"source": {"group": "remote-cluster"}, "destination": {"group": "offloaded"}, "action": "allow"},
            ],
            "spec.rules[1]",
            "can never decide: spec.rules[0] (any -> offloaded: deny) matches every packet it matches, first, "
            "with the opposite action",
        ),
        (
            [{"source": {"group": "vc-local"}}, {"source": {"group": "slice-local"}, "action": "deny"}],
            "spec.rules[1]",
            "the same rule as spec.rules[0]",
        ),
        (
            [
                {
                    "source": {"group": "offloaded"},
                    "destination": {"ports": [{"protocol": "TCP", "port": 1, "endPort": 1024}]},
                    "action": "allow",
                },
                {"source": {"group": "offloaded"}, "destination": {"group": "local-cluster", "ports": [{"port": 80}]}},
            ],
            "spec.rules[1]",
            "can never decide: spec.rules[0] (offloaded -> any on tcp/1-1024: allow)",
        ),
        (
            [
                {"source": {"podSelector": {"matchLabels": {"app": "web"}}}, "action": "allow"},
                {"source": {"namespace": "shop", "podSelector": {"matchLabels": {"app": "web", "tier": "front"}}}},
            ],
            "spec.rules[1]",
            "can never decide: spec.rules[0]",
        ),
    ],
)
def test_a_rule_an_earlier_rule_covers_is_refused_naming_both(rules: list[Any], field: str, words: str) -> None:
    message = refusal(pc(rules))
    assert f"{field}: {words}" in message


@pytest.mark.parametrize(
    "rules",
    [
        # Narrower first is how first match is meant to be used.
        [
            {"source": {"group": "remote-cluster"}, "destination": {"group": "offloaded"}, "action": "allow"},
            {"destination": {"group": "offloaded"}},
        ],
        # Other ports, another protocol: not covered.
        [{"destination": {"ports": [{"port": 80}]}, "action": "allow"}, {"destination": {"ports": [{"port": 443}]}}],
        [
            {"destination": {"ports": [{"protocol": "TCP", "port": 53}]}, "action": "allow"},
            {"destination": {"ports": [{"protocol": "UDP", "port": 53}]}},
        ],
        # A selector with more requirements is narrower, not wider.
        [
            {"source": {"podSelector": {"matchLabels": {"app": "web", "tier": "front"}}}},
            {"source": {"podSelector": {"matchLabels": {"app": "web"}}}},
        ],
        # Two groups that may overlap on a cluster are not taken as covering each other.
        [{"source": {"group": "private-subnets"}}, {"source": {"group": "local-cluster"}, "action": "allow"}],
    ],
)
def test_rules_that_can_decide_are_admitted(rules: list[Any]) -> None:
    assert answer(pc(rules))["allowed"] is True


def test_a_security_mode_after_a_rule_matching_everything_is_refused() -> None:
    message = refusal(
        pc(
            [{"source": {"group": "offloaded"}, "action": "allow"}, {"action": "allow"}],
            securityMode="ProtectedBorders",
        )
    )
    assert "spec.securityMode: ProtectedBorders never decides: spec.rules[1] (any -> any: allow)" in message
    message = refusal(pc([{"source": {}, "destination": {}}], securityMode="IntraClusterTrafficSegregation"))
    assert "spec.securityMode: IntraClusterTrafficSegregation never decides" in message
    # Without a mode, a last rule matching everything is what defaultAction would say: fine.
    assert answer(pc([{"source": {"group": "offloaded"}, "action": "allow"}, {"action": "deny"}]))["allowed"] is True


@pytest.mark.parametrize(
    ("party", "field", "words"),
    [
        (
            {
                "podSelector": {
                    "matchLabels": {"app": "web"},
                    "matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["web"]}],
                }
            },
            "spec.rules[0].source.podSelector",
            "can never match: no value of label 'app' satisfies every requirement on it",
        ),
        (
            {
                "namespaceSelector": {
                    "matchExpressions": [
                        {"key": "team", "operator": "Exists"},
                        {"key": "team", "operator": "DoesNotExist"},
                    ]
                }
            },
            "spec.rules[0].source.namespaceSelector",
            "can never match: label 'team' must both exist and not exist",
        ),
        (
            {"group": "internet", "podSelector": {"matchLabels": {"app": "web"}}},
            "spec.rules[0].source.podSelector",
            "can never match a pod of group internet",
        ),
        (
            {"group": "leaf", "namespaceSelector": {}},
            "spec.rules[0].source.namespaceSelector",
            "can never match a pod of group leaf",
        ),
    ],
)
def test_a_selector_that_can_never_match_is_refused(party: dict[str, Any], field: str, words: str) -> None:
    assert f"{field}: {words}" in refusal(pc([{"source": party, "action": "allow"}]))


def test_every_problem_is_listed_with_its_field() -> None:
    rules = [{"action": "allow"}, {"source": {"group": "offloaded"}}]
    response = answer(pc(rules, securityMode="ProtectedBorders"))
    causes = {c["field"] for c in response["status"]["details"]["causes"]}
    assert causes == {"spec.rules[1]", "spec.securityMode"}


def test_an_update_leaving_the_spec_alone_is_never_blocked() -> None:
    """The controller's finalizer patch on a policy admitted before the webhook existed."""
    bad = pc([{"action": "allow"}, {"action": "deny"}])
    with_finalizer = {**bad, "metadata": {**bad["metadata"], "finalizers": ["security.liqo.io/firewall-cleanup"]}}
    assert answer(with_finalizer, operation="UPDATE", old=bad)["allowed"] is True
    assert answer(with_finalizer, operation="UPDATE", old=pc([]))["allowed"] is False


def test_a_cluster_that_cannot_be_read_leaves_its_checks_to_the_controller() -> None:
    response = answer(pc([], ns="apps"), FakeLookup(fail=True), namespace="apps")
    assert response["allowed"] is True
    assert any("could not read Namespace apps (connection refused)" in w for w in response["warnings"])
    assert "spec.rules[1]" in refusal(pc([{"action": "allow"}, {"action": "deny"}]), FakeLookup(fail=True))


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (None, "expected an AdmissionReview object, got NoneType"),
        ([], "expected an AdmissionReview object, got list"),
        (
            {"kind": "AdmissionReview", "apiVersion": "v1"},
            "expected kind AdmissionReview of apiVersion admission.k8s.io/v1",
        ),
        ({"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1"}, "AdmissionReview without a request"),
        (
            {"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": {"uid": 7}},
            "request.uid: missing",
        ),
    ],
)
def test_what_is_not_a_review_gets_no_answer_but_a_reason(body: Any, words: str) -> None:
    with pytest.raises(BadReview) as info:
        review(body)
    assert words in str(info.value)


@pytest.mark.parametrize(
    ("obj", "what"), [(None, "missing"), ([1, 2], "a list, not an object"), ("spec", "a str, not an object")]
)
def test_a_review_without_an_object_is_refused_naming_it(obj: Any, what: str) -> None:
    assert f"request.object: {what}: there is no PeeringConnectivity to check" in refusal(obj)


def test_other_operations_and_kinds_pass_with_a_word() -> None:
    assert answer(None, operation="DELETE")["allowed"] is True
    other = answer({"kind": "Pod"}, kind={"group": "", "version": "v1", "kind": "Pod"})
    assert other["allowed"] is True and "checks PeeringConnectivity objects only" in other["warnings"][0]


def test_a_v1beta1_review_is_answered_in_v1beta1() -> None:
    body = admission(pc([{"action": "allow"}, {"action": "allow"}]))
    body["apiVersion"] = "admission.k8s.io/v1beta1"
    result = review(body)
    assert result["apiVersion"] == "admission.k8s.io/v1beta1" and result["response"]["allowed"] is False


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
WORDS = st.sampled_from(
    [
        "group",
        "namespace",
        "podSelector",
        "namespaceSelector",
        "matchLabels",
        "matchExpressions",
        "key",
        "operator",
        "values",
        "In",
        "NotIn",
        "Exists",
        "ports",
        "port",
        "endPort",
        "protocol",
        "TCP",
        "offloaded",
        "internet",
        "allow",
    ]
)
PARTYISH = st.recursive(
    st.none() | st.integers(0, 70000) | WORDS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(WORDS, inner, max_size=4),
    max_leaves=15,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    spec=st.one_of(
        JSON,
        st.fixed_dictionaries(
            {
                "rules": st.lists(
                    st.dictionaries(st.sampled_from(["source", "destination", "action"]), PARTYISH), max_size=4
                )
            },
            optional={"securityMode": st.sampled_from(["ProtectedBorders", "FullPodToPod", 3])},
        ),
    ),
    meta=JSON,
)
def test_garbage_never_breaks_the_review(spec: Any, meta: Any) -> None:
    obj = {
        "apiVersion": "security.liqo.io/v1",
        "kind": "PeeringConnectivity",
        "metadata": {"name": "g", "namespace": TENANT},
        "spec": spec,
    }
    for candidate in (obj, {**obj, "metadata": meta}):
        response = review(admission(candidate), FakeLookup())["response"]
        assert isinstance(response["allowed"], bool)
        assert not any("could not check this object" in w for w in response.get("warnings", ())), response
        if not response["allowed"]:
            assert response["status"]["message"]
        json.dumps(response)
    # Whatever the controller's parser refuses, the webhook refuses with the same words.
    try:
        parse_peering_connectivity(obj)
    except ValidationError as err:
        causes = review(admission(obj), FakeLookup())["response"]["status"]["details"]["causes"]
        assert [(c["field"], c["message"]) for c in causes] == [(e.path, e.message) for e in err.errors[:20]]


# ----- what the webhook refuses as never deciding really never decides -----

CLUSTER = [o for o in load_objects([str(ROOT / "examples" / "mode-protected-borders-provider.yaml")])]
POLICY = next(o for o in CLUSTER if o["kind"] == "PeeringConnectivity")
PARTIES = st.sampled_from(
    [
        None,
        {},
        {"group": "offloaded"},
        {"group": "remote-cluster"},
        {"group": "local-cluster"},
        {"namespace": "monitoring"},
        {"namespace": "shop-rome"},
        {"podSelector": {"matchLabels": {"offloading.liqo.io/origin": "rome"}}},
        {"namespace": "shop-rome", "podSelector": {"matchLabels": {"offloading.liqo.io/origin": "rome"}}},
    ]
)
PORTS = st.sampled_from([None, [{"port": 80}], [{"port": 1, "endPort": 1024}], [{"protocol": "UDP", "port": 53}]])


@st.composite
def rules(draw: st.DrawFn) -> dict[str, Any]:
    rule: dict[str, Any] = {"action": draw(st.sampled_from(["allow", "deny"]))}
    source, destination, ports = draw(PARTIES), draw(PARTIES), draw(PORTS)
    if source is not None:
        rule["source"] = source
    if ports is not None:
        destination = {**(destination or {}), "ports": ports}
    if destination is not None:
        rule["destination"] = destination
    return rule


def verdicts(spec: dict[str, Any]) -> list[list[list[bool]]]:
    """`liqosec matrix` for the policy, probed on 80/tcp, 53/udp and a port no rule names."""
    from liqosec.compiler.ports import parse_port
    from liqosec.matrix import build_matrix

    policy = {**POLICY, "spec": spec}
    objects = [policy if o is POLICY else o for o in CLUSTER]
    return [build_matrix(objects, port=p).grid() for p in (parse_port("80/tcp"), parse_port("53/udp"), None)]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    chosen=st.lists(rules(), min_size=2, max_size=5),
    mode=st.sampled_from(["FullPodToPod", "ProtectedBorders", "IntraClusterTrafficSegregation"]),
)
def test_what_is_refused_as_never_deciding_changes_no_verdict(chosen: list[dict[str, Any]], mode: str) -> None:
    spec = {"rules": chosen, "securityMode": mode, "defaultAction": "deny"}
    response = answer({**POLICY, "spec": spec})
    if response["allowed"]:
        return
    fields = [c["field"] for c in response["status"]["details"]["causes"]]
    assert all(f.startswith("spec.rules[") or f == "spec.securityMode" for f in fields), fields
    before = verdicts(spec)
    dropped = {int(f[len("spec.rules[") : -1]) for f in fields if f.startswith("spec.rules[")}
    kept = [r for i, r in enumerate(chosen) if i not in dropped]
    # Without the rules that never decide, and without a mode that never decides, nothing changes.
    plain = {**spec, "rules": kept}
    if "spec.securityMode" in fields:
        plain["securityMode"] = "FullPodToPod"
    assert verdicts(plain) == before


def test_an_object_without_a_namespace_is_judged_in_the_requests() -> None:
    obj = pc([{"action": "allow"}, {"action": "deny"}])
    del obj["metadata"]["namespace"]
    assert refusal(obj).startswith(f"PeeringConnectivity {TENANT}/rome: spec.rules[1]")
    apps = FakeLookup([{"kind": "Namespace", "metadata": {"name": "apps"}}])
    assert "metadata.namespace: 'apps' is not a tenant namespace" in refusal(pc([], ns=""), apps, namespace="apps")


def test_render_refuses_a_name_too_long_for_a_label_as_the_crd_does() -> None:
    """Its firewalls carry the name as a label value: the API server would refuse them."""
    objects = [o for o in CLUSTER if o is not POLICY] + [pc([], name="p" * 64)]
    with pytest.raises(RenderError) as info:
        outcomes(objects)
    assert f"PeeringConnectivity {TENANT}/{'p' * 64}: metadata.name: is 64 characters; at most 63" in str(info.value)
    assert outcomes([o for o in CLUSTER if o is not POLICY] + [pc([], name="p" * 63)])
