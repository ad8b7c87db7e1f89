"""`liqosec matrix -o svg|html`: every cell, its colour, the rule deciding it, escaped names, one page."""

from __future__ import annotations

import io
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import yaml

from liqosec.cli import main
from liqosec.explain import explain
from liqosec.inputs import load_objects
from liqosec.matrix import build_matrix
from liqosec.picture import KINDS, svg

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "provider-isolate-offloaded.yaml"
S = "{http://www.w3.org/2000/svg}"


def run(*argv: str) -> str:
    out = io.StringIO()
    assert main(["matrix", *argv], out=out) == 0
    return out.getvalue()


def cells(root: ET.Element) -> list[ET.Element]:
    return [r for r in root.iter(f"{S}rect") if "cell" in (r.get("class") or "").split()]


def test_every_cell_has_the_tables_verdict_and_colour() -> None:
    table = json.loads(run("-f", str(EXAMPLE), "--ctstate", "-o", "json"))
    ips = [e["ip"] for e in table["endpoints"]]
    (grid,) = [p["connect"] for p in table["peerings"].values()]
    root = ET.fromstring(run("-f", str(EXAMPLE), "--ctstate", "-o", "svg"))
    drawn = cells(root)
    assert len(drawn) == len(ips) ** 2
    seen = set()
    for cell in drawn:
        title = cell.findtext(f"{S}title") or ""
        ends = re.match(r"^.* \(([\d.]+)\) -> .* \(([\d.]+)\): ", title)
        assert ends, title
        i, j = ips.index(ends[1]), ips.index(ends[2])
        kind = cell.get("class", "").split()[1]
        want = "self" if i == j else ("open" if grid[j][i] else "one-way") if grid[i][j] else "closed"
        assert kind == want, title
        assert cell.get("fill") == KINDS[kind][0]
        seen.add(kind)
    assert seen == set(KINDS)  # the example has all four: the picture is checked against each


def test_a_cells_title_names_the_clause_explain_names() -> None:
    objects = load_objects([str(EXAMPLE)])
    x = explain(objects, "shop-rome/cart-0", "default/web")
    root = ET.fromstring(run("-f", str(EXAMPLE), "-o", "svg"))
    titles = [c.findtext(f"{S}title") or "" for c in cells(root)]
    (title,) = [t for t in titles if t.startswith("shop-rome/cart-0 (") and "-> default/web (" in t]
    assert f"request: {x.request.decision.where}: " in title
    assert x.request.decision.where.startswith("spec.rules[")


def test_names_are_escaped(tmp_path: Path) -> None:
    docs = list(yaml.safe_load_all(EXAMPLE.read_text()))
    pod = next(d for d in docs if d and d.get("kind") == "Pod")
    hostile: dict[str, Any] = json.loads(json.dumps(pod))
    hostile["metadata"]["name"] = '<script>alert("x")</script>&amp;\u00e9'
    hostile["status"]["podIP"] = "10.200.0.7"
    hostile["status"]["podIPs"] = [{"ip": "10.200.0.7"}]
    path = tmp_path / "hostile.yaml"
    path.write_text(yaml.safe_dump_all([*docs, hostile]))
    page = run("-f", str(path), "-o", "html")
    assert "<script" not in page
    root = ET.fromstring(page[page.index("<svg") : page.index("</svg>") + 6])  # it parses: every name escaped
    assert any('<script>alert("x")</script>&amp;\u00e9' in (t.text or "") for t in root.iter(f"{S}text"))


def test_the_page_is_self_contained() -> None:
    page = run("-f", str(EXAMPLE), "-o", "html")
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    assert re.findall(r"https?://[^\"' ]+", page) == ["http://www.w3.org/2000/svg"]  # a namespace, never fetched
    assert not re.search(r"<script|<link|<img|\bsrc=|\bhref=|@import|url\(", page)


def _pods(n: int) -> list[dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d and d.get("kind") != "Pod"]
    return docs + [
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"p{i}", "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "i"}]},
            "status": {"phase": "Running", "podIP": f"10.0.{i // 200}.{i % 200 + 10}"},
        }
        for i in range(n)
    ]


def test_size_grows_linearly_with_cells() -> None:
    small, large = build_matrix(_pods(10)), build_matrix(_pods(40))
    per_cell = [len(svg(m)) / len(m.endpoints) ** 2 for m in (small, large)]
    assert per_cell[1] <= per_cell[0] * 1.1, per_cell
