"""liqosec in a real cluster: a PeeringConnectivity becomes a FirewallConfiguration, status and metrics follow."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kind_cluster import IMAGE, NAMESPACE, POD_SUBNET, ROOT, CommandError, KindCluster, eventually

from liqosec.firewall.evaluate import Packet, node_accepts
from liqosec.render import outcomes

pytestmark = pytest.mark.e2e

EXAMPLE = ROOT / "examples" / "provider-isolate-offloaded.yaml"
FC_CRD = "firewallconfigurations.networking.liqo.io"
MANAGED_BY = "app.kubernetes.io/managed-by=liqosec"
# Not the short name `pc`: PriorityClass owns it and kubectl resolves built-ins first
# (test/unit/test_manifests.py::test_crd_short_names_do_not_shadow_builtin_resources).
PC = "peeringconnectivities.security.liqo.io"
# Compiles, writes and reports status well within this on an idle kind cluster.
RECONCILE_TIMEOUT_S = 120


def example(kind: str) -> dict[str, Any]:
    [doc] = [d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d and d["kind"] == kind]
    return dict(doc)


def tenant_namespace(peer: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": f"liqo-tenant-{peer}",
            "labels": {"liqo.io/remote-cluster-id": peer, "liqo.io/tenant-namespace": "true"},
        },
    }


def namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def sleeper(name: str, ns: str, labels: dict[str, str]) -> dict[str, Any]:
    """A pod that only needs an IP: the liqosec image is already on every node, so nothing is pulled."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "sleep",
                    "image": IMAGE,
                    "imagePullPolicy": "Never",
                    "command": ["python", "-c", "import time; time.sleep(86400)"],
                    "securityContext": {
                        "runAsNonRoot": True,
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }


def offloaded_by(peer: str) -> dict[str, str]:
    return {"offloading.liqo.io/origin": peer, "liqo.io/managed-by": "shadowpod"}


def configure_peer(cluster: KindCluster, peer: str, remote_pod_cidr: str) -> None:
    """Tenant namespace and a Configuration whose status holds the remapped remote pod CIDR, as Liqo writes it."""
    tenant = f"liqo-tenant-{peer}"
    cluster.apply(
        [
            tenant_namespace(peer),
            {
                "apiVersion": "networking.liqo.io/v1beta1",
                "kind": "Configuration",
                "metadata": {"name": peer, "namespace": tenant},
                "spec": {"remote": {"cidr": {"pod": ["10.200.0.0/16"], "external": ["10.201.0.0/16"]}}},
            },
        ]
    )
    status = {"status": {"remote": {"cidr": {"pod": [remote_pod_cidr], "external": ["10.250.0.0/16"]}}}}
    cluster.kubectl(
        "-n",
        tenant,
        "patch",
        "configurations.networking.liqo.io",
        peer,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(status),
    )


def wait_pods_ready(cluster: KindCluster, ns: str) -> None:
    cluster.kubectl("-n", ns, "wait", "--for=condition=Ready", "pod", "--all", "--timeout=180s", timeout=200)


def pod_ip(cluster: KindCluster, ns: str, name: str) -> str:
    return str(cluster.get_json("pod", "-n", ns, name)["status"]["podIP"])


def live_firewall(cluster: KindCluster, peer: str) -> dict[str, Any] | None:
    try:
        return cluster.get_json(
            "firewallconfigurations.networking.liqo.io", "-n", f"liqo-tenant-{peer}", f"liqosec-{peer}"
        )
    except CommandError as err:
        if "NotFound" in err.stderr or "not found" in err.stderr:
            return None
        raise


def rule_names(fc: dict[str, Any]) -> list[str]:
    return sorted(r["name"] for c in fc["spec"]["table"]["chains"] for r in c["rules"]["filterRules"])


def accepts(fc: dict[str, Any], src: str, dst: str) -> bool:
    return node_accepts([fc["spec"]["table"]], Packet.of(src, dst))


@pytest.fixture(scope="module")
def rome(cluster: KindCluster) -> Iterator[dict[str, str]]:
    """Seed Example 1 on a kind cluster: rome offloaded two pods here; a local pod `web` stays out."""
    cluster.apply(
        [
            {
                "apiVersion": "ipam.liqo.io/v1alpha1",
                "kind": "Network",
                "metadata": {
                    "name": "pod-cidr",
                    "namespace": NAMESPACE,
                    "labels": {"ipam.liqo.io/network-type": "pod-cidr"},
                },
                "spec": {"cidr": POD_SUBNET},
            }
        ]
    )
    configure_peer(cluster, "rome", "10.71.0.0/16")
    cluster.apply(
        [
            namespace("shop-rome"),
            namespace("local-web"),
            sleeper("cart-0", "shop-rome", offloaded_by("rome")),
            sleeper("cart-1", "shop-rome", offloaded_by("rome")),
            sleeper("web", "local-web", {"app": "web"}),
        ]
    )
    wait_pods_ready(cluster, "shop-rome")
    wait_pods_ready(cluster, "local-web")
    cluster.apply([example("PeeringConnectivity")])
    yield {
        "cart-0": pod_ip(cluster, "shop-rome", "cart-0"),
        "cart-1": pod_ip(cluster, "shop-rome", "cart-1"),
        "web": pod_ip(cluster, "local-web", "web"),
    }


def cluster_objects(cluster: KindCluster) -> list[dict[str, Any]]:
    """What the controller reads, read back from the cluster, for an independent `liqosec render`."""
    objects: list[dict[str, Any]] = []
    for args in (
        ("namespaces",),
        ("pods", "-A"),
        ("networks.ipam.liqo.io", "-A"),
        ("configurations.networking.liqo.io", "-A"),
        ("endpointslices.discovery.k8s.io", "-A"),
        ("services", "-A"),
        ("nodes",),
        ("peeringconnectivities.security.liqo.io", "-A"),
    ):
        objects += cluster.get_json(*args)["items"]
    objects.append(cluster.get_json("crd", FC_CRD))
    return objects


def test_firewall_configuration_has_the_peerings_table_and_the_rendered_rules(
    cluster: KindCluster, rome: dict[str, str]
) -> None:
    fc = eventually(
        lambda: live_firewall(cluster, "rome"), timeout=RECONCILE_TIMEOUT_S, what="FirewallConfiguration liqosec-rome"
    )
    table = fc["spec"]["table"]
    assert table["name"] == "liqosec-rome"
    assert fc["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "liqosec"
    [owner] = fc["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner.get("controller")) == ("PeeringConnectivity", "rome", True)

    def settled() -> dict[str, Any] | None:
        live = live_firewall(cluster, "rome")
        [expected] = [o.firewall for o in outcomes(cluster_objects(cluster)) if o.peer == "rome"]
        return live if live and rule_names(live) == rule_names(expected) else None

    live = eventually(
        settled, timeout=RECONCILE_TIMEOUT_S, what="live rules to equal `liqosec render` of the live objects"
    )
    [chain] = live["spec"]["table"]["chains"]
    assert (chain["hook"], chain["type"]) == ("forward", "filter")


def test_live_firewall_gives_example_1_verdicts(cluster: KindCluster, rome: dict[str, str]) -> None:
    remote = "10.71.3.4"

    def both_pods_in() -> dict[str, Any] | None:
        fc = live_firewall(cluster, "rome")
        return fc if fc and accepts(fc, remote, rome["cart-0"]) and accepts(fc, remote, rome["cart-1"]) else None

    fc = eventually(both_pods_in, timeout=RECONCILE_TIMEOUT_S, what="both offloaded pods in the firewall")
    assert accepts(fc, remote, rome["cart-0"]) and accepts(fc, rome["cart-0"], remote)
    assert not accepts(fc, rome["cart-0"], rome["web"]), "offloaded pods reach only rome"
    assert not accepts(fc, remote, rome["web"]), "rome reaches only its offloaded pods"
    assert accepts(fc, rome["web"], "10.244.200.1"), "local traffic is outside the peering's scope"


def printed_column(table: str, row_name: str, column: str) -> str:
    """A column of `kubectl get` output, cut at the header's offsets (empty cells break split())."""
    header, *rows = table.splitlines()
    starts = [m.start() for m in re.finditer(r"\S+", header)]
    names = header.split()
    i = names.index(column)
    [row] = [r for r in rows if r.split()[0] == row_name]
    end = starts[i + 1] if i + 1 < len(starts) else None
    return row[starts[i] : end].strip()


def test_kubectl_get_peeringconnectivities_shows_ready_true(cluster: KindCluster, rome: dict[str, str]) -> None:
    def ready() -> str | None:
        out = cluster.kubectl("get", PC, "-n", "liqo-tenant-rome")
        return out if printed_column(out, "rome", "READY") == "True" else None

    out = eventually(ready, timeout=RECONCILE_TIMEOUT_S, what="`kubectl get peeringconnectivities` to show READY True")
    assert printed_column(out, "rome", "MODE") == "FullPodToPod"
    pc = cluster.get_json(PC, "-n", "liqo-tenant-rome", "rome")
    assert pc["status"]["observedGeneration"] == pc["metadata"]["generation"]


def test_metrics_endpoint_serves_reconcile_total(cluster: KindCluster, rome: dict[str, str]) -> None:
    """Read through the API server's pod proxy; only the leader reconciles, so one pod has the samples."""
    eventually(lambda: live_firewall(cluster, "rome"), timeout=RECONCILE_TIMEOUT_S, what="a first reconcile")
    pods = cluster.get_json("pods", "-n", NAMESPACE, "-l", "app.kubernetes.io/name=liqosec")["items"]
    assert len(pods) == 2

    def reconciled() -> float | None:
        total = 0.0
        for p in pods:
            text = cluster.kubectl(
                "get", "--raw", f"/api/v1/namespaces/{NAMESPACE}/pods/{p['metadata']['name']}:8080/proxy/metrics"
            )
            total += sum(
                float(m.group(1))
                for m in re.finditer(r"^controller_runtime_reconcile_total\{[^}]*\} (\S+)$", text, re.M)
            )
        return total if total > 0 else None

    assert eventually(reconciled, timeout=RECONCILE_TIMEOUT_S, what="controller_runtime_reconcile_total > 0") > 0


def test_a_new_offloaded_pod_reaches_the_firewall(cluster: KindCluster, rome: dict[str, str]) -> None:
    configure_peer(cluster, "milan", "10.72.0.0/16")
    cluster.apply([namespace("shop-milan"), sleeper("api-0", "shop-milan", offloaded_by("milan"))])
    wait_pods_ready(cluster, "shop-milan")
    cluster.apply(
        [
            {
                "apiVersion": "security.liqo.io/v1",
                "kind": "PeeringConnectivity",
                "metadata": {"name": "milan", "namespace": "liqo-tenant-milan"},
                "spec": {
                    "rules": [
                        {
                            "source": {"group": "remote-cluster"},
                            "destination": {"group": "offloaded"},
                            "action": "allow",
                        },
                        {"source": {"group": "remote-cluster"}, "action": "deny"},
                    ]
                },
            }
        ]
    )
    remote = "10.72.1.1"

    def allowing(ip: str) -> dict[str, Any] | None:
        fc = live_firewall(cluster, "milan")
        return fc if fc and accepts(fc, remote, ip) else None

    eventually(
        lambda: allowing(pod_ip(cluster, "shop-milan", "api-0")),
        timeout=RECONCILE_TIMEOUT_S,
        what="api-0 allowed from milan",
    )
    cluster.apply([sleeper("api-1", "shop-milan", offloaded_by("milan"))])
    wait_pods_ready(cluster, "shop-milan")
    api_1 = pod_ip(cluster, "shop-milan", "api-1")
    fc = eventually(lambda: allowing(api_1), timeout=RECONCILE_TIMEOUT_S, what="the new pod api-1 allowed from milan")
    assert not accepts(fc, remote, rome["web"])


def test_deleting_the_policy_removes_its_firewall(cluster: KindCluster, rome: dict[str, str]) -> None:
    configure_peer(cluster, "turin", "10.73.0.0/16")
    cluster.apply(
        [
            {
                "apiVersion": "security.liqo.io/v1",
                "kind": "PeeringConnectivity",
                "metadata": {"name": "turin", "namespace": "liqo-tenant-turin"},
                "spec": {"rules": [{"source": {"group": "remote-cluster"}, "action": "deny"}]},
            }
        ]
    )
    eventually(
        lambda: live_firewall(cluster, "turin"), timeout=RECONCILE_TIMEOUT_S, what="FirewallConfiguration liqosec-turin"
    )
    cluster.kubectl("delete", PC, "-n", "liqo-tenant-turin", "turin", "--wait=true", "--timeout=120s", timeout=140)
    eventually(
        lambda: True if live_firewall(cluster, "turin") is None else None,
        timeout=RECONCILE_TIMEOUT_S,
        what="FirewallConfiguration liqosec-turin to be deleted",
    )
    managed = cluster.get_json("firewallconfigurations.networking.liqo.io", "-A", "-l", MANAGED_BY)["items"]
    assert "liqo-tenant-turin" not in {f["metadata"]["namespace"] for f in managed}
