"""The Helm chart through the real helm binary: lint, and what `helm template` renders for several value sets."""

from __future__ import annotations

import base64
import importlib.util
import os
import subprocess
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "chart"
NAMESPACE = "liqo"


def _load_manifest_checks() -> ModuleType:
    """test/unit/test_manifests.py holds the one permission list and the Deployment checks; reuse them."""
    spec = importlib.util.spec_from_file_location("_manifest_checks", ROOT / "test" / "unit" / "test_manifests.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


checks = _load_manifest_checks()


@cache
def helm_binary() -> str | None:
    """helm built by hack/build-helm.sh into the cache; exit 3 there means not built yet."""
    result = subprocess.run([str(ROOT / "hack" / "build-helm.sh"), "--print-path"], capture_output=True, text=True)
    path = result.stdout.strip()
    if result.returncode == 0 and path and os.access(path, os.X_OK):
        return path
    return None


@pytest.fixture(scope="module")
def helm() -> str:
    path = helm_binary()
    if path is None:
        reason = "helm is not built: run hack/build-helm.sh (builds helm from Go modules into the cache)"
        if os.environ.get("CI") and os.environ.get("LIQOSEC_REQUIRE_HELM") == "1":
            pytest.fail(f"LIQOSEC_REQUIRE_HELM=1 under CI but {reason}")
        pytest.skip(reason)
    return path


def template(helm: str, *settings: str, include_crds: bool = False) -> list[dict[str, Any]]:
    cmd = [helm, "template", "liqosec", str(CHART), "--namespace", NAMESPACE]
    cmd += [arg for s in settings for arg in ("--set", s)]
    if include_crds:
        cmd.append("--include-crds")
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def template_error(helm: str, *settings: str) -> str:
    cmd = [helm, "template", "liqosec", str(CHART), "--namespace", NAMESPACE]
    cmd += [arg for s in settings for arg in ("--set", s)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0, "expected helm template to refuse these values"
    return result.stderr


def kinds(objects: Sequence[Mapping[str, Any]]) -> list[str]:
    return sorted(o["kind"] for o in objects)


def args_of(objects: Sequence[Mapping[str, Any]]) -> list[str]:
    return list(checks.controller_container(checks.one(objects, "Deployment"))["args"])


def test_chart_passes_helm_lint_strict(helm: str) -> None:
    result = subprocess.run([helm, "lint", "--strict", str(CHART)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_defaults_render_a_leader_elected_pair_with_metrics_service(helm: str) -> None:
    objects = template(helm)
    assert kinds(objects) == sorted(
        ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Deployment", "Service"]
    )
    deployment = checks.one(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    args = args_of(objects)
    assert args[0] == "run"
    assert {"--workers=4", "--resync=600", "--leader-elect", "--log-format=json", "--log-level=info"} <= set(args)
    assert "--leader-election-namespace=$(POD_NAMESPACE)" in args
    assert checks.deployment_faults(deployment) == []
    assert all(o["metadata"].get("namespace") in (None, NAMESPACE) for o in objects)


def test_rendered_rbac_grants_everything_the_controller_calls(helm: str) -> None:
    objects = template(helm)
    cluster_rules = checks.one(objects, "ClusterRole")["rules"]
    assert checks.missing_permissions(cluster_rules, checks.CLUSTER_PERMISSIONS) == []
    assert checks.missing_permissions(checks.one(objects, "Role")["rules"], checks.LEASE_PERMISSIONS) == []
    sa = checks.one(objects, "ServiceAccount")["metadata"]["name"]
    assert checks.one(objects, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == sa
    for kind in ("ClusterRoleBinding", "RoleBinding"):
        [subject] = checks.one(objects, kind)["subjects"]
        assert (subject["name"], subject["namespace"]) == (sa, NAMESPACE)


def test_chart_rbac_is_the_same_as_the_manifests(helm: str) -> None:
    chart_rules = checks.one(template(helm), "ClusterRole")["rules"]
    manifest_rules = checks.one(checks.manifest_objects(), "ClusterRole")["rules"]
    assert chart_rules == manifest_rules


def test_values_become_flags(helm: str) -> None:
    objects = template(
        helm,
        "workers=7",
        "resync=120",
        "replicas=3",
        "logLevel=debug",
        "logFormat=console",
        "leaderElection.id=sec-lease",
        "extraArgs={--context=prod}",
    )
    assert checks.one(objects, "Deployment")["spec"]["replicas"] == 3
    args = args_of(objects)
    assert {
        "--workers=7",
        "--resync=120",
        "--log-level=debug",
        "--log-format=console",
        "--leader-election-id=sec-lease",
        "--context=prod",
    } <= set(args)


def test_rendered_args_are_accepted_by_the_real_run_command(helm: str) -> None:
    for settings, elect in (((), True), (("leaderElection.enabled=false", "replicas=1"), False)):
        objects = template(helm, *settings)
        parsed, options = checks.run_options(args_of(objects), NAMESPACE)
        assert options.leader_elect is elect
        assert options.leader_election_namespace == NAMESPACE
        container = checks.controller_container(checks.one(objects, "Deployment"))
        assert checks.port_of(parsed.health_probe_bind_address) == checks.probe_port(container, "readinessProbe")


def test_custom_ports_move_probes_and_metrics_with_the_flags(helm: str) -> None:
    objects = template(helm, "healthPort=9440", "metricsPort=9090")
    deployment = checks.one(objects, "Deployment")
    assert {"--health-probe-bind-address=:9440", "--metrics-bind-address=:9090"} <= set(args_of(objects))
    assert checks.deployment_faults(deployment) == []
    [port] = checks.one(objects, "Service")["spec"]["ports"]
    assert port["targetPort"] == "metrics"


def test_single_replica_without_leader_election_has_no_lease_role(helm: str) -> None:
    objects = template(helm, "leaderElection.enabled=false", "replicas=1")
    assert "--no-leader-elect" in args_of(objects)
    assert "Role" not in kinds(objects) and "RoleBinding" not in kinds(objects)


def test_two_replicas_without_leader_election_are_refused(helm: str) -> None:
    assert "replicas > 1 needs leaderElection.enabled" in template_error(helm, "leaderElection.enabled=false")


def test_values_schema_refuses_zero_workers_and_unknown_log_format(helm: str) -> None:
    assert "workers" in template_error(helm, "workers=0")
    assert "logFormat" in template_error(helm, "logFormat=text")


def test_service_monitor_only_when_enabled(helm: str) -> None:
    assert "ServiceMonitor" not in kinds(template(helm))
    objects = template(helm, "metrics.serviceMonitor.enabled=true", "metrics.serviceMonitor.labels.release=prom")
    monitor, service = checks.one(objects, "ServiceMonitor"), checks.one(objects, "Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prom"
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics"
    assert set(monitor["spec"]["selector"]["matchLabels"].items()) <= set(service["metadata"]["labels"].items())
    assert [p["name"] for p in service["spec"]["ports"]] == ["metrics"]


def test_metrics_service_can_be_turned_off(helm: str) -> None:
    assert "Service" not in kinds(template(helm, "metrics.service.enabled=false"))


def test_scheduling_values_reach_the_pod(helm: str) -> None:
    objects = template(
        helm,
        "nodeSelector.role=infra",
        "tolerations[0].key=infra",
        "tolerations[0].operator=Exists",
        "priorityClassName=system-cluster-critical",
        "image.repository=liqosec",
        "image.tag=e2e",
        "image.pullPolicy=Never",
    )
    pod = checks.one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"role": "infra"}
    assert pod["tolerations"] == [{"key": "infra", "operator": "Exists"}]
    assert pod["priorityClassName"] == "system-cluster-critical"
    [container] = pod["containers"]
    assert (container["image"], container["imagePullPolicy"]) == ("liqosec:e2e", "Never")


def test_hardening_holds_unless_overridden(helm: str) -> None:
    pod = checks.one(template(helm), "Deployment")["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert checks.security_faults(pod, container) == []
    loose = checks.one(template(helm, "securityContext.readOnlyRootFilesystem=false"), "Deployment")
    [container] = loose["spec"]["template"]["spec"]["containers"]
    assert "readOnlyRootFilesystem is not true" in checks.security_faults(loose["spec"]["template"]["spec"], container)


def test_included_crd_is_the_manifest_crd(helm: str) -> None:
    [crd] = [o for o in template(helm, include_crds=True) if o["kind"] == "CustomResourceDefinition"]
    manifest = yaml.safe_load((ROOT / "manifests" / "crds" / checks.CRD_FILE).read_text())
    assert crd == manifest


RBAC_TEST_NAMESPACE = "liqosec-rbac-check"


@pytest.fixture(scope="module")
def installed_chart(helm: str, control_plane: Any) -> Any:
    """The chart installed on the real API server (replicas 0: no kubelet here, and nothing should run)."""
    kubeconfig = str(control_plane.kubeconfig_path)
    install = [
        helm,
        "upgrade",
        "--install",
        "liqosec",
        str(CHART),
        "--namespace",
        RBAC_TEST_NAMESPACE,
        "--create-namespace",
        "--kubeconfig",
        kubeconfig,
        "--set",
        "replicas=0",
    ]
    result = subprocess.run(install, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    yield control_plane
    subprocess.run(
        [helm, "uninstall", "liqosec", "--namespace", RBAC_TEST_NAMESPACE, "--kubeconfig", kubeconfig],
        capture_output=True,
        timeout=120,
    )
    subprocess.run(
        ["kubectl", "--kubeconfig", kubeconfig, "delete", "namespace", RBAC_TEST_NAMESPACE, "--wait=false"],
        capture_output=True,
        timeout=60,
    )


def can_i(control_plane: Any, verb: str, group: str, resource: str, *, namespace: str | None) -> bool:
    """The API server's own RBAC answer (a SubjectAccessReview, as `kubectl auth can-i`) for the chart's account."""
    name, _, sub = resource.partition("/")
    cmd = [
        "kubectl",
        "--kubeconfig",
        str(control_plane.kubeconfig_path),
        "auth",
        "can-i",
        verb,
        f"{name}.{group}" if group else name,
        f"--as=system:serviceaccount:{RBAC_TEST_NAMESPACE}:liqosec",
    ]
    cmd += [f"--subresource={sub}"] if sub else []
    cmd += ["-n", namespace] if namespace else ["-A"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert result.stdout.strip() in ("yes", "no"), result.stderr
    return result.stdout.strip() == "yes"


def test_api_server_authorizes_every_call_of_the_controller(installed_chart: Any) -> None:
    denied = [
        f"{verb} {resource}.{group or 'core'}"
        for group, resource, verbs in checks.CLUSTER_PERMISSIONS
        for verb in verbs
        if not can_i(installed_chart, verb, group, resource, namespace=None)
    ]
    denied += [
        f"{verb} {resource}.{group} in {RBAC_TEST_NAMESPACE}"
        for group, resource, verbs in checks.LEASE_PERMISSIONS
        for verb in verbs
        if not can_i(installed_chart, verb, group, resource, namespace=RBAC_TEST_NAMESPACE)
    ]
    assert denied == []


def test_api_server_refuses_what_the_controller_does_not_need(installed_chart: Any) -> None:
    assert not can_i(installed_chart, "list", "", "secrets", namespace=None)
    assert not can_i(installed_chart, "create", "", "pods/exec", namespace="default")
    assert not can_i(installed_chart, "update", "coordination.k8s.io", "leases", namespace="default")
    assert not can_i(installed_chart, "delete", "security.liqo.io", "peeringconnectivities", namespace=None)


# ----- the optional admission webhook -----


def named(objects: Sequence[Mapping[str, Any]], kind: str, name: str) -> Mapping[str, Any]:
    [found] = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def webhook_parts(objects: Sequence[Mapping[str, Any]]) -> tuple[Mapping[str, Any], Mapping[str, Any], Any, Any]:
    """The registered webhook, the Service it calls, and the controller's parsed flags and container."""
    [hook] = checks.one(objects, "ValidatingWebhookConfiguration")["webhooks"]
    ref = hook["clientConfig"]["service"]
    service = named([o for o in objects if o["kind"] == "Service"], "Service", ref["name"])
    container = checks.controller_container(checks.one(objects, "Deployment"))
    parsed, _ = checks.run_options(container["args"], NAMESPACE)
    return hook, service, parsed, container


def test_webhook_is_off_by_default(helm: str) -> None:
    objects = template(helm)
    assert "ValidatingWebhookConfiguration" not in kinds(objects)
    assert not any("webhook" in a for a in args_of(objects))


def test_webhook_renders_a_service_port_and_certificate_that_fit_together(helm: str) -> None:
    from cryptography import x509

    objects = template(helm, "webhook.enabled=true")
    hook, service, parsed, container = webhook_parts(objects)
    ref = hook["clientConfig"]["service"]
    # The API server calls the Service's port, which reaches the port the controller listens on.
    assert (ref["namespace"], ref["path"]) == (NAMESPACE, "/validate")
    [port] = service["spec"]["ports"]
    assert port["port"] == ref["port"]
    [target] = [p for p in container["ports"] if p["name"] == port["targetPort"]]
    assert target["containerPort"] == checks.port_of(parsed.webhook_bind_address)
    assert set(service["spec"]["selector"].items()) <= set(checks.pod_labels(checks.one(objects, "Deployment")).items())
    # The Secret is mounted where the controller reads its certificate.
    [mount] = [m for m in container["volumeMounts"] if m["mountPath"] == parsed.webhook_cert_dir]
    volumes = checks.one(objects, "Deployment")["spec"]["template"]["spec"]["volumes"]
    [volume] = [v for v in volumes if v["name"] == mount["name"]]
    secret = named(objects, "Secret", volume["secret"]["secretName"])
    assert secret["type"] == "kubernetes.io/tls"
    # The CA the API server trusts signed the serving certificate, made out to the Service's name.
    assert hook["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]
    ca = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["ca.crt"]))
    cert = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    cert.verify_directly_issued_by(ca)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert f"{ref['name']}.{NAMESPACE}.svc" in names
    assert base64.b64decode(secret["data"]["tls.key"]).startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    # What is checked, and what happens when no replica answers.
    [rule] = hook["rules"]
    assert (rule["apiGroups"], rule["resources"], rule["operations"]) == (
        ["security.liqo.io"],
        ["peeringconnectivities"],
        ["CREATE", "UPDATE"],
    )
    assert (hook["failurePolicy"], hook["sideEffects"], hook["admissionReviewVersions"]) == ("Ignore", "None", ["v1"])
    assert checks.deployment_faults(checks.one(objects, "Deployment")) == []


def test_webhook_with_cert_manager_gets_its_ca_injected(helm: str) -> None:
    objects = template(helm, "webhook.enabled=true", "webhook.certManager.enabled=true", "webhook.failurePolicy=Fail")
    hook, service, parsed, container = webhook_parts(objects)
    assert "Secret" not in kinds(objects) and "caBundle" not in hook["clientConfig"]
    assert hook["failurePolicy"] == "Fail"
    certificate = checks.one(objects, "Certificate")
    vwc = checks.one(objects, "ValidatingWebhookConfiguration")
    injected = f"{certificate['metadata']['namespace']}/{certificate['metadata']['name']}"
    assert vwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == injected
    assert f"{service['metadata']['name']}.{NAMESPACE}.svc" in certificate["spec"]["dnsNames"]
    volumes = checks.one(objects, "Deployment")["spec"]["template"]["spec"]["volumes"]
    [mount] = [m for m in container["volumeMounts"] if m["mountPath"] == parsed.webhook_cert_dir]
    [volume] = [v for v in volumes if v["name"] == mount["name"]]
    assert volume["secret"]["secretName"] == certificate["spec"]["secretName"]
    issuer = checks.one(objects, "Issuer")
    assert issuer["spec"] == {"selfSigned": {}}
    assert certificate["spec"]["issuerRef"] == {"name": issuer["metadata"]["name"], "kind": "Issuer"}
    own = template(
        helm,
        "webhook.enabled=true",
        "webhook.certManager.enabled=true",
        "webhook.certManager.issuerRef.name=corp-ca",
        "webhook.certManager.issuerRef.kind=ClusterIssuer",
    )
    assert "Issuer" not in kinds(own)
    assert checks.one(own, "Certificate")["spec"]["issuerRef"] == {"name": "corp-ca", "kind": "ClusterIssuer"}


def test_webhook_values_pass_lint_and_the_schema_refuses_a_typo(helm: str) -> None:
    for settings in (["webhook.enabled=true"], ["webhook.enabled=true", "webhook.certManager.enabled=true"]):
        cmd = [helm, "lint", "--strict", str(CHART)] + [a for s in settings for a in ("--set", s)]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
    assert "failurePolicy" in template_error(helm, "webhook.enabled=true", "webhook.failurePolicy=Sometimes")


# ----- the ValidatingAdmissionPolicy on FirewallConfigurations (README, "Least privilege beyond RBAC") -----

VAP_API = "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy"


def rendered_policy(
    helm: str, *settings: str, release: str = "liqosec", namespace: str = NAMESPACE, served: bool = True
) -> list[dict[str, Any]]:
    """The chart's admission policy objects, on an API server that serves the API (`served`) or not."""
    cmd = [helm, "template", release, str(CHART), "--namespace", namespace]
    cmd += ["--api-versions", VAP_API] if served else []
    cmd += [arg for s in settings for arg in ("--set", s)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    return [d for d in docs if d["kind"].startswith("ValidatingAdmissionPolicy")]


def variable(policy: Mapping[str, Any], name: str) -> str:
    [expression] = [v["expression"] for v in policy["spec"]["variables"] if v["name"] == name]
    return str(expression)


def test_admission_policy_is_on_where_the_api_server_serves_it(helm: str) -> None:
    objects = rendered_policy(helm)
    assert kinds(objects) == ["ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"]
    policy = checks.one(objects, "ValidatingAdmissionPolicy")
    binding = checks.one(objects, "ValidatingAdmissionPolicyBinding")
    assert binding["spec"] == {"policyName": policy["metadata"]["name"], "validationActions": ["Deny"]}
    assert policy["spec"]["failurePolicy"] == "Fail"
    [rule] = policy["spec"]["matchConstraints"]["resourceRules"]
    assert (rule["apiGroups"], rule["resources"]) == (["networking.liqo.io"], ["firewallconfigurations"])
    assert set(rule["operations"]) == {"CREATE", "UPDATE", "DELETE"}


def test_admission_policy_is_off_without_the_api_or_when_disabled(helm: str) -> None:
    assert rendered_policy(helm, served=False) == []
    assert rendered_policy(helm, "admissionPolicy.enabled=false") == []


def test_admission_policy_names_the_releases_service_account(helm: str) -> None:
    def account(*settings: str, release: str = "sec", namespace: str = "corp") -> str:
        policy = checks.one(
            rendered_policy(helm, *settings, release=release, namespace=namespace), "ValidatingAdmissionPolicy"
        )
        return variable(policy, "liqosec")

    assert account() == 'request.userInfo.username == "system:serviceaccount:corp:sec-liqosec"'
    assert account(release="liqosec", namespace="liqo").endswith('"system:serviceaccount:liqo:liqosec"')
    assert account("serviceAccount.name=fw").endswith('"system:serviceaccount:corp:fw"')
    assert account("serviceAccount.create=false").endswith('"system:serviceaccount:corp:default"')


def test_admission_policy_exempts_only_whom_the_values_name(helm: str) -> None:
    policy = checks.one(rendered_policy(helm), "ValidatingAdmissionPolicy")
    assert "matchConditions" not in policy["spec"]
    assert "namespace-controller" in variable(policy, "kubernetesController")
    policy = checks.one(
        rendered_policy(helm, "admissionPolicy.exemptGroups={system:masters}", "admissionPolicy.exemptUsers={alice}"),
        "ValidatingAdmissionPolicy",
    )
    [condition] = policy["spec"]["matchConditions"]
    assert '["alice"]' in condition["expression"] and '["system:masters"]' in condition["expression"]


def test_admission_policy_values_pass_lint_and_the_schema_refuses_a_typo(helm: str) -> None:
    for settings in ([], ["admissionPolicy.enabled=false"], ["admissionPolicy.exemptGroups={system:masters}"]):
        cmd = [helm, "lint", "--strict", str(CHART)] + [a for s in settings for a in ("--set", s)]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
    assert "exemptGroup" in template_error(helm, "admissionPolicy.exemptGroup={system:masters}")
