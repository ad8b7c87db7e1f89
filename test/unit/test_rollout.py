"""Ready means applied: the agents' per-host conditions read into the PeeringConnectivity's Ready condition."""

from __future__ import annotations

from typing import Any

from liqosec.controller.status import READY, Rollout, ready_condition, rollout

SPEC = {"table": {"name": "liqosec-rome", "chains": []}}


def fc(name: str, *conds: tuple[str, str, str], spec: dict[str, Any] = SPEC) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": spec,
        "status": {"conditions": [{"host": h, "type": t, "status": s} for h, t, s in conds]},
    }


def test_every_node_reporting_applied_on_every_shard_counts() -> None:
    desired = [fc("a"), fc("a-s1")]
    live = {
        "a": fc("a", ("n1", "Applied", "True"), ("n2", "Applied", "True")),
        "a-s1": fc("a-s1", ("n1", "Applied", "True"), ("n2", "Applied", "True")),
    }
    assert rollout(desired, live, nodes=2) == Rollout(nodes=2, applied=2)
    assert rollout(desired, live, nodes=3).summary == "2/3"


def test_a_host_counts_only_when_all_shards_are_applied_there() -> None:
    desired = [fc("a"), fc("a-s1")]
    live = {
        "a": fc("a", ("n1", "Applied", "True"), ("n2", "Applied", "True")),
        "a-s1": fc("a-s1", ("n1", "Applied", "True")),
    }
    assert rollout(desired, live, nodes=2).applied == 1


def test_the_agents_first_pass_blank_condition_is_not_applied() -> None:
    """Liqo v1.2.0 writes {host, type: "", status: ""} on its first pass, before any rule."""
    live = {"a": fc("a", ("n1", "", ""))}
    assert rollout([fc("a")], live, nodes=1).applied == 0


def test_failures_and_unwritten_shards_are_named() -> None:
    stale = fc("a", ("n1", "Applied", "True"), spec={"table": {"name": "old"}})
    got = rollout([fc("a"), fc("a-s1")], {"a": stale, "a-s1": fc("a-s1", ("n2", "Applied", "False"))}, nodes=2)
    assert got.pending == ("a",) and got.failed == ("n2",)


def test_ready_follows_the_rollout() -> None:
    class Outcome:
        firewalls = [{"metadata": {"name": "liqosec-rome"}}]

    cases = {
        Rollout(nodes=2, applied=2): (True, "Applied", "applied on 2/2 nodes"),
        Rollout(nodes=2, applied=1): (False, "Applying", "applied on 1/2 nodes"),
        Rollout(nodes=2, applied=1, failed=("n2",)): (False, "ApplyFailed", "n2"),
        Rollout(nodes=2, applied=0, pending=("liqosec-rome",)): (False, "Writing", "not written yet"),
    }
    for progress, (status, reason, text) in cases.items():
        cond = ready_condition(Outcome(), progress)  # type: ignore[arg-type]
        assert (cond.type, cond.status, cond.reason) == (READY, status, reason) and text in cond.message


def for_node(name: str, node: str, *conds: tuple[str, str, str]) -> dict[str, Any]:
    out = fc(name, *conds)
    out["metadata"]["labels"] = {"networking.liqo.io/firewall-unique": node}
    return out


def test_per_node_firewalls_wait_for_their_own_node_only() -> None:
    """Per-node scope: node n1's firewall is applied by n1 alone; a node with no firewall needs nothing."""
    desired = [for_node("a-n1", "n1"), for_node("a-n2", "n2")]
    live = {
        "a-n1": for_node("a-n1", "n1", ("n1", "Applied", "True")),
        "a-n2": for_node("a-n2", "n2"),
    }
    assert rollout(desired, live, nodes=["n1", "n2", "n3"]) == Rollout(nodes=3, applied=2)
    live["a-n2"] = for_node("a-n2", "n2", ("n2", "Applied", "True"))
    assert ready_condition_status(desired, live, ["n1", "n2", "n3"]) == (True, "3/3")


def ready_condition_status(desired: list[dict[str, Any]], live: dict[str, Any], nodes: list[str]) -> tuple[bool, str]:
    progress = rollout(desired, live, nodes)
    return progress.applied == progress.nodes, progress.summary
