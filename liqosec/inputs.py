"""The input reader: the cluster objects in YAML or JSON files, bounded and checked.

Reads the same objects a cluster would hold (plain YAML, multi-document,
`kind: List` too) for `liqosec render`, `matrix` and `explain`.

Input is not trusted: a file may be binary, huge, an alias bomb, nested
thousands deep, or hold objects of the wrong shape. Each of these is a
`RenderError` naming the file (and the object and field, when there is one),
never a Python error: `load` bounds what it reads (`LIQOSEC_MAX_INPUT_BYTES`,
`MAX_DEPTH`, `ALIAS_BUDGET`) and checks every object of a kind liqosec reads
(`READ_KINDS`) with the accessors resolution itself uses.
"""

from __future__ import annotations

import codecs
import datetime
import importlib
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer, ComposerError
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.events import (
    AliasEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)
from yaml.nodes import Node, ScalarNode, SequenceNode
from yaml.parser import Parser
from yaml.reader import Reader, ReaderError
from yaml.resolver import Resolver
from yaml.scanner import Scanner

from liqosec.api.peeringconnectivity import KIND
from liqosec.firewall.capabilities import FIREWALL_CRD_NAME
from liqosec.groups.readers import READ_KINDS as RESOLVED_KINDS
from liqosec.groups.readers import check_object
from liqosec.groups.view import (
    ClusterStateError,
    ObjectRef,
    mapping_at,
    meta,
    name_of,
    namespace_of,
    shown,
    type_name,
    wrong_type,
)

YAML_SUFFIXES = (".yaml", ".yml", ".json")
CRD_KIND = "CustomResourceDefinition"
# Kinds `load` keeps; everything else in the input is ignored (and never checked).
READ_KINDS: frozenset[str] = RESOLVED_KINDS | {KIND, CRD_KIND}

MAX_INPUT_BYTES_ENV = "LIQOSEC_MAX_INPUT_BYTES"
# Per file. A 100,000-pod `kubectl get pods -o yaml` is ~800 MB, but the slim dumps
# liqosec needs are ~220 bytes a pod: 64 MiB is ~300,000 pods.
DEFAULT_MAX_INPUT_BYTES = 64 * 2**20
# Collections nested deeper than this are refused while parsing. Kubernetes objects,
# CRD schemas included, stay under 40; the bound keeps the composer's recursion far
# from Python's limit (libyaml's own composer would overflow the C stack instead).
MAX_DEPTH = 200
# Nodes that aliases may add to one document when expanded ("billion laughs").
ALIAS_BUDGET = 1_000_000
# Longest integer literal read (Python's own int/str conversion limit); also keeps
# YAML 1.1 sexagesimal literals (1:2:3...) from quadratic work.
MAX_INT_CHARS = 4300
INT64 = range(-(2**63), 2**63)


class RenderError(ValueError):
    """Input that cannot be rendered; `errors` are complete messages with field paths.

    `problems` holds the malformed-object errors among them, structured (file,
    object, field path, reason) for callers that want more than text.
    """

    def __init__(self, errors: Sequence[str], *, problems: Sequence[ClusterStateError] = ()) -> None:
        self.errors = tuple(errors)
        self.problems = tuple(problems)
        super().__init__("\n".join(self.errors))


@dataclass(frozen=True)
class Loaded:
    """What the input holds: the objects liqosec reads, and what the reader should know about the rest."""

    objects: tuple[dict[str, Any], ...]
    warnings: tuple[str, ...] = ()


class _InputError(Exception):
    """A file that cannot be read as YAML at all; the message completes "FILE: ..."."""


# ----- YAML, bounded -----


class _PyParser(Reader, Scanner, Parser):
    """PyYAML's pure-Python parser, for an installation without libyaml."""

    def __init__(self, stream: str) -> None:
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)


def _parser() -> Any:
    """libyaml's parser when PyYAML was built with it: ~15x faster, 20,000 pods in ~2 s instead of ~40 s."""
    try:
        return importlib.import_module("yaml._yaml").CParser
    except (ImportError, AttributeError):  # pragma: no cover - PyYAML without libyaml
        return _PyParser


_PARSER: Any = _parser()


class _BoundedLoader(SafeConstructor, Resolver, Composer, _PARSER):  # type: ignore[misc]
    """SafeLoader semantics, libyaml's speed, and bounds on depth and alias expansion.

    libyaml parses (events); PyYAML's Python composer builds the nodes, so
    nesting can be bounded before it overflows anything (libyaml's own
    composer recurses in C and crashes the interpreter near 100,000 levels),
    and each alias is charged the size it expands to against `ALIAS_BUDGET`.
    A recursive alias (`&a [*a]`) is refused: nothing downstream could walk it.
    """

    def __init__(self, stream: str) -> None:
        _PARSER.__init__(self, stream)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        Composer.__init__(self)
        self._reset()

    def _reset(self) -> None:
        self._depth = 0
        self._budget = ALIAS_BUDGET
        self._open: set[str] = set()
        self._sizes: dict[int, int] = {}

    # The C parser also composes (recursively, unbounded): PyYAML's Python composer on its events instead.
    check_node = Composer.check_node
    get_node = Composer.get_node
    get_single_node = Composer.get_single_node
    compose_scalar_node = Composer.compose_scalar_node
    compose_sequence_node = Composer.compose_sequence_node
    compose_mapping_node = Composer.compose_mapping_node

    def compose_document(self) -> Node | None:
        self._reset()
        node = Composer.compose_document(self)
        self._sizes = {}
        return node

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        """Composer.compose_node with the bounds (a copy, not a wrapper: it runs once per node)."""
        if self.check_event(AliasEvent):
            event: Any = self.get_event()
            anchor = event.anchor
            if anchor not in self.anchors:
                raise ComposerError(None, None, f"found undefined alias {shown(anchor)}", event.start_mark)
            if anchor in self._open:
                problem = f"alias {shown(anchor)} refers to a collection that contains it"
                raise ComposerError(None, None, problem, event.start_mark)
            node: Node = self.anchors[anchor]
            self._budget -= self._expanded(node)
            if self._budget < 0:
                raise ComposerError(
                    None,
                    None,
                    f"aliases expand to more than {ALIAS_BUDGET:,} nodes in one document (an alias bomb?)",
                    event.start_mark,
                )
            return node
        event = self.peek_event()
        anchor = event.anchor
        if anchor is not None and anchor in self.anchors:
            raise ComposerError(
                f"found duplicate anchor {shown(anchor)}; first occurrence",
                self.anchors[anchor].start_mark,
                "second occurrence",
                event.start_mark,
            )
        self.descend_resolver(parent, index)
        if self.check_event(ScalarEvent):
            node = self.compose_scalar_node(anchor)
        else:
            self._depth += 1
            if self._depth > MAX_DEPTH:
                raise ComposerError(None, None, f"collections are nested more than {MAX_DEPTH} deep", event.start_mark)
            if anchor is not None:
                self._open.add(anchor)
            if self.check_event(SequenceStartEvent):
                node = self.compose_sequence_node(anchor)
            else:
                node = self.compose_mapping_node(anchor)
            self._open.discard(anchor)
            self._depth -= 1
        self.ascend_resolver()
        return node

    def _expanded(self, root: Node) -> int:
        """How many nodes `root` stands for with every alias in it expanded (memoised per document)."""
        sizes = self._sizes
        stack: list[tuple[Node, bool]] = [(root, False)]
        while stack:
            node, children_done = stack.pop()
            if id(node) in sizes:
                continue
            if isinstance(node, ScalarNode):
                sizes[id(node)] = 1
                continue
            children = node.value if isinstance(node, SequenceNode) else [n for pair in node.value for n in pair]
            if children_done:
                sizes[id(node)] = 1 + sum(sizes[id(c)] for c in children)
            else:
                stack.append((node, True))
                stack.extend((c, False) for c in children if id(c) not in sizes)
        return sizes[id(root)]


_LOADER: Any = _BoundedLoader


def _checked(construct: Callable[[Any, Node], Any], what: str) -> Callable[[Any, Node], Any]:
    """A constructor whose ValueError (a bad date, a huge integer) becomes a YAML error with a line."""

    def wrapper(loader: Any, node: Node) -> Any:
        if what == "integer" and len(str(node.value)) > MAX_INT_CHARS:
            problem = f"integer literal longer than {MAX_INT_CHARS} characters"
            raise ConstructorError(None, None, problem, node.start_mark)
        try:
            return construct(loader, node)
        except (ValueError, OverflowError) as err:
            raise ConstructorError(None, None, f"invalid {what} {shown(node.value)}: {err}", node.start_mark) from None

    return wrapper


def _install_checked_constructors() -> None:
    for name, what in (("int", "integer"), ("float", "number"), ("timestamp", "timestamp")):
        tag = f"tag:yaml.org,2002:{name}"
        _BoundedLoader.add_constructor(tag, _checked(SafeConstructor.yaml_constructors[tag], what))


_install_checked_constructors()


# The scanner of the libyaml PyYAML 6.0.4 bundles refuses nesting past its own limit (1,000 levels)
# with this problem; it scans ahead of the composer, so a deep flow collection meets it before MAX_DEPTH.
_LIBYAML_TOO_DEEP = "exceeded maximum nesting depth"


def _yaml_error(err: yaml.YAMLError, text: str) -> str:
    """The parser's complaint with its line and column, without PyYAML's "<unicode string>" noise."""
    if isinstance(err, yaml.MarkedYAMLError):
        mark = err.problem_mark or err.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        if err.problem == _LIBYAML_TOO_DEEP:  # libyaml's own bound (PyYAML >= 6.0.4), past ours: say ours
            return f"{where}collections are nested more than {MAX_DEPTH} deep"
        context = f" ({err.context})" if err.context and err.problem else ""
        return _shortened(f"{where}{err.problem or err.context}{context}")
    if isinstance(err, ReaderError):  # libyaml counts characters for these
        line = text.count("\n", 0, err.position) + 1
        column = err.position - (text.rfind("\n", 0, err.position) + 1) + 1
        code = err.character if isinstance(err.character, int) else ord(str(err.character)[:1] or "\0")
        return f"line {line}, column {column}: {err.reason} (#x{code:04x})"
    return _shortened(str(err))


def _shortened(text: str, limit: int = 300) -> str:
    """Parser messages can quote input (an anchor's name): keep them to a line."""
    return text if len(text) <= limit else f"{text[:limit]}..."


def max_input_bytes(environ: Mapping[str, str] = os.environ) -> int:
    """The per-file size limit: `LIQOSEC_MAX_INPUT_BYTES` or 64 MiB. ValueError says what is wrong with the setting."""
    raw = environ.get(MAX_INPUT_BYTES_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_INPUT_BYTES
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{MAX_INPUT_BYTES_ENV}={shown(raw)}: expected a positive number of bytes")
    return value


_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),  # PowerShell's `>` writes this
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def _decode(data: bytes) -> str:
    codec = next((c for bom, c in _BOMS if data.startswith(bom)), "utf-8")
    try:
        return data.decode(codec)
    except UnicodeDecodeError as err:
        hint = "; it looks like a binary file" if b"\0" in data[:8192] and codec == "utf-8" else ""
        name = codec.removesuffix("-sig").upper()
        where = f"byte 0x{data[err.start]:02x} at offset {err.start}"
        raise _InputError(f"is not {name} text: {where} cannot be decoded{hint}") from None


def _read_text(file: Path, limit: int) -> str:
    try:
        with file.open("rb") as fh:
            data = fh.read(limit + 1)
    except OSError as err:
        raise _InputError(f"cannot be read: {err.strerror or err}") from None
    if len(data) > limit:
        raise _InputError(
            f"is larger than {limit:,} bytes, the most liqosec reads from one file (set {MAX_INPUT_BYTES_ENV})"
        )
    return _decode(data)


class _NeedsFullLoader(Exception):
    """The fast path met something only the full loader handles (an anchor, a tag, a merge key, ...)."""


_NO_KEY = object()
_STR_TAG = "tag:yaml.org,2002:str"
_IMPLICIT = Resolver.yaml_implicit_resolvers
_SCALARS = SafeConstructor()


def _plain(event: Any) -> Any:
    """A plain scalar as SafeLoader types it (YAML 1.1: null, bool, int, float, timestamp, else text)."""
    value: str = event.value
    for tag, regexp in _IMPLICIT.get(value[:1], ()):  # noqa: B007 - the match is read after the loop
        if regexp.match(value):
            break
    else:
        return value
    if tag == _STR_TAG:
        return value
    construct = SafeConstructor.yaml_constructors.get(tag)
    if construct is None or len(value) > MAX_INT_CHARS:  # "<<", "=", over-long numbers: the full loader's business
        raise _NeedsFullLoader()
    try:
        return construct(_SCALARS, ScalarNode(tag, value, event.start_mark, event.end_mark))
    except Exception:  # a bad date, say: the full loader reports it with its line
        raise _NeedsFullLoader() from None


def _fast_documents(text: str) -> list[Any]:
    """What `yaml.load_all(text, SafeLoader)` returns, for the YAML kubectl writes, from libyaml's events.

    Twice as fast as composing nodes then constructing objects, and without
    recursion. Anything beyond plain data (anchors, aliases, explicit tags,
    merge keys, collections as keys, nesting past MAX_DEPTH) raises
    `_NeedsFullLoader`, and the caller reads the file again with `_BoundedLoader`:
    one semantics, one place for the bounds. Parse errors propagate as they
    are (the same parser would raise them again).
    """
    parser = _PARSER(text)
    get = parser.get_event
    docs: list[Any] = []
    try:
        get()  # StreamStart
        while not isinstance(event := get(), StreamEndEvent):  # DocumentStart
            stack: list[list[Any]] = []  # [container, key waiting for its value]
            while True:
                event = get()
                kind = type(event)
                if kind is ScalarEvent:
                    if event.anchor is not None or event.tag not in (None, "!"):
                        raise _NeedsFullLoader()
                    value = event.value
                    if event.implicit[0] and value[:1] in _IMPLICIT:  # else text, whatever it says
                        value = _plain(event)
                elif kind is MappingStartEvent or kind is SequenceStartEvent:
                    if event.anchor is not None or event.tag not in (None, "!") or len(stack) >= MAX_DEPTH:
                        raise _NeedsFullLoader()
                    value = {} if kind is MappingStartEvent else []
                elif kind is MappingEndEvent or kind is SequenceEndEvent:
                    value = stack.pop()[0]
                    if stack:
                        continue
                else:  # an alias
                    raise _NeedsFullLoader()
                if stack:
                    top = stack[-1]
                    if type(top[0]) is list:
                        top[0].append(value)
                    elif top[1] is _NO_KEY:
                        if kind is not ScalarEvent:
                            raise _NeedsFullLoader()  # a collection as a key
                        top[1] = value
                    else:
                        top[0][top[1]] = value
                        top[1] = _NO_KEY
                if kind is MappingStartEvent or kind is SequenceStartEvent:
                    stack.append([value, _NO_KEY])
                elif not stack:
                    docs.append(value)
                    get()  # DocumentEnd
                    break
    finally:
        parser.dispose()
    return docs


def _documents(file: Path, limit: int) -> Iterator[Any]:
    """Every YAML document of `file`; `_InputError` says what stops the reading."""
    text = _read_text(file, limit)
    try:
        if _PARSER is not _PyParser:
            try:
                yield from _fast_documents(text)
                return
            except _NeedsFullLoader:
                pass
        yield from yaml.load_all(text, Loader=_LOADER)
    except yaml.YAMLError as err:
        raise _InputError(f"not valid YAML: {_yaml_error(err, text)}") from None
    except RecursionError:  # MAX_DEPTH keeps this away; a caller deep in its own stack could still meet it
        raise _InputError("not readable: nested too deeply") from None


# ----- objects, checked -----


def _files(paths: Iterable[str], errors: list[str], notes: list[str]) -> Iterator[Path]:
    """Each input file once, in order (a directory and a file in it name that file twice)."""
    seen: set[Path] = set()
    for file in _named_files(paths, errors, notes):
        try:
            real = file.resolve()
        except (OSError, RuntimeError):  # a symlink loop: let the read report it
            real = file
        if real not in seen:
            seen.add(real)
            yield file


def _named_files(paths: Iterable[str], errors: list[str], notes: list[str]) -> Iterator[Path]:
    for raw in paths:
        path = Path(raw)
        if raw and path.is_dir():
            found = False
            for root, _dirs, names in sorted(os.walk(path)):
                for name in sorted(names):
                    file = Path(root) / name
                    if name.endswith(YAML_SUFFIXES) and file.is_file():  # not a FIFO a read would wait on
                        found = True
                        yield file
            if not found:
                notes.append(f"{raw}: no {', '.join(YAML_SUFFIXES)} file in this directory")
        elif raw and path.exists():
            yield path
        else:
            errors.append(f"{shown(raw) if not raw.isprintable() else raw}: no such file or directory")


def _objects_of(doc: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """Objects of one YAML document with where they sit in it ("" or "items[3]"); Lists are opened.

    A mapping without `kind` is not a Kubernetes object and is skipped; a
    List whose items are not objects is an error (ClusterStateError).
    """
    if not isinstance(doc, Mapping) or doc.get("kind") is None:
        return
    stack: list[tuple[str, Mapping[str, Any]]] = [("", doc)]
    while stack:
        where, obj = stack.pop()
        kind = obj.get("kind")
        if not isinstance(kind, str) or not kind:
            raise wrong_type(obj, f"{where}.kind" if where else "kind", "a non-empty kind name", kind)
        if kind.endswith("List") and "items" in obj:
            items = obj.get("items") or []
            if not isinstance(items, list):
                raise wrong_type(obj, f"{where}.items" if where else "items", "a list of objects", items)
            paths = [f"{where}.items[{i}]" if where else f"items[{i}]" for i in range(len(items))]
            for path, item in zip(paths, items):
                if not isinstance(item, Mapping):
                    raise wrong_type(obj, path, "an object", item)
            stack.extend(reversed(list(zip(paths, items))))  # popped in order
        else:
            yield where, dict(obj)


def _json_problem(obj: Mapping[str, Any]) -> tuple[str, str] | None:
    """The first place `obj` is not what JSON (the API server) could hold: (field path, what is wrong)."""
    stack: list[tuple[str, Any]] = [("", obj)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, Mapping):
            for key, item in value.items():
                if not isinstance(key, str):
                    return path or "(top)", f"has the key {shown(key)}; keys must be text"
                stack.append((f"{path}.{key}" if path else key, item))
        elif isinstance(value, list):
            stack.extend((f"{path}[{i}]", item) for i, item in enumerate(value))
        elif isinstance(value, bool) or value is None or isinstance(value, (str, float)):
            continue
        elif isinstance(value, int):
            if value not in INT64:
                return path, f"{shown(value)} does not fit in 64 bits"
        elif not isinstance(value, (datetime.date, datetime.datetime)):  # unquoted YAML timestamps
            return path, f"a {type_name(value)} is not a JSON value"
    return None


def check_peering(obj: Mapping[str, Any]) -> None:
    """What parsing and ranking a PeeringConnectivity assume of it; ClusterStateError otherwise."""
    if not name_of(obj):
        raise ClusterStateError(ObjectRef.of(obj), "metadata.name", "is required", reason="Missing")
    namespace_of(obj)
    m = meta(obj)
    uid, generation, created = m.get("uid"), m.get("generation"), m.get("creationTimestamp")
    if uid is not None and not isinstance(uid, str):
        raise wrong_type(obj, "metadata.uid", "text", uid)
    if generation is not None and (isinstance(generation, bool) or not isinstance(generation, int) or generation < 0):
        raise wrong_type(obj, "metadata.generation", "a non-negative integer", generation)
    if created is not None and not isinstance(created, (str, datetime.datetime, datetime.date)):
        raise wrong_type(obj, "metadata.creationTimestamp", "a timestamp", created)
    problem = _json_problem(obj)
    if problem is not None:
        raise ClusterStateError(ObjectRef.of(obj), problem[0], problem[1], reason="NotJSON")


def check_firewall_crd(obj: Mapping[str, Any]) -> None:
    """The FirewallConfiguration CRD is walked by `from_crd`: every schema on the way must be an object."""
    versions = mapping_at(obj, "spec").get("versions")
    if versions is None:
        return
    if not isinstance(versions, list):
        raise wrong_type(obj, "spec.versions", "a list", versions)
    for i, version in enumerate(versions):
        if not isinstance(version, Mapping):
            raise wrong_type(obj, f"spec.versions[{i}]", "an object", version)
        schema = version.get("schema")
        if schema is not None and not isinstance(schema, Mapping):
            raise wrong_type(obj, f"spec.versions[{i}].schema", "an object", schema)
        root = f"spec.versions[{i}].schema.openAPIV3Schema"
        stack: list[tuple[str, Any]] = [(root, (schema or {}).get("openAPIV3Schema"))]
        while stack:
            path, node = stack.pop()
            if node is None:
                continue
            if not isinstance(node, Mapping):
                raise wrong_type(obj, path, "a schema object", node)
            props = node.get("properties")
            if props is not None and not isinstance(props, Mapping):
                raise wrong_type(obj, f"{path}.properties", "an object of schemas", props)
            stack.extend((f"{path}.properties.{k}", v) for k, v in (props or {}).items())
            stack.append((f"{path}.items", node.get("items")))


def is_read(obj: Mapping[str, Any]) -> bool:
    """Whether `load` keeps `obj`: a kind liqosec reads, or the FirewallConfiguration CRD (no other CRD)."""
    kind = obj.get("kind")
    if kind == CRD_KIND:
        m = obj.get("metadata")
        return isinstance(m, Mapping) and m.get("name") == FIREWALL_CRD_NAME
    return isinstance(kind, str) and kind in READ_KINDS


def check(obj: Mapping[str, Any]) -> None:
    """Everything liqosec reads from `obj` is well formed, or ClusterStateError names the field."""
    kind = obj.get("kind")
    if kind == KIND:
        check_peering(obj)
    elif kind == CRD_KIND:
        check_object(obj)
        check_firewall_crd(obj)
    else:
        check_object(obj)


def _identity(obj: Mapping[str, Any]) -> tuple[str, str, str, str]:
    api_version = obj.get("apiVersion")
    group = api_version.rpartition("/")[0] if isinstance(api_version, str) else ""
    return (group, str(obj.get("kind")), namespace_of(obj), name_of(obj))


def _summary(kinds: Counter[str]) -> str:
    shown_kinds = ", ".join(f"{k} x{n}" if n > 1 else k for k, n in sorted(kinds.items())[:5])
    return shown_kinds + (", ..." if len(kinds) > 5 else "")


def _duplicates(seen: Mapping[tuple[str, str], list[str]]) -> list[str]:
    """One warning per pair of files: redefinitions usually come a whole file at a time."""
    out = []
    for (first, later), refs in seen.items():
        examples = "; ".join(refs[:3]) + ("; ..." if len(refs) > 3 else "")
        if first == later:
            out.append(
                f"{later}: defines {len(refs)} object(s) more than once, the last definition is used: {examples}"
            )
        else:
            out.append(
                f"{later}: redefines {len(refs)} object(s) of {first}, the later definitions are used: {examples}"
            )
    return out


def load(paths: Sequence[str], *, max_bytes: int | None = None) -> Loaded:
    """The objects liqosec reads from every file, checked; RenderError lists every problem found.

    Objects of other kinds are dropped. A later object with the same identity
    (group, kind, namespace, name) replaces an earlier one, as `kubectl apply`
    would, with a warning naming both places. A file holding no object
    liqosec reads is a warning; no such object in the whole input is an error.
    """
    limit = max_input_bytes() if max_bytes is None else max_bytes
    errors: list[str] = []
    problems: list[ClusterStateError] = []
    notes: list[str] = []
    objects: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    places: dict[tuple[str, str, str, str], tuple[str, str]] = {}
    redefined: dict[tuple[str, str], list[str]] = {}
    for file in _files(paths, errors, notes):
        found, others = 0, Counter[str]()
        try:
            for number, doc in enumerate(_documents(file, limit), 1):
                try:
                    for where, obj in _objects_of(doc):
                        if not is_read(obj):
                            others[str(obj["kind"])] += 1
                            continue
                        place = f"document {number}{', ' + where if where else ''}"
                        try:
                            check(obj)
                        except ClusterStateError as err:
                            located = err.at(str(file) if err.ref.name else f"{file} ({place})")
                            problems.append(located)
                            errors.append(str(located))
                            continue
                        found += 1
                        key = _identity(obj)
                        if key in places:
                            first_file, first_place = places[key]
                            redefined.setdefault((first_file, str(file)), []).append(
                                f"{ObjectRef.of(obj)} ({first_place}, then {place})"
                            )
                        objects[key], places[key] = obj, (str(file), place)
                except ClusterStateError as err:  # a List or kind that is not an object
                    located = err.at(f"{file} (document {number})")
                    problems.append(located)
                    errors.append(str(located))
        except _InputError as err:
            errors.append(f"{file}: {err}")
            continue
        if not found:
            what = "no Kubernetes object (a mapping with a kind)"
            if others:
                what = f"only kinds it ignores: {_summary(others)}"
            notes.append(f"{file}: holds no object liqosec reads; {what}")
    if errors:
        raise RenderError(errors, problems=problems)
    if not objects:
        kinds = ", ".join(sorted(READ_KINDS - {CRD_KIND}))
        raise RenderError([f"the input holds no object liqosec reads ({kinds}, the FirewallConfiguration CRD)", *notes])
    return Loaded(tuple(objects.values()), tuple(notes + _duplicates(redefined)))


def load_objects(paths: Sequence[str]) -> list[dict[str, Any]]:
    """`load` without the warnings."""
    return list(load(paths).objects)
