"""liqosec as operators run it: a Helm release in a two-node kind cluster with Liqo's agent on every
node, scraped by Prometheus, judged by real pod-to-pod TCP.

The tests run in file order and build on each other (one cluster, one release): seed, install,
converge, traffic, rule change, pod move, metrics, leader kill, upgrade, webhook, RBAC, uninstall.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from addons import AGENT, AGENT_NAMESPACE, PROMETHEUS, PROMETHEUS_NAMESPACE, prometheus

from harness import dashboards
from harness.kind import (
    IMAGE,
    NAMESPACE,
    POD_SUBNET,
    RELEASE,
    ROOT,
    CommandError,
    KindCluster,
    Session,
    eventually,
    step,
)
from harness.liqo_forge import PEERING_SPEC, for_apply, forge, of_kind
from harness.livestate import FC, MANAGED_BY, PC, cluster_objects, condition, expected_matrix
from harness.pods import measured_traffic, namespace, pod_ip, server_pod, wait_pods_ready
from liqosec.admission.server import PEERING_CONNECTIVITIES
from liqosec.controller.retire import FINALIZER
from liqosec.firewall.evaluate import Packet, node_accepts
from liqosec.kube import errors
from liqosec.kube.client import RestKubeClient, load_api_client
from liqosec.offline import outcomes

pytestmark = pytest.mark.e2e

EXAMPLE = ROOT / "examples" / "provider-isolate-offloaded.yaml"
# The chart's ValidatingAdmissionPolicy and binding (<fullname>-firewalls) and how the API server words a refusal.
ADMISSION_POLICY = f"{RELEASE}-firewalls"
ADMISSION_POLICY_DENIED = (
    f"ValidatingAdmissionPolicy '{ADMISSION_POLICY}' with binding '{ADMISSION_POLICY}' denied request"
)
# Compiles, writes, is applied by every node's agent and reports status well within this.
RECONCILE_TIMEOUT_S = 120


# ------------------------------------------------------------------------------------ cluster objects
def offloaded_by(peer: str) -> dict[str, str]:
    return {"offloading.liqo.io/origin": peer, "liqo.io/managed-by": "shadowpod"}


def configure_peer(cluster: KindCluster, peer: str, remote_pod_cidr: str) -> None:
    """Tenant namespace and a Configuration whose status holds the remapped remote pod CIDR, as Liqo writes it."""
    tenant = f"liqo-tenant-{peer}"
    cluster.apply(
        [
            namespace(tenant, {"liqo.io/remote-cluster-id": peer, "liqo.io/tenant-namespace": "true"}),
            {
                "apiVersion": "networking.liqo.io/v1beta1",
                "kind": "Configuration",
                "metadata": {"name": peer, "namespace": tenant},
                "spec": {"remote": {"cidr": {"pod": ["10.200.0.0/16"], "external": ["10.201.0.0/16"]}}},
            },
        ]
    )
    status = {"status": {"remote": {"cidr": {"pod": [remote_pod_cidr], "external": ["10.250.0.0/16"]}}}}
    patch_status(cluster, "configurations.networking.liqo.io", tenant, peer, status)


def patch_status(cluster: KindCluster, resource: str, ns: str, name: str, status: dict[str, Any]) -> None:
    cluster.kubectl("-n", ns, "patch", resource, name, "--subresource=status", "--type=merge", "-p", json.dumps(status))


def live_firewall(cluster: KindCluster, peer: str) -> dict[str, Any] | None:
    try:
        return cluster.get_json(FC, "-n", f"liqo-tenant-{peer}", f"liqosec-{peer}")
    except CommandError as err:
        if "NotFound" in err.stderr or "not found" in err.stderr:
            return None
        raise


def rule_names(fc: dict[str, Any]) -> list[str]:
    return sorted(r["name"] for c in fc["spec"]["table"]["chains"] for r in c["rules"]["filterRules"])


def accepts(fc: dict[str, Any], src: str, dst: str) -> bool:
    return node_accepts([fc["spec"]["table"]], Packet.of(src, dst))


def settled_firewall(cluster: KindCluster, peer: str) -> dict[str, Any] | None:
    """The peering's policy is Ready at its generation and its live firewall is `liqosec render` of the live objects."""
    pc = cluster.get_json(PC, "-n", f"liqo-tenant-{peer}", peer)
    if pc.get("status", {}).get("observedGeneration") != pc["metadata"]["generation"]:
        return None
    if condition(pc, "Ready").get("status") != "True":
        return None
    live = live_firewall(cluster, peer)
    [expected] = [o.firewall for o in outcomes(cluster_objects(cluster)) if o.peer == peer]
    return live if live and rule_names(live) == rule_names(expected) else None


def wait_converged(cluster: KindCluster, peer: str, timeout: float = RECONCILE_TIMEOUT_S) -> dict[str, Any]:
    return eventually(
        lambda: settled_firewall(cluster, peer),
        timeout=timeout,
        what=f"peering {peer}: Ready at its generation, live rules equal to `liqosec render` of the live objects",
    )


# ------------------------------------------------------------------------------------------ seeding
@dataclass
class Seed:
    pods: list[str]  # "namespace/name"
    policies: list[dict[str, Any]]  # applied once liqosec's chart has installed their CRD


def seed_example(cluster: KindCluster, path: Path) -> Seed:
    """An example's objects as cluster objects: its pods become real pods (same names, namespaces and
    Liqo labels) spread over the nodes as the example spreads them, the pod-cidr Network names the
    real pod subnet, statuses are written through the status subresource, and addresses of the
    example's pods elsewhere (EndpointSlices) become the real pods' addresses. The
    PeeringConnectivities are returned, to apply once their CRD is installed (by the chart)."""
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    nodes = cluster.node_names()
    node_of: dict[str, str] = {}
    declared = {d["metadata"]["name"] for d in docs if d["kind"] == "Namespace"}
    used = {d["metadata"]["namespace"] for d in docs if d["metadata"].get("namespace")}
    cluster.apply([d for d in docs if d["kind"] == "Namespace"] + [namespace(n) for n in sorted(used - declared)])
    for d in docs:
        if d["kind"] == "Network":
            d = {**d, "spec": {**d["spec"], "cidr": POD_SUBNET}}
            cluster.apply([d])
        elif d["kind"] in ("Configuration", "NamespaceOffloading"):
            cluster.apply([{k: v for k, v in d.items() if k != "status"}])
            if "status" in d:
                resource = {
                    "Configuration": "configurations.networking.liqo.io",
                    "NamespaceOffloading": "namespaceoffloadings.offloading.liqo.io",
                }[d["kind"]]
                patch_status(
                    cluster, resource, d["metadata"]["namespace"], d["metadata"]["name"], {"status": d["status"]}
                )
    pods = [d for d in docs if d["kind"] == "Pod"]
    for d in pods:
        example_node = d.get("spec", {}).get("nodeName", "")
        node = node_of.setdefault(example_node, nodes[len(node_of) % len(nodes)])
        meta = d["metadata"]
        cluster.apply([server_pod(meta["name"], meta["namespace"], dict(meta.get("labels") or {}), node)])
    for ns in sorted({d["metadata"]["namespace"] for d in pods}):
        wait_pods_ready(cluster, ns)
    real = {
        ip: pod_ip(cluster, d["metadata"]["namespace"], d["metadata"]["name"])
        for d in pods
        for ip in [d.get("status", {}).get("podIP")]
        if ip
    }
    for d in docs:
        if d["kind"] == "EndpointSlice":
            endpoints = [
                {**e, "addresses": [real.get(a, a) for a in e.get("addresses", [])]} for e in d.get("endpoints", [])
            ]
            cluster.apply([{**d, "endpoints": endpoints}])
        elif d["kind"] == "Service":
            spec = {k: v for k, v in d.get("spec", {}).items() if k not in ("clusterIP", "clusterIPs")}
            cluster.apply([{**d, "spec": spec}])
    return Seed(
        pods=[f"{d['metadata']['namespace']}/{d['metadata']['name']}" for d in pods],
        policies=[d for d in docs if d["kind"] == "PeeringConnectivity"],
    )


# ------------------------------------------------------------------------------------------ traffic
def traffic_matches_matrix(cluster: KindCluster, pods: list[str], tmp: Path, what: str) -> dict[tuple[str, str], bool]:
    """Real traffic equals the matrix (retried while Liqo's agents apply the last write); returns the verdicts."""
    last: list[str] = []

    def matches() -> dict[tuple[str, str], bool] | None:
        nonlocal last
        expected = expected_matrix(cluster, pods, tmp)
        actual = measured_traffic(cluster, pods)
        last = [
            f"{a} -> {b}: matrix {'connects' if expected[(a, b)] else 'blocked'}, "
            f"real {'connects' if actual[(a, b)] else 'blocked'}"
            for (a, b) in expected
            if expected[(a, b)] != actual[(a, b)]
        ]
        return expected if not last else None

    try:
        verdicts = eventually(matches, timeout=90, what=f"real TCP to match `liqosec matrix` ({what})")
    except TimeoutError as err:
        raise AssertionError(f"{err}; differences:\n  " + "\n  ".join(last)) from err
    print(f"\ntraffic ({what}): " + ", ".join(f"{a}->{b} {'ok' if v else 'x'}" for (a, b), v in verdicts.items()))
    return verdicts


def nodes_of(cluster: KindCluster, pods: list[str]) -> set[str]:
    return {cluster.get_json("pod", "-n", *p.split("/"))["spec"]["nodeName"] for p in pods}


# ----------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def seeded(cluster: KindCluster) -> Seed:
    """Seed Example 1 (provider isolates what rome offloaded) before liqosec is installed."""
    with step("seed Example 1"):
        return seed_example(cluster, EXAMPLE)


@pytest.fixture(scope="module")
def release(e2e: Session, seeded: Seed) -> Iterator[float]:
    """`helm install` of chart/ (2 replicas, leader election); yields seconds to the first Ready peering."""
    cluster = e2e.kind
    with step("helm install"):
        start = time.monotonic()
        cluster.install_liqosec(IMAGE, "--set", "logLevel=debug")
        cluster.apply(seeded.policies)
        cluster.wait_for_a_ready_replica()
    with step("convergence (first Ready peering)"):
        wait_converged(cluster, "rome", timeout=300)
        took = time.monotonic() - start
    e2e.timings["helm install to first Ready peering"] = took
    print(f"\nhelm install to the first Ready peering: {took:.1f} s")
    yield took


@pytest.fixture(scope="module")
def pods(seeded: Seed, release: float) -> list[str]:
    return seeded.pods


# ------------------------------------------------------------------------------------------- tests
def test_liqo_agent_runs_on_every_node(cluster: KindCluster) -> None:
    with step("liqo agent"):
        ds = cluster.get_json("daemonset", "-n", AGENT_NAMESPACE, AGENT)
        nodes = cluster.node_names()
        assert len(nodes) == 2
        assert ds["status"]["numberReady"] == ds["status"]["desiredNumberScheduled"] == len(nodes)


def test_helm_release_runs_two_replicas_with_the_charts_service_account(cluster: KindCluster, pods: list[str]) -> None:
    with step("helm release"):
        assert "deployed" in cluster.helm("status", RELEASE, "-n", NAMESPACE).stdout
        items = cluster.get_json("pods", "-n", NAMESPACE, "-l", "app.kubernetes.io/name=liqosec")["items"]
        assert len(items) == 2
        assert {p["spec"]["serviceAccountName"] for p in items} == {RELEASE}
        assert all(p["spec"]["containers"][0]["image"] == IMAGE for p in items)
        lease = cluster.get_json("lease", "-n", NAMESPACE, RELEASE)
        assert lease["spec"]["holderIdentity"] in {p["metadata"]["name"] for p in items}


def test_seeded_pods_are_on_both_nodes(cluster: KindCluster, pods: list[str]) -> None:
    assert len(nodes_of(cluster, pods)) == 2


def test_firewall_configuration_has_the_peerings_table_and_the_rendered_rules(
    cluster: KindCluster, pods: list[str]
) -> None:
    with step("convergence"):
        fc = wait_converged(cluster, "rome")
    table = fc["spec"]["table"]
    assert table["name"] == "liqosec-rome"
    assert fc["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "liqosec"
    [owner] = fc["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner.get("controller")) == ("PeeringConnectivity", "rome", True)
    [chain] = table["chains"]
    assert (chain["hook"], chain["type"]) == ("forward", "filter")


def test_every_nodes_agent_applied_the_firewall(cluster: KindCluster, pods: list[str]) -> None:
    nodes = set(cluster.node_names())

    def applied() -> set[str] | None:
        fc = live_firewall(cluster, "rome") or {}
        hosts = {
            c["host"]
            for c in fc.get("status", {}).get("conditions", [])
            if c.get("type") == "Applied" and c.get("status") == "True"
        }
        return hosts if hosts >= nodes else None

    with step("convergence (Liqo's agents)"):
        assert eventually(applied, timeout=RECONCILE_TIMEOUT_S, what="Applied=True from every node's agent") >= nodes


def test_live_firewall_gives_example_1_verdicts(cluster: KindCluster, pods: list[str]) -> None:
    remote = "10.71.3.4"
    fc = wait_converged(cluster, "rome")
    cart0, web = pod_ip(cluster, "shop-rome", "cart-0"), pod_ip(cluster, "default", "web")
    assert accepts(fc, remote, cart0) and accepts(fc, cart0, remote)
    assert not accepts(fc, cart0, web), "offloaded pods reach only rome"
    assert not accepts(fc, remote, web), "rome reaches only its offloaded pods"
    assert accepts(fc, web, "10.244.200.1"), "local traffic is outside the peering's scope"


def kubectl_liqosec(cluster: KindCluster, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """`kubectl liqosec ...` as an operator runs it: kubectl finds the plugin on PATH, KUBECONFIG names the cluster."""
    plugin = shutil.which("kubectl-liqosec", path=str(Path(sys.executable).parent))
    assert plugin, f"kubectl-liqosec is not installed beside {sys.executable} (pip install .)"
    env = {
        **os.environ,
        "PATH": f"{Path(plugin).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "KUBECONFIG": str(cluster.kubeconfig),
    }
    return subprocess.run(
        [cluster.tool["KUBECTL"], "liqosec", *args], capture_output=True, text=True, env=env, timeout=120, check=check
    )


def test_kubectl_liqosec_explain_reads_the_kind_cluster(cluster: KindCluster, pods: list[str]) -> None:
    """The kubectl plugin against the live cluster, through kubectl: its verdicts are the live firewall's."""
    fc = wait_converged(cluster, "rome")
    context = yaml.safe_load(cluster.kubeconfig.read_text())["current-context"]
    remote = "10.71.3.4"
    cart0, web = pod_ip(cluster, "shop-rome", "cart-0"), pod_ip(cluster, "default", "web")
    with step("kubectl liqosec explain"):
        for source, destination, ends in (
            ("shop-rome/cart-0", remote, (cart0, remote)),
            ("shop-rome/cart-0", "default/web", (cart0, web)),
            (remote, "default/web", (remote, web)),
        ):
            # The current context by default, and named with --context, say the same.
            for extra in ((), ("--context", context)):
                done = kubectl_liqosec(
                    cluster,
                    "explain",
                    "-n",
                    "liqo-tenant-rome",
                    "--peering",
                    "rome",
                    "--from",
                    source,
                    "--to",
                    destination,
                    "-o",
                    "json",
                    *extra,
                )
                said = json.loads(done.stdout)
                assert said["peering"]["peeringConnectivity"] == "liqo-tenant-rome/rome", said["peering"]
                assert (said["from"]["ip"], said["to"]["ip"]) == ends
                # A stateful firewall lets the reply back by conntrack; a stateless one must accept it too.
                opens = accepts(fc, *ends) and (said["peering"]["stateful"] or accepts(fc, ends[1], ends[0]))
                assert said["connection"]["opens"] == opens, (source, destination, said["connection"])
        text = kubectl_liqosec(
            cluster,
            "explain",
            "--peering",
            "liqo-tenant-rome/rome",
            "--from",
            "shop-rome/cart-0",
            "--to",
            "default/web",
        ).stdout
        print(f"\nkubectl liqosec explain:\n{text}")
        assert "spec.rules[" in text, text  # names the rule that decides
    with step("kubectl liqosec (unknown context)"):
        done = kubectl_liqosec(
            cluster, "explain", "--context", "nope", "--from", remote, "--to", "default/web", check=False
        )
        assert done.returncode == 1, done
        assert done.stderr.strip().count("\n") == 0 and 'context "nope"' in done.stderr, done.stderr


def test_kubectl_get_peeringconnectivities_shows_ready_true(cluster: KindCluster, pods: list[str]) -> None:
    def ready() -> str | None:
        out = cluster.kubectl("get", PC, "-n", "liqo-tenant-rome")
        return out if printed_column(out, "rome", "READY") == "True" else None

    out = eventually(ready, timeout=RECONCILE_TIMEOUT_S, what="`kubectl get peeringconnectivities` to show READY True")
    assert printed_column(out, "rome", "MODE") == "FullPodToPod"


def printed_column(table: str, row_name: str, column: str) -> str:
    """A column of `kubectl get` output, cut at the header's offsets (empty cells break split())."""
    header, *rows = table.splitlines()
    starts = [m.start() for m in re.finditer(r"\S+", header)]
    names = header.split()
    i = names.index(column)
    [row] = [r for r in rows if r.split()[0] == row_name]
    end = starts[i + 1] if i + 1 < len(starts) else None
    return row[starts[i] : end].strip()


def test_pod_traffic_matches_the_matrix(cluster: KindCluster, pods: list[str], tmp_path: Path) -> None:
    with step("traffic (Example 1)"):
        wait_converged(cluster, "rome")
        verdicts = traffic_matches_matrix(cluster, pods, tmp_path, "Example 1")
        assert any(verdicts.values()) and not all(verdicts.values()), "a matrix of one verdict proves little"
        assert verdicts[("default/web", "monitoring/metrics")], "local pods talk across nodes"
        assert not verdicts[("shop-rome/cart-0", "shop-rome/cart-1")], "offloaded pods are isolated"


def test_traffic_follows_a_rule_change(cluster: KindCluster, pods: list[str], tmp_path: Path) -> None:
    """Offloaded pods may now use the monitoring namespace, both ways (Liqo's firewall is stateless)."""
    pc = cluster.get_json(PC, "-n", "liqo-tenant-rome", "rome")
    hole = [
        {"source": {"group": "offloaded"}, "destination": {"namespace": "monitoring"}, "action": "allow"},
        {"source": {"namespace": "monitoring"}, "destination": {"group": "offloaded"}, "action": "allow"},
    ]
    rules = hole + pc["spec"]["rules"]
    with step("rule change"):
        cluster.kubectl(
            "-n", "liqo-tenant-rome", "patch", PC, "rome", "--type=merge", "-p", json.dumps({"spec": {"rules": rules}})
        )
        wait_converged(cluster, "rome")
    with step("traffic (after the rule change)"):
        verdicts = traffic_matches_matrix(cluster, pods, tmp_path, "rule change")
        assert verdicts[("shop-rome/cart-0", "monitoring/metrics")]
        assert verdicts[("monitoring/metrics", "shop-rome/cart-1")]


def test_traffic_follows_a_pod_move(cluster: KindCluster, pods: list[str], tmp_path: Path) -> None:
    """cart-1 moves to the other node (a new address); the firewall and the traffic follow."""
    old = cluster.get_json("pod", "-n", "shop-rome", "cart-1")
    old_node, old_ip = old["spec"]["nodeName"], old["status"]["podIP"]
    [new_node] = [n for n in cluster.node_names() if n != old_node]
    with step("pod move"):
        cluster.kubectl("-n", "shop-rome", "delete", "pod", "cart-1", "--wait=true", "--timeout=60s", timeout=80)
        cluster.apply([server_pod("cart-1", "shop-rome", offloaded_by("rome"), new_node)])
        wait_pods_ready(cluster, "shop-rome")
        assert pod_ip(cluster, "shop-rome", "cart-1") != old_ip
        wait_converged(cluster, "rome")
    with step("traffic (after the pod move)"):
        verdicts = traffic_matches_matrix(cluster, pods, tmp_path, "pod move")
        assert verdicts[("monitoring/metrics", "shop-rome/cart-1")]


def test_metrics_endpoint_serves_reconcile_total(cluster: KindCluster, pods: list[str]) -> None:
    """Read through the API server's pod proxy; only the leader reconciles, so one pod has the samples."""
    items = cluster.get_json("pods", "-n", NAMESPACE, "-l", "app.kubernetes.io/name=liqosec")["items"]
    assert len(items) == 2

    def reconciled() -> float | None:
        total = 0.0
        for p in items:
            text = cluster.kubectl(
                "get", "--raw", f"/api/v1/namespaces/{NAMESPACE}/pods/{p['metadata']['name']}:8080/proxy/metrics"
            )
            total += sum(
                float(m.group(1))
                for m in re.finditer(r"^controller_runtime_reconcile_total\{[^}]*\} (\S+)$", text, re.M)
            )
        return total if total > 0 else None

    assert eventually(reconciled, timeout=RECONCILE_TIMEOUT_S, what="controller_runtime_reconcile_total > 0") > 0


def prometheus_query(cluster: KindCluster, query: str) -> list[dict[str, Any]]:
    path = (
        f"/api/v1/namespaces/{PROMETHEUS_NAMESPACE}/services/{PROMETHEUS}:http/proxy/api/v1/query?"
        + urllib.parse.urlencode({"query": query})
    )
    answer = json.loads(cluster.kubectl("get", "--raw", path))
    assert answer["status"] == "success", answer
    return list(answer["data"]["result"])


# The durations the kind suite renders the chart's alerts with, so one fires within a test.
ALERT_DURATIONS = (
    "notReadyFor",
    "applyFailedFor",
    "writeErrorsFor",
    "noLeaderFor",
    "reconcileErrorsFor",
    "invalidClusterStateFor",
)


def alert_rules(cluster: KindCluster) -> str:
    """The chart's PrometheusRule, rendered by helm for this Prometheus (its job is `liqosec`), as a rule file."""
    settings = [
        "--set",
        "metrics.prometheusRule.enabled=true",
        "--set-string",
        'metrics.prometheusRule.selector=job="liqosec"',
    ]
    for name in ALERT_DURATIONS:
        settings += ["--set", f"metrics.prometheusRule.{name}=10s"]
    rendered = cluster.helm(
        "template",
        RELEASE,
        str(ROOT / "chart"),
        "-n",
        NAMESPACE,
        "--show-only",
        "templates/prometheusrule.yaml",
        *settings,
    ).stdout
    [rule] = [d for d in yaml.safe_load_all(rendered) if d]
    assert rule["kind"] == "PrometheusRule", rule
    return str(yaml.safe_dump(rule["spec"]))


def prometheus_get(cluster: KindCluster, api: str, **params: str) -> Any:
    path = f"/api/v1/namespaces/{PROMETHEUS_NAMESPACE}/services/{PROMETHEUS}:http/proxy/api/v1/{api}"
    answer = json.loads(
        cluster.kubectl("get", "--raw", path + ("?" + urllib.parse.urlencode(params) if params else ""))
    )
    assert answer["status"] == "success", answer
    return answer["data"]


def firing(cluster: KindCluster, alert: str, **labels: str) -> list[dict[str, Any]] | None:
    """The alert's series in Prometheus' ALERTS that are firing with these labels, or None."""
    matchers = "".join(f', {k}="{v}"' for k, v in labels.items())
    found = prometheus_query(cluster, f'ALERTS{{alertname="{alert}", alertstate="firing"{matchers}}}')
    return found or None


def test_prometheus_scrapes_the_metrics_service(e2e: Session, pods: list[str]) -> None:
    cluster = e2e.kind
    with step("prometheus"):
        rules = alert_rules(cluster)
        cluster.apply(
            prometheus(e2e.images["prometheus"], scrape_namespace=NAMESPACE, service=f"{RELEASE}-metrics", rules=rules)
        )
        cluster.kubectl(
            "-n", PROMETHEUS_NAMESPACE, "rollout", "status", f"deployment/{PROMETHEUS}", "--timeout=180s", timeout=200
        )

        def targets_up() -> list[dict[str, Any]] | None:
            up = prometheus_query(cluster, 'up{job="liqosec"} == 1')
            return up if len(up) == 2 else None

        eventually(targets_up, timeout=RECONCILE_TIMEOUT_S, what="both liqosec replicas scraped (up == 1)")

        def reconciles() -> float | None:
            result = prometheus_query(cluster, 'sum(controller_runtime_reconcile_total{job="liqosec"})')
            return float(result[0]["value"][1]) if result and float(result[0]["value"][1]) > 0 else None

        total = eventually(reconciles, timeout=RECONCILE_TIMEOUT_S, what="Prometheus to answer the reconcile counter")
        assert total > 0
        writes = prometheus_query(cluster, 'sum(liqosec_firewall_writes_total{peering="liqo-tenant-rome/rome"})')
        assert writes and float(writes[0]["value"][1]) > 0, writes
    with step("prometheus (the chart's alerts loaded)"):
        expected = {r["alert"] for g in yaml.safe_load(rules)["groups"] for r in g["rules"] if "alert" in r}
        loaded = {r["name"]: r for g in prometheus_get(cluster, "rules", type="alert")["groups"] for r in g["rules"]}
        assert set(loaded) == expected, (sorted(loaded), sorted(expected))
        assert all(r["health"] == "ok" for r in loaded.values()), [(n, r.get("lastError")) for n, r in loaded.items()]
        # A healthy release fires none of them.
        assert prometheus_query(cluster, 'ALERTS{alertstate="firing", alertname=~"Liqosec.*"}') == []


def test_a_new_offloaded_pod_reaches_the_firewall(cluster: KindCluster, pods: list[str]) -> None:
    configure_peer(cluster, "milan", "10.72.0.0/16")
    node = cluster.node_names()[1]
    cluster.apply([namespace("shop-milan"), server_pod("api-0", "shop-milan", offloaded_by("milan"), node)])
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

    with step("convergence (milan)"):
        eventually(
            lambda: allowing(pod_ip(cluster, "shop-milan", "api-0")),
            timeout=RECONCILE_TIMEOUT_S,
            what="api-0 allowed from milan",
        )
        cluster.apply([server_pod("api-1", "shop-milan", offloaded_by("milan"), cluster.node_names()[0])])
        wait_pods_ready(cluster, "shop-milan")
        api_1 = pod_ip(cluster, "shop-milan", "api-1")
        fc = eventually(
            lambda: allowing(api_1), timeout=RECONCILE_TIMEOUT_S, what="the new pod api-1 allowed from milan"
        )
    assert not accepts(fc, remote, pod_ip(cluster, "default", "web"))


def test_every_dashboard_query_returns_data(cluster: KindCluster, pods: list[str]) -> None:
    """Each panel of the chart's Grafana dashboard, its variables filled as Grafana's `All` would, asked of
    the real Prometheus scraping the release: every query must return a series with a number, at some
    point while the cluster works (a DryRun policy staged, a pod offloaded)."""
    configure_peer(cluster, "genoa", "10.75.0.0/16")
    staged = policy("genoa", [{"source": {"group": "remote-cluster"}, "action": "deny"}])
    staged["spec"]["enforcement"] = "DryRun"
    answered: dict[str, str] = {}
    asked = dashboards.queries()
    assert asked, "the dashboard has no queries"

    def all_answered() -> bool | None:
        for query, promql in asked:
            key = f"{query.panel} [{query.ref}]"
            if key in answered:
                continue
            for series in prometheus_query(cluster, promql):
                value = float(series["value"][1])
                if value == value:  # not NaN: a rate or quantile over real samples
                    answered[key] = f"{series['metric']} = {value:g}"
                    break
        return True if len(answered) == len(asked) else None

    with step("dashboard (every panel's query against Prometheus)"):
        cluster.apply([staged])
        cluster.apply([server_pod("api-2", "shop-milan", offloaded_by("milan"), cluster.node_names()[0])])
        wait_pods_ready(cluster, "shop-milan")
        try:
            eventually(all_answered, timeout=180, what="every dashboard query to return data")
        except TimeoutError as err:
            missing = [f"{q.panel} [{q.ref}]: {e}" for q, e in asked if f"{q.panel} [{q.ref}]" not in answered]
            raise AssertionError(f"{err}; no data for:\n  " + "\n  ".join(missing)) from err
        finally:
            cluster.kubectl("-n", "liqo-tenant-genoa", "delete", PC, "genoa", "--ignore-not-found")
            cluster.kubectl("-n", "shop-milan", "delete", "pod", "api-2", "--ignore-not-found", "--wait=false")
    print("\ndashboard answers:\n  " + "\n  ".join(f"{k}: {v}" for k, v in sorted(answered.items())))


def test_deleting_the_policy_removes_its_firewall(cluster: KindCluster, pods: list[str]) -> None:
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
    with step("convergence (turin)"):
        eventually(
            lambda: live_firewall(cluster, "turin"),
            timeout=RECONCILE_TIMEOUT_S,
            what="FirewallConfiguration liqosec-turin",
        )
        cluster.kubectl("delete", PC, "-n", "liqo-tenant-turin", "turin", "--wait=true", "--timeout=120s", timeout=140)
        eventually(
            lambda: True if live_firewall(cluster, "turin") is None else None,
            timeout=RECONCILE_TIMEOUT_S,
            what="FirewallConfiguration liqosec-turin to be deleted",
        )
    managed = cluster.get_json(FC, "-A", "-l", MANAGED_BY)["items"]
    assert "liqo-tenant-turin" not in {f["metadata"]["namespace"] for f in managed}


def test_the_standby_takes_over_when_the_leader_is_killed(cluster: KindCluster, pods: list[str]) -> None:
    items = cluster.get_json("pods", "-n", NAMESPACE, "-l", "app.kubernetes.io/name=liqosec")["items"]
    names = {p["metadata"]["name"] for p in items}
    leader = cluster.get_json("lease", "-n", NAMESPACE, RELEASE)["spec"]["holderIdentity"]
    [standby] = names - {leader}
    nodes = cluster.node_names()
    # Cordoned nodes keep the Deployment's replacement pod Pending: the standby is the only candidate.
    for node in nodes:
        cluster.kubectl("cordon", node)
    try:
        with step("leader kill"):
            cluster.kubectl("-n", NAMESPACE, "delete", "pod", leader, "--grace-period=0", "--force", "--wait=false")
            started = time.monotonic()
            eventually(
                lambda: (
                    True
                    if cluster.get_json("lease", "-n", NAMESPACE, RELEASE)["spec"].get("holderIdentity") == standby
                    else None
                ),
                timeout=60,
                what=f"the standby {standby} to hold the lease",
            )
            takeover = time.monotonic() - started
        with step("convergence (by the standby)"):
            started = time.monotonic()
            pc = cluster.get_json(PC, "-n", "liqo-tenant-rome", "rome")
            closed = pc["spec"]["rules"][2:]  # the rule change's hole closes again
            cluster.kubectl(
                "-n",
                "liqo-tenant-rome",
                "patch",
                PC,
                "rome",
                "--type=merge",
                "-p",
                json.dumps({"spec": {"rules": closed}}),
            )
            wait_converged(cluster, "rome")
            took = time.monotonic() - started
            print(
                f"\nleader {leader} killed; {standby} held the lease after {takeover:.1f} s, "
                f"converged a change in {took:.1f} s"
            )
            fc = live_firewall(cluster, "rome")
            cart0, metrics = pod_ip(cluster, "shop-rome", "cart-0"), pod_ip(cluster, "monitoring", "metrics")
            assert fc and not accepts(fc, cart0, metrics)
    finally:
        for node in nodes:
            cluster.kubectl("uncordon", node)
    with step("leader kill (replacement replica)"):
        cluster.kubectl("-n", NAMESPACE, "rollout", "status", f"deployment/{RELEASE}", "--timeout=180s", timeout=200)


def test_helm_upgrade_with_changed_values(cluster: KindCluster, pods: list[str]) -> None:
    with step("helm upgrade"):
        cluster.install_liqosec(
            IMAGE,
            "--reuse-values",
            "--set",
            "workers=3",
            "--set",
            "logLevel=info",
            "--set",
            "podLabels.e2e=upgraded",
            command="upgrade",
        )
        cluster.kubectl("-n", NAMESPACE, "rollout", "status", f"deployment/{RELEASE}", "--timeout=240s", timeout=260)
        dep = cluster.get_json("deployment", "-n", NAMESPACE, RELEASE)
        args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
        assert "--workers=3" in args and "--log-level=info" in args, args
        items = cluster.get_json("pods", "-n", NAMESPACE, "-l", "e2e=upgraded")["items"]
        assert len([p for p in items if not p["metadata"].get("deletionTimestamp")]) == 2
    with step("convergence (after the upgrade)"):
        cluster.apply([server_pod("cart-2", "shop-rome", offloaded_by("rome"), cluster.node_names()[1])])
        wait_pods_ready(cluster, "shop-rome")
        cart2 = pod_ip(cluster, "shop-rome", "cart-2")
        wait_converged(cluster, "rome")
        fc = live_firewall(cluster, "rome")
        assert fc and accepts(fc, "10.71.3.4", cart2)


WEBHOOK = "peeringconnectivities.security.liqo.io"  # the webhook's name in the chart's ValidatingWebhookConfiguration
WEBHOOK_SERVICE = f"{RELEASE}-webhook"


def policy(peer: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "security.liqo.io/v1",
        "kind": "PeeringConnectivity",
        "metadata": {"name": peer, "namespace": f"liqo-tenant-{peer}"},
        "spec": {"rules": rules},
    }


def kubectl_refusal(cluster: KindCluster, obj: dict[str, Any]) -> str:
    """What `kubectl apply` prints for a write that must be refused (an AssertionError when it is admitted)."""
    try:
        cluster.apply([obj])
    except CommandError as err:
        return err.stderr
    meta = obj["metadata"]
    raise AssertionError(f"PeeringConnectivity {meta['namespace']}/{meta['name']} was admitted by kubectl apply")


def api_refusal(write: Callable[[], object], what: str) -> str:
    """The API server's own Status message for a write that must be refused. kubectl shows only the causes
    of an Invalid answer ("The request is invalid: spec.rules[4]: ..."), not who gave them."""
    try:
        write()
    except errors.Invalid as err:
        return err.message
    raise AssertionError(f"{what} was admitted through the API")


def never_decides(said: str, field: str) -> bool:
    return re.search(re.escape(f"{field}: ") + ".*can never decide", said, re.S) is not None


def denied_by_the_webhook(said: str, field: str) -> bool:
    """The API server's words for a refusal by the chart's webhook of a rule that can never decide, naming it."""
    return said.startswith(f'admission webhook "{WEBHOOK}" denied the request: ') and never_decides(said, field)


def webhook_endpoints(cluster: KindCluster) -> list[str] | None:
    """Ready addresses behind the webhook's Service, on its named port (None while there are none)."""
    slices = cluster.get_json("endpointslices", "-n", NAMESPACE, "-l", f"kubernetes.io/service-name={WEBHOOK_SERVICE}")
    ready = [
        address
        for s in slices["items"]
        if any(p.get("name") == "webhook" for p in s.get("ports") or [])
        for e in s.get("endpoints") or []
        if e.get("conditions", {}).get("ready")
        for address in e["addresses"]
    ]
    return ready or None


def set_webhook(cluster: KindCluster, *values: str) -> None:
    cluster.install_liqosec(IMAGE, "--reuse-values", *values, command="upgrade")
    cluster.kubectl("-n", NAMESPACE, "rollout", "status", f"deployment/{RELEASE}", "--timeout=240s", timeout=260)


def test_the_charts_webhook_refuses_a_rule_that_can_never_decide(cluster: KindCluster, pods: list[str]) -> None:
    """The chart's webhook deployed for real: the API server calls the pods through the Service, trusting
    the CA Helm generated; refusals name the field, valid writes (and the controller's own finalizer
    patches) go through with failurePolicy Fail, and switching it off removes its configuration."""
    # Everything from the upgrade on is in the try: whatever fails, the webhook is switched off for the tests after.
    try:
        with step("webhook (helm upgrade, enabled)"):
            set_webhook(cluster, "--set", "webhook.enabled=true", "--set", "webhook.failurePolicy=Fail")
            config = cluster.get_json("validatingwebhookconfiguration", RELEASE)
            [hook] = config["webhooks"]
            assert (hook["name"], hook["failurePolicy"]) == (WEBHOOK, "Fail"), hook
            secret = cluster.get_json("secret", "-n", NAMESPACE, f"{RELEASE}-webhook-tls")
            assert hook["clientConfig"]["caBundle"] == secret["data"]["ca.crt"], "the caBundle is not the Secret's CA"
            ready = eventually(
                lambda: webhook_endpoints(cluster), timeout=120, what=f"ready endpoints of {WEBHOOK_SERVICE}"
            )
            print(f"\nwebhook {WEBHOOK} served by {ready}")
        rome = cluster.get_json(PC, "-n", "liqo-tenant-rome", "rome")
        rules = rome["spec"]["rules"]
        api = RestKubeClient(load_api_client(str(cluster.kubeconfig)))
        with step("webhook (refuses an update with a rule that can never decide)"):
            never = [*rules, rules[0]]
            said = kubectl_refusal(cluster, policy("rome", never))
            assert never_decides(said, f"spec.rules[{len(rules)}]"), said
            print(f"\nkubectl apply refused: {said.strip()}")
            said = api_refusal(
                lambda: api.patch(
                    PEERING_CONNECTIVITIES, "rome", {"spec": {"rules": never}}, namespace="liqo-tenant-rome"
                ),
                "an update of rome",
            )
            assert denied_by_the_webhook(said, f"spec.rules[{len(rules)}]"), said
            print(f"the API server's message: {said}")
            after = cluster.get_json(PC, "-n", "liqo-tenant-rome", "rome")
            assert after["metadata"]["generation"] == rome["metadata"]["generation"], "a refused update was stored"
        with step("webhook (refuses a create with a rule that can never decide)"):
            configure_peer(cluster, "turin", "10.73.0.0/16")
            deny_all = {"source": {"group": "remote-cluster"}, "action": "deny"}
            to_offloaded = {
                "source": {"group": "remote-cluster"},
                "destination": {"group": "offloaded"},
                "action": "allow",
            }
            never = [deny_all, to_offloaded]
            said = kubectl_refusal(cluster, policy("turin", never))
            assert never_decides(said, "spec.rules[1]"), said
            said = api_refusal(lambda: api.create(PEERING_CONNECTIVITIES, policy("turin", never)), "turin")
            assert denied_by_the_webhook(said, "spec.rules[1]"), said
            assert live_firewall(cluster, "turin") is None
        with step("webhook (admits a valid update; the controller converges it)"):
            hole = {"source": {"group": "offloaded"}, "destination": {"namespace": "monitoring"}, "action": "allow"}
            cluster.apply([policy("rome", [hole, *rules])])
            fc = wait_converged(cluster, "rome")
            cart0, metrics = pod_ip(cluster, "shop-rome", "cart-0"), pod_ip(cluster, "monitoring", "metrics")
            assert accepts(fc, cart0, metrics), "the admitted rule is not in the live firewall"
        with step("webhook (admits a valid create; the controller's finalizer and status go through)"):
            cluster.apply([policy("turin", [to_offloaded, deny_all])])
            wait_converged(cluster, "turin")
            turin = cluster.get_json(PC, "-n", "liqo-tenant-turin", "turin")
            assert FINALIZER in turin["metadata"].get("finalizers", []), turin["metadata"]
        with step("webhook (delete: the controller removes its finalizer)"):
            cluster.kubectl(
                "delete", PC, "-n", "liqo-tenant-turin", "turin", "--wait=true", "--timeout=120s", timeout=140
            )
            eventually(
                lambda: True if live_firewall(cluster, "turin") is None else None,
                timeout=RECONCILE_TIMEOUT_S,
                what="FirewallConfiguration liqosec-turin to be deleted",
            )
        with step("webhook (admits the original rules again)"):
            cluster.apply([policy("rome", rules)])
            wait_converged(cluster, "rome")
    finally:
        with step("webhook (helm upgrade, disabled)"):
            set_webhook(cluster, "--set", "webhook.enabled=false", "--set", "webhook.failurePolicy=Ignore")

            def removed() -> bool | None:
                left = cluster.kubectl(
                    "get",
                    f"validatingwebhookconfiguration/{RELEASE}",
                    f"service/{WEBHOOK_SERVICE}",
                    f"secret/{RELEASE}-webhook-tls",
                    "-n",
                    NAMESPACE,
                    "--ignore-not-found",
                    "-o",
                    "name",
                ).split()
                if left:
                    raise AssertionError(f"left behind: {left}")
                return True

            eventually(removed, timeout=60, what="the webhook's configuration, Service and Secret to be gone")
            dep = cluster.get_json("deployment", "-n", NAMESPACE, RELEASE)
            assert not any("webhook" in a for a in dep["spec"]["template"]["spec"]["containers"][0]["args"])


def refused_by_the_admission_policy(cluster: KindCluster, *args: str) -> str:
    """A kubectl write that the chart's ValidatingAdmissionPolicy must refuse; returns the API server's message."""
    try:
        cluster.kubectl(*args)
    except CommandError as err:
        said = err.stderr.strip()
        assert ADMISSION_POLICY_DENIED in said, said
        return said
    raise AssertionError(f"`kubectl {' '.join(args)}` was admitted; the admission policy should refuse it")


def test_the_admission_policy_keeps_each_writer_to_its_own_firewalls(cluster: KindCluster, pods: list[str]) -> None:
    """Least privilege beyond RBAC, on the cluster as installed: the chart's ValidatingAdmissionPolicy is
    there by default, the controller converged under it (the fixtures), liqosec's ServiceAccount cannot
    touch a FirewallConfiguration Liqo's code made, and another account that RBAC lets write
    FirewallConfigurations cannot touch liqosec's."""
    tenant = "liqo-tenant-rome"
    liqosec_sa = f"system:serviceaccount:{NAMESPACE}:{RELEASE}"
    writer_sa = "system:serviceaccount:default:firewall-writer"
    with step("admission policy (installed by default)"):
        policy = cluster.get_json("validatingadmissionpolicy", ADMISSION_POLICY)
        binding = cluster.get_json("validatingadmissionpolicybinding", ADMISSION_POLICY)
        assert binding["spec"]["policyName"] == policy["metadata"]["name"]
        assert binding["spec"]["validationActions"] == ["Deny"], binding["spec"]
        ours = live_firewall(cluster, "rome")
        assert ours is not None, "liqosec wrote no firewall for rome with the policy in place"
    [remap] = of_kind(forge({**PEERING_SPEC, "remappingFirewalls": True}), "FirewallConfiguration")
    liqos = for_apply(remap)
    liqos["metadata"]["namespace"] = tenant
    name = liqos["metadata"]["name"]
    writer = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "firewall-writer", "namespace": "default"}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "e2e-firewall-writer"},
            "rules": [
                {
                    "apiGroups": ["networking.liqo.io"],
                    "resources": ["firewallconfigurations"],
                    "verbs": ["get", "list", "create", "update", "patch", "delete"],
                }
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "e2e-firewall-writer"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "e2e-firewall-writer"},
            "subjects": [{"kind": "ServiceAccount", "name": "firewall-writer", "namespace": "default"}],
        },
    ]
    try:
        with step("admission policy (liqosec's account on a Liqo-made FirewallConfiguration)"):
            cluster.kubectl("create", "-f", "-", stdin=json.dumps(liqos))
            said = refused_by_the_admission_policy(
                cluster, "-n", tenant, "label", FC, name, "liqosec.test/touched=yes", "--as", liqosec_sa
            )
            assert "not liqosec's" in said, said
            said = refused_by_the_admission_policy(
                cluster, "-n", tenant, "delete", FC, name, "--wait=false", "--as", liqosec_sa
            )
            print(f"\nliqosec's account refused on Liqo's {name}: {said}")
            assert (
                cluster.get_json(FC, "-n", tenant, name)["metadata"].get("labels", {}).get("liqosec.test/touched")
                is None
            )
        with step("admission policy (another account on liqosec's firewall)"):
            cluster.apply(writer)
            # RBAC allows it (asked of the API server), so what refuses below is the policy.
            assert cluster.kubectl("auth", "can-i", "delete", FC, "-n", tenant, "--as", writer_sa).strip() == "yes"
            fc = "liqosec-rome"
            said = refused_by_the_admission_policy(
                cluster, "-n", tenant, "delete", FC, fc, "--wait=false", "--as", writer_sa
            )
            assert "is liqosec's" in said, said
            said = refused_by_the_admission_policy(
                cluster,
                "-n",
                tenant,
                "label",
                FC,
                fc,
                "app.kubernetes.io/managed-by=someone",
                "--overwrite",
                "--as",
                writer_sa,
            )
            print(f"another account refused on {fc}: {said}")
            # Its own firewalls, not liqosec's, are still its to write: the policy is narrow.
            cluster.kubectl("-n", tenant, "label", FC, name, "liqosec.test/touched=yes", "--as", writer_sa)
        wait_converged(cluster, "rome")
    finally:
        cluster.kubectl("-n", tenant, "delete", FC, name, "--ignore-not-found", "--wait=false")
        cluster.kubectl("delete", "clusterrolebinding,clusterrole", "e2e-firewall-writer", "--ignore-not-found")
        cluster.kubectl("-n", "default", "delete", "serviceaccount", "firewall-writer", "--ignore-not-found")


def test_a_missing_verb_fails_visibly(cluster: KindCluster, pods: list[str]) -> None:
    """RBAC for real: without `create` on FirewallConfigurations a new peering must not stall silently."""
    role = cluster.get_json("clusterrole", RELEASE)
    original = {k: v for k, v in role.items() if k != "status"}
    original["metadata"] = {k: v for k, v in role["metadata"].items() if k in ("name", "labels", "annotations")}
    crippled = json.loads(json.dumps(original))
    for rule in crippled["rules"]:
        if "firewallconfigurations" in rule["resources"]:
            rule["verbs"] = [v for v in rule["verbs"] if v != "create"]
    with step("rbac (verb removed)"):
        cluster.kubectl("replace", "-f", "-", stdin=json.dumps(crippled))
        configure_peer(cluster, "verona", "10.74.0.0/16")
        cluster.apply(
            [
                {
                    "apiVersion": "security.liqo.io/v1",
                    "kind": "PeeringConnectivity",
                    "metadata": {"name": "verona", "namespace": "liqo-tenant-verona"},
                    "spec": {"rules": [{"source": {"group": "remote-cluster"}, "action": "deny"}]},
                }
            ]
        )

        def visible() -> str | None:
            pc = cluster.get_json(PC, "-n", "liqo-tenant-verona", "verona")
            for c in pc.get("status", {}).get("conditions", []):
                if c.get("status") == "False" and re.search("forbidden|403", c.get("message", ""), re.I):
                    return f"status condition {c['type']}: {c['message']}"
            events = cluster.get_json(
                "events", "-n", "liqo-tenant-verona", "--field-selector", "involvedObject.name=verona"
            )["items"]
            for e in events:
                if e.get("type") == "Warning" and re.search("forbidden|403", e.get("message", ""), re.I):
                    return f"Warning Event {e.get('reason')}: {e['message']}"
            return None

        try:
            seen = eventually(visible, timeout=90, what="a Warning Event or a status condition naming the 403")
            print(f"\nmissing verb reported: {seen}")
            assert live_firewall(cluster, "verona") is None  # not created while the verb is missing
            alert = eventually(
                lambda: firing(
                    cluster, "LiqosecFirewallWritesFailing", peering="liqo-tenant-verona/verona", reason="Forbidden"
                ),
                timeout=120,
                what="LiqosecFirewallWritesFailing firing in Prometheus for verona (Forbidden)",
            )
            print(f"alert firing: {alert[0]['metric']}")
            assert not firing(cluster, "LiqosecFirewallWritesFailing", peering="liqo-tenant-rome/rome")
        finally:
            cluster.kubectl("replace", "-f", "-", stdin=json.dumps(original))
    with step("rbac (verb restored)"):
        # the failed reconcile is retried with an exponential backoff: allow a few doublings
        wait_converged(cluster, "verona", timeout=RECONCILE_TIMEOUT_S + 240)


def test_a_missing_liqo_crd_keeps_the_controller_not_ready_and_says_so(cluster: KindCluster, pods: list[str]) -> None:
    """Bad input: a Liqo CRD missing at start leaves the pods running, not ready, with a Warning Event
    naming it (no crash loop); installing it makes them ready."""
    crd = "namespaceoffloadings.offloading.liqo.io"
    with step("missing Liqo CRD"):
        cluster.kubectl("delete", "crd", crd, "--wait=true", "--timeout=120s", timeout=140)
        old = {
            p["metadata"]["name"]
            for p in cluster.get_json("pods", "-n", NAMESPACE, "-l", "app.kubernetes.io/name=liqosec")["items"]
        }
        cluster.kubectl("-n", NAMESPACE, "delete", "pod", "-l", "app.kubernetes.io/name=liqosec", "--wait=false")

        def reported() -> list[str] | None:
            items = [
                p
                for p in cluster.get_json("pods", "-n", NAMESPACE, "-l", "app.kubernetes.io/name=liqosec")["items"]
                if p["metadata"]["name"] not in old and p.get("status", {}).get("containerStatuses")
            ]
            if len(items) < 2:
                return None
            for p in items:
                [status] = p["status"]["containerStatuses"]
                assert not status["ready"], f"{p['metadata']['name']} is ready without {crd}"
                assert status["restartCount"] == 0, f"{p['metadata']['name']} restarted: {status}"
            names = {p["metadata"]["name"] for p in items}
            events = cluster.get_json("events", "-n", NAMESPACE, "--field-selector", "type=Warning")["items"]
            said = [
                e["message"]
                for e in events
                if e["involvedObject"].get("name") in names and "namespaceoffloadings" in e.get("message", "")
            ]
            return said or None

        said = eventually(reported, timeout=120, what=f"not-ready pods and a Warning Event naming {crd}")
        print(f"\nmissing CRD reported: {said[0]}")
    with step("missing Liqo CRD (installed again)"):
        cluster.kubectl(
            "apply",
            "--server-side",
            "-f",
            str(ROOT / "hack" / "liqo-crds" / "offloading.liqo.io_namespaceoffloadings.yaml"),
        )
        cluster.wait_for_a_ready_replica(timeout=180)
        wait_converged(cluster, "rome")


def test_invalid_values_are_refused_naming_the_field(cluster: KindCluster, pods: list[str]) -> None:
    with step("helm (invalid values)"):
        result = cluster.helm(
            "upgrade",
            RELEASE,
            str(ROOT / "chart"),
            "-n",
            NAMESPACE,
            "--reuse-values",
            "--set",
            "workers=0",
            check=False,
        )
        assert result.returncode != 0
        assert "workers" in result.stderr, result.stderr
        dep = cluster.get_json("deployment", "-n", NAMESPACE, RELEASE)
        assert "--workers=0" not in dep["spec"]["template"]["spec"]["containers"][0]["args"]


def test_helm_uninstall_leaves_no_liqosec_object(cluster: KindCluster, pods: list[str]) -> None:
    selector = f"app.kubernetes.io/instance={RELEASE}"
    with step("helm uninstall"):
        cluster.helm("uninstall", RELEASE, "-n", NAMESPACE, "--wait", "--timeout", "180s", timeout=200)

        def gone() -> bool | None:
            left = cluster.kubectl(
                "get",
                "deployments,replicasets,pods,services,endpoints,serviceaccounts,roles,rolebindings,configmaps,secrets",
                "-n",
                NAMESPACE,
                "-l",
                selector,
                "-o",
                "name",
            ).split()
            left += cluster.kubectl("get", "clusterroles,clusterrolebindings", "-l", selector, "-o", "name").split()
            left += [
                f"pod/{p['metadata']['name']}"
                for p in cluster.get_json("pods", "-n", NAMESPACE, "-l", "app.kubernetes.io/name=liqosec")["items"]
            ]
            left += [
                s["metadata"]["name"]
                for s in cluster.get_json("secrets", "-n", NAMESPACE)["items"]
                if s["metadata"]["name"].startswith(f"sh.helm.release.v1.{RELEASE}.")
            ]
            if left:
                raise AssertionError(f"left behind: {left}")
            return True

        eventually(gone, timeout=120, what="every object of the release to be gone")
        lease = cluster.get_json("leases", "-n", NAMESPACE)["items"]
        print(
            "\nafter helm uninstall, not the chart's: leases "
            + str([(x["metadata"]["name"], x["spec"].get("holderIdentity")) for x in lease])
            + f", FirewallConfigurations {len(cluster.get_json(FC, '-A', '-l', MANAGED_BY)['items'])}"
        )
