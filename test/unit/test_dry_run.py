"""spec.enforcement: DryRun: no firewall is written (ours is retired), the status and the metrics say
what enforcing would change for the pods running now, and switching to Enforce writes the firewall."""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import pytest
import yaml
from fake_kube import Fixture, cluster, key, peering, pod, rome_mix
from schema_check import violations

from harness.reconciling import converge
from liqosec.api.peeringconnectivity import Enforcement, PeeringConnectivitySpec
from liqosec.api.validation import ValidationError, parse_peering_connectivity
from liqosec.cli import main
from liqosec.compiler.dryrun import Endpoint, dry_run_report, report_for
from liqosec.controller.mapping import KeyMapper, pod_keys
from liqosec.controller.resources import FIREWALL_CONFIGURATIONS as FCS
from liqosec.controller.resources import PEERING_CONNECTIVITIES as PCS
from liqosec.firewall.addresses import AddressSet, format_interval, int_to_ip, ip_to_int
from liqosec.firewall.evaluate import connects, tables_of
from liqosec.groups.view import Snapshot
from liqosec.inputs import load_objects
from liqosec.offline import outcomes

ROOT = Path(__file__).resolve().parents[2]
ROME = "liqo-tenant-rome"
# Offloaded pods may not talk to local pods (offloaded pods are local pods too).
SPLIT = [{"source": {"group": "offloaded"}, "destination": {"group": "local-cluster"}, "action": "deny"}]


pods = rome_mix


def world(enforcement: str = "DryRun") -> list[dict[str, Any]]:
    objs = [o for o in cluster("rome") if o["kind"] not in ("PeeringConnectivity", "Pod")]
    return [*objs, *pods(), peering("rome", ROME, SPLIT, enforcement=enforcement)]


def status_of(f: Fixture) -> dict[str, Any]:
    obj = f.client.stored(PCS, "rome", ROME)
    assert obj is not None
    return dict(obj.get("status") or {})


def conditions(f: Fixture) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status_of(f).get("conditions") or ()}


def set_enforcement(f: Fixture, value: str) -> None:
    obj = f.client.stored(PCS, "rome", ROME)
    assert obj is not None
    obj["spec"]["enforcement"] = value
    obj["metadata"]["generation"] += 1
    f.seed(obj)


def pairs(f: Fixture, change: str) -> float:
    return f.metric("liqosec_dryrun_pairs", peering=key("rome"), change=change)


def not_exported(f: Fixture, name: str, **labels: str) -> bool:
    return f.registry.get_sample_value(name, {"peering": key("rome"), **labels}) is None


# ----- the API -----
def test_enforcement_parses_and_a_typo_names_the_field() -> None:
    assert parse_peering_connectivity(peering("rome", ROME, SPLIT)).spec.enforcement.value == "Enforce"
    assert parse_peering_connectivity(peering("rome", ROME, [], enforcement="DryRun")).spec.enforcement.value == (
        "DryRun"
    )
    with pytest.raises(ValidationError) as err:
        parse_peering_connectivity(peering("rome", ROME, [], enforcement="Dryrun"))
    assert str(err.value.errors[0]) == (
        'spec.enforcement: unknown enforcement \'Dryrun\'; expected one of "Enforce", "DryRun"'
    )


def test_the_crd_offers_the_same_values_and_default_and_a_dry_run_status() -> None:
    crd = yaml.safe_load((ROOT / "manifests/crds/security.liqo.io_peeringconnectivities.yaml").read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
    field = schema["spec"]["properties"]["enforcement"]
    assert field["enum"] == [e.value for e in Enforcement]
    assert field["default"] == PeeringConnectivitySpec().enforcement.value
    f = Fixture(world())
    f.reconcile(key("rome"))
    written = status_of(f)["dryRun"]
    assert set(written) == set(schema["status"]["properties"]["dryRun"]["properties"])
    assert violations({"status": {"dryRun": written}}, {"type": "object", "properties": schema}) == []


def test_render_of_a_dry_run_policy_prints_no_firewall_and_names_the_flag_that_shows_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    docs = [d for d in yaml.safe_load_all((ROOT / "examples/quick-start.yaml").read_text()) if d]
    [pc] = [d for d in docs if d["kind"] == "PeeringConnectivity"]
    pc["spec"]["enforcement"] = "DryRun"
    source = tmp_path / "dry.yaml"
    source.write_text(yaml.safe_dump_all(docs))
    where = f"{pc['metadata']['namespace']}/{pc['metadata']['name']}"
    for output, nothing in (("yaml", []), ("json", [[]])):
        out = io.StringIO()
        assert main(["render", "-f", str(source), "-o", output], out=out) == 0
        assert list(yaml.safe_load_all(out.getvalue())) == nothing  # what the controller writes: nothing
        [note] = capsys.readouterr().err.splitlines()
        assert note.startswith(f"liqosec render: note: {where} is a dry run (spec.enforcement: DryRun)")
        assert "--include-dry-run" in note
    # With the flag: what enforcing it would write, under a name and a table no enforced firewall has.
    shown, enforced = io.StringIO(), io.StringIO()
    assert main(["render", "-f", str(source), "--include-dry-run"], out=shown) == 0
    assert main(["render", "-f", str(ROOT / "examples/quick-start.yaml")], out=enforced) == 0
    [dry], [real] = yaml.safe_load_all(shown.getvalue()), yaml.safe_load_all(enforced.getvalue())
    assert dry["metadata"]["name"] == "dryrun-" + real["metadata"]["name"]
    assert dry["spec"]["table"]["name"] != real["spec"]["table"]["name"]
    assert dry["spec"]["table"]["chains"] == real["spec"]["table"]["chains"]
    assert "dryrun-liqosec-" in capsys.readouterr().err
    assert main(["matrix", "-f", str(source)], out=io.StringIO()) == 0
    assert f"liqosec matrix: note: {where} is a dry run" in capsys.readouterr().err
    explained = ["explain", "-f", str(source), "--from", "default/web", "--to", "shop-rome/cart-0"]
    assert main(explained, out=io.StringIO()) == 0
    assert f"liqosec explain: note: {where} is a dry run" in capsys.readouterr().err


def test_the_readme_status_is_what_the_example_reports() -> None:
    section = (ROOT / "README.md").read_text().split("## Trying a policy first: `spec.enforcement: DryRun`", 1)[1]
    shown = yaml.safe_load(section.split("```yaml\n", 1)[1].split("\n```", 1)[0])
    objs = load_objects([str(ROOT / "examples/provider-isolate-offloaded.yaml")])
    for o in objs:
        if o["kind"] == "PeeringConnectivity":
            o["spec"]["enforcement"] = "DryRun"
    [outcome] = outcomes(objs)
    report = report_for(outcome.peer, outcome.groups, Snapshot(objs).list("Pod"), tables_of(outcome.firewalls))
    expected = report.to_status()
    documented = shown["status"]["dryRun"]
    for field in ("comparedWith", "pods", "pairs", "comparedPairs", "capped", "newlyDenied", "newlyAllowed"):
        assert documented[field] == expected[field], field
    assert documented["newlyAllowedSample"] == expected["newlyAllowedSample"]
    assert all(pair in expected["newlyDeniedSample"] for pair in documented["newlyDeniedSample"])
    [dry] = [c for c in shown["status"]["conditions"] if c["type"] == "DryRun"]
    assert report.message().startswith(dry["message"].removesuffix("...)"))


# ----- the controller -----
def test_dry_run_writes_no_firewall_and_reports_the_pairs_enforcing_would_cut() -> None:
    f = Fixture(world())
    actions = f.reconcile(key("rome"))
    assert [(a.verb, a.resource) for a in actions] == [("update_status", "peeringconnectivities/status")]
    assert f.client.of(FCS) == []
    report = status_of(f)["dryRun"]
    # 5 running pods, 20 ordered pairs, 2 of them local to local (not rome's traffic): 18.
    # Stateless: a connection between an offloaded pod and a local pod (4 x 2, both ways) or between
    # the two offloaded pods (2) has a packet from offloaded to local-cluster. The shadow pod's do not.
    assert (report["pods"], report["pairs"], report["comparedPairs"], report["capped"]) == (5, 18, 18, False)
    assert (report["newlyDenied"], report["newlyAllowed"]) == (10, 0)
    assert report["newlyAllowedSample"] == []
    denied = {(p["source"], p["destination"]) for p in report["newlyDeniedSample"]}
    assert len(denied) == 10
    assert ("default/web", "shop-rome/cart-0") in denied and ("shop-rome/cart-0", "shop-rome/cart-1") in denied
    assert not any("shop/api-0" in pair for pair in denied)
    [sample] = [
        p for p in report["newlyDeniedSample"] if (p["source"], p["destination"]) == ("default/web", "shop-rome/cart-0")
    ]
    assert (sample["sourceIP"], sample["destinationIP"]) == ("10.1.1.10", "10.1.10.10")
    conds = conditions(f)
    assert (conds["DryRun"]["status"], conds["DryRun"]["reason"]) == ("True", "WouldChange")
    assert "would deny 10 and newly allow 0 of the 18" in conds["DryRun"]["message"]
    assert (conds["Ready"]["status"], conds["Ready"]["reason"]) == ("False", "DryRun")
    assert conds["Valid"]["status"] == "True"
    assert "appliedNodes" not in status_of(f)
    assert (pairs(f, "newly_denied"), pairs(f, "newly_allowed")) == (10, 0)
    assert f.metric("liqosec_dryrun_compared_pairs", peering=key("rome")) == 18
    assert f.metric("liqosec_firewall_writes_total", peering=key("rome"), operation="create") == 0


def test_an_unchanged_dry_run_writes_nothing_and_a_new_pod_updates_the_counts() -> None:
    f = Fixture(world())
    converge(f, key("rome"), passes=6)
    assert f.reconcile(key("rome")) == []  # the report is the same: no status write
    f.seed(pod("cache", "default", "10.1.1.12"))  # one more local pod: 2 more pairs with each offloaded pod
    actions = f.reconcile(key("rome"))
    assert [(a.verb, a.resource) for a in actions] == [("update_status", "peeringconnectivities/status")]
    report = status_of(f)["dryRun"]
    assert (report["pods"], report["pairs"], report["newlyDenied"]) == (6, 24, 14)
    assert pairs(f, "newly_denied") == 14


def test_a_policy_that_changes_nothing_says_so() -> None:
    allow = [{"source": {"group": "offloaded"}, "destination": {"group": "local-cluster"}, "action": "allow"}]
    objs = [o for o in world() if o["kind"] != "PeeringConnectivity"]
    f = Fixture([*objs, peering("rome", ROME, allow, enforcement="DryRun")])
    converge(f, key("rome"), passes=6)
    dry = conditions(f)["DryRun"]
    assert (dry["status"], dry["reason"]) == ("True", "NoChange")
    assert status_of(f)["dryRun"]["newlyDenied"] == 0 and status_of(f)["dryRun"]["newlyDeniedSample"] == []


def test_switching_to_dry_run_retires_the_firewall_and_back_to_enforce_writes_it() -> None:
    f = Fixture(world("Enforce"))
    converge(f, key("rome"), passes=6)
    assert f.client.stored(FCS, "liqosec-rome", ROME) is not None
    assert "DryRun" not in conditions(f) and "dryRun" not in status_of(f)
    assert conditions(f)["Ready"]["status"] == "True"

    set_enforcement(f, "DryRun")
    actions = f.reconcile(key("rome"))
    # Retired as on deletion: emptied now (every node's agent applies an empty table), deleted after the grace.
    assert [(a.verb, a.resource, a.name) for a in actions] == [
        ("update", "firewallconfigurations", "liqosec-rome"),
        ("update_status", "peeringconnectivities/status", "rome"),
    ]
    emptied = f.client.stored(FCS, "liqosec-rome", ROME)
    assert emptied is not None and emptied["spec"]["table"]["chains"][0]["rules"] == {}  # no rules, as Liqo stores them
    assert status_of(f)["dryRun"]["newlyDenied"] == 10
    assert f.again == pytest.approx(10.0)
    f.sync()
    f.after_grace()
    assert [(a.verb, a.name) for a in f.reconcile(key("rome"))] == [("delete", "liqosec-rome")]
    f.sync()
    assert f.client.of(FCS) == [] and f.reconcile(key("rome")) == []

    set_enforcement(f, "Enforce")
    actions = f.reconcile(key("rome"))
    assert [(a.verb, a.resource) for a in actions][0] == ("create", "firewallconfigurations")
    f.sync()
    converge(f, key("rome"), passes=6)
    assert "dryRun" not in status_of(f) and "DryRun" not in conditions(f)
    assert conditions(f)["Ready"]["status"] == "True"
    # The series are gone, not left at their last value.
    assert not_exported(f, "liqosec_dryrun_pairs", change="newly_denied")
    assert not_exported(f, "liqosec_dryrun_compared_pairs")


def test_deleting_a_dry_run_peering_removes_its_series() -> None:
    f = Fixture(world())
    converge(f, key("rome"), passes=6)
    assert pairs(f, "newly_denied") == 10
    f.client.remove(PCS, "rome", ROME)
    f.sync()
    assert f.reconcile(key("rome")) == []  # nothing of ours to retire
    assert not_exported(f, "liqosec_dryrun_pairs", change="newly_denied")


def test_an_invalid_dry_run_spec_keeps_the_last_report_and_writes_no_firewall() -> None:
    f = Fixture(world())
    converge(f, key("rome"), passes=6)
    obj = f.client.stored(PCS, "rome", ROME)
    assert obj is not None
    obj["spec"]["enforcement"] = "Sometimes"
    obj["metadata"]["generation"] += 1
    f.seed(obj)
    f.reconcile(key("rome"))
    valid = conditions(f)["Valid"]
    assert valid["status"] == "False" and valid["message"].startswith("spec.enforcement: unknown enforcement")
    assert status_of(f)["dryRun"]["newlyDenied"] == 10  # the last good report stays, like the compile figures
    assert f.client.of(FCS) == []


def test_any_pod_change_wakes_a_dry_run_peering_and_only_those() -> None:
    """A local pod no rule names joins the report's pairs, so it wakes a DryRun peering (not an enforced one)."""
    f = Fixture([*world(), *(o for o in cluster("milan") if o["kind"] == "PeeringConnectivity")])
    lonely = f.stores["Pod"].transform(pod("lonely", "nowhere", "10.1.5.5"))
    mapper = KeyMapper(f.view)
    assert mapper.keys(pod_keys, None, lonely) == {key("rome")}
    set_enforcement(f, "Enforce")
    assert mapper.keys(pod_keys, None, lonely) == set()


def test_a_typo_in_enforcement_keeps_a_working_firewall() -> None:
    f = Fixture(world("Enforce"))
    converge(f, key("rome"), passes=6)
    before = f.client.stored(FCS, "liqosec-rome", ROME)
    set_enforcement(f, "Dry-Run")
    assert [(a.verb, a.resource) for a in f.reconcile(key("rome"))] == [
        ("create_event", "events"),
        ("update_status", "peeringconnectivities/status"),
    ]
    assert f.client.stored(FCS, "liqosec-rome", ROME) == before
    assert conditions(f)["Valid"]["message"].startswith("spec.enforcement: unknown enforcement 'Dry-Run'")


# ----- the comparison itself -----
def _table(*drops: tuple[str, str]) -> dict[str, Any]:
    """One chain, policy accept, dropping each (src, dst) value pair ("" for any)."""
    rules = []
    for i, (src, dst) in enumerate(drops):
        match = [{"op": "eq", "ip": {"position": pos, "value": v}} for pos, v in (("src", src), ("dst", dst)) if v]
        rules.append({"name": f"r{i}", "action": "drop", "match": match})
    chain = {"name": "c", "type": "filter", "hook": "forward", "policy": "accept", "rules": {"filterRules": rules}}
    return {"name": "t", "family": "IPV4", "chains": [chain]}


def _endpoints(*ips: str) -> list[Endpoint]:
    return sorted(Endpoint(ip_to_int(ip), f"ns/p{i}") for i, ip in enumerate(ips))


def test_pairs_the_enforced_firewall_drops_and_the_proposed_one_does_not_are_newly_allowed() -> None:
    eps = _endpoints("10.1.0.1", "10.1.0.2", "10.70.0.1")
    enforced = [_table(("10.70.0.1", ""))]  # the peer's pod may send nothing: no connection with it opens
    report = dry_run_report("rome", eps, [], enforced, AddressSet.of(["10.70.0.0/16"]))
    assert (report.pairs, report.newly_allowed, report.newly_denied) == (4, 4, 0)
    assert {(p.source.name, p.destination.name) for p in report.allowed_sample} == {
        ("ns/p0", "ns/p2"),
        ("ns/p1", "ns/p2"),
        ("ns/p2", "ns/p0"),
        ("ns/p2", "ns/p1"),
    }


def test_the_comparison_is_capped_and_says_its_counts_are_lower_bounds() -> None:
    eps = _endpoints(*(f"10.70.0.{i}" for i in range(1, 21)))
    proposed = [_table(*((f"10.70.0.{i}", "") for i in range(1, 21)))]  # every pod apart: 20 classes
    full = dry_run_report("rome", eps, proposed, [], AddressSet.of(["10.70.0.0/16"]))
    assert (full.pairs, full.compared_pairs, full.newly_denied, full.capped) == (380, 380, 380, False)
    capped = dry_run_report("rome", eps, proposed, [], AddressSet.of(["10.70.0.0/16"]), max_comparisons=50)
    assert capped.capped and capped.pairs == 380 and 0 < capped.compared_pairs < 380
    assert capped.newly_denied == capped.compared_pairs
    assert "lower bounds" in capped.message() and capped.to_status()["capped"] is True


@pytest.mark.parametrize("seed", range(100))
def test_classes_count_exactly_what_evaluating_every_pair_counts(seed: int) -> None:
    """Random tables (accept and drop rules, negated matches, either policy) and pods in a small space:
    the class shortcut counts what evaluating every pair counts."""
    rnd = random.Random(seed)
    base = ip_to_int("10.0.0.0")

    def match() -> dict[str, Any]:
        start = base + rnd.randrange(64)
        value = format_interval(start, min(start + rnd.randrange(8), base + 63))
        op = rnd.choice(("eq", "eq", "neq"))
        return {"op": op, "ip": {"position": rnd.choice(("src", "dst")), "value": value}}

    def table() -> dict[str, Any]:
        rules = [
            {
                "name": f"r{i}",
                "action": rnd.choice(("accept", "drop")),
                "match": [match() for _ in range(rnd.randrange(4))],
            }
            for i in range(rnd.randrange(6))
        ]
        policy = rnd.choice(("accept", "drop"))
        chain = {"name": "c", "type": "filter", "hook": "forward", "policy": policy, "rules": {"filterRules": rules}}
        return {"name": "t", "family": "IPV4", "chains": [chain]}

    tables = [[table() for _ in range(rnd.randrange(3))] for _ in range(2)]
    ips = sorted({base + rnd.randrange(64) for _ in range(rnd.randrange(2, 14))})
    eps = [Endpoint(ip, f"ns/p{ip - base}") for ip in ips]
    space = AddressSet.from_intervals([(base + 16, base + 31)])
    report = dry_run_report("p", eps, tables[0], tables[1], space)
    denied = allowed = total = 0
    for a in eps:
        for b in eps:
            if a == b or not (a.address in space or b.address in space):
                continue
            total += 1
            now = connects(tables[1], int_to_ip(a.address), int_to_ip(b.address))
            then = connects(tables[0], int_to_ip(a.address), int_to_ip(b.address))
            denied += now and not then
            allowed += then and not now
    assert (report.pairs, report.compared_pairs, report.newly_denied, report.newly_allowed) == (
        total,
        total,
        denied,
        allowed,
    )


def test_report_for_reads_only_running_pods_of_the_peerings_groups() -> None:
    objs = [*world(), pod("done", "default", "10.1.1.20"), pod("elsewhere", "default", "192.168.7.7")]
    objs[-2]["status"]["phase"] = "Succeeded"
    [outcome] = outcomes(objs)
    report = report_for(outcome.peer, outcome.groups, Snapshot(objs).list("Pod"), [])
    assert report.pods == 5  # not the finished pod, not the one outside every group
