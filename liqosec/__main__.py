"""`python -m liqosec`: the same as the `liqosec` command."""

import sys

from liqosec.cli import main

sys.exit(main())
