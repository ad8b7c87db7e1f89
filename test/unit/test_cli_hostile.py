"""Hostile input: `liqosec render` and `liqosec matrix` exit 0 or 1 with a message naming the file, never a traceback.

Every test here runs with LIQOSEC_TRACEBACK set, so an input that reaches the
CLI's last-resort handler ("internal error") raises instead and fails the test.
"""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

import liqosec.cli
from liqosec.cli import EXIT_INTERNAL, TRACEBACK_ENV, main
from liqosec.groups.view import ClusterStateError, ObjectRef, Snapshot
from liqosec.inputs import MAX_INPUT_BYTES_ENV, RenderError, load
from liqosec.render import render

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "test" / "corpus" / "nasty"
EXAMPLES = ROOT / "examples"

# File -> (exit code, a phrase the message holds). Exit 1 also promises the file's name in the message.
EXPECTED: dict[str, tuple[int, str]] = {
    "alias-bomb.yaml": (1, "alias bomb"),
    "bad-timestamp.yaml": (1, "invalid timestamp '2024-13-45'"),
    "configuration-cidr-host-bits.yaml": (
        1,
        "Configuration liqo-tenant-rome/rome: status.remote.cidr.pod[0]: '10.71.0.1/16' has host bits set; "
        "the network is 10.71.0.0/16",
    ),
    "control-characters.yaml": (1, "line 3, column 20: control characters are not allowed"),
    "crd-wrong-shape.yaml": (1, "spec.versions[0].schema.openAPIV3Schema.properties.spec: must be a schema object"),
    "duplicates.yaml": (0, "Pod default/web (document 1, then document 2)"),
    "empty.yaml": (1, "holds no object liqosec reads"),
    "endpointslice-fqdn.yaml": (0, "no PeeringConnectivity"),
    "escape-sequence-name.yaml": (1, "metadata.namespace: must be printable text"),
    "hostnetwork-string.yaml": (1, "Pod default/h: spec.hostNetwork: must be true or false, got the text 'false'"),
    "huge-decimal-integer.yaml": (1, "integer literal longer than 4300 characters"),
    "huge-hex-integer.yaml": (1, "integer literal longer than 4300 characters"),
    "huge-integers.yaml": (1, "Pod default/big: status.podIP: must be an IP address as text, got the number 9999"),
    "ipv6-everywhere.yaml": (0, ""),
    "kind-not-string.yaml": (1, "kind: must be a non-empty kind name, got a list ['Pod']"),
    "label-value-bool.yaml": (
        1,
        "metadata.labels.liqo.io/shadowPod: must be printable text (quote it in YAML), got true",
    ),
    "labels-list.yaml": (1, "Pod shop/cart-0: metadata.labels: must be an object of label keys and values, got a list"),
    "labels-string.yaml": (
        1,
        "Pod shop/cart-0: metadata.labels: must be an object of label keys and values, got the text 'app=cart'",
    ),
    "list-items-not-list.yaml": (1, "items: must be a list of objects"),
    "list-items-scalars.yaml": (1, "items[0]: must be an object, got the number 1"),
    "list-of-strings.yaml": (1, "holds no object liqosec reads; no Kubernetes object"),
    "merge-key-bomb.yaml": (1, "alias bomb"),
    "metadata-missing.yaml": (1, "Pod (no name): metadata.name: is required"),
    "metadata-string.yaml": (1, "metadata: must be an object, got the text 'liqo-tenant-rome'"),
    "namespaceoffloading-wrong.yaml": (1, "status.remoteNamespacesConditions: must be an object keyed by cluster id"),
    "network-cidr-host-bits.yaml": (
        1,
        "Network liqo/pod-cidr: spec.cidr: '10.1.0.5/16' has host bits set; the network is 10.1.0.0/16",
    ),
    "network-status-cidr-host-bits.yaml": (
        1,
        "status.cidr: '10.71.3.0/16' has host bits set; the network is 10.71.0.0/16",
    ),
    "not-utf8.yaml": (1, "is not UTF-8 text: byte 0xe9 at offset 45"),
    "only-comments.yaml": (1, "holds no object liqosec reads"),
    "peering-mixed-keys.yaml": (1, "PeeringConnectivity liqo-tenant-rome/rome: spec: has the key 1; keys must be text"),
    "peering-wrong-types.yaml": (1, "PeeringConnectivity liqo-tenant-rome/rome: metadata.uid: must be text"),
    "podip-invalid.yaml": (1, "Pod shop/cart-0: status.podIP: '999.1.1.1' is not an IPv4 or IPv6 address"),
    "podips-dict.yaml": (1, "Pod shop/cart-0: status.podIPs: must be a list of {ip: ...}, got an object"),
    "python-tag.yaml": (1, "could not determine a constructor for the tag"),
    "recursive-alias.yaml": (1, "alias 'm' refers to a collection that contains it"),
    "sexagesimal.yaml": (1, "integer literal longer than 4300 characters"),
    "surrogate-escape.yaml": (1, "invalid Unicode character escape code"),
    "syntax-error.yaml": (1, "not valid YAML: line 4"),
    "unicode-names.yaml": (0, ""),
    "utf16-bom.yaml": (0, "no PeeringConnectivity"),
}


@pytest.fixture(autouse=True)
def internal_errors_raise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TRACEBACK_ENV, "1")
    monkeypatch.delenv(MAX_INPUT_BYTES_ENV, raising=False)


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(argv), out=out), out.getvalue()


def check(
    command: str, file: Path, capsys: pytest.CaptureFixture[str], code: int, phrase: str, *, names_file: bool = True
) -> str:
    got, out = run(command, "-f", str(file))
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert got == code, err
    if code:
        assert out == "", "no partial output on bad input"
        assert str(file) in err or not names_file
    assert phrase in err
    return err


def test_every_corpus_file_has_an_expectation() -> None:
    assert sorted(p.name for p in CORPUS.glob("*.yaml")) == sorted(EXPECTED)
    assert all(p.stat().st_size < 16_384 for p in CORPUS.iterdir()), (
        "keep the corpus small; generate big files in tests"
    )


@pytest.mark.parametrize("command", ["render", "matrix"])
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_in_process(name: str, command: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, phrase = EXPECTED[name]
    check(command, CORPUS / name, capsys, code, phrase)


SUBPROCESS_CASES = [
    "not-utf8.yaml",
    "alias-bomb.yaml",
    "labels-string.yaml",
    "podip-invalid.yaml",
    "list-of-strings.yaml",
]


@pytest.mark.parametrize("name", SUBPROCESS_CASES)
def test_corpus_as_a_command(name: str) -> None:
    env = {**os.environ, TRACEBACK_ENV: "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "liqosec", "render", "-f", str(CORPUS / name)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert proc.returncode == EXPECTED[name][0]
    assert "Traceback" not in proc.stderr
    assert str(CORPUS / name) in proc.stderr and EXPECTED[name][1] in proc.stderr
    assert proc.stdout == ""


# ----- the crashes of the issue, word for word -----


def test_binary_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    binary = tmp_path / "ls.yaml"
    binary.write_bytes(Path(sys.executable).read_bytes()[:4096])
    err = check("render", binary, capsys, 1, "is not UTF-8 text")
    assert "binary file" in err


def test_labels_as_a_string(capsys: pytest.CaptureFixture[str]) -> None:
    err = check("render", CORPUS / "labels-string.yaml", capsys, 1, "")
    assert f"{CORPUS / 'labels-string.yaml'}: Pod shop/cart-0: metadata.labels: must be an object" in err


def test_pod_ip_out_of_range(capsys: pytest.CaptureFixture[str]) -> None:
    err = check("render", CORPUS / "podip-invalid.yaml", capsys, 1, "")
    assert (
        f"{CORPUS / 'podip-invalid.yaml'}: Pod shop/cart-0: status.podIP: '999.1.1.1' is not an IPv4 or IPv6 address"
        in err
    )


def test_a_file_without_objects_is_a_warning_when_others_have_some(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run("render", "-f", str(CORPUS / "list-of-strings.yaml"), "-f", str(EXAMPLES / "quick-start.yaml"))
    err = capsys.readouterr().err
    assert code == 0 and "liqosec-rome" in out
    assert f"warning: {CORPUS / 'list-of-strings.yaml'}: holds no object liqosec reads" in err


def test_a_file_of_ignored_kinds_says_which(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    deploy = tmp_path / "deploy.yaml"
    deploy.write_text("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, labels: oops}\n")
    code, _ = run("render", "-f", str(deploy), "-f", str(EXAMPLES / "quick-start.yaml"))
    assert code == 0  # a kind liqosec does not read is not checked either
    assert "only kinds it ignores: Deployment" in capsys.readouterr().err


def test_empty_directory_and_empty_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("render", "-f", str(tmp_path))[0] == 1
    assert f"{tmp_path}: no .yaml, .yml, .json file in this directory" in capsys.readouterr().err
    assert run("render", "-f", "")[0] == 1
    assert ": no such file or directory" in capsys.readouterr().err


def test_duplicates_warn_with_both_places_and_the_later_wins(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run("matrix", "-f", str(CORPUS / "duplicates.yaml"), "-o", "json")
    assert code == 0 and '"ip": "10.1.1.11"' in out and "10.1.1.10" not in out
    assert "defines 1 object(s) more than once, the last definition is used" in capsys.readouterr().err


def test_help_documents_duplicates_limits_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["render", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "taken from its later definition" in text and "with a warning naming both places" in text
    assert MAX_INPUT_BYTES_ENV in text and "70 internal error" in text


def test_a_file_is_read_once_even_if_named_twice(capsys: pytest.CaptureFixture[str]) -> None:
    quick = str(EXAMPLES / "quick-start.yaml")
    assert run("render", "-f", quick, "-f", quick)[0] == 0
    assert "more than once" not in capsys.readouterr().err


# ----- big inputs, generated -----


DEEP = 100_000


@pytest.mark.parametrize(
    "body",
    [
        "spec: {x: " + "[" * DEEP + "]" * DEEP + "}\n",  # libyaml's own composer crashes the interpreter on this
        "spec:\n  x:\n  - " + "- " * DEEP + "end\n",
        "spec:\n" + "".join(" " * (i + 1) + "a:\n" for i in range(400)) + " " * 401 + "b: 1\n",
    ],
    ids=["flow", "compact-block", "indented"],
)
def test_deep_nesting(body: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    deep = tmp_path / "deep.yaml"
    deep.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: deep, namespace: default}\n" + body)
    check("render", deep, capsys, 1, "collections are nested more than 200 deep")


def test_a_hundred_thousand_documents(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    many = tmp_path / "many.yaml"
    many.write_text(
        "".join(f"---\n{{kind: Pod, metadata: {{name: p{i}, namespace: default}}}}\n" for i in range(100_000))
    )
    check("render", many, capsys, 0, "no PeeringConnectivity")


def test_too_many_endpoints_for_a_matrix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pods = tmp_path / "pods.yaml"
    pods.write_text(
        "".join(
            f"---\n{{kind: Pod, metadata: {{name: p{i}, namespace: d}}, "
            f"status: {{podIP: 10.1.{i // 250}.{i % 250}}}}}\n"
            for i in range(300)
        )
    )
    check("matrix", pods, capsys, 1, "the matrix would have 301 endpoints", names_file=False)  # the input as a whole
    check("render", pods, capsys, 0, "")


def test_size_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(MAX_INPUT_BYTES_ENV, "1000")
    big = tmp_path / "big.yaml"
    big.write_text("# padding\n" * 200 + (EXAMPLES / "quick-start.yaml").read_text())
    check(
        "render",
        big,
        capsys,
        1,
        f"is larger than 1,000 bytes, the most liqosec reads from one file (set {MAX_INPUT_BYTES_ENV})",
    )
    monkeypatch.setenv(MAX_INPUT_BYTES_ENV, "10_000")
    assert run("render", "-f", str(EXAMPLES / "quick-start.yaml"))[0] == 0


@pytest.mark.parametrize("value", ["abc", "0", "-5", "1.5"])
def test_a_bad_size_limit_is_a_usage_error(
    value: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(MAX_INPUT_BYTES_ENV, value)
    with pytest.raises(SystemExit) as exit_:
        run("render", "-f", str(EXAMPLES / "quick-start.yaml"))
    assert exit_.value.code == 2
    assert "expected a positive number of bytes" in capsys.readouterr().err


def test_names_a_terminal_cannot_show_are_escaped(capsys: pytest.CaptureFixture[str]) -> None:
    raw = io.BytesIO()
    out = io.TextIOWrapper(raw, encoding="ascii")
    assert main(["matrix", "-f", str(CORPUS / "unicode-names.yaml")], out=out) == 0
    out.flush()
    assert b"peering caf\\xe9-\\u6771\\u4eac" in raw.getvalue()


# ----- the last resort -----


def test_internal_error_is_one_line_without_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(liqosec.cli, "render", broken)
    monkeypatch.delenv(TRACEBACK_ENV)
    assert run("render", "-f", str(EXAMPLES / "quick-start.yaml"))[0] == EXIT_INTERNAL
    err = capsys.readouterr().err
    assert "internal error: RuntimeError: boom; please report a bug" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    monkeypatch.setenv(TRACEBACK_ENV, "1")
    with pytest.raises(RuntimeError, match="boom"):
        run("render", "-f", str(EXAMPLES / "quick-start.yaml"))


# ----- structured errors -----


def test_errors_carry_file_object_field_and_reason() -> None:
    with pytest.raises(RenderError) as caught:
        load([str(CORPUS / "podip-invalid.yaml"), str(CORPUS / "labels-string.yaml")])
    first, second = caught.value.problems
    assert first.source == str(CORPUS / "podip-invalid.yaml")
    assert first.ref == ObjectRef("Pod", "shop", "cart-0")
    assert (first.path, first.reason) == ("status.podIP", "InvalidAddress")
    assert (second.path, second.reason) == ("metadata.labels", "WrongType")
    copy = pickle.loads(pickle.dumps(first))
    assert (str(copy), copy.ref, copy.reason) == (str(first), first.ref, first.reason)


def test_the_api_without_files_raises_render_error_too() -> None:
    bad = {"kind": "Pod", "metadata": {"name": "a", "namespace": "n", "labels": "x"}}
    with pytest.raises(RenderError, match="Pod n/a: metadata.labels"):
        render([bad])
    with pytest.raises(ClusterStateError) as caught:
        Snapshot([bad])
    assert caught.value.source == "" and caught.value.path == "metadata.labels"
