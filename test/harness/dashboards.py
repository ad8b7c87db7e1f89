"""The chart's Grafana dashboard as the PromQL a Prometheus server (or `promtool`) can run.

Grafana fills its variables in before it queries; Prometheus cannot parse them. `promql` does
what Grafana would for the dashboard's variables, and refuses any other, so a panel using a new
variable fails its test until the variable is known here. Used by the chart tests (PromQL
syntax, through `promtool check rules`) and by the kind suite (each query against the real
Prometheus must return series).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DASHBOARD = Path(__file__).resolve().parents[2] / "chart" / "dashboards" / "liqosec.json"

# What each variable becomes: a range Prometheus accepts, and every peering (the `All` of a regex match).
DEFAULTS: Mapping[str, str] = {"__rate_interval": "1m", "__interval": "1m", "__range": "1h", "peering": ".*"}
_VARIABLE = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))")


@dataclass(frozen=True)
class PanelQuery:
    panel: str  # the panel's title
    ref: str  # the target's refId
    expr: str  # as written in the dashboard, variables included


def promql(expr: str, values: Mapping[str, str] = DEFAULTS) -> str:
    """`expr` with Grafana's variables (`$name`, `${name}`, `${name:format}`) replaced.

    ValueError naming a variable `values` has no value for.
    """

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise ValueError(f"dashboard variable ${name} has no value for Prometheus (harness.dashboards.DEFAULTS)")
        return values[name]

    return _VARIABLE.sub(value, expr)


def panel_queries(dashboard: Mapping[str, Any]) -> Iterator[PanelQuery]:
    """Every target's expression, rows' nested panels included."""

    def walk(panels: Any) -> Iterator[PanelQuery]:
        for panel in panels or ():
            for target in panel.get("targets") or ():
                if target.get("expr"):
                    yield PanelQuery(str(panel.get("title")), str(target.get("refId")), str(target["expr"]))
            yield from walk(panel.get("panels"))

    yield from walk(dashboard.get("panels"))


def load(path: Path = DASHBOARD) -> dict[str, Any]:
    """The dashboard JSON (json.loads: a syntax error fails here, naming the file)."""
    try:
        loaded: dict[str, Any] = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not JSON: {err}") from None
    return loaded


def queries(path: Path = DASHBOARD, values: Mapping[str, str] = DEFAULTS) -> list[tuple[PanelQuery, str]]:
    """Each panel query with the PromQL Prometheus runs for it."""
    return [(q, promql(q.expr, values)) for q in panel_queries(load(path))]
