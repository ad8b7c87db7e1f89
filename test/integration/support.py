"""Helpers for controller tests on the real API server: objects, a controller in a thread, polling."""

from __future__ import annotations

import copy
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry

from liqosec.controller.manager import Controller, Exit, Options
from liqosec.inputs import load_objects
from liqosec.kube.client import KubeClient

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], *, timeout: float = 30.0, interval: float = 0.1) -> T:
    """Poll until `probe` returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


# The cluster's own pod CIDR Network (one per cluster): the `local_pod_cidr` fixture applies it.
POD_CIDR_NETWORK: dict[str, Any] = {
    "apiVersion": "ipam.liqo.io/v1alpha1",
    "kind": "Network",
    "metadata": {"name": "pod-cidr", "namespace": "liqo", "labels": {"ipam.liqo.io/network-type": "pod-cidr"}},
    "spec": {"cidr": "10.1.0.0/16"},
    "status": {"cidr": "10.1.0.0/16"},
}


def running_pod(name: str, ns: str, ip: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    """A running pod on worker-1 holding `ip`."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, **({"labels": labels} if labels else {})},
        "spec": {"nodeName": "worker-1"},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]},
    }


def offloaded_pod(name: str, ns: str, ip: str, peer: str) -> dict[str, Any]:
    """A running pod offloaded here by `peer`, holding `ip`."""
    return running_pod(name, ns, ip, {"offloading.liqo.io/origin": peer})


def unique_peer(prefix: str = "p") -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def _rename(value: Any, old: str, new: str) -> Any:
    if isinstance(value, str):
        return value.replace(old, new)
    if isinstance(value, list):
        return [_rename(v, old, new) for v in value]
    if isinstance(value, dict):
        return {_rename(k, old, new): _rename(v, old, new) for k, v in value.items()}
    return value


def example(name: str, *, peer: str, old_peer: str = "rome") -> list[dict[str, Any]]:
    """An example cluster with its peer renamed (and its app namespaces suffixed) so tests do not collide."""
    objs = [
        o
        for o in load_objects([str(EXAMPLES / name)])
        if not (o["kind"] == "Network" and o["metadata"]["namespace"] == "liqo")
    ]
    objs = _rename(copy.deepcopy(objs), old_peer, peer)
    suffix = peer
    for o in objs:
        meta = o["metadata"]
        if meta.get("namespace") and not meta["namespace"].startswith("liqo-tenant-"):
            meta["namespace"] = f"{meta['namespace']}-{suffix}"
    return objs


@dataclass
class Running:
    controller: Controller
    stop: threading.Event
    thread: threading.Thread
    result: list[Exit]
    reconciled: Counter[str] = field(default_factory=Counter)  # key -> reconcile passes finished

    def metric(self, name: str, **labels: str) -> float:
        value = self.controller.registry.get_sample_value(name, labels)
        return float(value or 0.0)

    def passes(self, key: str) -> int:
        """Reconcile passes of `key` finished so far (a resync is one)."""
        return self.reconciled[key]

    def idle(self) -> bool:
        """Nothing queued, held for a batch window, waiting for a retry, or being reconciled."""
        queue = self.controller.queue
        return len(queue) == 0 and queue.waiting() == 0 and not queue._processing

    def halt(self, timeout: float = 20.0) -> None:
        self.stop.set()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "controller did not stop within the grace period"


@contextmanager
def running_controller(client: KubeClient, **options: Any) -> Iterator[Running]:
    opts = Options(
        identity=options.pop("identity", f"test-{uuid.uuid4().hex[:6]}"), **{"leader_elect": False, **options}
    )
    controller = Controller(client, opts, registry=CollectorRegistry())
    stop = threading.Event()
    result: list[Exit] = []
    thread = threading.Thread(target=lambda: result.append(controller.run(stop)), daemon=True)
    handle = Running(controller, stop, thread, result)
    reconcile = controller.reconciler.reconcile

    def counted(key: str) -> float | None:
        try:
            return reconcile(key)
        finally:
            handle.reconciled[key] += 1

    controller.reconciler.reconcile = counted  # type: ignore[method-assign]
    thread.start()
    try:
        wait_for("informers to sync", controller.synced, timeout=30)
        yield handle
    finally:
        handle.halt()
