"""Teardown: the container stopped and removed, and the host's evidence collected first.

Order matters: the resources are measured while the container is still there, a container
still running is killed (and that is recorded), the tracer's log and the worker's audit log are
read from the host's side of their mounts, and only then is the container removed.
"""

from __future__ import annotations

import logging
from pathlib import Path

from runner.controller import engine
from runner.controller.launch import AUDIT_LOG_NAME, TRACE_LOG_NAME, Running
from runner.rules.analysis import parse_audit_log

log = logging.getLogger(__name__)

MAX_TRACE_BYTES = 256 << 20


def finish_container(run: Running, run_dir: Path | None, trace_dir: Path | None) -> None:
    """Kill what still runs, collect the evidence into run.collected, remove the container."""
    c = run.collected
    st = engine.state(run.container)
    if st is not None and st.running:
        run.kill()
        st = engine.wait(run.container, timeout_s=5.0)
    c.final_state = st
    sampler = run.sampler
    sampler.stop()
    c.samples = list(sampler.samples)
    c.memory_peak_bytes = sampler.memory_peak_bytes
    c.pids_limit_hits = sampler.pids_limit_hits
    c.scratch_full = sampler.scratch_used_max >= 0.95
    c.output_flood = st is not None and engine.log_rotated(st)
    if trace_dir is not None:
        try:
            with (trace_dir / TRACE_LOG_NAME).open("rb") as f:
                c.trace_log = f.read(MAX_TRACE_BYTES)
        except OSError as e:  # no tracer log: the analysis says the trace is missing
            log.debug("reading the tracer's log: %r", e)
    if run_dir is not None:  # the worker's self-reported events: hostile data
        c.worker_events, c.worker_events_dropped = parse_audit_log(run_dir / AUDIT_LOG_NAME)
    engine.remove(run.container)
