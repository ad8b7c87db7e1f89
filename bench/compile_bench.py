"""Compile cost and output size of one peering's FirewallConfiguration, and cache memory per pod.

Why: docs/semantics.md ("The FirewallConfiguration written") promises an object well under the
API server's 1.5 MiB limit at 10,000 pods per group and a chain kept small without nft sets.
This measures both on the public core API (`liqosec.offline.outcomes`), for three address layouts
that bracket real clusters:

- ``scattered``: every group pod at a random address of the /16 (the worst case for aggregation);
- ``per-node-50``: IPs handed out in order per node /24 (as the host-local IPAM does), half of
  all pods in the group, picked at random (the group interleaves with other pods);
- ``per-node-90``: the same, with 90% of the pods in the group.

The policy is the seed's Example 1 (examples/provider-isolate-offloaded.yaml). Run:
``python bench/compile_bench.py`` (a table) or ``--json``.

``--shapes`` measures instead the policy shapes of issue 17 on pods offloaded by ``rome`` at
scattered addresses (no two adjacent) on 8 nodes: ``protected-borders`` (``securityMode:
ProtectedBorders``), ``default-deny`` (``defaultAction: deny``, allow remote-cluster <-> offloaded),
``deny-offloaded-local`` (deny offloaded -> local-cluster, Example 1's shape) and ``segregation``
(``IntraClusterTrafficSegregation``): objects, rules, the largest object's kernel expressions and
bytes, the most matches in a rule, and how many objects a one-pod change rewrites (the most over
``--changes`` random additions and removals). A policy refused as ``TooLarge`` reports its message.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import platform
import random
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
try:
    import liqosec  # noqa: F401
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "test"))  # harness: the cache's memory measure

import yaml

from harness.cachememory import NODE_NAME_INDEX, index_by_node_name, measure_bytes_per_object
from liqosec.api.liqo import ORIGIN as ORIGIN_LABEL
from liqosec.compiler.firewallconfiguration import MAX_OBJECT_BYTES
from liqosec.kube.store import (
    NAMESPACE_INDEX,
    index_by_label,
    index_by_namespace,
    slim_pod,
)
from liqosec.offline import outcomes

PEER = "rome"
TENANT = f"liqo-tenant-{PEER}"
LOCAL_POD_CIDR = "10.1.0.0/16"
REMOTE_POD_CIDR = "10.71.0.0/16"
BASE = (10 << 24) | (1 << 16)  # 10.1.0.0
# The kubelet's default max-pods: how many addresses of its /24 a node hands out.
PODS_PER_NODE = 110
LAYOUTS = ("scattered", "per-node-50", "per-node-90")
DEFAULT_SIZES = (100, 1_000, 10_000)
EXAMPLE = ROOT / "examples" / "provider-isolate-offloaded.yaml"
SEED = 7


def ip(n: int) -> str:
    return f"{n >> 24 & 255}.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"


def scattered(n: int, rng: random.Random) -> tuple[list[str], list[str]]:
    """(group IPs, other IPs): n addresses drawn uniformly from the /16, no other pods."""
    return [ip(BASE + x) for x in rng.sample(range(1, 65_535), n)], []


def per_node(fraction: float) -> Callable[[int, random.Random], tuple[list[str], list[str]]]:
    def layout(n: int, rng: random.Random) -> tuple[list[str], list[str]]:
        total = math.ceil(n / fraction)
        # Node k owns 10.1.k.0/24 and hands out .2, .3, ... in order (.1 is its gateway).
        addresses = [ip(BASE + (i // PODS_PER_NODE) * 256 + 2 + i % PODS_PER_NODE) for i in range(total)]
        chosen = set(rng.sample(range(total), n))
        return [a for i, a in enumerate(addresses) if i in chosen], [
            a for i, a in enumerate(addresses) if i not in chosen
        ]

    return layout


LAYOUT_FUNCS: Mapping[str, Callable[[int, random.Random], tuple[list[str], list[str]]]] = {
    "scattered": scattered,
    "per-node-50": per_node(0.5),
    "per-node-90": per_node(0.9),
}


def example_peering() -> dict[str, Any]:
    [pc] = [d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d and d.get("kind") == "PeeringConnectivity"]
    return dict(pc)


def pod(name: str, namespace: str, address: str, *, offloaded: bool) -> dict[str, Any]:
    labels = {ORIGIN_LABEL: PEER, "liqo.io/managed-by": "shadowpod"} if offloaded else {"app": "local"}
    node = f"node-{(int(address.split('.')[2]))}"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"nodeName": node},
        "status": {"phase": "Running", "podIP": address, "podIPs": [{"ip": address}]},
    }


def cluster_objects(layout: str, n: int) -> tuple[list[dict[str, Any]], int]:
    """The objects a provider cluster holds for one peering, and how many pods they include."""
    group, others = LAYOUT_FUNCS[layout](n, random.Random(SEED))
    objects: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": TENANT,
                "labels": {"liqo.io/remote-cluster-id": PEER, "liqo.io/tenant-namespace": "true"},
            },
        },
        {
            "apiVersion": "ipam.liqo.io/v1alpha1",
            "kind": "Network",
            "metadata": {"name": "pod-cidr", "namespace": "liqo", "labels": {"ipam.liqo.io/network-type": "pod-cidr"}},
            "spec": {"cidr": LOCAL_POD_CIDR},
        },
        {
            "apiVersion": "networking.liqo.io/v1beta1",
            "kind": "Configuration",
            "metadata": {"name": PEER, "namespace": TENANT},
            "status": {"remote": {"cidr": {"pod": [REMOTE_POD_CIDR]}}},
        },
        example_peering(),
    ]
    objects += [pod(f"off-{i}", f"shop-{PEER}", a, offloaded=True) for i, a in enumerate(group)]
    objects += [pod(f"local-{i}", "default", a, offloaded=False) for i, a in enumerate(others)]
    return objects, len(group) + len(others)


def chain_stats(firewalls: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rules and matches per chain over every shard (a chain's rules are cut across them), read from
    the objects as the API server would store them."""
    found: dict[str, dict[str, Any]] = {}
    for firewall in firewalls:
        for chain in firewall["spec"]["table"]["chains"]:
            rules = (chain.get("rules") or {}).get("filterRules") or []
            matches = [len(r.get("match") or []) for r in rules]
            stats = found.setdefault(
                chain["name"],
                {
                    "name": chain["name"],
                    "policy": chain.get("policy"),
                    "rules": 0,
                    "matches": 0,
                    "max_matches_per_rule": 0,
                },
            )
            stats["rules"] += len(rules)
            stats["matches"] += sum(matches)
            stats["max_matches_per_rule"] = max(stats["max_matches_per_rule"], max(matches, default=0))
    return list(found.values())


def measure_compile(layout: str, n: int, repeat: int) -> dict[str, Any]:
    objects, total = cluster_objects(layout, n)
    runs = []
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        [outcome] = outcomes(objects)
        runs.append(time.perf_counter() - start)
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        outcomes(objects)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    return {
        "layout": layout,
        "pods_in_group": n,
        "pods_total": total,
        "seconds_min": min(runs),
        "seconds_median": statistics.median(runs),
        "peak_alloc_bytes": peak,
        "firewall_bytes": outcome.size_bytes,
        "firewall_bytes_limit": MAX_OBJECT_BYTES,
        "objects": len(outcome.firewalls),
        "chains": chain_stats(outcome.firewalls),
    }


def api_pod(i: int) -> dict[str, Any]:
    """A pod as the API server returns it (managedFields, conditions, container status): what a naive cache holds."""
    app = f"app-{i % 20}"
    name = f"{app}-7d9c8b6f5-{i:05d}"
    address = ip(BASE + (i // PODS_PER_NODE) * 256 + 2 + i % PODS_PER_NODE)
    node = f"node-{i // PODS_PER_NODE}"
    stamp = "2026-11-23T09:00:00Z"
    cond = [
        {"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": stamp}
        for t in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")
    ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": f"shop-{PEER}",
            "uid": f"5f0c1d2e-0000-4000-8000-{i:012d}",
            "resourceVersion": str(100_000 + i),
            "creationTimestamp": stamp,
            "generateName": f"{app}-7d9c8b6f5-",
            "labels": {
                "app": app,
                "pod-template-hash": "7d9c8b6f5",
                ORIGIN_LABEL: PEER,
                "liqo.io/managed-by": "shadowpod",
            },
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": f"{app}-7d9c8b6f5",
                    "uid": f"aa00-{i % 20}",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
            "managedFields": [
                {
                    "manager": "kube-controller-manager",
                    "operation": "Update",
                    "apiVersion": "v1",
                    "time": stamp,
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:metadata": {"f:generateName": {}, "f:labels": {".": {}, "f:app": {}}}},
                },
                {
                    "manager": "kubelet",
                    "operation": "Update",
                    "apiVersion": "v1",
                    "time": stamp,
                    "subresource": "status",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:status": {"f:conditions": {}, "f:podIP": {}, "f:podIPs": {}}},
                },
            ],
        },
        "spec": {
            "nodeName": node,
            "serviceAccountName": "default",
            "restartPolicy": "Always",
            "dnsPolicy": "ClusterFirst",
            "containers": [
                {
                    "name": "main",
                    "image": f"registry.example/{app}:1.2.3",
                    "imagePullPolicy": "IfNotPresent",
                    "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                    "volumeMounts": [
                        {
                            "name": "kube-api-access",
                            "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                            "readOnly": True,
                        }
                    ],
                }
            ],
            "tolerations": [
                {
                    "key": "node.kubernetes.io/not-ready",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 300,
                }
            ],
        },
        "status": {
            "phase": "Running",
            "hostIP": f"172.18.0.{i // PODS_PER_NODE % 250 + 2}",
            "podIP": address,
            "podIPs": [{"ip": address}],
            "startTime": stamp,
            "qosClass": "Burstable",
            "conditions": cond,
            "containerStatuses": [
                {
                    "name": "main",
                    "ready": True,
                    "restartCount": 0,
                    "started": True,
                    "image": f"registry.example/{app}:1.2.3",
                    "imageID": f"registry.example/{app}@sha256:{i:064x}",
                    "containerID": f"containerd://{i:064x}",
                    "state": {"running": {"startedAt": stamp}},
                }
            ],
        },
    }


def measure_store(pods: int) -> dict[str, Any]:
    """Bytes held per cached pod: as returned by the API server, and slimmed (`slim_pod`) as the controller keeps it."""
    indexers = {
        NAMESPACE_INDEX: index_by_namespace,
        NODE_NAME_INDEX: index_by_node_name,
        ORIGIN_LABEL: index_by_label(ORIGIN_LABEL),
    }

    def stream() -> Iterator[dict[str, Any]]:
        return (api_pod(i) for i in range(pods))

    gc.collect()
    raw = measure_bytes_per_object(stream(), indexers=indexers)
    gc.collect()
    slim = measure_bytes_per_object(stream(), transform=slim_pod, indexers=indexers)
    return {
        "pods": pods,
        "indexes": sorted(indexers),
        "bytes_per_pod_full": round(raw),
        "bytes_per_pod_slim": round(slim),
    }


SHAPE_NODES = 8
SHAPES: Mapping[str, dict[str, Any]] = {
    "protected-borders": {"securityMode": "ProtectedBorders"},
    "default-deny": {
        "defaultAction": "deny",
        "rules": [
            {"source": {"group": "remote-cluster"}, "destination": {"group": "offloaded"}, "action": "allow"},
            {"source": {"group": "offloaded"}, "destination": {"group": "remote-cluster"}, "action": "allow"},
        ],
    },
    "deny-offloaded-local": {
        "rules": [{"source": {"group": "offloaded"}, "destination": {"group": "local-cluster"}, "action": "deny"}]
    },
    "segregation": {"securityMode": "IntraClusterTrafficSegregation"},
}
DEFAULT_SHAPE_SIZES = (25, 50, 75, 100, 150, 200, 1_000, 10_000)
# Free even addresses of the /16: pods never adjacent, so no two merge into one interval.
_SLOTS = 32_767


def shape_objects(shape: str, addresses: Sequence[int]) -> list[dict[str, Any]]:
    """A provider cluster: pods offloaded by rome at `addresses` (offsets in 10.1.0.0/16) on 8 nodes, one policy."""
    objects, _ = cluster_objects("scattered", 0)
    pc = {**objects[-1], "spec": SHAPES[shape]}
    pods = []
    for i, offset in enumerate(addresses):
        p = pod(f"off-{offset}", f"shop-{PEER}", ip(BASE + offset), offloaded=True)
        p["spec"]["nodeName"] = f"node-{i % SHAPE_NODES}"
        pods.append(p)
    return [*objects[:-1], pc, *pods]


def _expressions(rule: Mapping[str, Any]) -> int:
    """Kernel expressions Liqo's agent forges for a rule (docs/semantics.md, "Liqo's agent")."""
    total = 2
    for m in rule.get("match") or ():
        value = str((m.get("ip") or m.get("port") or {}).get("value", ""))
        total += 3 if ("/" in value or "ctstate" in m or ("port" in m and "-" in value)) else 2
    return total


def _written(objects: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    return {o["metadata"]["name"]: json.dumps(o["spec"], sort_keys=True) for o in objects}


def measure_shape(shape: str, n: int, changes: int) -> dict[str, Any]:
    from liqosec.inputs import RenderError

    rng = random.Random(SEED)
    slots = rng.sample(range(1, _SLOTS), min(n + changes, _SLOTS - 1))
    offsets = [2 * x for x in slots[:n]]
    spare = [2 * x for x in slots[n:]]
    out: dict[str, Any] = {"shape": shape, "pods": n}
    try:
        start = time.perf_counter()
        [outcome] = outcomes(shape_objects(shape, offsets))
        out["seconds"] = time.perf_counter() - start
    except RenderError as err:
        out["refused"] = str(err)
        return out
    fcs = outcome.firewalls
    rules = [r for fc in fcs for c in fc["spec"]["table"]["chains"] for r in c["rules"].get("filterRules", [])]
    per_object = [
        sum(_expressions(r) for c in fc["spec"]["table"]["chains"] for r in c["rules"].get("filterRules", []))
        for fc in fcs
    ]
    before = _written(fcs)
    rewritten = []
    for k in range(changes):
        changed = [*offsets, spare[k]] if k % 2 == 0 else [o for o in offsets if o != offsets[rng.randrange(n)]]
        try:
            after = _written(outcomes(shape_objects(shape, changed))[0].firewalls)
        except RenderError:
            continue
        rewritten.append(sum(1 for name in before.keys() | after.keys() if before.get(name) != after.get(name)))
    out.update(
        objects=len(fcs),
        rules=len(rules),
        rule_bound=3 * (n / 20 + 1),
        max_object_expressions=max(per_object),
        max_object_bytes=outcome.size_bytes,
        max_matches_per_rule=max((len(r.get("match") or ()) for r in rules), default=0),
        bytes_total=sum(len(json.dumps(fc, separators=(",", ":"))) for fc in fcs),
        rewritten_per_change_max=max(rewritten, default=0),
        rewritten_per_change_mean=statistics.mean(rewritten) if rewritten else 0.0,
    )
    return out


def shape_table(results: Sequence[Mapping[str, Any]]) -> str:
    head = (
        f"{'shape':<21} {'pods':>6} {'objects':>7} {'rules':>7} {'3(n/20+1)':>9} {'max expr':>8} {'max KB':>7} "
        f"{'m/rule':>6} {'rewrites':>9} {'compile s':>9}"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        if "refused" in r:
            lines.append(f"{r['shape']:<21} {r['pods']:>6}  refused: {r['refused'][:160]}")
            continue
        lines.append(
            f"{r['shape']:<21} {r['pods']:>6} {r['objects']:>7} {r['rules']:>7} {r['rule_bound']:>9.0f} "
            f"{r['max_object_expressions']:>8} {r['max_object_bytes'] / 1000:>7.1f} {r['max_matches_per_rule']:>6} "
            f"{r['rewritten_per_change_max']:>4} ({r['rewritten_per_change_mean']:.1f}) {r['seconds']:>9.2f}"
        )
    return "\n".join(lines)


def run(sizes: Sequence[int], layouts: Sequence[str], repeat: int, store_pods: int) -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "machine": f"{platform.machine()} {platform.system()}",
        "repeat": repeat,
        "compile": [measure_compile(layout, n, repeat) for n in sizes for layout in layouts],
        "store": measure_store(store_pods),
    }


def table(result: Mapping[str, Any]) -> str:
    head = (
        f"{'layout':<12} {'group':>6} {'pods':>6} {'compile s':>10} {'peak MiB':>9} {'objects':>7} {'max bytes':>10} "
        f"{'rules':>6} {'matches':>8} {'max/rule':>8}"
    )
    lines = [f"python {result['python']} on {result['machine']}, best of {result['repeat']}", head, "-" * len(head)]
    for r in result["compile"]:
        for c in r["chains"]:
            lines.append(
                f"{r['layout']:<12} {r['pods_in_group']:>6} {r['pods_total']:>6} {r['seconds_min']:>10.3f} "
                f"{r['peak_alloc_bytes'] / 2**20:>9.1f} {r['objects']:>7} {r['firewall_bytes']:>10,} {c['rules']:>6} "
                f"{c['matches']:>8} "
                f"{c['max_matches_per_rule']:>8}"
            )
    s = result["store"]
    lines.append("")
    lines.append(
        f"cache: {s['bytes_per_pod_full']:,} bytes per pod as listed, {s['bytes_per_pod_slim']:,} bytes per slim pod "
        f"({s['pods']:,} pods; indexes {', '.join(s['indexes'])})"
    )
    return "\n".join(lines)


def positive_ints(text: str) -> list[int]:
    values = [int(v) for v in text.split(",") if v.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas, got {text!r}")
    return values


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--sizes", type=positive_ints, default=list(DEFAULT_SIZES), help="pods in the group, e.g. 100,1000")
    p.add_argument(
        "--layouts", type=lambda s: s.split(","), default=list(LAYOUTS), help=f"subset of {','.join(LAYOUTS)}"
    )
    p.add_argument("--repeat", type=int, default=3, help="timed runs per case; the best is reported")
    p.add_argument("--store-pods", type=int, default=10_000, help="pods cached for the memory measurement")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument(
        "--shapes",
        type=lambda s: s.split(","),
        nargs="?",
        const=list(SHAPES),
        default=None,
        help=f"measure these policy shapes instead ({','.join(SHAPES)}; all when bare), at --sizes "
        f"(default {','.join(map(str, DEFAULT_SHAPE_SIZES))})",
    )
    p.add_argument("--changes", type=int, default=6, help="one-pod changes per shape and size (with --shapes)")
    args = p.parse_args(argv)
    if args.shapes is not None:
        unknown_shapes = set(args.shapes) - set(SHAPES)
        if unknown_shapes:
            p.error(f"unknown shapes {sorted(unknown_shapes)}; choose from {', '.join(SHAPES)}")
        sizes = args.sizes if "--sizes" in (argv if argv is not None else sys.argv) else list(DEFAULT_SHAPE_SIZES)
        shaped = [measure_shape(shape, n, args.changes) for shape in args.shapes for n in sizes]
        print(json.dumps({"shapes": shaped}, indent=2) if args.json else shape_table(shaped))
        return 0
    unknown = set(args.layouts) - set(LAYOUTS)
    if unknown:
        p.error(f"unknown layouts {sorted(unknown)}; choose from {', '.join(LAYOUTS)}")
    if args.repeat < 1 or args.store_pods < 1:
        p.error("--repeat and --store-pods must be at least 1")
    result = run(args.sizes, args.layouts, args.repeat, args.store_pods)
    print(json.dumps(result, indent=2) if args.json else table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
