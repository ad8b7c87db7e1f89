"""End-to-end on kind: skipped as a whole, with the reason, where Docker or kind is missing.

The session builds the image, creates the kind cluster ``liqosec-e2e``, installs Liqo's CRDs
(hack/liqo-crds, Liqo's at the pinned version) and liqosec, and deletes the cluster at the end
(``LIQOSEC_E2E_KEEP=1`` keeps it
for debugging). Tests here only read and write cluster objects through ``KindCluster``.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from kind_cluster import IMAGE, ROOT, KindCluster, build_image, missing_prerequisite

_REASON = missing_prerequisite()


def liqo_crds_dir() -> Path:
    return Path(os.environ.get("LIQOSEC_LIQO_CRDS", ROOT / "hack" / "liqo-crds"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.e2e)
            if _REASON:
                item.add_marker(pytest.mark.skip(reason=f"e2e: {_REASON}"))


@pytest.fixture(scope="session")
def cluster() -> Iterator[KindCluster]:
    crds = liqo_crds_dir()
    if not crds.is_dir():
        pytest.fail(f"Liqo CRDs not found at {crds} (set LIQOSEC_LIQO_CRDS)")
    with tempfile.TemporaryDirectory(prefix="liqosec-e2e-") as tmp:
        kind = KindCluster(Path(tmp))
        build_image(IMAGE)
        kind.create()
        try:
            kind.load_image(IMAGE)
            kind.kubectl("apply", "--server-side", "-f", str(crds))
            kind.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=120s")
            kind.install_liqosec(IMAGE)
            yield kind
        finally:
            if os.environ.get("LIQOSEC_E2E_KEEP") == "1":
                print(f"\nkeeping kind cluster {kind.name}; kubeconfig copied to ./liqosec-e2e.kubeconfig")
                Path("liqosec-e2e.kubeconfig").write_bytes(kind.kubeconfig.read_bytes())
            else:
                kind.delete()
