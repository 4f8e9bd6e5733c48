"""Teardown: the container stopped and removed, and the host's evidence collected first.

Order matters: the resources are measured while the container is still there, a container
still running is killed (and that is recorded), the tracer's log and the worker's audit log are
read from the host's side of their mounts, and only then is the container removed.

Every step runs whatever happened to the one before (Steps): a step that raises is recorded and
the next runs, so a failed collection never keeps the container or the directories from being
removed. What failed is said in the report, and the verdict is error at best.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runner.controller import engine
from runner.controller.launch import AUDIT_LOG_NAME, RUN_DIR_OWN, TRACE_LOG_NAME, Running
from runner.errors import SandboxError, untrusted_text
from runner.rules.analysis import Collected, parse_audit_log
from runner.telemetry import resources
from runner.telemetry.gvisor import session as gvisor_session

log = logging.getLogger(__name__)

MAX_TRACE_BYTES = 256 << 20


class Steps:
    """Teardown's steps, each independent of the others. An exception in one is recorded and
    the next runs; Ctrl-C (or SystemExit) is held until every step has run, then raised."""

    def __init__(self) -> None:
        self.failed: list[str] = []
        self.interrupt: BaseException | None = None

    def run(self, what: str, fn: Callable[..., Any], *args: Any) -> bool:
        try:
            fn(*args)
            return True
        except Exception as e:
            log.debug("teardown: %s failed", what, exc_info=True)
            self.failed.append(f"{what}: {type(e).__name__}: {untrusted_text(str(e), 200)}")
        except BaseException as e:  # finish tearing down first
            self.interrupt = self.interrupt or e
        return False

    def settle(self, c: Collected) -> None:
        """Say what failed in the report (the run could not be fully evaluated: its verdict is
        error at best), then raise a held interrupt."""
        if self.failed:
            c.notes.extend(f"teardown: {f}" for f in self.failed)
            if c.error is None:
                c.error = SandboxError(
                    f"tearing the sandbox down failed: {'; '.join(self.failed)[:600]}",
                    "the report lacks what those steps collect; see its notes",
                )
        if self.interrupt is not None:
            raise self.interrupt


def _stop(run: Running) -> None:
    """Record the container's state, killing it first if it still runs."""
    if run.warm is not None:
        _stop_warm(run)
        return
    c = run.collected
    try:
        st = engine.state(run.container)
    except BaseException:
        run.kill()  # the state is unknown: make sure it does not run on
        raise
    if st is not None and st.running:
        run.kill()
        st = engine.wait(run.container, timeout_s=5.0)
    c.final_state = st


def _stop_warm(run: Running) -> None:
    """A forked worker: its exit status comes from the zygote that reaped it, as a cold
    sandbox's comes from strace; the tracer then finishes its log and the container, which
    only holds `sleep`, is stopped. A worker still running is killed with its container."""
    warm = run.warm
    assert warm is not None
    c = run.collected
    try:
        if warm.poll_exit(0.0) is None:
            run.kill()
            warm.poll_exit(5.0)
        if not warm.tracer_done(1.0):  # the worker left processes running: kill them
            run.kill()
        if not warm.stop_tracer(5.0):
            c.notes.append("the host's strace did not finish its log: it was killed")
        if warm.tracer_lost:  # calls may have gone untraced: never clean
            lost = "the host's strace ended before the warm worker did; the sandbox was killed"
            c.notes.append(lost)
            if c.error is None:
                c.error = SandboxError(lost, "the trace is incomplete; run the model again")
    finally:
        engine.kill(run.container)
        warm.close()
    st = engine.wait(run.container, timeout_s=5.0)
    known = warm.exit_code is not None and warm.exit_code >= 0
    if st is not None:
        oom = st.oom_killed or resources.oom_kills(run.container) > 0
        st = dataclasses.replace(st, exit_code=warm.exit_code if known else None, oom_killed=oom)
    c.final_state = st
    if not known and not c.killed_by_host:  # the zygote did not say: nothing to check against
        raise SandboxError(
            "the warm worker's exit status is unknown (the zygote did not report it)",
            "the report cannot check the tracer's log against it; run the model again",
        )


def _resources(run: Running) -> None:
    c = run.collected
    sampler = run.sampler
    sampler.stop()
    c.samples = list(sampler.samples)
    c.memory_peak_bytes = sampler.memory_peak_bytes
    c.pids_limit_hits = sampler.pids_limit_hits
    c.scratch_full = sampler.scratch_used_max >= 0.95
    st = c.final_state
    c.output_flood = st is not None and engine.log_rotated(st)


def _trace(c: Collected, trace_dir: Path) -> None:
    if gvisor_session.collect(c, trace_dir.parent):  # gVisor's trace points, not strace's log
        return
    try:
        with (trace_dir / TRACE_LOG_NAME).open("rb") as f:
            c.trace_log = f.read(MAX_TRACE_BYTES)
    except OSError as e:  # no tracer log: the analysis says the trace is missing
        log.debug("reading the tracer's log: %r", e)


MAX_LEFT = 16  # names kept of what the model left in the run directory (the rest counted)


def _left(c: Collected, run_dir: Path) -> None:
    """What is in the run directory besides the worker's sockets and audit log, once the
    container stopped: the host's own view of writes into it, whatever the tracer said.
    Bounded: MAX_LEFT names, the rest counted, the listing stopped at 100,000 entries."""
    names: list[str] = []
    seen = 0
    with os.scandir(run_dir) as entries:
        for seen, entry in enumerate(entries, 1):
            if seen > 100_000:
                break
            if entry.name not in RUN_DIR_OWN:
                names.append(entry.name)
    shown = sorted(names)[:MAX_LEFT]
    c.run_dir_left = ["/airlock/run/" + untrusted_text(n, 120) for n in shown]
    if len(names) > MAX_LEFT or seen > 100_000:
        c.run_dir_left.append(f"{len(names) - len(shown)} more entries (or more) not listed")


def _audit(c: Collected, run_dir: Path) -> None:
    # the worker's self-reported events: hostile data
    c.worker_events, c.worker_events_dropped = parse_audit_log(run_dir / AUDIT_LOG_NAME)


def finish_container(
    run: Running, run_dir: Path | None, trace_dir: Path | None, steps: Steps | None = None
) -> Steps:
    """Kill what still runs, collect the evidence into run.collected, remove the container:
    each step whatever happened to the others. The steps, with what failed."""
    steps = steps or Steps()
    c = run.collected
    steps.run("recording the container's state", _stop, run)
    steps.run("collecting the resource samples", _resources, run)
    if trace_dir is not None:
        steps.run("reading the tracer's log", _trace, c, trace_dir)
    if run_dir is not None:
        steps.run("reading the worker's audit log", _audit, c, run_dir)
        steps.run("listing the run directory", _left, c, run_dir)
    if not steps.run("removing the container", engine.remove, run.container):
        steps.run("removing the container, again", engine.remove, run.container)
    return steps
