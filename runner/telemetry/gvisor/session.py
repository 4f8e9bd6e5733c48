"""One session's gVisor tracing: the sink started and the container pointed at it before the
container starts, the tracer's log made from what it received at teardown.

Both ends are one call each from the controller (runner.controller.launch.container_spec and
runner.controller.teardown._trace). The sink is kept here by the session's directory, which
only the host sees.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from runner.errors import EngineError
from runner.policy import Policy, Runtime
from runner.telemetry import tracer
from runner.telemetry.events import Phase
from runner.telemetry.gvisor import decode, enabled, points
from runner.telemetry.gvisor.sink import Sink

if TYPE_CHECKING:
    from runner.controller.engine import ContainerSpec
    from runner.rules.analysis import Collected

log = logging.getLogger(__name__)

RUNTIME = "runsc-airlock"  # scripts/engine.sh registers it: sandbox_images/runsc-airlock
CONFIG_ENV = "AIRLOCK_GVISOR_CONFIG"  # the wrapper reads it from the bundle, then blanks it
DIR_NAME = "gvisor"  # under the session's root, 0700, never mounted
CONFIG_NAME = "pod-init.json"
SOCKET_NAME = "worker.sock"  # runner.controller.launch.SOCKET_NAME, which gRPC removes at exit

_sinks: dict[Path, Sink] = {}
_lock = threading.Lock()
_registered = False  # once the engine has said so: a runtime is not unregistered in a run


def applies(policy: Policy) -> bool:
    return policy.trace and policy.runtime is Runtime.RUNSC and enabled()


def _require_runtime() -> None:
    """A clear error, before anything starts, when the engine lacks the wrapper runtime."""
    global _registered
    if _registered:
        return
    from runner.controller import engine

    if RUNTIME not in (engine.engine_info().get("Runtimes") or {}):
        raise EngineError(
            f"the Docker engine has no {RUNTIME} runtime, which gVisor's tracer needs under runsc",
            "run 'sudo make engine' from a checkout (scripts/engine.sh registers it), "
            "or set AIRLOCK_RUNSC_TRACER=strace to trace with strace inside the sandbox",
        )
    _registered = True


def adjust(spec: ContainerSpec, policy: Policy, root: Path) -> ContainerSpec:
    """The container spec, traced by gVisor instead of strace when that applies: the sink
    listening, the pod-init configuration written, the wrapper runtime, the worker started
    without strace (and without the capability strace needs)."""
    if not applies(policy):
        return spec
    _require_runtime()
    directory = root / DIR_NAME
    sink = Sink(directory).start()
    with _lock:
        _sinks[root] = sink
    config = points.write_config(directory / CONFIG_NAME, sink.path)
    return dataclasses.replace(
        spec,
        runtime=RUNTIME,
        environment={  # strace's switches replaced; the rest (the allocator's setting) kept
            **{k: v for k, v in spec.environment.items() if k not in tracer.environment(True)},
            "AIRLOCK_TRACE": "0",
            CONFIG_ENV: str(config),
        },
        cap_add=[c for c in spec.cap_add if c != "SYS_PTRACE"],
    )


def progress(root: Path) -> int | None:
    """How much the session's sink has taken so far (messages, and what it could not take), or
    None when the session is not traced by gVisor: evidence to judge again when it changed."""
    with _lock:
        sink = _sinks.get(root)
    if sink is None:
        return None
    r = sink.received
    return len(r.messages) + r.past_caps + r.bad_headers + r.dropped_by_runsc + r.connections


def snapshot(root: Path) -> bytes | None:
    """The tracer's log so far, for an interim report while the sandbox runs (None: the session
    is not traced by gVisor). What runsc has sent and the sink has read, decoded as at close."""
    with _lock:
        sink = _sinks.get(root)
    if sink is None:
        return None
    r = sink.received
    messages = list(r.messages)  # the sink's thread appends meanwhile: a copy, read once
    out = decode.Log()
    for kind, payload in messages:
        decode.feed(out, kind, payload)
    losses = decode.Losses(r.dropped_by_runsc, r.past_caps, r.bad_headers, r.connections)
    return decode.render(out, losses)


def discard(root: Path) -> None:
    """Stop the session's sink when its container never started (nothing to collect)."""
    with _lock:
        sink = _sinks.pop(root, None)
    if sink is not None:
        sink.close(timeout_s=0.5)


def collect(c: Collected, root: Path) -> bool:
    """The tracer's log from the session's sink, if it had one (False: strace's log is read).
    A sink runsc never connected to gives a log that says so, never a clean one."""
    with _lock:
        sink = _sinks.pop(root, None)
    if sink is None:
        return False
    received = sink.close()
    teardown = [t for t, phase in c.marks if phase is Phase.TEARDOWN]
    socket = root / "run" / SOCKET_NAME  # on the host, after the container stopped
    out = decode.Log(
        teardown_ns=int(teardown[-1] * 1e9) if teardown else 0,
        socket_removed=not os.path.lexists(socket),
    )
    for kind, payload in received.messages:
        decode.feed(out, kind, payload)
    losses = decode.Losses(
        received.dropped_by_runsc,
        received.past_caps,
        received.bad_headers,
        received.connections,
    )
    c.tracer_kind = "gvisor"
    c.trace_log = decode.render(out, losses)
    c.trace_log_size = len(c.trace_log)
    if not received.connections:
        c.notes.append(
            "gvisor tracer: runsc never connected to the host's sink; nothing the model did "
            "was recorded, and the verdict cannot be clean"
        )
    elif losses.dropped_by_runsc or losses.past_caps:
        c.notes.append(
            f"gvisor tracer: {losses.dropped_by_runsc} point(s) dropped by runsc, "
            f"{losses.past_caps} past the sink's caps: the trace is incomplete"
        )
    if out.excused:
        c.notes.append(
            "gvisor tracer: one unlink by the worker's process at teardown, whose path gVisor's "
            "raw point does not say, was taken for gRPC removing the worker's socket"
        )
    log.debug("gvisor tracer: %d messages", len(received.messages))
    return True
