"""What a reconcile derives and may reuse: compiles, DryRun reports, per-node addresses, hosts.

Guarantees:
- An entry is reused only while what it was derived from is equal (a compile's inputs and
  capabilities; a report's outcome, pods and enforced firewall) or, for the cluster-wide
  ones, while the store generations of pods and nodes are the same and known (not negative).
- `forget(key)` drops a peering's entries (deleted, or gone to DryRun).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from liqosec.compiler.dryrun import DryRunReport
from liqosec.compiler.firewallconfiguration import CompiledPeering, CompileInputs
from liqosec.controller import fabric
from liqosec.controller.resources import StoreView
from liqosec.firewall.addresses import AddressSet
from liqosec.firewall.capabilities import FIREWALL_CRD_NAME, STATELESS, Capabilities, from_crd
from liqosec.groups.resolve import hosted_addresses
from liqosec.kube.store import Store


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


class Derived:
    """The reconciler's caches, keyed by peering (`ns/name`) or by the pods' and nodes' store generations."""

    def __init__(self, view: StoreView) -> None:
        self._view = view
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

    def forget_report(self, key: str) -> None:
        """The peering is enforced: its DryRun report is gone."""
        self._reports.pop(key, None)

    def compiled(self, key: str) -> tuple[CompileInputs, Capabilities, CompiledPeering] | None:
        return self._compiled.get(key)

    def keep_compiled(self, key: str, inputs: CompileInputs, caps: Capabilities, outcome: CompiledPeering) -> None:
        self._compiled[key] = (inputs, caps, outcome)

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
