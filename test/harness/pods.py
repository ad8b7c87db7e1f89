"""Pods that serve TCP in a kind cluster, and real connections between them, for the kind suites.

Guarantees:
- A server pod runs the liqosec image (already loaded on every node, nothing pulled) and answers
  "ok" on PORT: a connection counts as open only when the request and the reply both passed.
- ``connects_from`` tries every address from inside one pod, in parallel, each bounded by a timeout.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from harness.kind import IMAGE, KindCluster

PORT = 8080
# Each test pod serves "ok" on PORT: a TCP connection opens only if the request and the reply pass.
SERVER = f"""
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("", {PORT}))
s.listen(64)
while True:
    c, _ = s.accept()
    try:
        c.sendall(b"ok")
    except OSError:
        pass
    c.close()
"""
# Run in a pod with the addresses to try as arguments; prints one JSON bool per address.
CLIENT = f"""
import concurrent.futures, json, socket, sys
def probe(ip):
    try:
        with socket.create_connection((ip, {PORT}), timeout=3) as s:
            s.settimeout(3)
            return s.recv(2) == b"ok"
    except OSError:
        return False
ips = sys.argv[1:]
with concurrent.futures.ThreadPoolExecutor(len(ips)) as ex:
    print(json.dumps(list(ex.map(probe, ips))))
"""


def namespace(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels or {}}}


def server_pod(
    name: str,
    ns: str,
    labels: dict[str, str],
    node: str | None = None,
    *,
    node_selector: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A pod serving TCP, on a chosen node, or left to the scheduler with a node selector (a virtual node)."""
    spec: dict[str, Any] = {
        "terminationGracePeriodSeconds": 1,
        "containers": [
            {
                "name": "serve",
                "image": IMAGE,
                "imagePullPolicy": "Never",
                "command": ["python", "-c", SERVER],
                "readinessProbe": {"tcpSocket": {"port": PORT}, "periodSeconds": 1},
                "securityContext": {
                    "runAsNonRoot": True,
                    "allowPrivilegeEscalation": False,
                    "capabilities": {"drop": ["ALL"]},
                },
            }
        ],
    }
    if node is not None:
        spec["nodeName"] = node
    if node_selector:
        spec["nodeSelector"] = dict(node_selector)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": spec,
    }


def wait_pods_ready(cluster: KindCluster, ns: str) -> None:
    cluster.kubectl("-n", ns, "wait", "--for=condition=Ready", "pod", "--all", "--timeout=180s", timeout=200)


def pod_ip(cluster: KindCluster, ns: str, name: str) -> str:
    return str(cluster.get_json("pod", "-n", ns, name)["status"]["podIP"])


def connects_from(cluster: KindCluster, pod: str, ips: Sequence[str]) -> list[bool]:
    """Whether a TCP connection to PORT opens from inside ``pod`` ("namespace/name"), per address."""
    if not ips:
        return []
    ns, name = pod.split("/")
    out = cluster.kubectl("exec", "-n", ns, name, "--", "python", "-c", CLIENT, *ips)
    return [bool(ok) for ok in json.loads(out.strip().splitlines()[-1])]


def measured_traffic(cluster: KindCluster, pods: list[str]) -> dict[tuple[str, str], bool]:
    """Real TCP connections between the pods, from inside each pod (all destinations in parallel)."""
    ips = {p: pod_ip(cluster, *p.split("/")) for p in pods}
    result: dict[tuple[str, str], bool] = {}
    for a in pods:
        others = [b for b in pods if b != a]
        for b, ok in zip(others, connects_from(cluster, a, [ips[b] for b in others]), strict=True):
            result[(a, b)] = ok
    return result
