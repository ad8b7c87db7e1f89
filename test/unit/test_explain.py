"""`liqosec explain`: every cell of the seed examples has a reason, and its verdict is `liqosec matrix`'s."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from liqosec.cli import EXIT_INVALID, TRACEBACK_ENV, main
from liqosec.explain import DEFAULT_ACTION, OUT_OF_SCOPE, PRESET, Explanation, explain, explain_outcome
from liqosec.firewall.capabilities import Capabilities
from liqosec.inputs import load_objects
from liqosec.matrix import build_matrix
from liqosec.offline import capabilities_of, outcomes

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SEEDS = sorted(
    {
        EXAMPLES / "quick-start.yaml",
        EXAMPLES / "provider-isolate-offloaded.yaml",
        EXAMPLES / "consumer-vc-only.yaml",
        *EXAMPLES.glob("mode-*.yaml"),
    }
)


@pytest.fixture(autouse=True)
def _tracebacks(monkeypatch: pytest.MonkeyPatch) -> None:
    """An input that reaches the last-resort handler is a bug: let it fail the test with its traceback."""
    monkeypatch.setenv(TRACEBACK_ENV, "1")


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(argv), out=out), out.getvalue()


def _names_a_reason(x: Explanation) -> None:
    for step in (x.request, x.reply, x.reply_by_address):
        d = step.decision
        if not step.in_scope:
            assert d.origin == OUT_OF_SCOPE and d.verdict == "accept"
        elif d.origin == DEFAULT_ACTION:
            assert d.action in ("allow", "deny")
        elif d.origin == PRESET:
            assert d.index is not None and d.index >= 0 and d.action in ("allow", "deny")
        else:
            assert d.origin == f"spec.rules[{d.index}]" and d.source and d.destination
        e = step.enforcement
        assert e.firewall and e.table and e.chain and (e.rule is not None or e.verdict == e.policy)
        # the compiled rule says what the policy's clause says
        assert step.agrees, (step.src, step.dst, d, e)


@pytest.mark.parametrize("ctstate", [None, True], ids=["as-detected", "ctstate"])
@pytest.mark.parametrize("path", SEEDS, ids=[p.name for p in SEEDS])
def test_every_cell_has_a_reason_and_the_matrix_verdict(path: Path, ctstate: bool | None) -> None:
    objects = load_objects([str(path)])
    caps = capabilities_of(objects) if ctstate is None else Capabilities(ctstate=ctstate)
    matrix = build_matrix(objects, capabilities=caps)
    results = outcomes(objects, capabilities=caps)
    [outcome] = results
    grid = matrix.grid(peer=outcome.peer)
    node = matrix.grid()
    eps = matrix.endpoints
    for i, a in enumerate(eps):
        for j, b in enumerate(eps):
            x = explain_outcome(objects, results, outcome, a.ip, b.ip)
            _names_a_reason(x)
            assert x.opens == grid[i][j] == matrix.connect(a.ip, b.ip, peer=outcome.peer), (a, b)
            assert x.node_opens == node[i][j], (a, b)
            assert x.opens_with_conntrack == x.request.passes
            assert x.conntrack_changes_it == (x.request.passes and not x.reply_by_address.passes)
            if x.stateful:
                assert x.opens == x.opens_with_conntrack
            else:
                assert x.opens == x.opens_stateless
            # the groups shown are the matrix's labels (which leave out the constant private-subnets)
            assert [g for g in x.source.groups if g != "private-subnets"] == list(a.groups)


@pytest.mark.parametrize("path", SEEDS, ids=[p.name for p in SEEDS])
def test_pods_by_name_through_the_command_agree_with_the_matrix(path: Path) -> None:
    objects = load_objects([str(path)])
    matrix = build_matrix(objects)
    pods = [e for e in matrix.endpoints if e.kind == "pod" and "#" not in e.name]
    for a in pods:
        for b in pods:
            code, text = run("explain", "-f", str(path), "--from", a.name, "--to", b.name, "-o", "json")
            data = json.loads(text)
            assert code == 0
            assert data["from"]["pod"] == a.name and data["from"]["ip"] == a.ip
            assert data["to"]["namespace"] == b.name.split("/")[0]
            assert data["connection"]["opens"] == matrix.connect(a.ip, b.ip)


def test_json_shape() -> None:
    path = EXAMPLES / "provider-isolate-offloaded.yaml"
    code, text = run("explain", "-f", str(path), "--from", "default/web", "--to", "shop-rome/cart-0", "-o", "json")
    assert code == 0
    data: dict[str, Any] = json.loads(text)
    assert set(data) == {"peering", "from", "to", "inScope", "request", "reply", "replyByAddress", "connection"}
    assert data["peering"] == {
        "peeringConnectivity": "liqo-tenant-rome/rome",
        "peer": "rome",
        "securityMode": "FullPodToPod",
        "defaultAction": "allow",
        "stateful": False,
    }
    assert set(data["from"]) == {"ip", "pod", "namespace", "groups", "terms", "services", "peerSpace"}
    assert data["to"]["groups"] == ["local-cluster", "offloaded", "private-subnets"]
    assert data["to"]["peerSpace"] is True and data["inScope"] is True
    meaning = "@reflected-service-backends (a backend of a service rome reflected here)"
    assert {"term": "@reflected-service-backends", "meaning": meaning} in data["to"]["terms"]
    for step in ("request", "reply", "replyByAddress"):
        assert set(data[step]) == {"src", "dst", "established", "inScope", "decidedBy", "firewall", "passes"}
        assert set(data[step]["decidedBy"]) == {"origin", "index", "source", "destination", "action", "verdict"}
        assert set(data[step]["firewall"]) == {
            "verdict",
            "firewallConfiguration",
            "shard",
            "table",
            "chain",
            "policy",
            "rule",
            "action",
            "matches",
        }
    # web -> cart-0: no rule matches the request, the default allows it; the reply is offloaded -> web, which
    # rules[2] (offloaded -> any: deny) drops, so without conntrack the connection does not open.
    assert data["request"]["decidedBy"]["origin"] == "spec.defaultAction" and data["request"]["passes"] is True
    assert data["request"]["firewall"]["rule"] is None and data["request"]["firewall"]["policy"] == "accept"
    reply = data["reply"]
    assert reply["decidedBy"] == {
        "origin": "spec.rules[2]",
        "index": 2,
        "source": "offloaded",
        "destination": "any",
        "action": "deny",
        "verdict": "drop",
    }
    assert reply["firewall"]["rule"].startswith("drop-") and reply["firewall"]["matches"]
    assert reply["firewall"]["firewallConfiguration"] == "liqo-tenant-rome/liqosec-rome"
    assert reply["firewall"]["table"] == "liqosec-rome" and reply["firewall"]["chain"] == "peering-filter"
    assert data["connection"] == {
        "opens": False,
        "stateless": False,
        "withConntrack": True,
        "conntrackChangesIt": True,
        "node": {"opens": False, "droppedBy": []},
    }


def test_text_names_the_rule_and_the_verdict() -> None:
    path = EXAMPLES / "provider-isolate-offloaded.yaml"
    code, text = run("explain", "-f", str(path), "--from", "default/web", "--to", "shop-rome/cart-0")
    assert code == 0
    assert "policy:   spec.rules[2]: offloaded -> any: deny" in text
    assert "in FirewallConfiguration liqo-tenant-rome/liqosec-rome (shard 0), table liqosec-rome" in text
    assert "connection: does not open: the request passes but the reply is dropped" in text
    assert "with conntrack (--ctstate) it would open" in text


def test_ctstate_reply_passes_by_the_conntrack_rule() -> None:
    path = EXAMPLES / "provider-isolate-offloaded.yaml"
    objects = load_objects([str(path)])
    x = explain(objects, "default/web", "shop-rome/cart-0", results=outcomes(objects, capabilities=Capabilities(True)))
    assert x.stateful and x.opens and x.conntrack_changes_it
    assert x.reply.enforcement.rule == "accept-established-related"
    assert x.reply_by_address.decision.origin == "spec.rules[2]" and not x.reply_by_address.passes


def test_out_of_scope_packet_is_accepted_by_the_chain() -> None:
    objects = load_objects([str(EXAMPLES / "provider-isolate-offloaded.yaml")])
    x = explain(objects, "default/web", "198.51.100.10")
    assert not x.request.in_scope and x.request.decision.origin == OUT_OF_SCOPE
    assert x.source.pod == "default/web" and x.destination.pod is None and x.destination.groups == ()
    assert x.opens


def test_an_ip_a_pod_holds_is_named_after_the_pod() -> None:
    objects = load_objects([str(EXAMPLES / "provider-isolate-offloaded.yaml")])
    x = explain(objects, "10.1.1.10", "shop-rome/cart-0")
    assert x.source.pod == "default/web" and x.source.namespace == "default"


def _error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code, text = run("explain", *argv)
    err = capsys.readouterr().err
    assert code == EXIT_INVALID and text == ""
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("liqosec explain: ")
    return last


def test_unknown_pod(capsys: pytest.CaptureFixture[str]) -> None:
    f = str(EXAMPLES / "quick-start.yaml")
    assert _error(capsys, "-f", f, "--from", "default/nope", "--to", "10.1.1.1") == (
        "liqosec explain: --from pod default/nope is not in the input"
    )


def test_bad_ip(capsys: pytest.CaptureFixture[str]) -> None:
    f = str(EXAMPLES / "quick-start.yaml")
    line = _error(capsys, "-f", f, "--from", "10.1.1.1", "--to", "10.1.1.300")
    assert line == "liqosec explain: --to '10.1.1.300' is neither a pod (namespace/name) nor an IPv4 address"
    assert "IPv4" in _error(capsys, "-f", f, "--from", "::1", "--to", "10.1.1.1")


def test_unknown_peering(capsys: pytest.CaptureFixture[str]) -> None:
    f = str(EXAMPLES / "quick-start.yaml")
    line = _error(capsys, "-f", f, "--peering", "liqo-tenant-x/x", "--from", "10.1.1.1", "--to", "10.1.1.2")
    assert (
        line == "liqosec explain: no PeeringConnectivity liqo-tenant-x/x in the input (it holds: liqo-tenant-rome/rome)"
    )


def test_several_peerings_need_peering(capsys: pytest.CaptureFixture[str]) -> None:
    files = ["-f", str(EXAMPLES / "consumer-vc-only.yaml"), "-f", str(EXAMPLES / "quick-start.yaml")]
    line = _error(capsys, *files, "--from", "10.1.1.1", "--to", "10.1.1.2")
    assert "holds 2 PeeringConnectivities" in line and "--peering NS/NAME" in line
    code, text = run(
        "explain", *files, "--peering", "liqo-tenant-milan/milan", "--from", "10.0.2.5", "--to", "10.80.3.7"
    )
    assert code == 0 and "peering liqo-tenant-milan/milan" in text


def test_no_peering(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "pods.yaml"
    f.write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: default}\n"
        "status: {phase: Running, podIP: 10.0.0.1}\n"
    )
    line = _error(capsys, "-f", str(f), "--from", "default/a", "--to", "10.0.0.2")
    assert line == "liqosec explain: the input holds no PeeringConnectivity: nothing to explain"


def test_pod_without_an_address(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "pending.yaml"
    f.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: pending, namespace: default}\nstatus: {phase: Pending}\n")
    line = _error(
        capsys, "-f", str(EXAMPLES / "quick-start.yaml"), "-f", str(f), "--from", "default/pending", "--to", "10.1.1.1"
    )
    assert "pod default/pending holds no IPv4 address" in line


def test_invalid_input_is_reported_as_for_render(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: security.liqo.io/v1\nkind: PeeringConnectivity\n"
        "metadata: {name: rome, namespace: liqo-tenant-rome}\n"
        "spec: {rules: [{source: {group: ofloaded}, action: allow}]}\n"
    )
    code, text = run("explain", "-f", str(bad), "--from", "10.0.0.1", "--to", "10.0.0.2")
    assert code == EXIT_INVALID and text == ""
    assert "spec.rules[0].source.group: unknown group 'ofloaded'" in capsys.readouterr().err


def test_kubeconfig_and_filename_together_are_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        run("explain", "--kubeconfig", "/dev/null", "-f", "x.yaml", "--from", "10.0.0.1", "--to", "10.0.0.2")
    assert "not both" in capsys.readouterr().err


def test_a_missing_kubeconfig_is_one_line_not_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = run("explain", "--kubeconfig", "/nonexistent/kubeconfig", "--from", "10.0.0.1", "--to", "10.0.0.2")
    err = capsys.readouterr().err
    assert code == 1 and "/nonexistent/kubeconfig does not exist" in err and "Traceback" not in err


def test_filename_is_required_without_kubeconfig(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        run("explain", "--from", "10.0.0.1", "--to", "10.0.0.2")
    assert exit_.value.code == 2
    assert "-f/--filename" in capsys.readouterr().err


def test_several_peerings_agree_with_the_matrix_per_peering_and_on_the_node() -> None:
    objects = load_objects([str(EXAMPLES / "consumer-vc-only.yaml"), str(EXAMPLES / "quick-start.yaml")])
    matrix = build_matrix(objects)
    results = outcomes(objects)
    assert len(results) == 2
    for outcome in results:
        for a in matrix.endpoints:
            for b in matrix.endpoints:
                x = explain_outcome(objects, results, outcome, a.ip, b.ip)
                _names_a_reason(x)
                assert x.opens == matrix.connect(a.ip, b.ip, peer=outcome.peer)
                assert x.node_opens == matrix.connect(a.ip, b.ip)
                others = [o for o in results if o is not outcome]
                assert bool(x.dropped_by) == any(not matrix.connect(a.ip, b.ip, peer=o.peer) for o in others)


def test_readme_example_is_the_real_output() -> None:
    readme = (EXAMPLES.parent / "README.md").read_text()
    section = readme.split("## Why is a packet dropped: `liqosec explain`", 1)[1]
    shown = section.split("The first command prints:\n\n```\n", 1)[1].split("\n```", 1)[0]
    code, text = run(
        "explain",
        "-f",
        str(EXAMPLES / "provider-isolate-offloaded.yaml"),
        "--from",
        "default/web",
        "--to",
        "shop-rome/cart-0",
    )
    assert code == 0 and text.rstrip("\n") == shown
