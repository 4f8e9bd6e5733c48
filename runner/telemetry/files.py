"""Syscalls on files: opens (for writing, of sensitive files, probes), and every call that changes
a file or what a path means (rename, unlink, link, symlink, chmod, chown, mknod, xattrs, times).

Every path is resolved (runner.telemetry.paths) before it is judged: relative to the working
directory or the directory descriptor, through /proc's links and the symlinks the model made.
"""

from __future__ import annotations

from runner.telemetry import paths
from runner.telemetry.calls import (
    Call,
    is_baseline_read,
    is_probe,
    is_sensitive,
    path_detail,
    text,
)
from runner.telemetry.events import DetailValue, Event, Phase
from runner.telemetry.processes import fd_itself
from runner.telemetry.procstate import Fd

WRITE_FLAGS = ("O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC", "O_APPEND")


def open_event(c: Call) -> Event | None:
    at = c.name in ("openat", "openat2")
    idx = 1 if at else 0
    if len(c.args) <= idx:
        return None
    flags = "O_CREAT|O_WRONLY|O_TRUNC" if c.name == "creat" else c.arg(idx + 1)[:300]
    follow = "O_NOFOLLOW" not in flags and not ("O_CREAT" in flags and "O_EXCL" in flags)
    resolved = c.resolve(idx, 0 if at else None, follow)
    n = c.returned
    if n is not None:
        entry = Fd("file", resolved.path, resolved.known, cloexec="O_CLOEXEC" in flags)
        c.state.set_fd(c.pid, n, entry)
    detail = path_detail(resolved, text(c.arg(idx)))
    path = resolved.path
    if any(f in flags for f in WRITE_FLAGS):
        return c.ev("file.write", f"open {path} for writing", **detail, flags=flags)
    if not resolved.known:
        return c.ev("file.unresolved", f"read {path}", **detail)
    if is_baseline_read(path):
        return None
    reach = _may_reach(text(c.arg(idx)))
    if is_sensitive(path) or is_sensitive(reach):
        return c.ev("file.sensitive_read", f"read {path}{_via(reach, path)}", **detail)
    if is_probe(path) or is_probe(reach):
        return c.ev("file.probe", f"read {path}{_via(reach, path)}", **detail)
    return None


# Where a '..' climbs from depends on links the tracer may not know (kernel links like
# /proc/net -> self/net, directory symlinks in the image): the kernel follows a link before it
# climbs, the spelling does not. What follows the last '..' is where the path ends up in any
# case, so it is also judged against the places it could complete.
_COMPLETIONS = ("/", "/proc/", "/proc/self/", "/etc/", "/run/", "/var/run/")


def _may_reach(raw: str) -> str:
    """A sensitive or probing path the spelling can reach through a '..', or ''."""
    parts = raw.split("/")
    if ".." not in parts:
        return ""
    tail = "/".join(p for p in parts[len(parts) - parts[::-1].index("..") :] if p not in ("", "."))
    for prefix in _COMPLETIONS:
        candidate = prefix + tail
        if tail and (is_sensitive(candidate) or is_probe(candidate)):
            return candidate
    return ""


def _via(reach: str, path: str) -> str:
    return f" (through '..' it can be {reach})" if reach and reach != path else ""


# (path argument, its directory descriptor argument or None, whether its last component is
# followed when it is a link)
_MODIFY: dict[str, tuple[tuple[int, int | None, bool], ...]] = {
    "truncate": ((0, None, True),),
    "rename": ((0, None, False), (1, None, False)),
    "renameat": ((1, 0, False), (3, 2, False)),
    "renameat2": ((1, 0, False), (3, 2, False)),
    "unlink": ((0, None, False),),
    "unlinkat": ((1, 0, False),),
    "mkdir": ((0, None, False),),
    "mkdirat": ((1, 0, False),),
    "rmdir": ((0, None, False),),
    "link": ((0, None, False), (1, None, False)),
    "linkat": ((1, 0, False), (3, 2, False)),
    "symlink": ((1, None, False),),
    "symlinkat": ((2, 1, False),),
    "chmod": ((0, None, True),),
    "fchmodat": ((1, 0, True),),
    "chown": ((0, None, True),),
    "lchown": ((0, None, False),),
    "fchownat": ((1, 0, True),),
    "mknod": ((0, None, False),),
    "mknodat": ((1, 0, False),),
    "setxattr": ((0, None, True),),
    "lsetxattr": ((0, None, False),),
    "removexattr": ((0, None, True),),
    "lremovexattr": ((0, None, False),),
    "utime": ((0, None, True),),
    "utimes": ((0, None, True),),
    "utimensat": ((1, 0, True),),
    "futimesat": ((1, 0, True),),
}
_MODIFY_FD = ("fchmod", "fchown", "fsetxattr", "fremovexattr")
MODIFY = (*_MODIFY, *_MODIFY_FD)


def _paths(c: Call) -> list[tuple[paths.Resolved, str]]:
    """Each path the call changes, resolved, with how it was spelled."""
    if c.name in _MODIFY_FD:
        return [(fd_itself(c, 0), f"fd {c.arg(0)[:12]}")]
    flags = " ".join(c.args[2:])
    out = []
    for i, dirfd, follow in _MODIFY[c.name]:
        if i >= len(c.args):
            continue
        raw = text(c.arg(i))
        empty = c.arg(i) == "NULL" or (raw == "" and "AT_EMPTY_PATH" in flags)
        if empty and dirfd is not None:  # the call is on the descriptor itself
            out.append((fd_itself(c, dirfd), f"fd {c.arg(dirfd)[:12]}"))
            continue
        if c.name == "linkat" and i == 1 and "AT_SYMLINK_FOLLOW" in flags:
            follow = True
        follow = follow and "AT_SYMLINK_NOFOLLOW" not in flags
        out.append((c.resolve(i, dirfd, follow), raw))
    return out


def _target(c: Call, link: paths.Resolved) -> tuple[paths.Resolved, str]:
    """What a new symlink points at, resolved from the directory it is made in."""
    raw = text(c.arg(0))
    parent = (link.path.rsplit("/", 1)[0] or "/") if link.known else None
    return paths.normalise(raw, c.pid, c.state, parent, "link's directory"), raw


def modify_event(c: Call) -> Event | None:
    found = _paths(c)
    if not found:
        return None
    if c.name in ("symlink", "symlinkat"):
        target, raw_target = _target(c, found[0][0])
        if c.ok and found[0][0].known:
            c.state.add_link(found[0][0].path, raw_target)
        found.append((target, raw_target))
    elif c.ok:
        _changed(c, [r for r, _ in found])
    names = [r.path for r, _ in found]
    if c.phase is Phase.TEARDOWN and names == [c.worker_socket] and c.name.startswith("unlink"):
        return None  # the gRPC server removing its own socket as it stops
    detail: dict[str, DetailValue] = {"path": names[0], "paths": names}
    raws = [raw for _, raw in found]
    if raws != names:
        detail["raw"] = raws
    if not all(r.known for r, _ in found):
        detail["resolved"] = False
    return c.ev("file.modify", f"{c.name} {' -> '.join(names)}", **detail)


def _changed(c: Call, found: list[paths.Resolved]) -> None:
    """What a successful change means for later paths: links gone, moved, copied."""
    if not all(r.known for r in found):
        return
    state = c.state
    if c.name in ("unlink", "unlinkat", "rmdir"):
        state.removed(found[0].path)
    elif c.name.startswith("rename") and len(found) == 2:
        old, new = found[0].path, found[1].path
        if "RENAME_EXCHANGE" in " ".join(c.args[4:]):
            swap = "/\0swap"
            state.moved(old, swap)
            state.moved(new, old)
            state.moved(swap, new)
        else:
            state.moved(old, new)
    elif c.name in ("link", "linkat") and len(found) == 2:
        target = state.link(found[0].path)
        if target is not None:
            state.add_link(found[1].path, target)
