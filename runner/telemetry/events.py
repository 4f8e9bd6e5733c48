"""Events: what the model did, normalised from the tracer's log and the worker's audit hook.

Every event carries the phase it happened in (startup, load, infer, teardown) and its source:
`tracer` (strace, root, outside the model's reach), `worker` (audit-hook events the worker
reports about itself: the model could forge or hide them), or `host` (Docker and cgroup
accounting, the container's exit state, static checks of the file's bytes).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from runner.telemetry import strace as _strace


class Phase(StrEnum):
    STARTUP = "startup"
    LOAD = "load"
    INFER = "infer"
    TEARDOWN = "teardown"


class Source(StrEnum):
    TRACER = "tracer"
    WORKER = "worker"
    HOST = "host"
    STATIC = "static"  # the host's pre-flight read of the files, before anything ran


DetailValue = str | int | float | bool | list[str] | None


class Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    time: float = Field(description="seconds since the epoch")
    phase: Phase
    source: Source
    kind: str = Field(description="e.g. process.exec, net.connect, file.write, python.exec")
    summary: str = Field(description="one line for a person")
    pid: int | None = None
    result: str = Field(default="", description="ok, an errno name, or refused (by the tracer)")
    count: int = Field(default=1, description="identical events folded into this one")
    detail: dict[str, DetailValue] = Field(default_factory=dict)


@dataclass(frozen=True)
class PhaseClock:
    """Phase boundaries the host recorded (wall-clock seconds)."""

    marks: tuple[tuple[float, Phase], ...]

    def at(self, t: float) -> Phase:
        phase = Phase.STARTUP
        for start, name in self.marks:
            if t >= start:
                phase = name
            else:
                break
        return phase


# --- paths ----------------------------------------------------------------------------------

SCRATCH_PREFIXES = ("/tmp/", "/dev/shm/")
_SENSITIVE = re.compile(
    r"^(/etc/(shadow|gshadow|sudoers)|/proc/(\d+|self|thread-self)/(environ|mem)|/proc/kcore"
    r"|/(var/)?run/(docker|containerd)(\.sock|/)|/var/run/secrets/"
    r"|/root/|.*/\.ssh/|.*/\.aws/(credentials|config)|.*/\.config/gcloud/|.*/\.azure/"
    r"|.*/\.kube/config|.*/\.docker/config\.json|.*/\.netrc$|.*/\.git-credentials$"
    r"|.*/\.pypirc$|.*/\.npmrc$|.*/\.(cache/)?huggingface/token$|/etc/ssl/private/"
    r"|.*/id_(rsa|ecdsa|ed25519|dsa)$)"
)
_PROBE = re.compile(
    r"^(/\.dockerenv|/\.containerenv|/run/\.containerenv|/proc/(1|self|\d+)/(cgroup|mountinfo"
    r"|mounts|sched|status)|/proc/(mounts|self/mounts)|/sys/class/dmi/id/.*|/sys/hypervisor/.*"
    r"|/proc/scsi/.*|/proc/1/environ)$"
)
# Reads the libraries do on their own (baseline): never a finding.
_BASELINE_READS = re.compile(r"^/proc/self/status$")


def is_sensitive(path: str) -> bool:
    return bool(_SENSITIVE.match(path))


def is_probe(path: str) -> bool:
    return bool(_PROBE.match(path))


# --- normalising the tracer's log -------------------------------------------------------------

_WRITE_FLAGS = ("O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC", "O_APPEND")
_FILE_MODIFY = {
    "truncate": (0,),
    "rename": (0, 1),
    "renameat": (1, 3),
    "renameat2": (1, 3),
    "unlink": (0,),
    "unlinkat": (1,),
    "mkdir": (0,),
    "mkdirat": (1,),
    "rmdir": (0,),
    "link": (0, 1),
    "linkat": (1, 3),
    "symlink": (0, 1),
    "symlinkat": (0, 2),
    "chmod": (0,),
    "fchmodat": (1,),
    "chown": (0,),
    "fchownat": (1,),
    "lchown": (0,),
    "mknod": (0,),
    "mknodat": (1,),
}
_SETID = {
    "setuid",
    "setgid",
    "setreuid",
    "setregid",
    "setresuid",
    "setresgid",
    "setfsuid",
    "setfsgid",
    "setgroups",
    "capset",
}
_SIGNALS = {"kill", "tkill", "tgkill", "pidfd_send_signal"}
_SOCKADDR = re.compile(r"sa_family=(AF_[A-Z0-9]+)")
_PORT = re.compile(r"sin6?_port=htons\((\d+)\)")
_INET_ADDR = re.compile(r'inet_addr\(("[^"]*")\)|inet_pton\(AF_INET6, ("[^"]*")')
_SUN_PATH = re.compile(r'sun_path=(@?"[^"]*")')
SHELLS = {"sh", "bash", "dash", "zsh", "ash", "ksh", "csh", "tcsh", "fish", "busybox"}


def _str(token: str) -> str:
    return _strace.decode_string(token)


def _array(token: str) -> list[str]:
    token = token.strip()
    if not (token.startswith("[") and token.endswith("]")):
        return [_str(token)]
    return [_str(t) for t in _strace.split_args(token[1:-1])][:32]


def _abs(path: str) -> str:
    return path if path.startswith("/") else "/" + path  # the worker's cwd is /


def _result(call: _strace.Syscall) -> str:
    if call.injected:
        return "refused"
    return call.errno if call.errno else ("?" if call.result == "?" else "ok")


def parse_sockaddr(token: str) -> dict[str, DetailValue]:
    fam = _SOCKADDR.search(token)
    out: dict[str, DetailValue] = {"family": fam.group(1) if fam else "?"}
    port = _PORT.search(token)
    if port:
        out["port"] = int(port.group(1))
    addr = _INET_ADDR.search(token)
    if addr:
        out["address"] = _str(addr.group(1) or addr.group(2))
    path = _SUN_PATH.search(token)
    if path:
        raw = path.group(1)
        out["address"] = ("@" + _str(raw[1:])) if raw.startswith("@") else _str(raw)
    return out


@dataclass
class _Folder:
    """Folds identical events (same kind, summary, phase) into one with a count."""

    events: list[Event]
    index: dict[tuple[str, str, Phase, str], int]
    limit: int
    dropped: int = 0

    def add(self, event: Event) -> None:
        key = (event.kind, event.summary, event.phase, event.result)
        at = self.index.get(key)
        if at is not None:
            self.events[at] = self.events[at].model_copy(
                update={"count": self.events[at].count + event.count}
            )
            return
        if len(self.events) >= self.limit:
            self.dropped += 1
            return
        self.index[key] = len(self.events)
        self.events.append(event)


def new_folder(limit: int = 5000) -> _Folder:
    return _Folder([], {}, limit)


def tracer_events(
    trace: _strace.Trace, clock: PhaseClock, folder: _Folder, worker_socket: str
) -> None:
    """Turn syscalls into events. Startup-phase calls are Airlock's own worker starting up
    (Python, gRPC), before any model byte is read: they are the baseline and are skipped."""
    first = trace.first_pid
    tgid: dict[int, int] = {first: first} if first is not None else {}
    dirs: dict[tuple[int, str], str] = {}  # (tgid, fd) -> directory opened with O_DIRECTORY
    for call in trace.calls:
        own = tgid.setdefault(call.pid, call.pid)
        if call.name in ("clone", "clone3", "fork", "vfork") and call.result.isdigit():
            child = int(call.result)
            flags = " ".join(call.args)
            tgid[child] = own if "CLONE_THREAD" in flags else child
        if call.name in ("openat", "open") and call.result.isdigit():
            idx = 1 if call.name == "openat" else 0
            if len(call.args) > idx + 1 and "O_DIRECTORY" in call.args[idx + 1]:
                dirs[(own, call.result)] = _resolve(call, idx, own, dirs)
        phase = clock.at(call.time)
        if phase is Phase.STARTUP:
            continue
        event = _event_for(call, phase, own, tgid, dirs, worker_socket)
        if event is not None:
            folder.add(event)


def _resolve(call: _strace.Syscall, idx: int, own: int, dirs: dict[tuple[int, str], str]) -> str:
    """The absolute path a call names; relative paths are resolved against their dirfd."""
    path = _str(call.args[idx])
    if path.startswith("/"):
        return path
    dirfd = call.args[idx - 1] if idx > 0 else "AT_FDCWD"
    if dirfd == "AT_FDCWD":
        return _abs(path)
    base = dirs.get((own, dirfd))
    return f"{base.rstrip('/')}/{path}" if base else f"<fd {dirfd}>/{path}"


@dataclass(frozen=True)
class _Call:
    """One syscall with what is known of its process, ready to become an event."""

    call: _strace.Syscall
    phase: Phase
    own: int  # the calling process (thread group)
    tgid: dict[int, int]
    dirs: dict[tuple[int, str], str]
    worker_socket: str

    def ev(self, kind: str, summary: str, **detail: DetailValue) -> Event:
        c = self.call
        return Event(
            time=c.time,
            phase=self.phase,
            source=Source.TRACER,
            kind=kind,
            summary=summary,
            pid=c.pid,
            result=_result(c),
            detail={"syscall": c.name, **detail},
        )


def _event_for(
    call: _strace.Syscall,
    phase: Phase,
    own: int,
    tgid: dict[int, int],
    dirs: dict[tuple[int, str], str],
    worker_socket: str,
) -> Event | None:
    c = _Call(call, phase, own, tgid, dirs, worker_socket)
    name = call.name
    if name in ("execve", "execveat", "clone", "clone3", "fork", "vfork"):
        return _process_event(c)
    if name in ("socket", "connect", "bind", "sendto", "sendmmsg", "listen"):
        return _net_event(c)
    if name in ("open", "openat", "openat2", "creat"):
        return _open_event(c)
    if name in _FILE_MODIFY:
        return _modify_event(c)
    if name in _SETID:
        return c.ev("priv.setid", f"{name}({', '.join(call.args)})")
    if name in _SIGNALS:
        return _signal_event(c)
    if name in _REFUSED_SET:
        return c.ev("priv.escape", f"{name}({', '.join(_str(a) for a in call.args[:3])})")
    return None


def _process_event(c: _Call) -> Event | None:
    name, args = c.call.name, c.call.args
    if name in ("execve", "execveat"):
        idx = 1 if name == "execveat" else 0
        path = _str(args[idx]) if len(args) > idx else "?"
        argv = _array(args[idx + 1]) if len(args) > idx + 1 else []
        summary = f"exec {path} {' '.join(argv[1:])}".strip()[:300]
        return c.ev("process.exec", summary, path=path, argv=argv)
    if "CLONE_THREAD" in " ".join(args):
        return None
    return c.ev("process.fork", f"{name} -> child {c.call.result}", child=c.call.result)


def _net_event(c: _Call) -> Event | None:
    name, args = c.call.name, c.call.args
    if name == "listen":
        return c.ev("net.listen", f"listen(fd {args[0] if args else '?'})")
    if name == "socket":
        family = args[0] if args else "?"
        if family == "AF_UNIX":
            return None
        kind = args[1] if len(args) > 1 else "?"
        return c.ev("net.socket", f"socket({', '.join(args[:2])})", family=family, type=kind)
    token = args[4] if name == "sendto" and len(args) > 4 else (args[1] if len(args) > 1 else "")
    addr = parse_sockaddr(token)
    family = str(addr.get("family"))
    where = f"{addr.get('address', '?')}" + (f":{addr['port']}" if "port" in addr else "")
    if family == "AF_UNIX":
        # the worker's own gRPC socket, and glibc asking nscd (absent here) for passwd,
        # group or hosts entries, are baseline
        if addr.get("address") in (c.worker_socket, "/var/run/nscd/socket"):
            return None
        return c.ev(f"net.{name}", f"{name} unix {where}", **addr)
    if family == "?" and name != "connect":
        return None
    kind = "net.lookup" if addr.get("port") == 53 else f"net.{name}"
    return c.ev(kind, f"{name} {family} {where}", **addr)


def _open_event(c: _Call) -> Event | None:
    name, args = c.call.name, c.call.args
    idx = 1 if name in ("openat", "openat2") else 0
    if len(args) <= idx:
        return None
    path = _resolve(c.call, idx, c.own, c.dirs)
    flags = args[idx + 1] if len(args) > idx + 1 else ""
    if name == "creat" or any(f in flags for f in _WRITE_FLAGS):
        return c.ev("file.write", f"open {path} for writing", path=path, flags=flags)
    if _BASELINE_READS.match(path):
        return None
    if is_sensitive(path):
        return c.ev("file.sensitive_read", f"read {path}", path=path)
    if is_probe(path):
        return c.ev("file.probe", f"read {path}", path=path)
    return None


def _modify_event(c: _Call) -> Event | None:
    name, args = c.call.name, c.call.args
    paths = [
        _resolve(c.call, i, c.own, c.dirs)
        if i > 0 and name.endswith(("at", "at2"))
        else _abs(_str(args[i]))
        for i in _FILE_MODIFY[name]
        if i < len(args)
    ]
    if paths == [c.worker_socket]:
        return None  # the gRPC server removing its own socket
    summary = f"{name} {' -> '.join(paths)}"
    return c.ev("file.modify", summary, path=paths[0] if paths else "", paths=paths)


def _signal_event(c: _Call) -> Event | None:
    name, args = c.call.name, c.call.args
    target = _signal_target(name, args)
    if target is None or c.tgid.get(target, target) == c.own:
        return None
    who = "the tracer (pid 1)" if target == 1 else f"pid {target}"
    sig = args[-1] if args else "?"
    return c.ev("signal.send", f"{name} {sig} to {who}", target=target, signal=sig)


def _signal_target(name: str, args: tuple[str, ...]) -> int | None:
    try:
        if name in ("kill", "tkill") and args:
            return int(args[0])
        if name == "tgkill" and args:
            return int(args[0])
    except ValueError:
        return None
    return None


def _refused() -> frozenset[str]:
    from runner.telemetry.tracer import REFUSED

    return frozenset(REFUSED.split(","))


_REFUSED_SET = _refused()


# --- the worker's own (self-reported) audit events -------------------------------------------


def worker_events(
    raw: Iterable[tuple[float, str, list[str]]], clock: PhaseClock, folder: _Folder
) -> None:
    for t, name, args in raw:
        phase = clock.at(t)
        summary = f"{name}({', '.join(args)[:200]})"
        detail: dict[str, DetailValue] = {"event": name, "args": list(args)}
        if name == "pickle.find_class" and len(args) >= 2:
            detail.update(module=args[0], name=args[1])
        folder.add(
            Event(
                time=t,
                phase=phase,
                source=Source.WORKER,
                kind=f"python.{name}",
                summary=summary,
                detail=detail,
            )
        )


def host_event(t: float, clock: PhaseClock, kind: str, summary: str, **detail: Any) -> Event:
    return Event(
        time=t, phase=clock.at(t), source=Source.HOST, kind=kind, summary=summary, detail=detail
    )
