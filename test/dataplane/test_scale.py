"""Scope: hundreds of scattered pods through the real chain: Liqo's agent loads every shard, sampled cells match."""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path
from typing import Any

import pytest
from dataplane_support import check_cells, describe
from world import World

from harness import agent_model as agent
from liqosec.inputs import load_objects
from liqosec.matrix import Matrix, build_matrix

pytestmark = pytest.mark.dataplane

SCENARIO = Path(__file__).parent / "scenarios" / "default-deny.yaml"
OFFLOADED = {"offloading.liqo.io/origin": "rome", "liqo.io/managed-by": "shadowpod"}
SHADOW = {"liqo.io/shadowPod": "true"}
SAMPLED_PODS = 24  # 24 pods + the matrix's sample addresses: about 800 probed cells


def _pod(name: str, ns: str, ip: str, labels: dict[str, str], node: str | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"nodeName": node} if node else {},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]},
    }


def _scattered(count: int, start: int) -> list[dict[str, Any]]:
    """Every other address, so no two pods of a group aggregate into one range."""
    pods = []
    for i in range(start, start + count):
        block, host = i // 100, 2 * (i % 100) + 1
        pods += [
            _pod(f"scattered-job-{i}", "guest-rome", f"10.1.{20 + block}.{host}", OFFLOADED),
            _pod(f"scattered-svc-{i}", "shop", f"10.1.{40 + block}.{host}", {}),
            _pod(f"scattered-bk-{i}", "shop", f"10.71.{40 + block}.{host}", SHADOW, node="liqo-rome"),
        ]
    return pods


def _sample(matrix: Matrix, rng: random.Random) -> list[str]:
    pods = [e.ip for e in matrix.endpoints if e.kind == "pod"]
    return [e.ip for e in matrix.endpoints if e.kind != "pod"] + rng.sample(pods, SAMPLED_PODS)


def test_many_scattered_pods_load_and_keep_verdicts(fresh: World, cell_report: Any) -> None:
    objects = load_objects([str(SCENARIO)]) + _scattered(70, 0)
    fcs = fresh.apply_and_settle(objects, timeout=120)
    rules = [r for fc in fcs for c in fc["spec"]["table"]["chains"] for r in c["rules"]["filterRules"]]
    widest = max(agent.expression_count(r) for r in rules)
    assert widest <= agent.MAX_RULE_EXPRESSIONS
    matrix = build_matrix(objects, max_endpoints=None)
    sample = _sample(matrix, random.Random(0))
    names = {e.ip: e.name for e in matrix.endpoints}
    fresh.cluster.attach({ip: i % len(fresh.cluster.nodes) for i, ip in enumerate(sample)}, names)
    cells = check_cells(fresh.cluster, matrix.connect)
    cell_report.append(
        (f"scale 210 pods, {len(rules)} rules, widest {widest} exprs", len(cells.observed), cells.agreed)
    )
    assert not cells.disagreements, describe(cells, names)

    grown = objects + _scattered(30, 70)
    fresh.apply_and_settle(grown, timeout=120)
    cells = check_cells(fresh.cluster, build_matrix(grown, max_endpoints=None).connect)
    cell_report.append(("scale +90 pods, the agent patching the live chains", len(cells.observed), cells.agreed))
    assert not cells.disagreements, describe(cells, names)


# Issue 17's shapes: both sides of the denied region scattered, so the compiler writes product
# chains (policy drop, accepting src not in S or dst not in T) beside the main chain.
ROOT = Path(__file__).resolve().parents[2]
PROVIDER = ROOT / "examples" / "mode-protected-borders-provider.yaml"


def _bench_shapes() -> dict[str, dict[str, Any]]:
    """The policy shapes bench/compile_bench.py measures (issue 17's size table): one definition."""
    spec = importlib.util.spec_from_file_location("compile_bench", ROOT / "bench" / "compile_bench.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {name: module.SHAPES[name] for name in ("protected-borders", "default-deny")}


SHAPES = _bench_shapes()


def _offloaded_and_local(count: int) -> list[dict[str, Any]]:
    """`count` offloaded pods and as many local ones, interleaved at every other address."""
    pods = []
    for i in range(count):
        block, host = i // 100, 2 * (i % 100) + 1
        pods += [
            _pod(f"far-{i}", "shop-rome", f"10.1.{60 + block}.{host}", OFFLOADED, node=f"worker-{i % 2}"),
            _pod(f"near-{i}", "default", f"10.1.{60 + block}.{host + 1}", {}, node=f"worker-{i % 2}"),
        ]
    return pods


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_300_scattered_offloaded_pods_compile_linear_and_keep_verdicts(
    fresh: World, cell_report: Any, shape: str
) -> None:
    base = [o for o in load_objects([str(PROVIDER)]) if o["kind"] != "PeeringConnectivity"]
    (policy,) = [o for o in load_objects([str(PROVIDER)]) if o["kind"] == "PeeringConnectivity"]
    policy = {**policy, "spec": SHAPES[shape]}
    objects = [*base, *_offloaded_and_local(300), policy]
    fcs = fresh.apply_and_settle(objects, timeout=180)
    rules = [r for fc in fcs for c in fc["spec"]["table"]["chains"] for r in c["rules"]["filterRules"]]
    assert len(rules) <= 3_000, f"{shape}: {len(rules)} rules for 300 offloaded pods"
    assert max(agent.expression_count(r) for r in rules) <= agent.MAX_RULE_EXPRESSIONS
    fresh.wait_ready(objects, timeout=60)  # every object applied by Liqo's agent on every node
    matrix = build_matrix(objects, max_endpoints=None)
    sample = _sample(matrix, random.Random(shape))
    names = {e.ip: e.name for e in matrix.endpoints}
    fresh.cluster.attach({ip: i % len(fresh.cluster.nodes) for i, ip in enumerate(sample)}, names)
    cells = check_cells(fresh.cluster, matrix.connect)
    cell_report.append(
        (f"{shape}, 300 scattered offloaded pods: {len(fcs)} objects", len(cells.observed), cells.agreed)
    )
    assert not cells.disagreements, describe(cells, names)
