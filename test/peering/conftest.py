"""Liqo for real: kind clusters peered by Liqo v1.2.0 itself, liqosec installed by Helm on each.

The set-up, each part a named step (a failure says which, and Liqo's pods' logs and objects of every
cluster are saved under ``test-output/peering/logs``, or ``$LIQOSEC_PEERING_OUT/logs``):
- build, image, cluster, install, peer, offload: ``hack/peering.sh up`` (Liqo's commands and images
  built from the pinned module; a consumer, a provider and a one-node second provider; ``liqoctl
  install``; ``liqoctl peer`` with each provider's peering user; ``liqoctl offload namespace
  liqo-demo`` with a ClusterSelector picking the first provider only; docs/liqo-real.md);
- liqosec: the image built by hack/images/build.sh loaded into every cluster, ``helm install`` of
  chart/ on each;
- workloads: pods serving TCP on the consumer and the provider, one of them offloaded by Liqo.
The clusters are deleted at the end (``LIQOSEC_PEERING_KEEP=1`` keeps them;
``LIQOSEC_PEERING_REUSE=1`` uses kept ones instead of making new ones). Skips, and fails under
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
    build_images,
    mark_kind_suite,
    reason_not_to_run,
    run,
    step,
)
from harness.peering import PEERING_SH, Peering, create_workloads

HERE = Path(__file__).resolve().parent


def output_dir() -> Path:
    return Path(os.environ.get("LIQOSEC_PEERING_OUT", ROOT / "test-output" / "peering"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    mark_kind_suite(items, HERE, "peering")


def _clusters_answer(out: Path) -> bool:
    """Kept clusters of an earlier run (LIQOSEC_PEERING_REUSE=1, for working on the suite) still there."""
    try:
        for cluster in Peering.made_in(out).clusters:
            cluster.kubectl("get", "nodes")
    except Exception:
        return False
    return True


@pytest.fixture(scope="module")
def peering(request: pytest.FixtureRequest) -> Iterator[Peering]:
    reason = reason_not_to_run()
    if reason:
        pytest.fail(f"peering required (LIQOSEC_REQUIRE_E2E=1) but: {reason}")
    out = output_dir()
    out.mkdir(parents=True, exist_ok=True)
    result = Peering.made_in(out)
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
        with step("liqosec (image, kind load, helm install on every cluster)", "peering"):
            build_images("liqosec")
            for cluster in result.clusters:
                cluster.load_image(IMAGE)
                cluster.install_liqosec(IMAGE, "--install", "--set", "replicas=1", command="upgrade")
            for cluster in result.clusters:
                cluster.wait_for_a_ready_replica()
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
