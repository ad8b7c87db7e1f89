"""spec.enforcement on the real API server: DryRun writes no firewall and reports what enforcing would change;
Enforce writes it, and the pods it really cuts are the ones the report counted; DryRun again retires it."""

from __future__ import annotations

from typing import Any

from support import example, running_controller, running_pod, unique_peer, wait_for

from harness.firewalls import firewall, pair_changes
from harness.objects import apply
from liqosec.controller.resources import PEERING_CONNECTIVITIES
from liqosec.kube.client import KubeClient


def policy(kube: KubeClient, peer: str) -> dict[str, Any]:
    return kube.get(PEERING_CONNECTIVITIES, peer, namespace=f"liqo-tenant-{peer}")


def conditions(pc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in (pc.get("status") or {}).get("conditions") or ()}


def set_enforcement(kube: KubeClient, peer: str, value: str) -> int:
    pc = policy(kube, peer)
    pc["spec"]["enforcement"] = value
    return int(kube.update(PEERING_CONNECTIVITIES, pc)["metadata"]["generation"])


def reported(kube: KubeClient, peer: str, generation: int) -> dict[str, Any] | None:
    """status.dryRun once the controller has seen `generation`."""
    pc = policy(kube, peer)
    status = pc.get("status") or {}
    return status.get("dryRun") if status.get("observedGeneration") == generation else None


def grown_report(kube: KubeClient, peer: str, pods: int) -> dict[str, Any] | None:
    report = (policy(kube, peer).get("status") or {}).get("dryRun") or {}
    return report if report.get("pods") == pods else None


def test_dry_run_then_enforce_then_dry_run_again(kube: KubeClient, local_pod_cidr: None) -> None:
    peer = unique_peer()
    objs = example("provider-isolate-offloaded.yaml", peer=peer)
    [pc] = [o for o in objs if o["kind"] == "PeeringConnectivity"]
    pc["spec"]["enforcement"] = "DryRun"
    apply(kube, objs)
    key = f"liqo-tenant-{peer}/{peer}"
    with running_controller(kube, retire_grace_seconds=1.0, resync_seconds=1.0) as ctl:
        report = wait_for("the dry-run report", lambda: reported(kube, peer, 1))
        # The report is written in the pass that would have created the firewall: there is none.
        assert firewall(kube, peer) is None
        conds = conditions(policy(kube, peer))
        assert (conds["DryRun"]["status"], conds["DryRun"]["reason"]) == ("True", "WouldChange")
        assert (conds["Ready"]["status"], conds["Ready"]["reason"]) == ("False", "DryRun")
        # The offloaded pods reach only rome's pods: every local pod's connection with them would be cut.
        assert report["newlyDenied"] >= 2 * 2 * 2 and report["newlyAllowed"] == 0
        assert report["comparedPairs"] == report["pairs"] and not report["capped"]
        sample = {(p["source"], p["destination"]) for p in report["newlyDeniedSample"]}
        assert len(sample) == min(10, report["newlyDenied"])
        assert ctl.metric("liqosec_dryrun_pairs", peering=key, change="newly_denied") == report["newlyDenied"]
        assert ctl.metric("liqosec_firewall_writes_total", peering=key, operation="create") == 0
        writes = ctl.metric("liqosec_status_writes_total", peering=key)
        passes = ctl.passes(key)
        wait_for("three resyncs: the same report, no write", lambda: ctl.passes(key) >= passes + 3)
        assert ctl.metric("liqosec_status_writes_total", peering=key) == writes
        assert firewall(kube, peer) is None

        # A local pod no rule names joins the pairs: the report follows it live.
        apply(kube, [running_pod("batch", f"jobs-{peer}", "10.1.3.33")])
        grown = wait_for("the report to count the new pod", lambda: grown_report(kube, peer, report["pods"] + 1))
        assert grown["newlyDenied"] > report["newlyDenied"] and grown["pairs"] > report["pairs"]
        report = grown

        set_enforcement(kube, peer, "Enforce")
        fc = wait_for("the firewall once enforced", lambda: firewall(kube, peer))
        wait_for("status.dryRun to go", lambda: "dryRun" not in (policy(kube, peer).get("status") or {}))
        assert "DryRun" not in conditions(policy(kube, peer))
        assert (
            ctl.controller.registry.get_sample_value("liqosec_dryrun_pairs", {"peering": key, "change": "newly_denied"})
            is None
        )
        # What the written firewall really cuts, pod pair by pod pair, is what the dry run counted.
        assert pair_changes(kube, peer, None, [fc["spec"]["table"]])[:2] == (report["pairs"], report["newlyDenied"])

        generation = set_enforcement(kube, peer, "DryRun")
        wait_for("the firewall to be retired", lambda: firewall(kube, peer) is None, timeout=30)
        again = wait_for("the report again", lambda: reported(kube, peer, generation))
        assert again == report
