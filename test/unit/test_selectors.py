"""Selector parties: podSelector and namespaceSelector, parsed, resolved, compiled, explained and kept live."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from fake_kube import Fixture, cluster, key, namespace, peering, pod
from hypothesis import given
from hypothesis import strategies as st

from harness.reconciling import converge, firewall_writes
from liqosec.api.peeringconnectivity import (
    LabelSelector,
    Operator,
    Party,
    Requirement,
)
from liqosec.api.validation import ValidationError, parse_spec
from liqosec.compiler.firewallconfiguration import read_compile_inputs
from liqosec.compiler.policy import party_term
from liqosec.controller import mapping
from liqosec.controller.mapping import KeyMapper
from liqosec.controller.resources import FIREWALL_CONFIGURATIONS
from liqosec.explain import explain, explain_outcome
from liqosec.groups.resolve import namespace_term, resolve_groups
from liqosec.groups.view import Snapshot
from liqosec.inputs import load_objects
from liqosec.matrix import build_matrix
from liqosec.offline import outcomes

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "test" / "dataplane" / "scenarios" / "selector-parties.yaml"
Obj = dict[str, Any]
FRONTEND = {"podSelector": {"matchLabels": {"app": "frontend"}}}
SHOP = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "shop"}}}


def party(raw: Obj) -> Party:
    errors: list[Any] = []
    parsed = parse_spec({"rules": [{"source": raw}]}, errors).rules[0].source
    assert not errors, errors
    return parsed


def parse_errors(raw: Obj) -> list[str]:
    errors: list[Any] = []
    parse_spec({"rules": [{"source": raw}]}, errors)
    return [str(e) for e in errors]


# ----- the API: parsing and matching -----
def test_two_spellings_of_one_selector_are_one_party_and_one_term() -> None:
    by_labels = party({"podSelector": {"matchLabels": {"app": "web", "tier": "front"}}})
    by_expressions = party(
        {
            "podSelector": {
                "matchExpressions": [
                    {"key": "tier", "operator": "In", "values": ["front", "front"]},
                    {"key": "app", "operator": "In", "values": ["web"]},
                ]
            }
        }
    )
    assert by_labels == by_expressions
    assert party_term(by_labels) == party_term(by_expressions) == "pods{app=web,tier=front}"
    assert hash(by_labels) == hash(by_expressions)


def test_requirements_follow_kubernetes_semantics() -> None:
    assert Requirement("app", Operator.IN, ("a", "b")).matches({"app": "b"})
    assert not Requirement("app", Operator.IN, ("a",)).matches({})
    assert Requirement("app", Operator.NOT_IN, ("a",)).matches({})  # NotIn holds when the label is absent
    assert not Requirement("app", Operator.NOT_IN, ("a",)).matches({"app": "a"})
    assert Requirement("app", Operator.EXISTS).matches({"app": ""})
    assert Requirement("app", Operator.DOES_NOT_EXIST).matches({"other": "x"})
    assert LabelSelector().matches({})  # {} selects everything


def test_a_party_reads_readably_with_its_group_or_namespace() -> None:
    assert party({**FRONTEND, **SHOP}).describe() == "pods{app=frontend} ns{kubernetes.io/metadata.name=shop}"
    assert party({"group": "slice-local", **FRONTEND}).describe() == "pods{app=frontend} in vc-local"
    assert party({"namespace": "shop", **FRONTEND}).describe() == "pods{app=frontend} in namespace:shop"
    expr = {
        "matchExpressions": [
            {"key": "t", "operator": "NotIn", "values": ["b", "a"]},
            {"key": "x", "operator": "DoesNotExist"},
        ]
    }
    assert party({"namespaceSelector": expr}).describe() == "pods{} ns{t notin (a,b),!x}"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            {"podSelector": {"matchExpressions": [{"key": "app", "operator": "Like", "values": ["x"]}]}},
            "spec.rules[0].source.podSelector.matchExpressions[0].operator: unknown operator 'Like'",
        ),
        (
            {"podSelector": {"matchExpressions": [{"key": "app", "operator": "Exists", "values": ["x"]}]}},
            "spec.rules[0].source.podSelector.matchExpressions[0].values: must be empty for operator Exists",
        ),
        (
            {"podSelector": {"matchExpressions": [{"key": "app", "operator": "NotIn"}]}},
            "podSelector.matchExpressions[0].values: must list at least one value for operator NotIn",
        ),
        (
            {"namespaceSelector": {"matchLabels": {"bad key!": "x"}}},
            "spec.rules[0].source.namespaceSelector.matchLabels['bad key!']: label key 'bad key!': the name must be",
        ),
        (
            {"podSelector": {"matchLabels": {"UPPER.example/app": "x"}}},
            "label key 'UPPER.example/app': the prefix must be a DNS subdomain",
        ),
        (
            {"podSelector": {"matchLabels": {"app": "-x"}}},
            "spec.rules[0].source.podSelector.matchLabels['app']: label value '-x' must be",
        ),
        (
            {"podSelector": {"matchLabel": {"app": "x"}}},
            'spec.rules[0].source.podSelector.matchLabel: unknown field; a selector has "matchLabels"',
        ),
        (
            {"namespace": "shop", **SHOP},
            "spec.rules[0].source.namespaceSelector: selects namespaces and so does namespace",
        ),
        ({"podSelector": ["app=web"]}, "spec.rules[0].source.podSelector: must be a label selector object, got list"),
        ({"podSelector": {"matchLabels": []}}, "podSelector.matchLabels: must be an object of labels, got list"),
        ({"podSelector": {"matchExpressions": [None]}}, "podSelector.matchExpressions[0]: must be an object"),
        (
            {"podSelector": {"matchExpressions": [{"key": "a", "operator": "In", "values": [1]}]}},
            "podSelector.matchExpressions[0].values[0]: label value 1 must be text",
        ),
    ],
)
def test_a_bad_selector_is_refused_naming_the_field(raw: Obj, expected: str) -> None:
    errors = parse_errors(raw)
    assert any(expected in e for e in errors), errors


def test_every_problem_of_a_selector_is_reported_at_once() -> None:
    raw = {
        "podSelector": {
            "matchLabels": {"": "x"},
            "matchExpressions": [{"key": "a", "operator": "In"}, {"key": "b", "operator": "Exists", "values": ["v"]}],
        }
    }
    paths = [e.split(":")[0] for e in parse_errors(raw)]
    assert paths == [
        "spec.rules[0].source.podSelector.matchLabels['']",
        "spec.rules[0].source.podSelector.matchExpressions[0].values",
        "spec.rules[0].source.podSelector.matchExpressions[1].values",
    ]


def test_an_invalid_selector_fails_the_whole_policy() -> None:
    pc = peering("rome", "liqo-tenant-rome", [{"source": {"podSelector": {"matchLabels": {"a": 1}}}}])
    from liqosec.api.validation import parse_peering_connectivity

    with pytest.raises(ValidationError, match=r"matchLabels\['a'\]: label value 1 must be text"):
        parse_peering_connectivity(pc)


# ----- resolution -----
def world_objects() -> list[Obj]:
    return load_objects([str(SCENARIO)])


def pod_ips(objects: list[Obj]) -> list[str]:
    ips = [o["status"]["podIP"] for o in objects if o["kind"] == "Pod"]
    return sorted(ips, key=lambda a: tuple(int(x) for x in a.split(".")))


def members(objects: list[Obj], found: Any) -> list[str]:
    """The pod addresses in an address set, in address order (sets spell adjacent pods as ranges)."""
    return [ip for ip in pod_ips(objects) if ip in found]


def addresses(objects: list[Obj], raw: Obj) -> list[str]:
    p = party(raw)
    groups = resolve_groups(Snapshot(objects), "rome", "liqo-tenant-rome", selections=[p])
    found = groups.get(party_term(p) or "")
    assert found.size() == len(members(objects, found)), "a selector party holds pod addresses only"
    return members(objects, found)


def test_a_pod_selector_finds_pods_wherever_they_run() -> None:
    """Local, shadow (on rome's virtual node) and offloaded here by rome, in any namespace."""
    objs = world_objects()
    assert addresses(objs, FRONTEND) == ["10.1.1.10", "10.1.3.10", "10.1.5.10", "10.71.3.7"]


def test_a_namespace_selector_reads_the_namespace_labels_and_its_name() -> None:
    objs = world_objects()
    assert addresses(objs, {**FRONTEND, **SHOP}) == ["10.1.3.10", "10.71.3.7"]
    team_web = {"namespaceSelector": {"matchLabels": {"team": "web"}}}
    assert addresses(objs, team_web) == ["10.1.3.10", "10.1.3.11", "10.1.5.10", "10.1.5.11", "10.71.3.7"]
    # `default` has no Namespace object in the file: it still carries its name label, and no team.
    not_web = {"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "NotIn", "values": ["web"]}]}}
    assert addresses(objs, not_web) == ["10.1.1.10", "10.1.4.10"]


def test_a_namespace_selector_on_the_name_is_the_namespace_party() -> None:
    objs = world_objects()
    for ns in ("shop", "guest-rome", "billing", "default", "absent"):
        selector = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}}
        groups = resolve_groups(Snapshot(objs), "rome", "liqo-tenant-rome", namespaces=[ns])
        assert addresses(objs, selector) == members(objs, groups.get(namespace_term(ns)))


def test_a_group_narrows_a_selector_to_its_addresses() -> None:
    objs = world_objects()
    assert addresses(objs, {"group": "offloaded", **FRONTEND}) == ["10.1.5.10"]
    assert addresses(objs, {"group": "vc-remote", **FRONTEND}) == ["10.71.3.7"]
    assert addresses(objs, {"group": "remote-cluster", "podSelector": {}}) == ["10.71.3.7"]
    assert addresses(objs, {"namespace": "shop", "podSelector": {"matchLabels": {"app": "cache"}}}) == ["10.1.3.11"]


def test_an_empty_pod_selector_is_every_pod_holding_an_address() -> None:
    objs = world_objects()
    assert addresses(objs, {"podSelector": {}}) == pod_ips(objs)
    assert addresses(objs, {"namespaceSelector": {}}) == pod_ips(objs)


# ----- compiled, explained, shown -----
def test_the_scenario_compiles_to_what_a_reader_expects() -> None:
    matrix = build_matrix(world_objects())
    ip = {e.name: e.ip for e in matrix.endpoints}
    remote = ip["(remote-cluster/rome)"]
    assert matrix.connect(ip["shop/frontend-0"], remote) and matrix.connect(remote, ip["shop/frontend-0"])
    assert matrix.connect(remote, ip["guest-rome/job-0"])
    assert not matrix.connect(ip["default/web"], remote)  # a frontend, but not in shop
    assert not matrix.connect(ip["shop/cache"], remote)  # in shop, not a frontend
    assert not matrix.connect(ip["guest-rome/job-1"], ip["default/web"])  # offloaded batch: cut off
    assert matrix.connect(ip["guest-rome/job-0"], ip["default/web"])
    labels = {e.name: e.groups for e in matrix.endpoints}
    assert "pods{app=batch} in offloaded" in labels["guest-rome/job-1"]


def test_explain_names_the_selector_rule_that_decides() -> None:
    objs = world_objects()
    ip = {e.name: e.ip for e in build_matrix(objs).endpoints}
    out = explain(objs, "shop/frontend-0", ip["(remote-cluster/rome)"])
    assert out.request.decision.origin == "spec.rules[0]"
    assert out.request.decision.source == "pods{app=frontend} ns{kubernetes.io/metadata.name in (guest-rome,shop)}"
    assert any(t.startswith("pods{app=frontend}") for t in out.source.terms)
    out = explain(objs, "guest-rome/job-1", "default/web")
    assert out.request.decision.origin == "spec.rules[2]"
    assert out.request.decision.source == "pods{app=batch} in offloaded"


def test_equal_selectors_give_equal_compile_inputs() -> None:
    """The reconciler skips compiling when its inputs are equal: a selector's spelling must not defeat that."""
    objs = world_objects()
    from liqosec.api.validation import parse_peering_connectivity

    pc_obj = next(o for o in objs if o["kind"] == "PeeringConnectivity")
    respelled = copy.deepcopy(pc_obj)
    respelled["spec"]["rules"][2]["source"] = {"group": "offloaded", "podSelector": {"matchLabels": {"app": "batch"}}}
    a = read_compile_inputs(Snapshot(objs), parse_peering_connectivity(pc_obj))
    b = read_compile_inputs(Snapshot(objs), parse_peering_connectivity(respelled))
    assert a == b


# ----- live: the right peerings wake on relabels -----
SELECTING = [{"source": {**FRONTEND, **{"namespaceSelector": {"matchLabels": {"team": "web"}}}}, "action": "deny"}]


def live() -> Fixture:
    """rome selects frontends of team-web namespaces; milan uses groups only."""
    objs = cluster("rome", "milan")
    objs = [o for o in objs if not (o["kind"] == "PeeringConnectivity" and o["metadata"]["name"] == "rome")]
    return Fixture(
        [
            *objs,
            peering("rome", "liqo-tenant-rome", SELECTING),
            namespace("shop", team="web"),
            namespace("batch", team="data"),
        ]
    )


def keys(f: Fixture, kind: str, old: Obj | None, new: Obj | None) -> set[str]:
    store = f.stores[kind]
    mapper = {"Pod": mapping.pod_keys, "Namespace": mapping.namespace_keys}[kind]
    return KeyMapper(f.view).keys(mapper, old and store.transform(old), new and store.transform(new))


def relabelled(obj: Obj, **labels: str) -> Obj:
    out = copy.deepcopy(obj)
    out["metadata"]["labels"] = dict(labels)
    out["metadata"]["resourceVersion"] = "999"
    return out


def test_a_pod_relabelled_into_or_out_of_a_selector_wakes_that_peering_only() -> None:
    f = live()
    plain = pod("web-0", "shop", "10.1.3.3")
    frontend = relabelled(plain, app="frontend")
    assert keys(f, "Pod", plain, frontend) == {key("rome")}  # joins
    assert keys(f, "Pod", frontend, plain) == {key("rome")}  # leaves
    assert keys(f, "Pod", None, frontend) == {key("rome")}
    assert keys(f, "Pod", plain, relabelled(plain, app="cache")) == set()  # selected neither before nor after
    other_ns = pod("web-0", "batch", "10.1.4.4", app="frontend")
    assert keys(f, "Pod", other_ns, relabelled(other_ns, app="frontend", v="2")) == set()


def test_a_namespace_relabelled_into_or_out_of_a_selector_wakes_that_peering() -> None:
    f = live()
    batch = namespace("batch", team="data")
    assert keys(f, "Namespace", batch, relabelled(batch, team="web")) == {key("rome")}
    shop = namespace("shop", team="web")
    assert keys(f, "Namespace", shop, relabelled(shop, team="data")) == {key("rome")}
    assert keys(f, "Namespace", batch, relabelled(batch, team="ops")) == set()


def test_the_firewall_follows_a_relabel_and_is_not_rewritten_when_nothing_changed() -> None:
    f = live()
    f.seed(pod("web-0", "shop", "10.1.3.3"))
    assert firewall_writes(converge(f, key("rome"))) == 1

    def rules() -> str:
        fc = f.client.stored(FIREWALL_CONFIGURATIONS, "liqosec-rome", "liqo-tenant-rome")
        assert fc is not None
        return str(fc["spec"]["table"]["chains"][0]["rules"].get("filterRules", []))

    assert "10.1.3.3" not in rules()
    f.seed(pod("web-0", "shop", "10.1.3.3", app="frontend"))  # joins the selector: denied now
    assert firewall_writes(converge(f, key("rome"))) == 1
    assert "10.1.3.3" in rules()
    f.seed(pod("web-0", "shop", "10.1.3.3", app="frontend", note="x"))  # a label no selector reads
    assert firewall_writes(converge(f, key("rome"))) == 0
    f.seed(relabelled(namespace("shop", team="web"), team="data"))  # its namespace leaves the selector
    assert firewall_writes(converge(f, key("rome"))) == 1
    assert "10.1.3.3" not in rules()


def test_the_readme_example_is_the_scenario_policy() -> None:
    """The README's example compiles to the same clauses as the scenario the dataplane suite runs."""
    import yaml

    section = (ROOT / "README.md").read_text().split("## Selecting pods by label", 1)[1]
    snippet = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    readme_spec = parse_spec(yaml.safe_load(snippet)["spec"], errors := [])
    assert not errors
    scenario = next(o for o in world_objects() if o["kind"] == "PeeringConnectivity")
    readme_rules = [(r.source, r.destination, r.action) for r in readme_spec.rules]
    scenario_rules = [(r.source, r.destination, r.action) for r in parse_spec(scenario["spec"], []).rules]
    assert readme_rules == scenario_rules


KEYS, VALUES = ["app", "tier", "x.io/team"], ["a", "b", "c"]
_requirements = st.lists(
    st.fixed_dictionaries(
        {
            "key": st.sampled_from(KEYS),
            "operator": st.sampled_from(["In", "NotIn"]),
            "values": st.lists(st.sampled_from(VALUES), min_size=1, max_size=3),
        }
    )
    | st.fixed_dictionaries({"key": st.sampled_from(KEYS), "operator": st.sampled_from(["Exists", "DoesNotExist"])}),
    max_size=3,
)
_selectors = st.fixed_dictionaries(
    {},
    optional={
        "matchLabels": st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), max_size=2),
        "matchExpressions": _requirements,
    },
)
_labels = st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), max_size=3)


def reference_holds(selector: Obj, labels: dict[str, str]) -> bool:
    """Kubernetes' documented meaning, written out plainly."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for e in selector.get("matchExpressions") or ():
        has, value = e["key"] in labels, labels.get(e["key"])
        if e["operator"] == "In" and not (has and value in e["values"]):
            return False
        if e["operator"] == "NotIn" and has and value in e["values"]:
            return False
        if e["operator"] == "Exists" and not has:
            return False
        if e["operator"] == "DoesNotExist" and has:
            return False
    return True


@given(_selectors, _labels)
def test_a_parsed_selector_means_what_kubernetes_says(raw: Obj, labels: dict[str, str]) -> None:
    p = party({"podSelector": raw})
    assert p.pod_selector is not None
    assert p.pod_selector.matches(labels) == reference_holds(raw, labels)


def test_explain_agrees_with_the_matrix_on_every_cell_and_names_the_selector_parties() -> None:
    objs = world_objects()
    matrix = build_matrix(objs)
    results = outcomes(objs)
    [outcome] = results
    decided_by = set()
    for a in matrix.endpoints:
        for b in matrix.endpoints:
            x = explain_outcome(objs, results, outcome, a.ip, b.ip)
            assert x.opens == matrix.connect(a.ip, b.ip), (a.name, b.name)
            decided_by.add(x.request.decision.origin)
        selector_terms = [g for g in a.groups if g.startswith("pods{")]
        x = explain_outcome(objs, results, outcome, a.ip, a.ip)
        assert [t for t in x.source.terms if t.startswith("pods{")] == selector_terms
    # every rule of the scenario decides some packet, and so does the default
    assert decided_by >= {f"spec.rules[{i}]" for i in range(6)} | {"spec.defaultAction"}


def test_the_crd_offers_the_selectors_the_parser_reads() -> None:
    import yaml

    crd = yaml.safe_load((ROOT / "manifests/crds/security.liqo.io_peeringconnectivities.yaml").read_text())
    rules = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["rules"]
    for end in ("source", "destination"):
        party_schema = rules["items"]["properties"][end]["properties"]
        for field in ("podSelector", "namespaceSelector"):
            selector = party_schema[field]["properties"]
            requirement = selector["matchExpressions"]["items"]["properties"]
            assert requirement["operator"]["enum"] == [o.value for o in Operator]
            assert set(selector) == {"matchLabels", "matchExpressions"}
