"""The two clusters of a Liqo peering made by hack/peering.sh, as the peering suite sees them.

Guarantees: the names, CIDRs and namespaces here are hack/peering.sh's; ``create_workloads`` makes
the same pods on every run (servers on each side, one of them offloaded by Liqo).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.kind import ROOT, KindCluster, run
from harness.pods import namespace, server_pod, wait_pods_ready

PEERING_SH = ROOT / "hack" / "peering.sh"
CONSUMER, PROVIDER = "liqosec-consumer", "liqosec-provider"  # the clusters' names and Liqo cluster ids
# hack/peering.sh's CIDRs (kind's podSubnet of each cluster) and its offloaded namespace.
POD_SUBNET = {CONSUMER: "10.10.0.0/16", PROVIDER: "10.20.0.0/16"}
OFFLOADED_NAMESPACE = "liqo-demo"
PLAIN_NAMESPACE = "plain"  # not offloaded: its pods are local-cluster only
VIRTUAL_NODE_LABEL = {"liqo.io/type": "virtual-node"}


@dataclass(frozen=True)
class Side:
    """One cluster of the peering, seen from itself: ``peer`` is the other's cluster id."""

    name: str
    cluster: KindCluster
    peer: str

    @property
    def tenant(self) -> str:
        return f"liqo-tenant-{self.peer}"

    @property
    def pod_subnet(self) -> str:
        return POD_SUBNET[self.name]

    @property
    def worker(self) -> str:
        return f"{self.name}-worker"


@dataclass(frozen=True)
class Peering:
    consumer: Side
    provider: Side
    out: Path

    @property
    def sides(self) -> tuple[Side, Side]:
        return (self.consumer, self.provider)

    def script(self, *args: str, timeout: float = 900) -> str:
        """hack/peering.sh with this suite's output directory; a failure names the step and saves the logs."""
        return run([str(PEERING_SH), *args, str(self.out)], timeout=timeout).stderr


def create_workloads(p: Peering) -> None:
    """On each side a pod of a namespace that is not offloaded; on the consumer, in the offloaded
    namespace, one pod kept on its own worker (vc-local) and one Liqo offloads to the provider
    (vc-remote here, offloaded there)."""
    c, pr = p.consumer.cluster, p.provider.cluster
    c.apply(
        [
            namespace(PLAIN_NAMESPACE),
            server_pod("web", PLAIN_NAMESPACE, {"app": "web"}, p.consumer.worker),
            server_pod("local-web", OFFLOADED_NAMESPACE, {"app": "shop"}, p.consumer.worker),
            server_pod("remote-web", OFFLOADED_NAMESPACE, {"app": "shop"}, node_selector=VIRTUAL_NODE_LABEL),
        ]
    )
    pr.apply([namespace(PLAIN_NAMESPACE), server_pod("web", PLAIN_NAMESPACE, {"app": "web"}, p.provider.worker)])
    wait_pods_ready(c, PLAIN_NAMESPACE)
    wait_pods_ready(c, OFFLOADED_NAMESPACE)
    wait_pods_ready(pr, PLAIN_NAMESPACE)
