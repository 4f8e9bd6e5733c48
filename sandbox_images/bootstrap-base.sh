#!/usr/bin/env bash
# Build the sandbox base image offline: debootstrap a minimal Debian bookworm with
# Python 3.11 and strace into a folder, then `docker import` it as TAG.
# Used when `python:3.11-slim-bookworm` cannot be pulled (no registry reachable).
# Usage: bootstrap-base.sh TAG [MIRROR]
set -euo pipefail
TAG="$1"
MIRROR="${2:-http://deb.debian.org/debian}"
# libgomp1: the OpenMP runtime llama.cpp (xllamacpp) links against
PACKAGES="python3,python3-venv,strace,util-linux,libgomp1"

if [ "$(id -u)" != 0 ]; then
  echo "bootstrap-base: debootstrap needs root" >&2
  exit 3
fi
command -v debootstrap >/dev/null || { echo "bootstrap-base: debootstrap is not installed (apt-get install debootstrap)" >&2; exit 3; }

ROOT="$(mktemp -d /var/tmp/airlock-rootfs.XXXXXX)"
trap 'rm -rf "$ROOT"' EXIT
echo "bootstrap-base: debootstrap bookworm into $ROOT (a few minutes)" >&2
debootstrap --variant=minbase --include="$PACKAGES" bookworm "$ROOT" "$MIRROR" >"$ROOT.log" 2>&1 || {
  tail -n 30 "$ROOT.log" >&2; rm -f "$ROOT.log"; exit 1; }
rm -f "$ROOT.log"
# Trim what a sandbox never needs.
rm -rf "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/lib/apt/lists/* \
       "$ROOT"/usr/share/doc/* "$ROOT"/usr/share/man/* "$ROOT"/usr/share/locale/*
echo "bootstrap-base: importing as $TAG" >&2
tar -C "$ROOT" --numeric-owner -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["/bin/sh"]' - "$TAG" >/dev/null
echo "bootstrap-base: done" >&2
