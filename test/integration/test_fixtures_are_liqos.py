"""Every Liqo object our examples and dataplane scenarios write by hand has the shape Liqo's own code
gives it (`liqo-agent forge`, Liqo v1.2.0's functions and reconcilers): the labels liqosec reads, the
fields of the Configuration and of NamespaceOffloading conditions. A hand-written fixture is a guess
about Liqo; this test turns each guess into a checked fact, file by file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.agents import agent_or_skip
from harness.liqo_forge import PEERING_SPEC, forge, of_kind, one
from liqosec.inputs import load_objects

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = sorted((ROOT / "examples").glob("*.yaml")) + sorted(
    (ROOT / "test" / "dataplane" / "scenarios").glob("*.yaml")
)
# Label keys liqosec reads, by the kind of object they are on.
READ = ("liqo.io/", "offloading.liqo.io/origin")


@pytest.fixture(scope="module")
def liqo() -> list[dict[str, Any]]:
    agent_or_skip()
    return forge(PEERING_SPEC, stage="remapped")


def liqo_keys(obj: dict[str, Any]) -> set[str]:
    labels = obj["metadata"].get("labels") or {}
    return {k for k in labels if k.startswith(READ) and k != "liqo.io/managed-by"}


def labels(obj: dict[str, Any]) -> dict[str, str]:
    return dict(obj["metadata"].get("labels") or {})


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_hand_written_liqo_objects_have_liqos_shape(path: Path, liqo: list[dict[str, Any]]) -> None:
    tenant_ns = one(liqo, "Namespace", "liqo-tenant-rome")
    vnode = one(liqo, "Node", "rome")
    offloaded = one(liqo, "Pod", "guest", "guests")
    shadow = one(liqo, "Pod", "cart", "shop")
    conf = one(liqo, "Configuration", "rome", "liqo-tenant-rome")
    nso_conditions = {
        c["type"]
        for c in one(liqo, "NamespaceOffloading", "offloading", "shop")["status"]["remoteNamespacesConditions"]["rome"]
    }
    objects = load_objects([str(path)])
    virtual = {o["metadata"]["name"] for o in objects if o["kind"] == "Node" and labels(o).get("liqo.io/type")}
    wrong: list[str] = []
    for o in objects:
        kind, name = o["kind"], f"{o['metadata'].get('namespace', '')}/{o['metadata']['name']}"
        mine = labels(o)
        if kind == "Namespace" and "liqo.io/remote-cluster-id" in mine:
            if liqo_keys(o) != liqo_keys(tenant_ns):
                wrong.append(
                    f"{name}: labels {sorted(liqo_keys(o))}, Liqo's tenant namespace {sorted(liqo_keys(tenant_ns))}"
                )
        elif kind == "Node" and "liqo.io/type" in mine:
            want = {k: v for k, v in labels(vnode).items() if k in ("liqo.io/type",)}
            if {k: mine.get(k) for k in want} != want or "liqo.io/remote-cluster-id" not in mine:
                wrong.append(f"{name}: a virtual node needs {want} and liqo.io/remote-cluster-id, as Liqo's")
        elif kind == "Pod" and "offloading.liqo.io/origin" in mine:
            if not liqo_keys(o) <= liqo_keys(offloaded):
                wrong.append(
                    f"{name}: offloaded pod labels {sorted(liqo_keys(o))} beyond Liqo's {sorted(liqo_keys(offloaded))}"
                )
        elif kind == "Pod" and mine.get("liqo.io/shadowPod"):
            if mine["liqo.io/shadowPod"] != labels(shadow)["liqo.io/shadowPod"]:
                wrong.append(f"{name}: liqo.io/shadowPod={mine['liqo.io/shadowPod']!r}, Liqo writes 'true'")
            if (o.get("spec") or {}).get("nodeName") not in virtual:
                wrong.append(f"{name}: a shadow pod runs on a virtual node, as Liqo's does")
        elif kind == "Configuration":
            for section in ("spec", "status"):
                have = set(((o.get(section) or {}).get("remote") or {}).get("cidr") or {})
                liqos = set(conf[section]["remote"]["cidr"])
                if have and not have <= liqos:
                    wrong.append(f"{name}: {section}.remote.cidr has {sorted(have)}, Liqo's {sorted(liqos)}")
        elif kind == "NamespaceOffloading":
            for peer, conditions in ((o.get("status") or {}).get("remoteNamespacesConditions") or {}).items():
                types = {c.get("type") for c in conditions}
                if "OffloadingRequired" not in types or not types <= nso_conditions:
                    wrong.append(f"{name}: conditions for {peer} {sorted(types)}; Liqo writes {sorted(nso_conditions)}")
    assert not wrong, f"{path.name} differs from what Liqo's code makes:\n" + "\n".join(wrong)


def test_the_check_catches_a_guess(liqo: list[dict[str, Any]], tmp_path: Path) -> None:
    """The old guess, a tenant namespace with the remote cluster id alone, is caught."""
    guess = tmp_path / "guess.yaml"
    guess.write_text(
        "apiVersion: v1\nkind: Namespace\n"
        "metadata: {name: liqo-tenant-rome, labels: {liqo.io/remote-cluster-id: rome}}\n"
    )
    with pytest.raises(AssertionError, match="Liqo's tenant namespace"):
        test_hand_written_liqo_objects_have_liqos_shape(guess, liqo)
    assert of_kind(liqo, "Namespace")
