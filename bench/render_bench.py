"""`liqosec render` end to end on a large cluster dump: is the CLI usable on a big cluster?

Why: the CLI reads YAML, and PyYAML's pure-Python loader took 41 of the 49 s a 20,000-pod dump
needed to render. This writes such a dump (the seed's Example 1, examples/provider-isolate-
offloaded.yaml, plus `--pods` pods as `kubectl get -o yaml` would print slim ones: half offloaded
from rome, picked at random, half local; addresses handed out in order per node /24), then times
``python -m liqosec render -f DUMP`` in a fresh interpreter (the wall time a user waits), and,
in this process, each phase: load (read, parse, check), compile, and write the YAML.

``python bench/render_bench.py`` prints a table, ``--json`` the same as JSON;
``--reference`` also times PyYAML's pure SafeLoader on the same file, for comparison.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
try:
    import liqosec  # noqa: F401
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))

import yaml

from liqosec.cli import main as cli_main
from liqosec.inputs import load
from liqosec.render import render

EXAMPLE = ROOT / "examples" / "provider-isolate-offloaded.yaml"
PEER = "rome"
ORIGIN = "offloading.liqo.io/origin"
BASE = (10 << 24) | (1 << 16)  # 10.1.0.0, the example's local pod CIDR
PODS_PER_NODE = 110  # the kubelet's default max-pods
DEFAULT_PODS = (20_000,)
SEED = 7
DUMPER: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # what the CLI writes with


def ip(n: int) -> str:
    return f"{n >> 24 & 255}.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"


def pod(i: int, offloaded: bool) -> dict[str, Any]:
    """Pod i, on node i // 110 at the node's next address; offloaded ones form the group the policy isolates."""
    node = i // PODS_PER_NODE
    address = ip(BASE + (node % 256) * 256 + 2 + i % PODS_PER_NODE)
    labels = {ORIGIN: PEER, "liqo.io/managed-by": "shadowpod"} if offloaded else {"app": f"app-{i % 20}"}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"pod-{i:06d}", "namespace": f"shop-{PEER}" if offloaded else "default", "labels": labels},
        "spec": {"nodeName": f"worker-{node}"},
        "status": {"phase": "Running", "podIP": address, "podIPs": [{"ip": address}]},
    }


def write_dump(path: Path, pods: int) -> int:
    """The example's objects then `pods` pods, one YAML stream; returns its size in bytes."""
    objects = [d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d and d.get("kind") != "Pod"]
    offloaded = set(random.Random(SEED).sample(range(pods), pods // 2))  # interleaved, as on real nodes
    with path.open("w", encoding="utf-8") as fh:
        yaml.dump_all([*objects, *(pod(i, i in offloaded) for i in range(pods))], fh, Dumper=DUMPER, sort_keys=False)
    return path.stat().st_size


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def end_to_end(path: Path) -> tuple[float, int]:
    """Wall seconds of `python -m liqosec render -f path` and the bytes it printed."""
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "liqosec", "render", "-f", str(path)], capture_output=True, cwd=ROOT, check=False
    )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"liqosec render failed ({proc.returncode}):\n{proc.stderr.decode(errors='replace')}")
    return seconds, len(proc.stdout)


def phases(path: Path) -> dict[str, float]:
    """Seconds of each phase, in this process (no interpreter start, no imports)."""
    load_s, loaded = timed(lambda: load([str(path)]))
    compile_s, firewalls = timed(lambda: render(loaded.objects))
    write_s, _ = timed(lambda: yaml.dump_all(firewalls, Dumper=DUMPER, sort_keys=False))
    return {"load": load_s, "compile": compile_s, "write": write_s}


def reference_parse(path: Path) -> float:
    """PyYAML's pure-Python SafeLoader on the same file: what the CLI used before."""
    text = path.read_text(encoding="utf-8")
    seconds, _ = timed(lambda: list(yaml.load_all(text, Loader=yaml.SafeLoader)))
    return seconds


def measure(pods: int, repeat: int, reference: bool, workdir: Path) -> dict[str, Any]:
    path = workdir / f"dump-{pods}.yaml"
    size = write_dump(path, pods)
    runs = [end_to_end(path) for _ in range(repeat)]
    split = [phases(path) for _ in range(repeat)]
    check = io.StringIO()
    cli_main(["render", "-f", str(path), "-o", "json"], out=check)
    firewalls = json.loads(check.getvalue())
    result: dict[str, Any] = {
        "pods": pods,
        "input_bytes": size,
        "seconds_min": min(s for s, _ in runs),
        "seconds_median": statistics.median(s for s, _ in runs),
        "output_bytes": runs[0][1],
        "firewalls": len(firewalls),
        "rules": sum(len(c["rules"].get("filterRules", [])) for fc in firewalls for c in fc["spec"]["table"]["chains"]),
        "phases_min": {name: min(p[name] for p in split) for name in split[0]},
    }
    if reference:
        result["reference_pure_safeloader_parse_seconds"] = reference_parse(path)
    path.unlink()
    return result


def run(pods: Sequence[int], repeat: int, reference: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="liqosec-render-bench-") as tmp:
        cases = [measure(n, repeat, reference, Path(tmp)) for n in pods]
    return {
        "python": platform.python_version(),
        "machine": f"{platform.machine()} {platform.system()}",
        "libyaml": bool(getattr(yaml, "__with_libyaml__", False)),
        "repeat": repeat,
        "render": cases,
    }


def table(result: Mapping[str, Any]) -> str:
    head = (
        f"{'pods':>8} {'input MB':>9} {'render s':>9} {'median s':>9} {'load s':>7} {'compile s':>9} {'write s':>8} "
        f"{'FCs':>4} {'rules':>6}"
    )
    lines = [
        f"python {result['python']} on {result['machine']}, libyaml {'yes' if result['libyaml'] else 'no'}, "
        f"best of {result['repeat']} (render: `python -m liqosec render`, wall clock)",
        head,
        "-" * len(head),
    ]
    for r in result["render"]:
        p = r["phases_min"]
        lines.append(
            f"{r['pods']:>8,} {r['input_bytes'] / 1e6:>9.2f} {r['seconds_min']:>9.2f} {r['seconds_median']:>9.2f} "
            f"{p['load']:>7.2f} {p['compile']:>9.2f} {p['write']:>8.2f} {r['firewalls']:>4} {r['rules']:>6}"
        )
        if "reference_pure_safeloader_parse_seconds" in r:
            reference = r["reference_pure_safeloader_parse_seconds"]
            lines.append(f"{'':>8} pure-Python SafeLoader alone on this file: {reference:.2f} s")
    return "\n".join(lines)


def positive_ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas, got {text!r}")
    return values


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--pods", type=positive_ints, default=list(DEFAULT_PODS), help="pods in the dump, e.g. 2000,20000")
    p.add_argument("--repeat", type=int, default=3, help="timed runs per size; the best is reported")
    p.add_argument("--reference", action="store_true", help="also time PyYAML's pure SafeLoader on the dump")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = p.parse_args(argv)
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    result = run(args.pods, args.repeat, args.reference)
    print(json.dumps(result, indent=2) if args.json else table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
