"""Syscalls of processes: programs run (from memory too), forks and clones, signals, handles on
and reaches into other processes, identity changes, refused escapes; and the bookkeeping of
descriptors and working directories (dup, fcntl, chdir, memfd, pidfd) the other families read.
"""

from __future__ import annotations

from runner.telemetry import paths
from runner.telemetry.calls import Call, array, number, path_detail, text
from runner.telemetry.events import Event
from runner.telemetry.procstate import Fd

MEMFD_PREFIX = "/memfd:"


def fd_itself(c: Call, i: int) -> paths.Resolved:
    """The file descriptor argument `i` names (AT_EMPTY_PATH, fexecve, fchmod)."""
    entry = c.fd(i)
    if entry is not None and entry.kind in ("file", "memfd") and entry.known:
        return paths.Resolved(entry.path)
    return paths.unresolved(f"fd {c.arg(i)[:12]}", "")


# --- processes --------------------------------------------------------------------------------


def exec_event(c: Call) -> Event:
    at = c.name == "execveat"
    flags = c.arg(4) if at else ""
    by_fd = at and text(c.arg(1)) == "" and "AT_EMPTY_PATH" in flags
    if by_fd:
        resolved, raw = fd_itself(c, 0), f"fd {c.arg(0)[:12]}"
    else:
        follow = "AT_SYMLINK_NOFOLLOW" not in flags
        resolved = c.resolve(1 if at else 0, 0 if at else None, follow)
        raw = text(c.arg(1 if at else 0))
    argv = array(c.arg(2 if at else 1)) if len(c.args) > (2 if at else 1) else []
    # run from memory, or from a descriptor the tracer cannot name (a path that is only
    # unknown, e.g. relative to an unseen cwd, is a program run like any other)
    through_fd = by_fd or (resolved.path.startswith("/proc/") and "/fd/" in resolved.path)
    fileless = resolved.path.startswith(MEMFD_PREFIX) or (through_fd and not resolved.known)
    if c.ok:
        c.state.exec(c.pid)
    summary = f"exec {resolved.path} {' '.join(argv[1:])}".strip()
    return c.ev("process.exec", summary, **path_detail(resolved, raw), argv=argv, fileless=fileless)


def fork_event(c: Call) -> Event | None:
    flags = " ".join(c.args) if c.name in ("clone", "clone3") else ""
    child = c.returned
    if child is not None and child > 0:
        c.state.clone(c.pid, child, flags)
    if "CLONE_UNTRACED" in flags:  # a child ptrace would not follow (the profile refuses it)
        summary = f"{c.name} with CLONE_UNTRACED = {c.call.result}"
        return c.ev("priv.evasion", summary, syscall=c.name)
    if "CLONE_THREAD" in flags:
        return None
    return c.ev("process.fork", f"{c.name} -> child {c.call.result}", child=c.call.result)


# --- signals and reaches into other processes --------------------------------------------------

# the target's argument and the signal's
_SIGNAL_ARGS = {
    "kill": (0, 1),
    "tkill": (0, 1),
    "tgkill": (0, 2),
    "rt_sigqueueinfo": (0, 1),
    "rt_tgsigqueueinfo": (0, 2),
    "pidfd_send_signal": (0, 1),
}


def _pidfd_target(c: Call, i: int) -> int | None:
    entry = c.fd(i)
    return entry.target if entry is not None and entry.kind == "pidfd" else None


def _who(target: int | None, c: Call) -> str:
    if target is None:
        return f"an unidentified process (pidfd {c.arg(0)[:12]})"
    if target == 1:
        return "the tracer (pid 1)"
    if target == 0:
        return "every process of its group"
    if target == -1:
        return "every process it may signal"
    return f"process group {-target}" if target < 0 else f"pid {target}"


def signal_event(c: Call) -> Event | None:
    t, s = _SIGNAL_ARGS[c.name]
    target = _pidfd_target(c, t) if c.name == "pidfd_send_signal" else number(c.arg(t))
    mine = c.state.group(c.pid)
    if target is not None and target > 0 and (c.state.group_of(target) or target) == mine:
        return None  # the caller's own process
    sig = c.arg(s)[:32] or "?"
    return c.ev("signal.send", f"{c.name} {sig} to {_who(target, c)}", target=target, signal=sig)


def reach_event(c: Call) -> Event:
    """pidfd_open, pidfd_getfd, process_vm_readv/writev, process_madvise."""
    if c.name in ("pidfd_getfd", "process_madvise"):
        target = _pidfd_target(c, 0)
    else:
        target = number(c.arg(0))
    kind = "process.reach"
    if c.name == "pidfd_open":
        n = c.returned
        if n is not None:
            c.state.set_fd(c.pid, n, Fd("pidfd", target=target, cloexec=True))
        if target is not None and target > 0 and c.state.related(c.pid, target):
            kind = "process.handle"  # its own process or one of its children
    elif c.name == "pidfd_getfd" and c.returned is not None:
        c.state.forget(c.pid, c.returned)  # a descriptor of another process: unknown here
    return c.ev(kind, f"{c.name} at {_who(target, c)}", target=target)


# --- identity and refused calls ----------------------------------------------------------------


def setid_event(c: Call) -> Event:
    return c.ev("priv.setid", f"{c.name}({', '.join(a[:40] for a in c.args[:4])})")


def refused_event(c: Call) -> Event:
    args = ", ".join(text(a)[:80] for a in c.args[:3])
    kind = "priv.evasion" if c.name.startswith("io_uring") or c.name == "seccomp" else "priv.escape"
    return c.ev(kind, f"{c.name}({args})")


# --- bookkeeping: descriptors, working directories, in-memory files ------------------------------


def descriptor_call(c: Call) -> None:
    """dup, dup2, dup3, fcntl, chdir, fchdir: what later paths and descriptors mean."""
    name, new = c.name, c.returned
    if name in ("dup", "dup2", "dup3") and new is not None:
        old = c.fd_arg(0)
        if old is not None:
            c.state.dup(c.pid, old, new, name == "dup3" and "O_CLOEXEC" in c.arg(2))
    elif name == "fcntl":
        _fcntl(c)
    elif name == "chdir" and c.ok:
        c.state.chdir(c.pid, c.resolve(0))
    elif name == "fchdir" and c.ok:
        c.state.chdir(c.pid, fd_itself(c, 0))


def _fcntl(c: Call) -> None:
    cmd, fd, new = c.arg(1), c.fd_arg(0), c.returned
    if fd is None:
        return
    if cmd in ("F_DUPFD", "F_DUPFD_CLOEXEC") and new is not None:
        c.state.dup(c.pid, fd, new, cmd == "F_DUPFD_CLOEXEC")
    elif cmd == "F_SETFD" and c.ok:
        entry = c.state.fd(c.pid, fd)
        if entry is not None:
            entry.cloexec = "FD_CLOEXEC" in c.arg(2) or number(c.arg(2)) == 1


def memfd_event(c: Call) -> Event:
    name = text(c.arg(0))[:249].replace("/", "_")
    path = MEMFD_PREFIX + name
    n = c.returned
    if n is not None:
        c.state.set_fd(c.pid, n, Fd("memfd", path, cloexec="MFD_CLOEXEC" in c.arg(1)))
    return c.ev("file.memfd", f"memfd_create {name!r}", path=path, name=name)
