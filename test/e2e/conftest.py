"""End-to-end on kind: a two-node cluster (control plane + worker) built from images made here.

The session (each part a named step; a failure says which):
- image build: hack/images/build.sh builds (or finds cached) the liqosec image from the Dockerfile,
  Liqo's agent, Prometheus and the kind node image, with no registry pull;
- cluster create: hack/kind.sh creates ``liqosec-e2e`` from the node image, with its own CNI;
- kind load: the three images go into both nodes with `kind load docker-image`;
- liqo: Liqo's CRDs (hack/liqo-crds, Liqo's at the pinned version) and Liqo's agent as a DaemonSet.
The tests install liqosec with `helm install` themselves. The cluster is deleted at the end
(``LIQOSEC_E2E_KEEP=1`` keeps it and copies its kubeconfig to ./liqosec-e2e.kubeconfig).

Where no Docker engine can run (hack/docker.sh ensure fails), or ``LIQOSEC_E2E=0``, every test
skips with the reason; ``LIQOSEC_REQUIRE_E2E=1`` turns that skip into a failure.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from addons import AGENT, AGENT_NAMESPACE, liqo_agent

from harness.kind import IMAGE, ROOT, KindCluster, Session, build_images, mark_kind_suite, reason_not_to_run, step


def liqo_crds_dir() -> Path:
    return Path(os.environ.get("LIQOSEC_LIQO_CRDS", ROOT / "hack" / "liqo-crds"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    mark_kind_suite(items, HERE, "e2e")


@pytest.fixture(scope="module")
def e2e() -> Iterator[Session]:
    reason = reason_not_to_run()
    if reason:
        pytest.fail(f"e2e required (LIQOSEC_REQUIRE_E2E=1) but: {reason}")
    crds = liqo_crds_dir()
    if not crds.is_dir():
        pytest.fail(f"Liqo CRDs not found at {crds} (set LIQOSEC_LIQO_CRDS)")
    with tempfile.TemporaryDirectory(prefix="liqosec-e2e-") as tmp:
        kind = KindCluster(Path(tmp))
        timings: dict[str, float] = {}
        t = time.monotonic()
        with step("image build"):
            images = build_images("liqosec", "liqo-agent", "prometheus", "node")
            assert kind.tool  # kind, kubectl and helm built (cached) here, not inside a later step
        timings["image build"] = time.monotonic() - t
        session = Session(kind, images)
        session.timings = timings
        try:
            t = time.monotonic()
            with step("cluster create"):
                kind.create()
            timings["cluster create"] = time.monotonic() - t
            t = time.monotonic()
            with step("kind load"):
                kind.load_image(IMAGE, images["liqo-agent"], images["prometheus"])
            timings["kind load"] = time.monotonic() - t
            t = time.monotonic()
            with step("liqo (CRDs and agent DaemonSet)"):
                kind.kubectl("apply", "--server-side", "-f", str(crds))
                kind.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=120s")
                kind.apply(liqo_agent(images["liqo-agent"]))
                kind.kubectl(
                    "-n", AGENT_NAMESPACE, "rollout", "status", f"daemonset/{AGENT}", "--timeout=180s", timeout=200
                )
            timings["liqo"] = time.monotonic() - t
            yield session
        finally:
            print("\ne2e timings: " + ", ".join(f"{k} {v:.0f} s" for k, v in session.timings.items()))
            if os.environ.get("LIQOSEC_E2E_KEEP") == "1":
                print(f"keeping kind cluster {kind.name}; kubeconfig copied to ./liqosec-e2e.kubeconfig")
                Path("liqosec-e2e.kubeconfig").write_bytes(kind.kubeconfig.read_bytes())
            else:
                kind.delete()


@pytest.fixture(scope="module")
def cluster(e2e: Session) -> KindCluster:
    return e2e.kind
