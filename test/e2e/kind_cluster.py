"""A throwaway kind cluster with liqosec installed: the e2e suite's only way to touch Docker and kind.

Guarantees:
- ``KindCluster.create`` deletes a leftover cluster of the same name first, so a crashed run does
  not poison the next one; ``delete`` is idempotent.
- Every command runs with the cluster's own kubeconfig file (never the user's ~/.kube/config) and a
  timeout; a failure raises ``CommandError`` carrying the command and its stderr.
- Nothing is pulled from a registry at test time: test pods run the liqosec image that was just
  built and loaded into the nodes (it has a Python interpreter to sleep with).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[2]
CLUSTER_NAME = "liqosec-e2e"
IMAGE = "liqosec:e2e"
NAMESPACE = "liqo"
# kind's defaults, spelled out: the pod-cidr Network must name the CIDR pods really get.
POD_SUBNET = "10.244.0.0/16"
SERVICE_SUBNET = "10.96.0.0/16"
KIND_CONFIG = f"""\
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
networking:
  podSubnet: "{POD_SUBNET}"
  serviceSubnet: "{SERVICE_SUBNET}"
nodes:
  - role: control-plane
  - role: worker
"""
# Cluster creation and image builds take minutes on a cold machine.
CREATE_TIMEOUT_S = 600
BUILD_TIMEOUT_S = 900
COMMAND_TIMEOUT_S = 180
POLL_INTERVAL_S = 2.0

T = TypeVar("T")


class CommandError(RuntimeError):
    def __init__(self, cmd: Sequence[str], result: subprocess.CompletedProcess[str]) -> None:
        self.stderr = result.stderr
        super().__init__(
            f"{' '.join(cmd)} exited {result.returncode}:\n{result.stderr.strip() or result.stdout.strip()}"
        )


def run(
    cmd: Sequence[str],
    *,
    timeout: float = COMMAND_TIMEOUT_S,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        list(cmd), input=stdin, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
    )
    if check and result.returncode != 0:
        raise CommandError(cmd, result)
    return result


def missing_prerequisite() -> str | None:
    """Why the e2e suite cannot run here, or None when it can."""
    if shutil.which("docker") is None:
        return "no Docker engine: docker CLI not found"
    try:
        info = run(["docker", "info"], timeout=30, check=False)
    except subprocess.TimeoutExpired:
        return "no Docker engine: docker info timed out"
    if info.returncode != 0:
        return "no Docker engine: docker info failed"
    if shutil.which("kind") is None:
        return "kind not found"
    if shutil.which("kubectl") is None:
        return "kubectl not found"
    return None


def eventually(probe: Callable[[], T | None], *, timeout: float, what: str) -> T:
    """Poll until ``probe`` returns something other than None; the last error explains a timeout."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = probe()
            if value is not None:
                return value
        except (CommandError, KeyError, ValueError) as err:
            last = err
        time.sleep(POLL_INTERVAL_S)
    raise TimeoutError(
        f"timed out after {timeout:.0f} s waiting for {what}" + (f"; last error: {last}" if last else "")
    )


def helm_binary() -> str | None:
    """helm from hack/build-helm.sh's cache, else one on PATH; None means install with kustomize."""
    result = run([str(ROOT / "hack" / "build-helm.sh"), "--print-path"], check=False)
    path = result.stdout.strip()
    if result.returncode == 0 and path and os.access(path, os.X_OK):
        return path
    return shutil.which("helm")


class KindCluster:
    def __init__(self, workdir: Path, name: str = CLUSTER_NAME) -> None:
        self.name = name
        self.kubeconfig = workdir / "kubeconfig"
        self.workdir = workdir

    def create(self) -> None:
        self.delete()
        config = self.workdir / "kind.yaml"
        config.write_text(KIND_CONFIG)
        run(
            [
                "kind",
                "create",
                "cluster",
                "--name",
                self.name,
                "--config",
                str(config),
                "--kubeconfig",
                str(self.kubeconfig),
                "--wait",
                "180s",
            ],
            timeout=CREATE_TIMEOUT_S,
        )

    def delete(self) -> None:
        run(["kind", "delete", "cluster", "--name", self.name], timeout=CREATE_TIMEOUT_S, check=False)

    def load_image(self, image: str) -> None:
        run(["kind", "load", "docker-image", image, "--name", self.name], timeout=CREATE_TIMEOUT_S)

    def kubectl(self, *args: str, stdin: str | None = None, timeout: float = COMMAND_TIMEOUT_S) -> str:
        return run(["kubectl", "--kubeconfig", str(self.kubeconfig), *args], stdin=stdin, timeout=timeout).stdout

    def get_json(self, *args: str) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.kubectl("get", *args, "-o", "json"))
        return parsed

    def apply(self, objects: Sequence[dict[str, Any]]) -> None:
        self.kubectl(
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            "-",
            stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)}),
        )

    def install_liqosec(self, image: str) -> None:
        """With helm when available (the chart is the product), else `kubectl apply -k manifests`, image swapped."""
        helm = helm_binary()
        repo, _, tag = image.partition(":")
        if helm:
            run(
                [
                    helm,
                    "upgrade",
                    "--install",
                    "liqosec",
                    str(ROOT / "chart"),
                    "--namespace",
                    NAMESPACE,
                    "--create-namespace",
                    "--kubeconfig",
                    str(self.kubeconfig),
                    "--set",
                    f"image.repository={repo}",
                    "--set",
                    f"image.tag={tag}",
                    "--set",
                    "image.pullPolicy=Never",
                    "--set",
                    "logLevel=debug",
                ],
                timeout=400,
            )
        else:
            self._apply_kustomize(repo, tag)
        self.wait_for_a_ready_replica()

    def _apply_kustomize(self, repo: str, tag: str) -> None:
        overlay = self.workdir / "overlay"
        overlay.mkdir(exist_ok=True)
        base = os.path.relpath(ROOT / "manifests", overlay)
        (overlay / "kustomization.yaml").write_text(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
            f"resources: [{base}]\nimages:\n  - name: ghcr.io/liqosec/liqosec\n    newName: {repo}\n    newTag: {tag}\n"
        )
        self.kubectl("create", "namespace", NAMESPACE)
        self.kubectl("apply", "--server-side", "-k", str(overlay))

    def wait_for_a_ready_replica(self) -> None:
        """One ready pod, not all: whether the standby reports ready before it leads is the controller's choice."""
        eventually(
            lambda: (
                True
                if self.get_json("deployment", "-n", NAMESPACE, "liqosec").get("status", {}).get("readyReplicas", 0)
                >= 1
                else None
            ),
            timeout=300,
            what="a ready liqosec replica",
        )


def build_image(image: str) -> None:
    run(["docker", "build", "-t", image, str(ROOT)], timeout=BUILD_TIMEOUT_S)
