"""`liqosec run` start-up failures: one line on stderr saying what to do, exit 1, never a traceback.

Run as a user would: `python -m liqosec run ...` in a subprocess. (Missing CRDs
are not a start-up failure: test/integration/test_run_startup.py.)
"""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from liqosec import run as options
from liqosec.kube import errors
from liqosec.run import StartupError

KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: "{server}"}}}}]
users: [{{name: u, user: {{token: not-a-token}}}}]
contexts: [{{name: c, context: {{cluster: c, user: u}}}}]
current-context: c
"""


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.fixture()
def listening() -> Iterator[int]:
    """A port someone else holds."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


@pytest.fixture()
def kubeconfig(tmp_path: Path) -> Path:
    """A well-formed kubeconfig whose API server is not there."""
    path = tmp_path / "kubeconfig"
    path.write_text(KUBECONFIG.format(server=f"https://127.0.0.1:{closed_port()}"))
    return path


def run(*args: str, env: dict[str, str] | None = None) -> str:
    """`liqosec run` with free or disabled ports; asserts the contract and returns the line."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")}
    full_env.update(env or {})
    defaults = ["--no-leader-elect", "--metrics-bind-address", "0", "--health-probe-bind-address", "0"]
    result = subprocess.run(
        [sys.executable, "-m", "liqosec", "run", *defaults, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=full_env,
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("liqosec run: ")
    assert result.stdout == ""
    return lines[0]


def test_a_missing_kubeconfig(tmp_path: Path) -> None:
    line = run("--kubeconfig", str(tmp_path / "nope"))
    assert f"kubeconfig {tmp_path / 'nope'} does not exist: pass --kubeconfig (or set KUBECONFIG)" in line


def test_no_kubeconfig_at_all_names_the_default(tmp_path: Path) -> None:
    line = run(env={"HOME": str(tmp_path)})
    assert f"kubeconfig {tmp_path}/.kube/config does not exist" in line


def test_a_kubeconfig_that_is_a_directory(tmp_path: Path) -> None:
    line = run("--kubeconfig", str(tmp_path))
    assert f"kubeconfig {tmp_path} is a directory" in line


def test_an_unreadable_kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Root reads any file, so the refusal is simulated where the file is opened."""
    path = tmp_path / "kubeconfig"
    path.write_text("x")

    def refuse(*_: object, **__: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(options, "open", refuse, raising=False)
    expected = rf"cannot read kubeconfig {path} \(Permission denied\): fix its permissions"
    with pytest.raises(StartupError, match=expected):
        options._check_readable(str(path))


def test_a_malformed_kubeconfig(tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text("clusters: [\n")
    line = run("--kubeconfig", str(path))
    assert line.startswith(f"liqosec run: kubeconfig {path} is not usable (")
    assert line.endswith("fix it or pass another with --kubeconfig")


def test_an_unknown_context(kubeconfig: Path) -> None:
    line = run("--kubeconfig", str(kubeconfig), "--context", "prod")
    assert "prod" in line and line.endswith("fix it or pass another with --kubeconfig or --context")


def test_an_unreachable_api_server(kubeconfig: Path) -> None:
    line = run("--kubeconfig", str(kubeconfig))
    assert line.startswith("liqosec run: cannot reach the API server at https://127.0.0.1:")
    assert "Connection refused" in line
    assert line.endswith("check that it is up and that --kubeconfig/--context point at it")


def test_the_metrics_port_taken(kubeconfig: Path, listening: int) -> None:
    line = run("--kubeconfig", str(kubeconfig), "--metrics-bind-address", f"127.0.0.1:{listening}")
    assert line == (
        f"liqosec run: cannot listen on 127.0.0.1:{listening} for metrics (Address already in use): "
        "free the port or choose another with --metrics-bind-address ('0' disables it)"
    )


def test_the_probe_port_taken(kubeconfig: Path, listening: int) -> None:
    line = run(
        "--kubeconfig",
        str(kubeconfig),
        "--metrics-bind-address",
        f"127.0.0.1:{closed_port()}",
        "--health-probe-bind-address",
        f"127.0.0.1:{listening}",
    )
    assert f"cannot listen on 127.0.0.1:{listening} for health probes (Address already in use)" in line
    assert "--health-probe-bind-address" in line


def test_a_bind_address_without_a_port(kubeconfig: Path) -> None:
    line = run("--kubeconfig", str(kubeconfig), "--metrics-bind-address", "localhost")
    assert "cannot listen on localhost for metrics (bind address 'localhost' must be host:port or :port)" in line


def test_zero_workers(kubeconfig: Path) -> None:
    assert run("--kubeconfig", str(kubeconfig), "--workers", "0") == (
        "liqosec run: workers must be at least 1: see liqosec run --help"
    )


@pytest.mark.parametrize("period", ["-1", "nan", "inf"])
def test_a_full_gc_period_that_is_no_number_of_seconds(kubeconfig: Path, period: str) -> None:
    assert run("--kubeconfig", str(kubeconfig), "--full-gc-period", period) == (
        f"liqosec run: --full-gc-period must be a number of seconds >= 0, not {float(period)}"
    )


class Refusing:
    """Just enough of a KubeClient for the pre-flight call."""

    def __init__(self, err: errors.ApiError) -> None:
        self.err = err

    def list(self, *_: object, **__: object) -> dict[str, object]:
        raise self.err


@pytest.mark.parametrize(
    ("err", "expected"),
    [
        (errors.Unauthorized(401, "Unauthorized", ""), "refused the credentials (401 Unauthorized): renew them"),
        (
            errors.Forbidden(403, "Forbidden", ""),
            "forbids listing CustomResourceDefinitions (403 Forbidden): bind liqosec's ClusterRole",
        ),
        (
            errors.ServiceUnavailable(503, "ServiceUnavailable", "etcd\ndown"),
            "failed (503 ServiceUnavailable: etcd down): retry once it is healthy",
        ),
    ],
    ids=["401", "403", "503"],
)
def test_the_api_server_refusing_us(err: errors.ApiError, expected: str) -> None:
    with pytest.raises(StartupError) as info:
        options._preflight(Refusing(err), "https://api:6443")  # type: ignore[arg-type]
    assert expected in str(info.value) and "https://api:6443" in str(info.value)
    assert "\n" not in str(info.value)


def test_the_allocator_is_tuned_unless_the_operator_already_did() -> None:
    import ctypes

    try:
        glibc = sys.platform.startswith("linux") and hasattr(ctypes.CDLL(None), "mallopt")  # musl has none
    except OSError:
        glibc = False
    if not glibc:  # nothing to tune, and nothing said to be tuned
        assert options.tune_allocator({}) == []
        return
    assert options.tune_allocator({}) == ["MALLOC_MMAP_THRESHOLD_", "MALLOC_ARENA_MAX"]
    assert options.tune_allocator({"MALLOC_ARENA_MAX": "8"}) == ["MALLOC_MMAP_THRESHOLD_"]
    assert options.tune_allocator({"MALLOC_ARENA_MAX": "8", "MALLOC_MMAP_THRESHOLD_": "0"}) == []
