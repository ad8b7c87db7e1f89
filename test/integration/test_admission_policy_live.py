"""The chart's ValidatingAdmissionPolicy on the real API server: who may write which FirewallConfiguration.

The policy, its binding and the chart's RBAC are rendered by `helm template` for a release of their
own and applied as they are; every write is made as the identity it concerns, by impersonation
(the test's admin is in system:masters, which may impersonate).
"""

from __future__ import annotations

import copy
import subprocess
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from support import EXAMPLES, example, running_controller, wait_for
from test_chart import helm_binary

from harness.controlplane import ControlPlane
from harness.firewalls import firewall
from harness.liqo_forge import PEERING_SPEC, for_apply, forge, of_kind
from harness.objects import apply, ensure_namespace
from liqosec.controller.resources import FIREWALL_CONFIGURATIONS, PEERING_CONNECTIVITIES
from liqosec.inputs import load_objects
from liqosec.kube import errors
from liqosec.kube.client import NAMESPACES, JsonDict, KubeClient, ResourceRef, RestKubeClient
from liqosec.render import render

CHART = Path(__file__).resolve().parents[2] / "chart"
RELEASE, RELEASE_NS = "liqosec-vap", "liqosec-vap-system"
LIQOSEC = f"system:serviceaccount:{RELEASE_NS}:{RELEASE}"  # the chart's account: the release's full name
INTRUDER_NS, INTRUDER = "vap-intruder", "writer"
OTHER = f"system:serviceaccount:{INTRUDER_NS}:{INTRUDER}"
NAMESPACE_CONTROLLER = "system:serviceaccount:kube-system:namespace-controller"
GARBAGE_COLLECTOR = "system:serviceaccount:kube-system:generic-garbage-collector"
OWNER_LABEL = "security.liqo.io/peering-connectivity"
VAP_API = "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy"

REFS = {
    "ServiceAccount": ResourceRef("", "v1", "serviceaccounts", True, "ServiceAccount"),
    "ClusterRole": ResourceRef("rbac.authorization.k8s.io", "v1", "clusterroles", False, "ClusterRole"),
    "ClusterRoleBinding": ResourceRef(
        "rbac.authorization.k8s.io", "v1", "clusterrolebindings", False, "ClusterRoleBinding"
    ),
    "ValidatingAdmissionPolicy": ResourceRef(
        "admissionregistration.k8s.io", "v1", "validatingadmissionpolicies", False, "ValidatingAdmissionPolicy"
    ),
    "ValidatingAdmissionPolicyBinding": ResourceRef(
        "admissionregistration.k8s.io",
        "v1",
        "validatingadmissionpolicybindings",
        False,
        "ValidatingAdmissionPolicyBinding",
    ),
}

# Another account with full RBAC on FirewallConfigurations: what the policy adds beyond RBAC.
INTRUDER_RBAC: list[JsonDict] = [
    {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": INTRUDER, "namespace": INTRUDER_NS}},
    {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "vap-firewall-writer"},
        "rules": [
            {
                "apiGroups": ["networking.liqo.io"],
                "resources": ["firewallconfigurations", "firewallconfigurations/status"],
                "verbs": ["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"],
            }
        ],
    },
    {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "vap-firewall-writer"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "vap-firewall-writer"},
        "subjects": [{"kind": "ServiceAccount", "name": INTRUDER, "namespace": INTRUDER_NS}],
    },
]


def rendered_chart() -> list[JsonDict]:
    """What `helm install` would create on an API server serving ValidatingAdmissionPolicy."""
    helm = helm_binary()
    if helm is None:
        pytest.fail("helm is not built: run hack/build-helm.sh (hack/test.sh does)")
    cmd = [helm, "template", RELEASE, str(CHART), "--namespace", RELEASE_NS, "--api-versions", VAP_API]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d and d["kind"] in REFS]


def create_all(kube: KubeClient, objects: list[JsonDict]) -> None:
    for obj in objects:
        ns = obj["metadata"].get("namespace")
        if ns:
            ensure_namespace(kube, ns)
        try:
            kube.create(REFS[obj["kind"]], obj, namespace=ns)
        except errors.AlreadyExists:
            pass


def delete_all(kube: KubeClient, objects: list[JsonDict]) -> None:
    for obj in reversed(objects):
        try:
            kube.delete(REFS[obj["kind"]], obj["metadata"]["name"], namespace=obj["metadata"].get("namespace"))
        except errors.NotFound:
            pass


@contextmanager
def acting_as(control_plane: ControlPlane, user: str) -> Iterator[RestKubeClient]:
    """liqosec's own client, every request impersonating `user` (RBAC and admission judge `user`)."""
    with control_plane.api_client() as api:
        api.set_default_header("Impersonate-User", user)
        yield RestKubeClient(api)


def fc(name: str, namespace: str, labels: Mapping[str, str], table: str) -> JsonDict:
    return {
        "apiVersion": "networking.liqo.io/v1beta1",
        "kind": "FirewallConfiguration",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
        "spec": {
            "table": {
                "name": table,
                "family": "IPV4",
                "chains": [
                    {
                        "name": "peering-filter",
                        "type": "filter",
                        "hook": "forward",
                        "priority": 0,
                        "policy": "accept",
                        "rules": {"filterRules": []},
                    }
                ],
            }
        },
    }


def ours(name: str, namespace: str) -> JsonDict:
    """A FirewallConfiguration as liqosec writes one (firewall_labels)."""
    labels = {
        "networking.liqo.io/firewall-category": "fabric",
        "networking.liqo.io/firewall-subcategory": "all-nodes",
        "app.kubernetes.io/managed-by": "liqosec",
        OWNER_LABEL: name.removeprefix("liqosec-"),
        "liqo.io/remote-cluster-id": "rome",
    }
    return fc(name, namespace, labels, f"{name}-table")


def refusal(write: Callable[[], object]) -> str:
    """The API server's message refusing `write`; fails when it went through."""
    with pytest.raises(errors.ApiError) as refused:
        write()
    assert refused.value.status == 403, refused.value
    return refused.value.message


def policy_refuses(kube: KubeClient, namespace: str) -> bool:
    """One probe write the policy must refuse: False (undone) while the API server does not enforce it yet."""
    probe = ours(f"liqosec-probe-{uuid.uuid4().hex[:6]}", namespace)
    try:
        kube.create(FIREWALL_CONFIGURATIONS, probe, namespace=namespace)
    except errors.Forbidden as err:
        return "ValidatingAdmissionPolicy" in err.message
    kube.delete(FIREWALL_CONFIGURATIONS, probe["metadata"]["name"], namespace=namespace)
    return False


@pytest.fixture(scope="module")
def policy(control_plane: ControlPlane) -> Iterator[str]:
    """The chart's policy in force; yields a namespace for the test's FirewallConfigurations."""
    objects = rendered_chart() + INTRUDER_RBAC
    namespace = f"liqo-tenant-vap-{uuid.uuid4().hex[:6]}"
    with control_plane.api_client() as api:
        admin = RestKubeClient(api)
        create_all(admin, objects)
        ensure_namespace(admin, namespace)
        try:
            with acting_as(control_plane, OTHER) as other:
                # The API server compiles a new policy and starts enforcing it asynchronously.
                wait_for("the policy to be enforced", lambda: policy_refuses(other, namespace), timeout=60)
            yield namespace
        finally:
            delete_all(admin, objects)
            admin.delete(NAMESPACES, namespace)


def make(control_plane: ControlPlane, obj: JsonDict) -> JsonDict:
    with acting_as(control_plane, LIQOSEC) as liqosec:
        return liqosec.create(FIREWALL_CONFIGURATIONS, obj, namespace=obj["metadata"]["namespace"])


def liqo_made(control_plane: ControlPlane, namespace: str) -> JsonDict:
    """Liqo's pod CIDR remapping FirewallConfiguration, as Liqo's code forges it, created by the admin."""
    [remap] = of_kind(forge({**PEERING_SPEC, "remappingFirewalls": True}), "FirewallConfiguration")
    obj = for_apply(remap)
    obj["metadata"]["namespace"] = namespace
    with control_plane.api_client() as api:
        return RestKubeClient(api).create(FIREWALL_CONFIGURATIONS, obj, namespace=namespace)


def test_liqosec_creates_updates_and_deletes_its_own_firewall(control_plane: ControlPlane, policy: str) -> None:
    with acting_as(control_plane, LIQOSEC) as liqosec:
        live = liqosec.create(FIREWALL_CONFIGURATIONS, ours("liqosec-own", policy), namespace=policy)
        live["spec"]["table"]["chains"][0]["policy"] = "drop"
        assert liqosec.update(FIREWALL_CONFIGURATIONS, live)["spec"]["table"]["chains"][0]["policy"] == "drop"
        liqosec.delete(FIREWALL_CONFIGURATIONS, "liqosec-own", namespace=policy)


def test_liqosec_may_not_create_or_touch_a_liqo_made_firewall(control_plane: ControlPlane, policy: str) -> None:
    remap = liqo_made(control_plane, policy)
    name = remap["metadata"]["name"]
    with acting_as(control_plane, LIQOSEC) as liqosec:
        changed = copy.deepcopy(remap)
        changed["spec"]["table"]["chains"][0]["policy"] = "drop"
        message = refusal(lambda: liqosec.update(FIREWALL_CONFIGURATIONS, changed))
        assert f"FirewallConfiguration {policy}/{name} is not liqosec's" in message
        assert "liqosec may not change it" in message
        # Nor by taking it over: relabelled as liqosec's, the old object is still Liqo's.
        taken = copy.deepcopy(remap)
        taken["metadata"]["labels"].update({"app.kubernetes.io/managed-by": "liqosec", OWNER_LABEL: "x"})
        assert "liqosec may not change it" in refusal(lambda: liqosec.update(FIREWALL_CONFIGURATIONS, taken))
        message = refusal(lambda: liqosec.delete(FIREWALL_CONFIGURATIONS, name, namespace=policy))
        assert "liqosec may not delete it" in message
        unlabelled = fc("liqosec-unlabelled", policy, {"networking.liqo.io/firewall-category": "fabric"}, "t")
        message = refusal(lambda: liqosec.create(FIREWALL_CONFIGURATIONS, unlabelled, namespace=policy))
        assert "liqosec may create only FirewallConfigurations named liqosec-" in message


def test_liqosec_may_not_give_its_firewall_away(control_plane: ControlPlane, policy: str) -> None:
    live = make(control_plane, ours("liqosec-kept", policy))
    with acting_as(control_plane, LIQOSEC) as liqosec:
        for label in ("app.kubernetes.io/managed-by", OWNER_LABEL):
            given = copy.deepcopy(live)
            del given["metadata"]["labels"][label]
            message = refusal(lambda given=given: liqosec.update(FIREWALL_CONFIGURATIONS, given))
            assert f"FirewallConfiguration {policy}/liqosec-kept would stop being liqosec's" in message


def test_another_account_may_not_create_change_or_delete_liqosecs(control_plane: ControlPlane, policy: str) -> None:
    live = make(control_plane, ours("liqosec-guarded", policy))
    with acting_as(control_plane, OTHER) as other:
        message = refusal(lambda: other.create(FIREWALL_CONFIGURATIONS, ours("liqosec-fake", policy), namespace=policy))
        assert f"only {LIQOSEC} may create one" in message
        lookalike = fc("plain", policy, {OWNER_LABEL: "rome"}, "plain")
        refusal(lambda: other.create(FIREWALL_CONFIGURATIONS, lookalike, namespace=policy))
        changed = copy.deepcopy(live)
        changed["spec"]["table"]["chains"][0]["policy"] = "drop"
        message = refusal(lambda: other.update(FIREWALL_CONFIGURATIONS, changed))
        assert (
            f"FirewallConfiguration {policy}/liqosec-guarded is liqosec's: {OTHER} may change only its finalizers"
            in message
        )
        assert "change the PeeringConnectivity guarded in " in message
        relabelled = copy.deepcopy(live)
        relabelled["metadata"]["labels"]["app.kubernetes.io/managed-by"] = "someone"
        refusal(lambda: other.update(FIREWALL_CONFIGURATIONS, relabelled))
        message = refusal(lambda: other.delete(FIREWALL_CONFIGURATIONS, "liqosec-guarded", namespace=policy))
        assert f"{OTHER} may not delete it; delete or change the PeeringConnectivity guarded" in message
        # What is not liqosec's stays the RBAC's business.
        theirs = other.create(FIREWALL_CONFIGURATIONS, fc("theirs", policy, {"team": "a"}, "theirs"), namespace=policy)
        theirs["spec"]["table"]["chains"][0]["policy"] = "drop"
        other.update(FIREWALL_CONFIGURATIONS, theirs)
        other.delete(FIREWALL_CONFIGURATIONS, "theirs", namespace=policy)


def test_liqo_writes_its_firewalls_named_after_a_peer_whose_id_starts_with_liqosec(
    control_plane: ControlPlane, policy: str
) -> None:
    """Liqo names its firewalls after the peer's cluster id, and a cluster id may start with liqosec-
    (the peering suite's clusters do): only liqosec's labels make a firewall liqosec's, so Liqo keeps
    creating, changing and deleting its own (its IP remapping, its gateway's masquerade bypass)."""
    [remap] = of_kind(
        forge({**PEERING_SPEC, "peerClusterID": "liqosec-rome", "remappingFirewalls": True}), "FirewallConfiguration"
    )
    obj = for_apply(remap)
    obj["metadata"]["namespace"] = policy
    name = obj["metadata"]["name"]
    assert name.startswith("liqosec-"), name
    with acting_as(control_plane, OTHER) as liqo:
        live = liqo.create(FIREWALL_CONFIGURATIONS, obj, namespace=policy)
        # Content a claimed firewall would keep (its annotations) changes: the name claims nothing.
        live["metadata"].setdefault("annotations", {})["example.org/changed"] = "yes"
        assert liqo.update(FIREWALL_CONFIGURATIONS, live)["metadata"]["annotations"]["example.org/changed"] == "yes"
        liqo.delete(FIREWALL_CONFIGURATIONS, name, namespace=policy)


def test_finalizer_only_updates_and_status_updates_pass_for_anyone(control_plane: ControlPlane, policy: str) -> None:
    """What Liqo's agent does to every FirewallConfiguration it applies (pkg/firewall, docs/semantics.md)."""
    make(control_plane, ours("liqosec-applied", policy))
    finalizer = "firewallconfigurations-controller.liqo.io/finalizer"
    with acting_as(control_plane, OTHER) as agent:
        live = agent.get(FIREWALL_CONFIGURATIONS, "liqosec-applied", namespace=policy)
        live["metadata"]["finalizers"] = [finalizer]
        live = agent.update(FIREWALL_CONFIGURATIONS, live)
        live["status"] = {"conditions": [{"host": "worker-1", "type": "Applied", "status": "True"}]}
        live = agent.update_status(FIREWALL_CONFIGURATIONS, live)
        assert live["status"]["conditions"][0]["host"] == "worker-1"
        live["metadata"]["finalizers"] = []
        agent.update(FIREWALL_CONFIGURATIONS, live)


def test_status_subresource_is_not_matched_by_the_firewallconfigurations_rule(
    control_plane: ControlPlane, policy: str
) -> None:
    """A policy refusing every write its rule matches still lets status updates through."""
    deny_all = [
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": "vap-deny-every-match"},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {
                    "resourceRules": [
                        {
                            "apiGroups": ["networking.liqo.io"],
                            "apiVersions": ["*"],
                            "operations": ["UPDATE"],
                            "resources": ["firewallconfigurations"],
                        }
                    ]
                },
                "validations": [{"expression": "false", "message": "matched"}],
            },
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": "vap-deny-every-match"},
            "spec": {
                "policyName": "vap-deny-every-match",
                "validationActions": ["Deny"],
                "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": policy}}},
            },
        },
    ]
    with control_plane.api_client() as api:
        admin = RestKubeClient(api)
        admin.create(FIREWALL_CONFIGURATIONS, fc("plain-status", policy, {}, "plain-status"), namespace=policy)
        create_all(admin, deny_all)
        try:

            def refused_as_matched() -> bool:
                fresh = admin.get(FIREWALL_CONFIGURATIONS, "plain-status", namespace=policy)
                fresh["metadata"].setdefault("annotations", {})["probe"] = uuid.uuid4().hex
                try:
                    admin.update(FIREWALL_CONFIGURATIONS, fresh)
                except errors.ApiError as err:
                    return "matched" in err.message
                return False

            wait_for("the deny-all policy to be enforced", refused_as_matched, timeout=60)
            live = admin.get(FIREWALL_CONFIGURATIONS, "plain-status", namespace=policy)
            live["status"] = {"conditions": [{"host": "worker-2", "type": "Applied", "status": "False"}]}
            assert admin.update_status(FIREWALL_CONFIGURATIONS, live)["status"]["conditions"][0]["host"] == "worker-2"
        finally:
            delete_all(admin, deny_all)


def test_kubernetes_controllers_may_delete_liqosecs(control_plane: ControlPlane, policy: str) -> None:
    for user, name in ((NAMESPACE_CONTROLLER, "liqosec-by-ns"), (GARBAGE_COLLECTOR, "liqosec-by-gc")):
        make(control_plane, ours(name, policy))
        with acting_as(control_plane, user) as controller:
            controller.delete(FIREWALL_CONFIGURATIONS, name, namespace=policy)
            with pytest.raises(errors.NotFound):
                controller.get(FIREWALL_CONFIGURATIONS, name, namespace=policy)


def test_every_firewall_compiled_from_the_examples_passes_as_liqosecs(control_plane: ControlPlane, policy: str) -> None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    examples = sorted(EXAMPLES.glob("*.yaml"))
    firewalls = [fw for path in examples for fw in render(load_objects([str(path)]))]
    assert len(firewalls) >= len(examples)
    with control_plane.api_client() as api:
        api.set_default_header("Impersonate-User", LIQOSEC)
        objects = client.CustomObjectsApi(api)
        refused = []
        for firewall_ in firewalls:
            body = copy.deepcopy(firewall_)
            body["metadata"]["namespace"] = policy
            body["metadata"].pop("ownerReferences", None)  # their owners are not on this server
            try:
                objects.create_namespaced_custom_object(
                    "networking.liqo.io", "v1beta1", policy, "firewallconfigurations", body, dry_run="All"
                )
            except ApiException as err:
                refused.append(f"{firewall_['metadata']['name']}: {err.body}")
    assert refused == []


def test_the_controller_converges_and_retires_as_its_account(
    control_plane: ControlPlane, kube: KubeClient, policy: str, local_pod_cidr: None
) -> None:
    peer = f"v{uuid.uuid4().hex[:8]}"
    apply(kube, example("provider-isolate-offloaded.yaml", peer=peer))
    with acting_as(control_plane, LIQOSEC) as liqosec, running_controller(liqosec, retire_grace_seconds=0.5):
        wait_for("the firewall", lambda: firewall(kube, peer))

        def ready() -> bool:
            pc = kube.get(PEERING_CONNECTIVITIES, peer, namespace=f"liqo-tenant-{peer}")
            conditions = (pc.get("status") or {}).get("conditions") or ()
            return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

        wait_for("Ready=True", ready)
        kube.delete(PEERING_CONNECTIVITIES, peer, namespace=f"liqo-tenant-{peer}")
        wait_for("the firewall retired", lambda: firewall(kube, peer) is None)
