"""Sandboxed replicas of one model, always watched: the Backend `airlock serve` runs
(start(), then infer(inputs, timeout_s) from any thread, then close()).

Each replica is a runner.Sandbox holding one model; a sandbox is never reused after it fails.
Requests go to an idle replica; a bounded number wait for one (beyond it: Exhausted), each until
its deadline (Deadline). Inputs are checked against the model's description first (BadRequest).

Always watching: each replica's evidence is checked after every request, before its outputs go
back (runner.controller.watch.Evidence: new bytes proved the worker's own traffic, or else
judged in full with the report's own rules), on a timer, and in full every `full_interval_s`.
A finding at or above `fail_on` quarantines the model: every replica is killed and closed, and
every request then gets Unavailable naming the rule and its evidence. A replica that crashes,
hits a limit, or whose container is gone is closed and replaced, at most `max_restarts` in any
`restart_window_s`; its failure's own findings (runner.serve.handles.excused) are the event, not
grounds for quarantine. A replica whose evidence nears the caps it is read with is recycled
(runner.serve.recycle). Each event is in the running report and the metrics.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

import numpy as np

from runner.errors import AirlockError, DeadlineExceeded, InputError, untrusted_text
from runner.policy import Policy
from runner.report import Report
from runner.rules.catalog import Finding, Severity
from runner.serve import metrics, recycle
from runner.serve.backend import (
    BadRequest,
    Deadline,
    Exhausted,
    ModelMeta,
    Unavailable,
)
from runner.serve.handles import (
    Handle,
    Replica,
    SandboxHandle,
    check_inputs,
    excused,
    finding_json,
    learn_outputs,
    model_meta,
    model_raised,
)
from runner.serve.recycle import Budget

MAX_EVENTS = 1000  # events kept in the running report (the count is kept past it)

Event = Callable[[dict[str, Any]], None]


class ReplicaBackend:
    """N watched sandboxes of one model behind the Backend interface."""

    def __init__(
        self,
        model: str | Path,
        policy: Policy | None = None,
        *,
        replicas: int = 1,
        fail_on: Severity = Severity.MEDIUM,
        queue: int = 16,
        request_timeout_s: float = 30.0,
        name: str = "model",
        version: str = "1",
        check_interval_s: float = 1.5,
        max_restarts: int = 3,
        restart_window_s: float = 60.0,
        sandbox_kwargs: Mapping[str, Any] | None = None,
        on_event: Event | None = None,
        factory: Callable[[], Handle] | None = None,
        budget: Budget | None = None,
        full_interval_s: float = 30.0,
    ) -> None:
        if replicas < 1 or queue < 0:
            raise ValueError("replicas must be at least 1 and queue at least 0")
        self.model, self.policy = Path(model), policy or Policy()
        self.fail_on, self.queue, self.request_timeout_s = fail_on, queue, request_timeout_s
        self.name, self.version = name, version
        self.check_interval_s, self.full_interval_s = check_interval_s, full_interval_s
        self.budget = budget or Budget()
        self._recycling = False  # one recycle at a time: at most replicas + 1 sandboxes
        self.max_restarts, self.restart_window_s = max_restarts, restart_window_s
        kwargs = dict(sandbox_kwargs or {})
        self._factory = factory or (lambda: SandboxHandle(self.model, self.policy, kwargs))
        self._on_event = on_event
        self._cond = threading.Condition()
        self._replicas = [Replica(i) for i in range(replicas)]
        self._pool = ThreadPoolExecutor(max_workers=replicas + 2, thread_name_prefix="replica")
        self._meta: ModelMeta | None = None
        self._quarantine = ""  # the reason, once quarantined
        self._closing = False
        self._waiting = 0
        self._requests = 0
        self._errors: dict[str, int] = {}
        self._restarts: deque[float] = deque()
        self._events: list[dict[str, Any]] = []
        self._events_count = 0
        self._seen: set[tuple[int, int, str, str]] = set()  # findings counted in the metrics
        self._reports: list[dict[str, Any]] = []  # closed replicas' reports
        self._threads: list[threading.Thread] = []
        self._watcher = threading.Thread(target=self._watch, name="replica-watch", daemon=True)

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Open every replica (in parallel) and start watching. Raises the first replica's
        error when none could be opened; replicas that failed are restarted as they may."""
        threads = [self._spawn(self._open, r, "start") for r in self._replicas]
        for t in threads:
            t.join()
        if self._meta is None:
            errors = [r.failure for r in self._replicas if r.failure]
            self.close()
            raise AirlockError(errors[0] if errors else "no replica could be opened")
        self._watcher.start()

    def close(self) -> None:
        """Stop taking requests, wait (bounded) for those in flight, close every sandbox."""
        with self._cond:
            if self._closing:
                return
            self._closing = True
            self._cond.notify_all()
            end = time.monotonic() + max(5.0, min(self.request_timeout_s, 60.0))
            while any(r.state == "busy" for r in self._replicas) and time.monotonic() < end:
                self._cond.wait(0.2)
        for r in self._replicas:
            self._retire(r, "shutting down", kill=r.state == "busy")
        for t in [self._watcher, *self._threads]:
            if t.is_alive() and t is not threading.current_thread():
                t.join(timeout=60.0)
        self._pool.shutdown(wait=False, cancel_futures=True)
        metrics.set_replicas_up(0)

    def _spawn(self, fn: Callable[..., None], *args: Any) -> threading.Thread:
        t = threading.Thread(target=fn, args=args, daemon=True, name="replica-open")
        with self._cond:
            self._threads = [x for x in self._threads if x.is_alive()] + [t]
        t.start()
        return t

    def _open(self, r: Replica, why: str) -> None:
        """A fresh sandbox for the replica (never one a model ran in before)."""
        with self._cond:
            r.pending = False
            if self._closing or self._quarantine or r.state != "dead":
                return
            r.state, r.generation = "starting", r.generation + 1
        handle = self._factory()
        try:
            handle.open()
            sig = handle.describe()
        except Exception as e:
            text = e.message if isinstance(e, AirlockError) else f"{type(e).__name__}: {e}"
            r.failure = untrusted_text(text, 600)
            self._event("replica-failed-to-start", r, reason=r.failure)
            self._collect(r, handle, failed=True)
            with self._cond:
                r.state = "dead"
                self._cond.notify_all()
            return
        with self._cond:
            r.handle, r.judged_at, r.served, r.started = handle, 0.0, 0, time.time()
            self._meta = self._meta or model_meta(sig, self.name, self.version)
            r.state = "idle" if not (self._closing or self._quarantine) else "dead"
            self._cond.notify_all()
        self._event("replica-started", r, why=why, container=handle.container)
        self._judge(r)  # what pre-flight and the load found
        self._count_up()

    # --- the Backend interface -------------------------------------------------------------

    def live(self) -> bool:
        return not self._closing

    def ready(self) -> bool:
        return not (self._closing or self._quarantine) and any(
            r.state in ("idle", "busy") for r in self._replicas
        )

    def model_ready(self, name: str, version: str = "") -> bool:
        return self.ready() and name == self.name and version in ("", self.version)

    def metadata(self) -> ModelMeta:
        if self._meta is None:
            raise Unavailable("no replica has started yet")
        return self._meta

    def infer(
        self, inputs: dict[str, np.ndarray], timeout_s: float | None
    ) -> dict[str, np.ndarray]:
        limit = self.request_timeout_s if timeout_s is None else min(timeout_s, 3600.0)
        deadline = time.monotonic() + max(limit, 0.0)
        check_inputs(self.metadata(), inputs)
        r = self._claim(deadline)
        future = self._pool.submit(self._call, r, inputs)
        try:
            return future.result(timeout=max(0.0, deadline - time.monotonic()))
        except FutureTimeout:
            self._error("deadline")
            raise Deadline(f"no answer within {limit:g}s") from None

    def _refusal(self) -> str:
        if self._quarantine:
            return self._quarantine
        if self._closing:
            return "the server is shutting down"
        if not any(r.state in ("idle", "busy", "starting") for r in self._replicas):
            why = "; ".join(r.failure for r in self._replicas if r.failure)[:600]
            return "no replica is up" + (f": {why}" if why else "")
        return ""

    def _claim(self, deadline: float) -> Replica:
        """An idle replica, marked busy: waited for (bounded queue) until the deadline."""
        with self._cond:
            waited = False
            try:
                while True:
                    refusal = self._refusal()
                    if refusal:
                        self._error("unavailable")
                        raise Unavailable(refusal)
                    idle = [r for r in self._replicas if r.state == "idle" and not r.draining]
                    if idle:
                        r = min(idle, key=lambda x: x.requests)
                        r.state = "busy"
                        self._requests += 1
                        return r
                    if not waited:
                        if self._waiting >= self.queue:
                            self._error("exhausted")
                            raise Exhausted(f"{self._waiting} request(s) already wait")
                        self._waiting, waited = self._waiting + 1, True
                    left = deadline - time.monotonic()
                    if left <= 0:
                        self._error("deadline")
                        raise Deadline("no replica was free before the deadline")
                    self._cond.wait(min(left, 1.0))
            finally:
                if waited:
                    self._waiting -= 1

    def _call(self, r: Replica, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One call on a claimed replica, its evidence judged before the outputs go back."""
        assert r.handle is not None
        try:
            outputs = r.handle.infer(inputs)
        except InputError as e:
            self._release(r)
            self._error("bad-request")
            raise BadRequest(e.message) from None
        except AirlockError as e:
            if model_raised(e):
                self._judge(r)
                self._release(r)
                self._error("model-raised")
                raise BadRequest(f"the model raised on these inputs: {e.message}") from None
            self._error("replica-failed")
            self._fail(r, e.message, "deadline" if isinstance(e, DeadlineExceeded) else "crash")
            if self._quarantine:
                raise Unavailable(self._quarantine) from None
            if isinstance(e, DeadlineExceeded):
                raise Deadline(f"replica {r.index}: {e.message}") from None
            raise Unavailable(f"replica {r.index} failed, being replaced: {e.message}") from None
        except Exception:
            self._fail(r, "the call raised unexpectedly", "crash")
            raise
        r.requests, r.served = r.requests + 1, r.served + 1
        self._learn_outputs(outputs)
        self._judge(r)
        self._release(r)
        if self._quarantine:
            self._error("unavailable")
            raise Unavailable(self._quarantine)
        self._maybe_recycle(r)
        return outputs

    def _learn_outputs(self, outputs: Mapping[str, np.ndarray]) -> None:
        """A model whose description names no outputs (TorchScript): its first answer does."""
        learned = learn_outputs(self._meta, outputs)
        if learned is not None:
            with self._cond:
                self._meta = learned

    def _release(self, r: Replica) -> None:
        with self._cond:
            if r.state == "busy":
                r.state = "idle"
            self._cond.notify_all()

    # --- watching ------------------------------------------------------------------------------

    def _judge(
        self,
        r: Replica,
        report: Report | None = None,
        failed: bool = False,
        outside: bool = False,
        full: bool = False,
    ) -> None:
        """Judge the replica's evidence so far (or its final report); quarantine on a finding
        at or above fail_on. New evidence proved quiet (the worker's own traffic only) is not
        judged again, unless `full` (the timer's full judgement)."""
        if report is None:
            handle = r.handle
            if handle is None or not r.lock.acquire(timeout=30.0):
                return
            try:
                if r.handle is not handle:  # recycled meanwhile: the old one is judged at close
                    return
                report = handle.check(full)
                if report is None:
                    return
                r.judged_at = time.monotonic()
            finally:
                r.lock.release()
        r.findings = [finding_json(f) for f in report.findings]
        for f in report.findings:
            key = (r.index, r.generation, f.rule_id, f.message)
            if key not in self._seen:
                self._seen.add(key)
                metrics.observe_finding(f.severity.value)
                self._event("finding", r, rule=f.rule_id, severity=f.severity.value)
        bad = [
            f
            for f in report.findings
            if f.severity.rank >= self.fail_on.rank and not (failed and excused(f, outside))
        ]
        if bad:
            self._quarantine_model(r, max(bad, key=lambda f: f.severity.rank))

    def _quarantine_model(self, r: Replica, f: Finding) -> None:
        evidence = f"; evidence: {f.evidence[0]}" if f.evidence else ""
        reason = untrusted_text(
            f"model quarantined: {f.rule_id} {f.title} ({f.severity.value}) in replica "
            f"{r.index}: {f.message}{evidence}",
            800,
        )
        with self._cond:
            if self._quarantine:
                return
            self._quarantine = reason
            self._cond.notify_all()
        metrics.set_quarantined(True)
        self._event("quarantined", r, rule=f.rule_id, reason=reason)
        for other in self._replicas:  # the model runs no further, anywhere
            if other.handle is not None:
                other.handle.kill()
        self._spawn(self._retire_all)

    def _retire_all(self) -> None:
        for r in self._replicas:
            self._retire(r, "quarantined", kill=True)

    def _watch(self) -> None:
        """The timer: judge each replica's evidence, replace those whose container is gone,
        restart dead replicas as the budget allows."""
        while True:
            with self._cond:
                if self._closing or self._quarantine:
                    return
            for r in self._replicas:
                try:
                    self._watch_one(r)
                except Exception as e:  # the watch must go on
                    self._event("watch-error", r, error=f"{type(e).__name__}: {e}"[:300])
            with self._cond:
                self._cond.wait(self.check_interval_s)

    def _watch_one(self, r: Replica) -> None:
        if r.state in ("idle", "busy") and r.handle is not None:
            self._judge(r, full=time.monotonic() - r.judged_at >= self.full_interval_s)
            self._maybe_recycle(r)
            with self._cond:
                gone = r.state == "idle" and not r.handle.running()
                if gone:
                    r.state = "busy"  # claimed for the replacement
            if gone:
                self._fail(r, "the replica's container is gone (stopped or killed)", "gone")
        elif r.state == "dead" and r.generation:
            self._replace(r, "retry")

    def _maybe_recycle(self, r: Replica) -> None:
        """Start recycling the replica when its sandbox is due (one recycle at a time)."""
        why = recycle.due(self, r)
        with self._cond:
            if not why or self._recycling or self._closing or self._quarantine:
                return
            self._recycling = True
        self._spawn(recycle.recycle, self, r, why)

    # --- failures ----------------------------------------------------------------------------

    def _fail(self, r: Replica, reason: str, kind: str) -> None:
        """Close the failed replica (its report judged), then replace it if allowed."""
        r.failure = untrusted_text(f"replica {r.index}: {reason}", 600)
        self._event("replica-failed", r, kind=kind, reason=r.failure)
        self._retire(r, reason, failed=True)
        self._replace(r, kind)

    def _replace(self, r: Replica, kind: str) -> None:
        """A fresh sandbox for a dead replica, unless one is on its way or the budget (at most
        max_restarts in restart_window_s) is spent."""
        with self._cond:
            if r.pending or r.state != "dead" or self._closing or self._quarantine:
                return
            now = time.monotonic()
            while self._restarts and now - self._restarts[0] > self.restart_window_s:
                self._restarts.popleft()
            refused = len(self._restarts) >= self.max_restarts
            if not refused:
                self._restarts.append(now)
                r.pending = True
            told, r.refused = r.refused, refused
        if refused:
            if not told:
                self._event("restart-refused", r, why=f"{self.max_restarts} restarts already")
            return
        metrics.observe_restart(kind)
        self._event("replica-restart", r, kind=kind)
        self._spawn(self._open, r, f"restart after {kind}")

    def _retire(self, r: Replica, why: str, *, failed: bool = False, kill: bool = False) -> None:
        """Close the replica's sandbox and keep its final report (judged: failed, without
        the failure's own findings)."""
        with self._cond:
            handle, r.handle = r.handle, None
            if r.state != "starting":
                r.state = "dead"
            self._cond.notify_all()
        if handle is None:
            return
        if kill:
            handle.kill()
        with r.lock:
            self._collect(r, handle, failed=failed or kill)
        self._event("replica-closed", r, why=why)
        self._count_up()

    def _collect(self, r: Replica, handle: Handle, failed: bool) -> None:
        handle.close()
        report = handle.report()
        self._judge(r, report, failed, failed and handle.killed_from_outside())
        summary = {
            "replica": r.index,
            "generation": r.generation,
            "container": handle.container,
            "verdict": report.verdict.value,
            "calls": report.calls,
            "findings": [finding_json(f) for f in report.findings],
            "report": report.model_dump(mode="json"),
        }
        with self._cond:
            self._reports.append(summary)

    # --- records -------------------------------------------------------------------------------

    def _event(self, what: str, r: Replica | None = None, **fields: Any) -> None:
        entry: dict[str, Any] = {"time": round(time.time(), 3), "event": what}
        if r is not None:
            entry.update(replica=r.index, generation=r.generation)
        entry.update(fields)
        with self._cond:
            self._events_count += 1
            if len(self._events) < MAX_EVENTS:
                self._events.append(entry)
        if self._on_event is not None:
            with contextlib.suppress(Exception):  # a logger's failure is no replica's
                self._on_event(entry)

    def _error(self, code: str) -> None:
        self._errors[code] = self._errors.get(code, 0) + 1  # a count: the GIL is enough

    def _count_up(self) -> None:
        metrics.set_replicas_up(sum(r.state in ("idle", "busy") for r in self._replicas))

    @property
    def quarantined(self) -> str:  # the quarantine's reason ('' while the model serves)
        return self._quarantine

    def containers(self) -> list[str]:
        """The containers of the replicas now open."""
        return [r.handle.container for r in self._replicas if r.handle is not None]

    def report(self) -> dict[str, Any]:
        """The running report: each replica's state and findings so far, the closed
        replicas' reports, the events, the requests, the recycles; JSON-able."""
        return recycle.running_report(self)
