"""The one allowance (runner.rules.allowances): llama.cpp's HTTP front, the loopback listener
every xllamacpp Server makes, is not a finding for a model the host detected as GGUF, in the
load phase, as many times as the worker makes Servers there. Every way of stretching it is
still a finding: another address or port, another phase, another format, one listener more, a
connection to it, a listen on a socket never bound, a failed call, a Python-level bind."""

from __future__ import annotations

import pytest

from runner.controller.engine import ContainerState
from runner.policy import Policy
from runner.report import ModelInfo, Report
from runner.rules import allowances
from runner.rules import analysis as _analysis
from runner.rules.catalog import Verdict
from runner.telemetry.events import Phase
from tests.fixtures.traces import T0, line, s, worker_exit, worker_start

LOAD, INFER = 2.0, 6.0  # seconds after T0, in the load and infer phases


def inet(addr: str = "127.0.0.1", port: int = 0) -> str:
    return f"{{sa_family=AF_INET, sin_port=htons({port}), sin_addr=inet_addr({s(addr)})}}"


def inet6(addr: str = "::1", port: int = 0) -> str:
    return (
        f"{{sa_family=AF_INET6, sin6_port=htons({port}), sin6_flowinfo=htonl(0), "
        f"inet_pton(AF_INET6, {s(addr)}, &sin6_addr), sin6_scope_id=0}}"
    )


def front(dt: float = LOAD, fd: int = 12, addr: str = "", pid: int = 10, family: str = "") -> str:
    """What llama.cpp's HTTP front does when a Server starts: a socket bound to loopback, port
    0, listened on, in one thread."""
    family = family or "AF_INET"
    where = addr or (inet() if family == "AF_INET" else inet6())
    return (
        line(pid, dt, f"socket({family}, SOCK_STREAM|SOCK_CLOEXEC, IPPROTO_IP) = {fd}")
        + line(pid, dt + 0.01, f"setsockopt({fd}, SOL_SOCKET, SO_REUSEADDR, [1], 4) = 0")
        + line(pid, dt + 0.02, f"bind({fd}, {where}, 16) = 0")
        + line(pid, dt + 0.03, f"listen({fd}, 512) = 0")
    )


def build(
    *parts: str, fmt: str = "gguf", warmed: tuple[str, ...] = ("auto",), worker: list | None = None
) -> Report:
    c = _analysis.Collected(
        policy=Policy(),
        model=ModelInfo(path="/m", format=fmt, detected_by="test", size_bytes=1, files=[]),
    )
    c.marks = [
        (T0 - 1, Phase.STARTUP),
        (T0 + 1.0, Phase.LOAD),
        (T0 + 5.0, Phase.INFER),
        (T0 + 8.0, Phase.TEARDOWN),
    ]
    c.trace_log = (worker_start() + "".join(parts) + worker_exit()).encode()
    c.final_state = ContainerState("exited", False, 0, False, "")
    c.shutdown_requested = True
    c.worker_events = worker or []
    c.warmed = warmed
    return _analysis.build(c)


def ids(report: Report) -> set[str]:
    return {f.rule_id for f in report.findings}


@pytest.mark.parametrize("family", ["AF_INET", "AF_INET6"])
def test_the_front_of_one_server_in_load_is_clean_and_still_listed(family: str) -> None:
    report = build(front(family=family))
    assert report.findings == [] and report.verdict is Verdict.CLEAN
    listed = [e for e in report.events if e.kind in ("net.bind", "net.listen")]
    assert len(listed) == 2 and all(allowances.allowed(e) for e in listed)
    assert all(e.detail[allowances.KEY] == allowances.LLAMA_HTTP_FRONT for e in listed)


def test_a_pooled_sandbox_warmed_for_other_formats_allows_warms_server_too() -> None:
    two = front(LOAD) + front(LOAD + 0.5, fd=13)
    assert build(two, warmed=("onnx",)).verdict is Verdict.CLEAN
    assert build(two, warmed=("gguf",)).verdict is not Verdict.CLEAN
    assert "AL103" in ids(build(two + front(LOAD + 1.0, fd=14), warmed=("onnx",)))


@pytest.mark.parametrize("fmt", ["pickle", "onnx", "huggingface", "unknown"])
def test_another_format_gets_no_allowance(fmt: str) -> None:
    assert {"AL103", "AL901"} <= ids(build(front(), fmt=fmt))


def test_one_listener_more_than_servers_and_none_is_allowed() -> None:
    report = build(front() + front(LOAD + 0.5, fd=13))
    assert "AL103" in ids(report) and "AL901" in ids(report)
    assert not any(allowances.allowed(e) for e in report.events)


def test_the_same_listener_twice_on_one_number_is_counted_twice() -> None:
    # identical lines fold into one event with a count: the count is what is compared
    assert "AL103" in ids(build(front() + front(LOAD + 0.5)))


@pytest.mark.parametrize(
    "addr",
    [
        inet("0.0.0.0"),
        inet("127.0.0.1", 8080),
        inet("127.0.0.2"),
        inet("10.0.0.1"),
        inet6("::"),
        inet6("::1", 80),
        inet6("::ffff:127.0.0.1"),
    ],
)
def test_another_address_or_port_is_a_finding(addr: str) -> None:
    family = "AF_INET6" if "AF_INET6" in addr else "AF_INET"
    assert "AL103" in ids(build(front(addr=addr, family=family)))


def test_a_listener_in_infer_is_a_finding() -> None:
    assert "AL103" in ids(build(front(INFER)))


def test_a_listen_in_infer_on_a_socket_bound_in_load_is_a_finding() -> None:
    bound = line(10, LOAD, "socket(AF_INET, SOCK_STREAM, IPPROTO_IP) = 12") + line(
        10, LOAD + 0.1, f"bind(12, {inet()}, 16) = 0"
    )
    report = build(bound + line(10, INFER, "listen(12, 5) = 0"))
    assert [f.phase for f in report.findings if f.rule_id == "AL103"] == [Phase.INFER]


def test_listening_on_a_socket_never_bound_is_a_finding() -> None:
    # the kernel binds it to every address on an ephemeral port
    plain = line(10, LOAD, "socket(AF_INET, SOCK_STREAM, IPPROTO_IP) = 12")
    assert "AL103" in ids(build(plain + line(10, LOAD + 0.1, "listen(12, 5) = 0")))


def test_listening_from_a_thread_that_bound_nothing_is_a_finding() -> None:
    # a bound socket's listen from another thread (a clone sharing the table) is not the front's
    flags = "CLONE_VM|CLONE_FS|CLONE_FILES|CLONE_THREAD"
    clone = line(10, LOAD - 0.5, f"clone3({{flags={flags}}}, 88) = 11")
    bound = line(10, LOAD, "socket(AF_INET, SOCK_STREAM, IPPROTO_IP) = 12") + line(
        10, LOAD + 0.1, f"bind(12, {inet()}, 16) = 0"
    )
    report = build(clone + bound + line(11, LOAD + 0.2, "listen(12, 5) = 0"))
    listens = [e for e in report.events if e.kind == "net.listen"]
    assert listens and not any(allowances.allowed(e) for e in listens)
    assert "AL103" in ids(report)


def test_a_failed_bind_is_a_finding() -> None:
    failed = line(10, LOAD, "socket(AF_INET, SOCK_STREAM, IPPROTO_IP) = 12") + line(
        10, LOAD + 0.1, f"bind(12, {inet()}, 16) = -1 EADDRINUSE (Address already in use)"
    )
    assert "AL103" in ids(build(failed))


def test_a_unix_socket_front_is_a_finding() -> None:
    unix = f"{{sa_family=AF_UNIX, sun_path={s('/tmp/llama.sock')}}}"
    sock = line(10, LOAD, "socket(AF_UNIX, SOCK_STREAM, 0) = 12")
    assert "AL103" in ids(build(sock + line(10, LOAD + 0.1, f"bind(12, {unix}, 18) = 0")))


def test_a_connection_accepted_on_the_front_is_a_finding_and_revokes_it() -> None:
    accepted = line(10, INFER, "accept4(12, {sa_family=AF_INET}, [16], SOCK_CLOEXEC) = 13")
    report = build(front() + accepted)
    assert "AL103" in ids(report)
    assert any(e.kind == "net.accept" for e in report.events)
    assert not any(allowances.allowed(e) for e in report.events)


def test_a_connect_to_the_front_is_a_finding_and_revokes_it() -> None:
    reach = line(10, INFER, "socket(AF_INET, SOCK_STREAM, IPPROTO_IP) = 14") + line(
        10, INFER + 0.1, f"connect(14, {inet('127.0.0.1', 40000)}, 16) = 0"
    )
    report = build(front() + reach)
    assert {"AL101", "AL103"} <= ids(report)


def test_a_python_level_bind_is_still_the_worker_finding() -> None:
    # a chat template's own socket.bind: the audit hook reports it, and with it the front's
    # listener is not allowed either (xllamacpp makes no Python socket calls)
    bind = [(T0 + LOAD - 0.5, "socket.bind", ["<socket>", "('127.0.0.1', 0)"])]
    report = build(front(), worker=bind)
    assert ids(report) == {"AL606", "AL103"} and report.verdict is not Verdict.CLEAN


def test_servers_in_load() -> None:
    assert allowances.servers_in_load(("auto",)) == 1
    assert allowances.servers_in_load(("gguf",)) == 1
    assert allowances.servers_in_load(("onnx", "gguf")) == 1
    assert allowances.servers_in_load(("onnx",)) == 2
    assert allowances.servers_in_load(()) == 2
