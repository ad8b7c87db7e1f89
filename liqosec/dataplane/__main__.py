"""`python -m liqosec.dataplane FILE...`: render, load into a throwaway node, probe every pair.

Prints the connectivity grid seen by real TCP packets next to the matrix's
prediction, and exits 1 if any cell disagrees. Needs root, `ip` and `nft`;
every namespace it creates is deleted before it exits.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from liqosec.dataplane import nft
from liqosec.dataplane.netns import Topology
from liqosec.firewall.capabilities import Capabilities
from liqosec.matrix import build_matrix
from liqosec.render import load_objects, render


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m liqosec.dataplane", description=__doc__)
    parser.add_argument("paths", nargs="+", help="YAML files or directories of cluster objects")
    parser.add_argument("--stateful", action="store_true", help="assume the ctstate match (Liqo PR 3144)")
    parser.add_argument("--show-nft", action="store_true", help="print the nft script loaded into the node")
    args = parser.parse_args(argv)
    caps = Capabilities(ctstate=args.stateful)
    objects = load_objects(args.paths)
    fcs = render(objects, capabilities=caps)
    matrix = build_matrix(objects, capabilities=caps)
    script = nft.fc_script(fcs)
    if args.show_nft:
        print(script)
    started = time.monotonic()
    eps = matrix.endpoints
    with Topology([e.ip for e in eps]) as topo:
        topo.nft(script)
        seen = topo.probe_pairs(topo.all_pairs())
    width = max(len(e.name) for e in eps)
    print(f"{'':<{width}}  " + " ".join(f"{i:>2}" for i in range(len(eps))))
    wrong = 0
    for i, a in enumerate(eps):
        cells = []
        for b in eps:
            if a.ip == b.ip:
                cells.append(" .")
                continue
            ok, want = seen[(a.ip, b.ip)], matrix.connect(a.ip, b.ip)
            wrong += ok != want
            cells.append((" Y" if ok else " -") if ok == want else (" !" if ok else " x"))
        print(f"{a.name:<{width}}{i:>2}" + " ".join(cells))
    total = len(seen)
    print(f"{total - wrong}/{total} cells agree with the matrix ({time.monotonic() - started:.1f}s);"
          " Y connects, - does not, ! connects but matrix says no, x matrix says yes")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
