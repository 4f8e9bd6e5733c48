"""A sandbox watched while it runs: its report so far, without tearing it down.

The tracer's log and the worker's audit log are written to host-mounted directories as the
model runs. The interim report reads what is there now (bounded as teardown reads it: the
same caps), drops a last line still being written (it is pending, not malformed: the next read
takes it whole), and judges a copy of what the sandbox collected with the same analysis and
rules as the report at close (runner.controller.reporting.build). The container is not
stopped, so nothing of its final state is known: the interim report's verdict is error at
best (the run is not over); its findings are what a server acts on (runner.serve.replicas).

Reading is cheap when nothing changed: `sizes` gives the two logs' sizes, so a caller judges
again only when the evidence grew.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING

from runner.controller import engine, reporting
from runner.controller.launch import AUDIT_LOG_NAME, TRACE_LOG_NAME
from runner.controller.teardown import MAX_TRACE_BYTES
from runner.report import Report
from runner.rules import analysis
from runner.rules.audit_log import AuditEvents, _parse, _read

if TYPE_CHECKING:
    from runner.controller.sandbox import Sandbox

LIVE_NOTE = "interim report, made while the sandbox runs: the run is not over"


def _size(path: Path) -> int:
    try:
        return os.lstat(path).st_size
    except OSError:
        return -1


def sizes(sb: Sandbox) -> tuple[int, int]:
    """The tracer's and the audit log's sizes now (-1: not there): evidence to judge again
    only when either changed."""
    dirs = sb._dirs
    if dirs is None:
        return (-1, -1)
    return (_size(dirs.trace / TRACE_LOG_NAME), _size(dirs.run / AUDIT_LOG_NAME))


def _complete(data: bytes) -> bytes:
    """Whole lines only: a last line without its newline is still being written."""
    end = data.rfind(b"\n")
    return data[: end + 1] if end >= 0 else b""


def _trace(path: Path) -> tuple[bytes | None, int | None]:
    """The tracer's log as far as it is written whole, and its size when the host's cap cut
    it (then the analysis says the trace was not read whole)."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return None, None
    try:
        size = os.fstat(fd).st_size
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(MAX_TRACE_BYTES)
    except OSError:
        return None, None
    finally:
        os.close(fd)
    if size > len(data) and len(data) >= MAX_TRACE_BYTES:
        return _complete(data), size
    whole = _complete(data)
    return whole, len(whole)


def _audit(path: Path) -> tuple[AuditEvents, int]:
    """The audit log's whole lines, read as runner.rules.audit_log reads it at close."""
    out = AuditEvents()
    r = out.read
    data = _read(path, r)
    if data is not None:
        _parse(data if r.bytes_unread else _complete(data), out)
    lost = r.writer_dropped + r.unread_events + r.oversized + r.malformed
    return out, lost


def collected(sb: Sandbox) -> analysis.Collected:
    """A copy of what the sandbox collected, with the evidence written so far."""
    c, dirs, run = sb._c, sb._dirs, sb._run
    live = dataclasses.replace(
        c,
        marks=list(c.marks),
        phases=dict(c.phases),
        notes=[*c.notes, LIVE_NOTE],
        last_outputs=dict(c.last_outputs),
    )
    if dirs is not None:
        live.trace_log, live.trace_log_size = _trace(dirs.trace / TRACE_LOG_NAME)
        live.worker_events, live.worker_events_dropped = _audit(dirs.run / AUDIT_LOG_NAME)
    if run is not None:
        sampler = run.sampler
        live.samples = list(sampler.samples)
        live.memory_peak_bytes = sampler.memory_peak_bytes
        live.pids_limit_hits = sampler.pids_limit_hits
    return live


def live_report(sb: Sandbox) -> Report:
    """The sandbox's report so far, judged by the same rules as at close; never raises."""
    try:
        live = collected(sb)
    except Exception as e:  # the report says what could not be read
        return reporting.minimal(sb._c, f"reading the live evidence failed: {type(e).__name__}")
    faults = [x.faults for x in (sb._client, sb._data) if x is not None]
    return reporting.build(live, faults)


def running(sb: Sandbox) -> bool:
    """Whether the sandbox's container still runs (False when it is gone or unknown)."""
    run = sb._run
    if run is None:
        return False
    try:
        st = engine.state(run.container)
    except Exception:
        return False
    return st is not None and st.running


def container(sb: Sandbox) -> str:
    """The sandbox's container id ('' before it is launched)."""
    return sb._run.container if sb._run is not None else ""
