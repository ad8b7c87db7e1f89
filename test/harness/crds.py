"""Install CustomResourceDefinitions from YAML files and wait until the API server serves them.

Why: tests must talk to the same schemas a real Liqo cluster serves (pruning, defaults,
validation), so the published CRD files are applied as they are, not re-typed.

Guarantees:
- Create or replace: a CRD already present is replaced with the file's content.
- ``install`` returns only when every CRD has the ``Established`` condition True, or raises
  ``TimeoutError`` naming the CRDs that are not.
- Responses are read as raw JSON, never through the generated models: those reject some valid CRD
  status payloads (e.g. ``conditions: null``) while the server is still initialising them.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.2
HTTP_CONFLICT = 409


def load_crds(files: Iterable[Path]) -> list[dict[str, Any]]:
    """Every CustomResourceDefinition document in the files, in file order."""
    found: list[dict[str, Any]] = []
    for path in files:
        with path.open() as fh:
            for doc in yaml.safe_load_all(fh):
                if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                    found.append(doc)
    return found


def install(api_client: Any, files: Iterable[Path], *, timeout: float) -> list[str]:
    from kubernetes import client

    ext = client.ApiextensionsV1Api(api_client)
    names = [_create_or_replace(ext, crd) for crd in load_crds(files)]
    _wait_established(ext, names, timeout)
    log.info("crds established", extra={"count": len(names)})
    return names


def _create_or_replace(ext: Any, crd: dict[str, Any]) -> str:
    from kubernetes.client.exceptions import ApiException

    name: str = crd["metadata"]["name"]
    try:
        ext.create_custom_resource_definition(body=crd, _preload_content=False)
    except ApiException as err:
        if err.status != HTTP_CONFLICT:
            raise
        live = _read(ext, name)
        body = dict(crd, metadata=dict(crd["metadata"], resourceVersion=live["metadata"]["resourceVersion"]))
        ext.replace_custom_resource_definition(name, body=body, _preload_content=False)
    return name


def _read(ext: Any, name: str) -> dict[str, Any]:
    resp = ext.read_custom_resource_definition(name, _preload_content=False)
    obj: dict[str, Any] = json.loads(resp.data)
    return obj


def _is_established(crd: dict[str, Any]) -> bool:
    conditions = (crd.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)


def _wait_established(ext: Any, names: list[str], timeout: float) -> None:
    pending = set(names)
    deadline = time.monotonic() + timeout
    while pending:
        pending = {n for n in pending if not _is_established(_read(ext, n))}
        if not pending:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"CRDs not Established after {timeout} s: {sorted(pending)}")
        time.sleep(POLL_INTERVAL_S)
