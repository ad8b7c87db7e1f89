"""The bench's cluster: scales, the address plan, and Example 1 objects for P peerings.

Used by bench/run.py. Every peering k is Example 1 (examples/provider-isolate-offloaded.yaml)
with its peer renamed: tenant namespace `liqo-tenant-<peer>` with a Configuration (remote pod
CIDR 10.<71+k>.0.0/16 as remapped here) and the seed's PeeringConnectivity, and its offloaded
pods in `shop-<peer>`, labelled `offloading.liqo.io/origin=<peer>`. Peer 0 is `rome`, as in
the example; the others are `peer001`, `peer002`, ... Local pod CIDR 10.1.0.0/16; one pod
outside every group, `web` at 10.1.1.10 (bench/reconcile_latency.py's LOCAL_POD), is the
address a group pod must not reach.

Addresses (`AddressPlan`): every pod IP the run hands out is drawn once and never reused, so a
deleted pod's address cannot be confused with a new pod's:
- `scattered` (default): uniformly at random over the /16, the worst case for aggregation;
  Node objects carry no podCIDR.
- `per-node`: node i owns the i-th /24 of the /16 (10.1.i.0/24; bigger blocks when the run needs
  more addresses than /24s hold), its spec.podCIDR, and its pods' IPs come from it, at random.
Bulk pods go to the Node objects round-robin, churn pods to a random node.
"""

from __future__ import annotations

import copy
import ipaddress
import math
import random
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from harness.objects import apply, ensure_namespace, set_status
from liqosec.api.liqo import ORIGIN, REMOTE_CLUSTER_ID, TENANT_PREFIX
from liqosec.kube import errors
from liqosec.kube.client import NODES, PODS, KubeClient, ResourceRef

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "provider-isolate-offloaded.yaml"
LOCAL_POD_CIDR = "10.1.0.0/16"
OTHER_IP = "10.1.1.10"  # `web`, in no group: a group pod's traffic to it must be dropped
SERVICE_ACCOUNTS = ResourceRef("", "v1", "serviceaccounts", True, "ServiceAccount")
CREATE_THREADS = 8
SERVICE_ACCOUNT_WAIT_S = 60.0
MAX_PEERINGS = 150  # remote pod CIDRs 10.71.0.0/16 .. 10.220.0.0/16


@dataclass(frozen=True)
class Scale:
    """One size of the bench: the world and each workload's knobs."""

    name: str
    pods: int  # offloaded pods with an IP at start, over all peerings
    peerings: int
    nodes: int
    rounds: int  # latency rounds, one isolated change each
    churn_rate: float  # changes per second
    churn_seconds: float
    burst: int  # changes in the burst
    idle_seconds: float
    restart_observe_seconds: float  # after the restarted controller is ready
    converge_timeout: float  # start-up must converge within this, or the run fails
    change_timeout: float  # one change not reflected within this counts as a timeout
    sample_interval: float  # CPU/RSS sampling period
    api_writes: int  # API server write-latency samples (ConfigMap patches)


SCALES: dict[str, Scale] = {
    s.name: s
    for s in (
        Scale("smoke", 50, 1, 2, 10, 5.0, 10.0, 200, 5.0, 5.0, 60.0, 30.0, 0.25, 40),
        Scale("1k", 1_000, 10, 10, 20, 10.0, 30.0, 2_000, 10.0, 10.0, 180.0, 60.0, 0.5, 100),
        Scale("10k", 10_000, 100, 100, 30, 20.0, 60.0, 2_000, 15.0, 15.0, 600.0, 120.0, 0.5, 100),
    )
}
SCALE_FIELDS = tuple(f.name for f in fields(Scale))


def peer_names(n: int) -> list[str]:
    if not 1 <= n <= MAX_PEERINGS:
        raise ValueError(f"peerings must be 1..{MAX_PEERINGS}, got {n}")
    return ["rome", *(f"peer{k:03d}" for k in range(1, n))]


def node_names(n: int) -> list[str]:
    if n < 1:
        raise ValueError(f"nodes must be >= 1, got {n}")
    return [f"worker-{i + 1}" for i in range(n)]


def tenant_namespace(peer: str) -> str:
    return f"{TENANT_PREFIX}{peer}"


def pod_namespace(peer: str) -> str:
    return f"shop-{peer}"


class AddressPlan:
    """Hands out pod IPs of 10.1.0.0/16, each once; thread-safe.

    `per-node`: node i owns the i-th block of the /16, a /24 unless `capacity` (addresses the run
    will hand out in all) needs bigger blocks, with 30% to spare for churn's random node choice.
    """

    def __init__(self, layout: str, nodes: list[str], seed: int = 7, capacity: int = 0) -> None:
        if layout not in ("scattered", "per-node"):
            raise ValueError(f"layout must be scattered or per-node, got {layout!r}")
        self.layout = layout
        self.nodes = nodes
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._next_node = 0
        self.prefix = 24
        if layout == "scattered":
            pool = [f"10.1.{a}.{b}" for a in range(256) for b in range(1, 255)]
            pool.remove(OTHER_IP)
            self._rng.shuffle(pool)
            self._pools = {"*": pool}
            return
        per_node = math.ceil(1.3 * capacity / len(nodes))
        while per_node > 2 ** (32 - self.prefix) - 3 and self.prefix > 16:
            self.prefix -= 1
        size = 2 ** (32 - self.prefix)
        if len(nodes) * size > 2**16:
            raise ValueError(
                f"per-node layout: {len(nodes)} nodes of /{self.prefix} (for {capacity} addresses) "
                "do not fit in 10.1.0.0/16: more nodes per address, or fewer pods"
            )
        self._pools = {}
        base = int(ipaddress.IPv4Address("10.1.0.0"))
        for i, node in enumerate(nodes):
            start = base + i * size
            # not the block's network, gateway (.1) or broadcast address
            pool = [str(ipaddress.IPv4Address(a)) for a in range(start + 2, start + size - 1)]
            if OTHER_IP in pool:
                pool.remove(OTHER_IP)
            self._rng.shuffle(pool)
            self._pools[node] = pool

    def pod_cidr(self, node: str) -> str | None:
        if self.layout != "per-node":
            return None
        size = 2 ** (32 - self.prefix)
        start = int(ipaddress.IPv4Address("10.1.0.0")) + self.nodes.index(node) * size
        return f"{ipaddress.IPv4Address(start)}/{self.prefix}"

    def _has_room(self, node: str) -> bool:
        return bool(self._pools["*" if self.layout == "scattered" else node])

    def next_node(self) -> str:
        """Round-robin over the nodes (skipping a per-node block that is used up)."""
        with self._lock:
            for _ in range(len(self.nodes)):
                node = self.nodes[self._next_node % len(self.nodes)]
                self._next_node += 1
                if self._has_room(node):
                    return node
            return node

    def random_node(self) -> str:
        with self._lock:
            roomy = [n for n in self.nodes if self._has_room(n)]
            return self._rng.choice(roomy or self.nodes)

    def take(self, node: str) -> str:
        with self._lock:
            pool = self._pools["*" if self.layout == "scattered" else node]
            if not pool:
                raise RuntimeError(f"address plan exhausted ({self.layout}, node {node}): fewer pods or more nodes")
            return pool.pop()


@dataclass
class PodRef:
    """A pod the bench made: where it is, which peering's group it is in (if any), its IP (if any)."""

    name: str
    peer: str
    node: str
    ip: str | None = None
    in_group: bool = True

    @property
    def namespace(self) -> str:
        return pod_namespace(self.peer)


def _example() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d]
    by_kind = {d["kind"]: d for d in docs if d["kind"] in ("Namespace", "Configuration", "PeeringConnectivity")}
    return by_kind["Namespace"], by_kind["Configuration"], by_kind["PeeringConnectivity"]


def policy_spec(policy: str) -> dict[str, Any] | None:
    """The PeeringConnectivity spec of `--policy`: Example 1's (None), or a shape compile_bench measures."""
    if policy == "example-1":
        return None
    from compile_bench import SHAPES  # the shapes of issue 17's size table, one definition

    if policy not in SHAPES:
        raise ValueError(f"unknown policy {policy!r}: example-1, {', '.join(SHAPES)}")
    return copy.deepcopy(dict(SHAPES[policy]))


def peering_objects(peers: list[str], policy: str = "example-1") -> list[dict[str, Any]]:
    """Per peer: its tenant namespace, Configuration and PeeringConnectivity (Example 1's, or `policy`);
    its pod namespace."""
    ns_t, conf_t, pc_t = _example()
    spec = policy_spec(policy)
    out: list[dict[str, Any]] = []
    for k, peer in enumerate(peers):
        ns = copy.deepcopy(ns_t)
        ns["metadata"] = {
            "name": tenant_namespace(peer),
            "labels": {REMOTE_CLUSTER_ID: peer, "liqo.io/tenant-namespace": "true"},
        }
        conf = copy.deepcopy(conf_t)
        conf["metadata"] = {"name": peer, "namespace": tenant_namespace(peer)}
        conf["status"] = {"remote": {"cidr": {"pod": [f"10.{71 + k}.0.0/16"], "external": [f"172.16.{k}.0/24"]}}}
        pc = copy.deepcopy(pc_t)
        pc["metadata"] = {"name": peer, "namespace": tenant_namespace(peer)}
        if spec is not None:
            pc["spec"] = copy.deepcopy(spec)
        app_ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": pod_namespace(peer)}}
        # Liqo also keeps the peer's pod CIDR as a Network `<peer>-pod` in the tenant namespace: liqosec
        # reads the Configuration first, the Go original only this.
        remote = {
            "apiVersion": "ipam.liqo.io/v1alpha1",
            "kind": "Network",
            "metadata": {"name": f"{peer}-pod", "namespace": tenant_namespace(peer)},
            "spec": {"cidr": f"10.{71 + k}.0.0/16"},
            "status": {"cidr": f"10.{71 + k}.0.0/16"},
        }
        out += [ns, app_ns, conf, pc, remote]
    return out


def base_objects(plan: AddressPlan) -> list[dict[str, Any]]:
    """The local pod CIDR Network and the Node objects: what exists before any peering."""
    network = {
        "apiVersion": "ipam.liqo.io/v1alpha1",
        "kind": "Network",
        "metadata": {"name": "pod-cidr", "namespace": "liqo", "labels": {"ipam.liqo.io/network-type": "pod-cidr"}},
        "spec": {"cidr": LOCAL_POD_CIDR},
        "status": {"cidr": LOCAL_POD_CIDR},
    }
    nodes = []
    for name in plan.nodes:
        spec: dict[str, Any] = {}
        cidr = plan.pod_cidr(name)
        if cidr:
            spec = {"podCIDR": cidr, "podCIDRs": [cidr]}
        nodes.append(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
                "spec": spec,
            }
        )
    return [network, *nodes]


def pod_object(ref: PodRef) -> dict[str, Any]:
    labels = {"liqo.io/managed-by": "shadowpod"}
    if ref.in_group:
        labels[ORIGIN] = ref.peer
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": ref.name, "namespace": ref.namespace, "labels": labels},
        "spec": {
            "nodeName": ref.node,
            "automountServiceAccountToken": False,
            "containers": [{"name": "app", "image": "registry.invalid/app:1"}],
        },
    }


def running(ip: str) -> dict[str, Any]:
    return {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}


def setup_base(kube: KubeClient, plan: AddressPlan) -> None:
    ensure_namespace(kube, "liqo")
    for obj in base_objects(plan):
        if obj["kind"] == "Node":
            try:
                kube.create(NODES, obj)
            except errors.AlreadyExists:
                pass
        else:
            apply(kube, [obj])
    web = PodRef("web", "-", plan.nodes[0], OTHER_IP, in_group=False)
    obj = pod_object(web)
    obj["metadata"]["namespace"] = "default"
    wait_service_account(kube, "default")
    live = kube.create(PODS, obj)
    set_status(kube, PODS, live, running(OTHER_IP))


def setup_peerings(kube: KubeClient, peers: list[str], policy: str = "example-1") -> None:
    apply(kube, peering_objects(peers, policy))
    for peer in peers:
        wait_service_account(kube, pod_namespace(peer))


def wait_service_account(kube: KubeClient, namespace: str) -> None:
    """Pods of a new namespace are refused until its default ServiceAccount exists."""
    deadline = time.monotonic() + SERVICE_ACCOUNT_WAIT_S
    while True:
        try:
            kube.get(SERVICE_ACCOUNTS, "default", namespace=namespace)
            return
        except errors.NotFound:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"no default ServiceAccount in {namespace} after {SERVICE_ACCOUNT_WAIT_S:g} s"
                ) from None
            time.sleep(0.1)


def create_pod(kube: KubeClient, ref: PodRef, *, with_ip: bool = True) -> dict[str, Any]:
    live = kube.create(PODS, pod_object(ref))
    if with_ip and ref.ip:
        live = set_status(kube, PODS, live, running(ref.ip))
    return live


def create_pods(kube: KubeClient, refs: Iterable[PodRef], *, with_ip: bool = True) -> list[dict[str, Any]]:
    """Create the pods (8 at a time), each with its status (its IP) unless `with_ip` is False; the live objects."""
    with ThreadPoolExecutor(CREATE_THREADS) as pool:
        return list(pool.map(lambda r: create_pod(kube, r, with_ip=with_ip), refs))


def spread(prefix: str, count: int, peers: list[str], plan: AddressPlan) -> list[PodRef]:
    """`count` pods named prefix-i, over the peerings and nodes round-robin, each with a fresh IP."""
    out = []
    for i in range(count):
        node = plan.next_node()
        out.append(PodRef(f"{prefix}-{i}", peers[i % len(peers)], node, plan.take(node)))
    return out
