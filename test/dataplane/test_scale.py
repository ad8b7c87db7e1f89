"""Scope: hundreds of scattered pods through the real chain: Liqo's agent loads every shard, sampled cells match;
the largest object the compiler writes (an unsplittable chain at its budget) loads, and one past the
agent's limit fails."""

from __future__ import annotations

import importlib.util
import random
import time
from pathlib import Path
from typing import Any

import pytest
from dataplane_support import chain, check_cells, describe
from world import World

from harness import agent_model as agent
from liqosec.compiler.compile import UNSPLIT_BUDGET, UNSPLIT_RULE_WEIGHT, FilterRule, rule_name, unsplit_cost
from liqosec.compiler.firewallconfiguration import MAX_EXPRESSIONS_PER_FIREWALL
from liqosec.controller.resources import FIREWALL_CONFIGURATIONS
from liqosec.firewall.addresses import AddressSet
from liqosec.inputs import load_objects
from liqosec.matrix import Matrix, build_matrix

pytestmark = pytest.mark.dataplane
BASE_10_1 = (10 << 24) | (1 << 16)  # 10.1.0.0

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


def _sampled_cells_agree(fresh: World, objects: list[Any], rng: random.Random, label: str, cell_report: Any) -> None:
    """Packets between the matrix's non-pod endpoints and a sample of its pods, through the agents, agree with it."""
    matrix = build_matrix(objects, max_endpoints=None)
    sample = _sample(matrix, rng)
    names = {e.ip: e.name for e in matrix.endpoints}
    fresh.cluster.attach({ip: i % len(fresh.cluster.nodes) for i, ip in enumerate(sample)}, names)
    cells = check_cells(fresh.cluster, matrix.connect)
    cell_report.append((label, len(cells.observed), cells.agreed))
    assert not cells.disagreements, describe(cells, names)


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
    _sampled_cells_agree(
        fresh, objects, random.Random(shape), f"{shape}, 300 scattered offloaded pods: {len(fcs)} objects", cell_report
    )


# The largest object the compiler writes: one unsplittable (policy-drop) chain at `UNSPLIT_BUDGET`,
# twice a drop-rules shard's 1,500 expressions (docs/semantics.md, "Product chains" and "Liqo's agent").
BUDGET_PODS = 660  # offloaded and as many local: each side's complement fills half a product chain


def test_product_chains_at_the_unsplit_budget_apply_and_keep_verdicts(fresh: World, cell_report: Any) -> None:
    """ProtectedBorders over 660 scattered offloaded pods: the compiler's product chains come within 1%
    of the unsplit budget; Liqo's agent applies them on every node (Applied=True, every rule in the
    nft table) and sampled packets get the matrix's verdicts."""
    base = [o for o in load_objects([str(PROVIDER)]) if o["kind"] != "PeeringConnectivity"]
    (policy,) = [o for o in load_objects([str(PROVIDER)]) if o["kind"] == "PeeringConnectivity"]
    policy = {**policy, "spec": SHAPES["protected-borders"]}
    objects = [*base, *_offloaded_and_local(BUDGET_PODS), policy]
    fcs = fresh.apply_and_settle(objects, timeout=240)  # every node holds every table and rule name
    products = [fc for fc in fcs if fc["spec"]["table"]["chains"][0]["policy"] == "drop"]
    costs = [_unsplit_cost(fc) for fc in products]
    assert products and max(costs) <= UNSPLIT_BUDGET
    assert max(costs) >= 0.98 * UNSPLIT_BUDGET, f"the largest product chain costs {max(costs)}: not at the budget"
    assert max(_expressions(fc) for fc in products) > 2 * MAX_EXPRESSIONS_PER_FIREWALL * 0.9
    fresh.wait_ready(objects, timeout=60)
    for fc in products:  # Liqo's own status: Applied=True from both hosts
        assert _applied(fresh, fc) == {f"worker-{i}": "True" for i in range(len(fresh.cluster.nodes))}
    label = f"protected-borders, {BUDGET_PODS} offloaded pods: product chains of {max(costs)} / {UNSPLIT_BUDGET}"
    _sampled_cells_agree(fresh, objects, random.Random(BUDGET_PODS), label, cell_report)


# The longest table name liqosec writes: a product chain's, for a peer id of 63 characters (a DNS
# label). The agent's echo of each rule carries it, so it is the worst case for the agent's limit.
LONGEST_TABLE = f"liqosec-{'p' * 63}_xabcdef-0a01000017-0a01800017"


def _worst_rules(shape: str) -> list[FilterRule]:
    """Accept rules of one shape, as many as an unsplittable chain could hold: one IP match each (the
    most rules), two, 20 CIDRs (the most expressions a rule), or a product chain's complement chunks."""
    from liqosec.compiler.cover import Match, complement_terms

    if shape == "product":
        rng = random.Random(17)
        pods = AddressSet.from_intervals(
            (a, a) for a in (BASE_10_1 + 2 * x for x in rng.sample(range(1, 32_767), 3000))
        )
        terms = complement_terms(pods, "src")
    else:
        per_rule, cidr = {"one-ip": (1, False), "two-ips": (2, False), "20-cidrs": (20, True)}[shape]
        terms = [
            tuple(
                Match("src", "neq" if j else "eq", f"10.{i // 250}.{i % 250}.{2 * j}" + ("/31" if cidr else ""))
                for j in range(per_rule)
            )
            for i in range(5000)
        ]
    rules = []
    for term in terms:
        name = rule_name("accept", term)
        rules.append(FilterRule(name, "accept", term))
    return rules


def _longest_chain(rules: list[FilterRule], cost: int) -> dict[str, Any]:
    """A policy-drop chain in the longest table, of the first `rules` whose `unsplit_cost` stays within `cost`."""
    kept: list[FilterRule] = []
    for r in rules:
        if unsplit_cost([*kept, r]) > cost:
            break
        kept.append(r)
    fc = chain([r.to_api() for r in kept], table=LONGEST_TABLE, policy="drop", name="peering-filter")
    fc["metadata"]["name"] = "longest-chain"
    return fc


@pytest.mark.parametrize("shape", ["one-ip", "two-ips", "20-cidrs", "product"])
def test_liqos_agent_applies_a_chain_at_the_unsplit_budget_whatever_its_rules(fresh: World, shape: str) -> None:
    """At `UNSPLIT_BUDGET` (kernel expressions plus `UNSPLIT_RULE_WEIGHT` a rule), in the longest table
    name, a policy-drop chain of any rule shape loads on every node with Applied=True."""
    fc = _longest_chain(_worst_rules(shape), UNSPLIT_BUDGET)
    fresh.put_firewalls([fc], timeout=60)
    assert _wait_applied(fresh, fc, "True"), _applied(fresh, fc)


@pytest.mark.parametrize("shape, rules", [("one-ip", 600), ("20-cidrs", 61), ("product", 214)])
def test_liqos_agent_fails_a_chain_past_its_limit(fresh: World, shape: str, rules: int) -> None:
    """Control: the agent's limit is real and where docs/semantics.md says ("Liqo's agent"): these chains
    (cost 4,800, 4,026 and about 4,850) fail with ENOBUFS on every node, which reports Applied=False."""
    fc = _longest_chain(_worst_rules(shape)[:rules], 10**6)
    assert len(fc["spec"]["table"]["chains"][0]["rules"]["filterRules"]) == rules
    with pytest.raises(TimeoutError, match="_xabcdef.*missing"):
        fresh.put_firewalls([fc], timeout=10)
    assert _wait_applied(fresh, fc, "False"), _applied(fresh, fc)


def _expressions(fc: dict[str, Any]) -> int:
    return sum(agent.expression_count(r) for c in fc["spec"]["table"]["chains"] for r in _rules(c))


def _rules(chain_: dict[str, Any]) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = (chain_.get("rules") or {}).get("filterRules") or []
    return rules


def _unsplit_cost(fc: dict[str, Any]) -> int:
    rules = [r for c in fc["spec"]["table"]["chains"] for r in _rules(c)]
    return _expressions(fc) + UNSPLIT_RULE_WEIGHT * len(rules)


def _applied(world: World, fc: dict[str, Any]) -> dict[str, str]:
    """Each host's `Applied` status on the live object (Liqo's agent writes it)."""
    meta = fc["metadata"]
    live = world.kube.get(FIREWALL_CONFIGURATIONS, meta["name"], namespace=meta["namespace"])
    return {
        c.get("host"): c.get("status")
        for c in (live.get("status") or {}).get("conditions") or ()
        if c.get("type") == "Applied"
    }


def _wait_applied(world: World, fc: dict[str, Any], status: str, timeout: float = 20.0) -> bool:
    want = {f"worker-{i}": status for i in range(len(world.cluster.nodes))}
    deadline = time.monotonic() + timeout
    while _applied(world, fc) != want:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True
