"""Statistics and the markdown table of bench/run.py's results (also used by bench/plot.py)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

SCHEMA = "liqosec-bench/1"


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of non-empty `values` (q in 0..1)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def latency_stats(values: Iterable[float | None], api_p50: float | None) -> dict[str, Any]:
    """n, timeouts (None values), p50/p90/p99/max/mean in seconds, and each as a ratio to the API server's p50."""
    vals = list(values)
    done = [v for v in vals if v is not None]
    out: dict[str, Any] = {"n": len(vals), "timeouts": len(vals) - len(done)}
    for key, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0)):
        out[f"{key}_s"] = round(percentile(done, q), 4) if done else None
    out["mean_s"] = round(sum(done) / len(done), 4) if done else None
    for key in ("p50", "p90", "p99", "max"):
        out[f"{key}_ratio"] = ratio(out[f"{key}_s"], api_p50)
    return out


def ratio(value: float | None, api_p50: float | None) -> float | None:
    """A latency in units of the API server's own write p50, measured in the same run."""
    if value is None or not api_p50:
        return None
    return round(value / api_p50, 1)


def label(run: dict[str, Any]) -> str:
    ctl = run["controller"]
    who = ctl["name"]
    extra = [f"window {ctl['batch_window']}"] if ctl.get("batch_window") is not None else []
    if ctl.get("firewall_scope"):
        extra.append(ctl["firewall_scope"])
    scale = run["scale"] + ("*" if run.get("overrides") else "")  # * : a knob of the scale was overridden
    return f"{scale} {who}" + (f" ({', '.join(extra)})" if extra else "")


def _g(run: dict[str, Any], *path: str) -> Any:
    cur: Any = run
    for p in path:
        if not isinstance(cur, dict) or p not in cur:
            return None
        cur = cur[p]
    return cur


def _n(v: Any, fmt: str = "{:,}") -> str:
    if v is None:
        return "-"
    return fmt.format(v)


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:,.0f}"


def _lat(stats: dict[str, Any] | None) -> str:
    if not stats or stats.get("p50_s") is None:
        return "-"
    text = f"{_ms(stats['p50_s'])} / {_ms(stats['p90_s'])} / {_ms(stats['p99_s'])} ms"
    text += f" (x{stats['p50_ratio']} / x{stats['p90_ratio']} / x{stats['p99_ratio']})"
    if stats.get("timeouts"):
        text += f", {stats['timeouts']} timed out"
    return text


def _kib(v: float | None) -> str:
    return "-" if v is None else f"{v / 1024:,.1f} KiB"


def _mib(v: float | None) -> str:
    return "-" if v is None else f"{v / 2**20:,.0f}"


ROWS: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
    (
        "pods / peerings / nodes (layout)",
        lambda r: f"{r['world']['pods']:,} / {r['world']['peerings']} / {r['world']['nodes']} ({r['world']['layout']})",
    ),
    (
        "API server's own write, p50 / p99",
        lambda r: (
            f"{_ms(_g(r, 'apiserver', 'p50_s'))} / {_ms(_g(r, 'apiserver', 'p99_s'))} ms"
            if _g(r, "apiserver", "p50_s") is not None
            else "-"
        ),
    ),
    (
        "start-up: ready; every peering converged (s)",
        lambda r: f"{_n(_g(r, 'startup', 'ready_s'), '{:.2f}')}; {_n(_g(r, 'startup', 'converge_s'), '{:.2f}')}",
    ),
    (
        "start-up: firewall writes (most for one peering)",
        lambda r: f"{_n(_g(r, 'startup', 'writes'))} ({_n(_g(r, 'startup', 'writes_per_peering_max'))})",
    ),
    ("pod IP to firewall, p50 / p90 / p99 (x API p50)", lambda r: _lat(_g(r, "latency"))),
    (
        "  firewall objects written per change, mean (max)",
        lambda r: (
            f"{_n(_g(r, 'latency', 'objects_written_mean'), '{:.1f}')} ({_n(_g(r, 'latency', 'objects_written_max'))})"
        ),
    ),
    (
        "churn, p50 / p90 / p99 (x API p50)",
        lambda r: (
            (
                f"{_n(_g(r, 'churn', 'rate_per_s'), '{:g}')}/s for {_n(_g(r, 'churn', 'seconds'), '{:g}')} s: "
                + _lat(_g(r, "churn", "latency"))
            )
            if _g(r, "churn")
            else "-"
        ),
    ),
    (
        "burst: changes; firewall writes (most for one peering)",
        lambda r: (
            f"{_n(_g(r, 'burst', 'changes'))}; {_n(_g(r, 'burst', 'writes'))} "
            f"({_n(_g(r, 'burst', 'writes_per_peering_max'))})"
        ),
    ),
    (
        "burst: covered; settled after the last change (s)",
        lambda r: (
            f"{_n(_g(r, 'burst', 'covered_after_last_s'), '{:.2f}')}; "
            f"{_n(_g(r, 'burst', 'settled_after_last_s'), '{:.2f}')}"
        ),
    ),
    (
        "idle: firewall writes (seconds)",
        lambda r: f"{_n(_g(r, 'idle', 'writes'))} ({_n(_g(r, 'idle', 'seconds'), '{:g}')} s)",
    ),
    (
        "restart: firewall writes; ready (s)",
        lambda r: f"{_n(_g(r, 'restart', 'writes'))}; {_n(_g(r, 'restart', 'ready_s'), '{:.2f}')}",
    ),
    ("memory per cached pod", lambda r: _kib(_g(r, "memory", "bytes_per_pod"))),
    (
        "RSS: empty; converged; after restart (MiB)",
        lambda r: (
            f"{_mib(_g(r, 'memory', 'baseline_rss_bytes'))}; {_mib(_g(r, 'memory', 'converged_rss_bytes'))}; "
            f"{_mib(_g(r, 'memory', 'restart_rss_bytes'))}"
        ),
    ),
    (
        "controller CPU: whole run; start-up; idle (s)",
        lambda r: (
            f"{_n(_g(r, 'cpu', 'total_s'), '{:.1f}')}; {_n(_g(r, 'startup', 'cpu_s'), '{:.2f}')}; "
            f"{_n(_g(r, 'idle', 'cpu_s'), '{:.2f}')}"
        ),
    ),
    (
        "firewall objects; largest; total (bytes)",
        lambda r: (
            f"{_n(_g(r, 'firewalls', 'objects'))}; {_n(_g(r, 'firewalls', 'largest_bytes'))}; "
            f"{_n(_g(r, 'firewalls', 'total_bytes'))}"
        ),
    ),
]


def table(runs: list[dict[str, Any]]) -> str:
    """One markdown table, a column per run."""
    head = "| | " + " | ".join(label(r) for r in runs) + " |"
    sep = "| --- |" + " --- |" * len(runs)
    lines = [head, sep]
    for name, cell in ROWS:
        values = []
        for r in runs:
            try:
                values.append(cell(r))
            except (KeyError, TypeError):
                values.append("-")
        lines.append(f"| {name} | " + " | ".join(values) + " |")
    for name, lo, hi, value in marginal_memory(runs):
        lines.append(
            f"\n{name}: marginal memory per cached pod from {lo:,} to {hi:,} pods (converged RSS difference / "
            f"pods difference): {value / 1024:,.1f} KiB"
        )
    errors = [f"{label(r)}: {r['error']}" for r in runs if r.get("error")]
    if errors:
        lines += ["", *(f"**failed** {e.splitlines()[0]}" for e in errors)]
    return "\n".join(lines)


def config(run: dict[str, Any]) -> str:
    """The run's label without its scale: runs of one configuration at several sizes share it."""
    return label(run).split(" ", 1)[1]


def marginal_memory(runs: list[dict[str, Any]]) -> list[tuple[str, int, int, float]]:
    """Per configuration with two sizes or more: (config, fewest pods, most pods, bytes per extra pod).

    Fixed costs (interpreter, modules, threads, allocator slack) cancel out in the
    difference, which `bytes_per_pod` of one run (against the empty controller) keeps.
    """
    by_config: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        mem = r.get("memory") or {}
        if mem.get("converged_rss_bytes") and mem.get("pods_cached"):
            by_config.setdefault(config(r), []).append(mem)
    out = []
    for name, mems in by_config.items():
        lo = min(mems, key=lambda m: m["pods_cached"])
        hi = max(mems, key=lambda m: m["pods_cached"])
        if hi["pods_cached"] > lo["pods_cached"]:
            value = (hi["converged_rss_bytes"] - lo["converged_rss_bytes"]) / (hi["pods_cached"] - lo["pods_cached"])
            out.append((name, lo["pods_cached"], hi["pods_cached"], value))
    return out
