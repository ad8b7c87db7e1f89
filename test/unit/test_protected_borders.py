"""ProtectedBorders (Liqo issue 1879) and the slice-local/slice-remote aliases.

The verdicts are what a reader of docs/semantics.md ("Groups", "Security modes") expects of
examples/mode-protected-borders-*.yaml; the StatelessFiltering message names the holes.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from schema_check import violations

from liqosec.api.peeringconnectivity import Group, SecurityMode
from liqosec.api.validation import ValidationError, parse_peering_connectivity
from liqosec.compiler.modes import mode_clauses
from liqosec.controller.status import STATELESS, valid_conditions
from liqosec.firewall.capabilities import Capabilities
from liqosec.inputs import load_objects
from liqosec.matrix import Matrix, build_matrix
from liqosec.offline import outcomes
from liqosec.render import render

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
CRD = yaml.safe_load((ROOT / "manifests/crds/security.liqo.io_peeringconnectivities.yaml").read_text())
SCHEMA: dict[str, Any] = CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]

# Addresses of the example clusters (the comments at the top of each file).
CONSUMER_ADMIN, FRONTEND, CACHE, BACKEND_SHADOW = "10.0.2.5", "10.0.1.10", "10.0.1.11", "10.80.3.7"
MILAN_POD = "10.80.9.9"
PROVIDER_WEB, PROVIDER_METRICS = "10.1.1.10", "10.1.2.20"
CART0, CART1 = "10.1.5.10", "10.1.5.11"
ROME_BACKEND = "10.71.1.10"  # a backend, in rome, of the service rome reflected here
ROME_POD = "10.71.9.9"
INTERNET = "198.51.100.10"
CONSUMER, PROVIDER = "mode-protected-borders-consumer.yaml", "mode-protected-borders-provider.yaml"


def objects(name: str) -> list[dict[str, Any]]:
    return load_objects([str(EXAMPLES / name)])


def matrix(name: str, *, stateful: bool = False) -> Matrix:
    return build_matrix(objects(name), capabilities=Capabilities(ctstate=stateful))


def stateless_message(objs: list[dict[str, Any]]) -> str:
    [outcome] = outcomes(objs, capabilities=Capabilities(ctstate=False))
    [cond] = [c for c in valid_conditions(outcome, stateful=False) if c.type == STATELESS]
    assert cond.status and cond.reason == "NoConntrackMatch"
    return cond.message


# ---- ProtectedBorders ----


def test_the_preset_allows_the_virtual_cluster_both_ways_then_denies() -> None:
    preset = mode_clauses(SecurityMode.PROTECTED_BORDERS)
    assert preset[-1][:2] == (None, None) and preset[-1][2].value == "deny"
    assert all((dst, src, action) in preset for src, dst, action in preset)  # every allow is two way


@pytest.mark.parametrize("stateful", [False, True])
def test_consumer_side_the_virtual_cluster_talks_inside_itself(stateful: bool) -> None:
    m = matrix(CONSUMER, stateful=stateful)
    # shop's local pods (vc-local) and the shadow of their offloaded pod (vc-remote), both ways.
    assert m.connect(FRONTEND, BACKEND_SHADOW) and m.connect(BACKEND_SHADOW, FRONTEND)
    assert m.connect(CACHE, BACKEND_SHADOW) and m.connect(BACKEND_SHADOW, CACHE)
    # The border: a local pod outside the offloaded namespace, and milan's other pods.
    assert not m.packet(CONSUMER_ADMIN, BACKEND_SHADOW) and not m.packet(BACKEND_SHADOW, CONSUMER_ADMIN)
    assert not m.packet(MILAN_POD, FRONTEND) and not m.packet(FRONTEND, MILAN_POD)
    assert not m.packet(MILAN_POD, CONSUMER_ADMIN)
    assert not m.packet(BACKEND_SHADOW, INTERNET)
    # Not this peering's traffic: untouched.
    assert m.connect(CONSUMER_ADMIN, FRONTEND) and m.connect(CONSUMER_ADMIN, INTERNET)


def test_consumer_side_needs_no_conntrack() -> None:
    assert matrix(CONSUMER).grid() == matrix(CONSUMER, stateful=True).grid()
    assert "every allowed flow is also allowed back" in stateless_message(objects(CONSUMER))


def test_provider_side_offloaded_pods_and_reflected_backends_talk_the_rest_is_cut() -> None:
    m = matrix(PROVIDER, stateful=True)
    assert m.connect(CART0, CART1) and m.connect(CART1, CART0)  # offloaded <-> offloaded
    assert m.connect(CART1, ROME_BACKEND) and m.connect(ROME_BACKEND, CART1)  # <-> the reflected service's backend
    assert not m.packet(ROME_POD, CART0) and not m.packet(CART0, ROME_POD)  # rome's other pods are outside
    assert not m.packet(CART0, PROVIDER_WEB) and not m.packet(PROVIDER_WEB, CART0)  # local pods are protected
    assert not m.packet(CART0, INTERNET)
    assert not m.packet(ROME_POD, PROVIDER_WEB) and not m.packet(PROVIDER_WEB, ROME_BACKEND)
    assert m.connect(PROVIDER_WEB, PROVIDER_METRICS) and m.connect(PROVIDER_WEB, INTERNET)  # not the peering's


def test_provider_side_hole_is_an_explicit_rule_whose_replies_need_conntrack() -> None:
    stateless, stateful = matrix(PROVIDER), matrix(PROVIDER, stateful=True)
    assert stateful.connect(CART0, PROVIDER_METRICS)  # the hole: offloaded -> namespace monitoring
    assert stateless.packet(CART0, PROVIDER_METRICS) and not stateless.connect(CART0, PROVIDER_METRICS)
    assert not stateful.packet(PROVIDER_METRICS, CART0)  # one way: only replies come back
    message = stateless_message(objects(PROVIDER))
    assert "dropped" in message and "do not open" in message
    assert "spec.rules[0] (offloaded -> namespace:monitoring)" in message
    assert "needs an allow of namespace:monitoring -> offloaded" in message
    assert "securityMode" not in message  # the preset itself is two way


def test_a_reply_rule_closes_the_hole_without_conntrack() -> None:
    objs = copy.deepcopy(objects(PROVIDER))
    [pc] = [o for o in objs if o["kind"] == "PeeringConnectivity"]
    pc["spec"]["rules"].append({"source": {"namespace": "monitoring"}, "destination": {"group": "offloaded"}})
    pc["spec"]["rules"][-1]["action"] = "allow"
    m = build_matrix(objs, capabilities=Capabilities(ctstate=False))
    assert m.connect(CART0, PROVIDER_METRICS)
    assert "every allowed flow is also allowed back" in stateless_message(objs)


def test_the_message_names_the_one_way_allows_of_segregation() -> None:
    message = stateless_message(objects("mode-segregation-consumer.yaml"))
    assert "securityMode (any -> vc-remote) needs an allow of vc-remote -> any" in message


def test_the_mode_parses_and_the_crd_accepts_it() -> None:
    [pc] = [o for o in objects(CONSUMER) if o["kind"] == "PeeringConnectivity"]
    assert parse_peering_connectivity(pc).spec.security_mode is SecurityMode.PROTECTED_BORDERS
    assert violations(pc, SCHEMA) == []


# ---- slice-local / slice-remote ----

ALIASES = [("slice-local", Group.VC_LOCAL), ("slice-remote", Group.VC_REMOTE)]


@pytest.mark.parametrize(("alias", "group"), ALIASES)
def test_an_alias_parses_to_its_canonical_group(alias: str, group: Group) -> None:
    obj = {
        "apiVersion": "security.liqo.io/v1",
        "kind": "PeeringConnectivity",
        "metadata": {"name": "milan", "namespace": "liqo-tenant-milan"},
        "spec": {"rules": [{"source": {"group": alias}, "destination": {"group": alias}, "action": "allow"}]},
    }
    [rule] = parse_peering_connectivity(obj).spec.rules
    assert rule.source.group is group and rule.destination.group is group
    assert violations(obj, SCHEMA) == []  # the CRD's enum takes it


def _with_groups(name: str, rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    objs = copy.deepcopy(objects(name))
    [pc] = [o for o in objs if o["kind"] == "PeeringConnectivity"]
    pc["spec"]["rules"] = rules
    return objs


@pytest.mark.parametrize("stateful", [False, True])
@pytest.mark.parametrize("name", ["consumer-vc-only.yaml", CONSUMER])
def test_an_alias_compiles_to_exactly_the_canonical_firewall(name: str, stateful: bool) -> None:
    def rules(local: str, remote: str) -> list[dict[str, Any]]:
        return [
            {"source": {"group": remote}, "destination": {"group": local}, "action": "allow"},
            {"source": {"group": local}, "destination": {"group": "remote-cluster"}},
            {"source": {"group": "offloaded"}, "destination": {"group": remote}, "action": "allow"},
        ]

    caps = Capabilities(ctstate=stateful)
    canonical = render(_with_groups(name, rules("vc-local", "vc-remote")), capabilities=caps)
    aliased = render(_with_groups(name, rules("slice-local", "slice-remote")), capabilities=caps)
    assert aliased == canonical
    assert canonical[0]["spec"]["table"]["chains"][0]["rules"].get("filterRules", [])


def test_an_unknown_group_lists_the_aliases_too() -> None:
    obj = {
        "apiVersion": "security.liqo.io/v1",
        "kind": "PeeringConnectivity",
        "metadata": {"name": "milan", "namespace": "liqo-tenant-milan"},
        "spec": {"rules": [{"source": {"group": "slice-locl"}}]},
    }
    with pytest.raises(ValidationError) as info:
        parse_peering_connectivity(obj)
    [error] = info.value.errors
    assert error.path == "spec.rules[0].source.group"
    assert '"slice-local" (= "vc-local")' in error.message and '"slice-remote" (= "vc-remote")' in error.message
