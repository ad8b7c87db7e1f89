"""A small structural check of an object against a CRD's openAPIV3Schema (no pruning allowed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

LIQO_CRDS = Path(__file__).resolve().parents[2] / "hack" / "liqo-crds"


def crd_schema(file: str, version: str) -> dict[str, Any]:
    crd = yaml.safe_load((LIQO_CRDS / file).read_text())
    for v in crd["spec"]["versions"]:
        if v["name"] == version:
            return dict(v["schema"]["openAPIV3Schema"])
    raise KeyError(version)


def violations(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Fields the API server would prune or reject: unknown keys, wrong types, enums, required."""
    out: list[str] = []
    kind = schema.get("type")
    if "enum" in schema and value not in schema["enum"]:
        out.append(f"{path}: {value!r} not in {schema['enum']}")
    if kind == "object" and isinstance(value, dict):
        props = schema.get("properties")
        for key in schema.get("required", []):
            if key not in value:
                out.append(f"{path}.{key}: required")
        for key, sub in value.items():
            if path == "" and key == "metadata":
                continue
            if props is not None and key not in props and not schema.get("x-kubernetes-preserve-unknown-fields"):
                out.append(f"{path}.{key}: unknown field (pruned)")
            elif props is not None and key in props:
                out.extend(violations(sub, props[key], f"{path}.{key}"))
    elif kind == "array":
        if not isinstance(value, list):
            out.append(f"{path}: not a list")
        else:
            for i, item in enumerate(value):
                out.extend(violations(item, schema.get("items", {}), f"{path}[{i}]"))
    elif kind == "string" and not isinstance(value, str):
        out.append(f"{path}: not a string")
    elif kind == "integer" and not isinstance(value, int):
        out.append(f"{path}: not an integer")
    elif kind == "boolean" and not isinstance(value, bool):
        out.append(f"{path}: not a boolean")
    elif kind == "object" and not isinstance(value, dict):
        out.append(f"{path}: not an object")
    return out
