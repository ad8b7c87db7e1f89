"""bench/run.py at smoke scale end to end on a real control plane: the shape of its results and the
invariants that do not depend on timing (every peering converges, idle and restart write nothing).
No timing thresholds: CI machines are loaded. A controller that never converges fails the run
with a message, not a hang.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.controlplane import binaries_or_skip

ROOT = Path(__file__).resolve().parents[2]
RUN = ROOT / "bench" / "run.py"
PHASES = ["control plane", "world", "baseline", "populate", "start-up", "api server writes", "latency rounds"]
LATENCY_KEYS = {"n", "timeouts", "p50_s", "p90_s", "p99_s", "max_s", "mean_s", "p50_ratio", "p90_ratio", "p99_ratio"}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str, Path]:
    binaries_or_skip(ROOT)
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run(
        [sys.executable, str(RUN), "--scale", "smoke", "--json", str(out / "smoke.json"), "--out", str(out / "png")],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    doc = json.loads((out / "smoke.json").read_text())
    return doc, proc.stdout, out


def test_results_have_the_documented_shape(smoke: tuple[dict[str, Any], str, Path]) -> None:
    doc, _, _ = smoke
    assert doc["schema"] == "liqosec-bench/1"
    [run] = doc["runs"]
    assert "error" not in run
    assert run["scale"] == "smoke" and run["controller"]["name"] == "liqosec" and run["coverage"] == "evaluate"
    assert run["world"] | {"populate_s": 0, "populate_pods_per_s": 0} == {
        "pods": 50,
        "peerings": 1,
        "nodes": 2,
        "layout": "scattered",
        "policy": "example-1",
        "seed": 7,
        "addressing": "classic",
        "local_pod_cidr": "10.1.0.0/16",
        "populate_s": 0,
        "populate_pods_per_s": 0,
    }
    for key in ("apiserver", "baseline", "startup", "latency", "churn", "burst", "idle", "restart", "memory", "cpu"):
        assert isinstance(run[key], dict), key
    assert LATENCY_KEYS <= set(run["latency"]) and LATENCY_KEYS <= set(run["churn"]["latency"])
    assert [p["name"] for p in run["timeline"]["phases"]][: len(PHASES)] == PHASES
    assert run["timeline"]["process"] and run["timeline"]["apiserver_writes"] and run["timeline"]["firewall_writes"]
    assert [i["label"] for i in run["instances"]] == ["baseline", "main", "restarted"]
    assert all(i["exit_code"] == 0 for i in run["instances"])


def test_every_peering_converges_and_every_change_reaches_the_firewall(
    smoke: tuple[dict[str, Any], str, Path],
) -> None:
    run = smoke[0]["runs"][0]
    assert run["startup"]["peerings_converged"] == run["startup"]["peerings"] == 1
    assert run["startup"]["writes"] >= 1
    assert run["latency"]["n"] == 10 and run["latency"]["timeouts"] == 0 and run["latency"]["anomalies"] == 0
    churn = run["churn"]
    assert churn["changes"] == 50 and churn["latency"]["timeouts"] == 0
    assert churn["api_errors"] == 0 and churn["anomalies"] == 0 and churn["not_finished"] == 0
    assert set(churn["ops"]) <= {"create", "delete", "relabel-in", "relabel-out"} and churn["ops"]["create"] > 0
    burst = run["burst"]
    assert burst["changes"] == 200 and burst["not_covered"] == 0 and burst["anomalies"] == 0
    assert 1 <= burst["writes"] <= 200


def test_idle_and_restart_write_nothing(smoke: tuple[dict[str, Any], str, Path]) -> None:
    run = smoke[0]["runs"][0]
    assert run["idle"]["writes"] == 0
    assert run["restart"]["writes"] == 0
    assert run["baseline"]["writes"] == 0


def test_latencies_are_reported_against_the_api_servers_own_write(smoke: tuple[dict[str, Any], str, Path]) -> None:
    run = smoke[0]["runs"][0]
    api = run["apiserver"]
    assert api["n"] == 40 and 0 < api["p50_s"] <= api["p99_s"]
    lat = run["latency"]
    assert 0 < lat["p50_s"] <= lat["p90_s"] <= lat["p99_s"] <= lat["max_s"]
    assert lat["p50_ratio"] == pytest.approx(lat["p50_s"] / api["p50_s"], rel=0.05, abs=0.1)


def test_memory_cpu_and_firewall_size_are_measured(smoke: tuple[dict[str, Any], str, Path]) -> None:
    run = smoke[0]["runs"][0]
    mem = run["memory"]
    assert mem["baseline_rss_bytes"] > 0 and mem["converged_rss_bytes"] > 0 and mem["restart_rss_bytes"] > 0
    assert mem["pods_cached"] == 50 + 10 + 1  # bulk, probes, web
    assert isinstance(mem["bytes_per_pod"], int)
    assert run["cpu"]["total_s"] > 0 and run["startup"]["cpu_s"] > 0
    fcs = run["firewalls"]
    assert fcs["objects"] >= 1 and 0 < fcs["largest_bytes"] <= fcs["total_bytes"]


def test_table_and_plots(smoke: tuple[dict[str, Any], str, Path]) -> None:
    _, stdout, out = smoke
    assert "| idle: firewall writes (seconds) | 0 (5 s) |" in stdout
    assert "| restart: firewall writes; ready (s) | 0;" in stdout
    pngs = sorted(p.name for p in (out / "png").glob("*.png"))
    assert pngs == ["smoke-liqosec-window-auto-latency.png", "smoke-liqosec-window-auto-process.png"]


def test_a_controller_that_never_converges_fails_with_a_message(tmp_path: Path) -> None:
    binaries_or_skip(ROOT)
    proc = subprocess.run(
        [
            sys.executable,
            str(RUN),
            "--scale",
            "smoke",
            "--controller-cmd",
            "{python} -c 'import time; time.sleep(600)'",
            "--ready-wait",
            "0.5",
            "--converge-timeout",
            "3",
            "--json",
            str(tmp_path / "r.json"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    kept = re.search(r"controller logs kept in (\S+)\)", proc.stderr)
    if kept:
        shutil.rmtree(kept.group(1), ignore_errors=True)
    assert proc.returncode == 1
    assert "did not cover every pod within" in proc.stderr and "rome: 50 of 50 pods uncovered" in proc.stderr
    [run] = json.loads((tmp_path / "r.json").read_text())["runs"]
    assert run["coverage"] == "mentions" and "did not cover every pod" in run["error"]
    assert "startup" not in run and run["instances"][-1]["exit_code"] is not None
