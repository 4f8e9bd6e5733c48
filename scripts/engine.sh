#!/usr/bin/env bash
# Make sure a Docker engine is reachable: install Debian's docker.io, runsc, debootstrap
# and strace when needed (as root), then start dockerd with the default bridge off and
# gVisor registered as the `runsc` runtime, and as `runsc-airlock` (sandbox_images/runsc-airlock,
# installed in /usr/local/lib/airlock: runsc with a session's pod-init configuration, which
# runsc's default tracer, gVisor's trace points, needs). Idempotent: does nothing when the engine answers, both runtimes
# are registered and the wrapper is current.
set -euo pipefail

log() { echo "engine: $*" >&2; }

WRAPPER_SRC="$(cd "$(dirname "$0")/.." && pwd)/sandbox_images/runsc-airlock"
WRAPPER=/usr/local/lib/airlock/runsc-airlock

engine_ok() { docker info >/dev/null 2>&1; }
runtimes() { docker info --format '{{json .Runtimes}}' 2>/dev/null; }
runsc_ok() { runtimes | grep -q '"runsc"' && runtimes | grep -q '"runsc-airlock"'; }
wrapper_text() { sed "s|^RUNSC=.*|RUNSC=$(command -v runsc)|" "$WRAPPER_SRC"; }
wrapper_ok() { [ -x "$WRAPPER" ] && wrapper_text | cmp -s - "$WRAPPER"; }
install_wrapper() {
  mkdir -p "$(dirname "$WRAPPER")"
  wrapper_text > "$WRAPPER.tmp"
  chmod 0755 "$WRAPPER.tmp"
  mv -f "$WRAPPER.tmp" "$WRAPPER"
}

if engine_ok && runsc_ok && { [ ! -f "$WRAPPER_SRC" ] || wrapper_ok; }; then
  exit 0
fi

if [ "$(id -u)" != 0 ]; then
  if engine_ok && runtimes | grep -q '"runsc"'; then
    log "runsc-airlock is not registered or not current (runsc's default tracer needs it; AIRLOCK_RUNSC_TRACER=strace does not); 'sudo make setup' installs it"
    exit 0
  fi
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
install_wrapper
if engine_ok && runsc_ok; then
  exit 0  # the wrapper was updated: the engine runs it from the same path
fi
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
    },
    "runsc-airlock": {
      "path": "$WRAPPER"
    }
  }
}
JSON

if engine_ok; then
  log "reloading dockerd to register runsc and runsc-airlock"
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
