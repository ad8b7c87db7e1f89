"""`liqosec run` as a process against real API servers: refused credentials, and CRDs missing at start.

Credentials the API server refuses are a start-up failure (one line, exit 1).
Missing CRDs are not: the process stays up and unready, says which CRDs to
install on /readyz, in one log line and in an Event on its Pod, and becomes
ready once they are installed, without a restart.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from support import wait_for

from harness.controlplane import ControlPlane, find_binaries
from harness.liqo_webhook import LiqoWebhook
from harness.objects import ensure_namespace
from liqosec.kube.client import EVENTS, RestKubeClient

REPO_ROOT = Path(__file__).resolve().parents[2]
OUR_CRD = "peeringconnectivities.security.liqo.io"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "POD_NAME", "POD_NAMESPACE")
    }
    return {**env, **extra}


def test_credentials_the_api_server_refuses(control_plane: ControlPlane, tmp_path: Path) -> None:
    config = yaml.safe_load(control_plane.kubeconfig_path.read_text())
    config["users"][0]["user"]["token"] = "not-the-token"
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "liqosec",
            "run",
            "--kubeconfig",
            str(kubeconfig),
            "--no-leader-elect",
            "--metrics-bind-address",
            "0",
            "--health-probe-bind-address",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        f"liqosec run: the API server at {control_plane.server} refused the credentials (401 Unauthorized): renew "
        "them in the kubeconfig, or check the pod's ServiceAccount token"
    ]


@pytest.fixture(scope="module")
def bare_control_plane(control_plane: ControlPlane) -> Iterator[ControlPlane]:
    """A second API server with Liqo's CRDs only (the shared one has ours installed for every other test),
    and Liqo's FirewallConfiguration webhooks, as every test API server."""
    with ControlPlane(find_binaries(REPO_ROOT)) as cp:
        cp.install_crds([Path(os.environ.get("LIQOSEC_LIQO_CRDS", REPO_ROOT / "hack" / "liqo-crds"))])
        with LiqoWebhook(cp):
            yield cp


def readyz(port: int) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()
    except OSError:
        return 0, ""


def test_a_missing_crd_keeps_it_running_unready_until_installed(bare_control_plane: ControlPlane) -> None:
    cp = bare_control_plane
    with cp.api_client() as api:
        kube = RestKubeClient(api)
        ensure_namespace(kube, "liqo")
        probe = free_port()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "liqosec",
                "run",
                "--kubeconfig",
                str(cp.kubeconfig_path),
                "--no-leader-elect",
                "--metrics-bind-address",
                "0",
                "--health-probe-bind-address",
                f"127.0.0.1:{probe}",
                "--log-format",
                "json",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_env(POD_NAME="liqosec-0", POD_NAMESPACE="liqo"),
        )
        try:
            code = wait_for("/readyz to answer", lambda: readyz(probe)[0])
            assert code == 503
            wait_for(
                "/readyz to name the missing CRD",
                lambda: readyz(probe) == (503, f"waiting for CustomResourceDefinitions: {OUR_CRD}"),
            )
            events = wait_for(
                "an Event on the controller's Pod",
                lambda: [
                    e
                    for e in kube.list(EVENTS, "liqo", limit=50, continue_token=None)["items"]
                    if e["reason"] == "CustomResourceDefinitionMissing"
                ],
            )
            [event] = events
            assert event["type"] == "Warning" and event["involvedObject"]["kind"] == "Pod"
            assert event["involvedObject"]["name"] == "liqosec-0"
            assert f"install liqosec's CRD ({OUR_CRD}: kubectl apply -f manifests/crds/" in event["message"]
            # The time is the point: a controller that gives up would have exited within this second.
            time.sleep(1.0)
            assert proc.poll() is None, "the controller exited instead of waiting"

            cp.install_crds([REPO_ROOT / "manifests" / "crds"])
            wait_for("ready once the CRD is installed", lambda: readyz(probe) == (200, "ok"), timeout=30)
        finally:
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert "Traceback" not in err
    logs = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    missing = [entry for entry in logs if entry["event"].startswith("CustomResourceDefinitions missing")]
    assert len(missing) == 1 and missing[0]["level"] == "error" and missing[0]["missing"] == [OUR_CRD]
    assert any(entry["event"] == "CustomResourceDefinitions installed, starting" for entry in logs)
