"""runner.controller.watch's quiet check: new evidence passes only when every new trace line is
a send on the worker's own connection and every new audit line the worker's own send numbered
next; anything else (another call, another descriptor, an address, descriptors passed, a line
that does not parse, a number skipped) sends the caller to the full judgement. Fuzzed: never
raises."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from runner.controller import watch
from runner.rules import analysis
from runner.telemetry import strace, syscalls
from runner.telemetry.events import Phase
from runner.telemetry.procstate import State


def _hex(s: str) -> str:
    return "".join(f"\\x{b:02x}" for b in s.encode())


STARTUP = (
    "10 1.0 socket(AF_UNIX, SOCK_STREAM|SOCK_CLOEXEC, 0) = 3\n"
    f'10 1.1 bind(3, {{sa_family=AF_UNIX, sun_path="{_hex(analysis.WORKER_SOCKET)}"}}, 110) = 0\n'
    "10 1.2 listen(3, 16) = 0\n"
    "10 1.3 accept4(3, {sa_family=AF_UNIX}, [110 => 2], SOCK_CLOEXEC) = 9\n"
    "10 1.4 socket(AF_INET, SOCK_STREAM, 0) = 5\n"
)
SEND = (
    '10 2.0 sendmsg({fd}, {{msg_name=NULL, msg_namelen=0, msg_iov=[{{iov_base="\\x00\\x59", '
    "iov_len=2}}], msg_iovlen=1, msg_controllen=0, msg_flags=0}}, 0) = 2\n"
)


def state() -> State:
    s = State(10, analysis.WORKER_SOCKET)
    for call in strace.parse(STARTUP.encode()).calls:
        syscalls.step(call, Phase.STARTUP, s, analysis.WORKER_SOCKET)
    return s


def test_the_worker_s_own_sends_are_quiet() -> None:
    assert watch._quiet_trace((SEND.format(fd=9) * 3).encode(), state()) == 3
    assert watch._quiet_trace(b"", state()) == 0


def test_anything_else_is_judged_in_full() -> None:
    s = state()
    other = [
        SEND.format(fd=5),  # the model's socket
        SEND.format(fd=7),  # a descriptor never seen
        SEND.format(fd=9).replace("= 2", "= -1 EPIPE (Broken pipe)"),
        SEND.format(fd=9).replace("msg_name=NULL", "msg_name={sa_family=AF_INET}"),
        SEND.format(fd=9).replace("msg_controllen=0", "msg_control=[{cmsg_type=SCM_RIGHTS}]"),
        SEND.format(fd=9).replace("10 2.0", "11 2.0"),  # a thread never seen
        f'10 2.0 openat(AT_FDCWD, "{_hex("/proc/self/environ")}", O_RDONLY) = 12\n',
        "10 2.0 +++ exited with 0 +++\n",
        "10 2.0 sendmsg(9, <unfinished ...>\n",
        "not a line of strace\n",
    ]
    for line in other:
        assert watch._quiet_trace((SEND.format(fd=9) + line).encode(), s) is None, line


AUDIT = '[1.0, "socket.sendmsg", ["<socket>", "None"], {n}, 10]\n'


def test_audit_lines_must_be_the_worker_s_sends_numbered_next() -> None:
    data = (AUDIT.format(n=4) + AUDIT.format(n=5)).encode()
    assert watch._quiet_audit(data, {10: 4}) == ({10: 6}, [4, 5])
    assert watch._quiet_audit(AUDIT.format(n=6).encode(), {10: 4}) is None  # skipped
    assert watch._quiet_audit(AUDIT.format(n=4).encode(), {}) is None  # a new writer
    other = '[1.0, "open", ["/etc/passwd", "r"], 4, 10]\n'
    assert watch._quiet_audit(other.encode(), {10: 4}) is None
    assert watch._quiet_audit(b"[1.0, \n", {10: 4}) is None


def test_the_full_judgement_remembers_each_writer_s_next_number() -> None:
    data = (AUDIT.format(n=0) + AUDIT.format(n=1)).encode()
    assert watch._numbers(data) == {10: 2}


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_quiet_checks_never_raise(data: bytes) -> None:
    whole = watch._complete(data)
    assert watch._quiet_trace(whole, state()) in (None, *range(whole.count(b"\n") + 1))
    watch._quiet_audit(whole, {10: 0})
