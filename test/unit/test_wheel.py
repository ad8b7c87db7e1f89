"""The wheel ships only the product: the packages that run in production, no tooling or tests."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = {"api", "groups", "compiler", "firewall", "kube", "controller", "admission"}
TOP_MODULES = {
    "__init__.py",
    "__main__.py",
    "cli.py",
    "inputs.py",
    "live.py",
    "offline.py",
    "render.py",
    "run.py",
    "matrix.py",
    "explain.py",
    "picture.py",
    "plugin.py",
    "source.py",
    "py.typed",
}


def test_the_wheel_holds_the_product_and_nothing_else(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(ROOT),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("liqosec-*.whl")
    names = [n for n in zipfile.ZipFile(wheel).namelist() if ".dist-info/" not in n]
    assert names and all(n.startswith("liqosec/") for n in names), names
    packages = {n.split("/")[1] for n in names if n.count("/") >= 2}
    assert packages == PRODUCT
    assert {n.split("/")[1] for n in names if n.count("/") == 1} == TOP_MODULES
    for unwanted in ("harness", "devenv", "dataplane", "agent_model", "fakeclock", "bench", "test"):
        assert not [n for n in names if unwanted in n], unwanted
