"""Deployment artefacts without a cluster: manifests parse, RBAC covers the controller's calls, probes fit flags."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
CRD_FILE = "security.liqo.io_peeringconnectivities.yaml"

# What `liqosec run` calls, cluster-wide: (API group, resource, verbs). The one list this test,
# test/integration/test_chart.py and the RBAC in manifests/ and chart/ are held to.
CLUSTER_PERMISSIONS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("", "pods", ("get", "list", "watch")),
    ("", "nodes", ("get", "list", "watch")),
    ("", "namespaces", ("get", "list", "watch")),
    ("", "services", ("get", "list", "watch")),
    ("discovery.k8s.io", "endpointslices", ("get", "list", "watch")),
    ("ipam.liqo.io", "networks", ("get", "list", "watch")),
    ("networking.liqo.io", "configurations", ("get", "list", "watch")),
    ("offloading.liqo.io", "namespaceoffloadings", ("get", "list", "watch")),
    ("offloading.liqo.io", "virtualnodes", ("get", "list", "watch")),
    ("core.liqo.io", "foreignclusters", ("get", "list", "watch")),
    ("apiextensions.k8s.io", "customresourcedefinitions", ("get", "list", "watch")),
    ("security.liqo.io", "peeringconnectivities", ("get", "list", "watch", "patch")),
    ("security.liqo.io", "peeringconnectivities/status", ("update", "patch")),
    ("security.liqo.io", "peeringconnectivities/finalizers", ("update",)),
    ("networking.liqo.io", "firewallconfigurations", ("get", "list", "watch", "create", "update", "patch", "delete")),
    ("", "events", ("create", "patch")),
    ("events.k8s.io", "events", ("create", "patch")),
)
# Leader election, in the controller's own namespace only (a Role, not the ClusterRole).
LEASE_PERMISSIONS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("coordination.k8s.io", "leases", ("get", "create", "update")),
)
# `liqosec run` defaults, used when the manifest leaves a flag out.
DEFAULT_METRICS_ADDRESS = ":8080"
DEFAULT_HEALTH_ADDRESS = ":8081"
CONTROLLER_UID = 65532


def load_all(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [d for d in yaml.safe_load_all(fh) if d is not None]


def manifest_objects() -> list[dict[str, Any]]:
    return [obj for f in ("rbac.yaml", "deployment.yaml", "service.yaml") for obj in load_all(MANIFESTS / f)]


def one(objects: Iterable[Mapping[str, Any]], kind: str) -> Mapping[str, Any]:
    [found] = [o for o in objects if o.get("kind") == kind]
    return found


def grants(rules: Iterable[Mapping[str, Any]], group: str, resource: str, verb: str) -> bool:
    """RBAC's own reading: any rule whose groups, resources and verbs (or `*`) all cover the request."""
    return any(
        ({group, "*"} & set(r.get("apiGroups") or ()))
        and ({resource, "*"} & set(r.get("resources") or ()))
        and ({verb, "*"} & set(r.get("verbs") or ()))
        for r in rules
    )


def missing_permissions(
    rules: Iterable[Mapping[str, Any]], required: Iterable[tuple[str, str, tuple[str, ...]]]
) -> list[str]:
    rules = list(rules)
    return [
        f"{verb} {resource}.{group or 'core'}"
        for group, resource, verbs in required
        for verb in verbs
        if not grants(rules, group, resource, verb)
    ]


def flag_values(args: Iterable[str]) -> dict[str, str]:
    """`--name=value` and `--name value` alike; a bare `--name` maps to ''."""
    out: dict[str, str] = {}
    pending: str | None = None
    for arg in args:
        if pending is not None and not arg.startswith("--"):
            out[pending], pending = arg, None
            continue
        if arg.startswith("--"):
            name, eq, value = arg[2:].partition("=")
            out[name] = value
            pending = None if eq else name
    return out


def port_of(address: str) -> int:
    """Port of a Go-style bind address (`:8080`, `0.0.0.0:8080`)."""
    match = re.fullmatch(r".*:(\d+)", address)
    if not match:
        raise ValueError(f"no port in bind address {address!r}")
    return int(match.group(1))


def probe_port(container: Mapping[str, Any], probe: str) -> int:
    port = container[probe]["httpGet"]["port"]
    if isinstance(port, int):
        return port
    [named] = [p["containerPort"] for p in container["ports"] if p.get("name") == port]
    return int(named)


def controller_container(deployment: Mapping[str, Any]) -> dict[str, Any]:
    container: dict[str, Any]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return container


def deployment_faults(deployment: Mapping[str, Any]) -> list[str]:
    """Everything the brief asks of the controller's Deployment, as a list of what is wrong."""
    faults: list[str] = []
    pod = deployment["spec"]["template"]["spec"]
    c = controller_container(deployment)
    flags = flag_values(c.get("args") or ())
    health = port_of(flags.get("health-probe-bind-address") or DEFAULT_HEALTH_ADDRESS)
    metrics = port_of(flags.get("metrics-bind-address") or DEFAULT_METRICS_ADDRESS)
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        if c[probe]["httpGet"]["path"] != path:
            faults.append(f"{probe} path {c[probe]['httpGet']['path']} != {path}")
        if probe_port(c, probe) != health:
            faults.append(f"{probe} port {probe_port(c, probe)} != health probe flag port {health}")
    if [p["containerPort"] for p in c["ports"] if p.get("name") == "metrics"] != [metrics]:
        faults.append(f"no container port named metrics on {metrics}")
    if not set(deployment["spec"]["selector"]["matchLabels"].items()) <= set(pod_labels(deployment).items()):
        faults.append("selector does not select the pod template")
    env = {e["name"]: e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") for e in c.get("env") or ()}
    if env.get("POD_NAME") != "metadata.name" or env.get("POD_NAMESPACE") != "metadata.namespace":
        faults.append(f"POD_NAME/POD_NAMESPACE not from the downward API: {env}")
    if pod.get("terminationGracePeriodSeconds") != 30:
        faults.append("terminationGracePeriodSeconds is not 30")
    for kind in ("requests", "limits"):
        if not {"cpu", "memory"} <= set((c.get("resources") or {}).get(kind) or {}):
            faults.append(f"resources.{kind} lacks cpu or memory")
    return faults + security_faults(pod, c)


def security_faults(pod: Mapping[str, Any], container: Mapping[str, Any]) -> list[str]:
    psc, sc = pod.get("securityContext") or {}, container.get("securityContext") or {}
    merged = {**psc, **sc}  # the container's own settings win, as the kubelet reads them
    faults = []
    if merged.get("runAsNonRoot") is not True:
        faults.append("runAsNonRoot is not true")
    if merged.get("runAsUser", CONTROLLER_UID) != CONTROLLER_UID:
        faults.append(f"runAsUser is not the image's uid {CONTROLLER_UID}")
    if sc.get("readOnlyRootFilesystem") is not True:
        faults.append("readOnlyRootFilesystem is not true")
    if sc.get("allowPrivilegeEscalation") is not False:
        faults.append("allowPrivilegeEscalation is not false")
    if (sc.get("capabilities") or {}).get("drop") != ["ALL"]:
        faults.append("capabilities do not drop ALL")
    if (merged.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
        faults.append("seccompProfile is not RuntimeDefault")
    return faults


def pod_labels(deployment: Mapping[str, Any]) -> dict[str, str]:
    return dict(deployment["spec"]["template"]["metadata"]["labels"])


def yaml_files() -> Iterator[Path]:
    yield from sorted(MANIFESTS.rglob("*.yaml"))
    yield from sorted((ROOT / "chart" / "crds").glob("*.yaml"))
    yield ROOT / "chart" / "Chart.yaml"
    yield ROOT / "chart" / "values.yaml"


@pytest.mark.parametrize("path", list(yaml_files()), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_manifest_parses(path: Path) -> None:
    docs = load_all(path)
    assert docs, f"{path} is empty"
    if path.parent.name != "chart":
        assert all(d.get("apiVersion") and d.get("kind") for d in docs)


def test_kustomization_lists_the_crd_and_every_manifest() -> None:
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    resources = kustomization["resources"]
    assert f"crds/{CRD_FILE}" in resources
    assert {"rbac.yaml", "deployment.yaml", "service.yaml"} <= set(resources)
    assert all((MANIFESTS / r).is_file() for r in resources)


def test_cluster_role_grants_everything_the_controller_calls() -> None:
    role = one(manifest_objects(), "ClusterRole")
    assert missing_permissions(role["rules"], CLUSTER_PERMISSIONS) == []


def test_cluster_role_grants_nothing_it_does_not_need() -> None:
    """Least privilege: no wildcards, no write verbs beyond the list (no secrets, no pods/exec)."""
    role = one(manifest_objects(), "ClusterRole")
    required = {(g, r, v) for g, r, verbs in CLUSTER_PERMISSIONS for v in verbs}
    granted = {
        (g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]
    }
    assert granted - required == set()


def test_leases_are_granted_only_in_the_controller_namespace() -> None:
    objects = manifest_objects()
    role, binding = one(objects, "Role"), one(objects, "RoleBinding")
    assert missing_permissions(role["rules"], LEASE_PERMISSIONS) == []
    assert missing_permissions(one(objects, "ClusterRole")["rules"], LEASE_PERMISSIONS) != []
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == "liqo"
    assert binding["roleRef"]["name"] == role["metadata"]["name"]


def test_bindings_name_the_deployments_service_account() -> None:
    objects = manifest_objects()
    sa = one(objects, "ServiceAccount")["metadata"]
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == sa["name"]
    for kind in ("ClusterRoleBinding", "RoleBinding"):
        [subject] = one(objects, kind)["subjects"]
        assert (subject["kind"], subject["name"], subject["namespace"]) == (
            "ServiceAccount",
            sa["name"],
            sa["namespace"],
        )
    assert one(objects, "ClusterRoleBinding")["roleRef"]["name"] == one(objects, "ClusterRole")["metadata"]["name"]


def test_deployment_meets_the_controller_flags_and_hardening() -> None:
    deployment = one(manifest_objects(), "Deployment")
    assert deployment["metadata"]["namespace"] == "liqo"
    assert deployment["spec"]["replicas"] == 2
    assert deployment_faults(deployment) == []


def test_two_replicas_run_with_leader_election_on() -> None:
    deployment = one(manifest_objects(), "Deployment")
    flags = flag_values(controller_container(deployment)["args"])
    assert "no-leader-elect" not in flags
    assert flags.get("leader-election-namespace") in (None, "$(POD_NAMESPACE)", "liqo")


def test_probe_check_catches_a_probe_on_the_wrong_port() -> None:
    deployment = one(manifest_objects(), "Deployment")
    c = controller_container(deployment)
    c["args"] = [a for a in c["args"] if not a.startswith("--health-probe-bind-address")] + [
        "--health-probe-bind-address=:9440"
    ]
    assert any("port 8081 != health probe flag port 9440" in f for f in deployment_faults(deployment))


def test_metrics_service_targets_the_metrics_port_of_the_controller_pods() -> None:
    objects = manifest_objects()
    service, deployment = one(objects, "Service"), one(objects, "Deployment")
    [port] = service["spec"]["ports"]
    assert port["name"] == "metrics" and port["targetPort"] == "metrics"
    assert set(service["spec"]["selector"].items()) <= set(pod_labels(deployment).items())


def run_options(args: Iterable[str], pod_namespace: str = "liqo") -> tuple[Any, Any]:
    """What `liqosec run` makes of a container's args (the kubelet expands `$(POD_NAMESPACE)`): flags and Options.

    Raises like the real command would: SystemExit for an unknown flag, StartupError for a value out of range.
    """
    from liqosec.cli import parser
    from liqosec.run import options_from_args, run_command

    parsed = parser().parse_args([a.replace("$(POD_NAMESPACE)", pod_namespace) for a in args])
    assert parsed.command == "run" and parsed.func is run_command
    return parsed, options_from_args(parsed)


def test_deployment_args_are_accepted_by_the_real_run_command() -> None:
    """The manifest's flags must exist in `liqosec run` and make valid options, or the pod crash-loops on start."""
    container = controller_container(one(manifest_objects(), "Deployment"))
    parsed, options = run_options(container["args"])
    assert options.leader_elect and options.leader_election_namespace == "liqo"
    assert options.workers >= 1
    assert port_of(parsed.health_probe_bind_address) == probe_port(container, "readinessProbe")
    assert [port_of(parsed.metrics_bind_address)] == [
        p["containerPort"] for p in container["ports"] if p["name"] == "metrics"
    ]


def test_run_options_catch_a_value_the_command_would_refuse() -> None:
    from liqosec.run import StartupError

    with pytest.raises(StartupError, match="workers must be at least 1"):
        run_options(["run", "--workers=0"])
    with pytest.raises(SystemExit):
        run_options(["run", "--no-such-flag"])
    with pytest.raises(SystemExit):
        run_options(["run", "--batch-window=-1"])


def test_batch_window_is_auto_by_default_seconds_or_zero() -> None:
    assert run_options(["run"])[1].batch_seconds is None
    assert run_options(["run", "--batch-window=auto"])[1].batch_seconds is None
    assert run_options(["run", "--batch-window=0.05"])[1].batch_seconds == 0.05
    assert run_options(["run", "--batch-window", "0"])[1].batch_seconds == 0.0


def test_chart_crd_is_a_copy_of_the_manifest_crd() -> None:
    manifest = (MANIFESTS / "crds" / CRD_FILE).read_bytes()
    chart = (ROOT / "chart" / "crds" / CRD_FILE).read_bytes()
    assert chart == manifest, f"chart/crds/{CRD_FILE} drifted: cp manifests/crds/{CRD_FILE} chart/crds/"


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line.strip() else "")
        for line in (raw.strip() for raw in text.splitlines())
        if line and not line.startswith("#")
    ]


def final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    starts = [i for i, (op, _) in enumerate(instructions) if op == "FROM"]
    return instructions[starts[-1] :]


def test_image_runs_liqosec_run_as_the_manifests_uid() -> None:
    stage = dict(final_stage(dockerfile_instructions()))
    assert stage["USER"].split(":")[0] == str(CONTROLLER_UID)
    assert yaml.safe_load(stage["ENTRYPOINT"]) == ["liqosec"]
    assert yaml.safe_load(stage["CMD"]) == ["run"]
    assert {int(p) for p in shlex.split(stage["EXPOSE"])} == {
        port_of(DEFAULT_METRICS_ADDRESS),
        port_of(DEFAULT_HEALTH_ADDRESS),
    }


def test_image_is_built_from_python_311_slim_in_two_stages() -> None:
    instructions = dockerfile_instructions()
    args = dict(a.split("=", 1) for op, a in instructions if op == "ARG" and "=" in a)
    bases = [a.split()[0] for op, a in instructions if op == "FROM"]
    assert len(bases) >= 2
    assert {re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], b) for b in bases} == {"python:3.11-slim"}
    assert any(op == "RUN" and "pip install ." in a for op, a in instructions)


def test_dockerignore_keeps_what_pip_install_needs() -> None:
    lines = [
        ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines() if ln.strip() and not ln.startswith("#")
    ]
    assert "!pyproject.toml" in lines and "!liqosec/" in lines
    assert lines[0] == "*"  # everything else (tests, .git, caches) stays out of the context


# Short names of built-in resources that kubectl resolves before any CRD's (kubectl api-resources, v1.33).
BUILTIN_SHORT_NAMES = {
    "cm",
    "cs",
    "csr",
    "ds",
    "deploy",
    "ep",
    "ev",
    "hpa",
    "ing",
    "limits",
    "netpol",
    "no",
    "ns",
    "pc",
    "pdb",
    "po",
    "psp",
    "pv",
    "pvc",
    "quota",
    "rc",
    "rs",
    "sa",
    "sc",
    "sts",
    "svc",
    "crd",
    "crds",
}


def test_crd_short_names_do_not_shadow_builtin_resources() -> None:
    crd = yaml.safe_load((MANIFESTS / "crds" / CRD_FILE).read_text())
    assert set(crd["spec"]["names"].get("shortNames") or ()) & BUILTIN_SHORT_NAMES == set()
