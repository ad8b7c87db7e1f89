"""A throwaway kind cluster with liqosec installed: the e2e and peering suites' only way to touch Docker and kind.

Guarantees:
- Images, kind, kubectl and helm come from the repo's scripts (hack/images/build.sh, hack/kind.sh,
  hack/build-helm.sh), built here and cached by version: nothing is pulled from a registry.
- ``KindCluster.create`` deletes a leftover cluster of the same name first, so a crashed run does
  not poison the next one; ``delete`` is idempotent.
- Every command runs with the cluster's own kubeconfig file (never the user's ~/.kube/config) and a
  timeout; a failure raises ``CommandError`` carrying the command and its stderr.
- ``step(name)`` prefixes any failure with the suite step it happened in (image build, cluster
  create, helm, convergence, traffic, ...).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLUSTER_NAME = "liqosec-e2e"
IMAGE = "liqosec:e2e"
NAMESPACE = "liqo"
RELEASE = "liqosec"
# kind's defaults, spelled out: the pod-cidr Network must name the CIDR pods really get.
POD_SUBNET = "10.244.0.0/16"
SERVICE_SUBNET = "10.96.0.0/16"
# No kindnetd: hack/kind.sh wires ptp + routes, so pod traffic crosses each node's forward hook.
KIND_CONFIG = f"""\
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
networking:
  podSubnet: "{POD_SUBNET}"
  serviceSubnet: "{SERVICE_SUBNET}"
  disableDefaultCNI: true
nodes:
  - role: control-plane
  - role: worker
"""
# A cold machine builds Kubernetes, etcd, CoreDNS, Prometheus and the images: tens of minutes.
BUILD_TIMEOUT_S = 3600
CREATE_TIMEOUT_S = 900
# Two attempts of `kind create cluster` (kubeadm waits 4 min for a control plane) and the waits after.
CLUSTER_CREATE_TIMEOUT_S = 1800
COMMAND_TIMEOUT_S = 180
STDERR_TAIL_LINES = 120
POLL_INTERVAL_S = 2.0

T = TypeVar("T")


# Lines that say what went wrong (liqoctl's ERRO, our scripts' "error:" and "state:", kubeadm's and kind's).
_ERROR_LINE = re.compile(r"\b(ERRO|ERROR|error|Error|FATAL|failed|timed out)\b|^\w+: state: ")
ERROR_HEAD_LINES = 12


class CommandError(RuntimeError):
    """A failed command, its error lines first: a report cut in the middle (CI's, a terminal's) still
    shows them. Then the tail of its output, blank lines dropped (liqoctl's spinner prints many)."""

    def __init__(self, cmd: Sequence[str], result: subprocess.CompletedProcess[str]) -> None:
        self.stderr = result.stderr
        said = [line.rstrip() for line in (result.stderr.strip() or result.stdout.strip()).splitlines()]
        said = [line for line in said if line.strip()]
        errors = [line.strip() for line in said if _ERROR_LINE.search(line)][-ERROR_HEAD_LINES:]
        head = "".join(f"  {line}\n" for line in errors)
        # hack/kind.sh create prints kind's lines and each node's state after a failure: keep them.
        tail = "\n".join(said[-STDERR_TAIL_LINES:])
        super().__init__(
            f"{' '.join(cmd)} exited {result.returncode}"
            + (f"; its error lines:\n{head}" if head else "")
            + f"\nits last {min(len(said), STDERR_TAIL_LINES)} lines:\n{tail}"
        )


class StepFailed(AssertionError):
    """A failure of one step of the suite, named."""


@contextmanager
def step(name: str, suite: str = "e2e") -> Iterator[None]:
    try:
        yield
    except StepFailed:
        raise
    except Exception as err:  # every failure is reported with the step it happened in
        raise StepFailed(f"{suite} step '{name}' failed: {type(err).__name__}: {err}") from err


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
    """Why the e2e suite cannot run here, or None when it can. Starts a Docker engine where none
    answers and this machine can run one (hack/docker.sh ensure: root, Debian's docker.io)."""
    if os.environ.get("LIQOSEC_E2E") == "0":
        return "disabled by LIQOSEC_E2E=0"
    if shutil.which("docker") is None and shutil.which("apt-get") is None:
        return "no Docker engine: docker CLI not found"
    try:
        ensure = run([str(ROOT / "hack" / "docker.sh"), "ensure"], timeout=600, check=False)
    except subprocess.TimeoutExpired:
        return "no Docker engine: hack/docker.sh ensure timed out"
    if ensure.returncode != 0:
        last = (ensure.stderr.strip().splitlines() or ["?"])[-1]
        return f"no Docker engine: hack/docker.sh ensure failed: {last}"
    if shutil.which("go") is None:
        return "go not found (kind, kubectl and the images are built from Go modules)"
    return None


_REASON: list[str | None] = []


def reason_not_to_run() -> str | None:
    """``missing_prerequisite``, asked once per session (it may start a Docker engine), and only when
    a test of a kind suite is collected."""
    if not _REASON:
        _REASON.append(missing_prerequisite())
    return _REASON[0]


def mark_kind_suite(items: list[pytest.Item], here: Path, suite: str) -> None:
    """Mark the items under ``here`` e2e; where no Docker engine can run they skip with the reason,
    unless ``LIQOSEC_REQUIRE_E2E=1`` (then their fixture fails instead)."""
    ours = [item for item in items if here in Path(str(item.fspath)).resolve().parents]
    if not ours:
        return
    reason = reason_not_to_run()
    required = os.environ.get("LIQOSEC_REQUIRE_E2E") == "1"
    for item in ours:
        item.add_marker(pytest.mark.e2e)
        if reason and not required:
            item.add_marker(pytest.mark.skip(reason=f"{suite}: {reason}"))


def eventually(probe: Callable[[], T | None], *, timeout: float, what: str) -> T:
    """Poll until ``probe`` returns something other than None; the last error explains a timeout."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = probe()
            if value is not None:
                return value
        except (CommandError, KeyError, ValueError, IndexError, TypeError, AssertionError) as err:
            last = err
        time.sleep(POLL_INTERVAL_S)
    raise TimeoutError(
        f"timed out after {timeout:.0f} s waiting for {what}" + (f"; last error: {last}" if last else "")
    )


def build_images(*targets: str) -> dict[str, str]:
    """hack/images/build.sh: each target's image reference (built now, or found cached)."""
    out = run([str(ROOT / "hack" / "images" / "build.sh"), *targets], timeout=BUILD_TIMEOUT_S).stdout
    refs = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    missing = [t for t in targets if t not in refs]
    if missing:
        raise RuntimeError(f"hack/images/build.sh printed no image for {missing}")
    return refs


def tools() -> dict[str, str]:
    """KIND, KUBECTL and HELM paths (hack/kind.sh tools builds what is missing)."""
    out = run([str(ROOT / "hack" / "kind.sh"), "tools"], timeout=BUILD_TIMEOUT_S).stdout
    found = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    for name in ("KIND", "KUBECTL", "HELM"):
        if not found.get(name) or not os.access(found[name], os.X_OK):
            raise RuntimeError(f"hack/kind.sh tools gave no usable {name}: {found.get(name)!r}")
    return found


def retried_attempts(stderr: str) -> str:
    """What hack/kind.sh create printed about its failed attempts ("" when the first one worked)."""
    lines = stderr.splitlines()
    marker = "failed (above); deleting it and trying again"
    last = max((i for i, line in enumerate(lines) if marker in line), default=-1)
    return "\n".join(lines[: last + 1][-STDERR_TAIL_LINES:]) if last >= 0 else ""


class KindCluster:
    def __init__(self, workdir: Path, name: str = CLUSTER_NAME, kubeconfig: Path | None = None) -> None:
        self.name = name
        self.kubeconfig = kubeconfig or workdir / "kubeconfig"
        self.workdir = workdir
        self._tools: dict[str, str] | None = None

    @property
    def tool(self) -> dict[str, str]:
        if self._tools is None:
            self._tools = tools()
        return self._tools

    def create(self) -> None:
        config = self.workdir / "kind.yaml"
        config.write_text(KIND_CONFIG)
        result = run(
            [str(ROOT / "hack" / "kind.sh"), "create", self.name, str(self.kubeconfig), str(config)],
            timeout=CLUSTER_CREATE_TIMEOUT_S,
        )
        retried = retried_attempts(result.stderr)
        if retried:
            # The suite goes on, on a cluster that came up, but a flaky create is said, with its why.
            warnings.warn(f"kind create {self.name} needed another attempt:\n{retried}", stacklevel=2)

    def delete(self) -> None:
        run([str(ROOT / "hack" / "kind.sh"), "delete", self.name], timeout=CREATE_TIMEOUT_S, check=False)

    def load_image(self, *images: str) -> None:
        run([str(ROOT / "hack" / "kind.sh"), "load", self.name, *images], timeout=CREATE_TIMEOUT_S)

    def node_names(self) -> list[str]:
        nodes = self.get_json("nodes")["items"]
        # control plane first: a stable order for placing pods
        return sorted(
            (n["metadata"]["name"] for n in nodes),
            key=lambda n: (not n.endswith("control-plane"), n),
        )

    def kubectl(self, *args: str, stdin: str | None = None, timeout: float = COMMAND_TIMEOUT_S) -> str:
        return run(
            [self.tool["KUBECTL"], "--kubeconfig", str(self.kubeconfig), *args], stdin=stdin, timeout=timeout
        ).stdout

    def helm(self, *args: str, timeout: float = 400, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run([self.tool["HELM"], "--kubeconfig", str(self.kubeconfig), *args], timeout=timeout, check=check)

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

    def install_liqosec(self, image: str, *extra: str, command: str = "install") -> None:
        """`helm install` (or `upgrade`) of chart/ with the image loaded into the nodes."""
        repo, _, tag = image.partition(":")
        self.helm(
            command,
            RELEASE,
            str(ROOT / "chart"),
            "--namespace",
            NAMESPACE,
            "--create-namespace",
            "--set",
            f"image.repository={repo}",
            "--set",
            f"image.tag={tag}",
            "--set",
            "image.pullPolicy=Never",
            *extra,
        )

    def wait_for_a_ready_replica(self, timeout: float = 300) -> None:
        """One ready pod, not all: whether the standby reports ready before it leads is the controller's choice."""
        eventually(
            lambda: (
                True
                if self.get_json("deployment", "-n", NAMESPACE, RELEASE).get("status", {}).get("readyReplicas", 0) >= 1
                else None
            ),
            timeout=timeout,
            what="a ready liqosec replica",
        )


class Session:
    """The e2e session's cluster and the images it was given; timings of each step, printed at the end."""

    def __init__(self, kind: KindCluster, images: dict[str, str]) -> None:
        self.kind = kind
        self.images = images
        self.timings: dict[str, float] = {}
