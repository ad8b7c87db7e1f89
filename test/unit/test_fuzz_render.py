"""Fuzzing the render pipeline: any input either renders or raises RenderError with a message.

Objects are Kubernetes-shaped with wrong types at every level (labels as text,
lists or numbers, pod IPs as objects, metadata missing, huge integers, unicode,
deep nesting), mixed with well-formed ones so resolution really runs. Each
cluster goes through a file, `load`, `render` and `build_matrix`, and through
the CLI in-process with LIQOSEC_TRACEBACK set (its last-resort handler then
raises instead of answering). Also: YAML-ish text and raw bytes, and the fast
YAML path against PyYAML's SafeLoader.
"""

from __future__ import annotations

import io
import math
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from liqosec.cli import TRACEBACK_ENV, main
from liqosec.inputs import _LOADER, RenderError, _fast_documents, _NeedsFullLoader, load
from liqosec.matrix import build_matrix
from liqosec.render import render

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "provider-isolate-offloaded.yaml"
BASELINE = [d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d]
FUZZ = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)

LABEL_KEYS = [
    "offloading.liqo.io/origin",
    "liqo.io/shadowPod",
    "liqo.io/type",
    "liqo.io/remote-cluster-id",
    "ipam.liqo.io/network-type",
    "configuration.liqo.io/cidr-type",
    "kubernetes.io/service-name",
    "app",
]
WORDS = [
    "rome",
    "milan",
    "true",
    "virtual-node",
    "pod-cidr",
    "pod",
    "api",
    "offloading",
    "liqo-tenant-rome",
    "shop-rome",
    "default",
    "",
    " ",
    "Running",
    "Succeeded",
    "Failed",
    "IPv4",
    "IPv6",
    "FQDN",
    "v1beta1",
    "caf\u00e9",
    "\u6771\u4eac",
    "\x1b[31m",
    "a" * 300,
    "firewallconfigurations.networking.liqo.io",
    "remote-cluster",
    "offloaded",
    "allow",
    "deny",
]
ADDRESSES = [
    "10.1.5.10",
    "10.71.1.10",
    "999.1.1.1",
    "10.1.5",
    "010.1.5.10",
    "fd00::1",
    "fe80::1%eth0",
    "::",
    "0.0.0.0",
    "255.255.255.255",
    "10.1.0.0/16",
    "10.1.0.5/16",
    "fd00::/64",
    "10.0.0.0/33",
    "1.2.3.4-1.2.3.9",
    "localhost",
]


def text() -> st.SearchStrategy[str]:
    return st.sampled_from(WORDS + ADDRESSES) | st.text(max_size=12)


SCALARS: st.SearchStrategy[Any] = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**200), max_value=2**200)
    | st.floats(allow_nan=False)
    | text()
    | st.dates()
    | st.datetimes()
)
JUNK: st.SearchStrategy[Any] = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(text() | st.integers() | st.booleans(), inner, max_size=4)
    ),
    max_leaves=12,
)


def maybe(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly the right shape, sometimes anything at all."""
    return st.one_of(good, good, JUNK)


def obj(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional=fields)


def nested(depth: int) -> st.SearchStrategy[Any]:
    """A value nested `depth` deep (near and past the loader's bound)."""
    return st.just(0).map(lambda _: _nest(depth))


def _nest(depth: int) -> Any:
    value: Any = "bottom"
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


LABELS = maybe(st.dictionaries(st.sampled_from(LABEL_KEYS) | text(), maybe(st.sampled_from(WORDS)), max_size=4))
METADATA = maybe(
    obj(
        name=maybe(st.sampled_from(WORDS)),
        namespace=maybe(st.sampled_from(WORDS)),
        labels=LABELS,
        uid=maybe(text()),
        generation=maybe(st.integers()),
        creationTimestamp=maybe(text() | st.datetimes()),
    )
)
IP = maybe(st.sampled_from(ADDRESSES))


def kind(name: str, api: str, **fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"apiVersion": st.just(api), "kind": st.just(name)}, optional={"metadata": METADATA, **fields}
    )


OBJECTS = st.one_of(
    kind(
        "Pod",
        "v1",
        spec=maybe(obj(nodeName=maybe(st.sampled_from(WORDS)), hostNetwork=maybe(st.booleans()))),
        status=maybe(
            obj(phase=maybe(st.sampled_from(WORDS)), podIP=IP, podIPs=maybe(st.lists(maybe(obj(ip=IP)), max_size=3)))
        ),
    ),
    kind("Namespace", "v1"),
    kind("Node", "v1"),
    kind("Service", "v1"),
    kind("Network", "ipam.liqo.io/v1alpha1", spec=maybe(obj(cidr=IP)), status=maybe(obj(cidr=IP))),
    kind(
        "Configuration",
        "networking.liqo.io/v1beta1",
        status=maybe(obj(remote=maybe(obj(cidr=maybe(obj(pod=maybe(st.lists(IP, max_size=3)))))))),
    ),
    kind(
        "NamespaceOffloading",
        "offloading.liqo.io/v1beta1",
        status=maybe(obj(remoteNamespacesConditions=maybe(st.dictionaries(st.sampled_from(WORDS), JUNK, max_size=2)))),
    ),
    kind(
        "EndpointSlice",
        "discovery.k8s.io/v1",
        addressType=maybe(st.sampled_from(["IPv4", "IPv6", "FQDN"])),
        endpoints=maybe(st.lists(maybe(obj(addresses=maybe(st.lists(IP, max_size=3)))), max_size=3)),
    ),
    kind(
        "PeeringConnectivity",
        "security.liqo.io/v1",
        spec=maybe(
            obj(
                rules=maybe(
                    st.lists(
                        maybe(
                            obj(
                                source=maybe(
                                    obj(group=maybe(st.sampled_from(WORDS)), namespace=maybe(st.sampled_from(WORDS)))
                                ),
                                destination=maybe(obj(group=maybe(st.sampled_from(WORDS)))),
                                action=maybe(st.sampled_from(["allow", "deny", "Allow"])),
                            )
                        ),
                        max_size=4,
                    )
                ),
                defaultAction=maybe(st.sampled_from(["allow", "deny"])),
                securityMode=maybe(st.sampled_from(["FullPodToPod", "IntraClusterTrafficSegregation", "x"])),
            )
        ),
    ),
    kind(
        "CustomResourceDefinition",
        "apiextensions.k8s.io/v1",
        spec=maybe(
            obj(versions=maybe(st.lists(maybe(obj(name=st.just("v1beta1"), schema=maybe(obj(openAPIV3Schema=JUNK)))))))
        ),
    ),
    kind("Pod", "v1", spec=nested(150)),  # deeper: see test_nesting_at_the_bound (repr and dump recurse)
    st.fixed_dictionaries(
        {"kind": maybe(st.sampled_from(["Pod", "List", "PodList", ""]))}, optional={"items": JUNK, "metadata": JUNK}
    ),
    JUNK,
)
# Some of the example's well-formed objects, so a peering is often there and resolves.
CLUSTERS = st.tuples(st.lists(st.sampled_from(BASELINE), max_size=len(BASELINE)), st.lists(OBJECTS, max_size=6)).map(
    lambda parts: parts[0] + parts[1]
)


@contextmanager
def traceback_mode() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(TRACEBACK_ENV, "1")
        yield


def pipeline(file: Path) -> None:
    """The whole of `render` and `matrix` on one file: success, or RenderError with something to say."""
    try:
        objects = load([str(file)]).objects
        render(objects)
        build_matrix(objects)
    except RenderError as err:
        assert err.errors and all(line.strip() for line in err.errors)
    with traceback_mode():
        for command in ("render", "matrix"):
            assert main([command, "-f", str(file)], out=io.StringIO()) in (0, 1)


@contextmanager
def written(data: bytes) -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "input.yaml"
        file.write_bytes(data)
        yield file


@FUZZ
@given(CLUSTERS, st.booleans())
def test_any_cluster_renders_or_says_why(cluster: list[Any], flow: bool) -> None:
    with written(yaml.safe_dump_all(cluster, default_flow_style=flow, allow_unicode=True).encode()) as file:
        pipeline(file)


@FUZZ
@given(CLUSTERS)
def test_the_api_on_unchecked_objects_raises_render_error_only(cluster: list[Any]) -> None:
    """`render` and `build_matrix` without `load` (no file, no up-front checks): accessors still say what is wrong."""
    objects = [o for o in cluster if isinstance(o, dict)]
    try:
        render(objects)
        build_matrix(objects)
    except RenderError as err:
        assert err.errors and all(line.strip() for line in err.errors)


@FUZZ
@given(
    st.lists(
        st.lists(OBJECTS, max_size=3).map(lambda items: {"apiVersion": "v1", "kind": "List", "items": items}),
        max_size=2,
    )
)
def test_lists_render_or_say_why(lists: list[Any]) -> None:
    with written(yaml.safe_dump_all(lists + BASELINE).encode()) as file:
        pipeline(file)


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=190, max_value=215), st.sampled_from(["[]", "{}", "- "]))
def test_nesting_at_the_bound(depth: int, style: str) -> None:
    head = "apiVersion: v1\nkind: Pod\nmetadata: {name: deep, namespace: default}\n"
    if style == "- ":
        body = "spec:\n  x:\n  - " + "- " * depth + "end\n"
    else:
        body = "spec: {x: " + (style[0] if style == "[]" else "{a: ") * depth + "1" + style[1] * depth + "}\n"
    with written((head + body).encode()) as file:
        pipeline(file)


TOKENS = [
    *"-:[]{}&*!|>'\"#%@`,?.~<= \n\t\\",
    "a",
    "b",
    "1",
    "0x",
    "kind: Pod",
    "\n- ",
    ": ",
    "&a ",
    "*a",
    "!!",
    "<<: ",
    "\u00e9",
    "\x07",
]
YAMLISH = st.lists(st.sampled_from(TOKENS), max_size=40).map("".join)


@settings(max_examples=300, deadline=None)
@given(YAMLISH)
def test_yaml_ish_text_loads_or_says_why(source: str) -> None:
    with written(source.encode()) as file:
        pipeline(file)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_any_bytes_load_or_say_why(data: bytes) -> None:
    with written(b"kind: Pod\nmetadata: {name: a}\n" + data) as file:
        pipeline(file)


# ----- the fast YAML path is PyYAML's SafeLoader, faster -----

# The reference: SafeLoader on libyaml, the parser the fast path reads events from (libyaml and PyYAML's
# pure parser differ on a few corner cases, such as a lone `!`).
REFERENCE: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

PLAIN: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.dates()
    | st.datetimes()
    | st.sampled_from(
        ["yes", "No", "~", "null", "0o17", "0x1F", "1_000", "190:20:30", "1e3", ".inf", "2024-01-01", "<<", "="]
    ),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=6) | st.integers() | st.booleans(), inner, max_size=4)
    ),
    max_leaves=20,
)


def same(a: Any, b: Any) -> bool:
    return repr(a) == repr(b) or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


@settings(max_examples=300, deadline=None)
@given(st.lists(PLAIN, max_size=3), st.sampled_from([None, True, False]), st.booleans())
def test_fast_path_reads_what_safeloader_reads(docs: list[Any], flow: bool | None, canonical: bool) -> None:
    source = yaml.safe_dump_all(docs, default_flow_style=flow, canonical=canonical, allow_unicode=True)
    expected = list(yaml.load_all(source, Loader=REFERENCE))
    try:
        got = _fast_documents(source)
    except _NeedsFullLoader:
        return  # read again by the full loader
    assert same(got, expected)


@settings(max_examples=300, deadline=None)
@given(YAMLISH)
def test_fast_path_agrees_on_any_text(source: str) -> None:
    try:
        expected = list(yaml.load_all(source, Loader=REFERENCE))
    except Exception:
        expected = None
    try:
        got = _fast_documents(source)
    except _NeedsFullLoader:
        return
    except yaml.YAMLError:
        assert expected is None
        return
    assert expected is not None and same(got, expected)


@settings(max_examples=300, deadline=None)
@given(YAMLISH)
def test_bounded_loader_agrees_on_any_text(source: str) -> None:
    """Where the full loader reads a text at all, it reads what SafeLoader reads; a text SafeLoader
    refuses, it refuses too, with SafeLoader's error or a YAML error of its own."""
    try:
        expected = list(yaml.load_all(source, Loader=REFERENCE))
    except Exception as err:
        with pytest.raises((type(err), yaml.YAMLError)):
            list(yaml.load_all(source, Loader=_LOADER))
        return
    try:
        got = list(yaml.load_all(source, Loader=_LOADER))
    except yaml.YAMLError as err:
        assert "alias" in str(err) or "nested" in str(err)  # the bounds, nothing else
        return
    assert same(got, expected)
