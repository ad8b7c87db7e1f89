"""Where `render`, `matrix` and `explain` take their objects from, and what `-n` means for them.

- Files (`-f`), or the live cluster: `--kubeconfig`, `--context` and `KUBECONFIG` (a ':'-separated
  list, merged as kubectl merges it). `liqosec` reads the cluster when one of the live options is
  given; `kubectl liqosec` whenever no `-f` is. One implementation for the three commands.
- `-n NS`, for `matrix` and `render`, names a peering's tenant namespace, that of its
  PeeringConnectivity: only the policies there are compiled. For `explain` it is the namespace of
  the bare names (`--from web` is `NS/web`, `--peering rome` is `NS/rome`), as for kubectl; its
  pods and its policy live in different namespaces, so it scopes nothing else. Without `-n`
  every policy is compiled and a bare name is in the context's namespace (live) or `default`
  (files), as kubectl takes it.
- A context the kubeconfig lacks and a namespace the input lacks are one line each (`SourceError`),
  naming them; the cluster's objects are read only once both are known good.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

DEFAULT_NAMESPACE = "default"
_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")  # a pod name (RFC 1123 subdomain)
_DOTTED = re.compile(r"[0-9.]+")  # digits and dots: meant as an IPv4 address


class SourceError(Exception):
    """The live cluster, its context or the namespace asked for cannot be used: one line for the user, exit 1."""


@dataclass(frozen=True)
class Live:
    """What the cluster held, and the namespace a bare name is in when `-n` is not given."""

    objects: list[dict[str, Any]]
    warnings: list[str]
    namespace: str


def add_arguments(p: argparse.ArgumentParser, *, plugin: bool) -> None:
    """The live options, the same for every command that reads objects."""
    instead = "without -f" if plugin else "instead of -f"
    p.add_argument(
        "--kubeconfig",
        default=None,
        help=f"read the live cluster {instead} (default: KUBECONFIG, a ':'-separated list, then ~/.kube/config; "
        "'' for the in-cluster ServiceAccount)",
    )
    p.add_argument("--context", default=None, help="kubeconfig context (default: its current context)")
    p.add_argument(
        "-n",
        "--namespace",
        default=None,
        help="matrix, render: the peering's tenant namespace, only its PeeringConnectivity is compiled; "
        "explain: the namespace of bare names (--from POD, --to POD, --peering NAME)",
    )


def wants_live(args: argparse.Namespace, *, plugin: bool) -> bool:
    return args.kubeconfig is not None or args.context is not None or (plugin and not args.filename)


def read_live(args: argparse.Namespace) -> Live:
    """The live cluster's objects, read through the kubeconfig's context (or the pod's ServiceAccount)."""
    from liqosec.kube import errors
    from liqosec.live import ContextError, context_namespace, read_cluster
    from liqosec.run import StartupError, connect

    try:
        in_cluster = args.kubeconfig == "" and args.context is None
        namespace = DEFAULT_NAMESPACE if in_cluster else context_namespace(args.kubeconfig or None, args.context)
        client, _ = connect(args.kubeconfig or None, args.context)
        objects, warnings = read_cluster(client)
    except (ContextError, StartupError) as err:
        raise SourceError(str(err)) from None
    except errors.ApiError as err:
        raise SourceError(f"reading the cluster failed: {err}") from None
    return Live(objects, warnings, namespace)


def check_namespace(objects: Sequence[Mapping[str, Any]], namespace: str, *, live: bool) -> None:
    """`-n` names a namespace the input holds: a Namespace object, or (files) any object in it."""
    for o in objects:
        meta = o.get("metadata") or {}
        if (o.get("kind") == "Namespace" and meta.get("name") == namespace) or (
            not live and meta.get("namespace") == namespace
        ):
            return
    raise SourceError(f'namespace "{namespace}" not found' + ("" if live else " in the input"))


def scoped(objects: Sequence[dict[str, Any]], *, namespace: str | None, peering: str | None) -> list[dict[str, Any]]:
    """Only the PeeringConnectivities asked about: of `peering` (ns/name), else of `namespace`, else all.

    A cluster holds other peerings, some maybe invalid: compiling only the one asked about keeps them
    from failing the answer."""
    if peering is None and namespace is None:
        return list(objects)

    def kept(o: Mapping[str, Any]) -> bool:
        meta = o.get("metadata") or {}
        if peering is not None:
            return f"{meta.get('namespace')}/{meta.get('name')}" == peering
        return meta.get("namespace") == namespace

    return [o for o in objects if o.get("kind") != "PeeringConnectivity" or kept(o)]


def qualified(text: str, namespace: str) -> str:
    """A bare pod name (`web`) as `namespace/web`; `ns/name`, addresses and anything else as given, so an
    address that is not IPv4 (`10.1.1.300`, `::1`) still gets its own message."""
    if "/" in text or _DOTTED.fullmatch(text) or not _NAME.fullmatch(text):
        return text
    return f"{namespace}/{text}"
