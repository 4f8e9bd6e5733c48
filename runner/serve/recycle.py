"""Recycling: a replica replaced before its evidence reaches the caps the host reads it with.

A sandbox's logs only grow: teardown and the live reads take the tracer's log up to
MAX_TRACE_BYTES (and strace.MAX_LINES calls), the audit log up to MAX_AUDIT_BYTES and
MAX_AUDIT_EVENTS lines, and a log cut at a cap is a finding (the evidence was not read whole). So
a replica is recycled when its requests or its evidence reach a budget well under those caps
(half, by default): a fresh sandbox is opened first (the old one still serves), then the old one
takes no new request, finishes the one in flight, and is swapped out and closed, its final report
judged as any closed replica's (a finding in it still quarantines). One recycle at a time, so at
most replicas + 1 sandboxes run; with one replica a request waits at most the call in flight.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from runner.controller.sessions import TRACE_TMPFS_BYTES
from runner.controller.teardown import MAX_TRACE_BYTES
from runner.errors import AirlockError, untrusted_text
from runner.rules.audit_log import MAX_AUDIT_BYTES, MAX_AUDIT_EVENTS
from runner.serve import metrics
from runner.serve.handles import Replica
from runner.telemetry.strace import MAX_LINES

if TYPE_CHECKING:
    from runner.serve.replicas import ReplicaBackend

DRAIN_S = 120.0  # the longest the swap waits for the old sandbox's call in flight


@dataclass(frozen=True)
class Budget:
    """What one sandbox may spend before it is recycled (0: no limit of that kind)."""

    requests: int = 10_000
    trace_bytes: int = min(MAX_TRACE_BYTES, TRACE_TMPFS_BYTES) // 2
    trace_calls: int = MAX_LINES // 2
    audit_bytes: int = MAX_AUDIT_BYTES // 2
    audit_lines: int = MAX_AUDIT_EVENTS // 2

    def over(self, served: int, spent: tuple[int, int, int, int]) -> str:
        """Why the sandbox is due ('' while it is within the budget)."""
        pairs = zip(
            ("requests", "trace bytes", "trace calls", "audit bytes", "audit lines"),
            (served, *spent),
            (self.requests, self.trace_bytes, self.trace_calls, self.audit_bytes, self.audit_lines),
            strict=True,
        )
        for what, used, cap in pairs:
            if cap and used >= cap:
                return f"{what} {used} >= {cap}"
        return ""


def due(b: ReplicaBackend, r: Replica) -> str:
    """Why the replica should be recycled now ('' if not, or if one is under way)."""
    handle = r.handle
    if handle is None or r.state not in ("idle", "busy") or r.draining:
        return ""
    return b.budget.over(r.served, handle.spent())


def recycle(b: ReplicaBackend, r: Replica, why: str) -> None:
    """Open a fresh sandbox, then swap it in for the replica's old one once that one is idle,
    then close the old one (its final report judged). Runs on its own thread."""
    try:
        _recycle(b, r, why)
    finally:
        with b._cond:
            b._recycling = False
            r.draining = False
            b._cond.notify_all()


def _recycle(b: ReplicaBackend, r: Replica, why: str) -> None:
    b._event("recycle-started", r, why=why)
    fresh = b._factory()
    try:
        fresh.open()
        fresh.describe()
        report = fresh.check(True)
    except Exception as e:
        text = e.message if isinstance(e, AirlockError) else f"{type(e).__name__}: {e}"
        b._event("recycle-failed", r, reason=untrusted_text(text, 600))
        b._collect(Replica(r.index, generation=r.generation + 1), fresh, failed=True)
        return
    if report is not None:
        b._judge(Replica(r.index, generation=r.generation + 1), report)
    with b._cond:
        ok = not (b._closing or b._quarantine) and r.handle is not None
        if ok:
            r.draining = True  # no new request; the one in flight finishes
            end = time.monotonic() + DRAIN_S
            while r.state == "busy" and time.monotonic() < end and not b._closing:
                b._cond.wait(0.5)
            ok = r.state == "idle" and not (b._closing or b._quarantine)
        if ok:
            old, old_gen = r.handle, r.generation
            r.handle, r.generation, r.served, r.judged_at = fresh, r.generation + 1, 0, 0.0
            r.started, r.findings = time.time(), []
            r.recycles += 1
    if not ok:
        b._event("recycle-abandoned", r, why="the replica was busy, failed or shut down")
        b._collect(Replica(r.index, generation=r.generation + 1), fresh, failed=False)
        return
    assert old is not None
    metrics.observe_restart("recycle")
    b._event("replica-recycled", r, why=why, container=fresh.container, old=old.container)
    with r.lock:  # a judgement of the old handle in flight ends first
        pass
    b._collect(Replica(r.index, generation=old_gen), old, failed=False)
    b._event("replica-closed", Replica(r.index, generation=old_gen), why=f"recycled: {why}")


def running_report(b: ReplicaBackend) -> dict[str, Any]:
    """ReplicaBackend.report: the running report, JSON-able."""
    with b._cond:
        return {
            "model": str(b.model),
            "name": b.name,
            "version": b.version,
            "fail_on": b.fail_on.value,
            "quarantined": bool(b._quarantine),
            "quarantine_reason": b._quarantine,
            "requests": b._requests,
            "errors": dict(b._errors),
            "restarts": sum(e["event"] == "replica-restart" for e in b._events),
            "recycles": sum(r.recycles for r in b._replicas),
            "budget": dataclasses.asdict(b.budget),
            "replicas": [r.summary() for r in b._replicas],
            "closed": list(b._reports),
            "events": list(b._events),
            "events_dropped": b._events_count - len(b._events),
        }
