"""Scope: fixtures for real-packet tests: a real API server, `liqosec run`, Liqo's agent per node namespace.

Every packet is decided by Liqo's own firewall code (hack/liqo-agent), and every
FirewallConfiguration written passes Liqo's own admission webhooks (`liqo-agent webhook`). The suite
skips only where the machine cannot run it at all (not root, no nft or ip); a
missing build fails, naming the command that makes it, and under CI a missing
tool fails too.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from world import World

from harness.agents import AgentMissing, Agents, find_agent, node_object
from harness.controlplane import ControlPlane, ControlPlaneUnavailable, find_binaries
from harness.liqo_webhook import LiqoWebhook
from harness.netns import Cluster, sweep
from harness.objects import apply
from liqosec.compiler.firewallconfiguration import ALL_NODES, PER_NODE
from liqosec.kube.client import RestKubeClient

PREFIX = f"lqs-{os.getpid()}-"
REPO_ROOT = Path(__file__).resolve().parents[2]
NODES = 2
PER_NODE_NODES = 3


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


def _require_machine() -> None:
    why = _missing()
    if why:
        message = "dataplane tests need root, nft and ip netns: " + ", ".join(why)
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(autouse=True)
def dataplane_ready() -> None:
    """Skip without root/nft/ip; under CI they must be there, so fail instead."""
    _require_machine()


@pytest.fixture(scope="session", autouse=True)
def sweep_namespaces() -> Iterator[None]:
    """Whatever a test left behind, this run's namespaces go at the end."""
    yield
    if not _missing():
        sweep(PREFIX)


@contextmanager
def built_world(nodes: int, name: str, *controller_args: str, scope: str = ALL_NODES) -> Iterator[World]:
    """The whole chain: API server with Liqo's FirewallConfiguration webhooks, `liqosec run` (with these
    flags), one Liqo agent per node namespace."""
    _require_machine()
    try:
        binaries = find_binaries(REPO_ROOT)
        agent = find_agent()
    except (ControlPlaneUnavailable, AgentMissing) as err:
        pytest.fail(f"{err} (hack/test.sh builds everything)")
    logs = Path(tempfile.mkdtemp(prefix=f"liqosec-dataplane-{name}-"))
    with ControlPlane(binaries) as cp:
        cp.install_crds([REPO_ROOT / "hack" / "liqo-crds", REPO_ROOT / "manifests" / "crds"])
        with (
            LiqoWebhook(cp, agent=agent, work_dir=logs / "liqo-webhook"),
            cp.api_client() as api,
            Cluster(nodes, prefix=f"{PREFIX}{name}-") as cluster,
        ):
            kube = RestKubeClient(api)
            apply(kube, [node_object(i) for i in range(nodes)])
            agents = Agents(cluster, cp.kubeconfig_path, logs, agent=agent)
            try:
                agents.start_agents()
                agents.start_controller("--batch-window=0.05", "--retire-grace=2", *controller_args)
                world = World(cp, kube, cluster, agents, scope=scope)
                _WORLDS.append(world)
                yield world
            finally:
                agents.stop()
    print(f"\ndataplane logs ({name}): {logs}")


@pytest.fixture(scope="session")
def world() -> Iterator[World]:
    """The chain every test shares: two nodes, all-nodes firewalls."""
    with built_world(NODES, "w") as w:
        yield w


@pytest.fixture(scope="session")
def per_node_world() -> Iterator[World]:
    """Three nodes, `--firewall-scope per-node`: each node's agent applies only its own firewalls."""
    with built_world(PER_NODE_NODES, "pn", "--firewall-scope=per-node", scope=PER_NODE) as w:
        yield w


@pytest.fixture
def fresh_per_node(per_node_world: World) -> Iterator[World]:
    try:
        yield per_node_world
    finally:
        per_node_world.reset()


@pytest.fixture
def fresh(world: World) -> Iterator[World]:
    """The world, emptied again when the test ends."""
    try:
        yield world
    finally:
        world.reset()


_REPORT: list[tuple[str, int, int]] = []  # (what, cells probed, cells agreeing)
_WORLDS: list[World] = []


@pytest.fixture(scope="session")
def cell_report() -> list[tuple[str, int, int]]:
    """Where tests record how many matrix cells they checked with real packets."""
    return _REPORT


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _REPORT:
        return
    terminalreporter.section("dataplane cells (real TCP probes through Liqo's agent vs expectation)")
    for what, cells, agreed in _REPORT:
        terminalreporter.write_line(f"{what:<72} {agreed:>4}/{cells:<4} agree")
    total, ok = sum(r[1] for r in _REPORT), sum(r[2] for r in _REPORT)
    terminalreporter.write_line(f"{'TOTAL':<72} {ok:>4}/{total:<4} agree")
    for world in _WORLDS:
        waits = sorted(world.apply_seconds)
        if waits:
            terminalreporter.write_line(
                f"objects written to all {len(world.cluster.nodes)} nodes enforcing: {len(waits)} times, median "
                f"{waits[len(waits) // 2]:.2f} s, max {waits[-1]:.2f} s"
            )
        terminalreporter.write_line(
            f"peerings left at Applying k/n by Liqo's agents' status (rules in place): {world.partial_ready}"
        )
        terminalreporter.write_line(
            f"tables left on a node after their FirewallConfiguration was deleted: "
            f"{len(world.stale_tables)} {world.stale_tables[:5]}"
        )
