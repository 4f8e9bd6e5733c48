"""Warm starts under runc: a zygote warmed with no model, forked into each fresh sandbox.

    with Zygote(policy) as z:
        with Sandbox("model.pt", policy, zygote=z) as sb: ...

A fresh container still gets every model (runner.controller.launch starts it as usual, holding
only `sleep`), but its worker is not a new Python process that imports torch: the zygote
(runner.worker.zygote, in a container of its own that has seen no model) forks, the fork joins
the fresh container's namespaces and drops to the sandbox's uid with no capabilities, and the
host then
- moves it into the container's cgroups (its memory, CPU and pid limits, its device rules);
- checks it from /proc against the container's own first process, and refuses it on any
  difference: every namespace, the root directory, the cgroups, the limits, the security label,
  no capabilities in any set, no-new-privileges, the seccomp filter (the same profile's);
- attaches strace from the host (`-p`: every system call stops, the traced ones are logged and
  the refused ones answered EPERM, as inside a cold sandbox), and waits to see the tracer log a
  call of the fork's before it lets the worker start.
The model is read only after all of that. What it keeps of the zygote is memory the zygote had
before any model was seen, and the zygote's copy of the image's files mapped read-only. The
zygote is privileged (CAP_SYS_ADMIN, the host's PID namespace: it must join other containers'
namespaces) and unreachable from the sandboxes: its socket is mounted into none of them, its
processes are outside their PID namespaces. docs/performance.md says what this costs and saves.
"""

from __future__ import annotations

import array
import contextlib
import json
import logging
import os
import re
import select
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from runner.controller import engine, images, sessions
from runner.errors import SandboxError
from runner.policy import Policy, Runtime
from runner.telemetry import tracer
from runner.telemetry.gvisor.points import SYSNO

log = logging.getLogger(__name__)

NAMESPACES = ("cgroup", "ipc", "uts", "net", "pid", "mnt")  # as runner.worker.zygote joins them
WARM_FORMATS = ("torchscript", "torch", "huggingface")  # what the zygote imports and warms
# the formats whose sandboxes a zygote makes cheaper (their loaders import torch)
TORCH_FAMILY = frozenset({*WARM_FORMATS, "safetensors", "torch-package", "pickle"})
CONTROL = "control.sock"
PYTHON = ["/opt/airlock/venv/bin/python", "-B", "-I"]
ZYGOTE_CAPS = ["SYS_ADMIN", "SYS_CHROOT", "SETUID", "SETGID", "SETPCAP"]
# the tracer's cgroups: the sandbox's CPU (v1), or all of the sandbox's (v2, one hierarchy)
TRACER_CGROUPS = frozenset({"cpu", "cpuacct", ""})
HOLDER = (["sleep"], ["infinity"])  # what a warm sandbox's container runs itself
ZYGOTE_MEMORY = 4 << 30
STEP_TIMEOUT_S = 10.0
_STATUS_KEYS = ("Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapAmb", "NoNewPrivs")
_SAME_AS_INIT = ("CapBnd", "Seccomp")


class WarmStartError(SandboxError):
    """The zygote could not give this sandbox a worker; the sandbox starts cold instead."""


def warm_formats(paths: list[Path]) -> tuple[str, ...]:
    """What a zygote for these models warms: torch always, transformers when one is a directory
    (a Hugging Face repository or snapshot: warming it costs the zygote about 3 s of CPU)."""
    repos = any(p.is_dir() for p in paths)
    return tuple(f for f in WARM_FORMATS if f != "huggingface" or repos)


def usable(policy: Policy) -> bool:
    """Whether a sandbox under this policy can take a warm worker: runc with strace."""
    return policy.runtime is Runtime.RUNC and policy.trace


@dataclass
class WarmWorker:
    """A worker forked into a sandbox: its host pid, its tracer, and the zygote's connection
    that says how it exited."""

    pid: int
    conn: socket.socket
    tracer: subprocess.Popen[bytes] | None = None
    exit_code: int | None = None
    tracer_lost: bool = False  # strace ended while the worker still ran
    _buffer: bytes = field(default=b"", repr=False)
    _closing: threading.Event = field(default_factory=threading.Event, repr=False)

    def poll_exit(self, timeout_s: float = 0.0) -> int | None:
        """The worker's exit status once the zygote reaped it (128 + N for signal N)."""
        if self.exit_code is not None:
            return self.exit_code
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            self.conn.settimeout(max(left, 0.0) or 1e-6)
            try:
                chunk = self.conn.recv(256)
            except (TimeoutError, BlockingIOError):
                return None
            except OSError:
                chunk = b""
            if not chunk:  # the zygote is gone: the worker's status is unknown
                self.exit_code = -1
                return self.exit_code
            self._buffer += chunk
        line = self._buffer.split(b"\n", 1)[0].decode("ascii", "replace")
        match = re.fullmatch(r"exit (\d{1,3})", line)
        self.exit_code = int(match.group(1)) if match else -1
        return self.exit_code

    def watch_tracer(self, container: str) -> None:
        """If strace ends while the worker lives (its tracees would run on untraced), kill the
        container at once; the log then lacks the worker's exit and the verdict is not clean."""
        tracer_proc = self.tracer
        assert tracer_proc is not None

        pidfd = os.pidfd_open(self.pid)  # readable once the worker has exited

        def watch() -> None:
            tracer_proc.wait()
            try:  # strace ends after its last tracee's exit: the worker has exited by then
                alive = not select.select([pidfd], [], [], 0.2)[0]
            finally:
                os.close(pidfd)
            if alive and not self._closing.is_set():  # not the host's own kill of strace
                self.tracer_lost = True
                log.warning("the host's strace ended before the warm worker: killing it")
                engine.kill(container)

        threading.Thread(target=watch, name="airlock-tracer-watch", daemon=True).start()

    def tracer_done(self, timeout_s: float) -> bool:
        """Whether strace has finished by itself within timeout_s."""
        if self.tracer is None:
            return True
        try:
            self.tracer.wait(timeout=timeout_s)
            return True
        except subprocess.TimeoutExpired:
            return False

    def stop_tracer(self, timeout_s: float) -> bool:
        """Wait for strace to finish its log (it exits with the worker); kill it past the
        timeout. Whether it finished by itself."""
        if self.tracer is None:
            return True
        try:
            self.tracer.wait(timeout=timeout_s)
            return True
        except subprocess.TimeoutExpired:
            self._closing.set()
            _kill_group(self.tracer)
            return False

    def close(self) -> None:
        self._closing.set()
        self.conn.close()
        if self.tracer is not None:
            _kill_group(self.tracer)


class Zygote:
    """A warm zygote container for one image: start it, spawn workers into fresh sandboxes,
    close it (it is removed with its directories, like any sandbox)."""

    def __init__(
        self, policy: Policy, image: str | None = None, formats: tuple[str, ...] = WARM_FORMATS
    ) -> None:
        self.policy = policy
        self.formats = formats
        self.image = image or images.require_current()[0]
        self.session = sessions.new_session_id()
        self.container: str | None = None
        self._dirs: sessions.SessionDirs | None = None

    def __enter__(self) -> Zygote:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def control(self) -> Path:
        assert self._dirs is not None
        return self._dirs.run / CONTROL

    def start(self) -> None:
        """Start the zygote and wait until it is warm (its control socket appears)."""
        try:
            self._dirs = dirs = sessions.make_dirs(self.session)
            os.chown(dirs.run, 0, 0)  # the zygote is root without CAP_DAC_OVERRIDE
            spec = engine.ContainerSpec(
                image=self.image,
                name=f"airlock-{self.session}",
                entrypoint=[*PYTHON, "-m", "runner.worker.zygote"],
                command=[
                    "--control",
                    f"/airlock/run/{CONTROL}",
                    "--formats",
                    ",".join(self.formats),
                ],
                labels=sessions.owner_labels(self.session, dirs.root),
                runtime=Runtime.RUNC.value,
                mounts=[engine.BindMount(dirs.run, "/airlock/run", read_only=False)],
                environment={},
                memory_bytes=max(ZYGOTE_MEMORY, self.policy.memory_bytes),
                nano_cpus=int(self.policy.cpus * 1e9),
                pids=64,
                open_files=self.policy.open_files,
                tmpfs={"/tmp": "rw,nosuid,nodev,noexec,size=256m,mode=1777"},  # noqa: S108
                seccomp_json=engine.seccomp_json(
                    images.IMAGES_DIR / "seccomp" / "airlock-traced.json"
                ),
                cap_add=ZYGOTE_CAPS,
                pid_mode="host",
            )
            self.container = engine.create_and_start(spec)
            deadline = time.monotonic() + self.policy.startup_timeout_s
            while not self.control.exists():
                st = engine.state(self.container)
                if st is None or not st.running:
                    tail = engine.logs_tail(self.container, lines=5)
                    raise SandboxError(f"the zygote exited while warming: {tail}", _HINT)
                if time.monotonic() > deadline:
                    raise SandboxError("the zygote did not warm in time", _HINT)
                time.sleep(0.05)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self.container is not None:
            engine.remove(self.container)
            self.container = None
        if self._dirs is not None:
            sessions.remove_dirs(self._dirs.root)
            self._dirs = None

    def serves(self, policy: Policy, image: str) -> bool:
        return self.container is not None and usable(policy) and image == self.image

    def spawn(self, container: str, argv: list[str], trace_log: Path) -> WarmWorker:
        """Fork a worker into `container` (started with the HOLDER command), move it into the
        container's cgroups, check it, trace it, and let it start. Raises WarmStartError."""
        init = engine.host_pid(container)
        if init is None:
            raise WarmStartError("the sandbox's container is not running", _HINT)
        try:
            conn, worker = self._request(init, argv)
        except OSError as e:
            raise WarmStartError(f"the zygote did not take the request: {e}", _HINT) from e
        try:
            _move_to_cgroups(worker.pid, init)
            problems = differences(worker.pid, init)
            status = _status(worker.pid)  # still waiting on its pipe: one thread, untraced
            if status.get("Threads") != "1" or status.get("TracerPid") != "0":
                problems.append("more than one thread, or traced already")
            if problems:
                raise WarmStartError(
                    "the warm worker is not confined like its container: " + "; ".join(problems),
                    _HINT,
                )
            worker.tracer, ns_pid = _attach(worker.pid, init, trace_log)
            worker.watch_tracer(container)
            _release(conn.go, worker, ns_pid, trace_log)
            return worker
        except BaseException as e:
            worker.close()
            if isinstance(e, OSError):  # no strace or nsenter on the host, /proc unreadable
                raise WarmStartError(f"the warm worker could not be set up: {e}", _HINT) from e
            raise
        finally:
            os.close(conn.go)

    def _request(self, init: int, argv: list[str]) -> tuple[_Go, WarmWorker]:
        fds: list[int] = []
        go_r, go_w = os.pipe()
        try:
            environment = _environ(init)
            fds.append(go_r)
            fds.append(os.open(f"/proc/{init}/fd/1", os.O_WRONLY))
            fds.append(os.open(f"/proc/{init}/fd/2", os.O_WRONLY))
            fds += [os.open(f"/proc/{init}/ns/{ns}", os.O_RDONLY) for ns in NAMESPACES]
            request = {
                "argv": argv,
                "environment": environment,
                "rlimits": {"nofile": self.policy.open_files, "core": 0},
                "refuse": [SYSNO[name] for name in tracer.REFUSED.split(",")],
            }
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            conn.settimeout(STEP_TIMEOUT_S)
            conn.connect(str(self.control))
            conn.sendmsg(
                [json.dumps(request).encode()],
                [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))],
            )
            line = b""
            while not line.endswith(b"\n") and len(line) < 2000:
                chunk = conn.recv(1)
                if not chunk:
                    break
                line += chunk
        except BaseException as e:
            os.close(go_w)
            if isinstance(e, OSError | ValueError):
                raise WarmStartError(f"the zygote did not take the request: {e}", _HINT) from e
            raise
        finally:
            for fd in fds:
                os.close(fd)
        text = line.decode("utf-8", "replace").strip()
        match = re.fullmatch(r"pid (\d+)", text)
        if match is None:
            conn.close()
            os.close(go_w)
            raise WarmStartError(f"the zygote could not fork a worker: {text[:300]}", _HINT)
        return _Go(go_w), WarmWorker(int(match.group(1)), conn)


@dataclass(frozen=True)
class _Go:
    go: int  # the write end of the pipe the forked worker waits on


_HINT = "the sandbox starts cold instead; 'airlock doctor' checks the engine"


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    pairs = (entry.split(b"=", 1) for entry in raw.split(b"\0") if b"=" in entry)
    return {k.decode(): v.decode() for k, v in pairs}


def _cgroup_mounts() -> dict[frozenset[str], Path]:
    """The host's cgroup hierarchies by their controllers ("" for the unified one)."""
    found: dict[frozenset[str], Path] = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        kind, _, options = [*right.split(" "), "", "", ""][:3]
        mount_point = Path(left.split(" ")[4])
        if kind == "cgroup2":
            found.setdefault(frozenset({""}), mount_point)
        elif kind == "cgroup":
            names = {o for o in options.split(",") if o not in ("rw", "ro", "xattr")}
            names.discard("clone_children")
            found.setdefault(frozenset(names), mount_point)
    return found


def _move_to_cgroups(pid: int, init: int, only: frozenset[str] | None = None) -> None:
    """Move `pid` into the cgroups of the container's first process `init`: every hierarchy,
    or those with a controller in `only` ("" for the unified one)."""
    mounts = _cgroup_mounts()
    for line in Path(f"/proc/{init}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        key = frozenset(controllers.split(",")) if controllers else frozenset({""})
        if only is not None and not key & only:
            continue
        where = mounts.get(key)
        if where is None:
            raise WarmStartError(f"no mounted cgroup hierarchy for {controllers!r}", _HINT)
        (where / path.lstrip("/") / "cgroup.procs").write_text(str(pid))


def _status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError as e:
        return f"unreadable: {e.strerror}"


def differences(pid: int, init: int) -> list[str]:
    """How the forked worker `pid` is confined differently from the container's first process
    `init`: empty when it is confined the same way, with no privileges left."""
    problems = []
    for ns in (*NAMESPACES, "user"):
        if os.readlink(f"/proc/{pid}/ns/{ns}") != os.readlink(f"/proc/{init}/ns/{ns}"):
            problems.append(f"another {ns} namespace")
    mine, theirs = os.stat(f"/proc/{pid}/root"), os.stat(f"/proc/{init}/root")
    if (mine.st_dev, mine.st_ino) != (theirs.st_dev, theirs.st_ino):
        problems.append("another root directory")
    for what in ("cgroup", "limits", "attr/current"):
        if _read(f"/proc/{pid}/{what}") != _read(f"/proc/{init}/{what}"):
            problems.append(f"other {what}")
    status, init_status = _status(pid), _status(init)
    uid = f"{sessions.MODEL_UID}\t" * 4
    expected = {
        "Uid": uid.strip(),
        "Gid": uid.strip(),
        "Groups": "",
        "CapInh": "0" * 16,
        "CapPrm": "0" * 16,
        "CapEff": "0" * 16,
        "CapAmb": "0" * 16,
        "NoNewPrivs": "1",
    }
    for key in _STATUS_KEYS:
        if status.get(key) != expected[key]:
            problems.append(f"{key} {status.get(key)!r}, not {expected[key]!r}")
    for key in _SAME_AS_INIT:
        if status.get(key) != init_status.get(key):
            problems.append(f"{key} {status.get(key)!r}, not its container's")
    if status.get("Seccomp") != "2":
        problems.append("no seccomp filter")
    filters, init_filters = status.get("Seccomp_filters", ""), init_status.get("Seccomp_filters")
    if not init_filters or filters != str(int(init_filters) + 1):  # the profile's, and its own
        problems.append(f"Seccomp_filters {filters!r}, not the container's and one more")
    return problems


def _attach(pid: int, init: int, trace_log: Path) -> tuple[subprocess.Popen[bytes], int]:
    """strace from the host's side, attached to the worker and its future children and
    threads. It runs in the container's PID namespace (as a cold sandbox's strace does), so the
    pids in its log are the ones the traced calls return; its files stay the host's. Returns
    the process (nsenter, strace's parent) and the worker's pid in the container."""
    ns_pid = int(_status(pid).get("NSpid", "0").split()[-1])
    command = [
        "nsenter", "--target", str(init), "--pid", "--",
        "strace", "-f", "-q", "-ttt", "-s", "256", "-xx", "-o", str(trace_log),
        "-e", f"trace={tracer.TRACED}", "-e", f"inject={tracer.REFUSED}:error=EPERM",
        "-p", str(ns_pid),
    ]  # fmt: skip
    proc = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own group, ended by its pid, never by the host's Ctrl-C
    )
    deadline = time.monotonic() + STEP_TIMEOUT_S
    while not _traced_by_child_of(pid, proc.pid):
        if proc.poll() is not None or time.monotonic() > deadline:
            _kill_group(proc)
            raise WarmStartError("strace could not attach to the warm worker", _HINT)
        time.sleep(0.002)
    try:  # its CPU is the sandbox's: a model that makes calls by the million throttles itself
        _move_to_cgroups(int(_status(pid)["TracerPid"]), init, TRACER_CGROUPS)
    except BaseException:
        _kill_group(proc)
        raise
    return proc, ns_pid


def _traced_by_child_of(pid: int, parent: int) -> bool:
    tracer_pid = _status(pid).get("TracerPid", "0")
    if tracer_pid == "0":
        return False
    try:
        return _status(int(tracer_pid)).get("PPid") == str(parent)
    except OSError:
        return False


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Kill nsenter and the strace it started (they share a process group of their own)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _release(go: int, worker: WarmWorker, ns_pid: int, trace_log: Path) -> None:
    """Let the worker make one traced call, wait to see it in the log, then let it start."""
    os.write(go, b"1")
    marker = f"{ns_pid} ".encode()
    deadline = time.monotonic() + STEP_TIMEOUT_S
    while True:
        try:
            head = trace_log.read_bytes()[:4096]
        except OSError:
            head = b""
        first = head.split(b"\n", 1)[0]
        if first.startswith(marker) and b" chdir(" in first and first.endswith(b"= 0"):
            break
        if worker.poll_exit() is not None or time.monotonic() > deadline:
            raise WarmStartError("the tracer did not see the warm worker's first call", _HINT)
        time.sleep(0.002)
    os.write(go, b"2")
