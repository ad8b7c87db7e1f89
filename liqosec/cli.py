"""The `liqosec` command: render, matrix, explain, run.

Exit codes: 0 done, 1 invalid input (the message names the file, the object
and the field) or a question `explain` cannot answer (an unknown pod or
peering), 2 usage, 70 internal error (a bug: `render`, `matrix` and `explain`
print one line asking for a report, never a traceback, unless
LIQOSEC_TRACEBACK is set), 130 interrupted, 141 stdout closed early.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from collections.abc import Callable, Sequence
from typing import Any, TextIO

import yaml

from liqosec import picture, source
from liqosec.api.peeringconnectivity import KIND
from liqosec.compiler import ipv6
from liqosec.compiler.firewallconfiguration import DRY_RUN_LABEL, CompiledPeering
from liqosec.compiler.governance import is_dry_run
from liqosec.compiler.ports import L4, parse_port
from liqosec.explain import ExplainError, explain, explanation_json, format_explanation
from liqosec.firewall.capabilities import Capabilities
from liqosec.inputs import MAX_INPUT_BYTES_ENV, READ_KINDS, RenderError, load, max_input_bytes
from liqosec.matrix import Matrix, build_matrix, in_force
from liqosec.offline import capabilities_of, outcomes
from liqosec.render import firewalls_of, render
from liqosec.render import is_dry_run as is_dry_run_outcome

EXIT_INVALID = 1
EXIT_INTERNAL = 70  # EX_SOFTWARE (sysexits.h)
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # as a shell reports a process killed by SIGPIPE
# Set (to anything but "" or "0") to let an internal error escape with its traceback: for bug reports, and for
# the tests, which fail if any input reaches the last-resort handler.
TRACEBACK_ENV = "LIQOSEC_TRACEBACK"
# Messages beyond this many per kind are counted, not printed: 20,000 bad pods are one problem repeated.
MAX_MESSAGES = 20
MAX_MESSAGE_CHARS = 2_000
# PyYAML's C emitter writes the same YAML ~3x faster.
_DUMPER: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

_KINDS = textwrap.fill(
    ", ".join(sorted(READ_KINDS)) + " (the FirewallConfiguration CRD only).",
    width=78,
    initial_indent="  ",
    subsequent_indent="  ",
)
INPUT_HELP = f"""\
input:
  YAML or JSON files, or directories (read recursively: *.yaml, *.yml, *.json),
  multi-document, `kind: List` too. Only these kinds are read, all else is
  ignored:
{_KINDS}
  An object defined twice (same group, kind, namespace and name) is taken from
  its later definition, as `kubectl apply` would, with a warning naming both
  places. A file holding no object liqosec reads is a warning; an input
  holding none at all is an error. Each file may be at most 64 MiB
  ({MAX_INPUT_BYTES_ENV} sets another limit, in bytes).

exit codes:
  0 done; 1 invalid input (the message names the file, the object and the
  field); 2 usage; 70 internal error (please report it; set
  {TRACEBACK_ENV}=1 for the traceback)
"""


def _capabilities(args: argparse.Namespace, objects: Sequence[dict[str, Any]]) -> Capabilities:
    detected = capabilities_of(objects)
    if args.ctstate is None:
        return detected
    return Capabilities(ctstate=args.ctstate, sets=detected.sets)


def _shorten(text: str) -> str:
    if len(text) <= MAX_MESSAGE_CHARS:
        return text
    return f"{text[:MAX_MESSAGE_CHARS]}... ({len(text) - MAX_MESSAGE_CHARS:,} more characters)"


def _capped(lines: Sequence[str]) -> list[str]:
    shown = [_shorten(line) for line in lines[:MAX_MESSAGES]]
    if len(lines) > MAX_MESSAGES:
        shown.append(f"... and {len(lines) - MAX_MESSAGES:,} more")
    return shown


def _objects(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The input: files (-f) or the live cluster, scoped by -n and explain's --peering (`liqosec.source`)."""
    live = source.wants_live(args, plugin=args.plugin)
    if live:
        got = source.read_live(args)
        for line in _capped(got.warnings):
            print(f"{args.prog} {args.command}: warning: {line}", file=sys.stderr)
        objects, args.default_namespace = got.objects, got.namespace
    else:
        objects, args.default_namespace = _load(args), source.DEFAULT_NAMESPACE
    if args.namespace is not None:
        source.check_namespace(objects, args.namespace, live=live)
    namespace = args.namespace or args.default_namespace
    peering = getattr(args, "peering", None)
    if peering is not None:
        args.peering = peering = source.qualified(peering, namespace)
    # explain takes -n as the namespace of its bare names only: its two pods and its policy live apart.
    scope = None if args.func is _cmd_explain else args.namespace
    # From a cluster, only the peering asked about is compiled; a file's others are named when it is not there.
    return source.scoped(objects, namespace=scope, peering=peering if live else None)


def _load(args: argparse.Namespace) -> list[dict[str, Any]]:
    loaded = load(args.filename, max_bytes=args.max_bytes)
    for line in _capped(loaded.warnings):
        print(f"{args.prog} {args.command}: warning: {line}", file=sys.stderr)
    if not any(o.get("kind") == "PeeringConnectivity" for o in loaded.objects):
        print(
            f"{args.prog} {args.command}: warning: the input holds no PeeringConnectivity: no firewall to compile",
            file=sys.stderr,
        )
    return list(loaded.objects)


def _waiting(args: argparse.Namespace) -> Callable[[str], None]:
    """A peering waiting on Liqo (a remap not done yet) is named on stderr; the others' results still print."""
    return lambda line: print(f"{args.prog} {args.command}: warning: {line}", file=sys.stderr)


def _ipv6_warnings(args: argparse.Namespace, results: Sequence[CompiledPeering]) -> None:
    """Pods of a policy's groups holding IPv6 addresses pass unfiltered: say so, as the status does."""
    for line in _capped(ipv6.notes(results)):
        print(f"{args.prog} {args.command}: warning: {line}", file=sys.stderr)


def _with_ports(objects: Sequence[dict[str, Any]]) -> list[str]:
    """PeeringConnectivities whose rules name destination ports (per-node scope compiles them for all nodes)."""
    out = []
    for o in objects:
        if o.get("kind") != "PeeringConnectivity" or not isinstance(o.get("spec"), dict):
            continue
        rules = o["spec"].get("rules")
        if isinstance(rules, list) and any(
            isinstance(r, dict) and isinstance(r.get("destination"), dict) and r["destination"].get("ports")
            for r in rules
        ):
            raw = o.get("metadata")
            meta: dict[str, Any] = raw if isinstance(raw, dict) else {}
            out.append(f"{meta.get('namespace')}/{meta.get('name')}")
    return out


def _cmd_render(args: argparse.Namespace, out: TextIO) -> int:
    objects = _objects(args)
    firewalls = render(
        objects,
        capabilities=_capabilities(args, objects),
        scope=args.firewall_scope,
        report=lambda results: _render_notes(args, results),
        waiting=_waiting(args),
        include_dry_run=args.include_dry_run,
    )
    if args.firewall_scope == "per-node":
        for key in _with_ports(objects):
            print(
                f"{args.prog} {args.command}: note: PeeringConnectivity {key} names ports: compiled for all nodes, "
                "not per node",
                file=sys.stderr,
            )
    if args.output == "json":
        text = json.dumps(firewalls, indent=2) + "\n"
    else:
        text = yaml.dump_all(firewalls, Dumper=_DUMPER, sort_keys=False)
    _write(out, text)
    return 0


def _key(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace')}/{meta.get('name')}"


def _render_notes(args: argparse.Namespace, results: Sequence[CompiledPeering]) -> None:
    """IPv6 warnings, and why a DryRun policy's firewall is missing (or printed under names of its own)."""
    _ipv6_warnings(args, results)
    for o in (o for o in results if is_dry_run_outcome(o)):
        if args.include_dry_run:
            shown = (
                f"printed is what it would enforce, as {firewalls_of(o)[0]['metadata']['name']} and the like, "
                f"labelled {DRY_RUN_LABEL}={o.peering.name}: the controller neither reads nor retires them"
            )
        else:
            shown = "none is printed; --include-dry-run prints what it would enforce, under names of its own"
        print(
            f"liqosec render: note: {o.peering.key} is a dry run (spec.enforcement: DryRun): the controller "
            f"writes no FirewallConfiguration for it; {shown}",
            file=sys.stderr,
        )


def _print_dry_run_notes(args: argparse.Namespace, objects: Sequence[dict[str, Any]]) -> None:
    """A DryRun policy's firewall is shown as it would be enforced; stdout stays the answer, the note goes to stderr."""
    for obj in objects:
        if obj.get("kind") == KIND and is_dry_run(obj):
            print(
                f"{args.prog} {args.command}: note: {_key(obj)} is a dry run (spec.enforcement: DryRun): "
                "the controller writes none of its FirewallConfigurations; shown is what it would enforce",
                file=sys.stderr,
            )


def _write(out: TextIO, text: str) -> None:
    """Whole, once: bad input never leaves half a document behind. Names a terminal cannot show are escaped."""
    try:
        out.write(text)
    except UnicodeEncodeError:
        encoding = getattr(out, "encoding", None) or "ascii"
        out.write(text.encode(encoding, "backslashreplace").decode(encoding))


def format_matrix(matrix: Matrix) -> str:
    lines: list[str] = []
    eps = matrix.endpoints
    width = max((len(e.name) for e in eps), default=8)
    for o in matrix.outcomes:
        mode = "stateful (replies of allowed flows pass)" if o.chain.name.endswith("-ct") else "stateless"
        lines.append(
            f"peering {o.peer} ({o.peering.key}): {o.chain.rule_count} rules, "
            f"policy {o.chain.policy}, {mode}, {o.size_bytes} bytes"
        )
        lines.extend(_grid_lines(matrix, o.peering.key, width))
        lines.append("")
    if len(matrix.outcomes) > 1:
        lines.append("all peerings together (as on a node)")
        lines.extend(_grid_lines(matrix, None, width))
        lines.append("")
    if matrix.port is None:
        probe = "a TCP connection opens"
        if any(r.ports for o in matrix.outcomes for r in o.peering.spec.rules):
            probe += " (to a port no rule names; --port 80/tcp probes a port)"
    else:
        probe = f"a {matrix.port[0].upper()} connection to port {matrix.port[1]} opens"
    lines.append(f"rows: source, columns: destination; Y = {probe}, - = it does not, . = itself")
    return "\n".join(lines)


def _grid_lines(matrix: Matrix, peer: str | None, width: int) -> list[str]:
    eps = matrix.endpoints
    grid = matrix.grid(peer=peer)
    header = f"  {'#':>3}  {'endpoint':<{width}}  {'ip':<15}  " + " ".join(f"{i + 1:>2}" for i in range(len(eps)))
    rows = [header]
    for i, (ep, row) in enumerate(zip(eps, grid)):
        cells = " ".join(f"{'.' if i == j else ('Y' if ok else '-'):>2}" for j, ok in enumerate(row))
        groups = f"  [{', '.join(ep.groups)}]" if ep.groups else ""
        rows.append(f"  {i + 1:>3}  {ep.name:<{width}}  {ep.ip:<15}  {cells}{groups}")
    return rows


def matrix_json(matrix: Matrix) -> dict[str, Any]:
    by_peer = {id(o) for o in in_force(matrix.outcomes)}
    return {
        "endpoints": [{"name": e.name, "ip": e.ip, "kind": e.kind, "groups": list(e.groups)} for e in matrix.endpoints],
        "peerings": {
            # By peer; a staged policy beside its peering's enforced one, by its own ns/name.
            (o.peer if id(o) in by_peer else o.peering.key): {
                "peeringConnectivity": o.peering.key,
                "rules": o.chain.rule_count,
                "policy": o.chain.policy,
                "connect": matrix.grid(peer=o.peering.key),
            }
            for o in matrix.outcomes
        },
        "node": {"connect": matrix.grid()},
        **({"probe": {"protocol": matrix.port[0], "port": matrix.port[1]}} if matrix.port else {}),
    }


def _emit(out: TextIO, output: str, as_json: Callable[[], Any], as_text: Callable[[], str]) -> int:
    """Write a command's result in the chosen format (`-o json` or text)."""
    _write(out, (json.dumps(as_json(), indent=2) if output == "json" else as_text()) + "\n")
    return 0


def _cmd_matrix(args: argparse.Namespace, out: TextIO) -> int:
    objects = _objects(args)
    matrix = build_matrix(objects, capabilities=_capabilities(args, objects), port=args.port, waiting=_waiting(args))
    _ipv6_warnings(args, matrix.outcomes)
    _print_dry_run_notes(args, objects)
    if args.output in ("svg", "html"):
        _write(out, picture.svg(matrix) if args.output == "svg" else picture.html(matrix))
        return 0
    return _emit(out, args.output, lambda: matrix_json(matrix), lambda: format_matrix(matrix))


def _cmd_explain(args: argparse.Namespace, out: TextIO) -> int:
    objects = _objects(args)
    namespace = args.namespace or args.default_namespace
    args.source, args.destination = (source.qualified(t, namespace) for t in (args.source, args.destination))
    results = outcomes(objects, capabilities=_capabilities(args, objects), waiting=_waiting(args))
    x = explain(objects, args.source, args.destination, peering=args.peering, results=results, port=args.port)
    _ipv6_warnings(args, [o for o in results if o.peering.key == x.peering])
    _print_dry_run_notes(args, [o for o in objects if o.get("kind") != "PeeringConnectivity" or _key(o) == x.peering])
    return _emit(out, args.output, lambda: explanation_json(x), lambda: format_explanation(x))


EXPLAIN_EXAMPLES = """\
examples:
  {prog} explain -f examples/provider-isolate-offloaded.yaml --from default/web --to shop-rome/cart-0
  {prog} explain -f examples/ --peering liqo-tenant-rome/rome --from 10.71.0.9 --to default/web -o json
  {prog} explain -f policy.yaml --from 10.71.0.9 --to shop/front --port 443/tcp
  {prog} explain {live}--context prod -n liqo-tenant-rome --from default/web --to shop-rome/cart-0

"""
PLUGIN = "kubectl liqosec"  # the name kubectl runs the plugin by (the `kubectl-liqosec` entry point)


def _add_input(p: argparse.ArgumentParser, *, plugin: bool) -> None:
    p.add_argument("-f", "--filename", action="append", help="YAML file or directory (repeatable)")
    source.add_arguments(p, plugin=plugin)
    state = p.add_mutually_exclusive_group()
    state.add_argument("--ctstate", dest="ctstate", action="store_true", default=None, help="assume conntrack matches")
    state.add_argument("--no-ctstate", dest="ctstate", action="store_false", help="assume a stateless firewall")


def _port(text: str) -> L4:
    try:
        return parse_port(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _add_port(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--port",
        type=_port,
        default=None,
        metavar="PORT/PROTO",
        help="probe this destination port and protocol (80/tcp, 53/udp; default: TCP to a port no rule names); "
        "replies go back to an ephemeral port",
    )


def parser(*, with_run: bool = True, prog: str = "liqosec") -> argparse.ArgumentParser:
    """The command line; `with_run=False` leaves out `run`, whose imports (the controller, structlog) cost ~0.1 s.
    `prog` is the name usage and messages give: `kubectl liqosec` reads the cluster when no -f is given."""
    plugin = prog == PLUGIN
    p = argparse.ArgumentParser(prog=prog, description="Per-peering network security for Liqo.")
    p.set_defaults(prog=prog, plugin=plugin)
    sub = p.add_subparsers(dest="command", required=True)
    raw = argparse.RawDescriptionHelpFormatter
    r = sub.add_parser(
        "render", help="print the FirewallConfigurations the input compiles to", epilog=INPUT_HELP, formatter_class=raw
    )
    _add_input(r, plugin=plugin)
    r.add_argument("-o", "--output", choices=("yaml", "json"), default="yaml")
    r.add_argument(
        "--firewall-scope",
        choices=("all-nodes", "per-node"),
        default="all-nodes",
        help="as `liqosec run --firewall-scope`: per-node writes one firewall per node that runs pods",
    )
    r.add_argument(
        "--include-dry-run",
        action="store_true",
        help="also print each DryRun policy's would-be firewall, under names and tables of its own "
        "(dryrun-liqosec-...) that no enforced firewall uses; the controller writes none of them",
    )
    r.set_defaults(func=_cmd_render)
    m = sub.add_parser(
        "matrix",
        help="print who can connect to whom under the compiled firewalls",
        epilog=INPUT_HELP,
        formatter_class=raw,
    )
    _add_input(m, plugin=plugin)
    m.add_argument(
        "-o",
        "--output",
        choices=("table", "json", "svg", "html"),
        default="table",
        help="svg, html: a picture, one self-contained page for html (hover a cell for the rule deciding it)",
    )
    _add_port(m)
    m.set_defaults(func=_cmd_matrix)
    e = sub.add_parser(
        "explain",
        help="say why a TCP connection between two pods or addresses opens or not under a peering's firewall",
        epilog=EXPLAIN_EXAMPLES.format(prog=prog, live="" if plugin else "--kubeconfig ~/.kube/config ") + INPUT_HELP,
        formatter_class=raw,
    )
    _add_input(e, plugin=plugin)
    e.add_argument(
        "--peering",
        default=None,
        metavar="[NS/]NAME",
        help="the PeeringConnectivity (optional when there is one; NAME alone is in -n's namespace)",
    )
    e.add_argument("--from", dest="source", required=True, metavar="POD|IP", help="[namespace/]name of a pod, or IPv4")
    e.add_argument("--to", dest="destination", required=True, metavar="POD|IP", help="[namespace/]name or IPv4")
    e.add_argument("-o", "--output", choices=("text", "json"), default="text")
    _add_port(e)
    e.set_defaults(func=_cmd_explain)
    if with_run:
        _add_run(sub)
    return p


def _add_run(sub: Any) -> None:
    try:
        from liqosec.run import add_run_parser
    except ImportError:  # the runtime is optional for the pure commands
        return
    add_run_parser(sub)


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, *, prog: str = "liqosec") -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = parser(with_run=prog != PLUGIN and argv[:1] not in (["render"], ["matrix"], ["explain"]), prog=prog)
    args = p.parse_args(argv)
    if args.func in (_cmd_render, _cmd_matrix, _cmd_explain):
        if (args.kubeconfig is not None or args.context is not None) and args.filename:
            p.error(f"{args.command}: use -f/--filename or --kubeconfig/--context, not both")
        if not args.filename and not source.wants_live(args, plugin=args.plugin):
            p.error(f"{args.command}: one of -f/--filename or --kubeconfig is required")
    if args.func not in (_cmd_render, _cmd_matrix, _cmd_explain):  # `run` reports its own failures, tracebacks included
        try:
            return int(args.func(args, out or sys.stdout))
        except RenderError as err:
            print(f"{args.prog} {args.command}: invalid input:\n{err}", file=sys.stderr)
            return EXIT_INVALID
    try:
        args.max_bytes = max_input_bytes()
    except ValueError as err:
        p.error(str(err))
    return _guarded(f"{prog} {args.command}", lambda: int(args.func(args, out or sys.stdout)), out is None)


def _guarded(command: str, run: Callable[[], int], to_stdout: bool) -> int:
    """Run a pure command: invalid input is exit 1 with its message; anything else is a bug, said in one line."""
    try:
        return run()
    except (ExplainError, source.SourceError) as err:
        print(f"{command}: {_shorten(str(err))}", file=sys.stderr)
        return EXIT_INVALID
    except RenderError as err:
        lines = _capped(err.errors)
        print(f"{command}: invalid input:\n" + "\n".join(lines), file=sys.stderr)
        return EXIT_INVALID
    except KeyboardInterrupt:
        print(f"{command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `liqosec render ... | head`: the reader left; say nothing
        if to_stdout:  # and keep Python's flush at exit from failing on the closed pipe
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except Exception as err:  # the last resort: never a traceback for a user, always one for a test
        if os.environ.get(TRACEBACK_ENV, "") not in ("", "0"):
            raise
        try:
            detail = _shorten(f"{type(err).__name__}: {err}")
        except Exception:  # an exception whose message fails to format
            detail = type(err).__name__
        print(
            f"{command}: internal error: {detail}; please report a bug "
            f"(set {TRACEBACK_ENV}=1 to see where it happened)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
