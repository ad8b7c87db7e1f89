"""A fake API server for the controller's unit tests, in sample-controller's style.

`FakeKubeClient` implements `liqosec.kube.client.KubeClient` over an in-memory
object table with resourceVersions (a stale update gets 409, as from the real
server) and records every call as an `Action`, so a test asserts exactly what
a reconcile read and wrote. Failures can be scripted once per verb and
resource. Watches stream the table's changes, so a whole `Controller` runs on it.

`Fixture` preloads informer stores through the real `watched_resources()`
transforms and indexers, so the reconciler sees the view it sees in a cluster.
"""

from __future__ import annotations

import copy
import queue
import threading
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import CollectorRegistry

from liqosec.compiler.firewallconfiguration import ALL_NODES
from liqosec.controller.caches import DesiredSpecs
from liqosec.controller.changetimes import ChangeTimes
from liqosec.controller.events import EventRecorder
from liqosec.controller.metrics import ControllerMetrics
from liqosec.controller.reconcile import Reconciler
from liqosec.controller.resources import StoreView, watched_resources
from liqosec.controller.retire import FINALIZER
from liqosec.firewall.capabilities import STATELESS, Capabilities
from liqosec.kube import errors
from liqosec.kube.client import EVENTS, ItemTransform, JsonDict, JsonPatch, PatchType, ResourceRef
from liqosec.kube.store import Store

RETIRE_GRACE = 10.0

WRITES = frozenset({"create", "update", "update_status", "patch", "delete"})


@dataclass(frozen=True)
class Action:
    """One call the controller made: `resource` is the plural, `/status` for the subresource."""

    verb: str
    resource: str
    namespace: str
    name: str
    body: JsonDict | None = None

    @property
    def write(self) -> bool:
        """A write to a watched object (Events are recorded apart: they inform, never change state)."""
        return self.verb in WRITES


def _meta(obj: JsonDict) -> JsonDict:
    meta: JsonDict = obj.setdefault("metadata", {})
    return meta


def _selected(obj: JsonDict, selector: str | None) -> bool:
    if not selector:
        return True
    labels = _meta(obj).get("labels") or {}
    return all(labels.get(k) == v for k, _, v in (term.partition("=") for term in selector.split(",")))


class _Stream:
    """A watch: replays the changes after its resourceVersion, then follows new ones until closed."""

    def __init__(self, client: FakeKubeClient, plural: str, namespace: str | None, rv: int, selector: str | None):
        self._client, self._plural, self._namespace, self._selector = client, plural, namespace, selector
        self._rv = rv
        self._closed = threading.Event()
        self._wake: queue.SimpleQueue[None] = queue.SimpleQueue()
        self.parked = False  # waiting for news: everything yielded so far has been taken and handled

    def wake(self) -> None:
        self._wake.put(None)

    def close(self) -> None:
        self._closed.set()
        self.wake()

    def __iter__(self) -> Iterator[JsonDict]:
        while not self._closed.is_set():
            for rv, event in self._client.events_after(self._plural, self._rv):
                self._rv = rv
                obj = event["object"]
                if self._namespace and _meta(obj).get("namespace") != self._namespace:
                    continue
                if _selected(obj, self._selector):
                    yield copy.deepcopy(event)
            with self._client._lock:
                self.parked = not self._client.events_after(self._plural, self._rv)
            try:
                self._wake.get(timeout=0.5)
            except queue.Empty:
                pass
            self.parked = False


@dataclass
class FakeKubeClient:
    """In-memory objects keyed by (plural, namespace, name); every call lands in `actions`."""

    objects: dict[tuple[str, str, str], JsonDict] = field(default_factory=dict)
    actions: list[Action] = field(default_factory=list)
    events: list[JsonDict] = field(default_factory=list)
    _failures: list[tuple[str, str, errors.ApiError]] = field(default_factory=list)
    _log: list[tuple[int, str, JsonDict]] = field(default_factory=list)
    _streams: list[_Stream] = field(default_factory=list)
    _rv: int = 100
    _lock: threading.RLock = field(default_factory=threading.RLock)

    # ----- test controls -----
    def seed(self, ref: ResourceRef, obj: JsonDict) -> JsonDict:
        """Put an object on the server as a controller or kubelet would have (status included); not recorded."""
        with self._lock:
            stored = copy.deepcopy(obj)
            stored.setdefault("kind", ref.kind)
            meta = _meta(stored)
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", "2026-01-01T00:00:00Z")
            meta.setdefault("generation", 1)
            key = (ref.plural, str(meta.get("namespace") or ""), str(meta["name"]))
            self._store(key, stored, "MODIFIED" if key in self.objects else "ADDED")
            return copy.deepcopy(stored)

    def remove(self, ref: ResourceRef, name: str, namespace: str = "") -> None:
        """Delete an object behind the controller's back (not recorded)."""
        with self._lock:
            gone = self.objects.pop((ref.plural, namespace, name))
            self._bump(ref.plural, "DELETED", gone)

    def fail_once(self, verb: str, ref: ResourceRef, err: errors.ApiError) -> None:
        """The next `verb` on `ref` fails with `err` (and changes nothing)."""
        self._failures.append((verb, ref.plural, err))

    def stored(self, ref: ResourceRef, name: str, namespace: str = "") -> JsonDict | None:
        with self._lock:
            found = self.objects.get((ref.plural, namespace, name))
            return copy.deepcopy(found) if found is not None else None

    def of(self, ref: ResourceRef) -> list[JsonDict]:
        with self._lock:
            return [copy.deepcopy(o) for (plural, _, _), o in sorted(self.objects.items()) if plural == ref.plural]

    def writes(self, since: int = 0) -> list[Action]:
        return [a for a in self.actions[since:] if a.write]

    @property
    def resource_version(self) -> str:
        return str(self._rv)

    def delivered(self) -> bool:
        """Every change so far has reached every open watch and been handled (each watch asked for the next)."""
        with self._lock:
            return all(s.parked for s in self._streams if not s._closed.is_set())

    def events_after(self, plural: str, rv: int) -> list[tuple[int, JsonDict]]:
        with self._lock:
            return [(r, copy.deepcopy(e)) for r, p, e in self._log if p == plural and r > rv]

    # ----- internals -----
    def _bump(self, plural: str, event: str, obj: JsonDict) -> None:
        self._rv += 1
        logged = copy.deepcopy(obj)
        _meta(logged)["resourceVersion"] = str(self._rv)  # a deletion has a version of its own too
        if event != "DELETED":
            _meta(obj)["resourceVersion"] = str(self._rv)
        self._log.append((self._rv, plural, {"type": event, "object": logged}))
        for stream in self._streams:
            stream.parked = False
            stream.wake()

    def _store(self, key: tuple[str, str, str], obj: JsonDict, event: str) -> None:
        self.objects[key] = obj
        self._bump(key[0], event, obj)

    def _record(
        self, verb: str, ref: ResourceRef, namespace: str | None, name: str, body: Any = None, sub: str = ""
    ) -> None:
        resource = ref.plural + (f"/{sub}" if sub else "")
        self.actions.append(Action(verb, resource, namespace or "", name, copy.deepcopy(body)))
        for i, (f_verb, f_plural, err) in enumerate(self._failures):
            if f_verb == verb and f_plural == ref.plural:
                del self._failures[i]
                raise err

    def _live(self, ref: ResourceRef, name: str, namespace: str | None) -> JsonDict:
        found = self.objects.get((ref.plural, namespace or "", name))
        if found is None:
            raise errors.NotFound(404, "NotFound", f'{ref.plural} "{name}" not found')
        return found

    # ----- KubeClient -----
    def list(
        self,
        ref: ResourceRef,
        namespace: str | None = None,
        *,
        limit: int,
        continue_token: str | None,
        label_selector: str | None = None,
        transform: ItemTransform | None = None,
    ) -> JsonDict:
        with self._lock:
            self._record("list", ref, namespace, "")
            items = [
                o
                for o in self.of(ref)
                if (not namespace or _meta(o).get("namespace") == namespace) and _selected(o, label_selector)
            ]
            if transform is not None:
                items = [transform(o) for o in items]
            return {"items": items, "metadata": {"resourceVersion": str(self._rv)}}

    def watch(
        self,
        ref: ResourceRef,
        namespace: str | None = None,
        *,
        resource_version: str,
        timeout_seconds: int,
        allow_bookmarks: bool = True,
        label_selector: str | None = None,
    ) -> _Stream:
        with self._lock:
            self._record("watch", ref, namespace, "")
            stream = _Stream(self, ref.plural, namespace, int(resource_version or 0), label_selector)
            self._streams.append(stream)
            return stream

    def get(self, ref: ResourceRef, name: str, *, namespace: str | None = None) -> JsonDict:
        with self._lock:
            self._record("get", ref, namespace, name)
            return copy.deepcopy(self._live(ref, name, namespace))

    def create(self, ref: ResourceRef, obj: JsonDict, *, namespace: str | None = None) -> JsonDict:
        with self._lock:
            body = copy.deepcopy(obj)
            meta = _meta(body)
            ns = namespace or str(meta.get("namespace") or "")
            self._record("create", ref, ns, str(meta.get("name")), obj)
            key = (ref.plural, ns, str(meta["name"]))
            if key in self.objects:
                raise errors.AlreadyExists(409, "AlreadyExists", f'{ref.plural} "{meta["name"]}" already exists')
            if "resourceVersion" in meta:
                raise errors.BadRequest(400, "BadRequest", "resourceVersion should not be set on objects to be created")
            body.pop("status", None)  # a status subresource: created empty
            meta.update(uid=str(uuid.uuid4()), generation=1, creationTimestamp="2026-01-01T00:00:00Z")
            self._store(key, body, "ADDED")
            return copy.deepcopy(body)

    def _replace(self, verb: str, ref: ResourceRef, obj: JsonDict, *, status: bool) -> JsonDict:
        with self._lock:
            meta = _meta(copy.deepcopy(obj))
            self._record(verb, ref, meta.get("namespace"), str(meta.get("name")), obj, sub="status" if status else "")
            live = self._live(ref, str(meta["name"]), meta.get("namespace"))
            if str(meta.get("resourceVersion")) != _meta(live)["resourceVersion"]:
                raise errors.Conflict(
                    409,
                    "Conflict",
                    "the object has been modified; please apply your changes to the latest version and try again",
                )
            new = copy.deepcopy(live)
            if status:
                new["status"] = copy.deepcopy(obj.get("status"))
            else:
                changed = any(obj.get(k) != live.get(k) for k in obj if k not in ("metadata", "status"))
                new.update({k: copy.deepcopy(v) for k, v in obj.items() if k != "status"})
                new["metadata"] = {**_meta(live), **copy.deepcopy(_meta(obj))}
                if changed:
                    new["metadata"]["generation"] = int(_meta(live).get("generation") or 1) + 1
            self._store((ref.plural, str(meta.get("namespace") or ""), str(meta["name"])), new, "MODIFIED")
            return copy.deepcopy(new)

    def update(self, ref: ResourceRef, obj: JsonDict) -> JsonDict:
        return self._replace("update", ref, obj, status=False)

    def update_status(self, ref: ResourceRef, obj: JsonDict) -> JsonDict:
        return self._replace("update_status", ref, obj, status=True)

    def patch(
        self,
        ref: ResourceRef,
        name: str,
        body: JsonDict | JsonPatch,
        *,
        namespace: str | None = None,
        patch_type: PatchType = "merge",
    ) -> JsonDict:
        """A merge patch of metadata only (the controller patches nothing else): finalizers, labels."""
        if patch_type != "merge" or not isinstance(body, dict) or set(body) != {"metadata"}:
            raise NotImplementedError("the controller merge-patches metadata only")
        with self._lock:
            self._record("patch", ref, namespace, name, body)
            live = self._live(ref, name, namespace)
            wanted = dict(body["metadata"])
            version = wanted.pop("resourceVersion", None)
            if version is not None and str(version) != _meta(live)["resourceVersion"]:
                raise errors.Conflict(
                    409,
                    "Conflict",
                    "the object has been modified; please apply your changes to the latest version and try again",
                )
            new = copy.deepcopy(live)
            new["metadata"] = {**_meta(live), **copy.deepcopy(wanted)}
            if _meta(new).get("deletionTimestamp") and not _meta(new).get("finalizers"):
                del self.objects[(ref.plural, namespace or "", name)]
                self._bump(ref.plural, "DELETED", new)
                return copy.deepcopy(new)
            self._store((ref.plural, namespace or "", name), new, "MODIFIED")
            return copy.deepcopy(new)

    def delete(
        self, ref: ResourceRef, name: str, *, namespace: str | None = None, grace_seconds: int | None = None
    ) -> JsonDict:
        with self._lock:
            self._record("delete", ref, namespace, name)
            gone = self._live(ref, name, namespace)
            del self.objects[(ref.plural, namespace or "", name)]
            self._bump(ref.plural, "DELETED", gone)
            return {"kind": "Status", "status": "Success"}

    def create_event(self, event: JsonDict) -> JsonDict:
        with self._lock:
            self._record("create_event", EVENTS, _meta(event).get("namespace"), "", event)
            self.events.append(copy.deepcopy(event))
            return copy.deepcopy(event)


REFS: dict[str, ResourceRef] = {w.kind: w.ref for w in watched_resources()}


def ref_of(kind: str) -> ResourceRef:
    return REFS[kind]


class Fixture:
    """A reconciler over real informer stores, preloaded from (and re-synced with) a `FakeKubeClient`."""

    def __init__(
        self, objects: Iterable[JsonDict] = (), *, capabilities: Capabilities = STATELESS, scope: str = ALL_NODES
    ) -> None:
        self.client = FakeKubeClient()
        # Wired as the controller is: the firewall cache keeps the compiled spec in place of an equal copy.
        self.desired = DesiredSpecs()
        self.watched = {w.kind: w for w in watched_resources(self.desired.share)}
        self.stores: dict[str, Store] = {kind: w.new_store() for kind, w in self.watched.items()}
        for obj in objects:
            self.client.seed(ref_of(obj["kind"]), obj)
        self.sync()
        self.capabilities = capabilities
        self.registry = CollectorRegistry()
        self.metrics = ControllerMetrics(self.registry, workers=1)
        self.view = StoreView(self.stores)
        self.now = datetime(2026, 1, 2, tzinfo=UTC)
        # The informers' handlers mark input changes here (`changed`); on the fixture's clock.
        self.changes = ChangeTimes(lambda: self.now.timestamp())
        self.scope = scope
        self.restart()

    def restart(self) -> None:
        """A new reconciler on the same caches, as a new leader starts: it remembers none of its predecessor's
        writes."""
        self.reconciler = Reconciler(
            client=self.client,
            view=self.view,
            capabilities=lambda: self.capabilities,
            recorder=EventRecorder(self.client, instance="unit"),
            metrics=self.metrics,
            retire_grace=RETIRE_GRACE,
            now=lambda: self.now,
            scope=self.scope,
            desired=self.desired,
            changes=self.changes,
        )

    def sync(self) -> None:
        """Informers catch up: every store becomes the server's collection (through its transform and selector)."""
        for kind, store in self.stores.items():
            selector = self.watched[kind].label_selector
            store.replace(
                [o for o in self.client.of(ref_of(kind)) if _selected(o, selector)], self.client.resource_version
            )

    def seed(self, *objects: JsonDict, sync: bool = True) -> None:
        for obj in objects:
            self.client.seed(ref_of(obj["kind"]), obj)
        if sync:
            self.sync()

    def reconcile(self, key: str) -> list[Action]:
        """One pass; the actions it took, Events included. `self.again`: the requeue it asked for."""
        mark = len(self.client.actions)
        self.again = self.reconciler.reconcile(key)
        return self.client.actions[mark:]

    def after_grace(self) -> None:
        """Time passes: emptied firewalls may now be deleted."""
        self.now += timedelta(seconds=RETIRE_GRACE)

    def metric(self, name: str, **labels: str) -> float:
        return float(self.registry.get_sample_value(name, labels) or 0.0)


# ----- objects as the API server holds them -----
def namespace(name: str, **labels: str) -> JsonDict:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": dict(labels)}}


def tenant(peer: str) -> JsonDict:
    """A tenant namespace as Liqo labels it (both labels: the remote-cluster id alone marks offloaded workloads')."""
    return namespace(f"liqo-tenant-{peer}", **{"liqo.io/remote-cluster-id": peer, "liqo.io/tenant-namespace": "true"})


def local_network(cidr: str = "10.1.0.0/16", name: str = "pod-cidr", ns: str = "liqo") -> JsonDict:
    return {
        "apiVersion": "ipam.liqo.io/v1alpha1",
        "kind": "Network",
        "metadata": {"name": name, "namespace": ns, "labels": {"ipam.liqo.io/network-type": "pod-cidr"}},
        "spec": {"cidr": cidr},
        "status": {"cidr": cidr},
    }


def remote_network(peer: str, cidr: str) -> JsonDict:
    """A peer's remapped pod CIDR as a tenant Network (read when no Configuration says it)."""
    return {
        "apiVersion": "ipam.liqo.io/v1alpha1",
        "kind": "Network",
        "metadata": {
            "name": f"{peer}-pod",
            "namespace": f"liqo-tenant-{peer}",
            "labels": {"configuration.liqo.io/cidr-type": "pod"},
        },
        "spec": {"cidr": "10.200.0.0/16"},
        "status": {"cidr": cidr},
    }


def configuration(peer: str, *pod_cidrs: str) -> JsonDict:
    return {
        "apiVersion": "networking.liqo.io/v1beta1",
        "kind": "Configuration",
        "metadata": {"name": peer, "namespace": f"liqo-tenant-{peer}"},
        "spec": {"remote": {"cidr": {"pod": ["10.200.0.0/16"]}}},
        "status": {"remote": {"cidr": {"pod": list(pod_cidrs)}}},
    }


def pod(
    name: str, ns: str, ip: str | None, *, origin: str | None = None, node: str = "worker-1", **labels: str
) -> JsonDict:
    all_labels = {**labels, **({"offloading.liqo.io/origin": origin} if origin else {})}
    status: JsonDict = {"phase": "Running"}
    if ip:
        status.update(podIP=ip, podIPs=[{"ip": ip}])
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": all_labels},
        "spec": {"nodeName": node},
        "status": status,
    }


def node(name: str, **labels: str) -> JsonDict:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": dict(labels)}}


def virtual_node(name: str, peer: str) -> JsonDict:
    return node(name, **{"liqo.io/type": "virtual-node", "liqo.io/remote-cluster-id": peer})


def virtual_node_cr(peer: str, *labels_not_reflected: str) -> JsonDict:
    """Liqo's VirtualNode (offloading.liqo.io) for `peer`, in its tenant namespace, with what its kubelet skips."""
    spec: JsonDict = {"clusterID": peer, "createNode": True}
    if labels_not_reflected:
        spec["offloadingPatch"] = {"labelsNotReflected": list(labels_not_reflected)}
    return {
        "apiVersion": "offloading.liqo.io/v1beta1",
        "kind": "VirtualNode",
        "metadata": {"name": peer, "namespace": f"liqo-tenant-{peer}"},
        "spec": spec,
    }


def fabric_pod(name: str, node: str, *, phase: str = "Running") -> JsonDict:
    """A pod of Liqo's fabric DaemonSet (its chart's selector labels): its agent reports under `name`."""
    labels = {
        "app.kubernetes.io/name": "fabric",
        "app.kubernetes.io/instance": "liqo-fabric",
        "app.kubernetes.io/component": "networking",
        "app.kubernetes.io/part-of": "liqo",
    }
    out = pod(name, "liqo", None, node=node, **labels)
    out["spec"]["hostNetwork"] = True
    out["status"]["phase"] = phase
    return out


def rome_mix() -> list[JsonDict]:
    """Two local pods, two pods rome offloaded here, one shadow pod of a workload we offloaded to rome."""
    shadow = pod("api-0", "shop", "10.70.0.5", node="liqo-rome", **{"liqo.io/shadowPod": "true"})
    return [
        pod("web", "default", "10.1.1.10"),
        pod("db", "default", "10.1.1.11"),
        pod("cart-0", "shop-rome", "10.1.10.10", origin="rome"),
        pod("cart-1", "shop-rome", "10.1.10.11", origin="rome"),
        shadow,
        virtual_node("liqo-rome", "rome"),
    ]


def peering(name: str, ns: str, rules: list[JsonDict], *, finalized: bool = True, **spec: Any) -> JsonDict:
    """A policy; by default already carrying liqosec's finalizer, as after its first reconcile."""
    meta: JsonDict = {"name": name, "namespace": ns}
    if finalized:
        meta["finalizers"] = [FINALIZER]
    return {
        "apiVersion": "security.liqo.io/v1",
        "kind": "PeeringConnectivity",
        "metadata": meta,
        "spec": {"rules": rules, **spec},
    }


ISOLATE = [{"source": {"group": "offloaded"}, "destination": {"group": "remote-cluster"}, "action": "deny"}]


def cluster(*peers: str) -> list[JsonDict]:
    """Each peer: its tenant namespace, remapped pod CIDR 10.7<i>.0.0/16, one offloaded pod, an isolating policy."""
    objs = [local_network()]
    for i, peer in enumerate(peers):
        ns = f"liqo-tenant-{peer}"
        objs += [
            tenant(peer),
            configuration(peer, f"10.7{i}.0.0/16"),
            pod(f"{peer}-0", f"shop-{peer}", f"10.1.{10 + i}.10", origin=peer),
            peering(peer, ns, ISOLATE),
        ]
    return objs


def key(peer: str) -> str:
    return f"liqo-tenant-{peer}/{peer}"


def endpoint_slice(name: str, ns: str, service: str, *addresses: str, address_type: str = "IPv4") -> JsonDict:
    """An EndpointSlice of Service `service`, one endpoint per address."""
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": ns, "labels": {"kubernetes.io/service-name": service}},
        "addressType": address_type,
        "endpoints": [{"addresses": [a]} for a in addresses],
    }


def dns_slice(name: str, *addresses: str, address_type: str = "IPv4") -> JsonDict:
    """A slice of the cluster DNS (Service kube-dns in kube-system): the `nameserver` group."""
    return endpoint_slice(name, "kube-system", "kube-dns", *addresses, address_type=address_type)
