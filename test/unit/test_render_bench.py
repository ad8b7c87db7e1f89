"""bench/render_bench.py runs end to end at a small size and its JSON keeps its shape (not timings)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "render_bench.py"


def test_small_run_reports_every_phase() -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--pods", "200", "--repeat", "1", "--reference", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    [case] = result["render"]
    assert case["pods"] == 200 and case["input_bytes"] > 200 * 150
    assert 0 < case["seconds_min"] <= case["seconds_median"]
    assert set(case["phases_min"]) == {"load", "compile", "write"}
    assert case["firewalls"] >= 1 and case["rules"] > 0 and case["output_bytes"] > 0
    assert case["reference_pure_safeloader_parse_seconds"] > 0


def test_table_is_the_default_output() -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--pods", "100", "--repeat", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert "render s" in proc.stdout and "100" in proc.stdout


def test_bad_sizes_are_a_usage_error() -> None:
    proc = subprocess.run([sys.executable, str(BENCH), "--pods", "0"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "positive integers" in proc.stderr
