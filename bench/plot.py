"""PNG plots of bench/run.py's results; merges several result files into one table and scaling plot.

    python bench/plot.py RESULTS.json [MORE.json ...] --out DIR [--table]

Per run: `<run>-process.png` (controller CPU, as % of one core, and RSS over time, the phases
shaded) and `<run>-latency.png` (every churn change's latency over time by kind of change, with
the API server's own write latency sampled in the same run). With runs of at least two sizes:
`scaling.png` (RSS and memory per cached pod against pods; controller CPU for start-up and for
the whole run against pods). Needs matplotlib (pip install -e '.[bench]').
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_report

OP_STYLE = {
    "create": ("tab:blue", "o"),
    "delete": ("tab:red", "x"),
    "relabel-in": ("tab:green", "^"),
    "relabel-out": ("tab:orange", "v"),
}


def slug(run: dict[str, Any]) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", bench_report.label(run)).strip("-").lower()


def _shade_phases(ax: Any, phases: list[dict[str, Any]]) -> None:
    for i, ph in enumerate(phases):
        if ph["name"] in ("control plane", "world"):
            continue
        ax.axvspan(ph["start"], ph["end"], color="0.85" if i % 2 else "0.93", lw=0)
        ax.text(
            (ph["start"] + ph["end"]) / 2,
            1.0 + 0.12 * (i % 2),
            ph["name"],
            transform=ax.get_xaxis_transform(),
            ha="center",
            va="bottom",
            fontsize=6,
            rotation=30,
        )


def plot_process(run: dict[str, Any], path: Path) -> Path:
    samples = run["timeline"]["process"]
    fig, (ax_cpu, ax_rss) = plt.subplots(2, 1, sharex=True, figsize=(10, 6))
    by_instance: dict[str, list[list[Any]]] = {}
    for s in samples:
        by_instance.setdefault(s[3], []).append(s)
    step = float((run.get("params") or {}).get("sample_interval") or 0.5)
    for inst, rows in by_instance.items():
        ax_rss.plot([r[0] for r in rows], [r[2] / 2**20 for r in rows], lw=1.0, label=inst)
        kept = [rows[0]]
        for r in rows[1:]:  # extra samples taken at phase edges are too close for a rate
            if r[0] - kept[-1][0] >= 0.8 * step:
                kept.append(r)
        ts = [r[0] for r in kept]
        rate = [0.0] + [100 * (b[1] - a[1]) / (b[0] - a[0]) for a, b in zip(kept, kept[1:])]
        ax_cpu.plot(ts, rate, lw=0.8, label=inst)
    for ax in (ax_cpu, ax_rss):
        _shade_phases(ax, run["timeline"]["phases"])
        ax.legend(fontsize=7, loc="upper left")
    ax_cpu.set_ylabel("controller CPU, % of one core")
    ax_rss.set_ylabel("controller RSS, MiB")
    ax_rss.set_xlabel("seconds since the run started")
    fig.suptitle(f"{bench_report.label(run)}: CPU and memory over time", y=0.995)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_latency(run: dict[str, Any], path: Path) -> Path | None:
    churn = run.get("churn")
    if not churn or not churn.get("samples"):
        return None
    start = next((p["start"] for p in run["timeline"]["phases"] if p["name"] == "churn"), 0.0)
    end = next((p["end"] for p in run["timeline"]["phases"] if p["name"] == "churn"), None)
    fig, ax = plt.subplots(figsize=(12, 4.5))
    for op in sorted({s["op"] for s in churn["samples"]}):
        pts = [s for s in churn["samples"] if s["op"] == op and s["latency_s"] is not None]
        color, marker = OP_STYLE.get(op, ("tab:gray", "."))
        ax.scatter([s["t"] for s in pts], [s["latency_s"] * 1000 for s in pts], s=12, c=color, marker=marker, label=op)
        lost = [s["t"] for s in churn["samples"] if s["op"] == op and s["latency_s"] is None]
        if lost:
            ax.scatter(lost, [0] * len(lost), s=30, c=color, marker="|", label=f"{op}: timed out")
    api = [(t - start, v) for t, v in run["timeline"].get("apiserver_writes", []) if start <= t <= (end or t)]
    if api:
        ax.plot([a for a, _ in api], [v * 1000 for _, v in api], c="k", lw=0.8, label="API server's own write")
    p50 = (run.get("apiserver") or {}).get("p50_s")
    if p50:
        ax.axhline(p50 * 1000, c="k", ls=":", lw=0.8, label=f"API write p50 ({p50 * 1000:.1f} ms)")
    ax.set_yscale("log")
    ax.set_xlabel("seconds since the churn started")
    ax.set_ylabel("change to firewall, ms (log)")
    lat = churn["latency"]
    ax.set_title(
        f"{bench_report.label(run)}: churn {churn['rate_per_s']:g}/s; p50 {1000 * (lat['p50_s'] or 0):.0f} ms, "
        f"p99 {1000 * (lat['p99_s'] or 0):.0f} ms (x{lat['p50_ratio']} / x{lat['p99_ratio']} API p50)",
        fontsize=9,
    )
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_scaling(runs: list[dict[str, Any]], path: Path) -> Path | None:
    """Memory and CPU against pods, one line per controller configuration."""
    usable = [r for r in runs if (r.get("memory") or {}).get("converged_rss_bytes") and r.get("cpu")]
    if len({r["world"]["pods"] for r in usable}) < 2:
        return None
    series: dict[str, list[dict[str, Any]]] = {}
    for r in usable:
        series.setdefault(bench_report.config(r), []).append(r)
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for key, rs in series.items():
        rs = sorted(rs, key=lambda r: r["world"]["pods"])
        pods = [r["memory"]["pods_cached"] for r in rs]
        axes[0].plot(pods, [r["memory"]["converged_rss_bytes"] / 2**20 for r in rs], "o-", label=f"{key}: converged")
        axes[0].plot(pods, [r["memory"]["baseline_rss_bytes"] / 2**20 for r in rs], "o--", label=f"{key}: empty")
        axes[1].plot(pods, [r["memory"]["bytes_per_pod"] / 1024 for r in rs], "o-", label=key)
        axes[2].plot(pods, [r["startup"]["cpu_s"] for r in rs], "o-", label=f"{key}: start-up")
        axes[2].plot(pods, [r["cpu"]["total_s"] for r in rs], "s--", label=f"{key}: whole run")
    for ax, ylabel in zip(axes, ("controller RSS, MiB", "memory per cached pod, KiB", "controller CPU, s")):
        ax.set_xscale("log")
        ax.set_xlabel("pods cached")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    marginal = "; ".join(
        f"{name}: {value / 1024:,.1f} KiB per extra pod" for name, _, _, value in bench_report.marginal_memory(usable)
    )
    fig.suptitle(f"memory and CPU against pods ({marginal})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_all(runs: list[dict[str, Any]], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    seen: dict[str, int] = {}
    for run in runs:
        if not run.get("timeline"):
            continue
        name = slug(run)
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            name += f"-{seen[name]}"
        written.append(plot_process(run, out / f"{name}-process.png"))
        lat = plot_latency(run, out / f"{name}-latency.png")
        if lat:
            written.append(lat)
    scaling = plot_scaling(runs, out / "scaling.png")
    if scaling:
        written.append(scaling)
    return written


def load_runs(paths: Iterable[str]) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    for p in paths:
        doc = json.loads(Path(p).read_text())
        if doc.get("schema") != bench_report.SCHEMA:
            raise SystemExit(f"{p}: not a {bench_report.SCHEMA} result (schema {doc.get('schema')!r})")
        runs += doc["runs"]
    return runs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("results", nargs="+", help="JSON files written by bench/run.py --json")
    p.add_argument("--out", required=True, help="directory for the PNGs")
    p.add_argument("--table", action="store_true", help="also print the merged markdown table")
    p.add_argument("--json", metavar="PATH", help="also write the merged results here")
    args = p.parse_args(argv)
    runs = load_runs(args.results)
    for path in write_all(runs, Path(args.out)):
        print(f"wrote {path}", file=sys.stderr)
    if args.table:
        print(bench_report.table(runs))
    if args.json:
        Path(args.json).write_text(json.dumps({"schema": bench_report.SCHEMA, "runs": runs}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
