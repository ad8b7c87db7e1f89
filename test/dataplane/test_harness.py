"""Scope: the namespace harness itself: routing between arbitrary addresses, and cleanup."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import pytest

from liqosec.dataplane.netns import NETNS_DIR, CommandError, Topology

pytestmark = pytest.mark.dataplane
MakeTopology = Callable[[Sequence[str]], Topology]


def _ours(topo: Topology) -> list[str]:
    return sorted(p.name for p in NETNS_DIR.glob(f"{topo.prefix}*"))


def test_any_addresses_reach_each_other_through_the_node(topology: MakeTopology) -> None:
    topo = topology(["10.0.0.1", "172.16.9.9", "192.168.1.1", "198.51.100.10", "100.64.0.1"])
    assert all(topo.probe_pairs(topo.all_pairs()).values())


def test_close_removes_every_namespace() -> None:
    topo = Topology(["10.0.0.1", "10.0.0.2"])
    assert len(_ours(topo)) == 3
    topo.close()
    assert _ours(topo) == []


def test_failed_setup_leaves_nothing_behind() -> None:
    prefix = f"lqs-{os.getpid()}-broken-"
    with pytest.raises(CommandError):
        Topology(["10.0.0.1", "not-an-address"], prefix=prefix)
    assert sorted(NETNS_DIR.glob(f"{prefix}*")) == []


def test_gateway_address_is_refused() -> None:
    with pytest.raises(ValueError, match="gateway"):
        Topology(["169.254.1.1"])
