"""bench/run.py's parts that need no cluster: statistics, the table, coverage predicates, the address plan, plots."""

from __future__ import annotations

import importlib.util
import ipaddress
import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import bench_report
from bench_observe import EvaluateCoverage, MentionsCoverage, applies_to_node
from bench_world import (
    ADDRESSINGS,
    OTHER_IP,
    SCALES,
    AddressPlan,
    addressing_of,
    capacity_of,
    node_names,
    peer_names,
    peering_objects,
)


def _load_run_module() -> Any:
    spec = importlib.util.spec_from_file_location("bench_run_cli", BENCH / "run.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fc(rules: list[dict[str, Any]], *, node: str | None = None) -> dict[str, Any]:
    labels = {"security.liqo.io/peering-connectivity": "rome"}
    if node:
        labels |= {"networking.liqo.io/firewall-subcategory": "single-node", "networking.liqo.io/firewall-unique": node}
    return {
        "metadata": {"name": f"liqosec-rome-{node or 'all'}", "namespace": "liqo-tenant-rome", "labels": labels},
        "spec": {
            "table": {
                "name": "t",
                "chains": [{"name": "c", "hook": "forward", "policy": "accept", "rules": {"filterRules": rules}}],
            }
        },
    }


def _drop_src(value: str) -> dict[str, Any]:
    return {"name": "r", "action": "drop", "match": [{"op": "eq", "ip": {"position": "src", "value": value}}]}


def test_latency_stats_count_timeouts_and_give_ratios_to_the_api_write() -> None:
    stats = bench_report.latency_stats([0.01, 0.02, None, 0.04], 0.01)
    assert stats["n"] == 4 and stats["timeouts"] == 1
    assert stats["p50_s"] == 0.02 and stats["max_s"] == 0.04
    assert stats["p50_ratio"] == 2.0 and stats["max_ratio"] == 4.0
    empty = bench_report.latency_stats([None], 0.01)
    assert empty["p50_s"] is None and empty["p50_ratio"] is None


def test_percentile_is_nearest_rank() -> None:
    values = [float(i) for i in range(1, 101)]
    assert bench_report.percentile(values, 0.5) == 50.0
    assert bench_report.percentile(values, 0.99) == 99.0
    assert bench_report.percentile([3.0], 0.99) == 3.0


def test_table_renders_a_failed_partial_run() -> None:
    run = {
        "scale": "smoke",
        "controller": {"name": "command", "batch_window": None, "firewall_scope": None},
        "world": {"pods": 50, "peerings": 1, "nodes": 2, "layout": "scattered"},
        "error": "the firewalls did not cover every pod within 5.0 s\nmore",
    }
    text = bench_report.table([run])
    assert "| pods / peerings / nodes (layout) | 50 / 1 / 2 (scattered) |" in text
    assert "**failed** smoke command: the firewalls did not cover every pod within 5.0 s" in text


def test_marginal_memory_is_the_slope_between_sizes() -> None:
    def run(scale: str, pods: int, rss: int) -> dict[str, Any]:
        return {
            "scale": scale,
            "controller": {"name": "liqosec", "batch_window": "auto"},
            "memory": {"pods_cached": pods, "converged_rss_bytes": rss},
        }

    [(name, lo, hi, value)] = bench_report.marginal_memory(
        [run("1k", 1000, 80_000_000), run("10k", 11000, 120_000_000)]
    )
    assert (name, lo, hi, value) == ("liqosec (window auto)", 1000, 11000, 4000.0)


def test_evaluate_coverage_reads_only_the_firewalls_of_the_pods_node() -> None:
    cov = EvaluateCoverage()
    assert cov.covered([_fc([_drop_src("10.1.5.10")])], "10.1.5.10", "worker-1")
    assert not cov.covered([_fc([_drop_src("10.1.5.10")])], "10.1.5.11", "worker-1")
    per_node = [_fc([_drop_src("10.1.5.10")], node="worker-2")]
    assert cov.covered(per_node, "10.1.5.10", "worker-2")
    assert not cov.covered(per_node, "10.1.5.10", "worker-1")  # another node's firewall does not count
    assert not cov.covered([], "10.1.5.10", "worker-1")
    assert not cov.covered([{"metadata": {}, "spec": {"something": "else"}}], "10.1.5.10", "worker-1")
    assert applies_to_node(_fc([]), "anything")


def test_mentions_coverage_matches_addresses_and_small_spans_only() -> None:
    cov = MentionsCoverage()
    fcs = [_fc([_drop_src("10.1.5.10/32"), _drop_src("10.1.6.10-10.1.6.20"), _drop_src("10.1.0.0/16")])]
    assert cov.covered(fcs, "10.1.5.10", "worker-1")
    assert not cov.covered(fcs, "10.1.5.1", "worker-1")
    assert not cov.covered(fcs, "0.1.5.10", "worker-1")
    assert cov.covered(fcs, "10.1.6.15", "worker-1")
    assert not cov.covered(fcs, "10.1.6.21", "worker-1")
    assert not cov.covered(fcs, "10.1.200.1", "worker-1")  # only in the /16: a cluster CIDR, not a pod


@pytest.mark.parametrize("layout", ["scattered", "per-node"])
def test_address_plan_never_repeats_and_keeps_per_node_addresses_in_the_nodes_cidr(layout: str) -> None:
    nodes = ["worker-1", "worker-2", "worker-3"]
    plan = AddressPlan(layout, nodes, seed=1)
    taken = []
    for _ in range(600):
        node = plan.next_node()
        ip = plan.take(node)
        taken.append(ip)
        cidr = plan.pod_cidr(node) or "10.1.0.0/16"
        assert ipaddress.ip_address(ip) in ipaddress.ip_network(cidr)
    assert len(set(taken)) == len(taken)
    assert OTHER_IP not in taken


def test_per_node_plan_runs_out_with_a_clear_error() -> None:
    plan = AddressPlan("per-node", ["worker-1"])
    for _ in range(253):
        plan.take("worker-1")
    with pytest.raises(RuntimeError, match="exhausted"):
        plan.take("worker-1")


def test_per_node_blocks_grow_with_the_addresses_needed() -> None:
    nodes = [f"worker-{i + 1}" for i in range(10)]
    assert AddressPlan("per-node", nodes, capacity=1_000).pod_cidr("worker-2") == "10.1.1.0/24"
    plan = AddressPlan("per-node", nodes, capacity=3_120)  # the 1k scale: 1,000 + 20 + 300 + 2,000
    assert (plan.pod_cidr("worker-1"), plan.pod_cidr("worker-2")) == ("10.1.0.0/23", "10.1.2.0/23")
    taken = [plan.take(plan.next_node()) for _ in range(3_120)]
    assert len(set(taken)) == 3_120
    with pytest.raises(ValueError, match="do not fit"):
        AddressPlan("per-node", [f"n{i}" for i in range(100)], capacity=100_000)


def test_peerings_are_example_1_with_distinct_remote_cidrs() -> None:
    objs = peering_objects(peer_names(3))
    pcs = [o for o in objs if o["kind"] == "PeeringConnectivity"]
    assert [(o["metadata"]["namespace"], o["metadata"]["name"]) for o in pcs] == [
        ("liqo-tenant-rome", "rome"),
        ("liqo-tenant-peer001", "peer001"),
        ("liqo-tenant-peer002", "peer002"),
    ]
    assert all(len(o["spec"]["rules"]) == 4 for o in pcs)
    remote = [o["status"]["remote"]["cidr"]["pod"][0] for o in objs if o["kind"] == "Configuration"]
    assert remote == ["10.71.0.0/16", "10.72.0.0/16", "10.73.0.0/16"]


@pytest.mark.parametrize("name", sorted(SCALES))
def test_every_scale_has_room_for_its_pods_and_peerings(name: str) -> None:
    scale = SCALES[name]
    addressing = addressing_of(scale)
    local = ipaddress.ip_network(addressing.local_pod_cidr)
    assert ipaddress.ip_address(OTHER_IP) in local  # `web` stays a local pod, in no group
    assert capacity_of(scale) <= addressing.pod_addresses()
    assert scale.peerings <= addressing.max_peerings
    peers = peer_names(scale.peerings, addressing.max_peerings)
    assert len(set(peers)) == scale.peerings
    for layout in ("scattered", "per-node"):  # raises when the addresses do not fit
        plan = AddressPlan(layout, node_names(scale.nodes), capacity=capacity_of(scale), cidr=str(local))
        assert plan.cidr == str(local)


@pytest.mark.parametrize("addressing", sorted(ADDRESSINGS))
def test_no_remote_cidr_overlaps_the_local_one_or_another(addressing: str) -> None:
    a = ADDRESSINGS[addressing]
    local = ipaddress.ip_network(a.local_pod_cidr)
    private = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")]
    pods = [ipaddress.ip_network(a.remote_pod_cidr(k)) for k in range(a.max_peerings)]
    external = [ipaddress.ip_network(a.external_cidr(k)) for k in range(a.max_peerings)]
    nets = [local, *pods, *external]
    assert all(any(n.subnet_of(p) for p in private) for n in nets)
    ordered = sorted(nets, key=lambda n: int(n.network_address))
    for lo, hi in zip(ordered, ordered[1:]):
        assert not lo.overlaps(hi), (lo, hi)


def test_classic_addressing_is_unchanged_and_100k_is_wide() -> None:
    objs = peering_objects(peer_names(150))
    confs = [o["status"]["remote"]["cidr"] for o in objs if o["kind"] == "Configuration"]
    assert [c["pod"] for c in confs] == [[f"10.{71 + k}.0.0/16"] for k in range(150)]
    assert [c["external"] for c in confs] == [[f"172.16.{k}.0/24"] for k in range(150)]
    assert {addressing_of(SCALES[n]).name for n in ("smoke", "1k", "10k")} == {"classic"}
    assert AddressPlan("scattered", ["w"]).cidr == "10.1.0.0/16"
    with pytest.raises(ValueError, match="1..150"):
        peer_names(151)
    big = SCALES["100k"]
    assert (big.pods, big.peerings, big.nodes) == (100_000, 1_000, 1_000)
    wide = addressing_of(big)
    objs = peering_objects(peer_names(1_000, wide.max_peerings), addressing=wide)
    confs = [o for o in objs if o["kind"] == "Configuration"]
    nets = [o for o in objs if o["kind"] == "Network"]
    assert confs[-1]["metadata"]["name"] == "peer999"
    assert confs[-1]["status"]["remote"]["cidr"] == {"pod": ["10.252.224.0/19"], "external": ["172.19.231.0/24"]}
    assert nets[-1]["spec"]["cidr"] == nets[-1]["status"]["cidr"] == "10.252.224.0/19"
    with pytest.raises(ValueError, match="holds 150"):
        peering_objects(peer_names(151, 1_024))


def test_wide_plan_scatters_over_the_whole_local_cidr() -> None:
    wide = ADDRESSINGS["wide"]
    plan = AddressPlan("scattered", ["w"], capacity=103_230, cidr=wide.local_pod_cidr)
    taken = [plan.take("w") for _ in range(20_000)]
    assert len(set(taken)) == len(taken) and OTHER_IP not in taken
    addrs = [ipaddress.ip_address(ip) for ip in taken]
    assert all(a in ipaddress.ip_network("10.0.0.0/14") for a in addrs)
    assert {str(a).split(".")[1] for a in addrs} == {"0", "1", "2", "3"}  # not just the old /16
    assert all(not str(a).endswith((".0", ".255")) for a in addrs)
    with pytest.raises(ValueError, match="do not fit"):
        AddressPlan("scattered", ["w"], capacity=70_000)  # the classic /16 holds 65,023
    with pytest.raises(ValueError, match="hold 10.1.1.10"):
        AddressPlan("scattered", ["w"], cidr="10.4.0.0/14")
    per_node = AddressPlan("per-node", node_names(1_000), capacity=103_230, cidr=wide.local_pod_cidr)
    assert (per_node.pod_cidr("worker-1"), per_node.pod_cidr("worker-1000")) == ("10.0.0.0/24", "10.3.231.0/24")


def test_scales_and_overrides() -> None:
    run = _load_run_module()
    assert {"smoke", "1k", "10k", "100k"} <= set(SCALES)
    assert (SCALES["10k"].pods, SCALES["10k"].peerings, SCALES["10k"].nodes) == (10_000, 100, 100)
    args = run.parse_args(["--scale", "smoke,1k", "--pods", "80", "--burst", "0"])
    smoke, onek = run.resolve_scales(args)
    assert (smoke.pods, smoke.burst, onek.pods, onek.peerings) == (80, 0, 80, 10)
    [big] = run.resolve_scales(run.parse_args(["--scale", "100k", "--pods", "3000", "--create-threads", "4"]))
    assert (big.pods, big.peerings, big.create_threads, big.addressing) == (3_000, 1_000, 4, "wide")
    with pytest.raises(SystemExit):
        run.resolve_scales(run.parse_args(["--scale", "huge"]))
    with pytest.raises(SystemExit):
        run.parse_args(["--batch-window", "soon"])


def test_plots_are_written_for_a_run(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    import plot

    phases = [{"name": "start-up", "start": 1.0, "end": 3.0, "cpu_s": 0.5}, {"name": "churn", "start": 3.0, "end": 6.0}]
    run = {
        "scale": "smoke",
        "controller": {"name": "liqosec", "batch_window": "auto", "firewall_scope": None},
        "world": {"pods": 50, "peerings": 1, "nodes": 2, "layout": "scattered"},
        "params": {"sample_interval": 0.5},
        "apiserver": {"p50_s": 0.005},
        "memory": {
            "pods_cached": 51,
            "converged_rss_bytes": 60 * 2**20,
            "baseline_rss_bytes": 58 * 2**20,
            "bytes_per_pod": 40_000,
        },
        "cpu": {"total_s": 2.0},
        "startup": {"cpu_s": 0.7},
        "churn": {
            "rate_per_s": 5,
            "latency": {"p50_s": 0.2, "p99_s": 0.5, "p50_ratio": 40.0, "p99_ratio": 100.0},
            "samples": [
                {"t": 0.1, "op": "create", "peer": "rome", "latency_s": 0.2},
                {"t": 0.3, "op": "delete", "peer": "rome", "latency_s": None},
            ],
        },
        "timeline": {
            "phases": phases,
            "process": [[1.0 + i / 2, 0.1 * i, 50 * 2**20 + i, "main"] for i in range(10)],
            "apiserver_writes": [[3.5, 0.005], [4.5, 0.006]],
        },
    }
    bigger = {**run, "scale": "1k", "world": {**run["world"], "pods": 1000}}
    bigger["memory"] = {**run["memory"], "pods_cached": 1001, "converged_rss_bytes": 70 * 2**20}
    written = plot.write_all([run, bigger], tmp_path)
    names = sorted(p.name for p in written)
    assert "scaling.png" in names and "smoke-liqosec-window-auto-process.png" in names
    assert all(p.stat().st_size > 1000 for p in written)


def test_policy_sets_every_peerings_policy_to_a_shape_compile_bench_measures() -> None:
    objects = peering_objects(["a", "b"], "protected-borders")
    specs = [o["spec"] for o in objects if o["kind"] == "PeeringConnectivity"]
    assert specs == [{"securityMode": "ProtectedBorders"}] * 2
    example = [o["spec"] for o in peering_objects(["a"]) if o["kind"] == "PeeringConnectivity"]
    assert example[0] != specs[0] and example[0]["rules"]  # Example 1 by default
    with pytest.raises(ValueError, match="unknown policy 'open'"):
        peering_objects(["a"], "open")
