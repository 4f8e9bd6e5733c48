"""Evidence gaps: what the host could not take whole, and where the worker's word and the
tracer's disagree (rules AL901-AL908).

The verdict stands on what the host gathered itself (the tracer's log, the container's state);
the worker's audit log, written from inside the model's own process, adds detail. So:
- the tracer seeing the model act (a process, the network, a write outside scratch, a signal)
  while the worker reports nothing of the kind is a finding (AL901): the hook was silenced, the
  log emptied or forged, or the code ran below Python's hooks;
- an audit log missing, replaced or renumbered after the model's code ran (AL902), or one the
  tracer saw the model write to (AL904), is tampering with evidence;
- every cap that cut evidence (the writer's, the host's reads, the parser's, the folder's) and a
  sandbox the host killed before its trace ended keep the verdict from clean (AL903, AL905-907),
  and so does evidence that could not be turned into events (AL908); each says its counts.
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from runner.rules import allowances
from runner.rules.audit_log import AuditRead
from runner.rules.catalog import RuleName
from runner.rules.evaluation import Gap, rule_of
from runner.telemetry import folding
from runner.telemetry.events import Event, Phase, Source
from runner.telemetry.strace import Trace

if TYPE_CHECKING:
    from runner.rules.analysis import Collected

AUDIT_LOG = "/airlock/run/audit.jsonl"  # runner.controller.launch.CONTAINER_AUDIT_LOG
# a descriptor path other than the standard streams (writing /dev/stdout is no tampering)
_EVIDENCE_PATH = re.compile(
    r"^(/airlock/run/audit\.jsonl|/airlock/trace/.*|/proc/[^/]+/fd/(?![012]$).+)$"
)
_ACTIVE = (Phase.LOAD, Phase.INFER)

# What the tracer sees the model do (tracer kinds), and the worker's events that report it (a
# native library loaded through ctypes explains any of them: its calls raise no Python event).
_PROCESS = "started a process"
_NETWORK = "used the IP network"
_WRITE = "wrote outside scratch"
_SIGNAL = "signalled a process"
_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (_PROCESS, ("process.exec", "process.fork")),
    (
        _NETWORK,
        (
            "net.connect",
            "net.sendto",
            "net.sendmsg",
            "net.sendmmsg",
            "net.bind",
            "net.listen",
            "net.accept",
            "net.lookup",
        ),
    ),
    (_WRITE, ("file.write", "file.modify")),
    (_SIGNAL, ("signal.send",)),
)
_WORKER_PROCESS = (
    "python.subprocess.",
    "python.os.system",
    "python.os.exec",
    "python.os.posix_spawn",
    "python.os.spawn",
    "python.os.fork",
    "python.pty.spawn",
)
_WORKER_NETWORK = (
    "python.socket.geta",
    "python.socket.gethost",
    "python.http.",
    "python.urllib.",
    "python.webbrowser.",
)
_WORKER_ADDRESSED = ("python.socket.connect", "python.socket.sendto", "python.socket.bind")
_WORKER_WRITE = (
    "python.open",
    "python.os.remove",
    "python.os.unlink",
    "python.os.rename",
    "python.os.mkdir",
    "python.os.rmdir",
    "python.os.chmod",
    "python.os.chown",
    "python.shutil.",
)
_WORKER_SIGNAL = ("python.os.kill", "python.signal.")


@dataclass(frozen=True)
class Found:
    """What the analysis read, for the checks below."""

    trace: Trace | None
    events: list[Event]
    folder: folding.Folder
    audit: AuditRead | None  # None: the audit log was not read (no run directory)
    unreadable: tuple[str, ...] = ()


def gaps(c: Collected, f: Found) -> tuple[Gap, ...]:
    ran_model = any(p in _ACTIVE for _, p in c.marks) and c.final_state is not None
    out = [*_trace_gaps(c, f.trace), *_folded(f.folder), *_unreadable(f.unreadable)]
    if f.audit is not None:
        out += _audit_gaps(f.audit, ran_model)
    out += _tampering(f.events)
    if ran_model:
        out += _contradictions(f.events, f.audit)
    return tuple(out)


def cut_at_read_cap(c: Collected) -> bool:
    """The host read the tracer's log only up to its cap (teardown's MAX_TRACE_BYTES)."""
    from runner.controller.teardown import MAX_TRACE_BYTES

    read = len(c.trace_log or b"")
    if c.trace_log_size is not None:
        return c.trace_log_size > read
    return read >= MAX_TRACE_BYTES


def _trace_gaps(c: Collected, trace: Trace | None) -> list[Gap]:
    if trace is None or not c.policy.trace:
        return []
    out: list[Gap] = []
    lost = trace.problems()
    count = trace.skipped + trace.oversized + trace.orphans + trace.malformed
    if cut_at_read_cap(c):
        size = c.trace_log_size
        lost.insert(
            0,
            f"the log was read up to the host's cap of {len(c.trace_log or b'')} bytes"
            + (f" of {size}" if size is not None else "")
            + ": what the model did after that is not in the report",
        )
        count += 1
    if lost:
        message = "the tracer's log was not read whole: " + "; ".join(lost)
        out.append(Gap(RuleName.TRACE_INCOMPLETE, message[:600], tuple(lost), max(count, 1)))
    if c.killed_by_host and c.final_state is not None and not cut_at_read_cap(c):
        out += _killed(c, trace)
    return out


def _killed(c: Collected, trace: Trace) -> list[Gap]:
    why = f"the {c.deadline.value} deadline" if c.deadline else "the host (a cancel or a kill)"
    missing = []
    first = trace.first_pid
    if first is None or first not in trace.exits:
        missing.append("the trace lacks the worker's exit record")
    if trace.cut_mid_line:
        missing.append("the trace ends mid-line")
    if not missing:
        return []
    if trace.unfinished:
        missing.append(f"{trace.unfinished} call(s) never finished")
    evidence = (f"host: the sandbox was killed by {why}", *missing)
    message = (
        f"the sandbox was killed by {why} before its trace ended: what the model did last "
        "may be missing from it"
    )
    return [Gap(RuleName.KILLED_TRACE_INCOMPLETE, message, evidence, max(trace.unfinished, 1))]


def _folded(folder: folding.Folder) -> list[Gap]:
    if not folder.folded:
        return []
    evidence = (
        f"{folder.folded} event(s) past the cap of {folder.exact_limit} distinct events were "
        f"folded by kind, rule and path ({folder.distinct} events listed); every rule saw them",
    )
    message = "more distinct events than the report keeps: the rest were folded, with counts"
    return [Gap(RuleName.EVENTS_FOLDED, message, evidence, folder.folded)]


def _unreadable(problems: tuple[str, ...]) -> list[Gap]:
    if not problems:
        return []
    message = "part of the evidence could not be turned into events: " + "; ".join(problems)
    return [Gap(RuleName.EVIDENCE_UNREADABLE, message[:600], problems, len(problems))]


def _audit_gaps(read: AuditRead, ran_model: bool) -> list[Gap]:
    out = []
    lost = read.lost()
    if lost:
        count = read.writer_dropped + read.bytes_unread + read.unread_events
        count += read.oversized + read.malformed
        message = "the worker's audit log is incomplete: " + "; ".join(lost)
        out.append(Gap(RuleName.AUDIT_LOG_INCOMPLETE, message[:600], tuple(lost), max(count, 1)))
    tampered = read.tampered()
    if tampered and ran_model:
        count = read.missing_numbers + read.out_of_order + read.unnumbered
        message = "the worker's audit log was removed or rewritten: " + "; ".join(tampered)
        out.append(Gap(RuleName.AUDIT_LOG_LOST, message[:600], tuple(tampered), max(count, 1)))
    return out


def fold_class(e: Event) -> Hashable:
    """What folding keeps apart: the rule an event falls under, and what the checks here read
    (the group an event reports or acts in, and a write to the host's evidence)."""
    rule = rule_of(e)
    return rule, _group(e, rule), touches_evidence(e)


def touches_evidence(e: Event) -> bool:
    return (
        e.source is Source.TRACER
        and e.kind in ("file.write", "file.modify")
        and any(_EVIDENCE_PATH.match(p) for p in _paths(e))
    )


def _paths(e: Event) -> list[str]:
    raw = e.detail.get("paths") or e.detail.get("path") or ""
    return [str(p) for p in raw] if isinstance(raw, list) else [str(raw)]


def _group(e: Event, rule: RuleName | None) -> str:
    """The group of _GROUPS a tracer event acts in, or a worker event reports ('' for none)."""
    if e.source is Source.WORKER:
        return _reported(e)
    if e.source is not Source.TRACER:
        return ""
    for what, kinds in _GROUPS:
        if e.kind in kinds and _acted(e, rule):
            return what
    return ""


def _reported(e: Event) -> str:
    """The group a worker event reports. The worker's own data plane opens and uses Unix
    sockets while the model's code runs: only IP sockets and names report the network."""
    k, args = e.kind, e.detail.get("args")
    first = [str(a) for a in args[:2]] if isinstance(args, list) else []
    if k.startswith("python.ctypes."):
        return "native"
    if k.startswith(_WORKER_PROCESS):
        return _PROCESS
    if k.startswith(_WORKER_NETWORK):
        return _NETWORK
    if k.startswith(_WORKER_ADDRESSED):  # the address is a tuple for IP, a path for Unix
        return _NETWORK if len(first) > 1 and first[1].startswith("(") else ""
    if k == "python.socket.__new__":
        family = first[1] if len(first) > 1 else ""
        return _NETWORK if family in ("2", "10") or "AF_INET" in family else ""
    if k.startswith(_WORKER_WRITE):
        return _WRITE
    return _SIGNAL if k.startswith(_WORKER_SIGNAL) else ""


def _acted(e: Event, rule: RuleName | None) -> bool:
    if allowances.allowed(e):
        return False  # a library's own, by what the host knows (runner.rules.allowances)
    if e.kind in ("file.write", "file.modify"):  # in scratch, library code writes too
        return rule is not RuleName.WRITE_IN_SCRATCH
    # Unix sockets: libraries reach for them on their own (syslog, nscd); IP is the model's
    return e.detail.get("family") != "AF_UNIX"


def _tampering(events: list[Event]) -> list[Gap]:
    """The tracer saw the model write to the evidence the host reads."""
    hits = [e for e in events if e.phase in _ACTIVE and touches_evidence(e)]
    if not hits:
        return []
    evidence = tuple(f"[tracer] {e.summary} = {e.result} (x{e.count})" for e in hits[:10])
    message = "the model tried to change the evidence the host reads: " + hits[0].summary[:200]
    count = sum(e.count for e in hits)
    return [Gap(RuleName.AUDIT_LOG_TAMPERING, message, evidence, count, Source.TRACER)]


def _contradictions(events: list[Event], read: AuditRead | None) -> list[Gap]:
    """What the tracer saw the model do in load and infer that the worker did not report."""
    active = [e for e in events if e.phase in _ACTIVE]
    reported = {_group(e, None) for e in active if e.source is Source.WORKER}
    evidence: list[str] = []
    count = 0
    for what, _ in _GROUPS:
        seen = [e for e in active if e.source is Source.TRACER and _group(e, rule_of(e)) == what]
        if not seen or "native" in reported or what in reported:
            continue
        count += sum(e.count for e in seen)
        cite = "; ".join(f"{e.summary[:120]} ({e.phase.value})" for e in seen[:3])
        evidence.append(f"tracer: the model {what}: {cite}; worker: no such event")
    if not evidence:
        return []
    state = _audit_state(read, sum(e.count for e in active if e.source is Source.WORKER))
    message = (
        "the tracer saw the model act and the worker's audit log does not report it "
        f"({state}): the hook was silenced, the log emptied or forged, or the code ran below "
        "Python's hooks"
    )
    return [Gap(RuleName.SELF_REPORT_CONTRADICTED, message, (*evidence, f"worker: {state}"), count)]


def _audit_state(read: AuditRead | None, reported: int) -> str:
    if read is not None and (read.tampered() or read.lost()):
        return "; ".join([*read.tampered(), *read.lost()])[:300]
    if not reported:
        return "no event at all while the model's code ran"
    return f"{reported} event(s), none of those kinds"
