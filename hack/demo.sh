#!/usr/bin/env bash
# The main job on an embedded default: install liqosec, build (once, cached) a local
# kube-apiserver/etcd/kube-controller-manager from Go modules, start them on loopback with
# Liqo's CRDs and two demo peerings, and run the controller until Ctrl-C.
# Pass --once to exit after the converged state is printed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
python3 -m pip install -q --disable-pip-version-check -e . 2>&1 | grep -v "^WARNING: Running pip as the 'root' user" || true
hack/ci-setup.sh
PYTHONPATH="test${PYTHONPATH:+:$PYTHONPATH}" exec python3 -m harness demo "$@"
