"""The tracer's events over synthetic logs in strace 6.1's own shapes (pure logic, no Docker):
every send, signal and reach into another process is an event and a finding; the worker's own
sockets are baseline; paths are judged by what they resolve to."""

from __future__ import annotations

import pytest

from runner.rules.evaluation import HostFacts, evaluate
from runner.telemetry import strace as _strace
from runner.telemetry import syscalls
from runner.telemetry.events import Event, Phase, PhaseClock
from tests.fixtures.traces import T0, line, s

SOCK = "/airlock/run/worker.sock"
CLOCK = PhaseClock(
    ((T0 - 1, Phase.STARTUP), (T0 + 1, Phase.LOAD), (T0 + 5, Phase.INFER), (T0 + 8, Phase.TEARDOWN))
)


class _Sink:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def add(self, event: Event) -> None:
        self.events.append(event)


def events(*lines: str) -> list[Event]:
    sink = _Sink()
    log = "".join(lines)
    syscalls.tracer_events(_strace.parse(log.encode()), CLOCK, sink, SOCK)
    return sink.events


def rules(*lines: str) -> set[str]:
    return {f.rule_id for f in evaluate(events(*lines), HostFacts())}


def inet(port: int = 9, addr: str = "127.0.0.1") -> str:
    return f"{{sa_family=AF_INET, sin_port=htons({port}), sin_addr=inet_addr({s(addr)})}}"


def unix(path: str) -> str:
    return f"{{sa_family=AF_UNIX, sun_path={s(path)}}}"


def msg(name: str = "NULL", control: str = "") -> str:
    ctl = f"msg_control=[{control}], msg_controllen=24" if control else "msg_controllen=0"
    return (
        f"{{msg_name={name}, msg_namelen=0, msg_iov=[{{iov_base={s('x')}, iov_len=1}}], "
        f"msg_iovlen=1, {ctl}, msg_flags=0}}"
    )


def _rights() -> str:
    return "{cmsg_len=20, cmsg_level=SOL_SOCKET, cmsg_type=SCM_RIGHTS, cmsg_data=[3]}"


def worker(pid: int = 10) -> list[str]:
    """The worker's start-up: its gRPC and data-plane sockets bound, a connection accepted."""
    return [
        line(pid, 0.0, f"execve({s('/opt/airlock/venv/bin/python')}, [{s('python')}], 0x1) = 0"),
        line(pid, 0.1, "socket(AF_UNIX, SOCK_STREAM|SOCK_CLOEXEC, 0) = 8"),
        line(pid, 0.2, f"bind(8, {unix('/airlock/run/data.sock')}, 25) = 0"),
        line(pid, 0.3, "socket(AF_UNIX, SOCK_STREAM, 0) = 10"),
        line(pid, 0.4, f"bind(10, {unix(SOCK)}, 110) = 0"),
        line(pid, 0.5, "accept4(10, {sa_family=AF_UNIX}, [128 => 2], SOCK_CLOEXEC) = 11"),
        line(pid, 0.6, f"openat(AT_FDCWD, {s('/airlock/run/audit.jsonl')}, O_WRONLY|O_CREAT) = 3"),
    ]


def at(dt: float, rest: str, pid: int = 10) -> str:
    return line(pid, dt, rest)


def test_the_workers_own_traffic_is_baseline() -> None:
    log = [
        *worker(),
        at(2.0, f"sendmsg(11, {msg()}, MSG_NOSIGNAL) = 46"),
        at(5.5, "accept4(8, {sa_family=AF_UNIX}, [110 => 2], SOCK_CLOEXEC) = 9"),
        at(5.6, f"sendmsg(9, {msg()}, 0) = 46"),
        at(5.7, f"sendto(9, {s('x')}, 1, 0, NULL, 0) = 1"),
        at(8.5, f"unlink({s(SOCK)}) = 0"),
    ]
    assert events(*log) == []


def test_sends_on_the_models_sockets_are_events_and_findings() -> None:
    log = [
        *worker(),
        at(2.0, "socket(AF_INET, SOCK_DGRAM|SOCK_CLOEXEC, IPPROTO_IP) = 4"),
        at(2.1, f"sendmsg(4, {msg(inet())}, 0) = 1"),
        at(2.2, f"connect(4, {inet(10)}, 16) = 0"),
        at(2.3, f"sendto(4, {s('hi')}, 2, 0, NULL, 0) = 2"),
        at(
            2.4,
            f"sendmmsg(5, [{{msg_hdr={msg(inet(11))}, msg_len=1}}, "
            f"{{msg_hdr={msg(inet(12, '127.0.0.2'))}, msg_len=1}}], 2, 0) = 2",
        ),
    ]
    evs = [e for e in events(*log) if e.kind.startswith("net.send")]
    assert [e.kind for e in evs] == ["net.sendmsg", "net.sendto", "net.sendmmsg"]
    assert evs[1].detail["via"] == "connect" and evs[1].detail["port"] == 10
    assert evs[2].detail["destinations"] == ["127.0.0.1:11", "127.0.0.2:12"]
    assert rules(*log) >= {"AL101"}


@pytest.mark.parametrize(
    ("lines", "rule"),
    [
        ([at(2.0, f"sendto(42, {s('x')}, 1, 0, NULL, 0) = 1")], "AL105"),
        (
            [
                at(2.0, "socketpair(AF_UNIX, SOCK_STREAM|SOCK_CLOEXEC, 0, [4, 5]) = 0"),
                at(2.1, f"sendmsg(4, {msg()}, 0) = 1"),
            ],
            "AL106",
        ),
        (
            [
                at(2.0, "socketpair(AF_UNIX, SOCK_STREAM|SOCK_CLOEXEC, 0, [4, 5]) = 0"),
                at(2.1, f"sendmsg(4, {msg(control=_rights())}, 0) = 1"),
            ],
            "AL108",
        ),
        ([at(2.0, "msgsnd(0, 0x7f00, 8, 0) = 0")], "AL106"),
        (
            [
                at(2.0, "socket(AF_UNIX, SOCK_STREAM, 0) = 4"),
                at(2.1, f"connect(4, {unix(SOCK)}, 110) = 0"),
                at(2.2, f"sendto(4, {s('x')}, 1, 0, NULL, 0) = 1"),
            ],
            "AL107",
        ),
        (
            [
                at(2.0, "socket(AF_UNIX, SOCK_DGRAM, 0) = 4"),
                at(2.1, f"sendto(4, {s('x')}, 1, 0, {unix('/dev/log')}, 16) = 1"),
            ],
            "AL101",
        ),
        (
            [
                at(2.0, "socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE) = 4"),
                at(2.1, f"sendto(4, {s('x')}, 1, 0, {{sa_family=AF_NETLINK, nl_pid=0}}, 12) = 1"),
            ],
            "AL104",
        ),
    ],
)
def test_every_send_falls_under_a_rule(lines: list[str], rule: str) -> None:
    assert rule in rules(*worker(), *lines)


def test_a_model_socket_put_in_place_of_the_workers_is_the_models() -> None:
    log = [
        *worker(),
        at(2.0, "socket(AF_INET, SOCK_DGRAM, IPPROTO_IP) = 4"),
        at(2.1, f"connect(4, {inet()}, 16) = 0"),
        at(2.2, "dup2(4, 11) = 11"),
        at(2.3, f"sendmsg(11, {msg()}, 0) = 1"),
    ]
    sends = [e for e in events(*log) if e.kind == "net.sendmsg"]
    assert sends and sends[0].detail["via"] == "connect"
    assert "AL101" in rules(*log)


@pytest.mark.parametrize(
    ("lines", "rule"),
    [
        ([at(2.0, "rt_sigqueueinfo(1, SIGKILL, {si_signo=SIGKILL}) = -1 EPERM")], "AL403"),
        ([at(2.0, "rt_tgsigqueueinfo(1, 1, SIGTERM, {si_signo=SIGTERM}) = -1 EPERM")], "AL403"),
        (
            [
                at(2.0, "pidfd_open(1, 0) = 5"),
                at(2.1, "pidfd_send_signal(5, SIGKILL, NULL, 0) = -1 EPERM"),
            ],
            "AL403",
        ),
        ([at(2.0, "pidfd_open(1, 0) = 5")], "AL203"),
        ([at(2.0, "pidfd_open(10, 0) = 5")], "AL204"),
        (
            [
                at(2.0, "pidfd_open(1, 0) = 5"),
                at(2.1, "pidfd_getfd(5, 3, 0) = -1 EPERM (Operation not permitted) (INJECTED)"),
            ],
            "AL203",
        ),
        (
            [at(2.0, "process_vm_readv(1, NULL, 0, NULL, 0, 0) = -1 EPERM (INJECTED)")],
            "AL203",
        ),
        (
            [at(2.0, "io_uring_setup(1, NULL) = -1 EPERM (Operation not permitted) (INJECTED)")],
            "AL405",
        ),
        ([at(2.0, f"open_tree(AT_FDCWD, {s('/')}, 0) = -1 EPERM (INJECTED)")], "AL402"),
    ],
)
def test_signals_and_reaches_into_other_processes(lines: list[str], rule: str) -> None:
    assert rule in rules(*worker(), *lines)


def test_signals_to_its_own_threads_are_not_findings() -> None:
    log = [
        *worker(),
        at(2.0, "clone(child_stack=0x1, flags=CLONE_VM|CLONE_FS|CLONE_FILES|CLONE_THREAD) = 12"),
        at(2.1, "tgkill(10, 12, SIGUSR1) = 0"),
        at(2.2, "rt_tgsigqueueinfo(10, 12, SIGUSR1, {si_signo=SIGUSR1}) = 0"),
    ]
    assert not any(e.kind == "signal.send" for e in events(*log))


def test_fileless_exec_from_a_memfd() -> None:
    log = [
        *worker(),
        at(2.0, f"memfd_create({s('x')}, MFD_CLOEXEC) = 9"),
        at(2.1, 'execveat(9, "", NULL, NULL, AT_EMPTY_PATH) = -1 ENOEXEC (Exec format error)'),
        at(2.2, f"execve({s('/dev/fd/9')}, [{s('sh')}], 0x1 /* 0 vars */) = -1 ENOEXEC"),
    ]
    execs = [e for e in events(*log) if e.kind == "process.exec"]
    assert [e.detail["path"] for e in execs] == ["/memfd:x", "/memfd:x"]
    assert {"AL205", "AL307"} <= rules(*log)


@pytest.mark.parametrize(
    ("lines", "path"),
    [
        (
            [at(2.0, f"openat(AT_FDCWD, {s('/airlock/./run/../run/x')}, O_WRONLY|O_CREAT) = 4")],
            "/airlock/run/x",
        ),
        (
            [
                at(2.0, f"openat(AT_FDCWD, {s('/airlock/run')}, O_RDONLY|O_DIRECTORY) = 5"),
                at(2.1, f"openat(5, {s('x')}, O_WRONLY|O_CREAT, 0644) = 6"),
            ],
            "/airlock/run/x",
        ),
        (
            [
                at(2.0, f"chdir({s('/airlock/run')}) = 0"),
                at(2.1, f"open({s('x')}, O_WRONLY|O_CREAT) = 6"),
            ],
            "/airlock/run/x",
        ),
        (
            [
                at(2.0, f"chdir({s('/airlock')}) = 0"),
                at(2.1, f"openat(AT_FDCWD, {s('/proc/self/task/10/cwd/run/y')}, O_RDWR) = 6"),
            ],
            "/airlock/run/y",
        ),
        (
            [
                at(2.0, f"symlink({s('/airlock/run')}, {s('/tmp/l')}) = 0"),
                at(2.1, f"openat(AT_FDCWD, {s('/tmp/l/x')}, O_WRONLY|O_CREAT) = 6"),
            ],
            "/airlock/run/x",
        ),
        (
            [
                at(2.0, f"openat(AT_FDCWD, {s('/airlock/run')}, O_RDONLY|O_DIRECTORY) = 5"),
                at(2.1, "fcntl(5, F_DUPFD_CLOEXEC, 0) = 7"),
                at(2.2, f"renameat(7, {s('a')}, 7, {s('audit.jsonl')}) = 0"),
            ],
            "/airlock/run/audit.jsonl",
        ),
    ],
)
def test_writes_into_airlocks_directories_resolve_and_are_high(lines: list[str], path: str) -> None:
    found = [e for e in events(*worker(), *lines) if e.kind in ("file.write", "file.modify")]
    assert any(path in (e.detail.get("paths") or [e.detail["path"]]) for e in found), found
    assert "AL305" in rules(*worker(), *lines)


def test_cwd_is_inherited_across_fork_and_read_relative() -> None:
    log = [
        *worker(),
        at(2.0, f"chdir({s('/etc')}) = 0"),
        at(2.1, "clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|SIGCHLD) = 20"),
        at(2.2, f"openat(AT_FDCWD, {s('shadow')}, O_RDONLY) = 3", pid=20),
        at(2.3, f"chdir({s('..')}) = 0", pid=20),
        at(2.4, f"openat(AT_FDCWD, {s('etc/gshadow')}, O_RDONLY) = 3", pid=20),
    ]
    reads = [e.detail["path"] for e in events(*log) if e.kind == "file.sensitive_read"]
    assert reads == ["/etc/shadow", "/etc/gshadow"]


def test_an_unseen_directory_descriptor_is_unresolved_not_ignored() -> None:
    log = [*worker(), at(2.0, f"openat(77, {s('shadow')}, O_RDONLY) = 3")]
    evs = events(*log)
    assert evs[0].kind == "file.unresolved" and evs[0].detail["path"] == "<fd 77>/shadow"
    assert "AL306" in rules(*log)
    write = [*worker(), at(2.0, f"openat(77, {s('x')}, O_WRONLY|O_CREAT) = 3")]
    assert "AL301" in rules(*write) and "AL302" not in rules(*write)


def test_startup_writes_and_teardown_socket_removal_are_baseline_but_not_in_load() -> None:
    assert events(*worker(), at(8.5, f"unlink({s(SOCK)}) = 0")) == []
    assert "AL305" in rules(*worker(), at(2.0, f"unlink({s(SOCK)}) = 0"))
    assert "AL305" in rules(*worker(), at(2.0, f"bind(4, {unix('/airlock/run/x.sock')}, 20) = 0"))


def test_a_blocking_accept_keeps_its_socket_when_files_reused_the_number_meanwhile() -> None:
    # the data plane's accept starts in startup and returns at the first call; files opened in
    # between had the number it returns (their close is not traced). Calls are read in start
    # order: the send proves the number is a socket, the worker's.
    log = [
        *worker(),
        at(0.7, "accept4(8,  <unfinished ...>"),
        at(2.0, f"openat(AT_FDCWD, {s('/model/m.onnx')}, O_RDONLY|O_CLOEXEC) = 14", pid=12),
        at(5.5, "<... accept4 resumed>{sa_family=AF_UNIX}, [110 => 2], SOCK_CLOEXEC) = 14"),
        at(5.6, f"sendmsg(14, {msg()}, 0) = 46"),
    ]
    log.insert(1, at(0.05, "clone(child_stack=0x1, flags=CLONE_VM|CLONE_FILES|CLONE_THREAD) = 12"))
    assert events(*log) == []
    # a send that failed proves nothing: on a number last opened as a file, it is unseen
    failed = [*worker(), at(2.0, f"openat(AT_FDCWD, {s('/tmp/f')}, O_RDONLY) = 11")]
    failed.append(
        at(2.1, f"sendmsg(11, {msg()}, 0) = -1 ENOTSOCK (Socket operation on non-socket)")
    )
    assert [e.detail["via"] for e in events(*failed) if e.kind == "net.sendmsg"] == ["unseen"]


def test_a_blocking_accept_whose_number_was_another_socket_meanwhile_is_the_workers() -> None:
    # found in serving: while the data plane's accept blocked, gRPC probed for IPv4 with a
    # socket that got the number the accept then returned (its close is not traced); the
    # accept is placed where it completes, so the worker's replies on it are its own
    log = [
        *worker(),
        at(0.7, "accept4(8,  <unfinished ...>"),
        at(0.8, "socket(AF_INET, SOCK_STREAM, IPPROTO_IP) = 14", pid=12),
        at(5.5, "<... accept4 resumed>{sa_family=AF_UNIX}, [110 => 2], SOCK_CLOEXEC) = 14"),
        at(5.6, f"sendmsg(14, {msg()}, MSG_NOSIGNAL) = 46"),
    ]
    log.insert(1, at(0.05, "clone(child_stack=0x1, flags=CLONE_VM|CLONE_FILES|CLONE_THREAD) = 12"))
    assert [e.kind for e in events(*log) if e.kind != "net.socket"] == []
    # the model's own socket on that number, used after the accept returned another, still is
    mine = [*log, at(6.0, "socket(AF_INET, SOCK_STREAM, IPPROTO_IP) = 15", pid=12)]
    mine.append(at(6.1, f'sendto(15, "x", 1, 0, {inet()}, 16) = 1', pid=12))
    assert "AL101" in rules(*mine)


@pytest.mark.parametrize(
    "spelled",
    [
        "/proc/net/../environ",  # /proc/net is a kernel link to self/net
        "/usr/share/zoneinfo/posix/Etc/../../../../proc/self/environ",  # a link in the image
        "../../../../../../etc/shadow",
    ],
)
def test_a_climb_through_an_unknown_link_is_judged_by_where_it_can_end(spelled: str) -> None:
    """Attack (found in review): the kernel follows a link before '..' climbs, the spelling
    does not, so a read of /proc/self/environ spelled through a link resolved elsewhere and
    raised no event at all. What follows the last '..' is judged against where it can end."""
    log = [*worker(), at(2.0, f"openat(AT_FDCWD, {s(spelled)}, O_RDONLY) = 3")]
    evs = [e for e in events(*log) if e.kind == "file.sensitive_read"]
    assert evs, [e.kind for e in events(*log)]
    assert "AL303" in rules(*log)


def test_an_ordinary_climb_stays_ordinary() -> None:
    log = [
        *worker(),
        at(2.0, f"openat(AT_FDCWD, {s('/opt/x/lib/../share/data.bin')}, O_RDONLY) = 3"),
    ]
    assert rules(*log) == set()
