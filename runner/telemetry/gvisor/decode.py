"""gVisor's trace point messages as the tracer's log: the lines strace would have written.

Each message becomes the line strace (`-f -ttt -xx`) prints for the call, so the strace path's
reader (runner.telemetry.strace), its families' handlers (runner.telemetry.syscalls) and the
rules see the same calls, events (process.exec, net.connect, file.write, priv.escape, ...)
and gaps as under runc. What the messages cannot say becomes a line in no strace shape, which
the reader counts as unread (AL903): a message of a type Airlock does not read or that does not
decode, the points runsc reported dropping, messages past the sink's caps. Those keep the
verdict from clean, and say why.

Messages are hostile data (the sandbox's kernel writes them, from the model's memory): decoding
never raises and keeps at most MAX_LINES lines; a line's strings are cut like strace's -s 256.
Raw points (no schema) carry integers only: a path or an address they point at is unknown
(printed as a cut empty string, which the handlers treat as unresolved).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from runner.telemetry.gvisor import points
from runner.telemetry.gvisor import text as tx
from runner.telemetry.gvisor._proto import common_pb2, sentry_pb2, syscall_pb2

MAX_LINES = 400_000  # runner.telemetry.strace.MAX_LINES: the reader keeps no more
MAX_LOG_BYTES = 256 << 20  # runner.controller.teardown.MAX_TRACE_BYTES: the host reads no more
T = common_pb2.MessageType


@dataclass
class Log:
    """The lines decoded so far, and what could not be."""

    lines: list[tuple[int, int, str]] = field(default_factory=list)  # (time_ns, order, text)
    unparsed: dict[str, int] = field(default_factory=dict)  # why -> count
    skipped: int = 0  # past MAX_LINES
    pending_exec: dict[int, int] = field(default_factory=dict)  # thread group -> line index
    exec_done: set[int] = field(default_factory=set)  # groups whose exec sentry/execve said
    pending_raw: dict[int, tuple[int, int]] = field(default_factory=dict)  # tid -> (sysno, line)
    teardown_ns: int = 0  # when the host began tearing down (0: unknown)
    socket_removed: bool = False  # the host found the worker's gRPC socket gone afterwards
    text_bytes: int = 0  # of the lines kept: none is kept past MAX_LOG_BYTES
    excused: int = 0  # the worker's own unlink of its socket at teardown (see _raw)
    # points.COUNTED: (raw points, schema points) per call, (raw, schema) of them for writing
    checked: dict[str, list[int]] = field(default_factory=dict)

    def count(self, why: str) -> None:
        if len(self.unparsed) < 64 or why in self.unparsed:
            self.unparsed[why] = self.unparsed.get(why, 0) + 1
        else:
            other = "other message(s) not read"
            self.unparsed[other] = self.unparsed.get(other, 0) + 1

    def check(self, name: str, raw: bool, writes: bool) -> None:
        """One call of points.COUNTED, said by its raw point or by its schema point."""
        tally = self.checked.setdefault(name, [0, 0, 0, 0])
        tally[0 if raw else 1] += 1
        tally[2 if raw else 3] += writes

    def add(self, ctx: Any, body: str) -> int:
        if len(self.lines) >= MAX_LINES or self.text_bytes > MAX_LOG_BYTES:
            self.skipped += 1  # past the reader's line cap or the host's byte cap: counted
            return -1
        t = max(0, min(int(ctx.time_ns), 10**20))
        tid = max(0, min(int(ctx.thread_id), 10**9))
        if not tid or not t:  # whose, or when, is unknown: it would pass for the worker's
            self.count("message(s) without the thread or time they came from")
            return -1
        line = f"{tid} {t // 10**9}.{t % 10**9:09d} {body}"
        self.text_bytes += len(line) + 1
        self.lines.append((t, len(self.lines), line))
        return len(self.lines) - 1


def _end(m: Any) -> str:
    """The call's result as strace prints it ("?" for an enter point's message)."""
    return tx.result(m.exit, m.HasField("exit"))


def _call(name: str, args: Iterable[str], result: str) -> str:
    return f"{name}({', '.join(args)}) = {result}"


def _syscall_name(sysno: int, allowed: Iterable[str]) -> str:
    name = points.NAME_OF.get(int(sysno))
    if name is None or name not in allowed:
        raise ValueError(f"syscall {int(sysno)} in a message of another call")
    return name


WRITE_FLAGS = 0o1 | 0o2 | 0o100 | 0o1000  # O_WRONLY, O_RDWR, O_CREAT, O_TRUNC
ENOSYS = 38


def _open(log: Log, m: Any) -> None:
    name = _syscall_name(m.sysno, ("open", "openat", "creat"))
    path = tx.s(m.pathname)
    if name == "openat":
        args = [tx.fd(m.fd), path, tx.open_flags(m.flags)]
    elif name == "open":
        args = [path, tx.open_flags(m.flags)]
    else:
        args = [path, f"{m.mode & 0o7777:#o}"]
    if m.flags & 0o100 and name != "creat":
        args.append(f"{m.mode & 0o7777:#o}")
    log.check(name, raw=False, writes=name == "creat" or bool(m.flags & WRITE_FLAGS))
    log.add(m.context_data, _call(name, args, _end(m)))


def _addr_call(log: Log, m: Any) -> None:
    name = _syscall_name(m.sysno, ("connect", "bind"))
    args = [str(tx.i32(m.fd)), tx.sockaddr(bytes(m.address)), str(len(m.address))]
    log.add(m.context_data, _call(name, args, _end(m)))


def _accept(log: Log, m: Any) -> None:
    name = _syscall_name(m.sysno, ("accept", "accept4"))
    addr = tx.sockaddr(bytes(m.address)) if m.address else "NULL"
    args = [str(tx.i32(m.fd)), addr, f"[{len(m.address)}]" if m.address else "NULL"]
    if name == "accept4":
        args.append(tx.flags(m.flags & 0xFFFFFFFF, tx.SOCK_FLAGS))
    log.add(m.context_data, _call(name, args, _end(m)))


def _socket(log: Log, m: Any) -> None:
    _syscall_name(m.sysno, ("socket",))
    args = [tx.family(m.domain), tx.sock_type(m.type), str(m.protocol)]
    log.add(m.context_data, _call("socket", args, _end(m)))


def _socketpair(log: Log, m: Any) -> None:
    _syscall_name(m.sysno, ("socketpair",))
    ends = f"[{m.socket1}, {m.socket2}]"
    args = [tx.family(m.domain), tx.sock_type(m.type), str(m.protocol), ends]
    log.add(m.context_data, _call("socketpair", args, _end(m)))


def _execve(log: Log, m: Any) -> None:
    name = _syscall_name(m.sysno, ("execve", "execveat"))
    ctx = m.context_data
    group = int(ctx.thread_group_id)
    if m.HasField("exit"):  # the end of a call whose enter point said what it ran
        at = log.pending_exec.pop(group, -1)
        if at >= 0:
            t, order, text = log.lines[at]
            log.lines[at] = (t, order, text.removesuffix(" = ?") + f" = {tx.result(m.exit, True)}")
            return
        if group in log.exec_done:  # the program it started is said (its memory is not)
            log.exec_done.discard(group)
            return
    if not m.HasField("exit"):
        log.check(name, raw=False, writes=False)  # the enter point, counted (points.COUNTED)
    if name == "execve":
        args = [tx.s(m.pathname), tx.argv(m.argv), f"0 /* {len(m.envv)} vars */"]
    else:
        flags = tx.flags(m.flags, ((0x1000, "AT_EMPTY_PATH"), (0x100, "AT_SYMLINK_NOFOLLOW")))
        args = [tx.fd(m.fd), tx.s(m.pathname), tx.argv(m.argv), "0", flags]
    at = log.add(ctx, _call(name, args, _end(m)))
    if not m.HasField("exit") and at >= 0:
        log.pending_exec[group] = at


def _chdir(log: Log, m: Any) -> None:
    name = _syscall_name(m.sysno, ("chdir", "fchdir"))
    args = [tx.s(m.pathname)] if name == "chdir" else [str(tx.i32(m.fd))]
    if name == "chdir":
        log.check(name, raw=False, writes=False)
    log.add(m.context_data, _call(name, args, _end(m)))


def _setid(log: Log, m: Any) -> None:
    name = _syscall_name(m.sysno, ("setuid", "setgid"))
    log.add(m.context_data, _call(name, [str(m.id)], _end(m)))


def _setresid(log: Log, m: Any) -> None:
    name = _syscall_name(m.sysno, ("setresuid", "setresgid"))
    args = [str(tx.i32(m.rid)), str(tx.i32(m.eid)), str(tx.i32(m.sid))]
    log.add(m.context_data, _call(name, args, _end(m)))


_FCNTL = {
    0: "F_DUPFD", 1: "F_GETFD", 2: "F_SETFD", 3: "F_GETFL", 4: "F_SETFL", 1030: "F_DUPFD_CLOEXEC"
}  # fmt: skip


def _fcntl(log: Log, m: Any) -> None:
    _syscall_name(m.sysno, ("fcntl",))
    cmd = _FCNTL.get(m.cmd, str(m.cmd))
    arg = ("FD_CLOEXEC" if m.args == 1 else str(m.args)) if cmd == "F_SETFD" else str(m.args)
    args = [str(m.fd), cmd, arg]
    log.add(m.context_data, _call("fcntl", args, _end(m)))


def _dup(log: Log, m: Any) -> None:
    name = _syscall_name(m.sysno, ("dup", "dup2", "dup3"))
    args = [str(m.old_fd)] + ([str(m.new_fd)] if name != "dup" else [])
    if name == "dup3":
        args.append("O_CLOEXEC" if m.flags & 0o2000000 else "0")
    log.add(m.context_data, _call(name, args, _end(m)))


def _chroot(log: Log, m: Any) -> None:
    _syscall_name(m.sysno, ("chroot",))
    log.check("chroot", raw=False, writes=False)
    log.add(m.context_data, _call("chroot", [tx.s(m.pathname)], _end(m)))


def _raw(log: Log, m: Any) -> None:
    """A raw point. Enter and exit are both enabled (runsc 20221219 loads a raw exit's context
    by its enter point's configuration): the exit replaces its enter, an enter never ended
    stays, unfinished."""
    name = _syscall_name(m.sysno, points.SYSNO)
    args = [m.arg1, m.arg2, m.arg3, m.arg4, m.arg5, m.arg6]
    ended = m.HasField("exit")
    if name in points.COUNTED:  # only counted against its schema point (points.COUNTED)
        if ended == (points.COUNTED[name] == "exit"):
            flags = {"open": m.arg2, "openat": m.arg3}.get(name, 0)
            log.check(name, raw=True, writes=name == "creat" or bool(flags & WRITE_FLAGS))
        return
    tid = int(m.context_data.thread_id)
    if name == "openat2" and ended and m.exit.errorno == ENOSYS:  # this runsc has no openat2:
        before = log.pending_raw.pop(tid, None)  # nothing was opened, its enter line goes too
        if before is not None and before[0] == int(m.sysno):
            log.lines[before[1]] = (0, -1, "")
        return
    line = _call(name, tx.raw_args(name, args), tx.result(m.exit, ended))
    before = log.pending_raw.pop(tid, None)
    if ended and _own_unlink(log, name, m):
        if before is not None:
            log.lines[before[1]] = (0, -1, "")
        return
    if ended and before is not None and before[0] == int(m.sysno):
        keep = log.lines[before[1]]
        log.lines[before[1]] = (keep[0], keep[1], " ".join(keep[2].split(" ", 2)[:2]) + " " + line)
        return
    at = log.add(m.context_data, line)
    if not ended and at >= 0 and len(log.pending_raw) < 100_000:
        log.pending_raw[tid] = (int(m.sysno), at)


WORKER_GROUP = 1  # the container's first process: the worker (strace's first pid)


def _own_unlink(log: Log, name: str, m: Any) -> bool:
    """gRPC removing the worker's socket as the server stops (strace's path knows it by its path,
    runner.telemetry.files.modify_event). A raw point has no path: the first successful unlink
    by the worker's process once the host is tearing down is taken for it, and counted, if the
    host then finds the socket gone (a model that unlinks something else and exits before gRPC
    would have spent the excuse otherwise); any other unlink is the model's, its path unknown."""
    ctx = m.context_data
    if name != "unlink" or log.excused or not log.teardown_ns or m.exit.errorno:
        return False
    if not log.socket_removed:  # then that unlink removed something else: the model's
        return False
    if int(ctx.thread_group_id) != WORKER_GROUP or int(ctx.time_ns) < log.teardown_ns:
        return False
    log.excused += 1
    return True


def _clone(log: Log, m: Any) -> None:
    """A new task (clone, clone3, fork, vfork), said by its parent."""
    args = ["child_stack=NULL", f"flags={tx.clone_flags(m.flags)}"]
    log.add(m.context_data, _call("clone", args, str(int(m.created_thread_id))))


def _exec_done(log: Log, m: Any) -> None:
    """A program started: its exec call succeeded (its exit point may never come)."""
    group = int(m.context_data.thread_group_id)
    at = log.pending_exec.pop(group, -1)
    if at >= 0:
        t, order, text = log.lines[at]
        log.lines[at] = (t, order, text.removesuffix(" = ?") + " = 0")
    else:
        args = [tx.s(m.binary_path), tx.argv(m.argv), f"0 /* {len(m.env)} vars */"]
        log.add(m.context_data, _call("execve", args, "0"))
    if len(log.exec_done) < 100_000:
        log.exec_done.add(group)


def _task_exit(log: Log, m: Any) -> None:
    ctx = m.context_data
    if int(ctx.thread_id) != int(ctx.thread_group_id):
        return  # a thread: its process goes on
    status = int(m.exit_status) & 0xFFFF
    sig = status & 0x7F
    if not sig:
        log.add(ctx, f"+++ exited with {(status >> 8) & 0xFF} +++")
        return
    name = tx.signame(sig)
    name = name if name.startswith("SIG") else f"SIG{sig}"
    log.add(ctx, f"+++ killed by {name}{' (core dumped)' if status & 0x80 else ''} +++")


_DECODERS: dict[int, tuple[Any, Callable[[Log, Any], None]]] = {
    T.MESSAGE_SYSCALL_OPEN: (syscall_pb2.Open, _open),
    T.MESSAGE_SYSCALL_CONNECT: (syscall_pb2.Connect, _addr_call),
    T.MESSAGE_SYSCALL_BIND: (syscall_pb2.Bind, _addr_call),
    T.MESSAGE_SYSCALL_ACCEPT: (syscall_pb2.Accept, _accept),
    T.MESSAGE_SYSCALL_SOCKET: (syscall_pb2.Socket, _socket),
    T.MESSAGE_SYSCALL_SOCKETPAIR: (syscall_pb2.SocketPair, _socketpair),
    T.MESSAGE_SYSCALL_EXECVE: (syscall_pb2.Execve, _execve),
    T.MESSAGE_SYSCALL_CHDIR: (syscall_pb2.Chdir, _chdir),
    T.MESSAGE_SYSCALL_SETID: (syscall_pb2.Setid, _setid),
    T.MESSAGE_SYSCALL_SETRESID: (syscall_pb2.Setresid, _setresid),
    T.MESSAGE_SYSCALL_FCNTL: (syscall_pb2.Fcntl, _fcntl),
    T.MESSAGE_SYSCALL_DUP: (syscall_pb2.Dup, _dup),
    T.MESSAGE_SYSCALL_CHROOT: (syscall_pb2.Chroot, _chroot),
    T.MESSAGE_SYSCALL_RAW: (syscall_pb2.Syscall, _raw),
    T.MESSAGE_SENTRY_CLONE: (sentry_pb2.CloneInfo, _clone),
    T.MESSAGE_SENTRY_EXEC: (sentry_pb2.ExecveInfo, _exec_done),
    T.MESSAGE_SENTRY_TASK_EXIT: (sentry_pb2.TaskExit, _task_exit),
}


def feed(log: Log, msg_type: int, payload: bytes) -> None:
    """One message into the log; one that does not decode is counted, never raised."""
    entry = _DECODERS.get(msg_type)
    if entry is None:
        log.count(f"message(s) of a type Airlock does not read ({int(msg_type)})"[:80])
        return
    cls, fn = entry
    try:
        fn(log, cls.FromString(payload))
    except Exception:  # hostile or foreign bytes: counted, and the run is not clean
        log.count(f"message(s) of type {int(msg_type)} that did not decode")


@dataclass(frozen=True)
class Losses:
    """What the sink could not take (its caps) and what runsc said it dropped."""

    dropped_by_runsc: int = 0
    past_caps: int = 0
    bad_headers: int = 0
    connections: int = 1


def render(log: Log, losses: Losses, max_bytes: int = MAX_LOG_BYTES) -> bytes:
    """The tracer's log: every decoded call in time order, up to max_bytes, then a line in no
    strace shape for each kind of loss (the reader counts them unread: the verdict cannot be
    clean); calls past max_bytes are one of those losses."""
    out: list[str] = []
    budget, cut = max_bytes - 64 * 1024, 0  # room for the loss lines, always kept
    for _, _, text in sorted(log.lines):
        if not text:
            continue
        budget -= len(text) + 1
        if budget < 0:
            cut += 1
            continue
        out.append(text)
    problems = dict(log.unparsed)
    if cut:
        problems[f"call(s) past the host's cap of {max_bytes} bytes of log"] = cut
    if log.skipped:
        caps = f"{MAX_LINES} lines, {MAX_LOG_BYTES} bytes"
        problems[f"message(s) past the decoder's caps ({caps})"] = log.skipped
    if losses.dropped_by_runsc:
        problems["trace point(s) runsc dropped (the sink's socket was full)"] = (
            losses.dropped_by_runsc
        )
    if losses.past_caps:
        problems["message(s) past the sink's caps"] = losses.past_caps
    if losses.bad_headers:
        problems["message(s) with a header of another shape"] = losses.bad_headers
    if not losses.connections:
        problems["sink(s) runsc never connected to: nothing was recorded"] = 1
    if losses.connections > 1:
        problems["connection(s) to the sink beyond runsc's first"] = losses.connections - 1
    for name, (raw, schema, raw_w, schema_w) in sorted(log.checked.items()):
        if raw != schema:  # gVisor dropped the schema point of the call (a string not UTF-8)
            problems[
                f"{name} call(s) whose point runsc did not send (a path or argument that is not "
                f"UTF-8?), {max(0, raw_w - schema_w)} of them for writing: {raw} raw, "
                f"{schema} with arguments"
            ] = abs(raw - schema)
    out += [f"gvisor: {n} {what}" for what, n in sorted(problems.items())]
    return ("\n".join(out) + "\n").encode() if out else b""
