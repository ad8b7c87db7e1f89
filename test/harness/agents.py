"""Liqo's own firewall agent on every node of a `Cluster`, and liqosec's controller feeding them.

The chain under test is the production one: objects in a real API server,
`liqosec run` compiling them into FirewallConfigurations, Liqo's reconciler
(hack/liqo-agent, built from Liqo's module) applying those as nftables in each
node namespace, and real TCP connects between endpoint namespaces.

Guarantees:
- `find_agent` names the command that builds the agent when it is missing.
- Every process started here is stopped by `stop()`/`close()`, bounded in time,
  and dies with its parent (PR_SET_PDEATHSIG).
- `wait_applied` returns only when every node holds exactly the tables of the
  expected FirewallConfigurations, each chain with the expected policy and rule
  names, or raises TimeoutError saying what differs on which node.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.netns import Cluster

REPO_ROOT = Path(__file__).resolve().parents[2]
STOP_GRACE_SECONDS = 5.0
POLL_SECONDS = 0.1
_PR_SET_PDEATHSIG = 1


class AgentMissing(RuntimeError):
    """The agent binary is not built; the message names the command that builds it."""


def find_agent() -> Path:
    """The liqo-agent binary for the pinned Liqo version (LIQOSEC_LIQO_AGENT overrides)."""
    if path := os.environ.get("LIQOSEC_LIQO_AGENT"):
        return Path(path)
    proc = subprocess.run(
        [str(REPO_ROOT / "hack" / "liqo.sh"), "agent", "--print-path"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    path = proc.stdout.strip()
    if proc.returncode != 0 or not path or not Path(path).is_file():
        raise AgentMissing(f"Liqo's agent is not built ({path or 'no path'}): run hack/liqo.sh agent")
    return Path(path)


def agent_or_skip() -> Path:
    """`find_agent` for a test: without the binary, skip (naming the command), or fail under CI,
    where a silent skip would hide a broken setup."""
    import pytest

    try:
        return find_agent()
    except AgentMissing as err:
        if os.environ.get("CI"):
            pytest.fail(f"Liqo's agent binary missing under CI: {err}")
        pytest.skip(str(err))


def _die_with_parent() -> None:
    ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class _Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(STOP_GRACE_SECONDS)


def _spawn(name: str, argv: Sequence[str], log_dir: Path, env: Mapping[str, str] | None = None) -> _Proc:
    log = log_dir / f"{name}.log"
    with log.open("ab") as out:
        popen = subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
            env={**os.environ, **(env or {})},
        )
    return _Proc(name, popen, log)


def node_name(index: int) -> str:
    """The Kubernetes name of node `index` (its agent serves this name's single-node firewalls)."""
    return f"worker-{index}"


def node_object(index: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": node_name(index), "labels": {"kubernetes.io/hostname": node_name(index)}},
    }


class Agents:
    """One Liqo agent process per node of `cluster`, plus optionally `liqosec run`."""

    def __init__(self, cluster: Cluster, kubeconfig: Path, log_dir: Path, *, agent: Path | None = None) -> None:
        self.cluster = cluster
        self.kubeconfig = kubeconfig
        self.log_dir = log_dir
        self.agent = agent or find_agent()
        self._agents: list[_Proc] = []
        self._controller: _Proc | None = None

    def start_agents(self) -> None:
        for i in range(len(self.cluster.nodes)):
            self._agents.append(
                _spawn(
                    f"agent-{node_name(i)}",
                    [
                        str(self.agent),
                        f"--kubeconfig={self.kubeconfig}",
                        f"--netns={self.cluster.netns_path(i)}",
                        f"--node={node_name(i)}",
                    ],
                    self.log_dir,
                )
            )

    def start_controller(self, *extra: str) -> None:
        """`liqosec run` as a user runs it, against the same API server."""
        self._controller = _spawn(
            "liqosec",
            [
                sys.executable,
                "-m",
                "liqosec",
                "run",
                f"--kubeconfig={self.kubeconfig}",
                "--no-leader-elect",
                "--metrics-bind-address=0",
                "--health-probe-bind-address=0",
                "--log-format=json",
                *extra,
            ],
            self.log_dir,
        )

    def check_alive(self) -> None:
        """Raise with the log tail of any process that has exited."""
        for proc in [*self._agents, *([self._controller] if self._controller else [])]:
            code = proc.popen.poll()
            if code is not None:
                raise RuntimeError(f"{proc.name} exited with {code}; its log ({proc.log}) ends:\n{proc.tail()}")

    def stop(self) -> None:
        for proc in [*([self._controller] if self._controller else []), *self._agents]:
            proc.stop()
        self._agents.clear()
        self._controller = None

    def close(self) -> None:
        self.stop()

    # ---- barriers ----

    def wait_applied(
        self, firewalls: Iterable[Mapping[str, Any]], *, nodes: Sequence[int] | None = None, timeout: float = 60.0
    ) -> float:
        """Wait until the nodes hold exactly these FirewallConfigurations' tables; return the seconds taken."""
        want = expected_state(firewalls)
        started = time.monotonic()
        deadline = started + timeout
        targets = list(range(len(self.cluster.nodes))) if nodes is None else list(nodes)
        while True:
            self.check_alive()
            diffs = {i: d for i in targets if (d := diff_state(want, live_state(self.cluster, i)))}
            if not diffs:
                return time.monotonic() - started
            if time.monotonic() > deadline:
                detail = "; ".join(f"{self.cluster.nodes[i]}: {d}" for i, d in diffs.items())
                raise TimeoutError(f"Liqo's agents did not apply the firewalls in {timeout:.0f}s: {detail}")
            time.sleep(POLL_SECONDS)


State = dict[tuple[str, str], tuple[str, frozenset[str]]]
EMPTY_ACCEPT: tuple[str, frozenset[str]] = ("accept", frozenset())


def expected_state(firewalls: Iterable[Mapping[str, Any]]) -> State:
    """(table, chain) -> (policy, rule names) of FirewallConfiguration objects."""
    out: State = {}
    for fc in firewalls:
        table = fc["spec"]["table"]
        for chain in table.get("chains") or ():
            names = frozenset(r["name"] for r in (chain.get("rules") or {}).get("filterRules") or ())
            out[(table["name"], chain["name"])] = (str(chain.get("policy") or "accept"), names)
    return out


def state_of_ruleset(ruleset: Mapping[str, Any], tables: Collection[str] | None = None) -> State:
    """(table, chain) -> (policy, rule names) of `nft -j list ruleset`, for the tables named (all: None).
    Liqo's agent writes each rule's name as its comment."""
    policies: dict[tuple[str, str], str] = {}
    names: dict[tuple[str, str], set[str]] = {}
    for item in ruleset.get("nftables", ()):
        if "chain" in item and (tables is None or item["chain"]["table"] in tables):
            key = (item["chain"]["table"], item["chain"]["name"])
            policies[key] = str(item["chain"].get("policy", ""))
            names.setdefault(key, set())
        elif "rule" in item and (tables is None or item["rule"]["table"] in tables):
            r = item["rule"]
            names.setdefault((r["table"], r["chain"]), set()).add(str(r.get("comment", "")))
    return {key: (policies.get(key, ""), frozenset(found)) for key, found in names.items()}


def live_state(cluster: Cluster, node: int) -> State:
    return state_of_ruleset(cluster.nft_json(node))


def diff_state(want: State, live: State) -> str:
    """'' when equal, else a short description of what differs."""
    parts = []
    for key in sorted(set(want) | set(live)):
        if key not in live:
            parts.append(f"{key[0]}/{key[1]} missing")
        elif key not in want:
            if live[key] != EMPTY_ACCEPT:  # a retired firewall a deletion race left behind lets all pass
                parts.append(f"{key[0]}/{key[1]} not expected")
        elif want[key][0] != live[key][0]:
            parts.append(f"{key[0]}/{key[1]} policy {live[key][0]} (want {want[key][0]})")
        elif want[key][1] != live[key][1]:
            missing, extra = len(want[key][1] - live[key][1]), len(live[key][1] - want[key][1])
            parts.append(f"{key[0]}/{key[1]} {missing} rules missing, {extra} extra")
    return ", ".join(parts)
