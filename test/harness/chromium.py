"""Headless Chromium for the tests and `hack/screenshot-matrix.sh`: a page's screenshot and DOM.

Debian's `chromium` (hack/ci-setup.sh installs it). Every run gets a fresh profile and no network
of its own (no updates, sync or QUIC), so a page that needs something from outside shows it
missing. The PNG decoder is the standard library's zlib: enough to count a screenshot's colours.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

FLAGS = (
    "--headless",
    "--no-sandbox",  # root in a container: Chromium's sandbox needs user namespaces it may not have
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--force-color-profile=srgb",  # the pixels hold the page's colours exactly
)
TIMEOUT = 120  # seconds: a cold start on a loaded 2-core machine takes a few


def binary() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _run(page: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    chromium = binary()
    if chromium is None:
        raise RuntimeError("chromium is not installed: run hack/ci-setup.sh (apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="liqosec-chromium-") as profile:
        done = subprocess.run(
            [chromium, *FLAGS, f"--user-data-dir={profile}", *flags, page.resolve().as_uri()],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
    if done.returncode != 0:
        raise RuntimeError(f"chromium exited {done.returncode}: {done.stderr[-2000:]}")
    return done


def svg_size(page_text: str) -> tuple[int, int]:
    """The pixels the page's picture needs: its first <svg>'s width and height."""
    found = re.search(r'<svg[^>]*\bwidth="(\d+)"[^>]*\bheight="(\d+)"', page_text)
    if found is None:
        raise ValueError("the page holds no <svg> with a width and a height")
    return int(found.group(1)), int(found.group(2))


def screenshot(page: Path, png: Path, size: tuple[int, int]) -> None:
    _run(page, f"--screenshot={png}", f"--window-size={size[0]},{size[1]}")
    if not png.is_file():
        raise RuntimeError(f"chromium wrote no screenshot to {png}")


def dump_dom(page: Path) -> str:
    """The DOM Chromium built from the page, serialised."""
    return _run(page, "--dump-dom").stdout


@dataclass(frozen=True)
class Image:
    width: int
    height: int
    pixels: list[tuple[int, ...]]  # row-major; RGB or RGBA


def decode_png(data: bytes) -> Image:
    """An 8-bit RGB or RGBA, non-interlaced PNG (what Chromium writes)."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    if depth != 8 or colour not in (2, 6) or interlace:
        raise ValueError(f"unsupported PNG: depth {depth}, colour type {colour}, interlace {interlace}")
    bpp = 3 if colour == 2 else 4
    raw, stride = zlib.decompress(idat), width * bpp
    rows: list[bytearray] = []
    prior = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prior[i], (prior[i - bpp] if i >= bpp else 0)
            if kind == 1:
                line[i] = (line[i] + a) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + b) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append(line)
        prior = line
    pixels = [tuple(row[x : x + bpp]) for row in rows for x in range(0, stride, bpp)]
    return Image(width, height, pixels)


def main(argv: list[str]) -> int:
    """`python -m harness.chromium PAGE.html OUT.png`: the page's picture at its own size."""
    if len(argv) != 2:
        print("usage: python -m harness.chromium PAGE.html OUT.png", file=sys.stderr)
        return 2
    page, png = Path(argv[0]), Path(argv[1])
    screenshot(page, png, svg_size(page.read_text(encoding="utf-8")))
    print(f"{png}: {os.path.getsize(png):,} bytes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
