"""What liqosec reads and reports, read back from a live cluster with kubectl, for the kind suites.

Guarantees: ``cluster_objects`` is every kind `liqosec render`/`matrix -f` reads, as the API server
holds it, so those commands judge the cluster independently of the controller's caches.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from harness.kind import KindCluster, run

FC = "firewallconfigurations.networking.liqo.io"
FC_CRD = "firewallconfigurations.networking.liqo.io"
# Not the short name `pc`: PriorityClass owns it and kubectl resolves built-ins first
# (test/unit/test_manifests.py::test_crd_short_names_do_not_shadow_builtin_resources).
PC = "peeringconnectivities.security.liqo.io"
MANAGED_BY = "app.kubernetes.io/managed-by=liqosec"


def cluster_objects(cluster: KindCluster) -> list[dict[str, Any]]:
    """What the controller reads, read back from the cluster, for an independent `liqosec render`/`matrix`."""
    objects: list[dict[str, Any]] = []
    for args in (
        ("namespaces",),
        ("pods", "-A"),
        ("networks.ipam.liqo.io", "-A"),
        ("configurations.networking.liqo.io", "-A"),
        ("namespaceoffloadings.offloading.liqo.io", "-A"),
        ("endpointslices.discovery.k8s.io", "-A"),
        ("services", "-A"),
        ("nodes",),
        (PC, "-A"),
    ):
        objects += cluster.get_json(*args)["items"]
    objects.append(cluster.get_json("crd", FC_CRD))
    return objects


def dump_objects(cluster: KindCluster, path: Path) -> Path:
    """``cluster_objects`` as one List file, the input of `liqosec ... -f`."""
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": cluster_objects(cluster)}))
    return path


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in obj.get("status", {}).get("conditions", []) if c.get("type") == kind), {})


def matrix(cluster: KindCluster, tmp: Path, *args: str) -> dict[str, Any]:
    """`liqosec matrix -o json` of the live objects."""
    dump = dump_objects(cluster, tmp / "objects.json")
    out = run([sys.executable, "-m", "liqosec", "matrix", "-f", str(dump), "-o", "json", *args]).stdout
    parsed: dict[str, Any] = json.loads(out)
    return parsed


def expected_matrix(cluster: KindCluster, pods: list[str], tmp: Path) -> dict[tuple[str, str], bool]:
    """Whether a TCP connection opens, per ordered pair of pods, by `liqosec matrix` of the live objects."""
    m = matrix(cluster, tmp)
    index = {e["name"]: i for i, e in enumerate(m["endpoints"])}
    grid = m["node"]["connect"]
    return {(a, b): bool(grid[index[a]][index[b]]) for a in pods for b in pods if a != b}
