"""What runs beside liqosec in the kind cluster: Liqo's firewall agent as a DaemonSet, and Prometheus.

Both images are built here (hack/images/build.sh liqo-agent prometheus) and loaded with `kind load`.
"""

from __future__ import annotations

from typing import Any

AGENT = "liqo-agent"
AGENT_NAMESPACE = "liqo"
PROMETHEUS = "prometheus"
PROMETHEUS_NAMESPACE = "liqosec-monitoring"


def _cluster_role(name: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": name},
        "rules": rules,
    }


def _binding(name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
    }


def liqo_agent(image: str) -> list[dict[str, Any]]:
    """Liqo's FirewallConfiguration reconciler on every node, as Liqo's fabric runs it: in the node's
    network namespace (hostNetwork), NET_ADMIN, serving the firewalls labelled for all nodes and for
    its own node (spec.nodeName), reporting its node as the host. RBAC: the reconciler's own
    kubebuilder markers (Liqo v1.2.0, pkg/firewall)."""
    ns = AGENT_NAMESPACE
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": AGENT, "namespace": ns}},
        _cluster_role(
            AGENT,
            [
                {
                    "apiGroups": ["networking.liqo.io"],
                    "resources": ["firewallconfigurations"],
                    "verbs": ["get", "list", "watch", "update", "patch"],
                },
                {
                    "apiGroups": ["networking.liqo.io"],
                    "resources": ["firewallconfigurations/status"],
                    "verbs": ["get", "update", "patch"],
                },
                {
                    "apiGroups": ["networking.liqo.io"],
                    "resources": ["firewallconfigurations/finalizers"],
                    "verbs": ["update"],
                },
                {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch", "update"]},
            ],
        ),
        _binding(AGENT, ns),
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": AGENT, "namespace": ns, "labels": {"app": AGENT}},
            "spec": {
                "selector": {"matchLabels": {"app": AGENT}},
                "template": {
                    "metadata": {"labels": {"app": AGENT}},
                    "spec": {
                        "serviceAccountName": AGENT,
                        "hostNetwork": True,
                        "dnsPolicy": "ClusterFirstWithHostNet",
                        "tolerations": [{"operator": "Exists"}],
                        "terminationGracePeriodSeconds": 5,
                        "containers": [
                            {
                                "name": "agent",
                                "image": image,
                                "imagePullPolicy": "Never",
                                "args": ["--node=$(NODE_NAME)", "--v=2"],
                                "env": [
                                    {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}
                                ],
                                "securityContext": {
                                    "privileged": False,
                                    "capabilities": {"add": ["NET_ADMIN", "NET_RAW"]},
                                },
                                "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}},
                            }
                        ],
                    },
                },
            },
        },
    ]


PROMETHEUS_CONFIG = """\
global:
  scrape_interval: 5s
  evaluation_interval: 5s
rule_files: [/etc/prometheus/rules.yaml]
scrape_configs:
  # The chart's metrics Service, through its endpoints: both replicas are scraped.
  - job_name: liqosec
    kubernetes_sd_configs:
      - role: endpoints
        namespaces: {names: [%(namespace)s]}
    relabel_configs:
      - source_labels: [__meta_kubernetes_service_name, __meta_kubernetes_endpoint_port_name]
        regex: %(service)s;metrics
        action: keep
      - source_labels: [__meta_kubernetes_pod_name]
        target_label: pod
"""


def prometheus(image: str, *, scrape_namespace: str, service: str, rules: str) -> list[dict[str, Any]]:
    """Prometheus scraping the chart's metrics Service and evaluating `rules` (a Prometheus rule file:
    the `spec` of the chart's PrometheusRule)."""
    ns = PROMETHEUS_NAMESPACE
    labels = {"app": PROMETHEUS}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": PROMETHEUS, "namespace": ns}},
        _cluster_role(
            PROMETHEUS,
            [
                {
                    "apiGroups": [""],
                    "resources": ["endpoints", "services", "pods"],
                    "verbs": ["get", "list", "watch"],
                },
                {
                    "apiGroups": ["discovery.k8s.io"],
                    "resources": ["endpointslices"],
                    "verbs": ["get", "list", "watch"],
                },
            ],
        ),
        _binding(PROMETHEUS, ns),
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": PROMETHEUS, "namespace": ns},
            "data": {
                "prometheus.yml": PROMETHEUS_CONFIG % {"namespace": scrape_namespace, "service": service},
                "rules.yaml": rules,
            },
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": PROMETHEUS, "namespace": ns, "labels": labels},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": PROMETHEUS,
                        "securityContext": {"runAsNonRoot": True, "runAsUser": 65534, "fsGroup": 65534},
                        "containers": [
                            {
                                "name": "prometheus",
                                "image": image,
                                "imagePullPolicy": "Never",
                                "args": [
                                    "--config.file=/etc/prometheus/prometheus.yml",
                                    "--storage.tsdb.path=/prometheus",
                                    "--web.listen-address=:9090",
                                ],
                                "ports": [{"name": "http", "containerPort": 9090}],
                                "readinessProbe": {"httpGet": {"path": "/-/ready", "port": "http"}, "periodSeconds": 2},
                                "volumeMounts": [
                                    {"name": "config", "mountPath": "/etc/prometheus"},
                                    {"name": "data", "mountPath": "/prometheus"},
                                ],
                            }
                        ],
                        "volumes": [
                            {"name": "config", "configMap": {"name": PROMETHEUS}},
                            {"name": "data", "emptyDir": {}},
                        ],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": PROMETHEUS, "namespace": ns},
            "spec": {"selector": labels, "ports": [{"name": "http", "port": 9090, "targetPort": "http"}]},
        },
    ]
