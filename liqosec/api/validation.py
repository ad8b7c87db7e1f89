"""Parse a PeeringConnectivity object and say precisely what is wrong with it.

Guarantees:
- `parse_peering_connectivity` either returns a fully valid value or raises
  `ValidationError` listing every problem, each with its field path
  (`spec.rules[2].source.group`) and the allowed values where there are some.
- Nothing half-parsed escapes: callers never compile a partial policy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from liqosec.api.peeringconnectivity import (
    ANY,
    API_VERSION,
    GROUP_ALIASES,
    KIND,
    Action,
    Group,
    Party,
    PeeringConnectivity,
    PeeringConnectivitySpec,
    Rule,
    SecurityMode,
)

# Far above any real policy; keeps a typo'd generator from building a chain
# the API server would refuse anyway.
MAX_RULES = 256


@dataclass(frozen=True)
class FieldError:
    path: str
    message: str
    reason: str = "InvalidSpec"  # machine-readable, for status conditions and Events

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class ValidationError(ValueError):
    """A PeeringConnectivity that cannot be compiled; `errors` name the fields."""

    def __init__(self, errors: list[FieldError], *, obj: str = "") -> None:
        self.errors = tuple(errors)
        self.obj = obj
        prefix = f"{obj}: " if obj else ""
        super().__init__(prefix + "; ".join(str(e) for e in errors))


def _choices(enum_type: type[Group] | type[Action] | type[SecurityMode]) -> str:
    names = [f'"{m.value}"' for m in enum_type]
    if enum_type is Group:  # aliases parse to their canonical group (Group._missing_)
        names += [f'"{alias}" (= "{canonical}")' for alias, canonical in GROUP_ALIASES.items()]
    return ", ".join(names)


def _parse_enum(value: Any, enum_type: Any, path: str, what: str, errors: list[FieldError]) -> Any:
    try:
        return enum_type(value)
    except ValueError:
        errors.append(FieldError(path, f"unknown {what} {value!r}; expected one of {_choices(enum_type)}"))
        return None


def _parse_party(raw: Any, path: str, errors: list[FieldError]) -> Party:
    if raw is None:
        return ANY
    if not isinstance(raw, Mapping):
        errors.append(FieldError(path, f"must be an object with one of group or namespace, got {type(raw).__name__}"))
        return ANY
    unknown = sorted(set(raw) - {"group", "namespace"})
    for key in unknown:
        errors.append(FieldError(f"{path}.{key}", 'unknown field; a party has "group" or "namespace"'))
    group_raw, namespace = raw.get("group"), raw.get("namespace")
    if group_raw is not None and namespace is not None:
        errors.append(FieldError(path, "names both group and namespace; a party selects exactly one"))
        return ANY
    if group_raw is not None:
        group = _parse_enum(group_raw, Group, f"{path}.group", "group", errors)
        return Party(group=group) if group is not None else ANY
    if namespace is not None:
        if not isinstance(namespace, str) or not namespace:
            errors.append(FieldError(f"{path}.namespace", "must be a non-empty namespace name"))
            return ANY
        return Party(namespace=namespace)
    return ANY


def _parse_rule(raw: Any, path: str, errors: list[FieldError]) -> Rule | None:
    if not isinstance(raw, Mapping):
        errors.append(FieldError(path, f"must be an object, got {type(raw).__name__}"))
        return None
    for key in sorted(set(raw) - {"source", "destination", "action"}):
        errors.append(FieldError(f"{path}.{key}", 'unknown field; a rule has "source", "destination" and "action"'))
    action = Action.DENY
    if raw.get("action") is not None:
        action = _parse_enum(raw["action"], Action, f"{path}.action", "action", errors) or Action.DENY
    return Rule(
        source=_parse_party(raw.get("source"), f"{path}.source", errors),
        destination=_parse_party(raw.get("destination"), f"{path}.destination", errors),
        action=action,
    )


def parse_spec(raw: Any, errors: list[FieldError], path: str = "spec") -> PeeringConnectivitySpec:
    if raw is None:
        return PeeringConnectivitySpec()
    if not isinstance(raw, Mapping):
        errors.append(FieldError(path, "must be an object"))
        return PeeringConnectivitySpec()
    for key in sorted(set(raw) - {"rules", "defaultAction", "securityMode"}):
        errors.append(FieldError(f"{path}.{key}", 'unknown field; expected "rules", "defaultAction", "securityMode"'))
    rules_raw = raw.get("rules") or []
    rules: list[Rule] = []
    if not isinstance(rules_raw, list):
        errors.append(FieldError(f"{path}.rules", "must be a list of rules"))
    elif len(rules_raw) > MAX_RULES:
        errors.append(FieldError(f"{path}.rules", f"has {len(rules_raw)} rules; at most {MAX_RULES} are allowed"))
    else:
        for i, rule_raw in enumerate(rules_raw):
            rule = _parse_rule(rule_raw, f"{path}.rules[{i}]", errors)
            if rule is not None:
                rules.append(rule)
    default = Action.ALLOW
    if raw.get("defaultAction") is not None:
        default = _parse_enum(raw["defaultAction"], Action, f"{path}.defaultAction", "action", errors) or Action.ALLOW
    mode = SecurityMode.FULL_POD_TO_POD
    if raw.get("securityMode") is not None:
        parsed = _parse_enum(raw["securityMode"], SecurityMode, f"{path}.securityMode", "security mode", errors)
        mode = parsed or SecurityMode.FULL_POD_TO_POD
    return PeeringConnectivitySpec(rules=tuple(rules), default_action=default, security_mode=mode)


def parse_peering_connectivity(obj: Mapping[str, Any]) -> PeeringConnectivity:
    """Build a PeeringConnectivity from its API object or raise ValidationError."""
    errors: list[FieldError] = []
    meta = obj.get("metadata") or {}
    name, namespace = meta.get("name") or "", meta.get("namespace") or ""
    label = f"{KIND} {namespace}/{name}" if namespace else f"{KIND} {name}"
    if obj.get("apiVersion", API_VERSION) != API_VERSION:
        errors.append(FieldError("apiVersion", f"must be {API_VERSION}, got {obj.get('apiVersion')!r}"))
    if not name:
        errors.append(FieldError("metadata.name", "is required"))
    if not namespace:
        errors.append(
            FieldError("metadata.namespace", "is required: a PeeringConnectivity lives in a tenant namespace")
        )
    spec = parse_spec(obj.get("spec"), errors)
    if errors:
        raise ValidationError(errors, obj=label)
    return PeeringConnectivity(
        name=name,
        namespace=namespace,
        spec=spec,
        uid=str(meta.get("uid") or ""),
        generation=int(meta.get("generation") or 0),
    )
