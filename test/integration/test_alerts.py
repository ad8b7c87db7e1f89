"""The chart's alerts and dashboard through the real helm and promtool: the rendered PrometheusRule is a rule file
promtool accepts, each alert fires and stays quiet as test/alerts/liqosec.yaml says, and every dashboard query is
PromQL over series the controller exports."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import test_chart as chart
import yaml
from prometheus_client import CollectorRegistry

from harness import dashboards
from liqosec.controller.metrics import ControllerMetrics
from liqosec.kube.metrics import KubeMetrics

CHART, NAMESPACE, ROOT, kinds, template = chart.CHART, chart.NAMESPACE, chart.ROOT, chart.kinds, chart.template
helm = chart.helm  # the fixture: helm built by hack/build-helm.sh
ALERT_TESTS = ROOT / "test" / "alerts" / "liqosec.yaml"
# The values test/alerts/liqosec.yaml is written for: short waits, so its input series stay short.
RULE_VALUES = (
    "metrics.prometheusRule.enabled=true",
    "metrics.prometheusRule.notReadyFor=3m",
    "metrics.prometheusRule.applyFailedFor=2m",
    "metrics.prometheusRule.writeErrorsFor=10m",
    "metrics.prometheusRule.noLeaderFor=2m",
    "metrics.prometheusRule.reconcileErrorPercent=10",
    "metrics.prometheusRule.reconcileErrorsFor=5m",
    "metrics.prometheusRule.invalidClusterStateFor=2m",
)
SEVERITIES = {"warning", "critical"}


@cache
def promtool_binary() -> tuple[str | None, str]:
    """promtool from hack/images/build.sh (the e2e Prometheus' Go module; built once, cached); (path, why not)."""
    result = subprocess.run(
        [str(ROOT / "hack" / "images" / "build.sh"), "tool", "promtool"], capture_output=True, text=True, timeout=1800
    )
    path = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    if result.returncode == 0 and path and os.access(path, os.X_OK):
        return path, ""
    return None, (result.stderr.strip().splitlines() or ["no output"])[-1]


@pytest.fixture(scope="module")
def promtool() -> str:
    path, why = promtool_binary()
    if path is None:
        # Built here on demand (cached): a missing promtool is a failure, never a skip.
        pytest.fail(f"promtool could not be built (hack/images/build.sh tool promtool: {why})")
    return path


def run_promtool(promtool: str, *args: str, cwd: Path | None = None) -> None:
    """Run promtool; AssertionError with its whole output when it fails."""
    result = subprocess.run([promtool, *args], capture_output=True, text=True, timeout=120, cwd=cwd)
    assert result.returncode == 0, f"promtool {' '.join(args)} failed:\n{result.stdout}{result.stderr}"


def rendered_rules(helm: str, *settings: str) -> dict[str, Any]:
    """The PrometheusRule's spec as `helm template --show-only templates/prometheusrule.yaml` renders it."""
    cmd = [helm, "template", "liqosec", str(CHART), "--namespace", NAMESPACE, "--show-only"]
    cmd += ["templates/prometheusrule.yaml", *(a for s in settings for a in ("--set", s))]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    [rule] = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert (rule["apiVersion"], rule["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    spec: dict[str, Any] = rule["spec"]
    return spec


def alerts(spec: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    for group in spec["groups"]:
        yield from (r for r in group["rules"] if "alert" in r)


def write_rules(path: Path, spec: Mapping[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(dict(spec), sort_keys=False))
    return path


# ----- the rules -----
def test_the_rendered_rule_is_a_rule_file_promtool_accepts(helm: str, promtool: str, tmp_path: Path) -> None:
    for settings in ((), RULE_VALUES, ("metrics.prometheusRule.enabled=true", 'metrics.prometheusRule.selector=a="b"')):
        spec = rendered_rules(helm, "metrics.prometheusRule.enabled=true", *settings)
        run_promtool(promtool, "check", "rules", str(write_rules(tmp_path / "rules.yaml", spec)))


def test_a_rule_that_does_not_parse_fails_the_check(promtool: str, tmp_path: Path) -> None:
    broken = {"groups": [{"name": "x", "rules": [{"alert": "Broken", "expr": "sum(liqosec_peering_ready"}]}]}
    with pytest.raises(AssertionError, match="parse error"):
        run_promtool(promtool, "check", "rules", str(write_rules(tmp_path / "broken.yaml", broken)))


def test_every_alert_fires_and_stays_quiet_as_its_unit_tests_say(helm: str, promtool: str, tmp_path: Path) -> None:
    write_rules(tmp_path / "rules.yaml", rendered_rules(helm, *RULE_VALUES))
    shutil.copy(ALERT_TESTS, tmp_path / ALERT_TESTS.name)
    run_promtool(promtool, "test", "rules", ALERT_TESTS.name, cwd=tmp_path)


def test_every_alert_is_tested_firing_and_quiet(helm: str) -> None:
    """A new alert without promtool cases, both ways, fails here."""
    cases = yaml.safe_load(ALERT_TESTS.read_text())
    fires: set[str] = set()
    quiet: set[str] = set()
    for group in cases["tests"]:
        for case in group.get("alert_rule_test") or ():
            (fires if case.get("exp_alerts") else quiet).add(case["alertname"])
    names = {a["alert"] for a in alerts(rendered_rules(helm, *RULE_VALUES))}
    assert names - fires == set(), "alerts never shown firing in test/alerts/liqosec.yaml"
    assert names - quiet == set(), "alerts never shown quiet in test/alerts/liqosec.yaml"
    assert (fires | quiet) - names == set(), "cases of alerts the chart does not have"


def test_every_alert_says_what_to_look_at_with_kubectl(helm: str) -> None:
    for alert in alerts(rendered_rules(helm, *RULE_VALUES)):
        name, notes = alert["alert"], alert.get("annotations") or {}
        assert notes.get("summary") and notes.get("description"), f"{name}: summary and description"
        assert re.search(r"`kubectl [^`]+`", notes["description"]), f"{name}: no kubectl command in its description"
        assert (alert.get("labels") or {}).get("severity") in SEVERITIES, f"{name}: severity"
        assert "${" not in json.dumps(alert), f"{name}: a placeholder left"


def test_durations_and_thresholds_come_from_the_values(helm: str) -> None:
    spec = rendered_rules(helm, *RULE_VALUES)
    by_name = {a["alert"]: a for a in alerts(spec)}
    assert by_name["LiqosecPeeringNotReady"]["for"] == "3m"
    assert by_name["LiqosecFirewallWritesFailing"]["for"] == "10m"
    assert "> 10 / 100" in by_name["LiqosecReconcileErrors"]["expr"]
    defaults = {a["alert"]: a for a in alerts(rendered_rules(helm, "metrics.prometheusRule.enabled=true"))}
    assert defaults["LiqosecPeeringNotReady"]["for"] == "10m"
    for alert in defaults.values():  # the release's own series: its Service's job, its namespace
        assert 'job="liqosec-metrics", namespace="liqo"' in alert["expr"], alert["alert"]


def test_the_rule_is_off_by_default_and_labelled_when_on(helm: str) -> None:
    assert "PrometheusRule" not in kinds(template(helm))
    objects = template(helm, "metrics.prometheusRule.enabled=true", "metrics.prometheusRule.labels.release=kps")
    [rule] = [o for o in objects if o["kind"] == "PrometheusRule"]
    assert rule["metadata"]["labels"]["release"] == "kps" and rule["metadata"]["namespace"] == NAMESPACE


def test_without_leader_election_there_is_no_leader_alert(helm: str) -> None:
    spec = rendered_rules(helm, "metrics.prometheusRule.enabled=true", "leaderElection.enabled=false", "replicas=1")
    names = {a["alert"] for a in alerts(spec)}
    assert "LiqosecNoLeader" not in names and "LiqosecPeeringNotReady" in names


# ----- PromQL over what the controller exports -----
def exported_names() -> set[str]:
    """Every series name the controller's registry can expose (histograms' _bucket/_count/_sum, counters' _total)."""
    registry = CollectorRegistry()
    KubeMetrics(registry)
    ControllerMetrics(registry, workers=1)
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
    return {m.name + s for m in registry.collect() for s in suffixes.get(m.type, ("",))}


def metric_names(expr: str) -> set[str]:
    """The series names an expression selects: each is followed by its matchers or its range (the rules' and
    panels' selectors all have one, `{}` at least)."""
    return set(re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*[{\[]", expr))


def test_every_rule_reads_only_series_the_controller_exports(helm: str) -> None:
    exported = exported_names()
    for alert in alerts(rendered_rules(helm, *RULE_VALUES)):
        used = metric_names(alert["expr"])
        assert used and used <= exported, f"{alert['alert']}: {sorted(used - exported)} not exported"


def test_every_panel_query_is_promql_over_exported_series(promtool: str, tmp_path: Path) -> None:
    exported = exported_names()
    queries = dashboards.queries()
    assert len(queries) >= 10
    rules = []
    for i, (query, expr) in enumerate(queries):
        used = metric_names(expr)
        assert used and used <= exported, f"panel {query.panel!r} {query.ref}: {sorted(used - exported)} not exported"
        rules.append({"record": f"liqosec:panel_{i}", "expr": expr})
    run_promtool(
        promtool,
        "check",
        "rules",
        str(write_rules(tmp_path / "panels.yaml", {"groups": [{"name": "p", "rules": rules}]})),
    )


def test_a_panel_with_an_unknown_variable_is_refused() -> None:
    assert dashboards.promql('rate(x{peering=~"$peering"}[$__rate_interval])') == 'rate(x{peering=~".*"}[1m])'
    with pytest.raises(ValueError, match=r"\$cluster"):
        dashboards.promql('x{cluster="${cluster}"}')


def test_the_dashboard_has_a_datasource_and_a_peering_variable() -> None:
    board = dashboards.load()
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert variables["peering"]["query"]["query"].startswith("label_values(") and variables["peering"]["includeAll"]
    for panel in board["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["type"] in ("timeseries", "stat"), panel["title"]


def test_the_dashboard_configmap_carries_the_sidecars_label_and_the_file(helm: str) -> None:
    assert "ConfigMap" not in kinds(template(helm))
    objects = template(helm, "metrics.dashboard.enabled=true")
    [cm] = [o for o in objects if o["kind"] == "ConfigMap"]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(cm["data"]["liqosec.json"]) == dashboards.load()
    objects = template(
        helm,
        "metrics.dashboard.enabled=true",
        "metrics.dashboard.label=dashboards",
        "metrics.dashboard.labelValue=liqo",
        "metrics.dashboard.namespace=monitoring",
    )
    [cm] = [o for o in objects if o["kind"] == "ConfigMap"]
    assert cm["metadata"]["labels"]["dashboards"] == "liqo" and "grafana_dashboard" not in cm["metadata"]["labels"]
    assert cm["metadata"]["namespace"] == "monitoring"
