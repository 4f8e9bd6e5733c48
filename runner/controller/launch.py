"""Launch: the policy turned into one hardened container, and the host's handle on it.

Every hardening choice is made here and nowhere else: the mounts (the model read-only, the run
and trace directories, an architecture file read-only), the seccomp profile, the capabilities
the tracer needs and no more, the limits, the scratch tmpfs, the labels that name the session.
The engine seam (runner.controller.engine) adds what every container gets: no network, a
read-only root, no-new-privileges, every other capability dropped.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from runner.controller import engine, images, sessions, staging
from runner.policy import Policy, Runtime
from runner.rules.analysis import Collected
from runner.telemetry import tracer
from runner.telemetry.gvisor import session as gvisor_session
from runner.telemetry.resources import Sampler

if TYPE_CHECKING:
    from runner.controller.zygote import WarmWorker, Zygote

SOCKET_NAME = "worker.sock"
CONTAINER_SOCKET = f"/airlock/run/{SOCKET_NAME}"
DATA_SOCKET_NAME = "data.sock"
DATA_SOCKET = f"/airlock/run/{DATA_SOCKET_NAME}"
AUDIT_LOG_NAME = "audit.jsonl"
CONTAINER_AUDIT_LOG = f"/airlock/run/{AUDIT_LOG_NAME}"
TRACE_LOG_NAME = "strace.log"
RUN_DIR_OWN = frozenset({SOCKET_NAME, DATA_SOCKET_NAME, AUDIT_LOG_NAME})  # nothing else is made
TRACER_CAPS = ["SYS_PTRACE", "SETUID", "SETGID"]
ARCH_TARGET = "/airlock/arch/architecture.py"
BASE_ROOT = "/base"


@dataclass(frozen=True)
class Mounts:
    """What the container sees of the host, and where the worker finds the model."""

    binds: list[engine.BindMount]
    model_target: str  # "" for a pre-started sandbox: the model comes when it is claimed
    arch_target: str = ""
    base_target: str = ""  # a base model for an adapter, under /base (read-only)


def mounts(
    dirs: sessions.SessionDirs,
    model: Path | None,
    architecture: Path | None,
    notes: list[str],
    base: Path | None = None,
) -> Mounts:
    """The bind mounts: the model (or, with none yet, an empty staging directory) read-only,
    the run and trace directories, a private copy of the architecture file read-only, and the
    base model an adapter applies to read-only under /base."""
    if model is None:  # no model yet: an empty directory, filled when the sandbox is claimed
        staged = dirs.root / "model"
        staged.mkdir(mode=0o755)
        binds = [engine.BindMount(staged, "/model", read_only=True)]
        model_target = ""
    else:
        resolved = staging.readable_model(model, dirs.root, notes)
        model_target = f"/model/{staging.container_name(resolved)}"
        binds = [engine.BindMount(resolved, model_target, read_only=True)]
    binds += [
        engine.BindMount(dirs.run, "/airlock/run", read_only=False),
        engine.BindMount(dirs.trace, "/airlock/trace", read_only=False),
    ]
    base_target = _base_mount(dirs, base, binds, notes) if base is not None else ""
    if architecture is None:
        return Mounts(binds, model_target, base_target=base_target)
    (dirs.arch / "architecture.py").write_bytes(architecture.read_bytes())
    binds.append(engine.BindMount(dirs.arch, "/airlock/arch", read_only=True))
    return Mounts(binds, model_target, ARCH_TARGET, base_target)


def _base_mount(
    dirs: sessions.SessionDirs, base: Path, binds: list[engine.BindMount], notes: list[str]
) -> str:
    """Mount the base model read-only at /base/NAME (a private copy when the sandbox's uid
    cannot read it all); its path in the container."""
    copies = dirs.root / "base"  # where a private copy goes, apart from the model's
    copies.mkdir(mode=0o755)
    resolved = staging.readable_model(base.resolve(), copies, notes)
    target = f"{BASE_ROOT}/{staging.container_name(resolved)}"
    binds.append(engine.BindMount(resolved, target, read_only=True))
    return target


# Under gVisor, one malloc arena for every thread. glibc gives each thread but the main one an
# arena of its own and grows it a few pages at a time with mprotect, a trip through the sentry
# each: `import torch` in the worker's gRPC thread took 2 to 3 times the CPU it takes in the main
# thread (docs/performance.md). runc keeps glibc's default: there one arena makes no difference
# to start-up and costs a 3 KB call about 15 us.
GVISOR_ENVIRONMENT = {"MALLOC_ARENA_MAX": "1"}


def container_spec(
    policy: Policy,
    image: str,
    session: str,
    dirs: sessions.SessionDirs,
    binds: list[engine.BindMount],
) -> engine.ContainerSpec:
    p = policy
    profile = "airlock-traced.json" if p.trace else "airlock-strict.json"
    spec = engine.ContainerSpec(
        image=image,
        name=f"airlock-{session}",
        command=[
            "--socket",
            CONTAINER_SOCKET,
            "--audit-log",
            CONTAINER_AUDIT_LOG,
            "--data-socket",
            DATA_SOCKET,
            "--threads",
            str(p.threads),
            "--max-message-bytes",
            str(max(p.max_reply_bytes, p.max_request_bytes)),
        ],
        labels=sessions.owner_labels(session, dirs.root),
        runtime=p.runtime.value,
        mounts=binds,
        environment={
            **tracer.environment(p.trace),
            **(GVISOR_ENVIRONMENT if p.runtime is Runtime.RUNSC else {}),
        },
        memory_bytes=p.memory_bytes,
        nano_cpus=int(p.cpus * 1e9),
        pids=p.effective_pids,
        open_files=p.open_files,
        tmpfs={"/tmp": f"rw,nosuid,nodev,noexec,size={p.tmpfs_bytes},mode=1777"},  # noqa: S108
        seccomp_json=engine.seccomp_json(images.IMAGES_DIR / "seccomp" / profile),
        cap_add=TRACER_CAPS if p.trace else ["SETUID", "SETGID"],
    )
    return spec


def start(
    policy: Policy,
    image: str,
    session: str,
    dirs: sessions.SessionDirs,
    binds: list[engine.BindMount],
) -> str:
    """Create and start the session's container; returns its id. Under runsc (tracing on) the
    container is traced by gVisor's trace points into a sink on the host, which is stopped
    again if the container does not start."""
    spec = container_spec(policy, image, session, dirs, binds)
    try:
        spec = gvisor_session.adjust(spec, policy, dirs.root)
        return engine.create_and_start(spec)
    except BaseException:
        gvisor_session.discard(dirs.root)
        raise


def start_warm(
    policy: Policy,
    image: str,
    session: str,
    dirs: sessions.SessionDirs,
    binds: list[engine.BindMount],
    zygote: Zygote,
) -> tuple[str, WarmWorker]:
    """Create and start the session's container holding only `sleep`, and have the zygote fork
    its worker into it (runner.controller.zygote); the container is removed if that fails."""
    from runner.controller.zygote import HOLDER

    spec = container_spec(policy, image, session, dirs, binds)
    holder = dataclasses.replace(spec, entrypoint=HOLDER[0], command=HOLDER[1], cap_add=[])
    container = engine.create_and_start(holder)
    try:
        return container, zygote.spawn(container, spec.command, dirs.trace / TRACE_LOG_NAME)
    except BaseException:
        engine.remove(container)
        raise


def start_running(
    policy: Policy,
    image: str,
    session: str,
    dirs: sessions.SessionDirs,
    binds: list[engine.BindMount],
    zygote: Zygote | None,
    collected: Collected,
) -> Running:
    """Start the session's container: warm when the zygote serves this policy and image, cold
    otherwise, and cold (with a note) when the warm start fails."""
    from runner.controller.zygote import WarmStartError

    args = (policy, image, session, dirs, binds)
    if zygote is not None and zygote.serves(policy, image):
        try:
            container, worker = start_warm(*args, zygote)
        except WarmStartError as e:
            collected.notes.append(f"warm start: {e}; started cold")
        else:
            collected.notes.append(
                "warm start: the worker was forked from a zygote that has seen no model, into "
                "this fresh container (docs/performance.md)"
            )
            return Running(container, collected, warm=worker)
    return Running(start(*args), collected)


@dataclass
class Running:
    """A started container and what the host holds of it: its resource sampler and the
    wall-time limit. Killing it is recorded, since a sandbox the host killed is evidence."""

    container: str
    collected: Collected
    sampler: Sampler = field(init=False)
    wall_expired: threading.Event = field(default_factory=threading.Event)
    warm: WarmWorker | None = None  # a worker the zygote forked in (the container holds sleep)
    _wall_timer: threading.Timer | None = None

    def __post_init__(self) -> None:
        self.sampler = Sampler(self.container, self.collected.marks)

    def watch(self) -> None:
        """Start sampling the container's resources from the host."""
        self.sampler.start(engine.host_pid(self.container))

    def kill(self) -> None:
        self.collected.killed_by_host = True
        engine.kill(self.container)

    def worker_exited(self, timeout_s: float = 0.0) -> bool:
        """Whether the worker has exited (for a cold sandbox: the container has stopped)."""
        if self.warm is not None:
            return self.warm.poll_exit(timeout_s) is not None
        st = engine.wait(self.container, timeout_s) if timeout_s else engine.state(self.container)
        return st is None or not st.running

    def start_wall_timer(self, seconds: float) -> None:
        self._wall_timer = threading.Timer(seconds, self._wall_time_up)
        self._wall_timer.daemon = True
        self._wall_timer.start()

    def stop_wall_timer(self) -> None:
        if self._wall_timer is not None:
            self._wall_timer.cancel()

    def _wall_time_up(self) -> None:
        self.wall_expired.set()
        self.kill()
