"""`liqosec render`: the FirewallConfigurations a set of cluster objects compiles to.

Reads the same objects a cluster would hold (plain YAML, multi-document,
`kind: List` too) and runs the controller's pure pipeline on them. All or
nothing: if any PeeringConnectivity is invalid, `RenderError` lists every
problem with its field path and no firewall is returned.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from liqosec.api.peeringconnectivity import KIND
from liqosec.api.validation import FieldError, ValidationError, parse_peering_connectivity
from liqosec.compiler.firewallconfiguration import Outcome, build, governing
from liqosec.firewall.capabilities import FIREWALL_CRD_NAME, STATELESS, Capabilities, from_crd
from liqosec.groups.view import Snapshot, meta

YAML_SUFFIXES = (".yaml", ".yml", ".json")


class RenderError(ValueError):
    """Input that cannot be rendered; `errors` are complete messages with field paths."""

    def __init__(self, errors: Sequence[str]) -> None:
        self.errors = tuple(errors)
        super().__init__("\n".join(self.errors))


def _files(paths: Iterable[str]) -> Iterator[Path]:
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for root, _dirs, names in sorted(os.walk(path)):
                for name in sorted(names):
                    if name.endswith(YAML_SUFFIXES):
                        yield Path(root) / name
        elif path.exists():
            yield path
        else:
            raise RenderError([f"{raw}: no such file or directory"])


def _flatten(doc: Any) -> Iterator[dict[str, Any]]:
    if isinstance(doc, Mapping):
        if str(doc.get("kind", "")).endswith("List") and isinstance(doc.get("items"), list):
            for item in doc["items"]:
                yield from _flatten(item)
        elif doc.get("kind"):
            yield dict(doc)


def _identity(obj: Mapping[str, Any]) -> tuple[str, str, str, str]:
    group = str(obj.get("apiVersion", "")).rpartition("/")[0]
    return (group, str(obj.get("kind")), str(meta(obj).get("namespace") or ""), str(meta(obj).get("name") or ""))


def load_objects(paths: Sequence[str]) -> list[dict[str, Any]]:
    """Objects from every file; a later object with the same identity replaces an earlier one, as `kubectl apply` would."""
    objects: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for file in _files(paths):
        try:
            with file.open(encoding="utf-8") as fh:
                for doc in yaml.safe_load_all(fh):
                    for obj in _flatten(doc):
                        objects[_identity(obj)] = obj
        except yaml.YAMLError as err:
            raise RenderError([f"{file}: not valid YAML: {err}"]) from err
    return list(objects.values())


def capabilities_of(objects: Iterable[Mapping[str, Any]]) -> Capabilities:
    """The FirewallConfiguration CRD in the input decides; Liqo's current one is stateless."""
    for obj in objects:
        if obj.get("kind") == "CustomResourceDefinition" and meta(obj).get("name") == FIREWALL_CRD_NAME:
            return from_crd(obj)
    return STATELESS


def outcomes(objects: Sequence[Mapping[str, Any]], *, capabilities: Capabilities | None = None) -> list[Outcome]:
    caps = capabilities if capabilities is not None else capabilities_of(objects)
    view = Snapshot(objects)
    peerings = [o for o in objects if o.get("kind") == KIND]
    winners = governing(peerings)
    results: list[Outcome] = []
    errors: list[str] = []
    for obj in peerings:
        ns, name = str(meta(obj).get("namespace") or ""), str(meta(obj).get("name") or "")
        try:
            if winners.get(ns) != name:
                raise ValidationError(
                    [FieldError("metadata.name", f"peering in {ns!r} is already governed by {winners.get(ns)!r}")],
                    obj=f"{KIND} {ns}/{name}",
                )
            pc = parse_peering_connectivity(obj)
            results.append(build(view, pc, caps))
        except ValidationError as err:
            errors.append(str(err))
    if errors:
        raise RenderError(errors)
    return results


def render(objects: Sequence[Mapping[str, Any]], *, capabilities: Capabilities | None = None) -> list[dict[str, Any]]:
    return [o.firewall for o in outcomes(objects, capabilities=capabilities)]
