"""The rules of evidence that fails closed (AL901-AL908: the worker's self-report against the
tracer, the audit log lost, cut or tampered with, the trace not read whole, events folded past
the cap, a sandbox killed before its trace ended, evidence that could not be read), as rows the
rule table (runner.rules.catalog) splices in: id, RuleName member, title, Severity member,
evidence. Plain data: this module imports nothing of Airlock."""

from __future__ import annotations

Row = tuple[str, str, str, str, str]

ROWS: tuple[Row, ...] = (
    (
        "AL901",
        "SELF_REPORT_CONTRADICTED",
        "Worker's self-report contradicts the tracer",
        "HIGH",
        "host: the tracer saw the model start a process, use the network, write outside "
        "scratch or signal a process while loading or inferring, and the worker's audit log "
        "has no event of that kind (silenced, emptied, forged, or code below Python's hooks)",
    ),
    (
        "AL902",
        "AUDIT_LOG_LOST",
        "Worker's audit log missing or rewritten",
        "HIGH",
        "host: after the model's code ran, the audit log is missing or not a regular file, or "
        "its line numbers skip, go back or are absent (lines removed, the log cut or forged)",
    ),
    (
        "AL903",
        "AUDIT_LOG_INCOMPLETE",
        "Worker's audit log incomplete",
        "MEDIUM",
        "host: events the worker's log did not keep (its size cap), bytes or lines past the "
        "host's read caps, lines too long or that do not parse, a last line cut; with counts",
    ),
    (
        "AL904",
        "AUDIT_LOG_TAMPERING",
        "Audit log or trace tampered with",
        "CRITICAL",
        "tracer: while loading or inferring, the model opened for writing, truncated, renamed, "
        "linked or removed the worker's audit log or a file of the tracer's directory, or "
        "wrote through a /proc/*/fd link",
    ),
    (
        "AL905",
        "TRACE_INCOMPLETE",
        "Trace not read whole",
        "MEDIUM",
        "host: the tracer's log reached the host's read cap or the parser's line cap, or has "
        "lines too long, not in strace's format, or calls without their start; with counts",
    ),
    (
        "AL906",
        "EVENTS_FOLDED",
        "Events folded past the cap",
        "MEDIUM",
        "host: more distinct events than the report keeps; the rest were folded by kind, rule "
        "and path (every rule still saw them), with counts",
    ),
    (
        "AL907",
        "KILLED_TRACE_INCOMPLETE",
        "Sandbox killed before its trace ended",
        "MEDIUM",
        "host: the host killed the sandbox (a deadline, the wall time, a cancel) and the "
        "trace lacks the worker's exit or ends mid-line: what the model did last may be missing",
    ),
    (
        "AL908",
        "EVIDENCE_UNREADABLE",
        "Evidence could not be read",
        "MEDIUM",
        "host: a record of the trace or the audit log could not be turned into events; with counts",
    ),
)
