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

import errno as _errno
import ipaddress
import signal as _signal
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from runner.telemetry.gvisor import points
from runner.telemetry.gvisor._proto import common_pb2, sentry_pb2, syscall_pb2

MAX_LINES = 400_000  # runner.telemetry.strace.MAX_LINES: the reader keeps no more
STRING_BYTES = 256  # strace -s 256
MAX_ARGV = 32
T = common_pb2.MessageType
AT_FDCWD = -100


def _s(value: str | bytes, limit: int = STRING_BYTES) -> str:
    raw = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else bytes(value)
    cut = raw[:limit]
    return '"' + "".join(f"\\x{b:02x}" for b in cut) + '"' + ("..." if len(raw) > limit else "")


UNKNOWN_STRING = '""...'  # memory a raw point does not read: a string cut before its start


def _errname(n: int) -> str:
    return _errno.errorcode.get(n, "EUNKNOWN") if 0 < n < 4096 else "EUNKNOWN"


def _result(exit_: Any, has_exit: bool) -> str:
    if not has_exit:
        return "?"
    if exit_.errorno:
        return f"-1 {_errname(int(exit_.errorno))}"
    return str(int(exit_.result))


def _flags(value: int, names: Iterable[tuple[int, str]], base: str = "") -> str:
    out = [base] if base else []
    rest = value
    for bit, name in names:
        if bit and value & bit == bit:
            out.append(name)
            rest &= ~bit
    if rest:
        out.append(hex(rest))
    return "|".join(out) or "0"


_O_FLAGS = (
    (0o100, "O_CREAT"), (0o200, "O_EXCL"), (0o400, "O_NOCTTY"), (0o1000, "O_TRUNC"),
    (0o2000, "O_APPEND"), (0o4000, "O_NONBLOCK"), (0o10000, "O_DSYNC"),
    (0o20000000, "O_TMPFILE"), (0o200000, "O_DIRECTORY"), (0o400000, "O_NOFOLLOW"),
    (0o1000000, "O_NOATIME"), (0o2000000, "O_CLOEXEC"), (0o10000000, "O_PATH"),
    (0o40000, "O_DIRECT"), (0o4010000, "O_SYNC"),
)  # fmt: skip
_ACCESS = ("O_RDONLY", "O_WRONLY", "O_RDWR", "O_ACCMODE")


def open_flags(value: int) -> str:
    value &= 0xFFFFFFFF
    return _flags(value & ~3, _O_FLAGS, _ACCESS[value & 3])


_CLONE = (
    (0x100, "CLONE_VM"), (0x200, "CLONE_FS"), (0x400, "CLONE_FILES"), (0x800, "CLONE_SIGHAND"),
    (0x1000, "CLONE_PIDFD"), (0x2000, "CLONE_PTRACE"), (0x4000, "CLONE_VFORK"),
    (0x8000, "CLONE_PARENT"), (0x10000, "CLONE_THREAD"), (0x20000, "CLONE_NEWNS"),
    (0x40000, "CLONE_SYSVSEM"), (0x80000, "CLONE_SETTLS"), (0x100000, "CLONE_PARENT_SETTID"),
    (0x200000, "CLONE_CHILD_CLEARTID"), (0x800000, "CLONE_UNTRACED"),
    (0x1000000, "CLONE_CHILD_SETTID"), (0x2000000, "CLONE_NEWCGROUP"),
    (0x4000000, "CLONE_NEWUTS"), (0x8000000, "CLONE_NEWIPC"), (0x10000000, "CLONE_NEWUSER"),
    (0x20000000, "CLONE_NEWPID"), (0x40000000, "CLONE_NEWNET"), (0x80000000, "CLONE_IO"),
)  # fmt: skip


def _signame(n: int) -> str:
    try:
        return _signal.Signals(n).name
    except ValueError:
        return str(n)


def clone_flags(value: int) -> str:
    value &= 0xFFFFFFFFFFFFFFFF
    sig = value & 0xFF
    text = _flags(value & ~0xFF, _CLONE)
    return text if not sig else (f"{text}|{_signame(sig)}" if text != "0" else _signame(sig))


_FAMILY = {1: "AF_UNIX", 2: "AF_INET", 10: "AF_INET6", 16: "AF_NETLINK", 17: "AF_PACKET"}
_SOCK_TYPE = {1: "SOCK_STREAM", 2: "SOCK_DGRAM", 3: "SOCK_RAW", 5: "SOCK_SEQPACKET"}


def family(n: int) -> str:
    return _FAMILY.get(n, str(n))


_SOCK_FLAGS = ((0o4000, "SOCK_NONBLOCK"), (0o2000000, "SOCK_CLOEXEC"))


def sock_type(n: int) -> str:
    base = _SOCK_TYPE.get(n & 0xF, str(n & 0xF))
    return _flags(n & ~0xF & 0xFFFFFFFF, _SOCK_FLAGS, base)


def sockaddr(raw: bytes) -> str:
    """A sockaddr's bytes as strace prints it (the fields network.parse_sockaddr reads)."""
    if len(raw) < 2:
        return "NULL" if not raw else "{sa_family=?}"
    fam = struct.unpack_from("<H", raw)[0]
    if fam == 1:
        path, nul = raw[2:], b"\0"
        if path[:1] == nul:
            return f"{{sa_family=AF_UNIX, sun_path=@{_s(path[1:].rstrip(nul), 108)}}}"
        return f"{{sa_family=AF_UNIX, sun_path={_s(path.split(nul, 1)[0], 108)}}}"
    if fam == 2 and len(raw) >= 8:
        port = struct.unpack_from(">H", raw, 2)[0]
        addr = str(ipaddress.IPv4Address(raw[4:8]))
        return f"{{sa_family=AF_INET, sin_port=htons({port}), sin_addr=inet_addr({_s(addr)})}}"
    if fam == 10 and len(raw) >= 24:
        port = struct.unpack_from(">H", raw, 2)[0]
        addr = str(ipaddress.IPv6Address(raw[8:24]))
        return (
            f"{{sa_family=AF_INET6, sin6_port=htons({port}), "
            f"inet_pton(AF_INET6, {_s(addr)}, &sin6_addr)}}"
        )
    name = _FAMILY.get(fam)
    return f"{{sa_family={name}}}" if name else f"{{sa_family={fam:#x} /* AF_??? */}}"


def _fd(n: int) -> str:
    n = _i32(n)
    return "AT_FDCWD" if n == AT_FDCWD else str(n)


def _i32(n: int) -> int:
    n &= 0xFFFFFFFF
    return n - (1 << 32) if n & 0x80000000 else n


def _argv(items: Iterable[str]) -> str:
    got = list(items)
    shown = ", ".join(_s(a) for a in got[:MAX_ARGV])
    return f"[{shown}{', ...' if len(got) > MAX_ARGV else ''}]"


# --- raw points: integers only ---------------------------------------------------------------

_RAW_PATHS = {
    "truncate": (0,), "rename": (0, 1), "renameat": (1, 3), "renameat2": (1, 3), "unlink": (0,),
    "unlinkat": (1,), "mkdir": (0,), "mkdirat": (1,), "rmdir": (0,), "link": (0, 1),
    "linkat": (1, 3), "symlink": (0, 1), "symlinkat": (0, 2), "chmod": (0,), "fchmodat": (1,),
    "chown": (0,), "fchownat": (1,), "lchown": (0,), "mknod": (0,), "mknodat": (1,),
    "setxattr": (0, 1), "lsetxattr": (0, 1), "fsetxattr": (1,), "removexattr": (0, 1),
    "lremovexattr": (0, 1), "fremovexattr": (1,), "utime": (0,), "utimes": (0,),
    "utimensat": (1,), "futimesat": (1,), "openat2": (1,), "memfd_create": (0,),
    "mount": (0, 1, 2), "umount2": (0,), "pivot_root": (0, 1), "acct": (0,), "swapon": (0,),
    "swapoff": (0,), "sethostname": (0,), "setdomainname": (0,), "add_key": (0, 1),
    "request_key": (0, 1),
}  # fmt: skip
_RAW_DIRFDS = {
    "renameat": (0, 2), "renameat2": (0, 2), "unlinkat": (0,), "mkdirat": (0,),
    "linkat": (0, 2), "symlinkat": (1,), "fchmodat": (0,), "fchownat": (0,), "mknodat": (0,),
    "utimensat": (0,), "futimesat": (0,), "openat2": (0,), "open_by_handle_at": (0,),
}  # fmt: skip
_RAW_SIGNALS = {
    "kill": 1, "tkill": 1, "tgkill": 2, "rt_sigqueueinfo": 1, "rt_tgsigqueueinfo": 2,
    "pidfd_send_signal": 1,
}  # fmt: skip
# the number of arguments strace prints (the handlers read some by position)
_RAW_ARITY = {"kill": 2, "tkill": 2, "listen": 2, "unlink": 1, "rmdir": 1, "chmod": 2}


def _raw_args(name: str, args: list[int]) -> list[str]:
    paths, dirfds = _RAW_PATHS.get(name, ()), _RAW_DIRFDS.get(name, ())
    sig = _RAW_SIGNALS.get(name)
    out = []
    for i, v in enumerate(args[: _RAW_ARITY.get(name, 6)]):
        if i in paths:
            out.append(UNKNOWN_STRING if v else "NULL")
        elif i in dirfds:
            out.append(_fd(v))
        elif i == sig:
            out.append(_signame(v & 0xFFFFFFFF))
        elif v < 1 << 31 or v >= (1 << 64) - (1 << 31):
            out.append(str(_i32(v) if v >= 1 << 31 else v))
        else:
            out.append(hex(v))
    return out


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
    excused: int = 0  # the worker's own unlink of its socket at teardown (see _raw)

    def count(self, why: str) -> None:
        if len(self.unparsed) < 64 or why in self.unparsed:
            self.unparsed[why] = self.unparsed.get(why, 0) + 1
        else:
            other = "other message(s) not read"
            self.unparsed[other] = self.unparsed.get(other, 0) + 1

    def add(self, ctx: Any, body: str) -> int:
        if len(self.lines) >= MAX_LINES:
            self.skipped += 1
            return -1
        t = max(0, min(int(ctx.time_ns), 10**20))
        tid = max(0, min(int(ctx.thread_id), 10**9))
        if not tid or not t:  # whose, or when, is unknown: it would pass for the worker's
            self.count("message(s) without the thread or time they came from")
            return -1
        self.lines.append((t, len(self.lines), f"{tid} {t // 10**9}.{t % 10**9:09d} {body}"))
        return len(self.lines) - 1


def _call(name: str, args: Iterable[str], result: str) -> str:
    return f"{name}({', '.join(args)}) = {result}"


def _syscall_name(sysno: int, allowed: Iterable[str]) -> str:
    name = points.NAME_OF.get(int(sysno))
    if name is None or name not in allowed:
        raise ValueError(f"syscall {int(sysno)} in a message of another call")
    return name


def _open(log: Log, m: Any) -> None:
    name = _syscall_name(m.sysno, ("open", "openat", "creat"))
    path = _s(m.pathname)
    if name == "openat":
        args = [_fd(m.fd), path, open_flags(m.flags)]
    elif name == "open":
        args = [path, open_flags(m.flags)]
    else:
        args = [path, f"{m.mode & 0o7777:#o}"]
    if m.flags & 0o100 and name != "creat":
        args.append(f"{m.mode & 0o7777:#o}")
    log.add(m.context_data, _call(name, args, _result(m.exit, m.HasField("exit"))))


def _addr_call(log: Log, m: Any) -> None:
    name = _syscall_name(m.sysno, ("connect", "bind"))
    args = [str(_i32(m.fd)), sockaddr(bytes(m.address)), str(len(m.address))]
    log.add(m.context_data, _call(name, args, _result(m.exit, m.HasField("exit"))))


def _accept(log: Log, m: Any) -> None:
    name = _syscall_name(m.sysno, ("accept", "accept4"))
    addr = sockaddr(bytes(m.address)) if m.address else "NULL"
    args = [str(_i32(m.fd)), addr, f"[{len(m.address)}]" if m.address else "NULL"]
    if name == "accept4":
        args.append(_flags(m.flags & 0xFFFFFFFF, _SOCK_FLAGS))
    log.add(m.context_data, _call(name, args, _result(m.exit, m.HasField("exit"))))


def _socket(log: Log, m: Any) -> None:
    _syscall_name(m.sysno, ("socket",))
    args = [family(m.domain), sock_type(m.type), str(m.protocol)]
    log.add(m.context_data, _call("socket", args, _result(m.exit, m.HasField("exit"))))


def _socketpair(log: Log, m: Any) -> None:
    _syscall_name(m.sysno, ("socketpair",))
    ends = f"[{m.socket1}, {m.socket2}]"
    args = [family(m.domain), sock_type(m.type), str(m.protocol), ends]
    log.add(m.context_data, _call("socketpair", args, _result(m.exit, m.HasField("exit"))))


def _execve(log: Log, m: Any) -> None:
    name = _syscall_name(m.sysno, ("execve", "execveat"))
    ctx = m.context_data
    group = int(ctx.thread_group_id)
    if m.HasField("exit"):  # the end of a call whose enter point said what it ran
        at = log.pending_exec.pop(group, -1)
        if at >= 0:
            t, order, text = log.lines[at]
            log.lines[at] = (t, order, text.removesuffix(" = ?") + f" = {_result(m.exit, True)}")
            return
        if group in log.exec_done:  # the program it started is said (its memory is not)
            log.exec_done.discard(group)
            return
    if name == "execve":
        args = [_s(m.pathname), _argv(m.argv), f"0 /* {len(m.envv)} vars */"]
    else:
        flags = _flags(m.flags, ((0x1000, "AT_EMPTY_PATH"), (0x100, "AT_SYMLINK_NOFOLLOW")))
        args = [_fd(m.fd), _s(m.pathname), _argv(m.argv), "0", flags]
    at = log.add(ctx, _call(name, args, _result(m.exit, m.HasField("exit"))))
    if not m.HasField("exit") and at >= 0:
        log.pending_exec[group] = at


def _chdir(log: Log, m: Any) -> None:
    name = _syscall_name(m.sysno, ("chdir", "fchdir"))
    args = [_s(m.pathname)] if name == "chdir" else [str(_i32(m.fd))]
    log.add(m.context_data, _call(name, args, _result(m.exit, m.HasField("exit"))))


def _setid(log: Log, m: Any) -> None:
    name = _syscall_name(m.sysno, ("setuid", "setgid"))
    log.add(m.context_data, _call(name, [str(m.id)], _result(m.exit, m.HasField("exit"))))


def _setresid(log: Log, m: Any) -> None:
    name = _syscall_name(m.sysno, ("setresuid", "setresgid"))
    args = [str(_i32(m.rid)), str(_i32(m.eid)), str(_i32(m.sid))]
    log.add(m.context_data, _call(name, args, _result(m.exit, m.HasField("exit"))))


_FCNTL = {
    0: "F_DUPFD", 1: "F_GETFD", 2: "F_SETFD", 3: "F_GETFL", 4: "F_SETFL", 1030: "F_DUPFD_CLOEXEC"
}  # fmt: skip


def _fcntl(log: Log, m: Any) -> None:
    _syscall_name(m.sysno, ("fcntl",))
    cmd = _FCNTL.get(m.cmd, str(m.cmd))
    arg = ("FD_CLOEXEC" if m.args == 1 else str(m.args)) if cmd == "F_SETFD" else str(m.args)
    args = [str(m.fd), cmd, arg]
    log.add(m.context_data, _call("fcntl", args, _result(m.exit, m.HasField("exit"))))


def _dup(log: Log, m: Any) -> None:
    name = _syscall_name(m.sysno, ("dup", "dup2", "dup3"))
    args = [str(m.old_fd)] + ([str(m.new_fd)] if name != "dup" else [])
    if name == "dup3":
        args.append("O_CLOEXEC" if m.flags & 0o2000000 else "0")
    log.add(m.context_data, _call(name, args, _result(m.exit, m.HasField("exit"))))


def _chroot(log: Log, m: Any) -> None:
    _syscall_name(m.sysno, ("chroot",))
    log.add(m.context_data, _call("chroot", [_s(m.pathname)], _result(m.exit, m.HasField("exit"))))


def _raw(log: Log, m: Any) -> None:
    """A raw point. Enter and exit are both enabled (runsc 20221219 loads a raw exit's context
    by its enter point's configuration): the exit replaces its enter, an enter never ended
    stays, unfinished."""
    name = _syscall_name(m.sysno, points.SYSNO)
    args = [m.arg1, m.arg2, m.arg3, m.arg4, m.arg5, m.arg6]
    ended = m.HasField("exit")
    tid = int(m.context_data.thread_id)
    line = _call(name, _raw_args(name, args), _result(m.exit, ended))
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
    by the worker's process once the host is tearing down is taken for it, and counted; any
    other unlink is the model's, with its path unknown."""
    ctx = m.context_data
    if name != "unlink" or log.excused or not log.teardown_ns or m.exit.errorno:
        return False
    if int(ctx.thread_group_id) != WORKER_GROUP or int(ctx.time_ns) < log.teardown_ns:
        return False
    log.excused += 1
    return True


def _clone(log: Log, m: Any) -> None:
    """A new task (clone, clone3, fork, vfork), said by its parent."""
    args = ["child_stack=NULL", f"flags={clone_flags(m.flags)}"]
    log.add(m.context_data, _call("clone", args, str(int(m.created_thread_id))))


def _exec_done(log: Log, m: Any) -> None:
    """A program started: its exec call succeeded (its exit point may never come)."""
    group = int(m.context_data.thread_group_id)
    at = log.pending_exec.pop(group, -1)
    if at >= 0:
        t, order, text = log.lines[at]
        log.lines[at] = (t, order, text.removesuffix(" = ?") + " = 0")
    else:
        args = [_s(m.binary_path), _argv(m.argv), f"0 /* {len(m.env)} vars */"]
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
    name = _signame(sig)
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


def render(log: Log, losses: Losses) -> bytes:
    """The tracer's log: every decoded call in time order, then a line in no strace shape for
    each kind of loss (the reader counts them unread: the verdict cannot be clean)."""
    out = [text for _, _, text in sorted(log.lines) if text]
    problems = dict(log.unparsed)
    if log.skipped:
        problems[f"message(s) past the decoder's cap of {MAX_LINES}"] = log.skipped
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
    out += [f"gvisor: {n} {what}" for what, n in sorted(problems.items())]
    return ("\n".join(out) + "\n").encode() if out else b""
