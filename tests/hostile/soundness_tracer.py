"""Hostile fixtures for the tracer's former blind spots: sends on every socket, signals and
reaches into another process, io_uring, fileless exec, and paths spelled to look like scratch
(or like nothing) that resolve into Airlock's own directories or outside scratch.

Each is a pickle, built in code at test time: most run a short Python payload (the syscalls
Python lacks are made through ctypes' `syscall()`), one is a bare chain of pickle calls with no
code at all. Harmless outside the sandbox too: the network only to 127.0.0.1, signals are 0 (an
existence check), the reaches into pid 1 read nothing and keep nothing, markers only under
/tmp with a fresh name, every loop and wait bounded.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.fixtures import hostile
from tests.hostile.corpus import Fixture
from tests.hostile.pickles import Asm

LIBC = """
import ctypes, os, socket, time
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def sys_(n, *a):
    return libc.syscall(ctypes.c_long(n), *[ctypes.c_long(x) if isinstance(x, int) else x
                                            for x in a])
"""

SENDMSG_UDP = (
    LIBC
    + """
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.sendmsg([b"exfiltrated", b" bytes"], [], 0, ("127.0.0.1", 9))
s.close()
"""
)

# sendmmsg: two datagrams to two ports of 127.0.0.1 in one call (through libc; Python has none)
SENDMMSG_UDP = (
    LIBC
    + """
class iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]
class sockaddr_in(ctypes.Structure):
    _fields_ = [("family", ctypes.c_ushort), ("port", ctypes.c_ushort),
                ("addr", ctypes.c_uint32), ("zero", ctypes.c_char * 8)]
class msghdr(ctypes.Structure):
    _fields_ = [("name", ctypes.c_void_p), ("namelen", ctypes.c_uint),
                ("iov", ctypes.POINTER(iovec)), ("iovlen", ctypes.c_size_t),
                ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t),
                ("flags", ctypes.c_int)]
class mmsghdr(ctypes.Structure):
    _fields_ = [("hdr", msghdr), ("len", ctypes.c_uint)]
data = ctypes.create_string_buffer(b"exfiltrated")
iov = iovec(ctypes.cast(data, ctypes.c_void_p), 11)
lo = int.from_bytes(socket.inet_aton("127.0.0.1"), "little")
addrs = [sockaddr_in(socket.AF_INET, socket.htons(p), lo) for p in (9, 19)]
msgs = (mmsghdr * 2)()
for m, a in zip(msgs, addrs):
    m.hdr.name = ctypes.cast(ctypes.pointer(a), ctypes.c_void_p)
    m.hdr.namelen = 16
    m.hdr.iov = ctypes.pointer(iov)
    m.hdr.iovlen = 1
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
libc.sendmmsg(s.fileno(), msgs, 2, 0)
s.close()
"""
)

# a connected UDP socket: send() carries no address, the destination is the socket's connect
SEND_CONNECTED_UDP = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect(("127.0.0.1", 9))
for _ in range(3):
    try:
        s.send(b"exfiltrated")
    except OSError:
        pass
s.close()
"""

# rt_sigqueueinfo(1, 0, info): signal 0 (an existence check) queued at the tracer
SIGQUEUE_TRACER = (
    LIBC
    + """
info = ctypes.create_string_buffer(128)
info[8:12] = (-1).to_bytes(4, "little", signed=True)  # si_code = SI_QUEUE
sys_(129, 1, 0, info)
sys_(297, 1, 1, 0, info)  # rt_tgsigqueueinfo(1, 1, 0, info)
"""
)

PIDFD_SIGNAL_TRACER = """
import os, signal
try:
    fd = os.pidfd_open(1)
    signal.pidfd_send_signal(fd, 0)
    os.close(fd)
except OSError:
    pass
"""

PIDFD_GETFD_TRACER = (
    LIBC
    + """
try:
    fd = os.pidfd_open(1)
    got = sys_(438, fd, 0, 0)  # pidfd_getfd(fd, 0, 0): the tracer's stdin
    if got >= 0:
        os.close(got)
    os.close(fd)
except OSError:
    pass
"""
)

PROCESS_VM_READV_TRACER = (
    LIBC
    + """
class iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]
buf = ctypes.create_string_buffer(8)
local = iovec(ctypes.cast(buf, ctypes.c_void_p), 8)
remote = iovec(ctypes.c_void_p(0x400000), 8)
sys_(310, 1, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)  # process_vm_readv
"""
)

IO_URING = (
    LIBC
    + """
params = ctypes.create_string_buffer(120)
fd = sys_(425, 8, params)  # io_uring_setup(8, &params)
if fd >= 0:
    os.close(fd)
sys_(427, -1, 0, None, 0)  # io_uring_register on no ring
"""
)

# /bin/sh copied into a memfd, run from it: in a child, by execveat(fd, "", ..., AT_EMPTY_PATH)
# or by execve("/proc/self/fd/N")
MEMFD_EXEC = (
    LIBC
    + """
MARKER = "__MARKER__"
fd = os.memfd_create("__NAME__", 0)
with open("/bin/sh", "rb") as f:
    os.write(fd, f.read(8 << 20))
argv = [b"sh", b"-c", ("echo pwned > " + MARKER).encode(), None]
pid = os.fork()
if pid == 0:
    try:
        if "__HOW__" == "execveat":
            args = (ctypes.c_char_p * 4)(*argv)
            env = (ctypes.c_char_p * 1)(None)
            sys_(322, fd, b"", args, env, 0x1000)  # AT_EMPTY_PATH
        else:
            os.execv("/proc/self/fd/%d" % fd, ["sh", "-c", "echo pwned > " + MARKER])
    finally:
        os._exit(0)
end = time.time() + 10
while time.time() < end and os.waitpid(pid, os.WNOHANG) == (0, 0):
    time.sleep(0.05)
os.close(fd)
"""
)

CHDIR_RELATIVE_WRITE = """
import os
os.chdir("/tmp")
for name in ("../etc/airlock-probe", "../opt/airlock/probe"):
    try:
        open(name, "w").close()
    except OSError:
        pass
os.chdir("/")
"""

DOTTED_RUN_WRITE = """
import os
try:
    with open("/airlock/./run/../run/__NAME__", "w") as f:
        f.write("the model was here")
except OSError:
    pass
"""

DIRFD_RUN_WRITE = """
import os
d = os.open("/airlock", os.O_RDONLY | os.O_DIRECTORY)
d2 = os.dup(d)
try:
    os.close(os.open("run/__NAME__", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=d2))
except OSError:
    pass
os.close(d)
os.close(d2)
"""

TASK_CWD_WRITE = """
import os, threading
os.chdir("/airlock")
tid = threading.get_native_id()
try:
    open("/proc/self/task/%d/cwd/run/__NAME__" % tid, "w").close()
except OSError:
    pass
os.chdir("/")
"""

SYMLINK_RUN_WRITE = """
import os
link = "/tmp/__NAME__"
os.symlink("/airlock/run", link)
try:
    open(link + "/__NAME__", "a").close()
except OSError:
    pass
"""

OWN_SOCKET = """
import socket
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.connect("/airlock/run/worker.sock")
    s.sendall(b"PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n")
except OSError:
    pass
s.close()
"""

PASS_FDS = """
import os, socket
a, b = socket.socketpair()
d = os.open("/airlock/run", os.O_RDONLY | os.O_DIRECTORY)
socket.send_fds(a, [b"x"], [d])
msg, fds, _, _ = socket.recv_fds(b, 1, 1)
for fd in fds + [d]:
    os.close(fd)
a.close()
b.close()
"""

# SysV message queue: msgsnd to a private queue, then the queue removed
SYSV_MSGSND = (
    LIBC
    + """
q = libc.msgget(0, 0o600 | 0o1000)  # IPC_PRIVATE, IPC_CREAT
if q >= 0:
    buf = ctypes.create_string_buffer(ctypes.sizeof(ctypes.c_long) + 11)
    ctypes.memmove(buf, ctypes.byref(ctypes.c_long(1)), ctypes.sizeof(ctypes.c_long))
    buf[ctypes.sizeof(ctypes.c_long):] = b"exfiltrated"
    libc.msgsnd(q, buf, 11, 0o4000)  # IPC_NOWAIT
    libc.msgctl(q, 0, None)  # IPC_RMID
"""
)

# POSIX message queue: mq_send (the mq_timedsend syscall), then the queue unlinked
POSIX_MQ_SEND = (
    LIBC
    + """
libc.mq_open.restype = ctypes.c_int
name = b"/__NAME__"
q = libc.mq_open(name, os.O_CREAT | os.O_WRONLY, 0o600, None)
if q >= 0:
    libc.mq_send(q, b"exfiltrated", 11, 0)
    libc.mq_close(q)
    libc.mq_unlink(name)
"""
)

# the new mount API and unshare: what a path means, refused by the tracer
NEW_MOUNT_API = (
    LIBC
    + """
sys_(428, -100, b"/airlock/run", 1)  # open_tree(AT_FDCWD, "/airlock/run", OPEN_TREE_CLONE)
sys_(430, b"tmpfs", 0)  # fsopen("tmpfs", 0)
libc.unshare(0x10000000 | 0x00020000)  # CLONE_NEWUSER | CLONE_NEWNS
"""
)

SETUID_ROOT = """
import os
for f in (os.setuid, os.setgid):
    try:
        f(0)
    except OSError:
        pass
"""


# a syscall of another ABI, from a child: int 0x80 (32-bit getpid) or x32 (getpid | 0x40000000),
# whose names the traced set would not know; the profile admits x86_64 calls only
OTHER_ABI = """
import subprocess, sys
CHILD = '''
import ctypes, mmap
m = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
m.write(bytes.fromhex("__CODE__"))
ctypes.CFUNCTYPE(ctypes.c_long)(ctypes.addressof(ctypes.c_char.from_buffer(m)))()
'''
try:  # a fresh interpreter: a fork of the worker may deadlock in its libraries' locks
    subprocess.run([sys.executable, "-I", "-c", CHILD], timeout=20, capture_output=True)
except (OSError, subprocess.SubprocessError):
    pass
"""
ABI_CODE = {"int80": "53b814000000cd805bc3", "x32": "b8270000400f05c3"}


# A child made with CLONE_UNTRACED, which ptrace never follows: under a tracer attached with -p
# (a warm start) nothing else stopped its calls, until the profile refused the flag (an attacker
# review of runner.controller.zygote). Refused, the payload runs the same shell where the tracer
# sees it, so the run can prove which way it went.
UNTRACED_CLONE = """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
pid = libc.syscall(56, 0x00800000 | 17, 0, 0, 0, 0)  # clone(CLONE_UNTRACED | SIGCHLD)
if pid == 0:
    os.execv("/bin/sh", ["sh", "-c", "echo untraced > __MARKER__"])
if pid < 0:
    pid = os.fork()
    if pid == 0:
        os.execv("/bin/sh", ["sh", "-c", "echo refused-untraced > __MARKER__"])
os.waitpid(pid, 0)
"""


# A seccomp filter of the model's own with a user-notification listener: the listener can hold
# any call after the tracer has read its path and before the kernel does, and swap the path (an
# attacker review wrote outside /tmp while the log showed a write inside). Refused by the
# tracer, the payload then writes outside in plain sight, so the run proves which way it went.
SECCOMP_LISTENER = """
import ctypes, struct
libc = ctypes.CDLL(None, use_errno=True)
allow = ctypes.create_string_buffer(struct.pack("HBBI", 0x06, 0, 0, 0x7FFF0000))  # ret ALLOW
class Prog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
prog = Prog(1, ctypes.addressof(allow))
listener = libc.syscall(317, 1, 8, ctypes.byref(prog))  # SET_MODE_FILTER, NEW_LISTENER
if listener < 0:
    try:
        open("/opt/airlock/seccomp-refused", "w")
    except OSError:
        pass
"""


def _code(name: str, code: str, **subs: str) -> Callable[[Path, str], Path]:
    def build(d: Path, marker: str) -> Path:
        text = code.replace("__MARKER__", marker).replace("__NAME__", Path(marker).name)
        for k, v in subs.items():
            text = text.replace(f"__{k}__", v)
        path = d / f"{name}.pkl"
        path.write_bytes(hostile.code_pickle(text))
        return path

    return build


def chdir_gadget(d: Path, marker: str) -> Path:
    # No code at all: os.chdir('/airlock/run') then open('<name>', 'w'), chained pickle calls.
    a = Asm().call("os", "chdir", "/airlock/run").pop()
    a.call("builtins", "open", Path(marker).name, "w")
    path = d / "chdir-gadget.pkl"
    path.write_bytes(a.stop())
    return path


def _fx(name: str, technique: str, build: Callable[[Path, str], Path], *ids: str) -> Fixture:
    return Fixture(name, technique, build, frozenset(ids))


SENDS = [
    _fx("sendmsg udp", "sendmsg to 127.0.0.1 UDP", _code("sendmsg", SENDMSG_UDP), "AL101"),
    _fx("sendmmsg udp", "sendmmsg (libc) of two datagrams", _code("mmsg", SENDMMSG_UDP), "AL101"),
    _fx(
        "connected send",
        "send() on a connected UDP socket",
        _code("cudp", SEND_CONNECTED_UDP),
        "AL101",
    ),
    _fx("own socket", "connect to the worker's gRPC socket", _code("own", OWN_SOCKET), "AL107"),
    _fx("pass fds", "SCM_RIGHTS over a socketpair", _code("fds", PASS_FDS), "AL108"),
]
REACHES = [
    _fx(
        "rt_sigqueueinfo",
        "rt_sigqueueinfo and rt_tgsigqueueinfo at the tracer (pid 1)",
        _code("sigq", SIGQUEUE_TRACER),
        "AL403",
    ),
    _fx(
        "pidfd signal",
        "pidfd_open + pidfd_send_signal at the tracer",
        _code("pidfd", PIDFD_SIGNAL_TRACER),
        "AL203",
        "AL403",
    ),
    _fx(
        "pidfd_getfd",
        "pidfd_getfd of the tracer's fd 0",
        _code("getfd", PIDFD_GETFD_TRACER),
        "AL203",
    ),
    _fx(
        "process_vm_readv",
        "process_vm_readv of the tracer's memory",
        _code("vm", PROCESS_VM_READV_TRACER),
        "AL203",
    ),
    _fx("io_uring", "io_uring_setup and io_uring_register", _code("uring", IO_URING), "AL405"),
]
FILELESS = [
    _fx(
        "memfd execveat",
        "/bin/sh copied into a memfd, run by execveat(AT_EMPTY_PATH)",
        _code("memfd1", MEMFD_EXEC, HOW="execveat"),
        "AL205",
        "AL307",
    ),
    _fx(
        "memfd /proc/self/fd",
        "/bin/sh copied into a memfd, run by execve(/proc/self/fd/N)",
        _code("memfd2", MEMFD_EXEC, HOW="execve"),
        "AL205",
        "AL307",
    ),
]
PATHS = [
    _fx(
        "chdir relative write",
        "chdir /tmp, then writes to ../etc and ../opt",
        _code("chdir", CHDIR_RELATIVE_WRITE),
        "AL301",
    ),
    _fx("chdir gadget", "pickle calls: os.chdir then open, no code", chdir_gadget, "AL305"),
    _fx(
        "dotted run path",
        "a write to /airlock/./run/../run/x",
        _code("dotted", DOTTED_RUN_WRITE),
        "AL305",
    ),
    _fx(
        "dirfd run write",
        "a write relative to a dup'ed directory descriptor of /airlock",
        _code("dirfd", DIRFD_RUN_WRITE),
        "AL305",
    ),
    _fx(
        "task cwd write",
        "a write through /proc/self/task/TID/cwd",
        _code("taskcwd", TASK_CWD_WRITE),
        "AL305",
    ),
    _fx(
        "symlink run write",
        "a symlink in /tmp to /airlock/run, written through",
        _code("symlink", SYMLINK_RUN_WRITE),
        "AL305",
    ),
]
OTHERS = [
    _fx("sysv msgsnd", "msgsnd to a SysV message queue", _code("msgsnd", SYSV_MSGSND), "AL106"),
    _fx("posix mq_send", "mq_send to a POSIX message queue", _code("mq", POSIX_MQ_SEND), "AL106"),
    _fx(
        "new mount api",
        "open_tree, fsopen and unshare (refused)",
        _code("mountapi", NEW_MOUNT_API),
        "AL402",
    ),
    _fx("setuid root", "setuid(0) and setgid(0)", _code("setuid", SETUID_ROOT), "AL401"),
    _fx(
        "seccomp listener",
        "a seccomp user-notification listener (refused), then a write outside in plain sight",
        _code("listener", SECCOMP_LISTENER),
        "AL405",
        "AL301",
    ),
    _fx(
        "untraced clone",
        "a shell in a child cloned with CLONE_UNTRACED (refused, then run traced)",
        _code("untraced", UNTRACED_CLONE),
        "AL202",
    ),
    _fx(
        "int 0x80",
        "a 32-bit syscall (int 0x80) in a child",
        _code("i386", OTHER_ABI, CODE=ABI_CODE["int80"]),
        "AL405",
    ),
    _fx(
        "x32 syscall",
        "an x32 syscall in a child",
        _code("x32", OTHER_ABI, CODE=ABI_CODE["x32"]),
        "AL405",
    ),
]
TRACER_CORPUS = SENDS + REACHES + FILELESS + PATHS + OTHERS
