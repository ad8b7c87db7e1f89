"""What a reconcile derives and may reuse: compiles, DryRun reports, per-node addresses, hosts.

Guarantees:
- An entry is reused only while what it was derived from is equal (a compile's inputs and
  capabilities; a report's outcome, pods and enforced firewall) or, for the cluster-wide
  ones, while the store generations of pods and nodes are the same and known (not negative).
- `forget(key)` drops a peering's entries (deleted, or gone to DryRun).
- `DesiredSpecs.share` hands the FirewallConfiguration cache the spec last compiled for an object in
  place of an equal copy decoded from the API server: one copy of each firewall's rules, not two.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from liqosec.compiler.dryrun import DryRunReport
from liqosec.compiler.firewallconfiguration import CompiledPeering, CompileInputs
from liqosec.controller import fabric
from liqosec.controller.resources import StoreView
from liqosec.firewall.addresses import AddressSet
from liqosec.firewall.capabilities import FIREWALL_CRD_NAME, STATELESS, Capabilities, from_crd
from liqosec.groups.resolve import hosted_addresses
from liqosec.kube.store import JsonDict, Store, object_key


class CrdCapabilities:
    """The capabilities the installed FirewallConfiguration CRD declares, re-parsed only when it changes."""

    def __init__(self, crds: Store) -> None:
        self._crds = crds
        self._cache: tuple[str, Capabilities] = ("", STATELESS)

    def __call__(self) -> Capabilities:
        crd = self._crds.get(FIREWALL_CRD_NAME)
        if crd is None:
            return STATELESS
        rv = str((crd.get("metadata") or {}).get("resourceVersion") or "")
        if self._cache[0] != rv:
            self._cache = (rv, from_crd(crd))
        return self._cache[1]


class DesiredSpecs:
    """The spec of every firewall last compiled, by object key (`namespace/name`), for the cache to share.

    A compiled firewall's spec is held by the compile kept for its peering; the same firewall, written
    and watched back, would be a second, equal copy in the FirewallConfiguration cache (tens of KB of
    JSON each, several times that as dicts). `share` is that cache's transform: an object whose spec
    equals the one compiled for it is stored with the compiled spec object instead. Both are read-only,
    so nothing can tell them apart but `is`. Thread-safe: workers keep, the reflector shares.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._specs: dict[str, Any] = {}  # object key -> spec
        self._names: dict[str, tuple[str, ...]] = {}  # peering key -> its firewalls' object keys

    def keep(self, key: str, firewalls: tuple[Mapping[str, Any], ...]) -> None:
        """The peering's firewalls as last compiled (replacing what it had before)."""
        specs = {object_key(fw): fw.get("spec") for fw in firewalls}
        with self._lock:
            for name in self._names.pop(key, ()):
                self._specs.pop(name, None)
            self._specs.update(specs)
            self._names[key] = tuple(specs)

    def forget(self, key: str) -> None:
        with self._lock:
            for name in self._names.pop(key, ()):
                self._specs.pop(name, None)

    def spec(self, name: str) -> Any:
        """The spec compiled for the object keyed `name`, or None."""
        with self._lock:
            return self._specs.get(name)

    def share(self, obj: JsonDict) -> JsonDict:
        """`obj` with the compiled spec object in place of its own when they are equal; else `obj`."""
        spec = obj.get("spec")
        try:
            desired = self.spec(object_key(obj))
        except ValueError:
            return obj
        if desired is None or desired is spec or desired != spec:
            return obj
        return {**obj, "spec": desired}


class Derived:
    """The reconciler's caches, keyed by peering (`ns/name`) or by the pods' and nodes' store generations."""

    def __init__(self, view: StoreView, desired: DesiredSpecs | None = None) -> None:
        self._view = view
        self.desired = desired or DesiredSpecs()
        # The last compile per key, reused while its inputs are equal (compiling is most of a
        # reconcile's CPU; reading the inputs is a few lookups in the caches).
        self._compiled: dict[str, tuple[CompileInputs, Capabilities, CompiledPeering]] = {}
        # The last DryRun report per key, reused while its outcome, the pods and the firewall in force are the same.
        self._reports: dict[str, tuple[CompiledPeering, int, list[Mapping[str, Any]], DryRunReport]] = {}
        self._hosted_kept: tuple[tuple[int, int], Mapping[str, AddressSet]] | None = None
        self._hosts_kept: tuple[tuple[int, int], fabric.Hosts] | None = None

    def forget(self, key: str) -> None:
        """The peering is gone: nothing derived for it is kept."""
        self._compiled.pop(key, None)
        self._reports.pop(key, None)
        self.desired.forget(key)

    def forget_report(self, key: str) -> None:
        """The peering is enforced: its DryRun report is gone."""
        self._reports.pop(key, None)

    def compiled(self, key: str) -> tuple[CompileInputs, Capabilities, CompiledPeering] | None:
        return self._compiled.get(key)

    def keep_compiled(self, key: str, inputs: CompileInputs, caps: Capabilities, outcome: CompiledPeering) -> None:
        self._compiled[key] = (inputs, caps, outcome)
        self.desired.keep(key, outcome.firewalls)

    def report(
        self,
        key: str,
        outcome: CompiledPeering,
        pods: int,
        enforced: list[Mapping[str, Any]],
        make: Callable[[], DryRunReport],
    ) -> DryRunReport:
        """The peering's report, made again only when the outcome, the pods or the enforced firewall changed."""
        kept = self._reports.get(key)
        if kept is not None and kept[0] is outcome and kept[1] == pods and pods >= 0 and kept[2] == enforced:
            return kept[3]
        report = make()
        self._reports[key] = (outcome, pods, enforced, report)
        return report

    def hosted(self, view: Any) -> Mapping[str, AddressSet]:
        """Per-node addresses, derived once per change of the pods or nodes, not once per peering."""
        stamp = (self._view.generation("Pod"), self._view.generation("Node"))
        kept = self._hosted_kept
        if kept is None or kept[0] != stamp or stamp[0] < 0:
            kept = self._hosted_kept = (stamp, hosted_addresses(view))
        return kept[1]

    def hosts(self) -> fabric.Hosts:
        """The hosts expected to apply firewalls, derived once per change of the pods or nodes."""
        stamp = (self._view.generation("Pod"), self._view.generation("Node"))
        kept = self._hosts_kept
        if kept is None or kept[0] != stamp or min(stamp) < 0:
            kept = self._hosts_kept = (stamp, fabric.expected_hosts(self._view))
        return kept[1]
