"""Watch faults: 410 Gone after compaction, killed watches, an API server restart; nothing is missed."""

from __future__ import annotations

from typing import Any

from support import example, offloaded_pod, running_controller, unique_peer, wait_for

from harness.objects import apply
from liqosec.controller.resources import FIREWALL_CONFIGURATIONS
from liqosec.firewall.evaluate import Packet, node_accepts
from liqosec.kube import errors
from liqosec.kube.client import KubeClient, ResourceRef

CONFIGMAPS = ResourceRef("", "v1", "configmaps", True, "ConfigMap")


def isolated(kube: KubeClient, peer: str, ip: str) -> bool:
    try:
        fc = kube.get(FIREWALL_CONFIGURATIONS, f"liqosec-{peer}", namespace=f"liqo-tenant-{peer}")
    except errors.ApiError:  # the API server is restarting
        return False
    return not node_accepts([fc["spec"]["table"]], Packet.of(ip, "10.1.1.10"))


def test_converges_through_compaction_and_an_api_server_restart(
    control_plane: Any, kube: KubeClient, local_pod_cidr: None
) -> None:
    peer = unique_peer()
    ns = f"shop-{peer}-{peer}"
    apply(kube, example("provider-isolate-offloaded.yaml", peer=peer))
    with running_controller(kube) as ctl:
        wait_for("the firewall", lambda: isolated(kube, peer, "10.1.5.10"))
        relists = ctl.metric("liqosec_informer_relists_total", resource="pods")
        restarts = ctl.metric("liqosec_watch_restarts_total", resource="pods")
        apply(kube, [offloaded_pod("during-1", ns, "10.1.40.1", peer)])
        wait_for("the first new pod isolated", lambda: isolated(kube, peer, "10.1.40.1"))
        # Move etcd past the pod watch's last revision, then compact that history away:
        # the pod watch must resume from a revision that no longer exists.
        kube.create(
            CONFIGMAPS, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "bump", "namespace": ns}}
        )
        control_plane.compact_etcd()
        control_plane.restart_apiserver()  # kills every watch; they resume from a compacted revision
        apply(kube, [offloaded_pod("after-1", ns, "10.1.40.2", peer)])
        wait_for("the pod created after the restart isolated", lambda: isolated(kube, peer, "10.1.40.2"), timeout=90)
        assert ctl.metric("liqosec_watch_restarts_total", resource="pods") > restarts
        print("pods relists", relists, "->", ctl.metric("liqosec_informer_relists_total", resource="pods"))
        # A watch resumed from a compacted revision gets 410 Gone and must relist.
        wait_for(
            "a relist after 410 Gone",
            lambda: ctl.metric("liqosec_informer_relists_total", resource="pods") > relists,
            timeout=60,
        )
