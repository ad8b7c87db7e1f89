"""The liqosec command: render and matrix on files, exit codes, and no partial output on bad input."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import yaml

from liqosec.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(argv), out=out), out.getvalue()


def test_render_prints_yaml_firewalls() -> None:
    code, text = run("render", "-f", str(EXAMPLES / "quick-start.yaml"))
    [fc] = list(yaml.safe_load_all(text))
    assert code == 0 and fc["spec"]["table"]["name"] == "liqosec-rome"


def test_render_reads_directories_and_later_objects_replace_earlier(tmp_path: Path) -> None:
    # examples/ holds several policies for the same PeeringConnectivity: the last file wins.
    code, text = run("render", "-f", str(EXAMPLES), "-o", "json")
    firewalls = json.loads(text)
    assert code == 0
    assert sorted(fc["spec"]["table"]["name"] for fc in firewalls) == ["liqosec-milan", "liqosec-rome"]


def test_two_policies_for_one_peering_fail_whole(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    second = tmp_path / "second.yaml"
    second.write_text(
        "apiVersion: security.liqo.io/v1\nkind: PeeringConnectivity\n"
        "metadata: {name: zz-other, namespace: liqo-tenant-rome}\nspec: {}\n"
    )
    code, text = run("render", "-f", str(EXAMPLES / "quick-start.yaml"), "-f", str(second))
    assert code == 1 and text == ""
    assert "already governed by 'rome'" in capsys.readouterr().err


def test_invalid_policy_exits_non_zero_with_the_field_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: security.liqo.io/v1\nkind: PeeringConnectivity\n"
        "metadata: {name: rome, namespace: liqo-tenant-rome}\n"
        "spec: {rules: [{source: {group: ofloaded}, action: allow}]}\n"
    )
    code, text = run("render", "-f", str(bad))
    assert code == 1 and text == ""
    assert "spec.rules[0].source.group: unknown group 'ofloaded'" in capsys.readouterr().err


def test_policy_outside_a_tenant_namespace_names_the_namespace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: security.liqo.io/v1\nkind: PeeringConnectivity\nmetadata: {name: x, namespace: default}\n"
    )
    assert run("render", "-f", str(bad))[0] == 1
    assert "'default' is not a tenant namespace" in capsys.readouterr().err


def test_missing_file_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert run("render", "-f", "/nonexistent/x.yaml")[0] == 1
    assert "no such file" in capsys.readouterr().err


def test_matrix_table_and_json_agree() -> None:
    code, table = run("matrix", "-f", str(EXAMPLES / "provider-isolate-offloaded.yaml"))
    assert code == 0 and "peering rome" in table and "shop-rome/cart-0" in table
    _, text = run("matrix", "-f", str(EXAMPLES / "provider-isolate-offloaded.yaml"), "-o", "json")
    data = json.loads(text)
    names = [e["name"] for e in data["endpoints"]]
    grid = data["peerings"]["rome"]["connect"]
    assert grid[names.index("shop-rome/cart-0")][names.index("default/web")] is False
    assert grid[names.index("default/web")][names.index("monitoring/metrics")] is True


def test_ctstate_flag_changes_the_chain() -> None:
    _, stateless = run("render", "-f", str(EXAMPLES / "mode-segregation-consumer.yaml"))
    _, stateful = run("render", "-f", str(EXAMPLES / "mode-segregation-consumer.yaml"), "--ctstate")
    assert "ctstate" not in stateless and "ctstate" in stateful


# ----- Liqo as it really is: pending remaps, offloaded namespaces -----
PENDING_MILAN = """
apiVersion: v1
kind: Namespace
metadata: {name: liqo-tenant-milan, labels: {liqo.io/remote-cluster-id: milan, liqo.io/tenant-namespace: "true"}}
---
apiVersion: networking.liqo.io/v1beta1
kind: Configuration
metadata: {name: milan, namespace: liqo-tenant-milan}
spec: {remote: {cidr: {pod: [10.0.0.0/16], external: [10.201.0.0/16]}}}
status: {remote: {cidr: {pod: [""], external: [""]}}}
---
apiVersion: security.liqo.io/v1
kind: PeeringConnectivity
metadata: {name: milan, namespace: liqo-tenant-milan}
spec: {defaultAction: deny}
"""


@pytest.mark.parametrize("command", ["render", "matrix"])
def test_a_peering_waiting_on_liqos_remap_is_named_and_the_others_still_print(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    pending = tmp_path / "milan.yaml"
    pending.write_text(PENDING_MILAN)
    code, text = run(command, "-f", str(EXAMPLES / "quick-start.yaml"), "-f", str(pending), "-o", "json")
    err = capsys.readouterr().err
    assert code == 0
    assert "PeeringConnectivity liqo-tenant-milan/milan waits" in err
    assert "status.remote.cidr.pod[0]" in err and "not remapped" in err
    found = json.loads(text)
    if command == "render":
        assert [fc["spec"]["table"]["name"] for fc in found] == ["liqosec-rome"]
    else:
        assert list(found["peerings"]) == ["rome"]


def test_a_malformed_remapped_cidr_stays_an_error_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "milan.yaml"
    bad.write_text(PENDING_MILAN.replace('pod: [""]', "pod: [10.80.0.1/16]"))
    code, text = run("render", "-f", str(bad))
    assert code == 1 and text == ""
    assert "status.remote.cidr.pod[0]" in capsys.readouterr().err


def test_explain_on_a_waiting_peering_names_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pending = tmp_path / "milan.yaml"
    pending.write_text(PENDING_MILAN)
    code, _ = run(
        "explain",
        "-f",
        str(EXAMPLES / "quick-start.yaml"),
        "-f",
        str(pending),
        "--from",
        "10.71.0.9",
        "--to",
        "10.1.0.9",
    )
    assert code == 0
    assert "liqo-tenant-milan/milan waits" in capsys.readouterr().err


def test_a_policy_in_a_namespace_liqo_made_for_offloaded_workloads_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stray = tmp_path / "stray.yaml"
    stray.write_text(
        "apiVersion: v1\nkind: Namespace\n"
        "metadata: {name: shop-rome, labels: {liqo.io/remote-cluster-id: rome}}\n---\n"
        "apiVersion: security.liqo.io/v1\nkind: PeeringConnectivity\n"
        "metadata: {name: rome, namespace: shop-rome}\nspec: {}\n"
    )
    code, text = run("render", "-f", str(EXAMPLES / "quick-start.yaml"), "-f", str(stray))
    err = capsys.readouterr().err
    assert code == 1 and text == ""
    assert "'shop-rome' is not a tenant namespace" in err and "lacks liqo.io/tenant-namespace" in err
