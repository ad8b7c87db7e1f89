"""`liqosec matrix -o svg|html`: the matrix as a picture.

- One grid per peering (and the node's, all peerings together, when there are several), as the
  table shows them; rows are sources, columns destinations, both grouped by the party the
  endpoint is in first (`local-cluster`, `remote-cluster`, `offloaded`, `vc-*`, ...).
- A cell is open (a connection opens both ways), one-way (it opens from the row to the column
  only), closed, or the endpoint itself. Its hover (`<title>`) names the endpoints and the clauses
  deciding the request and the reply, computed by `explain.decisions`: the picture and
  `liqosec explain` give one reason.
- Plain SVG built with `xml.etree` from the standard library: it escapes every name (pod names are
  user input) and needs no dependency; characters XML cannot hold are replaced. The HTML page is
  that SVG inline with its CSS: no script, no external resource. Its size is linear in the cells.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass

from liqosec.api.peeringconnectivity import Group
from liqosec.compiler.firewallconfiguration import CompiledPeering
from liqosec.explain import decision_text, decisions
from liqosec.matrix import Endpoint, Matrix, in_force

SVG_NS = "http://www.w3.org/2000/svg"
CELL = 18  # px: a cell, large enough to point at
CHAR = 7  # px: the advance of one character of the 11 px monospace font, to size the label columns
LINE = 16  # px: a line of text
PAD = 10
# name: (fill, what it means); the legend and the CSS come from this one table.
KINDS = {
    "open": ("#2e9e57", "opens, both ways"),
    "one-way": ("#f0a830", "opens from the row to the column only"),
    "closed": ("#cc3d3d", "does not open"),
    "self": ("#d8d8d8", "the endpoint itself"),
}
# A row's band is the most specific group it is in (an offloaded pod is in local-cluster too) ...
_SPECIFIC = [
    Group(g).value for g in "offloaded vc-local vc-remote nameserver local-cluster remote-cluster leaf internet".split()
]
# ... and the bands run from this cluster's pods to the peer's, then the rest.
_BANDS = [
    Group(g).value for g in "local-cluster vc-local nameserver offloaded remote-cluster vc-remote leaf internet".split()
]
# XML 1.0 cannot hold these at all, escaped or not.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _clean(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)


def party(ep: Endpoint) -> str:
    """The band a row and its column are listed in: the most specific group the endpoint is in
    (`group@peer` when several peerings are shown), its first selector party, else none."""
    for name in _SPECIFIC:
        for g in ep.groups:
            if g.split("@")[0] == name:
                return g
    if ep.groups:
        return ep.groups[0]
    return "internet" if ep.name == "(internet)" else "no group"


def _order(endpoints: Sequence[Endpoint]) -> list[int]:
    def rank(i: int) -> tuple[int, str, int]:
        band = party(endpoints[i])
        name = band.split("@")[0]
        return (_BANDS.index(name) if name in _BANDS else len(_BANDS), band, i)

    return sorted(range(len(endpoints)), key=rank)


@dataclass(frozen=True)
class Panel:
    """One grid: a peering's (its outcome), or the node's (every peering in force)."""

    title: str
    grid: list[list[bool]]
    outcomes: tuple[CompiledPeering, ...]


def _panels(matrix: Matrix) -> list[Panel]:
    panels = [
        Panel(f"peering {o.peer} ({o.peering.key})", matrix.grid(peer=o.peering.key), (o,)) for o in matrix.outcomes
    ]
    if len(matrix.outcomes) > 1:
        panels.append(Panel("all peerings together (as on a node)", matrix.grid(), tuple(in_force(matrix.outcomes))))
    return panels


def _reason(panel: Panel, src: Endpoint, dst: Endpoint, matrix: Matrix) -> list[str]:
    lines = []
    for o in panel.outcomes:
        request, reply = decisions(o, src.ip, dst.ip, matrix.port)
        where = f"{o.peer}: " if len(panel.outcomes) > 1 else ""
        lines.append(f"{where}request: {decision_text(request)}")
        lines.append(f"{where}reply: {decision_text(reply) if reply else 'established, conntrack passes it'}")
    return lines


def _kind(grid: list[list[bool]], i: int, j: int) -> str:
    if i == j:
        return "self"
    if grid[i][j]:
        return "open" if grid[j][i] else "one-way"
    return "closed"


def _text(parent: ET.Element, x: float, y: float, text: str, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, "text", {"x": f"{x:g}", "y": f"{y:g}", **attrs})
    el.text = _clean(text)
    return el


@dataclass(frozen=True)
class Layout:
    """Where a panel's parts go: the group column, the name column, then the cells."""

    group_w: int
    left: int  # x of the first column of cells
    head: int  # height above the cells: column groups written upwards, then the numbers

    @staticmethod
    def of(eps: Sequence[Endpoint]) -> Layout:
        group_w = max(len(party(e)) for e in eps) * CHAR + PAD
        name_w = max(len(f"{n + 1} {e.name}") for n, e in enumerate(eps)) * CHAR + PAD
        return Layout(group_w, PAD + group_w + name_w, max(len(party(e)) for e in eps) * CHAR + LINE * 2)


def _line(root: ET.Element, x1: int, y1: int, x2: int, y2: int) -> None:
    ET.SubElement(root, "line", {"x1": str(x1), "y1": str(y1), "x2": str(x2), "y2": str(y2), "class": "band"})


def _labels(root: ET.Element, eps: Sequence[Endpoint], order: Sequence[int], at: Layout, grid_top: int) -> None:
    """Row names and column numbers, each band's name beside its rows and above its columns, lines between bands."""
    size = len(eps) * CELL
    previous = None
    for pos, i in enumerate(order):
        x, y = at.left + pos * CELL, grid_top + pos * CELL
        group = party(eps[i])
        if group != previous:
            _text(root, PAD, y + CELL - 5, group, **{"class": "group"})
            gx, gy = x + CELL - 5, grid_top - LINE - 2
            _text(root, gx, gy, group, **{"class": "group", "transform": f"rotate(-90 {gx} {gy})"})
            if previous is not None:
                _line(root, PAD, y, at.left + size, y)
                _line(root, x, grid_top - at.head + LINE, x, grid_top + size)
            previous = group
        _text(root, PAD + at.group_w, y + CELL - 5, f"{i + 1} {eps[i].name}", **{"class": "name"})
        number = _text(root, x + CELL / 2, grid_top - 4, str(i + 1), **{"class": "number"})
        ET.SubElement(number, "title").text = _clean(f"{i + 1}: {eps[i].name} ({eps[i].ip})")


def _panel(root: ET.Element, matrix: Matrix, panel: Panel, top: int) -> int:
    """Draw one grid from `top`; returns the height used."""
    eps = matrix.endpoints
    order = _order(eps)
    at = Layout.of(eps)
    _text(root, PAD, top + LINE - 4, panel.title, **{"class": "title"})
    grid_top = top + LINE + at.head
    _labels(root, eps, order, at, grid_top)
    for row, i in enumerate(order):
        for col, j in enumerate(order):
            kind = _kind(panel.grid, i, j)
            cell = ET.SubElement(
                root,
                "rect",
                {
                    "x": str(at.left + col * CELL),
                    "y": str(grid_top + row * CELL),
                    "width": str(CELL - 1),
                    "height": str(CELL - 1),
                    "fill": KINDS[kind][0],
                    "class": f"cell {kind}",
                },
            )
            src, dst = eps[i], eps[j]
            about = f"{src.name} ({src.ip}) -> {dst.name} ({dst.ip}): {KINDS[kind][1]}"
            lines = [about] if kind == "self" else [about, *_reason(panel, src, dst, matrix)]
            ET.SubElement(cell, "title").text = _clean("\n".join(lines))
    return LINE + at.head + len(eps) * CELL + PAD * 2


def _probe(matrix: Matrix) -> str:
    if matrix.port is None:
        return "a TCP connection to a port no rule names"
    return f"a {matrix.port[0].upper()} connection to port {matrix.port[1]}"


def _caption(matrix: Matrix) -> str:
    return f"rows: source, columns: destination; probe: {_probe(matrix)}"


def _legend(root: ET.Element, matrix: Matrix, top: int) -> int:
    _text(
        root, PAD, top + LINE - 4, f"rows: source, columns: destination; probe: {_probe(matrix)}", **{"class": "name"}
    )
    for n, (kind, (fill, meaning)) in enumerate(KINDS.items()):
        y = top + LINE + (CELL + 2) * n + 4
        ET.SubElement(
            root,
            "rect",
            {
                "x": str(PAD),
                "y": str(y),
                "width": str(CELL - 1),
                "height": str(CELL - 1),
                "fill": fill,
                "class": f"legend {kind}",
            },
        )
        _text(root, PAD + CELL + 6, y + CELL - 5, f"{kind}: {meaning}", **{"class": "name"})
    return LINE + (CELL + 2) * len(KINDS) + PAD * 2


_CSS = """\
text { fill: #1a1a1a; white-space: pre; }
text.title { font-weight: bold; }
text.group { fill: #555555; font-style: italic; }
text.number { text-anchor: middle; font-size: 9px; }
line.band { stroke: #7a7a7a; stroke-width: 1; }
rect.cell:hover { stroke: #000000; stroke-width: 2; }
"""


def svg_element(matrix: Matrix) -> ET.Element:
    """The picture; its `width` and `height` are the pixels it needs."""
    root = ET.Element("svg", {"xmlns": SVG_NS, "font-family": "DejaVu Sans Mono, monospace", "font-size": "11"})
    ET.SubElement(root, "title").text = "liqosec matrix"
    ET.SubElement(root, "style").text = _CSS
    ET.SubElement(root, "rect", {"width": "100%", "height": "100%", "fill": "#ffffff"})
    panels = _panels(matrix)
    top = PAD
    for panel in panels:
        top += _panel(root, matrix, panel, top)
    top += _legend(root, matrix, top)
    at = Layout.of(matrix.endpoints)
    legend = [f"{kind}: {meaning}" for kind, (_, meaning) in KINDS.items()]
    text = max(len(t) for t in [*(p.title for p in panels), _caption(matrix), *legend]) * CHAR + CELL
    width = max(at.left + len(matrix.endpoints) * CELL, PAD + text) + PAD
    root.set("width", str(width))
    root.set("height", str(top))
    root.set("viewBox", f"0 0 {width} {top}")
    return root


def svg(matrix: Matrix) -> str:
    return ET.tostring(svg_element(matrix), encoding="unicode") + "\n"


def html(matrix: Matrix) -> str:
    """One self-contained page: the SVG inline and its CSS; no script, nothing fetched."""
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        "<title>liqosec matrix</title>\n<style>body { margin: 0; background: #ffffff; }</style>\n"
        "</head>\n<body>\n"
        f"{ET.tostring(svg_element(matrix), encoding='unicode')}\n</body>\n</html>\n"
    )
