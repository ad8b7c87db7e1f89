"""Fixtures for tests against a real control plane (etcd, kube-apiserver, kube-controller-manager).

The API server runs Liqo's own FirewallConfiguration admission webhooks (``liqo-agent webhook``,
test/harness/liqo_webhook.py), as a Liqo cluster does: every FirewallConfiguration a test writes,
or the controller writes for it, passes Liqo's mutating and validating webhooks.

Nothing is built here: a cold build takes tens of minutes. Without the binaries (the control plane's,
or Liqo's agent from ``hack/liqo.sh agent``) the tests skip on a developer machine and fail under CI
(env ``CI`` set), where a silent skip would hide a broken setup.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.agents import agent_or_skip
from harness.controlplane import ControlPlane, binaries_or_skip
from harness.liqo_webhook import LiqoWebhook

REPO_ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def liqo_crds_dir() -> Path:
    return Path(os.environ.get("LIQOSEC_LIQO_CRDS", REPO_ROOT / "hack" / "liqo-crds"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    binaries = binaries_or_skip(REPO_ROOT)
    agent = agent_or_skip()  # Liqo's FirewallConfiguration webhooks run from it
    crds = liqo_crds_dir()
    if not crds.is_dir():
        pytest.fail(f"Liqo CRDs not found at {crds} (set LIQOSEC_LIQO_CRDS)")
    with ControlPlane(binaries) as cp:
        cp.install_crds([crds, REPO_ROOT / "manifests" / "crds"])
        with LiqoWebhook(cp, agent=agent):
            yield cp


@pytest.fixture()
def kube_api(control_plane: ControlPlane) -> Iterator[Any]:
    """A ``kubernetes.client.ApiClient`` for the admin user; closed after the test."""
    with control_plane.api_client() as api:
        yield api


@pytest.fixture()
def kube(control_plane: ControlPlane) -> Iterator[Any]:
    """liqosec's own REST client, talking to the test control plane as admin."""
    from liqosec.kube.client import RestKubeClient

    with control_plane.api_client() as api:
        yield RestKubeClient(api)


@pytest.fixture(scope="session")
def local_pod_cidr(control_plane: ControlPlane) -> None:
    """The cluster's own pod CIDR Network (one per cluster), shared by every test."""
    from support import POD_CIDR_NETWORK

    from harness.objects import apply
    from liqosec.kube.client import RestKubeClient

    with control_plane.api_client() as api:
        apply(RestKubeClient(api), [POD_CIDR_NETWORK])
