"""Scope: fixtures for real-packet tests: root, nft and ip netns, namespaces always cleaned up."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator, Sequence

import pytest

from liqosec.dataplane.netns import Topology, sweep

PREFIX = f"lqs-{os.getpid()}-"


def _missing() -> list[str]:
    why = []
    if os.geteuid() != 0:
        why.append("not root")
    why += [f"`{tool}` not found" for tool in ("nft", "ip") if shutil.which(tool) is None]
    return why


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.path).startswith(here):
            item.add_marker(pytest.mark.dataplane)


@pytest.fixture(autouse=True)
def dataplane_ready() -> None:
    """Skip without root/nft/ip; under CI they must be there, so fail instead."""
    why = _missing()
    if why:
        message = "dataplane tests need root, nft and ip netns: " + ", ".join(why)
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="session", autouse=True)
def sweep_namespaces() -> Iterator[None]:
    """Whatever a test left behind, this run's namespaces go at the end."""
    yield
    if not _missing():
        sweep(PREFIX)


@pytest.fixture
def topology() -> Iterator[Callable[[Sequence[str]], Topology]]:
    """Build topologies for a test; every one is closed when the test ends."""
    made: list[Topology] = []

    def make(addresses: Sequence[str]) -> Topology:
        topo = Topology(addresses, prefix=f"{PREFIX}{len(made)}-{os.urandom(2).hex()}-")
        made.append(topo)
        return topo

    yield make
    for topo in made:
        topo.close()


_REPORT: list[tuple[str, int, int]] = []  # (what, cells probed, cells agreeing)


@pytest.fixture(scope="session")
def cell_report() -> list[tuple[str, int, int]]:
    """Where tests record how many matrix cells they checked with real packets."""
    return _REPORT


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _REPORT:
        return
    terminalreporter.section("dataplane cells (real TCP probes vs expectation)")
    for what, cells, agreed in _REPORT:
        terminalreporter.write_line(f"{what:<60} {agreed:>4}/{cells:<4} agree")
    total, ok = sum(r[1] for r in _REPORT), sum(r[2] for r in _REPORT)
    terminalreporter.write_line(f"{'TOTAL':<60} {ok:>4}/{total:<4} agree")
