"""A read-only view of cluster objects: the seam between resolution and storage.

Resolution asks for objects by kind, namespace and label; the controller
answers from its indexed informer stores, `liqosec render` from the YAML it
read (`Snapshot`). Guarantees of every implementation:
- objects are API-shaped mappings (`metadata`, `spec`, `status`), never mutated
  by the caller;
- `by_label` returns exactly the objects of that kind carrying that label value.

Objects are not trusted to be well formed (a hand-written YAML file may say
anything): the accessors here check the type of what they read and raise
`ClusterStateError`, naming the object and the field, instead of failing
somewhere deeper with a Python error.
"""

from __future__ import annotations

import reprlib
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

Obj = Mapping[str, Any]

# A DNS subdomain, the longest name the API server accepts; longer text is shortened in messages.
MAX_NAME_CHARS = 253
_SHOWN = reprlib.Repr()
_SHOWN.maxstring = 60
_SHOWN.maxother = 60
_SHOWN.maxlong = 40
_SHOWN.maxlevel = 3


def shown(value: object) -> str:
    """A short, bounded rendering of any input value for a message (huge, deep or shared values included)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"an integer of {value.bit_length()} bits"  # repr of a huge int is slow or refused
    try:
        return _SHOWN.repr(value)
    except Exception:  # an exotic value whose repr fails must not hide the real problem
        return f"a {type_name(value)}"


def type_name(value: object) -> str:
    """What a value is, in the words of the YAML the user wrote."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, (list, tuple)):
        return "list"
    return type(value).__name__


def _plain_text(value: object) -> str:
    """Input text safe to print: printable and short, else its bounded repr."""
    if value is None:
        return ""
    if isinstance(value, str) and value.isprintable() and len(value) <= MAX_NAME_CHARS:
        return value
    return shown(value)


@dataclass(frozen=True)
class ObjectRef:
    """Which object a problem is in, as kubectl would name it."""

    kind: str
    namespace: str = ""
    name: str = ""

    @classmethod
    def of(cls, obj: Obj) -> ObjectRef:
        """Never fails, so even a malformed object can be named in its own error."""
        m = obj.get("metadata") if isinstance(obj, Mapping) else None
        m = m if isinstance(m, Mapping) else {}
        kind = obj.get("kind") if isinstance(obj, Mapping) else None
        kind_text = _plain_text(kind) if isinstance(kind, str) else ""
        return cls(kind_text or "object", _plain_text(m.get("namespace")), _plain_text(m.get("name")))

    def __str__(self) -> str:
        name = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.kind} {name or '(no name)'}"


class ClusterStateError(ValueError):
    """An object resolution reads is malformed: which object, which field, what is wrong.

    Structured so every front end can say it its way: the CLI prefixes the
    file (`source`), the controller can put `reason` and the message on a
    status condition. `message` never contains unbounded input (see `shown`).
    """

    def __init__(
        self, ref: ObjectRef, path: str, message: str, *, reason: str = "MalformedObject", source: str = ""
    ) -> None:
        self.ref = ref
        self.path = path
        self.message = message
        self.reason = reason
        self.source = source
        parts = [p for p in (source, str(ref), path) if p]
        super().__init__(": ".join([*parts, message]))

    def at(self, source: str) -> ClusterStateError:
        """The same problem, located in `source` (a file, a document of it)."""
        return ClusterStateError(self.ref, self.path, self.message, reason=self.reason, source=source)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self.ref, self.path, self.message, self.reason, self.source))


def _rebuild(ref: ObjectRef, path: str, message: str, reason: str, source: str) -> ClusterStateError:
    return ClusterStateError(ref, path, message, reason=reason, source=source)


class RemapPending(ClusterStateError):
    """Liqo has not finished an object this peering needs: not malformed, only not yet there.

    Liqo's Configuration controller leaves `""` in `status.remote.cidr.*` until its IPAM
    has remapped the peer's CIDRs (docs/semantics.md, "Liqo's behaviour that shapes a
    policy"). The peering waits, keeping its firewall; no other peering waits with it.
    """

    REASON = "RemapPending"

    def __init__(self, ref: ObjectRef, path: str, message: str, *, reason: str = REASON, source: str = "") -> None:
        super().__init__(ref, path, message, reason=reason, source=source)

    def at(self, source: str) -> RemapPending:
        return RemapPending(self.ref, self.path, self.message, source=source)

    def __reduce__(self) -> tuple[Any, ...]:
        return (RemapPending, (self.ref, self.path, self.message))


def described(value: object) -> str:
    """A value as a message names it: "null", "true", "the text 'app=web'", "a list [1, 2]"."""
    if value is None or isinstance(value, bool):
        return "null" if value is None else str(value).lower()
    article = {"number": "the", "text": "the", "object": "an"}.get(type_name(value), "a")
    return f"{article} {type_name(value)} {shown(value)}"


def wrong_type(obj: Obj, path: str, expected: str, value: object) -> ClusterStateError:
    return ClusterStateError(ObjectRef.of(obj), path, f"must be {expected}, got {described(value)}", reason="WrongType")


def mapping_at(obj: Obj, *keys: str) -> Mapping[str, Any]:
    """The object at `keys` (`"status", "remote"`); missing or null is empty, anything else is an error."""
    if len(keys) == 1:  # the common cases, first
        found = obj.get(keys[0])
        if type(found) is dict:
            return found
        if found is None:
            return {}
    node: Mapping[str, Any] = obj
    for depth, key in enumerate(keys):
        value = node.get(key)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise wrong_type(obj, ".".join(keys[: depth + 1]), "an object", value)
        node = value
    return node


def meta(obj: Obj) -> Mapping[str, Any]:
    m = obj.get("metadata")
    if type(m) is dict:  # the common case, first: this runs for every object, several times
        return m
    return mapping_at(obj, "metadata")


def _text_field(obj: Obj, key: str) -> str:
    value = meta(obj).get(key)
    if value is None:
        return ""
    if not isinstance(value, str) or not value.isprintable() or len(value) > MAX_NAME_CHARS:
        raise wrong_type(obj, f"metadata.{key}", f"printable text of at most {MAX_NAME_CHARS} characters", value)
    return value


def name_of(obj: Obj) -> str:
    return _text_field(obj, "name")


def namespace_of(obj: Obj) -> str:
    return _text_field(obj, "namespace")


def labels(obj: Obj) -> Mapping[str, str]:
    """The object's labels, checked to be text to text as the API server guarantees."""
    value = meta(obj).get("labels")
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise wrong_type(obj, "metadata.labels", "an object of label keys and values", value)
    for key, text in value.items():
        if not isinstance(key, str) or not key.isprintable():
            raise wrong_type(obj, "metadata.labels", "keyed by printable text", key)
        if not isinstance(text, str) or not text.isprintable():
            raise wrong_type(obj, f"metadata.labels.{_plain_text(key)}", "printable text (quote it in YAML)", text)
    return value


class ClusterView(Protocol):
    def list(self, kind: str, namespace: str | None = None) -> Iterable[Obj]: ...

    def by_label(self, kind: str, key: str, value: str) -> Iterable[Obj]: ...

    def get(self, kind: str, name: str, namespace: str | None = None) -> Obj | None: ...


class Snapshot:
    """An in-memory ClusterView over a fixed list of objects (render, matrix, tests).

    Raises `ClusterStateError` for an object whose name, namespace or labels are malformed.
    """

    def __init__(self, objects: Iterable[Obj]) -> None:
        self._by_kind: dict[str, list[Obj]] = defaultdict(list)
        self._by_ns: dict[tuple[str, str], list[Obj]] = defaultdict(list)
        self._by_label: dict[tuple[str, str, str], list[Obj]] = defaultdict(list)
        self._by_name: dict[tuple[str, str, str], Obj] = {}
        for obj in objects:
            kind = obj.get("kind")
            if not isinstance(kind, str):
                continue  # not an object of any kind resolution asks for
            ns = namespace_of(obj)
            self._by_kind[kind].append(obj)
            self._by_ns[(kind, ns)].append(obj)
            self._by_name[(kind, ns, name_of(obj))] = obj
            for key, value in labels(obj).items():
                self._by_label[(kind, key, value)].append(obj)

    def list(self, kind: str, namespace: str | None = None) -> Iterable[Obj]:
        if namespace is None:
            return tuple(self._by_kind.get(kind, ()))
        return tuple(self._by_ns.get((kind, namespace), ()))

    def by_label(self, kind: str, key: str, value: str) -> Iterable[Obj]:
        return tuple(self._by_label.get((kind, key, value), ()))

    def get(self, kind: str, name: str, namespace: str | None = None) -> Obj | None:
        return self._by_name.get((kind, namespace or "", name))
