"""The original engine's examples and the security modes' (Liqo issue 1879), rendered from examples/, give the
verdicts a reader expects; and every example the docs show renders what the text says it does."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from liqosec.cli import main
from liqosec.firewall.capabilities import Capabilities
from liqosec.inputs import load_objects
from liqosec.matrix import Matrix, build_matrix
from liqosec.render import render

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

# Addresses of the example clusters (see the comments at the top of each file).
PROVIDER_WEB, PROVIDER_METRICS = "10.1.1.10", "10.1.2.20"
CART0, CART1 = "10.1.5.10", "10.1.5.11"
ROME_POD = "10.71.9.9"  # any pod of rome, as seen from the provider
CONSUMER_ADMIN, FRONTEND, CACHE, BACKEND_SHADOW = "10.0.2.5", "10.0.1.10", "10.0.1.11", "10.80.3.7"
MILAN_POD = "10.80.9.9"  # a pod of milan that is not ours
INTERNET = "198.51.100.10"


def matrix(name: str, *, stateful: bool = False) -> Matrix:
    return build_matrix(load_objects([str(EXAMPLES / name)]), capabilities=Capabilities(ctstate=stateful))


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_every_example_renders_one_firewall(name: str) -> None:
    [fc] = render(load_objects([str(EXAMPLES / name)]))
    assert fc["kind"] == "FirewallConfiguration"


def test_example_1_offloaded_pods_talk_only_to_their_consumer() -> None:
    m = matrix("provider-isolate-offloaded.yaml")
    assert m.connect(ROME_POD, CART0) and m.connect(CART0, ROME_POD)
    assert not m.packet(CART0, PROVIDER_WEB)  # offloaded pods cannot reach local pods
    assert not m.packet(CART0, INTERNET)
    assert not m.packet(ROME_POD, PROVIDER_WEB)  # rome reaches only what it offloaded
    assert m.connect(PROVIDER_WEB, PROVIDER_METRICS)  # local traffic is not this peering's business


def test_quick_start_leaves_rome_free_to_reach_local_pods() -> None:
    m = matrix("quick-start.yaml")
    assert m.connect(ROME_POD, CART0) and m.connect(CART0, ROME_POD)
    assert not m.packet(CART0, PROVIDER_WEB)
    assert m.connect(ROME_POD, PROVIDER_WEB)  # no rule denies remote-cluster in the quick start


def test_example_2_consumer_admits_only_its_offloaded_workloads() -> None:
    m = matrix("consumer-vc-only.yaml")
    assert m.packet(BACKEND_SHADOW, FRONTEND) and m.connect(BACKEND_SHADOW, CONSUMER_ADMIN)
    assert not m.packet(MILAN_POD, FRONTEND)
    # Stateless: a local pod's SYN to a milan pod passes, the reply is denied.
    assert m.packet(FRONTEND, MILAN_POD) and not m.connect(FRONTEND, MILAN_POD)
    assert matrix("consumer-vc-only.yaml", stateful=True).connect(FRONTEND, MILAN_POD)


def test_full_pod_to_pod_restricts_nothing() -> None:
    m = matrix("mode-full-pod-to-pod.yaml")
    assert all(all(row) for row in m.grid())


def test_segregation_consumer_side_follows_seed_003() -> None:
    stateless, stateful = (
        matrix("mode-segregation-consumer.yaml"),
        matrix("mode-segregation-consumer.yaml", stateful=True),
    )
    p1, p2, p3, p4, p5 = CONSUMER_ADMIN, FRONTEND, CACHE, BACKEND_SHADOW, MILAN_POD
    assert stateful.connect(p1, p4) and stateful.connect(p3, p4)  # local pods reach offloaded pods
    assert not stateful.packet(p4, p1) and not stateful.packet(p4, p3)  # not vice versa
    assert stateful.connect(p5, p2)  # the remote cluster reaches the offloaded service's backend
    assert not stateful.packet(p5, p1) and not stateful.packet(p5, p3)
    assert stateful.connect(p1, p2) and stateful.connect(p1, INTERNET)  # intra-cluster untouched
    # Without conntrack the one-way allow cannot carry replies: P1 to P4 breaks.
    assert stateless.packet(p1, p4) and not stateless.connect(p1, p4)


def test_segregation_provider_side_follows_seed_003() -> None:
    m = matrix("mode-segregation-provider.yaml", stateful=True)
    assert m.connect(ROME_POD, CART0) and m.connect(CART0, ROME_POD)  # offloaded <-> its consumer
    assert m.connect(CART0, PROVIDER_WEB) and m.connect(PROVIDER_WEB, CART0)  # offloaded <-> local
    assert m.connect(CART0, INTERNET)  # P4 to I2
    assert m.connect(PROVIDER_WEB, "10.71.1.10")  # P5 to S2: the reflected service's backend in rome
    assert not m.packet(PROVIDER_WEB, ROME_POD)  # but not to any other pod of rome
    assert not m.packet(ROME_POD, PROVIDER_WEB)  # and rome cannot reach local pods


# ----- the examples the docs show, rendered as the text says -----
# After every fenced block that runs `liqosec render` or `liqosec matrix`, and after every block that is a whole
# PeeringConnectivity manifest, the docs say what it renders in an HTML comment, one line per command:
#   <!-- renders:
#   render -f examples/provider-isolate-offloaded.yaml => liqosec-rome (2 rules)
#   matrix -f examples/mode-segregation-consumer.yaml => milan (2 rules)
#   this with examples/provider-isolate-offloaded.yaml => liqosec-rome (2 rules)
#   render -f cluster.yaml => not run (cluster.yaml stands for yours)
#   -->
# `this with FILES` renders the block's manifest with those files (it replaces their object of the same name);
# `nothing` is a render that prints no object; `not run` is only for input that is not in the repository.
ROOT = EXAMPLES.parent
DOCS = sorted([ROOT / "README.md", ROOT / "chart/README.md", *(ROOT / "docs").glob("*.md")])
_BLOCK = re.compile(r"^( *)```(\w*)\n(.*?)^\1```\n", re.S | re.M)
_STATEMENT = re.compile(r"[ \t]*<!-- renders:\n(.*?)-->", re.S)
_COMMAND = re.compile(r"^\s*(?:\$ )?liqosec (render|matrix) (.*?)(?:\s+#.*)?$")


@dataclass(frozen=True)
class Shown:
    """A block of a doc that renders, and what the text says it renders."""

    where: str  # file:line
    commands: tuple[str, ...]  # "render -f ...", "matrix -f ...", "this with ..."
    manifest: str  # the block's YAML, for `this with`
    output: tuple[str, ...]  # lines shown after a `$ liqosec ...` line
    stated: dict[str, str]  # command -> what the text says it renders
    has_statement: bool


def _yaml_peering(text: str) -> bool:
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError:
        return False
    return any(isinstance(d, dict) and d.get("kind") == "PeeringConnectivity" and "apiVersion" in d for d in docs)


def shown_blocks(doc: Path) -> list[Shown]:
    text = doc.read_text()
    out = []
    for m in _BLOCK.finditer(text):
        lines = [line.strip() for line in m.group(3).splitlines()]
        commands = tuple(f"{c[1]} {c[2]}" for line in lines if (c := _COMMAND.match(line)))
        manifest = m.group(2) == "yaml" and _yaml_peering(m.group(3))
        if not commands and not manifest:
            continue
        where = f"{doc.relative_to(ROOT)}:{text.count(chr(10), 0, m.start()) + 1}"
        said = _STATEMENT.match(text, m.end())
        stated = dict(line.strip().split(" => ", 1) for line in said.group(1).strip().splitlines()) if said else {}
        if manifest:
            commands += tuple(c for c in stated if c.startswith("this with "))
        first_shown = next((i for i, line in enumerate(lines) if line.startswith("$ ")), None)
        output = () if first_shown is None else tuple(line for line in lines[first_shown + 1 :] if line)
        out.append(Shown(where, commands, m.group(3) if manifest else "", output, stated, said is not None))
    return out


SHOWN = [s for doc in DOCS for s in shown_blocks(doc)]


def _run(argv: list[str]) -> tuple[str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(stderr):
        assert main(argv, out=stdout) == 0, (argv, stderr.getvalue())
    return stdout.getvalue(), stderr.getvalue()


def _rules(n: int) -> str:
    return f"{n} rule" if n == 1 else f"{n} rules"


def rendered(shown: Shown, command: str, tmp: Path) -> tuple[str, str]:
    """What the command renders, said as the docs say it, and its whole output."""
    verb, _, rest = command.partition(" ")
    argv = shlex.split(rest)
    if verb == "this":  # "this with FILES": the block's manifest on those files
        manifest = tmp / "manifest.yaml"
        manifest.write_text(shown.manifest)
        verb, argv = "render", [a for f in argv[1:] for a in ("-f", str(ROOT / f))] + ["-f", str(manifest)]
    files = [argv[i + 1] for i, a in enumerate(argv) if a == "-f"]
    if not all((ROOT / f).exists() for f in files):
        return "not run", ""
    argv = [str(ROOT / a) if i and argv[i - 1] == "-f" else a for i, a in enumerate(argv)]
    argv = [a for a in argv if a != ">"][: argv.index(">")] if ">" in argv else argv
    if verb == "matrix":
        table, err = _run(["matrix", *argv])
        peerings = json.loads(_run(["matrix", *argv, "-o", "json"])[0])["peerings"]
        return ", ".join(f"{k} ({_rules(v['rules'])})" for k, v in peerings.items()), table + err
    text, err = _run(["render", *argv])
    objects = [d for d in yaml.safe_load_all(text) if d]
    objects = objects[0] if objects and isinstance(objects[0], list) else objects  # -o json: one list
    counts = [sum(len(c["rules"].get("filterRules") or ()) for c in o["spec"]["table"]["chains"]) for o in objects]
    said = ", ".join(f"{o['metadata']['name']} ({_rules(n)})" for o, n in zip(objects, counts)) or "nothing"
    return said, text + err


@pytest.mark.parametrize("shown", SHOWN, ids=[s.where for s in SHOWN])
def test_a_doc_example_renders_what_its_text_says(shown: Shown, tmp_path: Path) -> None:
    assert shown.has_statement, f"{shown.where}: a block that renders needs a `<!-- renders: ... -->` comment after it"
    assert shown.commands and set(shown.commands) == set(shown.stated), (
        f"{shown.where}: the comment states {sorted(shown.stated)}, the block runs {list(shown.commands)}"
    )
    outputs = []
    for command in shown.commands:
        said, output = rendered(shown, command, tmp_path)
        assert said == shown.stated[command] or (said == "not run" and shown.stated[command].startswith(said)), (
            f"{shown.where}: `{command}` renders {said}, the text says {shown.stated[command]}"
        )
        outputs.append(output)
    whole = [" ".join(line.split()) for output in outputs for line in output.splitlines()]
    for line in shown.output:  # the output a block shows is the command's, line for line
        assert not whole or " ".join(line.split()) in whole, f"{shown.where}: the block shows {line!r}, not printed"


def test_every_example_a_doc_names_is_rendered_in_that_doc() -> None:
    for doc in DOCS:
        named = set(re.findall(r"examples/[\w-]+\.yaml", doc.read_text()))
        run = {
            f
            for s in SHOWN
            if s.where.startswith(f"{doc.relative_to(ROOT)}:")
            for c in s.commands
            for f in re.findall(r"examples/[\w-]+\.yaml", c)
        }
        assert named <= run, f"{doc.relative_to(ROOT)}: names {sorted(named - run)} without rendering them"
    assert SHOWN, "no doc block renders anything: the parser is broken"
