"""Paths as the kernel resolves them, before any rule sees them.

A rule judges what a path reaches, not how it is spelled. The kernel walks a path one component at
a time, and so does `normalise`:

- `//`, `/./` and a trailing `/` are nothing; `..` climbs from where the walk has got to, after
  the links it went through (so `/tmp/link/..` is the parent of the link's target, as in the
  kernel, not `/tmp`); at the root `..` stays at the root;
- a relative path starts at a base: the process's working directory (tracked through chdir and
  fchdir, inherited across fork and clone) or the directory a descriptor names (`openat` and the
  other `*at` calls);
- `/proc/self`, `/proc/thread-self`, `/proc/PID` and `/proc/PID/task/TID` of the caller are the
  caller's own `/proc/self` (so `/proc/self/task/7/environ` is `/proc/self/environ`); a thread's
  PID is its process's;
- `/proc/PID/cwd`, `/proc/PID/root` and `/proc/PID/fd/N` are the links the kernel makes of them:
  the working directory, the root (no process in the sandbox can chroot: the tracer refuses it),
  the file descriptor N names; `/dev/fd`, `/dev/stdin`, `/dev/stdout`, `/dev/stderr`, `/var/run`
  and `/var/lock` are the image's own links;
- symlinks the model made (the tracer sees every symlink and symlinkat) are followed like the
  kernel follows them, at most MAX_HOPS of them; the last component is not followed when the call
  does not follow it (unlink, rename, lstat-like calls, O_NOFOLLOW).

What cannot be resolved is said so: `Resolved.known` is False when the walk rested on something
the tracer did not see (a descriptor it never saw opened, an unknown working directory, a path
cut short, too many links). Rules judge such a path by the worst it could be. An unresolved
relative path is written `<BASE>/rest`, never absolute, so no prefix test takes it for a path in
scratch. `normalise` never raises, bounds its work by MAX_INPUT and MAX_HOPS, and never returns a
path with a `..`, `.` or empty component.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

MAX_INPUT = 8192  # characters of a path read (PATH_MAX is 4096; strace prints paths in full)
MAX_HOPS = 40  # links followed in one walk, as the kernel's MAXSYMLINKS
# characters of prefixes built to look links up, per walk: a path of thousands of components
# all named like a link would cost the host quadratic time; past this the path is unknown
MAX_LOOKUP_CHARS = 1 << 16

# Links every container of the image has (the image is Debian's; the kernel makes /proc's).
STATIC_LINKS = {
    "/dev/fd": "/proc/self/fd",
    "/dev/stdin": "/proc/self/fd/0",
    "/dev/stdout": "/proc/self/fd/1",
    "/dev/stderr": "/proc/self/fd/2",
    "/var/run": "/run",
    "/var/lock": "/run/lock",
}
_STATIC_NAMES = frozenset(p.rsplit("/", 1)[1] for p in STATIC_LINKS)


class Context(Protocol):
    """What the tracer knows of the processes: the answers are normalised paths or None."""

    def cwd_of(self, pid: int) -> str | None: ...

    def fd_path(self, pid: int, fd: int) -> str | None: ...

    def group_of(self, pid: int) -> int | None: ...

    def link(self, path: str) -> str | None: ...

    def is_link_name(self, name: str) -> bool:
        """Whether some known link is named `name` (a cheap test before `link`)."""
        ...


class NoContext:
    """Nothing known of any process: only the lexical rules and the static links apply."""

    def cwd_of(self, pid: int) -> str | None:
        return None

    def fd_path(self, pid: int, fd: int) -> str | None:
        return None

    def group_of(self, pid: int) -> int | None:
        return None

    def link(self, path: str) -> str | None:
        return None

    def is_link_name(self, name: str) -> bool:
        return False


@dataclass(frozen=True)
class Resolved:
    path: str
    known: bool = True  # False: the path rests on something the tracer did not see


def unresolved(label: str, rest: str) -> Resolved:
    """A path relative to a base nobody knows: `<label>/rest`, its `..` kept inside it."""
    parts: list[str] = []
    for part in rest[:MAX_INPUT].split("/"):
        if part == "..":
            if parts:
                parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    tag = "<" + label.replace("/", "_").replace(">", "_")[:64] + ">"
    return Resolved("/".join([tag, *parts]), known=False)


def normalise(
    path: str,
    pid: int = 0,
    ctx: Context | None = None,
    base: str | None = "/",
    base_label: str = "cwd",
    follow: bool = True,
) -> Resolved:
    """The path as the kernel would reach it from process `pid` (see the module's docstring).

    `base` is where a relative path starts (already normalised; None: unknown, and the result is
    `<base_label>/...`). With `follow` False the last component is not followed if it is a link."""
    try:
        return _Walk(pid, ctx or NoContext(), follow).run(path, base, base_label)
    except Exception:  # a context that misbehaves: the path is unknown, never an exception
        return unresolved("unreadable", "")


def is_under(path: str, root: str) -> bool:
    """`path` is `root` or inside it (both normalised)."""
    return path == root or path.startswith(root.rstrip("/") + "/")


class _Walk:
    def __init__(self, pid: int, ctx: Context, follow: bool) -> None:
        self.pid = pid
        self.ctx = ctx
        self.follow = follow
        self.known = True
        self.hops = 0
        self.budget = MAX_LOOKUP_CHARS
        self.group = ctx.group_of(pid) or pid

    def run(self, path: str, base: str | None, base_label: str) -> Resolved:
        if not isinstance(path, str):
            return unresolved("unreadable", "")
        if len(path) > MAX_INPUT:
            path, self.known = path[:MAX_INPUT], False
        if path.startswith("/"):
            stack: list[str] = []
        elif base is None:
            return unresolved(base_label, path)
        else:
            stack = [p for p in base.split("/") if p not in ("", ".", "..")]
        pending = list(reversed(path.split("/")))
        while pending:
            part = pending.pop()
            if part in ("", "."):
                continue
            if part == "..":
                if stack:
                    stack.pop()
                continue
            stack.append(part)
            self._canonical(stack)
            jump = self._jump(stack)
            if jump is None or (not self.follow and not _more(pending)):
                continue
            self.hops += 1
            if self.hops > MAX_HOPS:
                self.known = False
                break
            if jump.startswith("/"):
                stack.clear()
            else:
                stack.pop()
            pending.extend(reversed(jump[:MAX_INPUT].split("/")))
        return Resolved("/" + "/".join(stack), self.known)

    def _canonical(self, stack: list[str]) -> None:
        """The caller's /proc entries as /proc/self; a thread's task directory as its process."""
        if stack[0] != "proc":
            return
        if len(stack) == 2:
            stack[1] = self._proc_name(stack[1])
        elif len(stack) == 4 and stack[2] == "task" and _pid(stack[3]) is not None:
            del stack[2:]

    def _proc_name(self, name: str) -> str:
        if name in ("self", "thread-self"):
            return "self"
        pid = _pid(name)
        if pid is None:
            return name
        group = self.ctx.group_of(pid)
        if pid == self.group or (group is not None and group == self.group):
            return "self"
        return str(group) if group is not None else name

    def _jump(self, stack: list[str]) -> str | None:
        """Where the walk goes on from the component just added, if it is a link."""
        if stack[0] == "proc" and len(stack) in (3, 4):
            return self._proc_link(stack)
        name = stack[-1]
        if name not in _STATIC_NAMES and not self.ctx.is_link_name(name):
            return None
        if self.budget <= 0:
            self.known = False  # too many lookups to follow: what it reaches is not known
            return None
        here = "/" + "/".join(stack)
        self.budget -= len(here)
        target = STATIC_LINKS.get(here)
        if target is None and len(stack) > 1:
            target = self.ctx.link(here)
        return target

    def _proc_link(self, stack: list[str]) -> str | None:
        owner = self.pid if stack[1] == "self" else _pid(stack[1])
        if owner is None:
            return None
        mine = stack[1] == "self"
        if len(stack) == 3 and stack[2] == "root":
            return "/"
        if len(stack) == 3 and stack[2] == "cwd":
            found = self.ctx.cwd_of(owner)
        elif len(stack) == 4 and stack[2] == "fd" and _pid(stack[3]) is not None:
            found = self.ctx.fd_path(owner, int(stack[3]))
        else:
            return None
        if found is None or not found.startswith("/"):
            self.known = self.known and not mine  # the caller's own link, and we do not know it
            return None
        return found


def _more(pending: list[str]) -> bool:
    """Whether a component other than `` and `.` is still to come."""
    return any(p not in ("", ".") for p in pending)


def _pid(text: str) -> int | None:
    if text.isascii() and text.isdigit() and len(text) <= 10:
        return int(text)
    return None
