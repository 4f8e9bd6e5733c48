"""The sandbox container's exit state, as the kubelet reports it, confirming (or not) what the
in-pod controller assumed.

Inside the Pod the controller cannot see the sandbox container's exit state; it takes the
worker's exit code from the tracer's exit record and says so in the outcome (`assumed_exit`).
The driver then reads the Job's Pod through the API: the sandbox container's
`status.containerStatuses[name=sandbox].state.terminated` is host-side evidence (the kubelet's,
which the model cannot forge). The report stands as written only when that container has
terminated with the assumed exit code and a reason other than OOMKilled; otherwise (a different
code, an OOM kill, still running after a bounded wait, no Pod, two Pods, a status the API
refuses or that is not a status) the report gets a SandboxExit error and its verdict is error at
best. Everything read from the API is treated as untrusted: wrong types are "not a status",
strings are neutralised and bounded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from runner.backends.base import Outcome
from runner.batch import evaluation as ev
from runner.controller import reporting
from runner.errors import untrusted_text
from runner.report import Report
from runner.rules.catalog import Verdict

log = logging.getLogger(__name__)

SANDBOX_CONTAINER = "sandbox"  # manifests' container name
JOB_NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")  # 1.27+, then the older one
OOM_REASON = "OOMKilled"
MAX_TEXT = 120
MAX_PODS = 16
INT32 = (-(1 << 31), (1 << 31) - 1)


@dataclass(frozen=True)
class Observed:
    """What the kubelet says of the sandbox container: terminated with `exit_code` and
    `reason`; or `pending` (not terminated yet: worth asking again); or `problem` (why it could
    not be read)."""

    exit_code: int | None = None
    reason: str = ""
    pending: str = ""
    problem: str = ""

    @property
    def terminated(self) -> bool:
        return self.exit_code is not None and not self.problem and not self.pending


def _field(obj: Any, snake: str, camel: str) -> Any:
    """A field of a kubernetes client object (snake_case attributes) or of a plain dict (the
    API's camelCase JSON)."""
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(camel, obj.get(snake))
    return getattr(obj, snake, None)


def _text(value: Any) -> str:
    return untrusted_text(value, MAX_TEXT) if isinstance(value, str) else ""


def _items(listed: Any) -> list[Any] | None:
    items = _field(listed, "items", "items")
    return list(items[: MAX_PODS + 1]) if isinstance(items, list | tuple) else None


def from_pods(listed: Any) -> Observed:
    """The sandbox container's state from a listing of the Job's Pods. Never raises."""
    try:
        return _from_pods(listed)
    except Exception as e:  # a status of a shape nobody expected: not a status
        log.debug("reading the Pod's status failed", exc_info=True)
        return Observed(problem=f"the Pod's status could not be read ({type(e).__name__})")


def _from_pods(listed: Any) -> Observed:
    items = _items(listed)
    if items is None:
        return Observed(problem="the API's answer is not a list of Pods")
    if not items:
        return Observed(problem="the Job has no Pod")
    if len(items) > 1:
        many = f"more than {MAX_PODS}" if len(items) > MAX_PODS else str(len(items))
        return Observed(problem=f"the Job has {many} Pods (the model ran more than once?)")
    status = _field(items[0], "status", "status")
    statuses = _field(status, "container_statuses", "containerStatuses")
    if statuses is None:
        return Observed(pending="the kubelet reports no container status yet")
    if not isinstance(statuses, list | tuple):
        return Observed(problem="the Pod's containerStatuses is not a list")
    mine = [s for s in statuses[:MAX_PODS] if _field(s, "name", "name") == SANDBOX_CONTAINER]
    if len(mine) != 1:
        return Observed(problem=f"the Pod has {len(mine)} statuses for the sandbox container")
    state = _field(mine[0], "state", "state")
    terminated = _field(state, "terminated", "terminated")
    if terminated is None:
        running = _field(state, "running", "running") is not None
        waiting = _text(_field(_field(state, "waiting", "waiting"), "reason", "reason"))
        what = "running" if running else f"waiting ({waiting})" if waiting else "not terminated"
        return Observed(pending=f"the sandbox container is {what}")
    code = _field(terminated, "exit_code", "exitCode")
    reason = _text(_field(terminated, "reason", "reason"))
    if isinstance(code, bool) or not isinstance(code, int) or not INT32[0] <= code <= INT32[1]:
        return Observed(problem="the sandbox container's exit code is not an exit code")
    return Observed(exit_code=code, reason=reason)


def read(
    list_pods: Callable[[str], Any],
    wait_s: float,
    interval_s: float,
    errors: tuple[type[BaseException], ...],
) -> Observed:
    """The sandbox container's state, asking again (every `interval_s`, for up to `wait_s`)
    while it has not terminated or the API refuses. `list_pods(selector)` lists the Job's Pods
    by a label selector; `errors` are the API's failures. Never raises those."""
    end = time.monotonic() + wait_s
    while True:
        observed = _once(list_pods, errors)
        if observed.terminated or time.monotonic() + interval_s > end:
            return observed
        if observed.problem and not observed.problem.startswith("the API refused"):
            return observed  # a fact, not a moment: asking again changes nothing
        time.sleep(interval_s)


def _once(list_pods: Callable[[str], Any], errors: tuple[type[BaseException], ...]) -> Observed:
    observed = Observed()
    for label in JOB_NAME_LABELS:
        try:
            observed = from_pods(list_pods(label))
        except errors as e:
            what = getattr(e, "reason", None) or type(e).__name__
            status = getattr(e, "status", None)
            why = _text(f"{status} {what}" if isinstance(status, int) else str(what))
            return Observed(problem=f"the API refused to list the Job's Pods: {why}")
        if observed.problem != "the Job has no Pod":
            break  # the older label only for a cluster that sets no newer one
    return observed


def accepted(assumed: int | None, observed: Observed) -> bool:
    return (
        assumed is not None
        and observed.terminated
        and observed.exit_code == assumed
        and observed.reason != OOM_REASON
    )


def why_not(assumed: int | None, observed: Observed) -> str:
    """The SandboxExit error's message, when the report cannot stand as written."""
    if observed.problem or observed.pending:
        what = observed.problem or f"{observed.pending} after the wait"
        return f"the sandbox container's exit state could not be confirmed from the kubelet: {what}"
    said = f"exit code {observed.exit_code}" + (f", {observed.reason}" if observed.reason else "")
    if observed.reason == OOM_REASON:
        return f"the kubelet says the sandbox container was OOMKilled: out of memory (OOM), {said}"
    if assumed is None:
        return (
            f"the kubelet says the sandbox container ended ({said}), but the tracer's log has no "
            "exit record of the worker to check it against"
        )
    return (
        f"the kubelet says the sandbox container ended with {said}, but the tracer's exit record "
        f"of the worker says {assumed}"
    )


def confirm(outcome: Outcome, assumed: int | None, observed: Observed) -> Outcome:
    """The outcome as written when the kubelet confirms the assumed exit; else its report
    amended (SandboxExit: error at best, the kubelet's exit code and OOM kill in it) and its
    result line judged again from the amended report."""
    if accepted(assumed, observed):
        return outcome
    message = why_not(assumed, observed)
    result = outcome.result
    error = result.error or ""
    line = f"kubernetes: {message}"
    error = f"{error}; {line}" if error else line
    if outcome.report_json is None:
        update = {"verdict": Verdict.ERROR, "error": error}
        return Outcome(result.model_copy(update=update), outcome.stem, None, outcome.bom_json)
    try:
        report = Report.model_validate_json(outcome.report_json)
    except ValueError as e:
        why = untrusted_text(str(e), 200)
        update = {"verdict": Verdict.ERROR, "error": f"{error}; its report is unreadable: {why}"}
        return Outcome(result.model_copy(update=update), outcome.stem, None, None)
    report = _with_kubelet(reporting.with_error(report, "SandboxExit", message), observed)
    verdict, _ = ev._verdict(report, None)
    report_json, bom_json, file_error = ev._files(report)
    amended = result.model_copy(
        update={
            "verdict": verdict,
            "findings": ev._severity_counts(report),
            "top_findings": list(dict.fromkeys(f.rule_id for f in report.findings))[:5],
            "error": error + (f"; {file_error}" if file_error else ""),
        }
    )
    return Outcome(amended, outcome.stem, report_json, bom_json)


def _with_kubelet(report: Report, observed: Observed) -> Report:
    """The report's exit codes (and OOM kill) as the kubelet gave them, when it gave them."""
    if not observed.terminated:
        return report
    update: dict[str, Any] = {}
    if report.resources is not None:
        oom = report.resources.oom_killed or observed.reason == OOM_REASON
        update["resources"] = report.resources.model_copy(
            update={"exit_code": observed.exit_code, "oom_killed": oom}
        )
    if report.tracer is not None:
        update["tracer"] = report.tracer.model_copy(update={"exit_code": observed.exit_code})
    return report.model_copy(update=update) if update else report
