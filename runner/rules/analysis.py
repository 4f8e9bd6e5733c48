"""Assemble the report from what a sandbox collected: events, resources, facts, findings."""

from __future__ import annotations

import signal
import weakref
from dataclasses import dataclass, field
from typing import Any

from runner import __version__
from runner.controller.engine import ContainerState
from runner.errors import AirlockError
from runner.policy import Deadline, Policy
from runner.report import (
    ErrorInfo,
    Integrity,
    ModelInfo,
    Phase,
    Report,
    SandboxInfo,
    Signature,
    TensorSummary,
    TracerInfo,
)
from runner.rules import allowances, cost, evaluation, gaps
from runner.rules import catalog as rules
from runner.rules.audit_log import MAX_AUDIT_BYTES, MAX_AUDIT_EVENTS, AuditEvents, parse_audit_log
from runner.static import tamper as _static
from runner.telemetry import events as telemetry
from runner.telemetry import folding
from runner.telemetry import strace as _strace
from runner.telemetry.resources import Resources, Sample, summarise


@dataclass
class Collected:
    """Raw material gathered by the controller during one run."""

    policy: Policy
    model: ModelInfo
    sandbox: SandboxInfo | None = None
    marks: list[tuple[float, telemetry.Phase]] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)
    signature: Signature | None = None
    last_outputs: dict[str, Any] = field(default_factory=dict)
    calls: int = 0
    notes: list[str] = field(default_factory=list)
    error: AirlockError | None = None
    trace_log: bytes | None = None
    tracer_kind: str = "strace"  # "gvisor" when the log came from gVisor's trace points
    trace_log_size: int | None = None  # the log's size on the host, when teardown records it
    worker_events: list[tuple[float, str, list[str]]] = field(default_factory=list)
    worker_events_dropped: int = 0
    samples: list[Sample] = field(default_factory=list)
    memory_peak_bytes: int | None = None
    pids_limit_hits: int = 0
    final_state: ContainerState | None = None
    killed_by_host: bool = False
    shutdown_requested: bool = False
    deadline: Deadline | None = None
    reply_too_large: bool = False
    worker_crash: str = ""
    tamper: list[_static.Tamper] = field(default_factory=list)
    scratch_full: bool = False
    output_flood: bool = False
    run_dir_left: list[str] = field(default_factory=list)  # found there after the container
    static_imports: list[tuple[str, str, str]] = field(default_factory=list)
    integrity: Integrity | None = None
    static_only: bool = False  # a pre-flight without a sandbox, by request
    warmed: tuple[str, ...] = ()  # the formats the worker was asked to warm in startup


__all__ = ["MAX_AUDIT_BYTES", "MAX_AUDIT_EVENTS", "Collected", "build", "parse_audit_log"]
WORKER_SOCKET = "/airlock/run/worker.sock"  # runner.controller.launch.CONTAINER_SOCKET


def _signal_number(name: str) -> int | None:
    try:
        return int(signal.Signals[name])
    except KeyError:
        return None


def _tracer_problems(c: Collected, trace: _strace.Trace | None) -> list[str]:
    if not c.policy.trace or c.final_state is None:
        return []
    if trace is None or not c.trace_log:
        return ["the tracer's log is empty or missing"]
    if c.killed_by_host or gaps.cut_at_read_cap(c):
        return []  # a cut log, no exit record are expected: AL907 and AL905 say so
    problems = []
    if trace.cut_mid_line:
        problems.append("the tracer's log ends mid-line")
    first = trace.first_pid
    record = trace.exits.get(first) if first is not None else None
    code = c.final_state.exit_code
    if record is None:
        problems.append("the worker's exit record is missing from the tracer's log")
    else:
        expected = (
            record.code if record.code is not None else (128 + (_signal_number(record.signal) or 0))
        )
        if code is not None and code != expected:
            problems.append(
                f"the tracer exited with {code} but the worker's exit record says {expected}"
            )
    if code not in (0, None) and c.shutdown_requested and record is not None and record.code == 0:
        problems.append(f"the tracer exited with status {code}")
    return problems


def build(c: Collected) -> Report:
    clock = telemetry.PhaseClock(tuple(c.marks))
    folder = folding.new_folder(classify=gaps.fold_class)
    unreadable: list[str] = []
    trace = _parse_trace(c.trace_log, unreadable)
    if trace is not None:
        try:
            telemetry.tracer_events(trace, clock, folder, WORKER_SOCKET)
        except Exception as e:  # what was read before stands; the rest is reported lost
            unreadable.append(f"the tracer's calls could not all be read: {type(e).__name__}")
    bad = telemetry.worker_events(c.worker_events, clock, folder)
    if bad:
        unreadable.append(f"{bad} audit entr(y/ies) of another shape")
    events = sorted(folder.events, key=lambda e: e.time)
    events = allowances.apply(events, c.model.format, c.warmed)  # by the host's own format
    audit = c.worker_events.read if isinstance(c.worker_events, AuditEvents) else None
    found = gaps.Found(trace, events, folder, audit, tuple(unreadable))
    findings = evaluation.evaluate(events, _host_facts(c, trace, gaps.gaps(c, found)))
    # a sandbox that never ran, or whose run is not over, has not been evaluated
    could_not = c.error is not None or (c.final_state is None and not c.static_only)
    return Report(
        tool_version=__version__,
        verdict=rules.verdict(findings, could_not),
        findings=findings,
        model=c.model,
        sandbox=c.sandbox,
        resources=_resources(c) if c.sandbox is not None else None,
        events=events,
        events_dropped=folder.dropped + c.worker_events_dropped,
        tracer=_tracer_info(c, trace) if c.sandbox is not None else None,
        phases=[Phase(name=k, seconds=round(v, 6)) for k, v in c.phases.items()],
        signature=c.signature,
        calls=c.calls,
        notes=_notes(c, trace, findings),
        outputs=[TensorSummary.of(k, v) for k, v in _alive_outputs(c.last_outputs)],
        error=error_info(c.error) if c.error else None,
        integrity=c.integrity,
    )


def _parse_trace(log: bytes | None, unreadable: list[str]) -> _strace.Trace | None:
    if not log:
        return None
    try:
        return _strace.parse(log)
    except Exception as e:  # the parser does not raise; if it ever does, the report stands
        unreadable.append(f"the tracer's log could not be parsed: {type(e).__name__}")
        return None


def _oom(c: Collected) -> bool:
    return bool(c.final_state and c.final_state.oom_killed)


def _host_facts(
    c: Collected, trace: _strace.Trace | None, found_gaps: tuple[evaluation.Gap, ...]
) -> evaluation.HostFacts:
    oom = _oom(c)
    return evaluation.HostFacts(
        oom_killed=oom,
        pids_limit_hit=c.pids_limit_hits > 0,
        deadline=c.deadline,
        reply_too_large=c.reply_too_large,
        worker_crashed=c.worker_crash if not oom else "",
        tracer_problems=tuple(_tracer_problems(c, trace)),
        tamper=tuple((t.check, t.evidence) for t in c.tamper),
        scratch_full=c.scratch_full,
        output_flood=c.output_flood,
        run_dir_left=tuple(c.run_dir_left),
        static_imports=tuple(c.static_imports),
        gaps=found_gaps,
        load_cost=cost.load_cost(c.samples, c.model.size_bytes),
        huggingface=c.model.huggingface,
        **_integrity_facts(c.integrity),
    )


def _notes(c: Collected, trace: _strace.Trace | None, findings: list[rules.Finding]) -> list[str]:
    notes = list(c.notes) + ([] if c.static_only else _disagreements(findings))
    if trace is not None and trace.truncated:
        notes.append(
            f"the tracer's log held more than {_strace.MAX_LINES} calls; past that, the first "
            f"{_strace.PAST_CAP_PER_NAME} of each syscall were kept, {trace.skipped} not"
        )
    if c.static_only:
        notes.append("static pre-flight only: the model was not loaded, nothing ran")
    elif c.final_state is None and c.error is None:
        notes.append("the sandbox did not run to the end: this report is incomplete")
    return notes


def _resources(c: Collected) -> Resources:
    st = c.final_state
    return Resources(
        memory_limit_bytes=c.policy.memory_bytes,
        memory_peak_bytes=c.memory_peak_bytes,
        cpu_seconds=c.samples[-1].cpu_seconds if c.samples else None,
        pids_limit=c.policy.effective_pids,
        pids_max=max((s.pids for s in c.samples), default=None),
        pids_limit_hit=c.pids_limit_hits > 0,
        oom_killed=_oom(c),
        exit_code=st.exit_code if st else None,
        killed_by_host=c.killed_by_host,
        timed_out=c.deadline.value if c.deadline else "",
        per_phase=summarise(c.samples),
        timeline=c.samples,
    )


def _tracer_info(c: Collected, trace: _strace.Trace | None) -> TracerInfo:
    st = c.final_state
    record = trace.exits.get(trace.first_pid) if trace and trace.first_pid else None
    if record is None:
        worker_exit = ""
    elif record.code is not None:
        worker_exit = f"exited with {record.code}"
    else:
        worker_exit = f"killed by {record.signal}"
    return TracerInfo(
        enabled=c.policy.trace,
        kind=c.tracer_kind if c.policy.trace else "",
        exit_code=st.exit_code if st else None,
        worker_exit=worker_exit,
        log_bytes=len(c.trace_log or b""),
        syscalls=len(trace.calls) if trace else 0,
        malformed_lines=trace.malformed if trace else 0,
        cut_mid_line=bool(trace and trace.cut_mid_line),
        truncated=bool(trace and trace.truncated),
    )


def _alive_outputs(outputs: dict[str, Any]) -> list[tuple[str, Any]]:
    """The last call's outputs; views (weak references) only if the caller still holds them."""
    alive = [(k, v() if isinstance(v, weakref.ref) else v) for k, v in outputs.items()]
    return [(k, v) for k, v in alive if v is not None]


def _integrity_facts(i: Integrity | None) -> dict[str, Any]:
    if i is None:
        return {}
    sig = i.signature
    return {
        "static_aborted": i.static.aborted,
        "signature_failure": sig.reason if sig is not None and not sig.verified else "",
        "signature_missing": i.signature_required and sig is None,
        "provenance_mismatches": tuple(
            f"{c.field} {c.value} in {c.source}" + (f" ({c.note})" if c.note else "")
            for c in (i.provenance.claims if i.provenance else [])
            if c.status == "mismatch"
        ),
    }


STATIC_IMPORT_RULES = {"AL611", "AL612", "AL614", "AL616", "AL623", "AL624"}
DYNAMIC_CODE_RULES = {"AL201", "AL202", "AL601", "AL603", "AL605"}


def _disagreements(findings: list[rules.Finding]) -> list[str]:
    """Say so when the static read of the file and what the sandbox saw disagree."""
    ids = {f.rule_id for f in findings}
    static = ids & STATIC_IMPORT_RULES
    dynamic = ids & DYNAMIC_CODE_RULES
    if dynamic and not static:
        return [
            "static and dynamic evidence disagree: the static read of the file found no "
            f"dangerous import, but the sandbox saw code run ({', '.join(sorted(dynamic))})"
        ]
    if static and not dynamic:
        return [
            "static and dynamic evidence disagree: the file would import something "
            "dangerous, but the sandbox saw no code run from it (it may not have been "
            "reached, or it behaved while watched)"
        ]
    return []


def error_info(e: AirlockError) -> ErrorInfo:
    return ErrorInfo(
        kind=type(e).__name__,
        message=e.message,
        hint=e.hint,
        exit_code=getattr(e, "worker_exit_code", None),
        log_tail=getattr(e, "log_tail", ""),
    )
