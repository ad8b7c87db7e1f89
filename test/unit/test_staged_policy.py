"""Staged policies: DryRun PeeringConnectivities beside the peering's enforced one. They write no firewall,
leave the enforced one alone, and report what replacing it would change, counted against its live firewall."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import yaml
from fake_kube import Fixture, cluster, key, node, peering, rome_mix

from harness.reconciling import converge
from liqosec.cli import main
from liqosec.compiler.firewallconfiguration import ALL_NODES, PER_NODE
from liqosec.controller.mapping import KeyMapper, firewall_configuration_keys
from liqosec.controller.resources import FIREWALL_CONFIGURATIONS as FCS
from liqosec.controller.resources import PEERING_CONNECTIVITIES as PCS
from liqosec.firewall.addresses import ip_to_int
from liqosec.firewall.evaluate import connects, tables_of
from liqosec.inputs import load_objects
from liqosec.matrix import build_matrix
from liqosec.offline import outcomes

ROME = "liqo-tenant-rome"
ENFORCED, STAGED = key("rome"), f"{ROME}/trial"
# Enforced: offloaded pods may not talk to local pods.
SPLIT = [{"source": {"group": "offloaded"}, "destination": {"group": "local-cluster"}, "action": "deny"}]
# Staged: lets that through, but cuts local pods off the workloads we offloaded to rome.
TRIAL = [
    {"source": {"group": "offloaded"}, "destination": {"group": "local-cluster"}, "action": "allow"},
    {"source": {"group": "local-cluster"}, "destination": {"group": "vc-remote"}, "action": "deny"},
]


pods = rome_mix


def world(trial: list[dict[str, Any]] = TRIAL, enforcement: str = "DryRun") -> list[dict[str, Any]]:
    objs = [o for o in cluster("rome") if o["kind"] not in ("PeeringConnectivity", "Pod")]
    enforced = peering("rome", ROME, SPLIT)
    enforced["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    staged = peering("trial", ROME, trial, enforcement=enforcement)
    staged["metadata"]["creationTimestamp"] = "2026-02-01T00:00:00Z"
    return [*objs, *pods(), enforced, staged]


def status(f: Fixture, name: str) -> dict[str, Any]:
    obj = f.client.stored(PCS, name, ROME)
    assert obj is not None
    return dict(obj.get("status") or {})


def cond(f: Fixture, name: str, type_: str) -> dict[str, Any]:
    return next(c for c in status(f, name).get("conditions") or () if c["type"] == type_)


def edit(f: Fixture, name: str, **spec: Any) -> None:
    obj = f.client.stored(PCS, name, ROME)
    assert obj is not None
    obj["spec"].update(spec)
    obj["metadata"]["generation"] = int(obj["metadata"].get("generation") or 0) + 1
    f.seed(obj)


def expected(f: Fixture) -> tuple[int, int, int]:
    """(pairs, newly denied, newly allowed), pair by pair: the live firewall against the staged policy alone,
    compiled as `liqosec render` compiles it."""
    live = [fc for fc in f.client.of(FCS) if fc["metadata"]["labels"].get("security.liqo.io/peering-connectivity")]
    enforced = tables_of(live)
    staged_objs = [o for o in world() if o["kind"] != "PeeringConnectivity" or o["metadata"]["name"] == "trial"]
    trial = next(o for o in f.client.of(PCS) if o["metadata"]["name"] == "trial")
    staged_objs = [o for o in staged_objs if o["kind"] != "PeeringConnectivity"] + [trial]
    [outcome] = outcomes(staged_objs)
    proposed = tables_of(outcome.firewalls)
    ips = [p["status"]["podIP"] for p in pods() if p["kind"] == "Pod"]
    space = outcome.groups.peer_space
    pairs = denied = allowed = 0
    for a in ips:
        for b in ips:
            if a == b or not (ip_to_int(a) in space or ip_to_int(b) in space):
                continue
            pairs += 1
            now, then = connects(enforced, a, b), connects(proposed, a, b)
            denied += now and not then
            allowed += then and not now
    return pairs, denied, allowed


def test_a_staged_policy_reports_against_the_enforced_firewall_and_leaves_it_alone() -> None:
    f = Fixture(world())
    converge(f, ENFORCED, passes=8)
    enforced_fc = f.client.stored(FCS, "liqosec-rome", ROME)
    assert enforced_fc is not None
    actions = f.reconcile(STAGED)
    assert [(a.verb, a.resource) for a in actions] == [("update_status", "peeringconnectivities/status")]
    f.sync()
    assert f.client.stored(FCS, "liqosec-rome", ROME) == enforced_fc  # not retired, not touched
    assert f.client.stored(FCS, "liqosec-trial", ROME) is None
    report = status(f, "trial")["dryRun"]
    pairs, denied, allowed = expected(f)
    assert denied > 0 and allowed > 0  # both directions of change are there to see
    assert (report["pairs"], report["newlyDenied"], report["newlyAllowed"]) == (pairs, denied, allowed)
    # Allowed: an offloaded pod and a local pod, which the enforced SPLIT keeps apart.
    allowed_pairs = {(p["source"], p["destination"]) for p in report["newlyAllowedSample"]}
    assert ("shop-rome/cart-0", "default/web") in allowed_pairs
    # Denied: a local pod and the shadow pod of what we offloaded to rome.
    assert any(p["destination"] == "shop/api-0" for p in report["newlyDeniedSample"])
    assert report["comparedWith"] == "the firewall in force: 1 FirewallConfiguration of PeeringConnectivity rome"
    for name in ("rome", "trial"):
        assert cond(f, name, "Valid")["status"] == "True"
    assert cond(f, "rome", "Ready")["status"] == "True" and "dryRun" not in status(f, "rome")
    assert (cond(f, "trial", "DryRun")["reason"], cond(f, "trial", "Ready")["reason"]) == ("WouldChange", "DryRun")
    promotion = cond(f, "trial", "Ready")["message"]
    assert promotion.endswith("delete or stage the enforced policy first, then set it to Enforce")
    assert f"compared with {report['comparedWith']}" in cond(f, "trial", "DryRun")["message"]
    assert f.metric("liqosec_dryrun_pairs", peering=STAGED, change="newly_allowed") == allowed
    assert f.metric("liqosec_dryrun_pairs", peering=STAGED, change="newly_denied") == denied
    converge(f, ENFORCED, STAGED, passes=8)  # and it stays so: nothing more to write on either
    assert f.client.stored(FCS, "liqosec-rome", ROME)["spec"] == enforced_fc["spec"]  # type: ignore[index]


def test_a_staged_copy_of_the_enforced_policy_changes_nothing() -> None:
    f = Fixture(world(SPLIT))
    converge(f, ENFORCED, STAGED, passes=8)
    report = status(f, "trial")["dryRun"]
    assert report["pairs"] > 0 and (report["newlyDenied"], report["newlyAllowed"]) == (0, 0)
    assert cond(f, "trial", "DryRun")["reason"] == "NoChange"


def test_editing_the_enforced_policy_wakes_the_staged_one_and_its_report_follows() -> None:
    f = Fixture(world())
    converge(f, ENFORCED, STAGED, passes=8)
    before = status(f, "trial")["dryRun"]
    edit(f, "rome", rules=[])  # the enforced policy now lets everything through
    old_fc = f.stores["FirewallConfiguration"].get(f"{ROME}/liqosec-rome")
    converge(f, ENFORCED, passes=8)
    new_fc = f.stores["FirewallConfiguration"].get(f"{ROME}/liqosec-rome")
    assert old_fc is not None and new_fc is not None and old_fc["spec"] != new_fc["spec"]
    mapper = KeyMapper(f.view)
    assert mapper.keys(firewall_configuration_keys, old_fc, new_fc) == {ENFORCED, STAGED}
    f.reconcile(STAGED)
    after = status(f, "trial")["dryRun"]
    pairs, denied, allowed = expected(f)
    assert (after["newlyDenied"], after["newlyAllowed"]) == (denied, allowed)
    assert after["newlyAllowed"] == 0 and after["newlyAllowed"] < before["newlyAllowed"]  # nothing is cut now


def test_an_agent_report_on_the_enforced_firewall_wakes_only_its_owner() -> None:
    f = Fixture(world())
    converge(f, ENFORCED, STAGED, passes=8)
    fc = f.stores["FirewallConfiguration"].get(f"{ROME}/liqosec-rome")
    assert fc is not None
    reported = {
        **fc,
        "metadata": {**fc["metadata"], "resourceVersion": "999"},
        "status": {"conditions": [{"type": "Applied", "status": "True", "host": "worker-1"}]},
    }
    mapper = KeyMapper(f.view)
    assert mapper.keys(firewall_configuration_keys, fc, reported) == {ENFORCED}
    assert mapper.keys(firewall_configuration_keys, None, fc) == {ENFORCED, STAGED}  # created
    assert mapper.keys(firewall_configuration_keys, fc, None) == {ENFORCED, STAGED}  # deleted


def test_with_the_enforced_policy_gone_the_staged_one_compares_with_no_firewall() -> None:
    f = Fixture(world())
    converge(f, ENFORCED, STAGED, passes=8)
    obj = f.client.stored(PCS, "rome", ROME)
    assert obj is not None
    obj["metadata"]["deletionTimestamp"] = "2026-01-02T00:00:00Z"
    f.seed(obj)
    converge(f, ENFORCED, STAGED, passes=8)  # emptied: retiring, so no longer in force
    report = status(f, "trial")["dryRun"]
    assert report["comparedWith"].startswith("no firewall")
    assert report["newlyAllowed"] == 0 and report["newlyDenied"] > 0


def test_two_enforced_policies_still_conflict_and_staging_the_second_makes_it_valid() -> None:
    f = Fixture(world(enforcement="Enforce"))
    converge(f, ENFORCED, STAGED, passes=8)
    valid = cond(f, "trial", "Valid")
    assert valid["status"] == "False" and valid["reason"] == "Conflict"
    assert valid["message"].startswith(f"metadata.name: the peering of '{ROME}' is already governed by 'rome'")
    assert "set spec.enforcement: DryRun to stage this one" in valid["message"]
    assert f.client.stored(FCS, "liqosec-trial", ROME) is None
    edit(f, "trial", enforcement="DryRun")
    converge(f, ENFORCED, STAGED, passes=8)
    assert cond(f, "trial", "Valid")["status"] == "True" and status(f, "trial")["dryRun"]["pairs"] > 0
    assert cond(f, "rome", "Ready")["status"] == "True"


def test_the_oldest_enforced_policy_governs_whatever_the_staged_ones_ages() -> None:
    objs = world()
    staged = next(o for o in objs if o["metadata"].get("name") == "trial")
    staged["metadata"]["creationTimestamp"] = "2025-01-01T00:00:00Z"  # older than the enforced one
    f = Fixture(objs)
    converge(f, ENFORCED, STAGED, passes=8)
    assert cond(f, "rome", "Valid")["status"] == "True" and f.client.stored(FCS, "liqosec-rome", ROME) is not None
    assert cond(f, "trial", "Valid")["status"] == "True"


def test_render_and_matrix_take_an_enforced_and_a_staged_policy(tmp_path: Path) -> None:
    source = tmp_path / "both.yaml"
    source.write_text(yaml.safe_dump_all(world()))
    out = io.StringIO()
    assert main(["render", "-f", str(source)], out=out) == 0
    rendered = [d for d in yaml.safe_load_all(out.getvalue()) if d]
    assert [d["metadata"]["name"] for d in rendered] == ["liqosec-rome"]  # the staged policy's: not written
    # The matrix shows the peering as enforced, the staged policy on its own; the cells of running pods
    # that differ between the two are the controller's report.
    m = build_matrix(world())
    alone = build_matrix([o for o in world() if o["metadata"].get("name") != "trial"])
    assert m.grid(peer="rome") == m.grid() == alone.grid()
    f = Fixture(world())
    converge(f, ENFORCED, STAGED, passes=8)
    assert [written(fc) for fc in f.client.of(FCS)] == [written(fc) for fc in rendered]  # what the controller wrote
    report = status(f, "trial")["dryRun"]
    staged = m.grid(peer=STAGED)
    enforced = m.grid(peer="rome")
    eps = [i for i, e in enumerate(m.endpoints) if e.kind == "pod"]
    space = outcomes(world())[0].groups.peer_space
    changed = [
        (enforced[i][j], staged[i][j])
        for i in eps
        for j in eps
        if i != j and (ip_to_int(m.endpoints[i].ip) in space or ip_to_int(m.endpoints[j].ip) in space)
    ]
    assert (len(changed), changed.count((True, False)), changed.count((False, True))) == (
        report["pairs"],
        report["newlyDenied"],
        report["newlyAllowed"],
    )
    text = io.StringIO()
    assert main(["matrix", "-f", str(source), "-o", "json"], out=text) == 0
    assert json.loads(text.getvalue())["peerings"].keys() == {"rome", STAGED}


def written(fc: dict[str, Any]) -> tuple[Any, ...]:
    """What `liqosec render` and the controller both decide (render knows no uid, so no owner reference)."""
    meta = fc["metadata"]
    return meta["namespace"], meta["name"], meta["labels"], fc["spec"]


def names_and_tables(fcs: list[dict[str, Any]]) -> tuple[set[str], set[str]]:
    return {fc["metadata"]["name"] for fc in fcs}, {fc["spec"]["table"]["name"] for fc in fcs}


def test_include_dry_run_adds_the_staged_firewall_under_names_and_tables_no_enforced_one_has(tmp_path: Path) -> None:
    """A staged copy named like the enforced policy's ports shard: its naive names would be that shard's."""
    ports = Path(__file__).resolve().parents[2] / "test/dataplane/ports/ports-protected-borders.yaml"
    docs = [d for d in yaml.safe_load_all(ports.read_text()) if d]
    [pc] = [d for d in docs if d["kind"] == "PeeringConnectivity"]
    staged = {
        **pc,
        "metadata": {**pc["metadata"], "name": "milan-ports"},
        "spec": {**pc["spec"], "enforcement": "DryRun"},
    }
    source = tmp_path / "both.yaml"
    source.write_text(yaml.safe_dump_all([*docs, staged]))

    def render(*flags: str) -> list[dict[str, Any]]:
        out = io.StringIO()
        assert main(["render", "-f", str(source), *flags], out=out) == 0
        return [d for d in yaml.safe_load_all(out.getvalue()) if d]

    enforced, both = render(), render("--include-dry-run")
    assert names_and_tables(enforced) == (
        {"liqosec-milan", "liqosec-milan-ports"},
        {"liqosec-milan", "liqosec-milan_ports"},
    )
    assert both[: len(enforced)] == enforced
    dry = both[len(enforced) :]
    dry_names, dry_tables = names_and_tables(dry)
    assert len(dry_names) == len(dry_tables) == len(dry) == 2
    enforced_names, enforced_tables = names_and_tables(enforced)
    assert not dry_names & enforced_names and not dry_tables & enforced_tables
    assert all(fc["metadata"]["labels"]["security.liqo.io/dry-run-of"] == "milan-ports" for fc in dry)
    # The rules are those enforcing it would write.
    assert [fc["spec"]["table"]["chains"] for fc in dry] == [fc["spec"]["table"]["chains"] for fc in enforced]


def test_the_controller_leaves_a_dry_run_firewall_applied_by_hand_alone(tmp_path: Path) -> None:
    """`render --include-dry-run | kubectl apply`: neither retired as the staged policy's nor taken as in force."""
    source = tmp_path / "both.yaml"
    source.write_text(yaml.safe_dump_all(world()))
    out = io.StringIO()
    assert main(["render", "-f", str(source), "--include-dry-run"], out=out) == 0
    [dry] = [d for d in yaml.safe_load_all(out.getvalue()) if d and d["metadata"]["name"].startswith("dryrun-")]
    plain, f = Fixture(world()), Fixture(world())
    converge(plain, ENFORCED, STAGED, passes=8)
    f.seed(dry)
    applied = f.client.stored(FCS, "dryrun-liqosec-trial", ROME)
    converge(f, ENFORCED, STAGED, passes=8)
    f.after_grace()
    converge(f, ENFORCED, STAGED, passes=8)
    assert applied is not None and f.client.stored(FCS, "dryrun-liqosec-trial", ROME) == applied  # untouched
    assert status(f, "trial")["dryRun"] == status(plain, "trial")["dryRun"]  # not counted as in force
    assert [written(fc) for fc in f.client.of(FCS) if fc != applied] == [written(fc) for fc in plain.client.of(FCS)]


def test_the_readme_staged_example_is_what_the_controller_reports() -> None:
    root = Path(__file__).resolve().parents[2]
    section = (root / "README.md").read_text().split("### Staged policies: a DryRun policy beside the enforced one")[1]
    shown = yaml.safe_load(section.split("```yaml\n", 1)[1].split("\n```", 1)[0])
    objs = load_objects([str(root / "examples/provider-isolate-offloaded.yaml")])
    documented = shown.pop("status")["dryRun"]
    f = Fixture([*objs, shown])
    meta = shown["metadata"]
    converge(f, f"{meta['namespace']}/rome", f"{meta['namespace']}/{meta['name']}", passes=8)
    live = f.client.stored(PCS, meta["name"], meta["namespace"])
    assert live is not None
    assert live["status"]["dryRun"] == documented


def test_per_node_firewalls_in_force_give_the_report_all_nodes_ones_give() -> None:
    """`--firewall-scope per-node`: the enforced policy's firewall is one object per node; read together they
    decide each pair as the all-nodes chain does, so the staged report is the same."""
    objs = [*world(), node("worker-1"), node("worker-2")]
    for o in objs:
        if o["kind"] == "Pod" and o["metadata"]["name"] in ("db", "cart-1"):
            o["spec"]["nodeName"] = "worker-2"
    reports = {}
    for scope in (ALL_NODES, PER_NODE):
        f = Fixture(objs, scope=scope)
        converge(f, ENFORCED, STAGED, passes=8)
        fcs = [fc["metadata"]["name"] for fc in f.client.of(FCS)]
        assert len(fcs) == 1 if scope == ALL_NODES else len(fcs) > 1, fcs  # one per node with rules
        reports[scope] = status(f, "trial")["dryRun"]
    assert reports[ALL_NODES]["newlyDenied"] > 0 and reports[ALL_NODES]["newlyAllowed"] > 0
    same = ("pods", "pairs", "newlyDenied", "newlyAllowed")
    assert {k: reports[PER_NODE][k] for k in same} == {k: reports[ALL_NODES][k] for k in same}
