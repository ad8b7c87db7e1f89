"""A real, throwaway Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager.

Why: a fake server cannot show what liqosec must survive (410 Gone after compaction, CRD schema
pruning, owner-reference garbage collection, an API server restart), so integration tests and the
demo run against the real binaries built by ``hack/build-control-plane.sh``.

Guarantees:
- Every listener binds 127.0.0.1 on a free port picked at ``start()``; nothing leaves loopback.
- ``start()`` returns only once etcd is healthy, the API server answers ``/readyz`` and the
  controller manager answers ``/healthz``; otherwise it stops what it started and raises
  ``ControlPlaneError`` carrying the tail of the failing process's log.
- ``stop()`` is idempotent and always reaps the processes (terminate, wait, kill).
- ``restart_apiserver()`` keeps the ports, the certificates and etcd, so stored data survives.
- The controller manager runs the garbage collector and namespace controllers, so deleting an
  owner cascades to its dependents as in a real cluster.

Caller duties: call ``stop()`` (or use ``with``); treat the work dir as owned by this object.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import yaml

from harness import pki

log = logging.getLogger(__name__)

# Tuning constants, with the reason.
START_TIMEOUT_S = 90.0  # a cold apiserver on 2 busy cores takes ~5-15 s; leave room for CI load
# On SIGTERM the 1.33 apiserver drains in ~0.1 s but, while the controller manager still holds
# watches, its process lingers ~10 s more doing nothing useful; kill after a short grace.
STOP_GRACE_S = 3.0
POLL_INTERVAL_S = 0.2
LOG_TAIL_LINES = 40
ETCD_QUOTA_BYTES = 256 * 1024 * 1024  # small: tests store kilobytes; keeps the mmap modest
SERVICE_CIDR = "10.96.0.0/16"
ADMIN_USER = "liqosec-admin"
# A small controller set: what cascades deletes and mints service-account tokens, nothing that
# needs nodes or a cloud.
CONTROLLERS = "garbagecollector,namespace,serviceaccount,serviceaccount-token"

ENV_APISERVER = "LIQOSEC_KUBE_APISERVER"
ENV_CONTROLLER_MANAGER = "LIQOSEC_KUBE_CONTROLLER_MANAGER"
ENV_ETCD = "LIQOSEC_ETCD"
BUILD_SCRIPT = Path("hack") / "build-control-plane.sh"


class ControlPlaneError(RuntimeError):
    """A control-plane process failed to start or stop as expected."""


class ControlPlaneUnavailable(ControlPlaneError):
    """The binaries are not there; the message says how to build them."""


@dataclass(frozen=True)
class Binaries:
    """Paths of the three executables; versions are whatever the build script pinned."""

    apiserver: Path
    controller_manager: Path
    etcd: Path


def find_binaries(repo_root: Path) -> Binaries:
    """Locate the binaries: the three env vars if all set, else the build script's cache.

    Never builds: a cold build takes about 8 minutes on 2 cores, not something to trigger
    by accident from a test run.
    """
    env = {k: os.environ.get(k) for k in (ENV_APISERVER, ENV_CONTROLLER_MANAGER, ENV_ETCD)}
    if not all(env.values()):
        env = _paths_from_build_script(repo_root)
    binaries = Binaries(
        apiserver=Path(env[ENV_APISERVER] or ""),
        controller_manager=Path(env[ENV_CONTROLLER_MANAGER] or ""),
        etcd=Path(env[ENV_ETCD] or ""),
    )
    missing = [
        f"{key}={value or '(unset)'}"
        for key, value in env.items()
        if not (value and Path(value).is_file() and os.access(value, os.X_OK))
    ]
    if missing:
        raise ControlPlaneUnavailable(
            f"control-plane binaries missing ({', '.join(missing)}): run hack/build-control-plane.sh"
        )
    return binaries


def binaries_or_skip(repo_root: Path) -> Binaries:
    """`find_binaries` for a test: without them, skip (run hack/build-control-plane.sh), or fail under CI."""
    import pytest  # only tests call this: the harness CLI does not need pytest

    try:
        return find_binaries(repo_root)
    except ControlPlaneUnavailable as err:
        if os.environ.get("CI"):
            pytest.fail(f"integration binaries missing under CI: {err}")
        pytest.skip("run hack/build-control-plane.sh")


def _paths_from_build_script(repo_root: Path) -> dict[str, str | None]:
    script = repo_root / BUILD_SCRIPT
    if not script.is_file():
        raise ControlPlaneUnavailable(
            f"{script} not found: set {ENV_APISERVER}, {ENV_CONTROLLER_MANAGER} and {ENV_ETCD}"
        )
    proc = subprocess.run(
        ["bash", str(script), "--print-paths"], capture_output=True, text=True, timeout=60, check=False
    )
    if proc.returncode != 0:
        raise ControlPlaneUnavailable(
            f"control-plane binaries not built in the cache ({proc.stdout.strip()}): run hack/build-control-plane.sh"
        )
    pairs = (line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)
    found: dict[str, str | None] = {k: v for k, v in pairs}
    return found


def _free_port() -> int:
    # Racy by nature (the port is free now, not necessarily at bind time); good enough on a
    # machine where only tests pick ports, and much simpler than passing sockets down.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _die_with_parent() -> None:
    # PR_SET_PDEATHSIG: if the test runner is killed, etcd and the apiserver must not linger.
    # The signal is tied to the thread that spawned the child: start from a long-lived thread.
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
    except OSError:
        pass


class _Process:
    """One child process with its log file; knows how to wait and how to die."""

    def __init__(self, name: str, argv: list[str], log_path: Path) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self._popen: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> None:
        self._log = open(self.log_path, "ab")
        self._popen = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        log.info("process started", extra={"component": self.name, "pid": self._popen.pid})

    def exit_code(self) -> int | None:
        return None if self._popen is None else self._popen.poll()

    def stop(self) -> None:
        if self._popen is not None and self._popen.poll() is None:
            self._popen.terminate()
            try:
                self._popen.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                self._popen.kill()
                self._popen.wait()
        self._popen = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager on loopback, in a private work dir."""

    def __init__(
        self,
        binaries: Binaries,
        *,
        work_dir: Path | None = None,
        start_timeout: float = START_TIMEOUT_S,
        etcd_quota_bytes: int = ETCD_QUOTA_BYTES,
    ) -> None:
        if start_timeout <= 0:
            raise ValueError(f"start_timeout must be positive, got {start_timeout}")
        self.binaries = binaries
        self.start_timeout = start_timeout
        self.etcd_quota_bytes = etcd_quota_bytes  # the bench's big worlds need more than tests do
        self._own_work_dir = work_dir is None
        self.work_dir = Path(tempfile.mkdtemp(prefix="liqosec-cp-")) if work_dir is None else work_dir
        self.token = secrets.token_urlsafe(32)
        self._etcd: _Process | None = None
        self._apiserver: _Process | None = None
        self._controller_manager: _Process | None = None
        self._etcd_port = self._apiserver_port = 0

    # -- public surface -------------------------------------------------------------------

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self._apiserver_port}"

    @property
    def etcd_url(self) -> str:
        return f"http://127.0.0.1:{self._etcd_port}"

    @property
    def ca_file(self) -> Path:
        return self.work_dir / "pki" / "ca.crt"

    @property
    def kubeconfig_path(self) -> Path:
        return self.work_dir / "kubeconfig"

    def start(self) -> None:
        """Start all three processes and wait until each is ready; clean up on failure."""
        if self._apiserver is not None:
            raise ControlPlaneError("control plane already started")
        self.work_dir.mkdir(parents=True, exist_ok=True)
        pki.write_pki(
            self.work_dir / "pki", hosts=["127.0.0.1", "localhost", "kubernetes", "kubernetes.default", "10.96.0.1"]
        )
        self._etcd_port, self._apiserver_port = _free_port(), _free_port()
        self._write_auth_files()
        started = time.monotonic()
        try:
            self._etcd = self._spawn("etcd", self._etcd_argv())
            self._wait_ready(self._etcd, f"{self.etcd_url}/health", None)
            self._apiserver = self._spawn("kube-apiserver", self._apiserver_argv())
            self._wait_ready(self._apiserver, f"{self.server}/readyz", self._ssl_context())
            cm_port = _free_port()
            self._controller_manager = self._spawn("kube-controller-manager", self._cm_argv(cm_port))
            self._wait_ready(
                self._controller_manager, f"https://127.0.0.1:{cm_port}/healthz", ssl._create_unverified_context()
            )  # self-signed, loopback only
        except BaseException:
            self.stop()
            raise
        log.info("control plane ready", extra={"server": self.server, "seconds": round(time.monotonic() - started, 2)})

    def stop(self) -> None:
        """Stop in reverse order of start; safe to call twice or after a failed start."""
        for attr in ("_controller_manager", "_apiserver", "_etcd"):
            proc: _Process | None = getattr(self, attr)
            if proc is not None:
                proc.stop()
                setattr(self, attr, None)
        if self._own_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def restart_apiserver(self) -> None:
        """Restart only the API server (same port, certs and etcd): what a controller sees in an
        apiserver rollout. Stored data survives; open watches break."""
        if self._apiserver is None:
            raise ControlPlaneError("control plane not started")
        self._apiserver.stop()
        self._apiserver.start()
        self._wait_ready(self._apiserver, f"{self.server}/readyz", self._ssl_context())

    def compact_etcd(self) -> int:
        """Compact etcd to its current revision and return it.

        Learnt: the apiserver's watch cache keeps serving recent events past an etcd compaction,
        so a watch from an older resourceVersion still succeeds until the cache's window moves
        past it; after ``restart_apiserver()`` the cache relists at the compacted revision and
        such a watch gets 410 Gone, as after a real apiserver rollout.
        """
        header = self._etcd_call("/v3/kv/range", {"key": base64.b64encode(b"\0").decode()})
        revision = int(header["header"]["revision"])
        self._etcd_call("/v3/kv/compaction", {"revision": str(revision), "physical": True})
        log.info("etcd compacted", extra={"rv": revision})
        return revision

    def client_configuration(self) -> Any:
        """A ``kubernetes.client.Configuration`` for the admin user (imported lazily)."""
        from kubernetes import client

        cfg = client.Configuration()
        cfg.host = self.server
        cfg.ssl_ca_cert = str(self.ca_file)
        cfg.api_key = {"authorization": self.token}
        cfg.api_key_prefix = {"authorization": "Bearer"}
        cfg.connection_pool_maxsize = 32  # a controller holds a watch per informer
        return cfg

    def api_client(self) -> Any:
        from kubernetes import client

        return client.ApiClient(self.client_configuration())

    def install_crds(self, paths: Iterable[Path], *, timeout: float = 60.0) -> list[str]:
        """Create or replace every CRD in the given YAML files/dirs and wait until Established.

        Missing or empty directories are skipped: the project's own CRD dir may not exist yet.
        Returns the CRD names installed.
        """
        from harness import crds

        with self.api_client() as api:
            return crds.install(api, _yaml_files(paths), timeout=timeout)

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- processes ------------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str]) -> _Process:
        proc = _Process(name, argv, self.work_dir / f"{name}.log")
        proc.start()
        return proc

    def _wait_ready(self, proc: _Process, url: str, context: ssl.SSLContext | None) -> None:
        deadline = time.monotonic() + self.start_timeout
        headers = {"Authorization": f"Bearer {self.token}"} if context is not None else {}
        last_error = "no answer yet"
        while time.monotonic() < deadline:
            code = proc.exit_code()
            if code is not None:
                raise ControlPlaneError(f"{proc.name} exited with code {code}; log tail:\n{proc.log_tail()}")
            try:
                req = urllib.request.Request(url, headers=headers)
                with urllib.request.urlopen(req, timeout=2, context=context) as resp:
                    if resp.status == 200:
                        return
                    last_error = f"HTTP {resp.status}"
            except urllib.error.HTTPError as err:
                # /readyz names its failing checks in the body: the most useful line on a timeout.
                failed = [ln for ln in err.read().decode(errors="replace").splitlines() if "failed" in ln]
                last_error = f"HTTP {err.code}: {'; '.join(failed) or err.reason}"
            except (urllib.error.URLError, OSError) as err:
                last_error = str(err)
            time.sleep(POLL_INTERVAL_S)
        raise ControlPlaneError(
            f"{proc.name} not ready at {url} after {self.start_timeout} s ({last_error}); log tail:\n{proc.log_tail()}"
        )

    def _ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    def _etcd_call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        req = urllib.request.Request(
            self.etcd_url + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            answer: dict[str, Any] = json.load(resp)
        return answer

    # -- configuration --------------------------------------------------------------------

    def _write_auth_files(self) -> None:
        (self.work_dir / "tokens.csv").write_text(f'{self.token},{ADMIN_USER},{ADMIN_USER},"system:masters"\n')
        self.kubeconfig_path.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "liqosec",
                    "clusters": [
                        {
                            "name": "liqosec",
                            "cluster": {"server": self.server, "certificate-authority": str(self.ca_file)},
                        }
                    ],
                    "users": [{"name": ADMIN_USER, "user": {"token": self.token}}],
                    "contexts": [{"name": "liqosec", "context": {"cluster": "liqosec", "user": ADMIN_USER}}],
                }
            )
        )
        self.kubeconfig_path.chmod(0o600)

    def _etcd_argv(self) -> list[str]:
        peer = f"http://127.0.0.1:{_free_port()}"
        return [
            str(self.binaries.etcd),
            "--name=default",
            f"--data-dir={self.work_dir / 'etcd'}",
            f"--listen-client-urls={self.etcd_url}",
            f"--advertise-client-urls={self.etcd_url}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=default={peer}",
            f"--quota-backend-bytes={self.etcd_quota_bytes}",
            # Throwaway data: fsync buys nothing and costs seconds per test run on slow disks.
            "--unsafe-no-fsync=true",
            "--log-level=warn",
        ]

    def _apiserver_argv(self) -> list[str]:
        pki_dir = self.work_dir / "pki"
        return [
            str(self.binaries.apiserver),
            f"--etcd-servers={self.etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self._apiserver_port}",
            f"--cert-dir={self.work_dir / 'apiserver-certs'}",
            f"--tls-cert-file={pki_dir / 'serving.crt'}",
            f"--tls-private-key-file={pki_dir / 'serving.key'}",
            f"--client-ca-file={self.ca_file}",
            f"--token-auth-file={self.work_dir / 'tokens.csv'}",
            "--authorization-mode=Node,RBAC",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki_dir / 'sa.pub'}",
            f"--service-account-signing-key-file={pki_dir / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--profiling=false",
            "--v=1",
            # The default reconciler would publish 127.0.0.1 in the kubernetes Endpoints, which
            # validation rejects (loopback), logging an error every 10 s; nothing here needs it.
            "--endpoint-reconciler-type=none",
        ]

    def _cm_argv(self, port: int) -> list[str]:
        pki_dir = self.work_dir / "pki"
        kubeconfig = str(self.kubeconfig_path)
        return [
            str(self.binaries.controller_manager),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--leader-elect=false",
            f"--controllers={CONTROLLERS}",
            "--use-service-account-credentials=false",
            f"--service-account-private-key-file={pki_dir / 'sa.key'}",
            f"--root-ca-file={self.ca_file}",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            f"--cert-dir={self.work_dir / 'controller-manager-certs'}",
            "--v=1",
        ]


def _yaml_files(paths: Iterable[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml"))
        elif path.is_file():
            yield path
