"""Our CRD and our code agree: same enums and defaults, and every example fits the schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from schema_check import violations

from liqosec.api.peeringconnectivity import GROUP_ALIASES, Action, Group, SecurityMode
from liqosec.inputs import load_objects

ROOT = Path(__file__).resolve().parents[2]
CRD = yaml.safe_load((ROOT / "manifests/crds/security.liqo.io_peeringconnectivities.yaml").read_text())
SCHEMA: dict[str, Any] = CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
SPEC = SCHEMA["properties"]["spec"]["properties"]


def test_enums_match_the_api_types() -> None:
    party = SPEC["rules"]["items"]["properties"]["source"]["properties"]
    assert party["group"]["enum"] == [g.value for g in Group] + list(GROUP_ALIASES)
    assert SPEC["rules"]["items"]["properties"]["action"]["enum"] == [a.value for a in Action]
    assert SPEC["securityMode"]["enum"] == [m.value for m in SecurityMode]


def test_defaults_match_the_api_types() -> None:
    assert SPEC["defaultAction"]["default"] == Action.ALLOW.value
    assert SPEC["securityMode"]["default"] == SecurityMode.FULL_POD_TO_POD.value


def test_one_selector_per_party_is_a_cel_rule() -> None:
    for end in ("source", "destination"):
        rules = [r["rule"] for r in SPEC["rules"]["items"]["properties"][end]["x-kubernetes-validations"]]
        assert any("has(self.group) && has(self.namespace)" in r for r in rules)
        assert any("has(self.namespace) && has(self.namespaceSelector)" in r for r in rules)


def test_every_example_policy_fits_the_schema() -> None:
    pcs = [o for o in load_objects([str(ROOT / "examples")]) if o["kind"] == "PeeringConnectivity"]
    assert pcs
    for pc in pcs:
        assert violations(pc, SCHEMA) == []


def test_status_is_a_subresource_with_printer_columns() -> None:
    version = CRD["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == ["Ready", "Mode", "Rules", "Applied", "Age"]
