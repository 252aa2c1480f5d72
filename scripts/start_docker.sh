#!/usr/bin/env bash
# Install (if missing) and start (if not running) a Docker engine. Idempotent; leaves dockerd running.
set -euo pipefail

log() { echo "[start_docker] $*"; }

if docker info >/dev/null 2>&1; then
  log "docker engine already running"
  exit 0
fi

need_apt=()
command -v dockerd >/dev/null 2>&1 || need_apt+=(docker.io)
if ((${#need_apt[@]})); then
  log "installing ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q "${need_apt[@]}"
fi

log "starting dockerd in the background (log: /var/log/dockerd.log)"
# setsid: dockerd must outlive the shell that started it.
setsid dockerd >/var/log/dockerd.log 2>&1 < /dev/null &

for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    log "docker engine is up"
    exit 0
  fi
  sleep 1
done
log "dockerd did not come up within 60 s; last log lines:"
tail -n 30 /var/log/dockerd.log >&2
exit 1
