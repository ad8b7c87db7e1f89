"""bench/compile_bench.py runs end to end at its smallest size and its JSON keeps the documented shape (not timings)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "compile_bench.py"
LAYOUTS = {"scattered", "per-node-50", "per-node-90"}


@pytest.fixture(scope="module")
def result() -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--sizes", "100", "--repeat", "1", "--store-pods", "200", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    parsed: dict[str, Any] = json.loads(proc.stdout)
    return parsed


def test_every_layout_is_measured_at_the_requested_size(result: dict[str, Any]) -> None:
    assert {(r["layout"], r["pods_in_group"]) for r in result["compile"]} == {(layout, 100) for layout in LAYOUTS}


def test_each_case_reports_time_memory_size_and_chain_counts(result: dict[str, Any]) -> None:
    for r in result["compile"]:
        assert r["pods_total"] >= r["pods_in_group"]
        assert 0 < r["seconds_min"] <= r["seconds_median"]
        assert r["peak_alloc_bytes"] > 0
        assert 0 < r["firewall_bytes"] < r["firewall_bytes_limit"]
        [chain] = r["chains"]
        assert chain["policy"] in ("accept", "drop")
        assert 0 < chain["rules"] <= chain["matches"]
        assert 0 < chain["max_matches_per_rule"] <= chain["matches"]


def test_layouts_mix_group_and_other_pods_as_documented(result: dict[str, Any]) -> None:
    totals = {r["layout"]: r["pods_total"] for r in result["compile"]}
    assert totals == {"scattered": 100, "per-node-50": 200, "per-node-90": 112}


def test_slim_pods_cost_less_than_listed_pods(result: dict[str, Any]) -> None:
    store = result["store"]
    assert store["pods"] == 200
    assert 0 < store["bytes_per_pod_slim"] < store["bytes_per_pod_full"]


def test_table_is_the_default_output() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--sizes",
            "100",
            "--layouts",
            "per-node-90",
            "--repeat",
            "1",
            "--store-pods",
            "50",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert "per-node-90" in proc.stdout and "bytes per slim pod" in proc.stdout


def test_unknown_layout_is_a_usage_error() -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--layouts", "diagonal"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2 and "unknown layouts" in proc.stderr
