"""Read a live cluster into the objects the pure core takes, for `liqosec explain|matrix|render --kubeconfig`.

Lists every kind the controller watches, as the controller would see it, and returns plain
objects (`apiVersion` and `kind` set, managedFields dropped), so explain reads the live cluster
exactly as it reads a YAML dump. A kind whose CRD is not installed is skipped with a warning.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, cast

from liqosec.controller.resources import Watched, watched_resources
from liqosec.kube import errors
from liqosec.kube.client import JsonDict, KubeClient
from liqosec.kube.store import slim

PAGE = 500
MAX_PAGES = 1000  # 500,000 objects of one kind: far past any cluster liqosec is for
RETRIES = 20  # an API server starting, or a CRD just installed, answers 429/503 for a moment
RETRY_SECONDS = 0.25


def read_cluster(client: KubeClient) -> tuple[list[JsonDict], list[str]]:
    """Every watched object (kinds in `watched_resources`), and warnings for kinds not served."""
    objects: list[JsonDict] = []
    warnings: list[str] = []
    for watched in watched_resources():
        ref = watched.ref
        api_version = f"{ref.group}/{ref.version}" if ref.group else ref.version
        token: str | None = None
        try:
            for _ in range(MAX_PAGES):
                page = _list(client, watched, token)
                for item in page.get("items") or ():
                    objects.append({"apiVersion": api_version, "kind": ref.kind, **slim(item)})
                token = (page.get("metadata") or {}).get("continue") or None
                if not token:
                    break
        except errors.NotFound:
            warnings.append(f"{ref.plural}.{ref.group or 'core'} is not served (CRD not installed): skipped")
    return objects, warnings


def _list(client: KubeClient, watched: Watched, token: str | None) -> JsonDict:
    for attempt in range(RETRIES):
        try:
            return client.list(watched.ref, limit=PAGE, continue_token=token, label_selector=watched.label_selector)
        except (errors.TooManyRequests, errors.ServiceUnavailable):
            if attempt == RETRIES - 1:
                raise
            time.sleep(RETRY_SECONDS)
    raise AssertionError("unreachable")  # pragma: no cover


class ContextError(ValueError):
    """The kubeconfig names no such context, or cannot be read: one line for the user."""


def context_namespace(kubeconfig: str | None, context: str | None) -> str:
    """The namespace of the context used (`--context`, else the current one), as kubectl takes it: `default`
    when the context sets none. `kubeconfig` may list files separated by ':' (as KUBECONFIG does)."""
    from kubernetes import config as k8s_config

    path = kubeconfig or os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
    if not any(os.path.isfile(p) for p in path.split(os.pathsep) if p):
        raise ContextError(
            f"kubeconfig {path} does not exist: pass --kubeconfig or set KUBECONFIG to a kubeconfig file"
        )
    try:
        listed = cast(Callable[..., tuple[Any, Any]], k8s_config.list_kube_config_contexts)
        contexts, current = listed(config_file=path)
    except Exception as err:  # the loader raises many kinds, each a bad kubeconfig
        raise ContextError(
            f"kubeconfig {path} is not usable: {str(err).splitlines()[0] if str(err) else err!r}"
        ) from None
    chosen = current if context is None else next((c for c in contexts or () if c.get("name") == context), None)
    if chosen is None:
        raise ContextError(
            f'context "{context}" not found in {path}' if context is not None else f"kubeconfig {path} sets no context"
        )
    return str((chosen.get("context") or {}).get("namespace") or "default")
