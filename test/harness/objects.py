"""Apply plain cluster objects (as `liqosec render` reads them) to a real API server.

For demos and integration tests: objects carry a `status` (pod IPs, Liqo's
remapped CIDRs) that only controllers write in a real cluster, so `apply`
creates each object and then writes its status through the status
subresource, the way Liqo and the kubelet would.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from liqosec.api.liqo import REMOTE_CLUSTER_ID, TENANT_NAMESPACE, TENANT_PREFIX
from liqosec.controller.resources import (
    CONFIGURATIONS,
    FIREWALL_CONFIGURATIONS,
    FOREIGN_CLUSTERS,
    NAMESPACE_OFFLOADINGS,
    NETWORKS,
    PEERING_CONNECTIVITIES,
    SERVICES,
)
from liqosec.kube import errors
from liqosec.kube.client import ENDPOINT_SLICES, NAMESPACES, NODES, PODS, KubeClient, ResourceRef
from liqosec.kube.retry import retry_on_conflict

REFS: dict[str, ResourceRef] = {
    r.kind: r
    for r in (
        PODS,
        NODES,
        NAMESPACES,
        ENDPOINT_SLICES,
        SERVICES,
        CONFIGURATIONS,
        NETWORKS,
        NAMESPACE_OFFLOADINGS,
        FOREIGN_CLUSTERS,
        PEERING_CONNECTIVITIES,
        FIREWALL_CONFIGURATIONS,
    )
}
# Kinds whose status is a subresource: a create drops it, a status write sets it.
WITH_STATUS_SUBRESOURCE = frozenset({"Pod", "Configuration", "Network", "NamespaceOffloading", "PeeringConnectivity"})
# A new namespace's default ServiceAccount appears a moment after it: pods wait for it.
SERVICE_ACCOUNT_WAIT_SECONDS = 30.0


def _prepare(obj: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(obj))
    if out.get("kind") == "Pod":
        spec = out.setdefault("spec", {})
        spec.setdefault("containers", [{"name": "app", "image": "registry.invalid/app:1"}])
        spec.setdefault("automountServiceAccountToken", False)
    if out.get("kind") == "Service":
        spec = out.setdefault("spec", {})
        spec.setdefault("ports", [{"port": 80}])
    return out


def ensure_namespace(client: KubeClient, name: str) -> None:
    """Create `name` if missing; a `liqo-tenant-<peer>` one labelled as Liqo labels its tenant namespaces."""
    meta: dict[str, Any] = {"name": name}
    if name.startswith(TENANT_PREFIX) and len(name) > len(TENANT_PREFIX):
        meta["labels"] = tenant_namespace_labels(name[len(TENANT_PREFIX) :])
    try:
        client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": meta})
    except errors.AlreadyExists:
        pass


def tenant_namespace_labels(peer: str) -> dict[str, str]:
    """The labels of Liqo v1.2.0's tenant namespaces (pkg/tenantNamespace/namespaceManager.go, ForgeNamespace)."""
    return {
        REMOTE_CLUSTER_ID: peer,
        TENANT_NAMESPACE: "true",
        "pod-security.kubernetes.io/audit": "privileged",
        "pod-security.kubernetes.io/enforce": "privileged",
        "pod-security.kubernetes.io/warn": "privileged",
    }


def _create_or_update(client: KubeClient, ref: ResourceRef, obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj["metadata"]
    deadline = time.monotonic() + SERVICE_ACCOUNT_WAIT_SECONDS
    while True:
        try:
            return client.create(ref, obj)
        except errors.AlreadyExists:
            live = client.get(ref, meta["name"], namespace=meta.get("namespace"))
            # A pod's spec is immutable once created (no kubelet here changes it either): keep the live one.
            keep = ("metadata", "status", "spec") if obj.get("kind") == "Pod" else ("metadata", "status")
            merged = {**live, **{k: v for k, v in obj.items() if k not in keep}}
            merged["metadata"] = {**live["metadata"], "labels": meta.get("labels", {})}
            return client.update(ref, merged)
        except errors.ApiError as err:
            if "serviceaccount" in str(err).lower() and time.monotonic() < deadline:
                time.sleep(0.2)
                continue
            raise


def apply(client: KubeClient, objects: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Create or update each object, namespaces first, then write its status if it has one."""
    objs = [_prepare(o) for o in objects if o.get("kind") in REFS]
    objs.sort(key=lambda o: 0 if o["kind"] == "Namespace" else 1)
    out = []
    for obj in objs:
        ref = REFS[obj["kind"]]
        if obj["metadata"].get("namespace"):
            ensure_namespace(client, obj["metadata"]["namespace"])
        live = _create_or_update(client, ref, obj)
        if obj.get("status") and obj["kind"] in WITH_STATUS_SUBRESOURCE:
            live = set_status(client, ref, live, obj["status"])
        out.append(live)
    return out


def set_status(
    client: KubeClient, ref: ResourceRef, live: Mapping[str, Any], status: Mapping[str, Any]
) -> dict[str, Any]:
    name, namespace = live["metadata"]["name"], live["metadata"].get("namespace")
    written = retry_on_conflict(
        lambda: client.get(ref, name, namespace=namespace),
        lambda current: {**dict(current), "status": dict(status)},
        lambda body: client.update_status(ref, body),
        current=live,
        what=f"status of {ref.kind} {name}",
        attempts=5,
    )
    assert written is not None
    return written


def update_retrying(
    client: KubeClient,
    ref: ResourceRef,
    name: str,
    change: Callable[[dict[str, Any]], None],
    *,
    namespace: str | None = None,
    attempts: int = 5,
) -> dict[str, Any]:
    """Read, `change` a copy, update; on a conflict (the controller writes meanwhile) read again and retry."""

    def changed(current: dict[str, Any]) -> dict[str, Any]:
        body = copy.deepcopy(current)
        change(body)
        return body

    written = retry_on_conflict(
        lambda: client.get(ref, name, namespace=namespace),
        changed,
        lambda body: client.update(ref, body),
        current=client.get(ref, name, namespace=namespace),
        what=f"{ref.kind} {name}",
        attempts=attempts,
    )
    assert written is not None
    return written


def remove(client: KubeClient, objects: Iterable[Mapping[str, Any]]) -> None:
    """Delete each object (namespaces excepted: they outlive a scenario), pods at once, gone ones ignored.

    Pods are deleted with no grace period: no kubelet runs here to confirm a graceful stop.
    """
    for obj in reversed([o for o in objects if o.get("kind") in REFS and o.get("kind") != "Namespace"]):
        meta = obj.get("metadata") or {}
        try:
            client.delete(
                REFS[obj["kind"]],
                meta["name"],
                namespace=meta.get("namespace"),
                grace_seconds=0 if obj["kind"] == "Pod" else None,
            )
        except errors.NotFound:
            pass
