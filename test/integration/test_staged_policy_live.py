"""A staged (DryRun) policy beside the enforced one, on the real API server: both are valid, the enforced
firewall stays, the staged report counts newly denied and newly allowed pairs against the firewall in force,
follows an edit of the enforced policy, and both reports are what the promoted policy's firewall really does."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import yaml
from support import example, running_controller, running_pod, unique_peer, wait_for

from harness.firewalls import firewall, pair_changes
from harness.objects import apply, update_retrying
from liqosec.cli import main
from liqosec.controller.resources import FIREWALL_CONFIGURATIONS, PEERING_CONNECTIVITIES
from liqosec.kube.client import KubeClient
from liqosec.live import read_cluster

# Opens the offloaded pods to local pods, and cuts them off the peer's pods.
TRIAL = [
    {"source": {"group": "offloaded"}, "destination": {"group": "local-cluster"}, "action": "allow"},
    {"source": {"group": "local-cluster"}, "destination": {"group": "offloaded"}, "action": "allow"},
    {"source": {"group": "remote-cluster"}, "action": "deny"},
    {"destination": {"group": "remote-cluster"}, "action": "deny"},
]


def policy(kube: KubeClient, name: str, ns: str) -> dict[str, Any]:
    return kube.get(PEERING_CONNECTIVITIES, name, namespace=ns)


def conditions(pc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in (pc.get("status") or {}).get("conditions") or ()}


def counts(report: dict[str, Any]) -> tuple[int, int, int]:
    return report["pairs"], report["newlyDenied"], report["newlyAllowed"]


def test_a_staged_policy_beside_the_enforced_one(kube: KubeClient, local_pod_cidr: None) -> None:
    peer = unique_peer()
    ns = f"liqo-tenant-{peer}"
    objs = example("provider-isolate-offloaded.yaml", peer=peer)
    # A pod in the peer's address space, so that the peer's traffic has pods at both ends.
    objs.append(running_pod("client", f"remote-{peer}", "10.71.1.20"))
    apply(kube, objs)
    with running_controller(kube, retire_grace_seconds=1.0, resync_seconds=1.0) as ctl:
        enforced = wait_for("the enforced firewall", lambda: firewall(kube, peer, ns))
        staged = {
            "apiVersion": "security.liqo.io/v1",
            "kind": "PeeringConnectivity",
            "metadata": {"name": "trial", "namespace": ns},
            "spec": {"enforcement": "DryRun", "rules": TRIAL},
        }
        apply(kube, [staged])

        def report_against(fc: dict[str, Any]) -> dict[str, Any] | None:
            found = (policy(kube, "trial", ns).get("status") or {}).get("dryRun") or {}
            live = firewall(kube, peer, ns)
            # Against the enforced policy's firewall as it is now (the report follows it).
            in_force = found.get("comparedWith", "").startswith("the firewall in force")
            return found if in_force and live is not None and live["spec"] == fc["spec"] else None

        first = wait_for("the staged report", lambda: report_against(enforced))
        assert first["comparedWith"] == f"the firewall in force: 1 FirewallConfiguration of PeeringConnectivity {peer}"
        assert first["newlyAllowed"] > 0 and first["newlyDenied"] > 0
        for name in (peer, "trial"):
            assert conditions(policy(kube, name, ns))["Valid"]["status"] == "True", name
        assert (conditions(policy(kube, "trial", ns))["Ready"]["reason"]) == "DryRun"
        assert firewall(kube, "trial", ns) is None
        key = f"{ns}/trial"
        passes = ctl.passes(key), ctl.passes(f"{ns}/{peer}")
        wait_for(  # the staged policy leaves the enforced firewall as it is
            "two resyncs of both policies",
            lambda: ctl.passes(key) >= passes[0] + 2 and ctl.passes(f"{ns}/{peer}") >= passes[1] + 2,
        )
        assert firewall(kube, peer, ns) == enforced
        assert ctl.metric("liqosec_dryrun_pairs", peering=key, change="newly_allowed") == first["newlyAllowed"]
        assert ctl.metric("liqosec_dryrun_pairs", peering=key, change="newly_denied") == first["newlyDenied"]

        # Editing the enforced policy (now letting everything through) rewrites its firewall; the report follows.
        update_retrying(kube, PEERING_CONNECTIVITIES, peer, lambda pc: pc["spec"].update(rules=[]), namespace=ns)
        opened = wait_for(
            "the enforced firewall rewritten",
            lambda: fw if (fw := firewall(kube, peer, ns)) and fw["spec"] != enforced["spec"] else None,
        )
        # A report made before the rewrite can still be on status beside the new firewall: the one that
        # follows it allows nothing new (everything already passes); the promotion below checks its counts.
        second = wait_for(
            "the staged report to follow",
            lambda: found if (found := report_against(opened)) and found["newlyAllowed"] == 0 else None,
        )
        assert second["newlyDenied"] > first["newlyDenied"]

        # Promote it: delete the enforced policy, then enforce the staged one. Its firewall is what both
        # reports were about.
        kube.delete(PEERING_CONNECTIVITIES, peer, namespace=ns)
        wait_for("the enforced firewall retired", lambda: firewall(kube, peer, ns) is None, timeout=30)
        # The controller writes the policy's status meanwhile: a conflict is read again and retried.
        update_retrying(
            kube, PEERING_CONNECTIVITIES, "trial", lambda pc: pc["spec"].update(enforcement="Enforce"), namespace=ns
        )
        promoted = wait_for("the promoted firewall", lambda: firewall(kube, "trial", ns))
        tables = [promoted["spec"]["table"]]
        assert pair_changes(kube, peer, [enforced["spec"]["table"]], tables) == counts(first)
        assert pair_changes(kube, peer, [opened["spec"]["table"]], tables) == counts(second)


def rendered(objects: list[dict[str, Any]], tmp_path: Path, *flags: str) -> list[dict[str, Any]]:
    """`liqosec render` of a dump of the live cluster."""
    dump = tmp_path / "cluster.yaml"
    dump.write_text(yaml.safe_dump_all(objects))
    out = io.StringIO()
    assert main(["render", "-f", str(dump), *flags], out=out) == 0
    return [d for d in yaml.safe_load_all(out.getvalue()) if d]


def as_written(fc: dict[str, Any]) -> tuple[Any, ...]:
    meta = fc["metadata"]
    return meta["name"], meta["labels"], meta.get("ownerReferences"), fc["spec"]


def test_render_of_the_live_cluster_is_what_the_controller_wrote_and_a_dry_run_firewall_applied_by_hand_stays_apart(
    kube: KubeClient, local_pod_cidr: None, tmp_path: Path
) -> None:
    peer = unique_peer()
    ns = f"liqo-tenant-{peer}"
    staged = {
        "apiVersion": "security.liqo.io/v1",
        "kind": "PeeringConnectivity",
        "metadata": {"name": "trial", "namespace": ns},
        "spec": {"enforcement": "DryRun", "rules": TRIAL},
    }
    apply(kube, [*example("provider-isolate-offloaded.yaml", peer=peer), staged])
    with running_controller(kube, retire_grace_seconds=1.0, resync_seconds=1.0) as ctl:
        wait_for("the enforced firewall", lambda: firewall(kube, peer, ns))

        def report() -> dict[str, Any] | None:
            found = (policy(kube, "trial", ns).get("status") or {}).get("dryRun") or {}
            return found if found.get("comparedWith", "").startswith("the firewall in force") else None

        wait_for("the staged report against the enforced firewall", report)
        wait_for("the controller idle", ctl.idle)
        before = report()
        objects, _ = read_cluster(kube)
        # The shared API server holds other tests' peerings, some invalid on purpose: this namespace's only.
        objects = [o for o in objects if o["kind"] != "PeeringConnectivity" or o["metadata"]["namespace"] == ns]
        live = kube.list(FIREWALL_CONFIGURATIONS, ns, limit=500, continue_token=None)["items"]
        assert sorted(map(as_written, rendered(objects, tmp_path))) == sorted(map(as_written, live))
        dry = [
            fc
            for fc in rendered(objects, tmp_path, "--include-dry-run")
            if fc["metadata"]["name"].startswith("dryrun-")
        ]
        assert [fc["metadata"]["name"] for fc in dry] == ["dryrun-liqosec-trial"]
        # Applied by hand: Liqo's webhook admits it (its table is no other's), and the controller leaves it be.
        applied = apply(kube, dry)
        key = f"{ns}/trial"
        passes = ctl.passes(key), ctl.passes(f"{ns}/{peer}")
        wait_for(
            "two resyncs of both policies, past the retire grace",
            lambda: ctl.passes(key) >= passes[0] + 2 and ctl.passes(f"{ns}/{peer}") >= passes[1] + 2,
        )
        after = kube.list(FIREWALL_CONFIGURATIONS, ns, limit=500, continue_token=None)["items"]
        assert sorted(map(as_written, after)) == sorted(map(as_written, [*live, *applied]))
        assert before is not None and report() == before
