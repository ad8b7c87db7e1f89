"""The two clusters of a Liqo peering made by hack/peering.sh, as the peering suite sees them.

Guarantees: the names, CIDRs and namespaces here are hack/peering.sh's; ``create_workloads`` makes
the same pods on every run (servers on each side, one of them offloaded by Liqo).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from harness.kind import ROOT, KindCluster, run
from harness.pods import namespace, server_pod, wait_pods_ready

PEERING_SH = ROOT / "hack" / "peering.sh"
# The clusters' names and Liqo cluster ids. PROVIDER2, one node, is a second provider the offloaded
# namespace's ClusterSelector leaves out.
CONSUMER, PROVIDER, PROVIDER2 = "liqosec-consumer", "liqosec-provider", "liqosec-provider2"
# hack/peering.sh's CIDRs (kind's podSubnet of each cluster) and its offloaded namespace.
POD_SUBNET = {CONSUMER: "10.10.0.0/16", PROVIDER: "10.20.0.0/16", PROVIDER2: "10.30.0.0/16"}
OFFLOADED_NAMESPACE = "liqo-demo"
PLAIN_NAMESPACE = "plain"  # not offloaded: its pods are local-cluster only
VIRTUAL_NODE_LABEL = {"liqo.io/type": "virtual-node"}


def kind_cluster(out: Path, name: str) -> KindCluster:
    """The cluster hack/peering.sh made, through the kubeconfig it wrote in ``out``."""
    return KindCluster(out, name, out / f"kubeconfig-{name.removeprefix('liqosec-')}")


@dataclass(frozen=True)
class Side:
    """One cluster of a peering, seen from itself: ``peer`` is the other's cluster id."""

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
        """The node test pods run on (a one-node cluster's is its control plane)."""
        return f"{self.name}-control-plane" if self.name == PROVIDER2 else f"{self.name}-worker"


@dataclass(frozen=True)
class Peering:
    """The consumer's peering with the provider, both ways, and with the second provider, both ways."""

    consumer: Side
    provider: Side
    consumer2: Side  # the consumer's cluster, peer PROVIDER2
    provider2: Side
    out: Path

    @classmethod
    def made_in(cls, out: Path) -> Peering:
        c, p, p2 = (kind_cluster(out, name) for name in (CONSUMER, PROVIDER, PROVIDER2))
        return cls(
            Side(CONSUMER, c, PROVIDER),
            Side(PROVIDER, p, CONSUMER),
            Side(CONSUMER, c, PROVIDER2),
            Side(PROVIDER2, p2, CONSUMER),
            out,
        )

    @property
    def sides(self) -> tuple[Side, Side]:
        """The peering the policy tests work on."""
        return (self.consumer, self.provider)

    @property
    def all_sides(self) -> tuple[Side, ...]:
        return (self.consumer, self.provider, self.consumer2, self.provider2)

    @property
    def clusters(self) -> tuple[KindCluster, ...]:
        return (self.consumer.cluster, self.provider.cluster, self.provider2.cluster)

    def script(self, *args: str, timeout: float = 900, env: dict[str, str] | None = None) -> str:
        """hack/peering.sh with this suite's output directory; a failure names the step and saves the
        logs. What the script worked around in Liqo (its "warning:" lines) is said as a pytest warning."""
        stderr = run([str(PEERING_SH), *args, str(self.out)], timeout=timeout, env=env).stderr
        for line in stderr.splitlines():
            if line.startswith("peering: warning: "):
                warnings.warn(f"hack/peering.sh {' '.join(args)}: {line.removeprefix('peering: ')}", stacklevel=2)
        return stderr


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
