"""What the tracer's log says about each process: its thread group, its descriptors, its working
directory, and the symlinks the model made. The syscall events (runner.telemetry.syscalls) read
it to resolve paths (runner.telemetry.paths) and to tell the worker's own sockets from the
model's, and update it as calls succeed.

Kernel semantics, as far as the log shows them: a fork copies the descriptor table and the
working directory; clone shares them with CLONE_FILES and CLONE_FS (threads); exec closes the
descriptors opened close-on-exec. Descriptors come from open/openat/openat2/creat, socket,
socketpair, accept/accept4, dup/dup2/dup3, fcntl(F_DUPFD*), memfd_create and pidfd_open, all
traced. `close` is not traced (it is on every file's path): an entry stays until its number is
reused by one of those calls. The only untraced way to get a new descriptor that is a directory
or a socket is to receive one (recvmsg with SCM_RIGHTS), which needs a traced sendmsg with
SCM_RIGHTS first, itself a finding.

Everything is bounded: past MAX_PROCESSES processes, MAX_FDS descriptors in one table, MAX_LINKS
links or MAX_MOVE_WORK entries rewritten by renames, the state stops growing and says so in
`problems` (the analysis turns that into a finding, so a run that outgrew the tracker is never
clean). A process the log never showed being created starts with nothing known: no working
directory, no descriptors.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from runner.telemetry import paths

MAX_PROCESSES = 20_000
MAX_FDS = 4096
MAX_LINKS = 10_000
MAX_MOVE_WORK = 2_000_000


@dataclass
class Fd:
    """One open descriptor, as far as the log shows it."""

    kind: str  # file, socket, memfd, pidfd
    path: str = ""  # file: its normalised path; memfd: /memfd:NAME
    known: bool = True  # the path is resolved
    family: str = ""  # socket: AF_INET, AF_UNIX, ...
    local: str = ""  # socket: the address it is bound to
    peer: dict[str, str | int] = field(default_factory=dict)  # socket: where connect sent it
    own: bool = False  # socket: Airlock's worker's own (bound in startup, or accepted from one)
    pair: bool = False  # socket: one end of a socketpair
    target: int | None = None  # pidfd: the process it names
    cloexec: bool = False


@dataclass
class _Table:
    fds: dict[int, Fd] = field(default_factory=dict)
    sockets: dict[int, Fd] = field(default_factory=dict)  # the last socket each number named


@dataclass
class _Fs:
    cwd: str | None = "/"


class State:
    """The processes of one trace. Satisfies paths.Context."""

    def __init__(self, first: int | None, own_socket: str) -> None:
        self.own_dir = own_socket.rsplit("/", 1)[0] or "/"
        self.own_paths = {own_socket}  # the worker's sockets: bound under own_dir in startup
        self.groups: dict[int, int] = {}
        self.tables: dict[int, _Table] = {}
        self.fs: dict[int, _Fs] = {}
        self.parents: dict[int, int] = {}
        self.links: dict[str, str] = {}
        self.link_names: set[str] = set()  # every name a link has had (a superset: a filter)
        self.problems: dict[str, int] = {}
        self.move_work = 0
        if first is not None:
            self._add(first, first, _Table(), _Fs("/"))

    # --- paths.Context ------------------------------------------------------------------------

    def cwd_of(self, pid: int) -> str | None:
        fs = self.fs.get(pid)
        return fs.cwd if fs is not None else None

    def fd_path(self, pid: int, fd: int) -> str | None:
        entry = self.fd(pid, fd)
        if entry is None or entry.kind not in ("file", "memfd") or not entry.known:
            return None
        return entry.path

    def group_of(self, pid: int) -> int | None:
        return self.groups.get(pid)

    def link(self, path: str) -> str | None:
        return self.links.get(path)

    def is_link_name(self, name: str) -> bool:
        return name in self.link_names

    # --- processes ----------------------------------------------------------------------------

    def group(self, pid: int) -> int:
        """The thread group (process) of `pid`, meeting it if it is new."""
        if pid not in self.groups:
            self._add(pid, pid, _Table(), _Fs(None))
        return self.groups.get(pid, pid)

    def _add(self, pid: int, group: int, table: _Table, fs: _Fs) -> None:
        if len(self.groups) >= MAX_PROCESSES:
            self._problem("processes beyond the tracker's cap, followed with nothing known")
            return
        self.groups[pid] = group
        self.tables[pid] = table
        self.fs[pid] = fs

    def clone(self, parent: int, child: int, flags: str) -> None:
        self.group(parent)
        thread = "CLONE_THREAD" in flags
        table = self.tables.get(parent, _Table())
        fs = self.fs.get(parent, _Fs(None))
        if "CLONE_FILES" not in flags:
            table = self._copy_table(table)
        if "CLONE_FS" not in flags:
            fs = _Fs(fs.cwd)
        self.groups.pop(child, None)  # a pid reused: the new process replaces the old
        self._add(child, self.groups.get(parent, parent) if thread else child, table, fs)
        self.parents[child] = self.groups.get(parent, parent)

    def _copy_table(self, table: _Table) -> _Table:
        fds = {n: copy.copy(e) for n, e in table.fds.items()}
        return _Table(fds, {n: fds.get(n) or copy.copy(e) for n, e in table.sockets.items()})

    def exec(self, pid: int) -> None:
        """A successful exec: close-on-exec descriptors are gone."""
        table = self.tables.get(pid)
        if table is not None:
            for n in [n for n, e in table.fds.items() if e.cloexec]:
                del table.fds[n]

    def chdir(self, pid: int, cwd: paths.Resolved | None) -> None:
        self.group(pid)
        fs = self.fs.get(pid)
        if fs is not None:
            fs.cwd = cwd.path if cwd is not None and cwd.known else None

    def related(self, pid: int, target: int) -> bool:
        """Whether `target` is the caller's own process or one of its descendants."""
        mine = self.group(pid)
        seen = 0
        at: int | None = self.groups.get(target, target)
        while at is not None and seen < 1000:
            if at == mine:
                return True
            at = self.parents.get(at)
            seen += 1
        return False

    # --- descriptors --------------------------------------------------------------------------

    def fd(self, pid: int, fd: int) -> Fd | None:
        table = self.tables.get(pid)
        return table.fds.get(fd) if table is not None else None

    def set_fd(self, pid: int, fd: int, entry: Fd) -> None:
        self.group(pid)
        table = self.tables.get(pid)
        if table is None:
            return
        if fd not in table.fds and len(table.fds) >= MAX_FDS:
            self._problem("descriptors beyond the tracker's cap for one process")
            return
        table.fds[fd] = entry
        if entry.kind == "socket":
            table.sockets[fd] = entry

    def socket_at(self, pid: int, fd: int) -> Fd | None:
        """The socket descriptor `fd` names, for a call that succeeded on it as a socket.

        Calls are read in start order; a blocking accept starts long before it returns its
        descriptor, and files opened meanwhile may have had that number (and closed it, which
        is not traced): a socket call that succeeded proves the number is a socket, the last
        one the log gave that number."""
        entry = self.fd(pid, fd)
        if entry is not None and entry.kind == "socket":
            return entry
        table = self.tables.get(pid)
        return table.sockets.get(fd) if table is not None else None

    def forget(self, pid: int, fd: int) -> None:
        table = self.tables.get(pid)
        if table is not None:
            table.fds.pop(fd, None)

    def dup(self, pid: int, old: int, new: int, cloexec: bool) -> None:
        entry = self.fd(pid, old)
        if entry is None:  # a descriptor never seen opened: its copy is just as unknown
            self.forget(pid, new)
            return
        twin = copy.copy(entry)
        twin.cloexec = cloexec
        self.set_fd(pid, new, twin)

    # --- links and renames --------------------------------------------------------------------

    def add_link(self, path: str, target: str) -> None:
        if path not in self.links and len(self.links) >= MAX_LINKS:
            self._problem("symlinks beyond the tracker's cap")
            return
        self.links[path] = target[: paths.MAX_INPUT]
        self.link_names.add(path.rsplit("/", 1)[-1])

    def removed(self, path: str) -> None:
        self.links.pop(path, None)

    def moved(self, old: str, new: str) -> None:
        """A rename: links, descriptors and working directories under `old` are under `new`."""
        self.links.pop(new, None)
        work = len(self.links) + sum(len(t.fds) for t in self.tables.values()) + len(self.fs)
        self.move_work += work
        if self.move_work > MAX_MOVE_WORK:
            self._problem("renames beyond what the tracker follows")
            return
        self.links = {_moved(k, old, new): v for k, v in self.links.items()}
        self.link_names.update(k.rsplit("/", 1)[-1] for k in self.links)
        for table in {id(t): t for t in self.tables.values()}.values():
            for e in table.fds.values():
                if e.kind == "file" and e.known:
                    e.path = _moved(e.path, old, new)
        for fs in self.fs.values():
            if fs.cwd is not None:
                fs.cwd = _moved(fs.cwd, old, new)

    def _problem(self, what: str) -> None:
        self.problems[what] = self.problems.get(what, 0) + 1


def _moved(path: str, old: str, new: str) -> str:
    if path == old:
        return new
    if path.startswith(old.rstrip("/") + "/"):
        return new.rstrip("/") + path[len(old.rstrip("/")) :]
    return path
