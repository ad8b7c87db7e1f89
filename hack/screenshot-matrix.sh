#!/usr/bin/env bash
# docs/matrix.png: `liqosec matrix -o html` of an example, as headless Chromium draws it.
#   hack/screenshot-matrix.sh [EXAMPLE.yaml [OUT.png [matrix flags...]]]
# Default: examples/provider-isolate-offloaded.yaml --ctstate (it has open, one-way and closed cells).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
example="${1:-examples/provider-isolate-offloaded.yaml}"
out="${2:-docs/matrix.png}"
shift $(($# > 2 ? 2 : $#))
(($#)) || set -- --ctstate
command -v chromium >/dev/null || { echo "screenshot-matrix: chromium is not installed: run hack/ci-setup.sh" >&2; exit 1; }
page="$(mktemp --suffix=.html)"
trap 'rm -f "${page}"' EXIT
python3 -m liqosec matrix -f "${example}" "$@" -o html >"${page}"
PYTHONPATH="test${PYTHONPATH:+:${PYTHONPATH}}" python3 -m harness.chromium "${page}" "${out}"
