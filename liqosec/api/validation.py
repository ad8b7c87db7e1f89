"""Parse a PeeringConnectivity object and say precisely what is wrong with it.

Guarantees:
- `parse_peering_connectivity` either returns a fully valid value or raises
  `ValidationError` listing every problem, each with its field path
  (`spec.rules[2].source.group`) and the allowed values where there are some.
- Nothing half-parsed escapes: callers never compile a partial policy.
"""

from __future__ import annotations

import re
import reprlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from liqosec.api.peeringconnectivity import (
    ANY,
    API_VERSION,
    ENFORCEABLE_PROTOCOLS,
    GROUP_ALIASES,
    KIND,
    MAX_PORT,
    NAMESPACE_NAME_LABEL,
    Action,
    Enforcement,
    Group,
    LabelSelector,
    Operator,
    Party,
    PeeringConnectivity,
    PeeringConnectivitySpec,
    PortRange,
    Protocol,
    Requirement,
    Rule,
    SecurityMode,
)

# Far above any real policy; keeps a typo'd generator from building a chain
# the API server would refuse anyway.
MAX_RULES = 256
# A policy's name is the value of a label on its firewalls (security.liqo.io/peering-connectivity).
MAX_NAME_CHARS = 63


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


_SHOWN = reprlib.Repr()
_SHOWN.maxstring = 60
_SHOWN.maxother = 60


def shown(value: object) -> str:
    """Input in a message, bounded: a label key may be anything a file says."""
    return _SHOWN.repr(value)


def type_name(value: object) -> str:
    return type(value).__name__


# Label keys and values as the API server checks them (apimachinery's validation).
_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_SELECTOR_FIELDS = ("matchLabels", "matchExpressions")
_PARTY_FIELDS = ("group", "namespace", "podSelector", "namespaceSelector")


def label_key_problem(key: object) -> str | None:
    """Why `key` is not a label key (`[prefix/]name`), or None."""
    if not isinstance(key, str) or not key:
        return f"label key {shown(key)} must be non-empty text"
    prefix, _, name = key.rpartition("/")
    if "/" in key and (not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        return f"label key {shown(key)}: the prefix must be a DNS subdomain (lowercase, at most 253 characters)"
    if len(name) > 63 or not _LABEL_NAME.match(name):
        return (
            f"label key {shown(key)}: the name must be at most 63 characters, alphanumeric, '-', '_' or '.', "
            "starting and ending alphanumeric"
        )
    return None


def label_value_problem(value: object) -> str | None:
    """Why `value` is not a label value (empty, or a name of at most 63 characters), or None."""
    if not isinstance(value, str):
        return f"label value {shown(value)} must be text"
    if value and (len(value) > 63 or not _LABEL_NAME.match(value)):
        return (
            f"label value {shown(value)} must be at most 63 characters, alphanumeric, '-', '_' or '.', "
            "starting and ending alphanumeric"
        )
    return None


def _parse_requirement(raw: Any, path: str, errors: list[FieldError]) -> Requirement | None:
    if not isinstance(raw, Mapping):
        errors.append(FieldError(path, f"must be an object {{key, operator, values}}, got {type_name(raw)}"))
        return None
    before = len(errors)
    for key in sorted(set(raw) - {"key", "operator", "values"}, key=str):
        errors.append(FieldError(f"{path}.{key}", 'unknown field; a requirement has "key", "operator", "values"'))
    if (problem := label_key_problem(raw.get("key"))) is not None:
        errors.append(FieldError(f"{path}.key", problem))
    operator = _parse_enum(raw.get("operator"), Operator, f"{path}.operator", "operator", errors)
    values = raw.get("values")
    if values is not None and not isinstance(values, list):
        errors.append(FieldError(f"{path}.values", f"must be a list of label values, got {type_name(values)}"))
        values = None
    for i, value in enumerate(values or ()):
        if (problem := label_value_problem(value)) is not None:
            errors.append(FieldError(f"{path}.values[{i}]", problem))
    if operator in (Operator.IN, Operator.NOT_IN) and not values:
        errors.append(FieldError(f"{path}.values", f"must list at least one value for operator {operator.value}"))
    if operator in (Operator.EXISTS, Operator.DOES_NOT_EXIST) and values:
        errors.append(FieldError(f"{path}.values", f"must be empty for operator {operator.value}"))
    if len(errors) > before or operator is None:
        return None
    return Requirement(str(raw["key"]), operator, tuple(str(v) for v in values or ()))


def _parse_selector(raw: Any, path: str, errors: list[FieldError]) -> LabelSelector | None:
    """A Kubernetes label selector (matchLabels, matchExpressions); `{}` selects everything."""
    if not isinstance(raw, Mapping):
        errors.append(FieldError(path, f"must be a label selector object, got {type_name(raw)}"))
        return None
    before = len(errors)
    for key in sorted(set(raw) - set(_SELECTOR_FIELDS), key=str):
        errors.append(FieldError(f"{path}.{key}", 'unknown field; a selector has "matchLabels", "matchExpressions"'))
    match_labels = raw.get("matchLabels")
    match_labels = {} if match_labels is None else match_labels
    if not isinstance(match_labels, Mapping):
        errors.append(FieldError(f"{path}.matchLabels", f"must be an object of labels, got {type_name(match_labels)}"))
        match_labels = {}
    for key, value in match_labels.items():
        problem = label_key_problem(key) or label_value_problem(value)
        if problem is not None:
            errors.append(FieldError(f"{path}.matchLabels[{shown(key)}]", problem))
    expressions_raw = raw.get("matchExpressions")
    expressions_raw = [] if expressions_raw is None else expressions_raw
    if not isinstance(expressions_raw, list):
        errors.append(FieldError(f"{path}.matchExpressions", f"must be a list, got {type_name(expressions_raw)}"))
        expressions_raw = []
    expressions = [
        _parse_requirement(r, f"{path}.matchExpressions[{i}]", errors) for i, r in enumerate(expressions_raw)
    ]
    if len(errors) > before:
        return None
    return LabelSelector.of(match_labels, [r for r in expressions if r is not None])


def _parse_party(raw: Any, path: str, errors: list[FieldError]) -> Party:
    if raw is None:
        return ANY
    if not isinstance(raw, Mapping):
        errors.append(FieldError(path, f"must be an object with one of group or namespace, got {type(raw).__name__}"))
        return ANY
    unknown = sorted(set(raw) - set(_PARTY_FIELDS), key=str)
    for key in unknown:
        errors.append(
            FieldError(
                f"{path}.{key}", 'unknown field; a party has "group" or "namespace", "podSelector", "namespaceSelector"'
            )
        )
    group_raw, namespace = raw.get("group"), raw.get("namespace")
    if group_raw is not None and namespace is not None:
        errors.append(FieldError(path, "names both group and namespace; a party selects exactly one"))
        return ANY
    pod_sel = ns_sel = None
    if raw.get("podSelector") is not None:
        pod_sel = _parse_selector(raw["podSelector"], f"{path}.podSelector", errors)
    if raw.get("namespaceSelector") is not None:
        if namespace is not None:
            errors.append(
                FieldError(
                    f"{path}.namespaceSelector",
                    "selects namespaces and so does namespace; use namespace, or namespaceSelector "
                    f"with {NAMESPACE_NAME_LABEL}",
                )
            )
            return ANY
        ns_sel = _parse_selector(raw["namespaceSelector"], f"{path}.namespaceSelector", errors)
    group: Group | None = None
    if group_raw is not None:
        group = _parse_enum(group_raw, Group, f"{path}.group", "group", errors)
        if group is None:
            return ANY
    if namespace is not None:
        if not isinstance(namespace, str) or not namespace:
            errors.append(FieldError(f"{path}.namespace", "must be a non-empty namespace name"))
            return ANY
    return Party(group=group, namespace=namespace, pod_selector=pod_sel, namespace_selector=ns_sel)


def _parse_rule(raw: Any, path: str, errors: list[FieldError]) -> Rule | None:
    if not isinstance(raw, Mapping):
        errors.append(FieldError(path, f"must be an object, got {type(raw).__name__}"))
        return None
    for key in sorted(set(raw) - {"source", "destination", "action"}):
        errors.append(FieldError(f"{path}.{key}", 'unknown field; a rule has "source", "destination" and "action"'))
    action = Action.DENY
    if raw.get("action") is not None:
        action = _parse_enum(raw["action"], Action, f"{path}.action", "action", errors) or Action.DENY
    source, destination = raw.get("source"), raw.get("destination")
    if isinstance(source, Mapping) and "ports" in source:
        errors.append(
            FieldError(f"{path}.source.ports", "ports go on the destination: a rule matches destination ports")
        )
        source = {k: v for k, v in source.items() if k != "ports"}
    ports: tuple[PortRange, ...] = ()
    if isinstance(destination, Mapping) and "ports" in destination:
        ports = _parse_ports(destination["ports"], f"{path}.destination.ports", errors)
        destination = {k: v for k, v in destination.items() if k != "ports"} or None
    return Rule(
        source=_parse_party(source, f"{path}.source", errors),
        destination=_parse_party(destination, f"{path}.destination", errors),
        action=action,
        ports=ports,
    )


MAX_PORTS = 16  # per rule, as the CRD says: each entry is a rule of the firewall per rectangle


def _parse_port_number(raw: Any, path: str, errors: list[FieldError]) -> int | None:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= MAX_PORT:
        errors.append(FieldError(path, f"must be a port number from 1 to {MAX_PORT}, got {raw!r}"))
        return None
    return raw


def _parse_ports(raw: Any, path: str, errors: list[FieldError]) -> tuple[PortRange, ...]:
    """NetworkPolicy-style ports: protocol (default TCP), an optional port, an optional endPort."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        errors.append(FieldError(path, "must be a list of {protocol, port, endPort}"))
        return ()
    if len(raw) > MAX_PORTS:
        errors.append(FieldError(path, f"has {len(raw)} entries; at most {MAX_PORTS} are allowed"))
        return ()
    out: list[PortRange] = []
    for i, item in enumerate(raw):
        where = f"{path}[{i}]"
        if not isinstance(item, Mapping):
            errors.append(
                FieldError(where, f"must be an object with protocol, port, endPort, got {type(item).__name__}")
            )
            continue
        for key in sorted(set(item) - {"protocol", "port", "endPort"}):
            errors.append(FieldError(f"{where}.{key}", 'unknown field; a port has "protocol", "port" and "endPort"'))
        protocol = Protocol.TCP
        if item.get("protocol") is not None:
            try:
                protocol = Protocol(item["protocol"])
            except ValueError:
                errors.append(
                    FieldError(f"{where}.protocol", f'unknown protocol {item["protocol"]!r}; expected "TCP" or "UDP"')
                )
                continue
        if protocol not in ENFORCEABLE_PROTOCOLS:
            errors.append(
                FieldError(
                    f"{where}.protocol",
                    f"{protocol.value} cannot be enforced: Liqo v1.2.0's firewall matches TCP and UDP only",
                )
            )
            continue
        port = _parse_port_number(item.get("port"), f"{where}.port", errors)
        end = _parse_port_number(item.get("endPort"), f"{where}.endPort", errors)
        if end is not None and item.get("port") is None:
            errors.append(FieldError(f"{where}.endPort", "needs port: endPort ends the range port starts"))
            continue
        if port is not None and end is not None and end < port:
            errors.append(FieldError(f"{where}.endPort", f"must be at least port ({port}), got {end}"))
            continue
        out.append(PortRange(protocol, port, end))
    return tuple(out)


def parse_spec(raw: Any, errors: list[FieldError], path: str = "spec") -> PeeringConnectivitySpec:
    if raw is None:
        return PeeringConnectivitySpec()
    if not isinstance(raw, Mapping):
        errors.append(FieldError(path, "must be an object"))
        return PeeringConnectivitySpec()
    for key in sorted(set(raw) - {"rules", "defaultAction", "securityMode", "enforcement"}):
        errors.append(
            FieldError(
                f"{path}.{key}", 'unknown field; expected "rules", "defaultAction", "securityMode", "enforcement"'
            )
        )
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
    enforcement = Enforcement.ENFORCE
    if raw.get("enforcement") is not None:
        parsed = _parse_enum(raw["enforcement"], Enforcement, f"{path}.enforcement", "enforcement", errors)
        enforcement = parsed or Enforcement.ENFORCE
    return PeeringConnectivitySpec(
        rules=tuple(rules), default_action=default, security_mode=mode, enforcement=enforcement
    )


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
    elif isinstance(name, str) and len(name) > MAX_NAME_CHARS:
        errors.append(
            FieldError(
                "metadata.name",
                f"is {len(name)} characters; at most {MAX_NAME_CHARS}: the name is a label value of the "
                "FirewallConfigurations written for it",
            )
        )
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
