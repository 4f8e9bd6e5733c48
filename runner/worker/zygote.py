"""The zygote: one worker process warmed with no model, forked into each fresh sandbox.

`python -m runner.worker.zygote --control PATH --formats torchscript,torch,huggingface`

It imports and warms the formats' libraries once, never sees a model, and then waits on a Unix
socket in a directory only the host mounts. For each request the host sends the namespaces of
a container it has just started (descriptors of /proc/PID/ns/*), a pipe to wait on, the
environment and the worker's arguments. The zygote forks; the child joins the container's
namespaces and forks again, so that the grandchild is a member of the container's PID
namespace; the child tells the zygote the grandchild's pid and exits. The grandchild closes
every other descriptor, drops to the sandbox's uid with no capabilities, sets the container's
limits and waits on its pipe while the host moves it into the container's cgroups, checks it
from /proc and attaches the tracer. Only then does it start the worker, which loads the model
when the host asks.

The zygote is a subreaper: the grandchildren are reparented to it, it reaps them and tells the
host each one's exit status on the connection the request came on. It is single-threaded (a
fork copies one thread) and refuses to fork if a warm-up left a thread behind.
Trust: the requests come from the host only; nothing of a model ever reaches this process.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import resource
import select
import signal
import socket
import struct
import sys
from typing import Any

NAMESPACES = {  # the order they are joined in: the mount namespace last (it changes the root)
    "cgroup": 0x02000000,
    "ipc": 0x08000000,
    "uts": 0x04000000,
    "net": 0x40000000,
    "pid": 0x20000000,
    "mnt": 0x00020000,
}
PR_SET_CHILD_SUBREAPER = 36
PR_CAPBSET_DROP = 24
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000
AUDIT_ARCH_X86_64 = 0xC000003E
MODEL_UID = 10001
MAX_REQUEST = 1 << 20
MAX_FDS = 3 + len(NAMESPACES)  # the pipe to wait on, stdout and stderr, the namespaces
GO_TIMEOUT_S = 60.0

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _drop_capabilities() -> None:
    """Clear every capability set (setresuid cleared permitted and effective; this clears the
    inheritable set too)."""
    header = struct.pack("Ii", 0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = bytes(24)  # two {effective, permitted, inheritable} of zero
    _check(_libc.capset(ctypes.c_char_p(header), ctypes.c_char_p(data)), "capset")


def _drop_bounding_set() -> None:
    """Empty the capability bounding set (needs CAP_SETPCAP, which the zygote has)."""
    for cap in range(64):
        if _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            if ctypes.get_errno() == 22:  # EINVAL: past the last capability this kernel has
                return
            _check(-1, f"prctl(PR_CAPBSET_DROP, {cap})")


def _refuse(numbers: list[int]) -> None:
    """A seccomp filter of the worker's own, under the container's profile: the x86_64 calls
    the tracer refuses (runner.telemetry.tracer.REFUSED) answer EPERM even where strace does not
    stop them. A traced call still stops at its entry first (before seccomp), where strace
    records it and refuses it itself; this filter is for whatever it might not see."""
    program = [(0x20, 0, 0, 4), (0x15, 1, 0, AUDIT_ARCH_X86_64), (0x06, 0, 0, SECCOMP_RET_ALLOW)]
    program.append((0x20, 0, 0, 0))  # the syscall number
    for n in numbers:
        program += [(0x15, 0, 1, n), (0x06, 0, 0, SECCOMP_RET_ERRNO | 1)]  # EPERM
    program.append((0x06, 0, 0, SECCOMP_RET_ALLOW))
    code = b"".join(struct.pack("HBBI", *insn) for insn in program)
    buffer = ctypes.create_string_buffer(code)

    class _Program(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    prog = _Program(len(program), ctypes.addressof(buffer))
    _check(
        _libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0),
        "prctl(PR_SET_SECCOMP)",
    )


def _read_exactly(fd: int, n: int, timeout_s: float) -> bytes:
    ready, _, _ = select.select([fd], [], [], timeout_s)
    return os.read(fd, n) if ready else b""


def _become_worker(request: dict[str, Any], go: int) -> None:
    """In the grandchild: drop privileges, wait for the host, run the worker. Never returns."""
    code = 70
    try:
        os.setsid()
        for name, value in request.get("rlimits", {}).items():
            limit = getattr(resource, f"RLIMIT_{name.upper()}")
            resource.setrlimit(limit, (int(value), int(value)))
        _drop_bounding_set()
        os.setgroups([])
        os.setresgid(MODEL_UID, MODEL_UID, MODEL_UID)
        os.setresuid(MODEL_UID, MODEL_UID, MODEL_UID)
        _drop_capabilities()
        _refuse([int(n) for n in request["refuse"]])
        # the host moves this process into the container's cgroups, checks it and attaches
        # the tracer; then one byte, a traced chdir the host waits to see, and a second byte
        if _read_exactly(go, 1, GO_TIMEOUT_S) != b"1":
            os._exit(code)
        os.chdir("/")
        if _read_exactly(go, 1, GO_TIMEOUT_S) != b"2":
            os._exit(code)
        os.close(go)
        os.environ.clear()
        os.environ.update({str(k): str(v) for k, v in request["environment"].items()})
        from runner.worker.__main__ import main

        main([str(a) for a in request["argv"]])
        code = 0
    except BaseException as e:
        print(f"airlock zygote: the worker did not start: {e!r}", file=sys.stderr, flush=True)
    os._exit(code)


def _child(request: dict[str, Any], fds: list[int], report: int) -> None:
    """In the first child: join the namespaces, fork the worker, report its pid, exit."""
    code = 71
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        go, out, err, namespaces = fds[0], fds[1], fds[2], fds[3:]
        null = os.open("/dev/null", os.O_RDONLY)
        for fd, target in ((null, 0), (out, 1), (err, 2)):  # the container's own log
            os.dup2(fd, target)
            os.close(fd)
        for (name, flag), fd in zip(NAMESPACES.items(), namespaces, strict=True):
            _check(_libc.setns(fd, flag), f"setns({name})")
            os.close(fd)
        os.chdir("/")
        pid = os.fork()
        if pid == 0:
            os.close(report)
            os.closerange(3, go)
            os.closerange(go + 1, 1 << 16)
            _become_worker(request, go)
        os.write(report, struct.pack("q", pid))
        code = 0
    except BaseException as e:
        print(f"airlock zygote: could not enter the sandbox: {e!r}", file=sys.stderr, flush=True)
    os._exit(code)


def _single_threaded() -> bool:
    return len(os.listdir("/proc/self/task")) == 1


def _spawn(conn: socket.socket, children: dict[int, socket.socket]) -> None:
    """Read one request from `conn` and fork its worker; keep `conn` to report the exit."""
    conn.settimeout(10.0)
    size = socket.CMSG_SPACE(MAX_FDS * 4)
    data, ancillary, _, _ = conn.recvmsg(MAX_REQUEST, size)
    fds: list[int] = []
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds += list(struct.unpack(f"{len(payload) // 4}i", payload[: len(payload) // 4 * 4]))
    try:
        request = json.loads(data)
        if len(fds) != MAX_FDS or not isinstance(request, dict):
            raise ValueError(f"a request needs {MAX_FDS} descriptors and a JSON object")
        if not _single_threaded():
            raise RuntimeError("the zygote has more than one thread: it cannot fork safely")
        report_r, report_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(report_r)
            for other in children.values():
                other.close()
            _child(request, fds, report_w)
        os.close(report_w)
        _, status = os.waitpid(pid, 0)
        raw = os.read(report_r, 8)
        os.close(report_r)
        if os.waitstatus_to_exitcode(status) != 0 or len(raw) != 8:
            raise RuntimeError("the child could not enter the sandbox (see the zygote's log)")
        worker = struct.unpack("q", raw)[0]
        conn.sendall(f"pid {worker}\n".encode())
        children[worker] = conn
    except Exception as e:
        conn.sendall(f"error {type(e).__name__}: {e}\n".encode()[:1000])
        conn.close()
    finally:
        for fd in fds:
            os.close(fd)


def _reap(children: dict[int, socket.socket]) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        conn = children.pop(pid, None)
        if conn is None:
            continue
        code = os.waitstatus_to_exitcode(status)
        with contextlib.suppress(OSError):  # a signal's death as 128 + N, as strace reports it
            conn.sendall(f"exit {128 - code if code < 0 else code}\n".encode())
        conn.close()


def serve(control: str, formats: list[str]) -> None:
    from runner.worker.loaders import prepare

    _check(_libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "prctl(PR_SET_CHILD_SUBREAPER)")
    for fmt in formats:
        prepare(None, fmt)
    import runner.worker.__main__  # noqa: F401 - the worker's own modules (gRPC) imported too

    if not _single_threaded():
        raise SystemExit("airlock zygote: a warm-up left a thread running; cannot fork")
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.set_wakeup_fd(wake_w)  # wakes select() when a worker exits
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(control + ".new")
    listener.listen(16)
    os.rename(control + ".new", control)  # the host waits for this name: the zygote is warm
    print(f"airlock zygote warm with {','.join(formats)}", file=sys.stderr, flush=True)
    children: dict[int, socket.socket] = {}
    while True:
        ready, _, _ = select.select([listener.fileno(), wake_r], [], [], 1.0)
        if wake_r in ready:
            try:
                while os.read(wake_r, 512):
                    pass
            except BlockingIOError:
                pass
        _reap(children)
        if listener.fileno() in ready:
            conn, _ = listener.accept()
            try:
                _spawn(conn, children)
            except OSError as e:
                print(f"airlock zygote: a request failed: {e!r}", file=sys.stderr, flush=True)
                conn.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="airlock-zygote")
    parser.add_argument("--control", required=True)
    parser.add_argument("--formats", required=True)
    args = parser.parse_args(argv)
    serve(args.control, [f for f in args.formats.split(",") if f])


if __name__ == "__main__":
    main()
