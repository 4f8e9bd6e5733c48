#!/usr/bin/env bash
# Make sure a Docker engine is reachable: install Debian's docker.io, runsc, debootstrap
# and strace when needed (as root), then start dockerd with the default bridge off and
# gVisor registered as the `runsc` runtime, and as `runsc-airlock` (sandbox_images/runsc-airlock,
# installed in /usr/local/lib/airlock: runsc with a session's pod-init configuration, which
# runsc's default tracer, gVisor's trace points, needs). Idempotent: does nothing when the engine answers, both runtimes
# are registered and the wrapper is current.
#
# runsc comes from Debian trixie when it can (the one package taken from there, pinned): bookworm's
# (2022-12) has only gVisor's ptrace and KVM platforms, KVM hangs in a nested VM, and ptrace stops
# at every system call; trixie's has systrap, gVisor's default platform since 2023, which needs
# neither. If trixie's cannot be had, bookworm's is used on ptrace (slower; nothing else changes).
set -euo pipefail

log() { echo "engine: $*" >&2; }

WRAPPER_SRC="$(cd "$(dirname "$0")/.." && pwd)/sandbox_images/runsc-airlock"
WRAPPER=/usr/local/lib/airlock/runsc-airlock

engine_ok() { docker info >/dev/null 2>&1; }
runtimes() { docker info --format '{{json .Runtimes}}' 2>/dev/null; }
TRIXIE_LIST=/etc/apt/sources.list.d/airlock-runsc-trixie.list
TRIXIE_PIN=/etc/apt/preferences.d/airlock-runsc-trixie
TRIXIE_FAILED=/var/lib/airlock/runsc-trixie-failed  # tried once and failed: bookworm's stays

# no pipe into grep -q: under pipefail, runsc killed by SIGPIPE after the match would fail it
has_systrap() { command -v runsc >/dev/null 2>&1 && [[ "$(runsc flags 2>&1 || true)" == *systrap* ]]; }
platform() { if has_systrap; then echo systrap; else echo ptrace; fi; }
runsc_settled() { has_systrap || [ -e "$TRIXIE_FAILED" ]; }
runsc_ok() {
  runtimes | grep -q '"runsc"' && runtimes | grep -q '"runsc-airlock"' \
    && runtimes | grep -q -- "--platform=$(platform)"
}
wrapper_text() {
  sed -e "s|^RUNSC=.*|RUNSC=$(command -v runsc)|" -e "s|^PLATFORM=.*|PLATFORM=$(platform)|" \
    "$WRAPPER_SRC"
}
wrapper_ok() { [ -x "$WRAPPER" ] && wrapper_text | cmp -s - "$WRAPPER"; }
install_wrapper() {
  mkdir -p "$(dirname "$WRAPPER")"
  wrapper_text > "$WRAPPER.tmp"
  chmod 0755 "$WRAPPER.tmp"
  mv -f "$WRAPPER.tmp" "$WRAPPER"
}

trixie_runsc() {
  log "installing runsc from Debian trixie (gVisor's systrap platform; bookworm's has only ptrace)"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main" > "$TRIXIE_LIST"
  printf 'Package: runsc\nPin: release n=trixie\nPin-Priority: 990\n\nPackage: *\nPin: release n=trixie\nPin-Priority: -1\n' > "$TRIXIE_PIN"
  if apt-get update -qq -o Dir::Etc::sourcelist="$TRIXIE_LIST" -o Dir::Etc::sourceparts=- \
    -o APT::Get::List-Cleanup=0 >&2 \
    && apt-get install -y -qq --no-install-recommends runsc >&2 && has_systrap; then
    return 0
  fi
  rm -f "$TRIXIE_LIST" "$TRIXIE_PIN"
  mkdir -p "$(dirname "$TRIXIE_FAILED")"
  touch "$TRIXIE_FAILED"
  log "trixie's runsc could not be installed: gVisor runs on bookworm's, on the ptrace platform (slower)"
  return 1
}

if engine_ok && runsc_ok && runsc_settled && { [ ! -f "$WRAPPER_SRC" ] || wrapper_ok; }; then
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

export DEBIAN_FRONTEND=noninteractive
need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v strace >/dev/null 2>&1 || need+=(strace)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]} (apt-get)"
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi
if ! runsc_settled; then
  trixie_runsc || true
fi
if ! command -v runsc >/dev/null 2>&1; then
  log "installing runsc (apt-get)"
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends runsc >&2
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
      "runtimeArgs": ["--network=none", "--host-uds=all", "--platform=$(platform)"]
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
