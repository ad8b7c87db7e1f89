"""Kubernetes Events about PeeringConnectivities (core/v1), best effort.

An Event that cannot be written is logged and dropped: events inform, they
must never fail or retry a reconcile.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import structlog

from liqosec.api.peeringconnectivity import API_VERSION
from liqosec.kube import errors
from liqosec.kube.client import KubeClient

COMPONENT = "liqosec"


class EventRecorder:
    def __init__(self, client: KubeClient, *, instance: str) -> None:
        self._client = client
        self._instance = instance
        self._log = structlog.get_logger(__name__)

    def event(
        self,
        obj: Mapping[str, Any],
        *,
        kind: str,
        reason: str,
        message: str,
        warning: bool = False,
        api_version: str = API_VERSION,
    ) -> None:
        """About `obj` of `kind` (a PeeringConnectivity unless `api_version` says otherwise)."""
        meta = obj.get("metadata") or {}
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta.get('name')}.", "namespace": meta.get("namespace")},
            "involvedObject": {
                "apiVersion": api_version,
                "kind": kind,
                "name": meta.get("name"),
                "namespace": meta.get("namespace"),
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "reason": reason,
            "message": message[:1024],
            "type": "Warning" if warning else "Normal",
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": self._instance,
        }
        try:
            self._client.create_event(event)
        except errors.ApiError as err:
            if errors.namespace_terminating(err):  # nothing to tell in a namespace being deleted
                self._log.info("event not recorded: namespace being deleted", reason=reason)
                return
            self._log.warning("event not recorded", reason=reason, error=str(err))
