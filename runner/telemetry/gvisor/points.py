"""Which of gVisor's trace points Airlock enables, and the pod-init configuration naming them.

gVisor has a schema (a message with decoded arguments: paths, addresses, argv) for some
syscalls; every other syscall has only a raw point (`syscall/sysno/N`: the number and six
integer arguments, no memory read). Every syscall of runner.telemetry.tracer.FAMILIES is
enabled, by its schema when it has one, raw otherwise, except:
- the `speed` family (strace's own start-up cost; nothing to see),
- clone, clone3, fork, vfork: `sentry/clone` says every new task, with its flags, whichever
  call made it (clone3's flags live in memory a raw point does not read).
`sentry/execve` confirms a program started, `sentry/task_exit` gives each exit's status.
Exit points only (the call with its result), except execve and execveat (their arguments are
gone from memory once the new program runs) and the raw points (runsc 20221219 reads a raw
exit's context fields from its enter point's configuration): their enter points are read too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runner.telemetry import tracer

# x86_64 numbers (asm/unistd_64.h) of every traced syscall
SYSNO: dict[str, int] = {
    "set_robust_list": 273, "rseq": 334, "execve": 59, "execveat": 322, "fork": 57,
    "vfork": 58, "clone": 56, "clone3": 435, "dup": 32, "dup2": 33, "dup3": 292, "fcntl": 72,
    "accept": 43, "accept4": 288, "socketpair": 53, "chdir": 80, "fchdir": 81,
    "memfd_create": 319, "socket": 41, "connect": 42, "bind": 49, "listen": 50, "sendto": 44,
    "sendmsg": 46, "sendmmsg": 307, "msgsnd": 69, "mq_timedsend": 242, "setuid": 105,
    "setgid": 106, "setreuid": 113, "setregid": 114, "setresuid": 117, "setresgid": 119,
    "setfsuid": 122, "setfsgid": 123, "setgroups": 116, "capset": 126, "kill": 62,
    "tkill": 200, "tgkill": 234, "rt_sigqueueinfo": 129, "rt_tgsigqueueinfo": 297,
    "pidfd_send_signal": 424, "pidfd_open": 434, "open": 2, "openat": 257, "openat2": 437,
    "creat": 85, "truncate": 76, "rename": 82, "renameat": 264, "renameat2": 316,
    "unlink": 87, "unlinkat": 263, "mkdir": 83, "mkdirat": 258, "rmdir": 84, "link": 86,
    "linkat": 265, "symlink": 88, "symlinkat": 266, "chmod": 90, "fchmod": 91,
    "fchmodat": 268, "chown": 92, "fchown": 93, "fchownat": 260, "lchown": 94, "mknod": 133,
    "mknodat": 259, "setxattr": 188, "lsetxattr": 189, "fsetxattr": 190, "removexattr": 197,
    "lremovexattr": 198, "fremovexattr": 199, "utime": 132, "utimes": 235, "utimensat": 280,
    "futimesat": 261, "pidfd_getfd": 438, "process_vm_readv": 310, "process_vm_writev": 311,
    "process_madvise": 440, "io_uring_setup": 425, "io_uring_enter": 426,
    "io_uring_register": 427, "seccomp": 317, "mount": 165, "umount2": 166, "pivot_root": 155,
    "unshare": 272, "setns": 308, "bpf": 321, "keyctl": 250, "add_key": 248,
    "request_key": 249, "init_module": 175, "finit_module": 313, "delete_module": 176,
    "personality": 135, "ptrace": 101, "kcmp": 312, "perf_event_open": 298,
    "userfaultfd": 323, "open_by_handle_at": 304, "kexec_load": 246, "kexec_file_load": 320,
    "acct": 163, "swapon": 167, "swapoff": 168, "reboot": 169, "sethostname": 170,
    "setdomainname": 171, "chroot": 161, "quotactl": 179, "quotactl_fd": 443, "syslog": 103,
    "iopl": 172, "ioperm": 173, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
    "move_mount": 429, "open_tree": 428, "mount_setattr": 442, "settimeofday": 164,
    "clock_settime": 227,
}  # fmt: skip
NAME_OF: dict[int, str] = {n: s for s, n in SYSNO.items()}

# the traced syscalls gVisor (runsc 20221219) has a schema for
SCHEMA = frozenset(
    (
        "accept", "accept4", "bind", "chdir", "chroot", "connect", "creat", "dup", "dup2",
        "dup3", "execve", "execveat", "fchdir", "fcntl", "open", "openat", "setgid",
        "setresgid", "setresuid", "setuid", "socket", "socketpair",
    )
)  # fmt: skip
# newer than runsc 20221219, which has no point for them (nor the calls: ENOSYS)
UNKNOWN_TO_RUNSC = frozenset({"mount_setattr", "quotactl_fd"})
BY_SENTRY_CLONE = frozenset({"clone", "clone3", "fork", "vfork"})
WITH_ENTER = frozenset({"execve", "execveat"})
# No string context field: runsc marshals each point with protobuf, which refuses a string that
# is not UTF-8, and then drops the point without counting it. A thread that named itself with
# such bytes (prctl PR_SET_NAME) would have hidden every call it made, had process_name been
# asked for (container_id is runsc's own).
CONTEXT = ["container_id", "thread_id", "group_id", "time", "credentials"]
# The schema points that carry the model's strings (a path, argv): a path or argument that is
# not UTF-8 makes runsc drop the point the same way. Their raw points are enabled too, without
# context (nothing to marshal but integers), and counted against them (decode.Log.checked):
# a call whose schema point never came is a loss, and the run is not clean.
COUNTED = {
    "open": "exit", "openat": "exit", "creat": "exit", "chdir": "exit", "chroot": "exit",
    "execve": "enter", "execveat": "enter",
}  # fmt: skip
SENTRY = ("sentry/execve", "sentry/clone", "sentry/task_exit")
# runsc drops a point when the socket is full; it retries first (25 us, doubling to 10 ms: up
# to about 10 s per point before a drop), so a slow reader slows the model, not the evidence
SINK_RETRIES = 1000


def traced() -> list[str]:
    """The syscalls enabled as points, in FAMILIES order."""
    return [
        s
        for f in tracer.FAMILIES
        if f.name != "speed"
        for s in f.syscalls
        if s not in BY_SENTRY_CLONE and s not in UNKNOWN_TO_RUNSC
    ]


def point_names() -> list[str]:
    out: list[str] = []
    for s in traced():
        base = f"syscall/{s}" if s in SCHEMA else f"syscall/sysno/{SYSNO[s]}"
        if s in WITH_ENTER or s not in SCHEMA:
            out.append(f"{base}/enter")
        out.append(f"{base}/exit")
    return [*out, *SENTRY]


def counted_names() -> list[str]:
    """The raw points counted against COUNTED's schema points (enabled with no context)."""
    return [f"syscall/sysno/{SYSNO[s]}/{when}" for s, when in COUNTED.items() if s in traced()]


def pod_init_config(endpoint: Path) -> dict[str, Any]:
    """runsc's --pod-init-config: the points, their context, the remote sink at `endpoint`."""
    points = [{"name": n, "context_fields": CONTEXT} for n in point_names()]
    points += [{"name": n, "context_fields": []} for n in counted_names()]
    sink = {
        "name": "remote",
        "config": {
            "endpoint": str(endpoint),
            "retries": SINK_RETRIES,
            "backoff": "25us",
            "backoff_max": "10ms",
        },
    }
    return {"trace_session": {"name": "Default", "points": points, "sinks": [sink]}}


def write_config(path: Path, endpoint: Path) -> Path:
    path.write_text(json.dumps(pod_init_config(endpoint), indent=1))
    path.chmod(0o644)  # runsc (root) reads it; nothing in it is secret
    return path
