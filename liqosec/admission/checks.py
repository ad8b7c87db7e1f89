"""What the admission webhook refuses beyond the controller's own validation: parts of a policy
that can never decide, whatever the cluster holds.

Pure and static: only the spec is read. A party or a rule "covers" another when every packet the
other matches, it matches too, on any cluster: each field of a party narrows it (docs/semantics.md,
"Groups"), so a field left open, or set as the other sets it, covers; a label selector covers one
holding all its requirements; no ports cover any ports, and a port range covers the ranges of its
protocol inside it. Anything else is taken as not covering, so a refusal is never a guess.

Refused (each names its field):
- a rule covered by an earlier rule: first match means it never decides (an exact copy included);
- a security mode after a rule that covers every packet: its clauses never decide;
- a label selector that no set of labels satisfies (`app=web` and `app notin (web)`), or a selector
  narrowed to a group no pod's address is in (`internet`, `leaf`).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

from liqosec.api.peeringconnectivity import (
    ANY,
    Group,
    LabelSelector,
    Operator,
    Party,
    PeeringConnectivitySpec,
    PortRange,
    Rule,
    SecurityMode,
)
from liqosec.api.validation import FieldError

# Groups whose addresses are never a pod's: `internet` is outside every CIDR of the cluster, and
# `leaf` is the peer's external CIDR; pods (shadow pods too) have addresses of a pod CIDR.
PODLESS_GROUPS: dict[Group, str] = {
    Group.INTERNET: "internet is outside every CIDR of the cluster, and pods have addresses of a pod CIDR",
    Group.LEAF: "leaf is the peer's external CIDR, and pods (shadow pods too) have addresses of a pod CIDR",
}
_PARTY_FIELDS = frozenset({"group", "namespace", "pod_selector", "namespace_selector"})
_RULE_FIELDS = frozenset({"source", "destination", "action", "ports"})


def selector_covers(wider: LabelSelector | None, narrower: LabelSelector | None) -> bool:
    if wider is None:
        return True
    return narrower is not None and set(wider.requirements) <= set(narrower.requirements)


def party_covers(wider: Party, narrower: Party) -> bool:
    """Every address `narrower` selects, `wider` selects too, on any cluster."""
    if wider.group is not None and wider.group != narrower.group:
        return False
    if wider.namespace is not None and wider.namespace != narrower.namespace:
        return False
    if not selector_covers(wider.pod_selector, narrower.pod_selector):
        return False
    if not selector_covers(wider.namespace_selector, narrower.namespace_selector):
        return False
    # A field this module does not know yet covers only when it is the same.
    return all(
        getattr(wider, f.name) == getattr(narrower, f.name)
        for f in dataclasses.fields(wider)
        if f.name not in _PARTY_FIELDS
    )


def _range_covers(wider: PortRange, narrower: PortRange) -> bool:
    return wider.protocol == narrower.protocol and wider.first <= narrower.first and narrower.last <= wider.last


def ports_cover(wider: Sequence[PortRange], narrower: Sequence[PortRange]) -> bool:
    """No ports is every packet; otherwise each of `narrower`'s ranges lies in one of `wider`'s."""
    if not wider:
        return True
    return bool(narrower) and all(any(_range_covers(w, n) for w in wider) for n in narrower)


def rule_covers(wider: Rule, narrower: Rule) -> bool:
    """Every packet `narrower` matches, `wider` matches too (actions aside)."""
    return (
        party_covers(wider.source, narrower.source)
        and party_covers(wider.destination, narrower.destination)
        and ports_cover(getattr(wider, "ports", ()), getattr(narrower, "ports", ()))
        and all(
            getattr(wider, f.name) == getattr(narrower, f.name)
            for f in dataclasses.fields(wider)
            if f.name not in _RULE_FIELDS
        )
    )


def describe_rule(rule: Rule) -> str:
    ports = getattr(rule, "ports", ())
    on = f" on {', '.join(p.describe() for p in ports)}" if ports else ""
    return f"{rule.source.describe()} -> {rule.destination.describe()}{on}: {rule.action.value}"


def shadowed_rules(spec: PeeringConnectivitySpec, path: str = "spec") -> list[FieldError]:
    """Rules an earlier rule covers (they never decide), and a security mode a rule hides."""
    errors: list[FieldError] = []
    rules = spec.rules
    for j, later in enumerate(rules):
        for i in range(j):
            earlier = rules[i]
            if not rule_covers(earlier, later):
                continue
            if earlier == later:
                message = f"the same rule as {path}.rules[{i}]: it can never decide"
            else:
                opposite = ", with the opposite action" if earlier.action != later.action else ""
                message = (
                    f"can never decide: {path}.rules[{i}] ({describe_rule(earlier)}) matches every packet it "
                    f"matches, first{opposite}; remove it or move it before {path}.rules[{i}]"
                )
            errors.append(FieldError(f"{path}.rules[{j}]", message, reason="NeverDecides"))
            break
    if spec.security_mode is not SecurityMode.FULL_POD_TO_POD:
        catch_all = Rule(source=ANY, destination=ANY)
        for i, rule in enumerate(rules):
            if rule_covers(rule, catch_all):
                errors.append(
                    FieldError(
                        f"{path}.securityMode",
                        f"{spec.security_mode.value} never decides: {path}.rules[{i}] ({describe_rule(rule)}) "
                        "matches every packet of the peering before the mode's clauses; drop that rule or the "
                        "securityMode",
                        reason="NeverDecides",
                    )
                )
                break
    return errors


def selector_contradiction(selector: LabelSelector) -> str | None:
    """Why no set of labels satisfies the selector, or None when some does."""
    by_key: dict[str, list[tuple[Operator, tuple[str, ...]]]] = {}
    for req in selector.requirements:
        by_key.setdefault(req.key, []).append((req.operator, req.values))
    for key, reqs in sorted(by_key.items()):
        ops = {op for op, _ in reqs}
        needs = bool(ops & {Operator.IN, Operator.EXISTS})
        if needs and Operator.DOES_NOT_EXIST in ops:
            return f"label {key!r} must both exist and not exist"
        allowed: set[str] | None = None
        for op, values in reqs:
            if op is Operator.IN:
                allowed = set(values) if allowed is None else allowed & set(values)
        if allowed is None:
            continue
        for op, values in reqs:
            if op is Operator.NOT_IN:
                allowed -= set(values)
        if not allowed:
            return f"no value of label {key!r} satisfies every requirement on it"
    return None


def unmatchable_selectors(spec: PeeringConnectivitySpec, path: str = "spec") -> list[FieldError]:
    """Selector parties that can never select a pod."""
    errors: list[FieldError] = []
    for i, rule in enumerate(spec.rules):
        for end, party in (("source", rule.source), ("destination", rule.destination)):
            where = f"{path}.rules[{i}].{end}"
            selectors = (("podSelector", party.pod_selector), ("namespaceSelector", party.namespace_selector))
            for field, selector in selectors:
                why = selector_contradiction(selector) if selector is not None else None
                if why is not None:
                    errors.append(FieldError(f"{where}.{field}", f"can never match: {why}", reason="NeverMatches"))
            if party.selects_pods and party.group in PODLESS_GROUPS:
                field = "podSelector" if party.pod_selector is not None else "namespaceSelector"
                errors.append(
                    FieldError(
                        f"{where}.{field}",
                        f"can never match a pod of group {party.group.value}: {PODLESS_GROUPS[party.group]}",
                        reason="NeverMatches",
                    )
                )
    return errors


def static_problems(spec: PeeringConnectivitySpec, path: str = "spec") -> list[FieldError]:
    """Everything this module refuses, in the order the fields come in the spec."""
    rule_path = re.compile(re.escape(f"{path}.rules[") + r"(\d+)\]")

    def order(error: FieldError) -> tuple[int, str]:
        found = rule_path.match(error.path)
        return (int(found.group(1)) if found else len(spec.rules), error.path)

    return sorted(unmatchable_selectors(spec, path) + shadowed_rules(spec, path), key=order)
