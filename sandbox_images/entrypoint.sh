#!/bin/sh
# Runs as root inside the sandbox, with only CAP_SYS_PTRACE, CAP_SETUID and CAP_SETGID.
# Starts the worker as the unprivileged `model` user (uid 10001), either under strace
# (AIRLOCK_TRACE=1: the tracer stays root, so the model cannot signal or stop it; its log goes
# to /airlock/trace, which the model's uid cannot write; privilege and escape syscalls in
# AIRLOCK_TRACE_REFUSE are recorded and answered with EPERM), or directly through setpriv.
# The worker keeps no capabilities: the change to a non-root uid clears them.
set -eu
WORKER="/opt/airlock/venv/bin/python -B -I -m runner.worker"
if [ "${AIRLOCK_TRACE:-0}" = 1 ]; then
  exec strace -f -q -ttt -s 256 -xx -o /airlock/trace/strace.log -u model \
    --seccomp-bpf -e trace="${AIRLOCK_TRACE_SET:?}" \
    -e inject="${AIRLOCK_TRACE_REFUSE:?}":error=EPERM -- $WORKER "$@"
fi
exec setpriv --reuid=10001 --regid=10001 --clear-groups --inh-caps=-all -- $WORKER "$@"
