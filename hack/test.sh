#!/usr/bin/env bash
# The test command: install everything from scratch (pip, apt, Go-built binaries; each step is a
# no-op when already done), then run every suite: unit, integration (real kube-apiserver and
# etcd), dataplane (Liqo's own agent applying liqosec's firewalls as nftables in network
# namespaces; needs root), e2e (kind) and peering (two kind clusters peered by Liqo v1.2.0 itself,
# built from the pinned module by hack/peering.sh; both skip without a Docker engine). Static checks
# (ruff lint and format, mypy --strict, import-linter) run first.
#
# Python: a virtualenv holding only liqosec (editable: `liqosec` is this checkout) and its declared
# `test` extra, at ${LIQOSEC_CACHE:-$HOME/.cache/liqosec}/venv-<12 hex of sha256(pyproject.toml,
# this checkout's path)>, made once per pyproject.toml and checkout. Every tool runs from it and its
# bin/ leads PATH, so the subprocesses tests start (sys.executable, python3, liqosec) use it too:
# a module the tests import that pyproject.toml does not declare fails here, not on a fresh machine.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { echo "test: $*" >&2; }

log "installing system packages and building the control plane (cached after the first run)"
hack/ci-setup.sh

# --- the virtualenv
CACHE_DIR="${LIQOSEC_CACHE:-${HOME}/.cache/liqosec}"
VENV_KEY="$({ cat pyproject.toml; pwd -P; } | sha256sum | cut -c1-12)"
VENV="${CACHE_DIR}/venv-${VENV_KEY}"
if [[ ! -f "${VENV}/.complete" ]]; then
  log "creating the virtualenv ${VENV} (liqosec and its test extras)"
  rm -rf "${VENV}"
  mkdir -p "${CACHE_DIR}"
  python3 -m venv "${VENV}"
  "${VENV}/bin/python" -m pip install -q --disable-pip-version-check -e '.[test]' 2>&1 \
    | grep -v "^WARNING: Running pip as the 'root' user" || true
  "${VENV}/bin/python" -c 'import liqosec, hypothesis, pytest' || { log "pip install failed"; exit 1; }
  touch "${VENV}/.complete"
fi
here="$(pwd -P)"
found="$("${VENV}/bin/python" -c 'import liqosec, os; print(os.path.dirname(os.path.dirname(os.path.realpath(liqosec.__file__))))')"
[[ "${found}" == "${here}" ]] || { log "liqosec in ${VENV} is ${found}, not this checkout (${here}): remove the venv"; exit 1; }
export VIRTUAL_ENV="${VENV}"
export PATH="${VENV}/bin:${PATH}"
hash -r
# --- end of the virtualenv
hack/build-helm.sh >/dev/null
hack/liqo.sh agent >/dev/null   # Liqo's code from its Go module: the dataplane agents, the FC webhooks, forge
hack/liqo.sh check-crds         # hack/liqo-crds is Liqo's, at the version pinned in hack/liqo-agent/go.mod
export LIQOSEC_REQUIRE_HELM=1  # built just above: the chart tests must run, not skip
# promtool, from the e2e Prometheus' Go module (no Docker needed): the chart's alert rules are
# checked and unit-tested with it (test/integration/test_alerts.py). Cold: about 3.5 min on 2 cores.
hack/images/build.sh tool promtool >/dev/null
hack/images/build.sh tool kubectl >/dev/null  # test_plugin_live runs `kubectl liqosec` (cached; kind uses it too)

# --- e2e (kind) prerequisites: a Docker engine (started here when none answers), the images and
# kind/kubectl, all built on this machine and cached (docs/images.md). Where no engine can run,
# the e2e suite skips with the reason instead (LIQOSEC_REQUIRE_E2E stays unset).
if hack/docker.sh ensure; then
  log "building the e2e images (cached after the first run)"
  hack/images/build.sh liqosec liqo-agent prometheus node >/dev/null
  hack/kind.sh tools >/dev/null
  export LIQOSEC_REQUIRE_E2E=1
else
  log "no Docker engine: the e2e suite will skip"
fi
# --- end of e2e prerequisites

log "static checks"
"${VENV}/bin/python" -m ruff check .
"${VENV}/bin/python" -m ruff format --check . >/dev/null || { "${VENV}/bin/python" -m ruff format --diff . | head -40; log "run: ruff format ."; exit 1; }
"${VENV}/bin/python" -m mypy --no-error-summary liqosec
"${VENV}/bin/lint-imports" --no-cache

log "pytest"
set +e
"${VENV}/bin/python" -m pytest -q "$@"
rc=$?
set -e
if [[ $rc -eq 5 ]]; then
  log "pytest collected no tests: that is a failure"
  exit 1
fi
exit $rc
