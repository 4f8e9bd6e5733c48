"""What the Ray backend runs on a node, as plain functions (the backend makes Ray tasks of them):
one model's evaluation on the node's own Docker engine, the node's check before a batch, and
Airlock's reaper. None of them raises an Exception: a failure is a value (an exception holding a
socket would not even pickle back to the driver)."""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

from runner.backends.base import Job, Outcome

log = logging.getLogger(__name__)


def node_id() -> str:
    """The Ray node this runs on ('' outside a Ray worker)."""
    try:
        import ray

        return str(ray.get_runtime_context().get_node_id())
    except Exception:  # not in a worker, or Ray's context failed: only a debug note is lost
        return ""


def evaluate(job: Job) -> tuple[str, Outcome]:
    """One model in a fresh sandbox on this node's engine: (this node's id, its outcome). A
    KeyboardInterrupt (a soft cancel) tears the sandbox down on its way out."""
    from runner.batch import evaluation

    where = node_id()
    try:
        return where, evaluation.run_job(job)
    except Exception as e:  # run_job never raises; should it, the model still gets its line
        return where, evaluation.error_outcome(
            job.path, job.sha256, f"internal error on Ray node {where[:12]}: {type(e).__name__}"
        )


def check_node(runtime: str, formats: list[str], paths: list[str]) -> str:
    """'' when this node can run the batch's sandboxes: its engine answers, has the runtime, the
    default sandbox image is current and the framework images the formats need are there or
    built now (when AIRLOCK_AUTO_BUILD allows); else what is wrong, as one line."""
    from runner.controller import engine as _docker
    from runner.controller import framework_images, images
    from runner.errors import AirlockError
    from runner.telemetry import gvisor
    from runner.telemetry.gvisor import session as gvisor_session

    host = socket.gethostname()
    try:
        info = _docker.engine_info()
        runtimes = info.get("Runtimes") or {}
        if runtime not in runtimes:
            return f"on {host}: the Docker engine has no {runtime} runtime"
        if runtime == "runsc" and gvisor.enabled() and gvisor_session.RUNTIME not in runtimes:
            wrapper = gvisor_session.RUNTIME
            return f"on {host}: the Docker engine has no {wrapper} runtime (gVisor's tracer)"
        images.require_current()
        for framework in framework_images.needed(formats):
            framework_images.ensure(framework)
        unreadable = [p for p in paths if not os.access(p, os.R_OK)]
        if unreadable:
            return (
                f"on {host}: {len(unreadable)} model(s) not readable at the same path, "
                f"first {unreadable[0]}"
            )
    except AirlockError as e:
        return f"on {host}: {e.diagnostics()}"
    except Exception as e:  # the node's own trouble, as a line
        return f"on {host}: {type(e).__name__}: {' '.join(str(e).split())[:200]}"
    return ""


def reap_node() -> str:
    """Airlock's reaper on this node: the containers and sandbox directories (with their tmpfs
    mounts) whose owning process is gone. What it removed, or why it could not."""
    from runner.controller import sessions

    try:
        reaped = sessions.reap()
    except Exception as e:  # the engine gone too: say so, the driver goes on to the next node
        return f"{socket.gethostname()}: could not reap: {type(e).__name__}: {e}"
    return (
        f"{socket.gethostname()}: removed {len(reaped.containers)} container(s), "
        f"{len(reaped.directories)} directory(ies)"
    )


def readable(paths: list[Path]) -> list[str]:
    """The paths as the strings a node's check reads (the batch's models, a bounded sample)."""
    return [str(p) for p in paths[:1000]]
