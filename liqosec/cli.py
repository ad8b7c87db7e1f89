"""The `liqosec` command: render, matrix, run.

Exit codes: 0 done, 1 invalid input (the message names the field), 2 usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

import yaml

from liqosec.firewall.capabilities import Capabilities
from liqosec.matrix import Matrix, build_matrix
from liqosec.render import RenderError, capabilities_of, load_objects, render

EXIT_INVALID = 1


def _capabilities(args: argparse.Namespace, objects: Sequence[dict[str, Any]]) -> Capabilities:
    detected = capabilities_of(objects)
    if args.ctstate is None:
        return detected
    return Capabilities(ctstate=args.ctstate, sets=detected.sets)


def _cmd_render(args: argparse.Namespace, out: TextIO) -> int:
    objects = load_objects(args.filename)
    firewalls = render(objects, capabilities=_capabilities(args, objects))
    if args.output == "json":
        json.dump(firewalls, out, indent=2)
        out.write("\n")
    else:
        yaml.safe_dump_all(firewalls, out, sort_keys=False)
    return 0


def format_matrix(matrix: Matrix) -> str:
    lines: list[str] = []
    eps = matrix.endpoints
    width = max((len(e.name) for e in eps), default=8)
    for o in matrix.outcomes:
        mode = "stateful (replies of allowed flows pass)" if o.chain.name.endswith("-ct") else "stateless"
        lines.append(
            f"peering {o.peer} ({o.peering.key}): {len(o.chain.rules)} rules, "
            f"policy {o.chain.policy}, {mode}, {o.size_bytes} bytes"
        )
        lines.extend(_grid_lines(matrix, o.peer, width))
        lines.append("")
    if len(matrix.outcomes) > 1:
        lines.append("all peerings together (as on a node)")
        lines.extend(_grid_lines(matrix, None, width))
        lines.append("")
    lines.append("rows: source, columns: destination; Y = a TCP connection opens, - = it does not, . = itself")
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
    return {
        "endpoints": [{"name": e.name, "ip": e.ip, "kind": e.kind, "groups": list(e.groups)} for e in matrix.endpoints],
        "peerings": {
            o.peer: {
                "peeringConnectivity": o.peering.key,
                "rules": len(o.chain.rules),
                "policy": o.chain.policy,
                "connect": matrix.grid(peer=o.peer),
            }
            for o in matrix.outcomes
        },
        "node": {"connect": matrix.grid()},
    }


def _cmd_matrix(args: argparse.Namespace, out: TextIO) -> int:
    objects = load_objects(args.filename)
    matrix = build_matrix(objects, capabilities=_capabilities(args, objects))
    if args.output == "json":
        json.dump(matrix_json(matrix), out, indent=2)
        out.write("\n")
    else:
        out.write(format_matrix(matrix) + "\n")
    return 0


def _add_input(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--filename", action="append", required=True, help="YAML file or directory (repeatable)")
    state = p.add_mutually_exclusive_group()
    state.add_argument("--ctstate", dest="ctstate", action="store_true", default=None, help="assume conntrack matches")
    state.add_argument("--no-ctstate", dest="ctstate", action="store_false", help="assume a stateless firewall")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="liqosec", description="Per-peering network security for Liqo.")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("render", help="print the FirewallConfigurations the input compiles to")
    _add_input(r)
    r.add_argument("-o", "--output", choices=("yaml", "json"), default="yaml")
    r.set_defaults(func=_cmd_render)
    m = sub.add_parser("matrix", help="print who can connect to whom under the compiled firewalls")
    _add_input(m)
    m.add_argument("-o", "--output", choices=("table", "json"), default="table")
    m.set_defaults(func=_cmd_matrix)
    _add_run(sub)
    return p


def _add_run(sub: Any) -> None:
    try:
        from liqosec.controller.options import add_run_parser
    except ImportError:  # the runtime is optional for the pure commands
        return
    add_run_parser(sub)


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args, out or sys.stdout))
    except RenderError as err:
        print(f"liqosec {args.command}: invalid input:\n{err}", file=sys.stderr)
        return EXIT_INVALID


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
