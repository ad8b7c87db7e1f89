"""`liqosec explain --kubeconfig`: the live cluster read as a dump would be, same answer as `-f`."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from harness.controlplane import ControlPlane
from harness.objects import apply, remove
from liqosec.cli import main
from liqosec.inputs import load_objects

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "provider-isolate-offloaded.yaml"
PEERING = "liqo-tenant-rome/rome"


def explain(*argv: str) -> tuple[int, dict[str, Any]]:
    out = io.StringIO()
    code = main(["explain", *argv, "-o", "json"], out=out)
    return code, json.loads(out.getvalue()) if out.getvalue() else {}


def decisive(x: dict[str, Any]) -> tuple[Any, ...]:
    return (
        x["peering"],
        x["connection"],
        x["request"]["decidedBy"],
        x["reply"]["decidedBy"],
        sorted(x["from"]["groups"]),
        sorted(x["to"]["groups"]),
    )


def test_other_peerings_in_the_cluster_do_not_stop_explaining_one(control_plane: ControlPlane, kube: Any) -> None:
    objects = load_objects([str(EXAMPLE)])
    stray = {
        "apiVersion": "security.liqo.io/v1",
        "kind": "PeeringConnectivity",
        "metadata": {"name": "stray", "namespace": "default"},  # not a tenant namespace: invalid
        "spec": {"rules": [{"source": {"group": "offloaded"}, "action": "deny"}]},
    }
    apply(kube, [*objects, stray])
    try:
        code, got = explain(
            "--kubeconfig",
            str(control_plane.kubeconfig_path),
            "--peering",
            PEERING,
            "--from",
            "shop-rome/cart-0",
            "--to",
            "default/web",
        )
        assert code == 0 and got["connection"]["opens"] is False
    finally:
        remove(kube, [*objects, stray])


def test_explain_reads_the_live_cluster_as_it_reads_a_dump(control_plane: ControlPlane, kube: Any) -> None:
    objects = load_objects([str(EXAMPLE)])
    apply(kube, objects)
    try:
        kubeconfig = str(control_plane.kubeconfig_path)
        opens = {}
        for src, dst in (("shop-rome/cart-0", "default/web"), ("10.71.0.9", "shop-rome/cart-0")):
            # --peering: the shared API server holds other tests' peerings, some invalid on purpose
            live_code, live = explain("--kubeconfig", kubeconfig, "--peering", PEERING, "--from", src, "--to", dst)
            file_code, dumped = explain("-f", str(EXAMPLE), "--peering", PEERING, "--from", src, "--to", dst)
            assert live_code == file_code == 0
            # The shared API server holds other tests' objects too: compare what decides, not every detail.
            assert decisive(live) == decisive(dumped), (src, dst)
            opens[(src, dst)] = live["connection"]["opens"]
        # Example 1: offloaded pods talk to rome only
        assert opens == {("shop-rome/cart-0", "default/web"): False, ("10.71.0.9", "shop-rome/cart-0"): True}
    finally:
        remove(kube, objects)
