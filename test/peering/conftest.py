"""Liqo for real: two kind clusters peered by Liqo v1.2.0 itself, liqosec installed by Helm on both.

The set-up, each part a named step (a failure says which, and Liqo's pods' logs and objects of both
clusters are saved under ``test-output/peering/logs``, or ``$LIQOSEC_PEERING_OUT/logs``):
- build, image, cluster, install, peer, offload: ``hack/peering.sh up`` (Liqo's commands and images
  built from the pinned module, two kind clusters, ``liqoctl install``, ``liqoctl peer`` with the
  provider's peering user, ``liqoctl offload namespace liqo-demo``; docs/liqo-real.md);
- liqosec: the image built by hack/images/build.sh loaded into both clusters, ``helm install`` of
  chart/ on both;
- workloads: pods serving TCP on each side, one of them offloaded by Liqo to the provider.
The clusters are deleted at the end (``LIQOSEC_PEERING_KEEP=1`` keeps them). Skips, and fails under
``LIQOSEC_REQUIRE_E2E=1``, exactly as the e2e suite does when no Docker engine can run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.kind import (
    BUILD_TIMEOUT_S,
    IMAGE,
    ROOT,
    KindCluster,
    build_images,
    missing_prerequisite,
    run,
    step,
)
from harness.peering import CONSUMER, PEERING_SH, PROVIDER, Peering, Side, create_workloads

HERE = Path(__file__).resolve().parent


def output_dir() -> Path:
    return Path(os.environ.get("LIQOSEC_PEERING_OUT", ROOT / "test-output" / "peering"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    ours = [item for item in items if HERE in Path(str(item.fspath)).resolve().parents]
    if not ours:
        return
    reason = missing_prerequisite()
    required = os.environ.get("LIQOSEC_REQUIRE_E2E") == "1"
    for item in ours:
        item.add_marker(pytest.mark.e2e)
        if reason and not required:
            item.add_marker(pytest.mark.skip(reason=f"peering: {reason}"))


def _clusters_answer(out: Path) -> bool:
    """Kept clusters of an earlier run (LIQOSEC_PEERING_REUSE=1, for working on the suite) still there."""
    try:
        for name in (CONSUMER, PROVIDER):
            KindCluster(out, name, out / f"kubeconfig-{name.removeprefix('liqosec-')}").kubectl("get", "nodes")
    except Exception:
        return False
    return True


@pytest.fixture(scope="module")
def peering(request: pytest.FixtureRequest) -> Iterator[Peering]:
    reason = missing_prerequisite()
    if reason:
        pytest.fail(f"peering required (LIQOSEC_REQUIRE_E2E=1) but: {reason}")
    out = output_dir()
    out.mkdir(parents=True, exist_ok=True)
    sides = {
        name: Side(name, KindCluster(out, name, out / f"kubeconfig-{name.removeprefix('liqosec-')}"), peer)
        for name, peer in ((CONSUMER, PROVIDER), (PROVIDER, CONSUMER))
    }
    result = Peering(sides[CONSUMER], sides[PROVIDER], out)
    failed_before = request.session.testsfailed
    timings: dict[str, float] = {}
    try:
        t = time.monotonic()
        if not (os.environ.get("LIQOSEC_PEERING_REUSE") == "1" and _clusters_answer(out)):
            with step("build, image, cluster, install, peer, offload (hack/peering.sh up)", "peering"):
                result.script("up", timeout=BUILD_TIMEOUT_S)
            timings.update(_script_timings(out))
        timings["hack/peering.sh up"] = time.monotonic() - t
        t = time.monotonic()
        with step("liqosec (image, kind load, helm install on both clusters)", "peering"):
            build_images("liqosec")
            for side in result.sides:
                side.cluster.load_image(IMAGE)
                side.cluster.install_liqosec(IMAGE, "--install", "--set", "replicas=1", command="upgrade")
            for side in result.sides:
                side.cluster.wait_for_a_ready_replica()
        timings["liqosec"] = time.monotonic() - t
        t = time.monotonic()
        with step("workloads", "peering"):
            create_workloads(result)
        timings["workloads"] = time.monotonic() - t
        yield result
    finally:
        print("\npeering timings: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
        if request.session.testsfailed != failed_before:
            run([str(PEERING_SH), "logs", str(out)], timeout=600, check=False)
            print(f"Liqo's pods' logs and objects of both clusters: {out / 'logs'}")
        if os.environ.get("LIQOSEC_PEERING_KEEP") != "1":
            run([str(PEERING_SH), "down", str(out)], timeout=600, check=False)


def _script_timings(out: Path) -> dict[str, float]:
    path = out / "timings"
    lines = path.read_text().split("\n") if path.exists() else []
    return {f"{name} (hack/peering.sh)": float(s) for name, s in (line.split() for line in lines if line.strip())}
