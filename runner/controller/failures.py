"""Failure translation: what went wrong in a sandbox, as the error a caller acts on.

The explanation comes from the host's own evidence (the container's exit state, the OOM flag,
the pids counter, the wall-time timer), never from what the worker says about itself; a log tail
from inside is attached only as sanitised text.
"""

from __future__ import annotations

from pathlib import Path

from runner.channel.client import (
    BadReply,
    CallDeadline,
    ReplyTooLarge,
    RpcFailure,
    WorkerRejected,
    WorkerUnavailable,
)
from runner.controller import engine
from runner.controller.launch import Running
from runner.errors import (
    AirlockError,
    DeadlineExceeded,
    InputError,
    LimitExceeded,
    ModelLoadError,
    SandboxError,
    UsageError,
    WorkerCrashed,
    untrusted_text,
)
from runner.policy import Deadline, Policy
from runner.telemetry import resources


def translate(
    e: RpcFailure, call: str, policy: Policy, run: Running, architecture: Path | None = None
) -> AirlockError:
    """The error for a failed worker call ('load' or 'infer'); with the caller's architecture
    file, a load that failed in it is blamed on it."""
    c = run.collected
    if isinstance(e, WorkerRejected) and architecture is not None and call == "load":
        blamed = _architecture_blamed(e, architecture)
        if blamed is not None:
            return blamed
    if isinstance(e, WorkerRejected):
        return _rejected(e, call)
    if isinstance(e, CallDeadline):
        run.kill()
        if run.wall_expired.is_set():
            return wall_error(policy, run)
        c.deadline = Deadline.LOAD if call == "load" else Deadline.CALL
        limit = policy.load_timeout_s if call == "load" else policy.call_timeout_s
        name = "load_timeout_s" if call == "load" else "call_timeout_s"
        return DeadlineExceeded(
            f"the {call} call ran past {name}={limit}; the sandbox was killed",
            f"raise --{call if call == 'load' else 'call'}-timeout if the model is just slow",
            deadline=c.deadline,
        )
    if isinstance(e, ReplyTooLarge):
        c.reply_too_large = True
        return LimitExceeded(
            f"the worker's reply exceeded max_reply_bytes={policy.max_reply_bytes}",
            "raise the reply limit only if the model's outputs are really that large",
            limit="reply",
        )
    if isinstance(e, BadReply):
        return SandboxError(f"the worker sent a malformed reply: {e}")
    assert isinstance(e, WorkerUnavailable)
    return diagnose(f"the worker stopped answering during {call}", policy, run)


ARCH_BLAME = "the architecture file "  # how the worker's message starts (runner.worker.checkpoints)


def _architecture_blamed(e: WorkerRejected, architecture: Path) -> UsageError | None:
    """The caller's own architecture file raised (running it, or its build_model): a usage
    error naming it, not a model failure. The run's verdict stays error all the same: the
    message is the worker's word, and the model's code may have run before it."""
    text = str(e)
    if e.code != "FAILED_PRECONDITION" or not text.startswith(ARCH_BLAME):
        return None
    name = untrusted_text(architecture.name, 80)
    return UsageError(
        f"your architecture file {name} {untrusted_text(text[len(ARCH_BLAME) :], 400)}",
        f"fix {name}: it must define build_model(config) returning a torch.nn.Module",
    )


def _rejected(e: WorkerRejected, call: str) -> AirlockError:
    if e.code == "INVALID_ARGUMENT" and call == "infer":
        return InputError(f"the worker rejected the inputs: {e}")
    if e.code == "ABORTED" and call == "infer":
        return SandboxError(
            f"the model failed during inference: {e}", "see the report's findings for what it did"
        )
    if call == "load":
        return ModelLoadError(
            f"the model could not be loaded: {e}",
            "check that the file is a complete, supported model",
        )
    return SandboxError(f"the worker refused the {call} call: {e}")


def wall_error(policy: Policy, run: Running) -> DeadlineExceeded:
    run.collected.deadline = Deadline.WALL
    return DeadlineExceeded(
        f"the sandbox ran past wall_timeout_s={policy.wall_timeout_s}",
        "raise the wall-time limit",
        deadline=Deadline.WALL,
    )


def _worker_state(run: Running) -> engine.ContainerState | None:
    """The container's state once it stopped (up to 3 s); for a warm sandbox, whose container
    only holds `sleep`, the forked worker's: its exit status from the zygote, and whether the
    kernel killed anything in the container's memory cgroup."""
    if run.warm is None:
        return engine.wait(run.container, timeout_s=3.0)
    code = run.warm.poll_exit(3.0)
    gone = code is not None
    return engine.ContainerState(
        status="exited" if gone else "running",
        running=not gone,
        exit_code=code if code is not None and code >= 0 else None,
        oom_killed=resources.oom_kills(run.container) > 0,
        error="",
    )


def diagnose(what: str, policy: Policy, run: Running) -> AirlockError:
    """Explain why the worker is gone, from the host's own evidence."""
    c = run.collected
    st = _worker_state(run)
    if run.wall_expired.is_set():
        return wall_error(policy, run)
    if st is not None and st.oom_killed:
        return LimitExceeded(
            f"{what}: killed for exceeding the memory limit of "
            f"{policy.memory_bytes // (1 << 20)} MiB",
            "raise --memory if the model needs more",
            limit="memory",
        )
    run.sampler.sample_once()
    if run.sampler.pids_limit_hits:
        return LimitExceeded(
            f"{what}: the model hit the limit of {policy.effective_pids} processes",
            "a model has no need to start processes; inspect the report",
            limit="pids",
        )
    tail = untrusted_text(engine.logs_tail(run.container, lines=8), 600)
    if st is None or st.running:
        c.worker_crash = "the worker closed its connection"
        return WorkerCrashed(
            f"{what}: the worker closed its connection",
            "see the log tail in the report",
            None,
            tail,
        )
    code = st.exit_code
    c.worker_crash = f"the worker exited with code {code}"
    detail = f" ({st.error})" if st.error else ""
    message = f"{what}: the worker exited with code {code}{detail}"
    return WorkerCrashed(
        f"{message}; log: {tail}" if tail else message,
        "see the report for the full log tail",
        code,
        tail,
    )
