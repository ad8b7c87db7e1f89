"""`kubectl liqosec`: the `liqosec` commands as a kubectl plugin.

kubectl runs an executable named `kubectl-liqosec` found on PATH (`pip install` puts this entry
point there) with the words after `kubectl liqosec`. The commands are `liqosec`'s `explain`,
`matrix` and `render`, with kubectl's conventions: the live cluster unless `-f` is given, through
`--kubeconfig`, `--context` and `KUBECONFIG`, `-n` for the namespace (`liqosec.source`), and usage
and messages saying `kubectl liqosec`. The controller (`liqosec run`) is not a plugin command.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from liqosec.cli import PLUGIN
from liqosec.cli import main as cli_main


def main(argv: Sequence[str] | None = None) -> int:
    return cli_main(argv, prog=PLUGIN)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
