"""Capabilities follow the installed FirewallConfiguration CRD at run time: a ctstate match makes firewalls stateful."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from support import example, running_controller, unique_peer, wait_for

from harness.controlplane import ControlPlane
from harness.liqo_webhook import mutation_suspended
from harness.objects import apply, update_retrying
from liqosec.controller.resources import CRDS, FIREWALL_CONFIGURATIONS, PEERING_CONNECTIVITIES
from liqosec.firewall.capabilities import FIREWALL_CRD_NAME
from liqosec.kube import errors
from liqosec.kube.client import KubeClient

CTSTATE = {"type": "object", "properties": {"value": {"type": "array", "items": {"type": "string"}}}}


def _match_schema(crd: dict[str, Any]) -> dict[str, Any]:
    [version] = [v for v in crd["spec"]["versions"] if v["name"] == "v1beta1"]
    chains = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["table"]["properties"]["chains"]
    rules = chains["items"]["properties"]["rules"]["properties"]["filterRules"]
    return dict(rules["items"]["properties"]["match"]["items"]["properties"])


def _set_match_schema(kube: KubeClient, extra: dict[str, Any] | None) -> None:
    def change(crd: dict[str, Any]) -> None:
        [version] = [v for v in crd["spec"]["versions"] if v["name"] == "v1beta1"]
        props = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["table"]["properties"]
        match = props["chains"]["items"]["properties"]["rules"]["properties"]["filterRules"]["items"]["properties"][
            "match"
        ]
        if extra is None:
            match["items"]["properties"].pop("ctstate", None)
        else:
            match["items"]["properties"].update(extra)

    update_retrying(kube, CRDS, FIREWALL_CRD_NAME, change)


@pytest.fixture()
def enable_ctstate(kube: KubeClient, control_plane: ControlPlane) -> Iterator[Callable[[], None]]:
    """Extends Liqo's CRD as upstream pull request 3144 would; restored afterwards for other tests.

    That Liqo's mutating webhook would carry the field; v1.2.0's drops it, so it is off meanwhile.
    """
    original = copy.deepcopy(_match_schema(kube.get(CRDS, FIREWALL_CRD_NAME)))
    assert "ctstate" not in original
    try:
        with mutation_suspended(control_plane):
            yield lambda: _set_match_schema(kube, {"ctstate": CTSTATE})
    finally:
        _set_match_schema(kube, None)


def test_a_ctstate_capability_appearing_makes_the_chain_stateful(
    kube: KubeClient, local_pod_cidr: None, enable_ctstate: Callable[[], None]
) -> None:
    peer = unique_peer()
    ns = f"liqo-tenant-{peer}"
    apply(kube, example("mode-segregation-provider.yaml", peer=peer))
    with running_controller(kube):

        def chain(name: str) -> dict[str, Any] | None:
            try:
                fc = kube.get(FIREWALL_CONFIGURATIONS, f"liqosec-{peer}", namespace=ns)
            except errors.NotFound:
                return None
            c = fc["spec"]["table"]["chains"][0]
            return c if c["name"] == name else None

        wait_for("a stateless chain first", lambda: chain("peering-filter"))
        enable_ctstate()
        live = wait_for("a stateful chain once the CRD can say ctstate", lambda: chain("peering-filter-ct"))
        first = live["rules"]["filterRules"][0]
        # Not pruned: the API server now knows the field, and the rule comes first.
        assert first["match"] == [{"op": "eq", "ctstate": {"value": ["established", "related"]}}]
        assert first["action"] == "accept"

        def stateless_condition() -> dict[str, Any] | None:
            pc = kube.get(PEERING_CONNECTIVITIES, peer, namespace=ns)
            conds = {c["type"]: c for c in (pc.get("status") or {}).get("conditions") or ()}
            c = conds.get("StatelessFiltering")
            return c if c and c["status"] == "False" else None

        assert wait_for("StatelessFiltering=False", stateless_condition)["reason"] == "ConntrackAvailable"
