"""The bench's cluster: scales, the address plan, and Example 1 objects for P peerings.

Used by bench/run.py. Every peering k is Example 1 (examples/provider-isolate-offloaded.yaml)
with its peer renamed: tenant namespace `liqo-tenant-<peer>` with a Configuration (remote pod
CIDR 10.<71+k>.0.0/16 as remapped here) and the seed's PeeringConnectivity, and its offloaded
pods in `shop-<peer>`, labelled `offloading.liqo.io/origin=<peer>`. Peer 0 is `rome`, as in
the example; the others are `peer001`, `peer002`, ... Local pod CIDR 10.1.0.0/16; one pod
outside every group, `web` at 10.1.1.10 (bench/reconcile_latency.py's LOCAL_POD), is the
address a group pod must not reach.

Those are the `classic` addressing (smoke, 1k, 10k: at most 150 peerings, 65,024 pod addresses).
The `wide` one (100k) makes room for 1,000 peerings and 100,000 pods: local pod CIDR
10.0.0.0/14 (10.1.1.10 still inside), peer k's remote pod CIDR the k-th /19 of 10.128.0.0/9
(10.128.0.0/19, 10.128.32.0/19, ...; up to 1,024 peerings). In both, peer k's remapped external
CIDR is the k-th /24 of 172.16.0.0/12 (172.16.k.0/24 below 256).

Addresses (`AddressPlan`): every pod IP the run hands out is drawn once and never reused, so a
deleted pod's address cannot be confused with a new pod's:
- `scattered` (default): uniformly at random over the local pod CIDR (each /24's .1-.254), the
  worst case for aggregation; Node objects carry no podCIDR.
- `per-node`: node i owns the i-th /24 of the local pod CIDR (10.1.i.0/24; bigger blocks when the
  run needs more addresses than /24s hold), its spec.podCIDR, and its pods' IPs come from it, at random.
Bulk pods go to the Node objects round-robin, churn pods to a random node.
"""

from __future__ import annotations

import copy
import ipaddress
import math
import random
import threading
import time
from collections.abc import Callable, Iterable
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
MAX_PEERINGS = 150  # classic: remote pod CIDRs 10.71.0.0/16 .. 10.220.0.0/16


def _block(start: str, prefix: int, k: int) -> str:
    """The k-th /prefix from `start` on: _block("10.71.0.0", 16, 2) == "10.73.0.0/16"."""
    return f"{ipaddress.IPv4Address(int(ipaddress.IPv4Address(start)) + k * 2 ** (32 - prefix))}/{prefix}"


@dataclass(frozen=True)
class Addressing:
    """A scale's address space: the local pod CIDR, and each peering's remapped pod and external CIDRs."""

    name: str
    local_pod_cidr: str  # the Network `pod-cidr`; every pod the bench makes has its IP here
    remote_pod_start: str  # peering k's remote pod CIDR: the k-th /remote_pod_prefix from here
    remote_pod_prefix: int
    max_peerings: int
    external_start: str = "172.16.0.0"  # peering k's remote external CIDR: the k-th /24 from here
    external_prefix: int = 24

    def remote_pod_cidr(self, k: int) -> str:
        return _block(self.remote_pod_start, self.remote_pod_prefix, k)

    def external_cidr(self, k: int) -> str:
        return _block(self.external_start, self.external_prefix, k)

    def pod_addresses(self) -> int:
        """Addresses a scattered plan can hand out: .1-.254 of each /24, less `web`'s."""
        return ipaddress.IPv4Network(self.local_pod_cidr).num_addresses // 256 * 254 - 1


ADDRESSINGS: dict[str, Addressing] = {
    a.name: a
    for a in (
        # smoke, 1k, 10k as they always were: 10.1.0.0/16, 10.<71+k>.0.0/16, 172.16.k.0/24
        Addressing("classic", LOCAL_POD_CIDR, "10.71.0.0", 16, MAX_PEERINGS),
        # 100k: 1,000 peerings and 100,000 pods; the /19s fill 10.128.0.0/9, the /24s 172.16.0.0/14
        Addressing("wide", "10.0.0.0/14", "10.128.0.0", 19, 1_024),
    )
}


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
    create_threads: int = CREATE_THREADS  # parallel creates and status writes when populating
    addressing: str = "classic"  # a key of ADDRESSINGS (not a knob: the world's shape)


SCALES: dict[str, Scale] = {
    s.name: s
    for s in (
        Scale("smoke", 50, 1, 2, 10, 5.0, 10.0, 200, 5.0, 5.0, 60.0, 30.0, 0.25, 40),
        Scale("1k", 1_000, 10, 10, 20, 10.0, 30.0, 2_000, 10.0, 10.0, 180.0, 60.0, 0.5, 100),
        Scale("10k", 10_000, 100, 100, 30, 20.0, 60.0, 2_000, 15.0, 15.0, 600.0, 120.0, 0.5, 100),
        Scale(
            "100k",
            100_000,
            1_000,
            1_000,
            30,
            20.0,
            60.0,
            2_000,
            15.0,
            15.0,
            1_800.0,
            300.0,
            1.0,
            100,
            create_threads=16,
            addressing="wide",
        ),
    )
}
SCALE_FIELDS = tuple(f.name for f in fields(Scale) if f.name != "addressing")


def addressing_of(scale: Scale) -> Addressing:
    return ADDRESSINGS[scale.addressing]


def capacity_of(scale: Scale) -> int:
    """Pod addresses the run hands out at most: bulk, probes, churn creates (at most all changes), burst."""
    return scale.pods + scale.rounds + int(scale.churn_rate * scale.churn_seconds) + scale.burst


def peer_names(n: int, limit: int = MAX_PEERINGS) -> list[str]:
    if not 1 <= n <= limit:
        raise ValueError(f"peerings must be 1..{limit}, got {n}")
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
    """Hands out pod IPs of the local pod CIDR (10.1.0.0/16 unless `cidr`), each once; thread-safe.

    `per-node`: node i owns the i-th block of the CIDR, a /24 unless `capacity` (addresses the run
    will hand out in all) needs bigger blocks, with 30% to spare for churn's random node choice.
    """

    def __init__(
        self, layout: str, nodes: list[str], seed: int = 7, capacity: int = 0, cidr: str = LOCAL_POD_CIDR
    ) -> None:
        if layout not in ("scattered", "per-node"):
            raise ValueError(f"layout must be scattered or per-node, got {layout!r}")
        net = ipaddress.IPv4Network(cidr)
        if net.prefixlen > 24 or ipaddress.IPv4Address(OTHER_IP) not in net:
            raise ValueError(f"the local pod CIDR must be /24 or wider and hold {OTHER_IP} (web), got {cidr}")
        self.layout = layout
        self.nodes = nodes
        self.cidr = str(net)
        self._base = int(net.network_address)
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._next_node = 0
        self.prefix = 24
        if layout == "scattered":
            # .1-.254 of every /24 in order (for 10.1.0.0/16 exactly 10.1.a.b, a in 0..255, b in 1..254)
            pool = [
                f"{ipaddress.IPv4Address(self._base + c * 256)}"[:-1] + str(b)
                for c in range(net.num_addresses // 256)
                for b in range(1, 255)
            ]
            pool.remove(OTHER_IP)
            if capacity > len(pool):
                raise ValueError(f"scattered layout: {capacity} addresses do not fit in {cidr} ({len(pool)})")
            self._rng.shuffle(pool)
            self._pools = {"*": pool}
            return
        per_node = math.ceil(1.3 * capacity / len(nodes))
        while per_node > 2 ** (32 - self.prefix) - 3 and self.prefix > net.prefixlen:
            self.prefix -= 1
        size = 2 ** (32 - self.prefix)
        if len(nodes) * size > net.num_addresses:
            raise ValueError(
                f"per-node layout: {len(nodes)} nodes of /{self.prefix} (for {capacity} addresses) "
                f"do not fit in {cidr}: more nodes per address, or fewer pods"
            )
        self._pools = {}
        base = self._base
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
        start = self._base + self.nodes.index(node) * size
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


def peering_objects(
    peers: list[str], policy: str = "example-1", addressing: Addressing = ADDRESSINGS["classic"]
) -> list[dict[str, Any]]:
    """Per peer: its tenant namespace, Configuration and PeeringConnectivity (Example 1's, or `policy`);
    its pod namespace."""
    if len(peers) > addressing.max_peerings:
        raise ValueError(f"{len(peers)} peerings: the {addressing.name} addressing holds {addressing.max_peerings}")
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
        pod_cidr = addressing.remote_pod_cidr(k)
        conf["status"] = {"remote": {"cidr": {"pod": [pod_cidr], "external": [addressing.external_cidr(k)]}}}
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
            "spec": {"cidr": pod_cidr},
            "status": {"cidr": pod_cidr},
        }
        out += [ns, app_ns, conf, pc, remote]
    return out


def base_objects(plan: AddressPlan) -> list[dict[str, Any]]:
    """The local pod CIDR Network and the Node objects: what exists before any peering."""
    network = {
        "apiVersion": "ipam.liqo.io/v1alpha1",
        "kind": "Network",
        "metadata": {"name": "pod-cidr", "namespace": "liqo", "labels": {"ipam.liqo.io/network-type": "pod-cidr"}},
        "spec": {"cidr": plan.cidr},
        "status": {"cidr": plan.cidr},
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


def setup_peerings(
    kube: KubeClient, peers: list[str], policy: str = "example-1", addressing: Addressing = ADDRESSINGS["classic"]
) -> None:
    apply(kube, peering_objects(peers, policy, addressing))
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


def create_pods(
    kube: KubeClient,
    refs: Iterable[PodRef],
    *,
    with_ip: bool = True,
    threads: int = CREATE_THREADS,
    progress: Callable[[int], None] | None = None,
    every: int = 5_000,
) -> list[dict[str, Any]]:
    """Create the pods (`threads` at a time, 8 by default), each with its status (its IP) unless `with_ip`
    is False; the live objects. `progress(n)` after every `every` pods done."""
    done = 0
    lock = threading.Lock()

    def one(ref: PodRef) -> dict[str, Any]:
        nonlocal done
        live = create_pod(kube, ref, with_ip=with_ip)
        if progress is not None:
            with lock:
                done += 1
                n = done
            if n % every == 0:
                progress(n)
        return live

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, refs))


def spread(prefix: str, count: int, peers: list[str], plan: AddressPlan) -> list[PodRef]:
    """`count` pods named prefix-i, over the peerings and nodes round-robin, each with a fresh IP."""
    out = []
    for i in range(count):
        node = plan.next_node()
        out.append(PodRef(f"{prefix}-{i}", peers[i % len(peers)], node, plan.take(node)))
    return out
