"""Values as strace prints them (`-xx`: every string hex-escaped, flags by name), for the
lines runner.telemetry.gvisor.decode makes of gVisor's messages; and what a raw point's integer
arguments are (paths and addresses it does not read, descriptors, signals)."""

from __future__ import annotations

import errno as _errno
import ipaddress
import signal as _signal
import struct
from collections.abc import Iterable
from typing import Any

STRING_BYTES = 256  # strace -s 256
MAX_ARGV = 32
AT_FDCWD = -100


def s(value: str | bytes, limit: int = STRING_BYTES) -> str:
    raw = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else bytes(value)
    cut = raw[:limit]
    return '"' + "".join(f"\\x{b:02x}" for b in cut) + '"' + ("..." if len(raw) > limit else "")


UNKNOWN_STRING = '""...'  # memory a raw point does not read: a string cut before its start


def errname(n: int) -> str:
    return _errno.errorcode.get(n, "EUNKNOWN") if 0 < n < 4096 else "EUNKNOWN"


def result(exit_: Any, has_exit: bool) -> str:
    if not has_exit:
        return "?"
    if exit_.errorno:
        return f"-1 {errname(int(exit_.errorno))}"
    return str(int(exit_.result))


def flags(value: int, names: Iterable[tuple[int, str]], base: str = "") -> str:
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
    return flags(value & ~3, _O_FLAGS, _ACCESS[value & 3])


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


def signame(n: int) -> str:
    try:
        return _signal.Signals(n).name
    except ValueError:
        return str(n)


def clone_flags(value: int) -> str:
    value &= 0xFFFFFFFFFFFFFFFF
    sig = value & 0xFF
    text = flags(value & ~0xFF, _CLONE)
    return text if not sig else (f"{text}|{signame(sig)}" if text != "0" else signame(sig))


_FAMILY = {1: "AF_UNIX", 2: "AF_INET", 10: "AF_INET6", 16: "AF_NETLINK", 17: "AF_PACKET"}
_SOCK_TYPE = {1: "SOCK_STREAM", 2: "SOCK_DGRAM", 3: "SOCK_RAW", 5: "SOCK_SEQPACKET"}


def family(n: int) -> str:
    return _FAMILY.get(n, str(n))


SOCK_FLAGS = ((0o4000, "SOCK_NONBLOCK"), (0o2000000, "SOCK_CLOEXEC"))


def sock_type(n: int) -> str:
    base = _SOCK_TYPE.get(n & 0xF, str(n & 0xF))
    return flags(n & ~0xF & 0xFFFFFFFF, SOCK_FLAGS, base)


def sockaddr(raw: bytes) -> str:
    """A sockaddr's bytes as strace prints it (the fields network.parse_sockaddr reads)."""
    if len(raw) < 2:
        return "NULL" if not raw else "{sa_family=?}"
    fam = struct.unpack_from("<H", raw)[0]
    if fam == 1:
        path, nul = raw[2:], b"\0"
        if path[:1] == nul:
            return f"{{sa_family=AF_UNIX, sun_path=@{s(path[1:].rstrip(nul), 108)}}}"
        return f"{{sa_family=AF_UNIX, sun_path={s(path.split(nul, 1)[0], 108)}}}"
    if fam == 2 and len(raw) >= 8:
        port = struct.unpack_from(">H", raw, 2)[0]
        addr = str(ipaddress.IPv4Address(raw[4:8]))
        return f"{{sa_family=AF_INET, sin_port=htons({port}), sin_addr=inet_addr({s(addr)})}}"
    if fam == 10 and len(raw) >= 24:
        port = struct.unpack_from(">H", raw, 2)[0]
        addr = str(ipaddress.IPv6Address(raw[8:24]))
        return (
            f"{{sa_family=AF_INET6, sin6_port=htons({port}), "
            f"inet_pton(AF_INET6, {s(addr)}, &sin6_addr)}}"
        )
    name = _FAMILY.get(fam)
    return f"{{sa_family={name}}}" if name else f"{{sa_family={fam:#x} /* AF_??? */}}"


def fd(n: int) -> str:
    n = i32(n)
    return "AT_FDCWD" if n == AT_FDCWD else str(n)


def i32(n: int) -> int:
    n &= 0xFFFFFFFF
    return n - (1 << 32) if n & 0x80000000 else n


def argv(items: Iterable[str]) -> str:
    got = list(items)
    shown = ", ".join(s(a) for a in got[:MAX_ARGV])
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


# openat2's flags live in its struct open_how, which a raw point does not read: the call is
# judged as the worst it could be, an open for writing (runner.telemetry.files.open_event)
UNREAD_OPEN_HOW = "{flags=O_RDWR|O_CREAT|O_TRUNC /* not read: a raw point */, mode=0, resolve=0}"


def raw_args(name: str, args: list[int]) -> list[str]:
    paths, dirfds = _RAW_PATHS.get(name, ()), _RAW_DIRFDS.get(name, ())
    sig = _RAW_SIGNALS.get(name)
    out = []
    for i, v in enumerate(args[: _RAW_ARITY.get(name, 6)]):
        if name == "openat2" and i == 2:
            out.append(UNREAD_OPEN_HOW if v else "NULL")
        elif i in paths:
            out.append(UNKNOWN_STRING if v else "NULL")
        elif i in dirfds:
            out.append(fd(v))
        elif i == sig:
            out.append(signame(v & 0xFFFFFFFF))
        elif v < 1 << 31 or v >= (1 << 64) - (1 << 31):
            out.append(str(i32(v) if v >= 1 << 31 else v))
        else:
            out.append(hex(v))
    return out
