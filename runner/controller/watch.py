"""A sandbox watched while it runs: its report so far, without tearing it down.

The tracer's log and the worker's audit log are written to host-mounted directories as the
model runs. The interim report reads what is there now (bounded as teardown reads it: the
same caps), drops a last line still being written (it is pending, not malformed: the next read
takes it whole), and judges a copy of what the sandbox collected with the same analysis and
rules as the report at close (runner.controller.reporting.build). The container is not
stopped, so nothing of its final state is known: the interim report's verdict is error at
best (the run is not over); its findings are what a server acts on (runner.serve.replicas).

Reading is cheap when nothing changed: `sizes` gives the two logs' sizes, so a caller judges
again only when the evidence grew. `Evidence` makes it cheap when the evidence grew by a
serving replica's own traffic: after a full judgement it keeps where each log was judged to and
the tracer's bookkeeping then (the descriptor tables), and `Evidence.quiet` proves from the new
bytes alone that nothing judged was added, or says it cannot (then the caller judges in full).
"""

from __future__ import annotations

import dataclasses
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from runner.controller import engine, reporting
from runner.controller.launch import AUDIT_LOG_NAME, TRACE_LOG_NAME
from runner.controller.teardown import MAX_TRACE_BYTES
from runner.report import Report
from runner.rules import analysis
from runner.rules.audit_log import (
    MAX_AUDIT_BYTES,
    MAX_AUDIT_EVENTS,
    AuditEvents,
    _decode,
    _parse,
    _read,
)
from runner.telemetry import events as telemetry
from runner.telemetry import strace, syscalls
from runner.telemetry.gvisor import session as gvisor_session
from runner.telemetry.procstate import State

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
    sink = gvisor_session.progress(dirs.root)  # under runsc: what gVisor's sink took so far
    trace = sink if sink is not None else _size(dirs.trace / TRACE_LOG_NAME)
    return (trace, _size(dirs.run / AUDIT_LOG_NAME))


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


def _audit(path: Path) -> tuple[AuditEvents, int, bytes]:
    """The audit log's whole lines, read as runner.rules.audit_log reads it at close (and the
    bytes judged)."""
    out = AuditEvents()
    r = out.read
    data = _read(path, r)
    judged = b""
    if data is not None:
        judged = data if r.bytes_unread else _complete(data)
        _parse(judged, out)
    lost = r.writer_dropped + r.unread_events + r.oversized + r.malformed
    return out, lost, judged


def collected(sb: Sandbox) -> analysis.Collected:
    """A copy of what the sandbox collected, with the evidence written so far."""
    return _collected(sb)[0]


def _collected(sb: Sandbox) -> tuple[analysis.Collected, bytes]:
    c, dirs, run = sb._c, sb._dirs, sb._run
    audit = b""
    live = dataclasses.replace(
        c,
        marks=list(c.marks),
        phases=dict(c.phases),
        notes=[*c.notes, LIVE_NOTE],
        last_outputs=dict(c.last_outputs),
    )
    if dirs is not None:
        snap = gvisor_session.snapshot(dirs.root)
        if snap is not None:  # gVisor's trace points: the sink's messages so far, decoded
            live.trace_log, live.trace_log_size, live.tracer_kind = snap, len(snap), "gvisor"
        else:
            live.trace_log, live.trace_log_size = _trace(dirs.trace / TRACE_LOG_NAME)
        live.worker_events, live.worker_events_dropped, audit = _audit(dirs.run / AUDIT_LOG_NAME)
    if run is not None:
        sampler = run.sampler
        live.samples = list(sampler.samples)
        live.memory_peak_bytes = sampler.memory_peak_bytes
        live.pids_limit_hits = sampler.pids_limit_hits
    return live, audit


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


# --- judging incrementally ----------------------------------------------------------------------

QUIET_SENDS = ("sendmsg", "sendto")  # the worker's own traffic: the only calls quiet() passes
QUIET_AUDIT = ("socket.sendmsg", ["<socket>", "None"])  # the worker's own send, as audited
MAX_QUIET_BYTES = 4 << 20  # new bytes read by one quiet check; more: judged in full


def _chunk(path: Path, start: int) -> bytes | None:
    """The log's whole lines from `start` (None: not readable, shrunk, or too much new)."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size < start:
            return None
        if st.st_size - start > MAX_QUIET_BYTES:
            return None
        data = os.pread(fd, st.st_size - start, start)
    except OSError:
        return None
    finally:
        os.close(fd)
    return _complete(data)


class Evidence:
    """One sandbox's evidence, judged in full now and then and proved quiet in between."""

    def __init__(self, sb: Sandbox) -> None:
        self.sb = sb
        self.trace_at = self.audit_at = -1  # bytes judged in full (-1: never)
        self.trace_lines = self.audit_lines = 0
        self.state: State | None = None
        self.expected: dict[int | None, int] = {}  # each audit writer's next number
        self.host: tuple[int, tuple[int, ...]] = (
            -1,
            (),
        )  # the host's own evidence at the full judgement
        self.quiet_checks = self.full_checks = 0
        self.sink_at: int | None = None  # gVisor's sink at the full judgement (None: strace)

    def _host(self) -> tuple[int, tuple[int, ...]]:
        """What the host observed besides the logs: the pids limit hits, the reply faults."""
        sb, hits = self.sb, -1
        if sb._run is not None:
            hits = sb._run.sampler.pids_limit_hits
        faults = tuple(
            n
            for x in (sb._client, sb._data)
            if x is not None
            for n in (x.faults.malformed_count, x.faults.description_count, x.faults.names_count)
        )
        return hits, faults

    def full(self) -> Report:
        """The whole evidence judged (as live_report), its end and bookkeeping remembered."""
        self.full_checks += 1
        self.trace_at = self.audit_at = -1
        host = self._host()
        dirs = self.sb._dirs
        self.sink_at = gvisor_session.progress(dirs.root) if dirs is not None else None
        try:
            live, audit = _collected(self.sb)
        except Exception as e:  # the report says what could not be read
            why = f"reading the live evidence failed: {type(e).__name__}"
            return reporting.minimal(self.sb._c, why)
        faults = [x.faults for x in (self.sb._client, self.sb._data) if x is not None]
        report = reporting.build(live, faults)
        try:
            self._remember(live, audit)
        except Exception:  # no bookkeeping: the next check is in full again
            self.trace_at = self.audit_at = -1
        self.host = host
        return report

    def _remember(self, live: analysis.Collected, audit: bytes) -> None:
        read = getattr(live.worker_events, "read", None)
        log = live.trace_log
        if read is None or log is None or live.trace_log_size != len(log):
            return  # cut or missing: never quiet
        if read.bytes_unread or read.cut_mid_line or not read.present or read.not_regular:
            return
        trace = strace.parse(log)
        clock = telemetry.PhaseClock(tuple(self.sb._c.marks))
        state = State(trace.first_pid, analysis.WORKER_SOCKET)
        for call in trace.calls:
            syscalls.step(call, clock.at(call.time), state, analysis.WORKER_SOCKET)
        self.expected = _numbers(audit)
        self.state, self.trace_lines, self.audit_lines = state, len(trace.calls), read.lines
        self.trace_at, self.audit_at = len(log), len(audit)

    def quiet(self) -> bool:
        """True only when the bytes added since the last judgement prove nothing judged came:
        every new trace line a send on the worker's own connection (no address, no descriptors
        passed, succeeded, by a thread already known), every new audit line the worker's own
        send numbered next, the host's own evidence unchanged. Anything else: False."""
        dirs, state = self.sb._dirs, self.state
        if dirs is None or state is None or self.trace_at < 0 or self._host() != self.host:
            return False
        trace: bytes | None = b""
        if self.sink_at is not None:  # gVisor's points: quiet only if the sink took nothing more
            if gvisor_session.progress(dirs.root) != self.sink_at:
                return False
        else:
            trace = _chunk(dirs.trace / TRACE_LOG_NAME, self.trace_at)
        audit = _chunk(dirs.run / AUDIT_LOG_NAME, self.audit_at)
        if trace is None or audit is None:
            return False
        calls = _quiet_trace(trace, state)
        numbers = _quiet_audit(audit, dict(self.expected))
        if calls is None or numbers is None:
            return False
        caps = (  # the full read's caps: a log that would be cut there is judged in full
            self.trace_at + len(trace) > MAX_TRACE_BYTES
            or self.trace_lines + calls > strace.MAX_LINES
            or self.audit_at + len(audit) > MAX_AUDIT_BYTES
            or self.audit_lines + len(numbers[1]) > MAX_AUDIT_EVENTS
        )
        if caps:
            return False
        self.trace_at, self.trace_lines = self.trace_at + len(trace), self.trace_lines + calls
        self.audit_at, self.audit_lines = (
            self.audit_at + len(audit),
            self.audit_lines + len(numbers[1]),
        )
        self.expected = numbers[0]
        self.quiet_checks += 1
        return True

    def spent(self) -> tuple[int, int, int, int]:
        """The evidence so far: trace bytes and calls, audit bytes and lines (as last read).
        Under gVisor a call can be two of the sink's messages: half its messages count as calls,
        so a replica is recycled before the sink's cap (sink.MAX_MESSAGES) is reached."""
        calls = max(self.trace_lines, (self.sink_at or 0) // 2)
        return self.trace_at, calls, self.audit_at, self.audit_lines


def _numbers(audit: bytes) -> dict[int | None, int]:
    """Each audit writer's next number after the judged lines."""
    out: dict[int | None, int] = {}
    for raw in audit[:MAX_AUDIT_BYTES].split(b"\n"):
        entry = _decode(raw) if raw.strip() else None
        if entry is not None and entry[3] is not None:
            out[entry[4]] = entry[3] + 1
    return out


def _quiet_trace(data: bytes, state: State) -> int | None:
    """The new trace lines' count when each is the worker's own send; None otherwise."""
    lines = data.count(b"\n")
    if not lines:
        return 0
    trace = strace.parse(data)
    if (
        len(trace.calls) != lines
        or trace.exits
        or trace.signals
        or trace.problems()
        or trace.unfinished
        or trace.cut_mid_line
    ):
        return None
    for call in trace.calls:
        if call.name not in QUIET_SENDS or call.failed or call.injected:
            return None
        if call.pid not in state.groups:
            return None
        if syscalls.step(call, telemetry.Phase.INFER, state, analysis.WORKER_SOCKET) is not None:
            return None
    return lines


def _quiet_audit(
    data: bytes, expected: dict[int | None, int]
) -> tuple[dict[int | None, int], list[int]] | None:
    """The writers' next numbers and the new lines' numbers when each new line is the worker's
    own send, numbered next by a writer already seen; None otherwise."""
    seen: list[int] = []
    for raw in data.split(b"\n")[:-1] if data else []:
        entry = _decode(raw)
        if entry is None:
            return None
        _, name, args, seq, pid = entry
        if (name, args) != QUIET_AUDIT or seq is None or expected.get(pid) != seq:
            return None
        expected[pid] = seq + 1
        seen.append(seq)
    return expected, seen
