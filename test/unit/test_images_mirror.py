"""hack/images/build.sh takes the Debian mirror apt already uses, keeps LIQOSEC_DEBIAN_MIRROR, and says so
clearly when neither names one (issue 19: images built from the machine's own package sources)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

BUILD = Path(__file__).resolve().parents[2] / "hack" / "images" / "build.sh"
# The script's mirror functions alone (no Docker, no builds): its pins, log/die and the two functions.
FUNCTIONS = (
    r"""sed -n '/^DEBIAN_SUITE=/p; /^log()/p; /^die()/p; /^apt_mirror()/,/^}/p; /^debian_mirror()/,/^}/p' "$BUILD" """
)


def mirror(apt_dir: Path, override: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "LIQOSEC_DEBIAN_MIRROR"}
    if override is not None:
        env["LIQOSEC_DEBIAN_MIRROR"] = override
    # The script's apt_mirror, renamed, wrapped to read `apt_dir` instead of /etc/apt.
    script = (
        f"set -eu; source <({FUNCTIONS} | sed 's/^apt_mirror()/command_apt_mirror()/'); "
        f'apt_mirror() {{ command_apt_mirror "{apt_dir}"; }}; debian_mirror'
    )
    return subprocess.run(
        ["bash", "-c", script], env={**env, "BUILD": str(BUILD)}, capture_output=True, text=True, check=False
    )


def test_a_deb822_source_for_the_suite_is_taken_deb_src_and_other_suites_are_not(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb-src\nURIs: http://src.example/debian\nSuites: bookworm\n\n"
        "Types: deb\nURIs: http://security.example/debian-security\nSuites: bookworm-security\n\n"
        "Suites: bookworm bookworm-updates\nURIs: http://mirror.example/debian/\nTypes: deb\nComponents: main\n"
    )
    done = mirror(tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == "http://mirror.example/debian", done.stderr


def test_a_one_line_source_with_options_is_taken(tmp_path: Path) -> None:
    (tmp_path / "sources.list").write_text(
        "# deb http://old.example/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://one.example/debian bookworm main\n"
    )
    assert mirror(tmp_path).stdout.strip() == "http://one.example/debian"


def test_the_override_wins_and_no_source_at_all_is_one_clear_error(tmp_path: Path) -> None:
    assert mirror(tmp_path, "http://override.example/debian").stdout.strip() == "http://override.example/debian"
    done = mirror(tmp_path)
    assert done.returncode != 0
    assert "no Debian mirror for bookworm" in done.stderr and "LIQOSEC_DEBIAN_MIRROR" in done.stderr
