"""The sandbox's report, never lost.

The analysis makes the report from what the run collected (runner.rules.analysis); to it are
added what the channel saw of the worker (replies that did not validate, a description out of
bounds, names with control characters: runner.channel.replies.Faults) and file names in the
model that are made to deceive a reader. When building the report fails, whatever the reason,
a minimal report says so: verdict error, the reason (sanitised), and what is known of the model.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from runner import __version__
from runner.channel.replies import Faults
from runner.errors import deceptive_chars, untrusted_text
from runner.report import ErrorInfo, ModelInfo, Phase, Report
from runner.rules import analysis
from runner.rules.catalog import BY_NAME, Finding, RuleName, Verdict, verdict
from runner.telemetry.events import Source

log = logging.getLogger(__name__)

MAX_EVIDENCE = 10


def finding(
    name: RuleName, source: Source, message: str, evidence: Sequence[str], count: int
) -> Finding:
    rule = BY_NAME[name]
    return Finding(
        rule_id=rule.id,
        rule=rule.name,
        title=rule.title,
        severity=rule.severity,
        phase=None,
        source=source,
        message=message,
        evidence=[untrusted_text(e, 300) for e in evidence[:MAX_EVIDENCE]],
        event_count=max(count, 1),
    )


def channel_findings(faults: Sequence[Faults]) -> list[Finding]:
    """What the worker sent that did not hold, as findings (the host's own evidence: it is
    what the host received)."""
    out = []
    kinds = (
        (RuleName.MALFORMED_REPLY, "malformed", "malformed_count", "reply(ies) did not validate"),
        (
            RuleName.DESCRIPTION_OUT_OF_BOUNDS,
            "description",
            "description_count",
            "thing(s) out of bounds in the model's description",
        ),
        (RuleName.DECEPTIVE_NAME, "names", "names_count", "tensor name(s) with control characters"),
    )
    for name, kept, counted, what in kinds:
        evidence = [e for f in faults for e in getattr(f, kept)]
        count = sum(getattr(f, counted) for f in faults)
        if count:
            out.append(
                finding(name, Source.HOST, f"the worker sent {count} {what}", evidence, count)
            )
    return out


def name_findings(report: Report) -> list[Finding]:
    """The model's path and its files' names, when they hold control or bidi characters."""
    m = report.model
    evidence = []
    for what, name in [("the model's path", m.path)] + [("file", f.path) for f in m.files]:
        found = deceptive_chars(name)
        if found:
            evidence.append(f"{what} {untrusted_text(name, 200)!r} holds {', '.join(found)}")
    if not evidence:
        return []
    return [
        finding(
            RuleName.DECEPTIVE_NAME,
            Source.STATIC,
            f"{len(evidence)} name(s) in the model hold control characters",
            evidence,
            len(evidence),
        )
    ]


def build(c: analysis.Collected, faults: Sequence[Faults] = ()) -> Report:
    """The report of a run; never raises."""
    try:
        report = analysis.build(c)
    except Exception as e:  # a bug, or hostile data a parser did not survive
        log.debug("building the report failed", exc_info=True)
        return minimal(c, f"building the report failed: {type(e).__name__}: {e}")
    try:
        found = channel_findings(faults) + name_findings(report)
        return report.amended(findings=found) if found else report
    except Exception as e:
        log.debug("adding the channel's findings failed", exc_info=True)
        return minimal(c, f"adding the channel's findings failed: {type(e).__name__}: {e}")


def minimal(c: analysis.Collected | None, reason: str, model_path: str = "") -> Report:
    """A report that says only that the run could not be judged, and why: verdict error. Built
    from what is known of the model and the run, each part falling back to nothing."""
    reason = untrusted_text(reason, 600)
    model = ModelInfo(
        path=untrusted_text(model_path, 1000),
        format="unknown",
        detected_by="",
        size_bytes=0,
        files=[],
    )
    phases: list[Phase] = []
    notes = [f"this report is incomplete: {reason}"]
    sandbox = None
    calls = 0
    if c is not None:
        try:
            model, sandbox, calls = c.model, c.sandbox, int(c.calls)
            phases = [Phase(name=str(k), seconds=round(float(v), 6)) for k, v in c.phases.items()]
            notes = [*(untrusted_text(n, 600) for n in c.notes[:50]), *notes]
            if c.error is not None:
                notes.append(
                    f"the run ended with {type(c.error).__name__}: "
                    f"{untrusted_text(c.error.message, 600)}"
                )
        except Exception:  # what was collected is itself broken: the bare report
            log.debug("reading what was collected failed", exc_info=True)
    return Report(
        tool_version=__version__,
        verdict=Verdict.ERROR,
        findings=[],
        model=model,
        sandbox=sandbox,
        resources=None,
        events=[],
        phases=phases,
        signature=None,
        outputs=[],
        calls=calls,
        notes=notes,
        error=ErrorInfo(kind="ReportError", message=reason),
    )


def with_error(report: Report | None, kind: str, message: str, model_path: str = "") -> Report:
    """The report with this error set (when it has none) and its verdict judged again: error
    at best. With no report, a minimal one. Never raises."""
    message = untrusted_text(message, 600)
    if report is None:
        return minimal(None, message, model_path)
    try:
        error = report.error or ErrorInfo(kind=kind, message=message)
        notes = [*report.notes, f"the evaluation ended with {kind}: {message}"]
        return report.model_copy(
            update={
                "error": error,
                "notes": notes,
                "verdict": verdict(report.findings, could_not_evaluate=True),
            }
        )
    except Exception:
        log.debug("amending the report failed", exc_info=True)
        return minimal(None, message, model_path)
