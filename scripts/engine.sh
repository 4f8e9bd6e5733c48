#!/usr/bin/env bash
# Make sure a Docker engine is reachable: install Debian's docker.io, runsc, debootstrap
# and strace when needed (as root), then start dockerd with the default bridge off and
# gVisor registered as the `runsc` runtime. Idempotent: does nothing when the engine answers
# and runsc is registered.
set -euo pipefail

log() { echo "engine: $*" >&2; }

engine_ok() { docker info >/dev/null 2>&1; }
runsc_ok() { docker info --format '{{json .Runtimes}}' 2>/dev/null | grep -q '"runsc"'; }

if engine_ok && runsc_ok; then
  exit 0
fi

if [ "$(id -u)" != 0 ]; then
  log "the Docker engine is not reachable and setting it up needs root; run 'sudo make setup'"
  exit 3
fi

need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v runsc >/dev/null 2>&1 || need+=(runsc)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v strace >/dev/null 2>&1 || need+=(strace)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]} (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi

RUNSC="$(command -v runsc)"
mkdir -p /etc/docker
cat > /etc/docker/daemon.json <<JSON
{
  "bridge": "none",
  "iptables": false,
  "ip-forward": false,
  "ip-masq": false,
  "runtimes": {
    "runsc": {
      "path": "$RUNSC",
      "runtimeArgs": ["--network=none", "--host-uds=all", "--platform=ptrace"]
    }
  }
}
JSON

if engine_ok; then
  log "reloading dockerd to register runsc"
  pkill -HUP dockerd || true
  for _ in $(seq 1 20); do runsc_ok && exit 0; sleep 0.5; done
  log "runsc not registered after reload; restarting dockerd"
  pkill dockerd || true
  for _ in $(seq 1 40); do pgrep -x dockerd >/dev/null || break; sleep 0.5; done
fi

log "starting dockerd (default bridge off, no iptables)"
mkdir -p /var/log/airlock
nohup dockerd >/var/log/airlock/dockerd.log 2>&1 &
for _ in $(seq 1 120); do
  if engine_ok; then
    runsc_ok || { log "dockerd started but runsc is not registered; see /var/log/airlock/dockerd.log"; exit 3; }
    log "engine ready"
    exit 0
  fi
  sleep 0.5
done
log "dockerd did not answer within 60 s; see /var/log/airlock/dockerd.log"
tail -n 20 /var/log/airlock/dockerd.log >&2 || true
exit 3
