"""The matrix page as a browser draws it: headless Chromium builds every cell and paints their colours."""

from __future__ import annotations

import io
import re
from collections import Counter
from pathlib import Path

import pytest

from harness import chromium
from liqosec.cli import main
from liqosec.picture import KINDS

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "provider-isolate-offloaded.yaml"
ENDPOINTS = 8  # the example's pods and samples (`liqosec matrix -f` it)


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if chromium.binary() is None:
        # hack/ci-setup.sh (run by hack/test.sh) installs it: a missing browser is a failure, never a skip.
        pytest.fail("chromium is not installed: run hack/ci-setup.sh (apt-get install chromium)")
    out = io.StringIO()
    assert main(["matrix", "-f", str(EXAMPLE), "--ctstate", "-o", "html"], out=out) == 0
    path = tmp_path_factory.mktemp("page") / "matrix.html"
    path.write_text(out.getvalue(), encoding="utf-8")
    return path


def test_the_browser_builds_every_cell_with_its_title(page: Path) -> None:
    dom = chromium.dump_dom(page)
    built = re.findall(r'<rect [^>]*class="cell (\w[\w-]*)"[^>]*><title>([^<]+)</title>', dom)
    assert len(built) == ENDPOINTS**2
    assert {kind for kind, _ in built} == set(KINDS)
    assert all(" -&gt; " in title and ("request: " in title or kind == "self") for kind, title in built)


def test_the_screenshot_shows_the_picture_at_its_size_in_its_colours(page: Path, tmp_path: Path) -> None:
    size = chromium.svg_size(page.read_text(encoding="utf-8"))
    png = tmp_path / "matrix.png"
    chromium.screenshot(page, png, size)
    image = chromium.decode_png(png.read_bytes())
    assert (image.width, image.height) == size
    counts = Counter(p[:3] for p in image.pixels)
    assert len(counts) > 20, "a blank or flat screenshot"  # text is antialiased: many shades
    cell = (18 - 1) ** 2  # a cell's pixels (picture.CELL, less the gap)
    for kind, (fill, _) in KINDS.items():
        rgb = tuple(int(fill[k : k + 2], 16) for k in (1, 3, 5))
        assert counts[rgb] >= cell, f"{kind} ({fill}) is not painted: {counts[rgb]} pixels"
