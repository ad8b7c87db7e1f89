"""Scope: the namespace harness itself: routing between arbitrary addresses across nodes, and cleanup."""

from __future__ import annotations

import os

import pytest

from harness.netns import NETNS_DIR, Cluster, CommandError

pytestmark = pytest.mark.dataplane


def _ours(cluster: Cluster) -> list[str]:
    return sorted(p.name for p in NETNS_DIR.glob(f"{cluster.prefix}*"))


def test_any_addresses_reach_each_other_across_nodes() -> None:
    with Cluster(3) as cluster:
        addresses = ["10.0.0.1", "172.16.9.9", "192.168.1.1", "198.51.100.10", "100.64.0.1"]
        cluster.attach({a: i % 3 for i, a in enumerate(addresses)})
        assert all(cluster.probe_pairs(cluster.all_pairs()).values())


def test_detach_then_attach_the_same_addresses_on_other_nodes() -> None:
    with Cluster(2) as cluster:
        cluster.attach({"10.0.0.1": 0, "10.0.0.2": 1})
        cluster.detach()
        cluster.attach({"10.0.0.1": 1, "10.0.0.2": 1, "10.0.0.3": 0})
        assert all(cluster.probe_pairs(cluster.all_pairs()).values())


def test_close_removes_every_namespace() -> None:
    cluster = Cluster(2)
    cluster.attach({"10.0.0.1": 0, "10.0.0.2": 1})
    assert len(_ours(cluster)) == 5  # fabric, two nodes, two endpoints
    cluster.close()
    assert _ours(cluster) == []


def test_failed_setup_leaves_nothing_behind() -> None:
    prefix = f"lqs-{os.getpid()}-broken-"
    cluster = Cluster(1, prefix=prefix)
    with pytest.raises(CommandError):
        cluster.attach({"not-an-address": 0})
    cluster.close()
    assert sorted(NETNS_DIR.glob(f"{prefix}*")) == []


def test_gateway_address_is_refused() -> None:
    with Cluster(1) as cluster, pytest.raises(ValueError, match="gateway"):
        cluster.attach({"169.254.1.1": 0})
