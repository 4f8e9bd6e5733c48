"""Events: what the model did, normalised from the tracer's log and the worker's audit hook.

Every event carries the phase it happened in (startup, load, infer, teardown) and its source:
`tracer` (strace, root, outside the model's reach), `worker` (audit-hook events the worker
reports about itself: the model could forge or hide them), or `host` (Docker and cgroup
accounting, the container's exit state, static checks of the file's bytes).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from runner.telemetry import strace as _strace
from runner.telemetry.folding import Folder


class Phase(StrEnum):
    STARTUP = "startup"
    LOAD = "load"
    INFER = "infer"
    TEARDOWN = "teardown"


class Source(StrEnum):
    TRACER = "tracer"
    WORKER = "worker"
    HOST = "host"
    STATIC = "static"  # the host's pre-flight read of the files, before anything ran


DetailValue = str | int | float | bool | list[str] | None


class Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    time: float = Field(description="seconds since the epoch")
    phase: Phase
    source: Source
    kind: str = Field(description="e.g. process.exec, net.connect, file.write, python.exec")
    summary: str = Field(description="one line for a person")
    pid: int | None = None
    result: str = Field(default="", description="ok, an errno name, or refused (by the tracer)")
    count: int = Field(default=1, description="identical events folded into this one")
    detail: dict[str, DetailValue] = Field(default_factory=dict)


@dataclass(frozen=True)
class PhaseClock:
    """Phase boundaries the host recorded (wall-clock seconds)."""

    marks: tuple[tuple[float, Phase], ...]

    def at(self, t: float) -> Phase:
        phase = Phase.STARTUP
        for start, name in self.marks:
            if t >= start:
                phase = name
            else:
                break
        return phase


# --- paths ----------------------------------------------------------------------------------

SCRATCH_PREFIXES = ("/tmp/", "/dev/shm/")


# --- the tracer's log -------------------------------------------------------------------------


def tracer_events(
    trace: _strace.Trace, clock: PhaseClock, folder: Folder, worker_socket: str
) -> None:
    """Turn syscalls into events (runner.telemetry.syscalls: each family's handler, paths
    normalised, descriptors and working directories tracked). Startup-phase calls are Airlock's
    own worker starting up (Python, gRPC), before any model byte is read: they are the baseline
    and become no event."""
    from runner.telemetry import syscalls  # it imports this module's types

    syscalls.tracer_events(trace, clock, folder, worker_socket)


# --- the worker's own (self-reported) audit events -------------------------------------------


def worker_events(
    raw: Iterable[tuple[float, str, list[str]]], clock: PhaseClock, folder: Folder
) -> int:
    """The worker's events into the folder; entries of another shape (hostile, or built by
    hand) are skipped and counted: the count is returned."""
    bad = 0
    for item in raw:
        try:
            event = _worker_event(item, clock)
        except Exception:  # whatever the entry holds, the others are still read
            bad += 1
            continue
        folder.add(event)
    return bad


def _worker_event(item: tuple[float, str, list[str]], clock: PhaseClock) -> Event:
    t, name, raw_args = item
    t = float(t)
    if not math.isfinite(t):
        t = 0.0
    name = str(name)[:64]
    args = [str(a)[:1100] for a in raw_args[:6]] if isinstance(raw_args, list | tuple) else []
    summary = f"{name}({', '.join(args)[:200]})"
    detail: dict[str, DetailValue] = {"event": name, "args": args}
    if name == "pickle.find_class" and len(args) >= 2:
        detail.update(module=args[0], name=args[1])
    return Event(
        time=t,
        phase=clock.at(t),
        source=Source.WORKER,
        kind=f"python.{name}",
        summary=summary,
        detail=detail,
    )


def host_event(t: float, clock: PhaseClock, kind: str, summary: str, **detail: Any) -> Event:
    return Event(
        time=t, phase=clock.at(t), source=Source.HOST, kind=kind, summary=summary, detail=detail
    )
