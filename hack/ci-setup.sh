#!/usr/bin/env bash
# Install, from scratch on a fresh Debian machine, what the integration suite needs, then build the
# control-plane binaries (cached: instant when already built). Called by .ci/run.
#
# Needs root (or sudo) for apt, and Go >= 1.24 on PATH with the Go module proxy reachable.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
log() { echo "ci-setup: $*" >&2; }

APT_PACKAGES=(openssl nftables iproute2 ca-certificates)
# The matrix picture is checked in headless Chromium (test/unit/test_picture_chromium.py), with a font
# of known metrics: 124 MB to download, 348 MB installed, 11 s to install here (apt lists fresh).
APT_PACKAGES+=(chromium fonts-dejavu-core)
# hack/test.sh runs the suites from a virtualenv: Debian's python3 needs python3-venv for `python3 -m venv`.
python3 -c 'import ensurepip, venv' 2>/dev/null || APT_PACKAGES+=(python3-venv)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  SUDO=""
  [[ $(id -u) -eq 0 ]] || SUDO="sudo"
  log "apt-get install ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  log "apt packages present: ${APT_PACKAGES[*]}"
fi

command -v go >/dev/null || { log "error: go is not on PATH (Go >= 1.24 needed)"; exit 1; }
python3 -c 'import kubernetes, yaml' 2>/dev/null || {
  log "installing the kubernetes and PyYAML Python packages"
  python3 -m pip install -q kubernetes PyYAML
}

"${HERE}/build-control-plane.sh"
