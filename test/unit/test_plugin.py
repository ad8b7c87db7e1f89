"""`kubectl liqosec`: kubectl's conventions (usage, --context, -n, KUBECONFIG) and its krew manifest."""

from __future__ import annotations

import io
import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from liqosec.cli import main
from liqosec.live import ContextError, context_namespace
from liqosec.plugin import main as plugin_main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "provider-isolate-offloaded.yaml"


def kubeconfig(path: Path, *contexts: tuple[str, str | None], current: str | None = None) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [
                    {"name": name, "context": {"cluster": "c", "user": "u", **({"namespace": ns} if ns else {})}}
                    for name, ns in contexts
                ],
                **({"current-context": current} if current else {}),
            }
        )
    )
    return path


def explain_json(*argv: str) -> dict[str, Any]:
    out = io.StringIO()
    assert main(["explain", *argv, "-o", "json"], out=out) == 0
    got: dict[str, Any] = json.loads(out.getvalue())
    return got


def test_usage_and_help_say_kubectl_liqosec(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        plugin_main(["explain", "--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: kubectl liqosec explain")
    assert "  kubectl liqosec explain --context prod -n liqo-tenant-rome" in text
    assert "  liqosec explain" not in text


def test_the_plugin_has_no_run_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        plugin_main(["run"])
    assert exited.value.code == 2
    assert "usage: kubectl liqosec" in capsys.readouterr().err


def test_an_unknown_context_is_one_line_naming_it_and_the_kubeconfig(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = kubeconfig(tmp_path / "config", ("prod", None), current="prod")
    code = plugin_main(["explain", "--kubeconfig", str(config), "--context", "nope", "--from", "a", "--to", "b"])
    err = capsys.readouterr().err
    assert code == 1
    assert err == f'kubectl liqosec explain: context "nope" not found in {config}\n'


def test_a_missing_kubeconfig_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    assert plugin_main(["matrix"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"kubectl liqosec matrix: kubeconfig {tmp_path / 'none'} does not exist")
    assert err.count("\n") == 1


def test_kubeconfig_is_a_colon_separated_list_as_for_kubectl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = kubeconfig(tmp_path / "first", ("dev", "shop"), current="dev")
    second = kubeconfig(tmp_path / "second", ("prod", "liqo-tenant-rome"))
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'missing'}:{first}:{second}")
    assert context_namespace(None, None) == "shop"  # the current context of the first file that sets one
    assert context_namespace(None, "prod") == "liqo-tenant-rome"  # a context of a later file
    with pytest.raises(ContextError, match='context "nope" not found in'):
        context_namespace(None, "nope")


def test_a_context_without_a_namespace_is_in_default(tmp_path: Path) -> None:
    assert context_namespace(str(kubeconfig(tmp_path / "c", ("dev", None), current="dev")), None) == "default"


def test_liqosec_without_input_asks_for_one(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["matrix"])
    assert exited.value.code == 2
    assert "matrix: one of -f/--filename or --kubeconfig is required" in capsys.readouterr().err


def test_files_and_a_context_together_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        plugin_main(["render", "-f", str(EXAMPLE), "--context", "prod"])
    assert exited.value.code == 2
    assert "render: use -f/--filename or --kubeconfig/--context, not both" in capsys.readouterr().err


def test_a_namespace_the_input_lacks_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert plugin_main(["render", "-f", str(EXAMPLE), "-n", "nope"]) == 1
    assert capsys.readouterr().err == 'kubectl liqosec render: namespace "nope" not found in the input\n'


def test_namespace_scopes_the_matrix_to_one_peering() -> None:
    everything = str(ROOT / "examples")
    out = io.StringIO()
    assert main(["matrix", "-f", everything, "-n", "liqo-tenant-rome", "-o", "json"], out=out) == 0
    scoped = json.loads(out.getvalue())["peerings"]
    out = io.StringIO()
    assert main(["matrix", "-f", everything, "-o", "json"], out=out) == 0
    every = json.loads(out.getvalue())["peerings"]
    assert len(every) > 1
    assert {p["peeringConnectivity"] for p in scoped.values()} == {"liqo-tenant-rome/rome"}


def test_a_bare_peering_name_is_in_the_namespace_given() -> None:
    everything = str(ROOT / "examples")
    ends = ("--from", "shop-rome/cart-0", "--to", "default/web")
    bare = explain_json("-f", everything, "-n", "liqo-tenant-rome", "--peering", "rome", *ends)
    named = explain_json("-f", everything, "--peering", "liqo-tenant-rome/rome", *ends)
    assert bare["peering"]["peeringConnectivity"] == "liqo-tenant-rome/rome"
    assert bare["connection"] == named["connection"]


def test_a_bare_name_is_in_the_namespace_given() -> None:
    bare = explain_json("-f", str(EXAMPLE), "-n", "shop-rome", "--from", "cart-0", "--to", "10.71.0.9")
    full = explain_json("-f", str(EXAMPLE), "--from", "shop-rome/cart-0", "--to", "10.71.0.9")
    assert bare["from"] == full["from"] and bare["from"]["pod"] == "shop-rome/cart-0"
    assert bare["connection"] == full["connection"]


def test_a_bare_name_without_a_namespace_is_in_default(capsys: pytest.CaptureFixture[str]) -> None:
    assert explain_json("-f", str(EXAMPLE), "--from", "web", "--to", "10.71.0.9")["from"]["pod"] == "default/web"
    assert main(["explain", "-f", str(EXAMPLE), "--from", "cart-0", "--to", "10.71.0.9"]) == 1
    assert "--from pod default/cart-0 is not in the input" in capsys.readouterr().err


def test_the_krew_manifest_installs_kubectl_liqosec_at_the_package_version() -> None:
    manifest = yaml.safe_load((ROOT / "plugins" / "liqosec.yaml").read_text())
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert manifest["apiVersion"] == "krew.googlecontainertools.github.com/v1alpha2"
    assert manifest["kind"] == "Plugin" and manifest["metadata"]["name"] == "liqosec"
    assert manifest["spec"]["version"] == f"v{version}"
    assert manifest["spec"]["platforms"] and all(p["bin"] == "kubectl-liqosec" for p in manifest["spec"]["platforms"])
    for platform in manifest["spec"]["platforms"]:
        assert version in platform["uri"] and len(platform["sha256"]) == 64


def test_the_entry_point_kubectl_finds_is_the_plugin() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["kubectl-liqosec"] == "liqosec.plugin:main"
