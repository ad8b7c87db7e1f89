"""Scope: nft text forged from FirewallConfigurations matches what Liqo's agent installs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from typing import Any

import pytest

from liqosec.dataplane import nft
from liqosec.firewall import agent


def _m(op: str = "eq", **kw: Any) -> dict[str, Any]:
    return {"op": op, **kw}


def _rule(name: str, matches: list[dict[str, Any]], action: str = "drop", counter: bool = True) -> dict[str, Any]:
    return {"name": name, "action": action, "counter": counter, "match": matches}


def _fc(rules: list[dict[str, Any]], *, name: str = "lqs_t", policy: str = "accept") -> dict[str, Any]:
    return {"spec": {"table": {"name": name, "family": "IPV4", "chains": [
        {"name": "forward", "hook": "forward", "type": "filter", "priority": 0, "policy": policy,
         "rules": {"filterRules": rules}}]}}}


def test_ip_single_cidr_and_range_with_eq_and_neq() -> None:
    assert nft.match_text(_m(ip={"position": "src", "value": "10.0.0.1"})) == "ip saddr 10.0.0.1"
    assert nft.match_text(_m("neq", ip={"position": "dst", "value": "10.0.0.0/24"})) == "ip daddr != 10.0.0.0/24"
    assert (nft.match_text(_m("neq", ip={"position": "src", "value": "10.0.0.1-10.0.0.9"}))
            == "ip saddr != 10.0.0.1-10.0.0.9")


def test_cidr_with_host_bits_keeps_the_agents_never_matching_compare() -> None:
    text = nft.match_text(_m(ip={"position": "src", "value": "10.0.0.5/24"}))
    assert text == "ip saddr & 255.255.255.0 == 10.0.0.5"


def test_proto_is_always_eq_and_port_range_ignores_op() -> None:
    text = nft.match_text(_m("neq", proto={"value": "tcp"}, port={"position": "dst", "value": "3000-4000"}))
    assert text == "meta l4proto tcp th dport >= 3000 th dport <= 4000"
    assert nft.match_text(_m("neq", port={"position": "src", "value": "53"})) == "th sport != 53"


def test_dev_matches_interface_names() -> None:
    assert nft.match_text(_m(dev={"position": "in", "value": "eth0"})) == 'iifname "eth0"'
    assert nft.match_text(_m("neq", dev={"position": "out", "value": "v1"})) == 'oifname != "v1"'


def test_ctstate_match_is_a_flag_test() -> None:
    m = _m(ctstate={"value": ["established", "related"]})
    assert nft.match_text(m) == "ct state established,related"


def test_rule_has_counter_verdict_and_name_as_comment() -> None:
    rule = _rule("r1", [_m(ip={"position": "src", "value": "10.0.0.1"})])
    assert nft.rule_text(rule) == 'ip saddr 10.0.0.1 counter drop comment "r1"'
    assert nft.rule_text({**rule, "counter": False, "action": "reject"}) == (
        'ip saddr 10.0.0.1 reject with icmp type net-unreachable comment "r1"')


def test_unmodelled_actions_and_quotes_in_names_are_refused() -> None:
    with pytest.raises(ValueError, match="not a filter verdict"):
        nft.rule_text(_rule("r", [], action="ctmark"))
    with pytest.raises(ValueError, match="quote"):
        nft.rule_text(_rule('r"', []))


def test_table_script_has_chain_properties_and_rules_in_order() -> None:
    text = nft.fc_script([_fc([_rule("a", []), _rule("b", [], action="accept")], policy="drop")])
    lines = [line.strip() for line in text.splitlines()]
    assert lines[:3] == ["table ip lqs_t {", "chain forward {", "type filter hook forward priority 0; policy drop;"]
    assert lines[3].endswith('comment "a"') and lines[4].endswith('comment "b"')


def test_state_script_follows_node_order_not_fc_order() -> None:
    state = agent.apply(agent.EMPTY, [_fc([_rule("b", [])])])
    state = agent.apply(state, [_fc([_rule("a", []), _rule("b", [])])])
    text = nft.state_script(state)
    assert text.index('comment "b"') < text.index('comment "a"')


def _listing(rules: list[tuple[int, str, list[dict[str, Any]]]], *, table: str = "lqs_t",
             policy: str = "accept") -> dict[str, Any]:
    items: list[dict[str, Any]] = [
        {"table": {"family": "ip", "name": table, "handle": 1}},
        {"chain": {"family": "ip", "table": table, "name": "forward", "handle": 1, "type": "filter",
                   "hook": "forward", "prio": 0, "policy": policy}}]
    items += [{"rule": {"family": "ip", "table": table, "chain": "forward", "handle": h, "comment": n, "expr": e}}
              for h, n, e in rules]
    return {"nftables": items}


def test_plan_deletes_changed_rules_by_handle_and_appends_missing() -> None:
    same = [{"drop": None}]
    live = nft.parse_live(_listing([(2, "a", same), (3, "b", [{"accept": None}]), (4, "gone", same)]), table="lqs_t")
    canon = {("forward", "a"): nft.freeze_exprs(same), ("forward", "b"): nft.freeze_exprs(same),
             ("forward", "c"): nft.freeze_exprs(same)}
    fc = _fc([_rule("c", []), _rule("a", []), _rule("b", [])])
    clean, add = nft.plan_incremental(agent.table_spec(fc), live, canon)
    assert clean.splitlines() == ["delete rule ip lqs_t forward handle 3", "delete rule ip lqs_t forward handle 4"]
    assert [line.rsplit(" ", 1)[-1] for line in add.splitlines()[1:]] == ['"c"', '"b"']


def test_plan_recreates_a_chain_whose_policy_changed() -> None:
    live = nft.parse_live(_listing([(2, "a", [{"drop": None}])]), table="lqs_t")
    clean, add = nft.plan_incremental(agent.table_spec(_fc([_rule("a", [])], policy="drop")), live, {})
    assert "delete chain ip lqs_t forward" in clean
    assert "add chain ip lqs_t forward { type filter hook forward priority 0; policy drop; }" in add


def test_counters_do_not_make_a_live_rule_differ() -> None:
    listing = _listing([(2, "a", [{"counter": {"packets": 9, "bytes": 9}}, {"drop": None}])])
    assert nft.parse_live(listing, table="lqs_t")[0].rules[0].expr == nft.freeze_exprs([{"drop": None}])


def test_rule_names_reads_comments_in_node_order() -> None:
    listing = _listing([(5, "b", []), (2, "a", [])])
    assert nft.rule_names(listing, table="lqs_t") == {"forward": ["b", "a"]}


_CAN_CHECK = os.geteuid() == 0 and shutil.which("nft") is not None and shutil.which("unshare") is not None


@pytest.mark.skipif(not _CAN_CHECK, reason="nft check mode needs root, nft and unshare")
def test_generated_script_passes_nft_check_mode() -> None:
    rules = [
        _rule("ip", [_m(ip={"position": "src", "value": "10.0.0.1"}), _m("neq", ip={"position": "dst",
                                                                               "value": "10.0.0.0/8"})]),
        _rule("range", [_m("neq", ip={"position": "src", "value": "10.0.0.1-10.0.0.9"})], action="accept"),
        _rule("host-bits", [_m(ip={"position": "src", "value": "10.0.0.5/24"})]),
        _rule("l4", [_m(proto={"value": "udp"}), _m(port={"position": "dst", "value": "3000-4000"})],
              action="reject"),
        _rule("dev", [_m("neq", dev={"position": "out", "value": "eth1"})], counter=False),
        _rule("ct", [_m(ctstate={"value": ["established", "related"]})], action="accept"),
    ]
    script = nft.fc_script([_fc(rules)])
    proc = subprocess.run(["unshare", "-n", "nft", "-c", "-f", "-"], input=script, capture_output=True, text=True,
                          timeout=20, check=False)
    assert proc.returncode == 0, proc.stderr
    json.dumps(script)  # plain text, no surprises


def test_names_nft_cannot_parse_are_refused_early() -> None:
    assert nft.ident("liqosec-rome") == "liqosec-rome"
    with pytest.raises(ValueError, match="cannot be written"):
        nft.table_script({"name": "has space", "family": "IPV4", "chains": []})
