#!/usr/bin/env bash
# A Docker engine for the image builds and the kind suite.
#
#   hack/docker.sh ensure   if `docker info` answers, use that engine and change nothing; otherwise
#                           install Debian's docker.io (apt) when dockerd is missing and start
#                           dockerd in the background with its own data and exec roots
#   hack/docker.sh status   say which engine answers (exit 1 if none)
#   hack/docker.sh stop     stop the dockerd this script started (no-op otherwise)
#
# Why a runtime wrapper: on this project's machines the capability bounding set lacks
# CAP_SYS_RESOURCE, and dockerd 20.10 asks for every capability it knows for `--privileged`
# (kind's nodes are privileged), so runc fails with "unable to apply caps". The dockerd started
# here runs every container through hack/images/liqosec-runc (copied into the cache), which drops
# the capabilities the bounding set lacks from the bundle's config.json and execs runc.
#
# State: ${LIQOSEC_CACHE:-$HOME/.cache/liqosec}/docker/{root,dockerd.log,liqosec-runc};
# exec root /run/liqosec-docker (pidfile there); socket /var/run/docker.sock.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE_DIR="${LIQOSEC_CACHE:-${HOME}/.cache/liqosec}"
STATE="${CACHE_DIR}/docker"
DATA_ROOT="${STATE}/root"
EXEC_ROOT="/run/liqosec-docker"
PIDFILE="${EXEC_ROOT}/dockerd.pid"
LOG="${STATE}/dockerd.log"
WRAPPER="${STATE}/liqosec-runc"
SOCKET="/var/run/docker.sock"
START_TIMEOUT_S="${LIQOSEC_DOCKER_START_TIMEOUT:-90}"

log() { echo "docker: $*" >&2; }
die() { log "error: $*"; exit 1; }

answers() { timeout 20 docker info >/dev/null 2>&1; }

cgroup_version() {
  if [[ "$(stat -fc %T /sys/fs/cgroup 2>/dev/null)" == cgroup2fs ]]; then echo 2; else echo 1; fi
}

ours_running() {
  [[ -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null
}

install_engine() {
  command -v dockerd >/dev/null && command -v runc >/dev/null && command -v docker >/dev/null && return
  command -v apt-get >/dev/null || die "no Docker engine answers and no apt-get to install Debian's docker.io"
  [[ $(id -u) -eq 0 ]] || die "no Docker engine answers; starting one needs root"
  log "installing Debian's docker.io"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io >/dev/null \
    || die "apt-get install docker.io failed"
}

start_engine() {
  [[ $(id -u) -eq 0 ]] || die "no Docker engine answers; starting one needs root"
  command -v python3 >/dev/null || die "python3 is needed by the runtime wrapper"
  install_engine
  mkdir -p "$DATA_ROOT" "$EXEC_ROOT"
  # Refreshed on every start: the wrapper is small and the repo copy is the source of truth.
  install -m 0755 "${HERE}/images/liqosec-runc" "${WRAPPER}.tmp"
  mv -f "${WRAPPER}.tmp" "$WRAPPER"
  if ours_running; then
    log "dockerd (pid $(cat "$PIDFILE")) is starting; waiting for it"
  else
    log "starting dockerd (cgroup v$(cgroup_version), data root ${DATA_ROOT}, log ${LOG})"
    rm -f "$PIDFILE"
    setsid nohup dockerd \
      --data-root "$DATA_ROOT" \
      --exec-root "$EXEC_ROOT" \
      --pidfile "$PIDFILE" \
      --host "unix://${SOCKET}" \
      --add-runtime "liqosec-runc=${WRAPPER}" \
      --default-runtime liqosec-runc \
      >>"$LOG" 2>&1 </dev/null &
  fi
  local deadline=$((SECONDS + START_TIMEOUT_S))
  until answers; do
    if ((SECONDS >= deadline)); then
      tail -20 "$LOG" >&2 || true
      die "dockerd did not answer within ${START_TIMEOUT_S} s (log: ${LOG})"
    fi
    if [[ -f "$PIDFILE" ]] && ! ours_running; then
      tail -20 "$LOG" >&2 || true
      die "dockerd exited (log: ${LOG})"
    fi
    sleep 1
  done
  log "dockerd answers ($(docker version --format '{{.Server.Version}}' 2>/dev/null), runtime liqosec-runc)"
}

case "${1:-}" in
  ensure)
    if answers; then
      if ours_running; then log "using the dockerd started here (pid $(cat "$PIDFILE"))"
      else log "using the running Docker engine"; fi
      exit 0
    fi
    start_engine
    ;;
  status)
    if answers; then
      if ours_running; then echo "dockerd started by hack/docker.sh (pid $(cat "$PIDFILE")), cgroup v$(cgroup_version)"
      else echo "a Docker engine not started by hack/docker.sh, cgroup v$(cgroup_version)"; fi
    else
      echo "no Docker engine answers"; exit 1
    fi
    ;;
  stop)
    if ours_running; then
      pid="$(cat "$PIDFILE")"
      log "stopping dockerd (pid ${pid})"
      kill -TERM "$pid"
      for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
      kill -0 "$pid" 2>/dev/null && die "dockerd (pid ${pid}) did not stop within 60 s"
    else
      log "no dockerd started by hack/docker.sh is running"
    fi
    ;;
  *) die "usage: hack/docker.sh ensure | status | stop" ;;
esac
