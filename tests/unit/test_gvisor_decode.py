"""gVisor's trace points as the tracer's log: messages decoded into strace's lines, read by the
strace path's reader into the same events; hostile bytes counted, never raised; the sink's
protocol (handshake, header, drops) against a stand-in for runsc."""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.policy import Policy, Runtime
from runner.rules.analysis import Collected
from runner.telemetry import folding, strace, syscalls
from runner.telemetry.events import Phase, PhaseClock
from runner.telemetry.gvisor import decode, points, session, sink, text
from runner.telemetry.gvisor._proto import common_pb2, sentry_pb2, syscall_pb2

T = common_pb2.MessageType
AT = 1_800_000_000_000_000_000  # ns


def ctx(tid: int = 1, t: int = 0, group: int | None = None) -> common_pb2.ContextData:
    return common_pb2.ContextData(
        time_ns=AT + t, thread_id=tid, thread_group_id=tid if group is None else group
    )


def done(result: int = 0, errno: int = 0) -> syscall_pb2.Exit:
    return syscall_pb2.Exit(result=result, errorno=errno)


def sockaddr_in(ip: str, port: int) -> bytes:
    return struct.pack("<H", 2) + struct.pack(">H", port) + socket.inet_aton(ip) + b"\0" * 8


def hostile_run() -> list[tuple[int, bytes]]:
    """What a model that runs a shell, connects out and writes outside scratch sends."""
    m: list[tuple[int, object]] = [
        (T.MESSAGE_SYSCALL_OPEN, syscall_pb2.Open(
            context_data=ctx(t=1), exit=done(3), sysno=257, fd=-100,
            pathname="/etc/passwd", flags=0o2000000)),
        (T.MESSAGE_SENTRY_CLONE, sentry_pb2.CloneInfo(
            context_data=ctx(t=2), created_thread_id=7, flags=0x3D0F00)),  # a thread
        (T.MESSAGE_SENTRY_CLONE, sentry_pb2.CloneInfo(
            context_data=ctx(t=3), created_thread_id=8, flags=0x4100 | 17)),  # vfork
        (T.MESSAGE_SYSCALL_EXECVE, syscall_pb2.Execve(
            context_data=ctx(8, 4), sysno=59, pathname="/bin/sh", argv=["sh", "-c", "id"])),
        (T.MESSAGE_SENTRY_EXEC, sentry_pb2.ExecveInfo(
            context_data=ctx(8, 5), binary_path="/usr/bin/dash", argv=["sh", "-c", "id"])),
        (T.MESSAGE_SYSCALL_EXECVE, syscall_pb2.Execve(
            context_data=ctx(8, 6), exit=done(0), sysno=59, pathname="\x01garbage")),
        (T.MESSAGE_SENTRY_TASK_EXIT, sentry_pb2.TaskExit(context_data=ctx(8, 7), exit_status=0)),
        (T.MESSAGE_SYSCALL_SOCKET, syscall_pb2.Socket(
            context_data=ctx(t=8), exit=done(4), sysno=41, domain=2, type=1 | 0o2000000)),
        (T.MESSAGE_SYSCALL_CONNECT, syscall_pb2.Connect(
            context_data=ctx(t=9), exit=done(errno=113), sysno=42, fd=4,
            address=sockaddr_in("10.1.2.3", 443))),
        (T.MESSAGE_SYSCALL_OPEN, syscall_pb2.Open(
            context_data=ctx(t=10), exit=done(5), sysno=257, fd=-100,
            pathname="/opt/airlock/x", flags=0o1101, mode=0o644)),
        (T.MESSAGE_SYSCALL_RAW, syscall_pb2.Syscall(
            context_data=ctx(t=11), exit=done(errno=1), sysno=165, arg1=0x7FFD0000, arg2=1)),
        (T.MESSAGE_SYSCALL_RAW, syscall_pb2.Syscall(
            context_data=ctx(t=12), exit=done(0), sysno=62, arg1=99, arg2=9)),
        (T.MESSAGE_SENTRY_TASK_EXIT, sentry_pb2.TaskExit(
            context_data=ctx(t=13), exit_status=3 << 8)),
        # the raw points counted against the schema points with strings (no context)
        (T.MESSAGE_SYSCALL_RAW, syscall_pb2.Syscall(exit=done(3), sysno=257, arg3=0o2000000)),
        (T.MESSAGE_SYSCALL_RAW, syscall_pb2.Syscall(sysno=59)),
        (T.MESSAGE_SYSCALL_RAW, syscall_pb2.Syscall(exit=done(5), sysno=257, arg3=0o1101)),
    ]  # fmt: skip
    return [(k, msg.SerializeToString()) for k, msg in m]  # type: ignore[attr-defined]


def to_log(messages: list[tuple[int, bytes]], losses: decode.Losses | None = None) -> bytes:
    log = decode.Log()
    for kind, payload in messages:
        decode.feed(log, kind, payload)
    return decode.render(log, losses or decode.Losses())


def events(raw: bytes) -> tuple[strace.Trace, list]:
    trace = strace.parse(raw)
    folder = folding.new_folder()
    syscalls.tracer_events(trace, PhaseClock(((0.0, Phase.LOAD),)), folder, "/w.sock")
    return trace, folder.events


def test_messages_become_the_strace_paths_events() -> None:
    trace, evs = events(to_log(hostile_run()))
    assert trace.problems() == [] and trace.first_pid == 1
    assert trace.exits[1].code == 3 and trace.exits[8].code == 0
    kinds = {e.kind: e for e in evs}
    exec_ = kinds["process.exec"]
    assert exec_.detail["path"] == "/bin/sh" and exec_.detail["argv"] == ["sh", "-c", "id"]
    assert exec_.result == "ok"
    assert sum(e.kind == "process.exec" for e in evs) == 1  # the exit point adds no second
    assert sum(e.kind == "process.fork" for e in evs) == 1  # the thread is no fork
    assert kinds["net.connect"].detail["address"] == "10.1.2.3"
    assert kinds["net.connect"].detail["port"] == 443
    assert kinds["net.connect"].result == "EHOSTUNREACH"
    assert kinds["file.write"].detail["path"] == "/opt/airlock/x"
    assert kinds["priv.escape"].detail["syscall"] == "mount"
    assert kinds["signal.send"].detail["signal"] == "SIGKILL"
    assert kinds["signal.send"].detail["target"] == 99


def test_an_exec_whose_exit_never_came_is_unfinished_not_lost() -> None:
    enter = syscall_pb2.Execve(context_data=ctx(t=1), sysno=59, pathname="/bin/sh", argv=["sh"])
    _, evs = events(to_log([(T.MESSAGE_SYSCALL_EXECVE, enter.SerializeToString())]))
    assert [e.kind for e in evs] == ["process.exec"] and evs[0].result == "?"


def test_sockaddrs_as_strace_prints_them() -> None:
    assert network_of(text.sockaddr(b"\x01\x00/airlock/run/w.sock\0\0")) == {
        "family": "AF_UNIX",
        "address": "/airlock/run/w.sock",
    }
    assert network_of(text.sockaddr(b"\x01\x00\0abstract"))["address"] == "@abstract"
    six = (
        struct.pack("<H", 10)
        + struct.pack(">H", 53)
        + b"\0" * 4
        + socket.inet_pton(socket.AF_INET6, "::1")
    )
    assert network_of(text.sockaddr(six + b"\0" * 4)) == {
        "family": "AF_INET6",
        "port": 53,
        "address": "::1",
    }
    assert network_of(text.sockaddr(b"\x2a\x00xx"))["family"] == "?"
    assert text.sockaddr(b"") == "NULL"


def network_of(token: str) -> dict:
    from runner.telemetry.network import parse_sockaddr

    return parse_sockaddr(token)


def test_what_could_not_be_read_keeps_the_log_from_whole() -> None:
    raw = to_log(
        [*hostile_run(), (999, b"x"), (T.MESSAGE_SYSCALL_OPEN, b"\xff\xff\xff")],
        decode.Losses(dropped_by_runsc=5, past_caps=2),
    )
    trace = strace.parse(raw)
    assert trace.malformed == 4  # unknown type, undecodable, runsc's drops, the sink's caps
    text = raw.decode()
    assert "gvisor: 5 trace point(s) runsc dropped" in text
    assert "gvisor: 1 message(s) of a type Airlock does not read (999)" in text
    nobody = strace.parse(decode.render(decode.Log(), decode.Losses(connections=0)))
    assert nobody.malformed == 1 and nobody.first_pid is None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 70000), st.binary(max_size=300)), max_size=20))
def test_hostile_messages_never_raise(messages: list[tuple[int, bytes]]) -> None:
    log = decode.Log()
    for kind, payload in messages:
        decode.feed(log, kind, payload)
    raw = decode.render(log, decode.Losses())
    trace, _ = events(raw)
    # every line decoded is in strace's shape; each kind of message not read is one line not
    assert trace.malformed == len(log.unparsed)


known = st.sampled_from([int(v) for v in T.values()])


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            known,
            st.builds(
                lambda path, argv, addr, sysno, a: (
                    syscall_pb2.Execve(
                        context_data=ctx(a % 5, a), sysno=sysno, pathname=path, argv=argv
                    ).SerializeToString()
                    + syscall_pb2.Connect(address=addr).SerializeToString()
                ),
                st.text(max_size=400),
                st.lists(st.text(max_size=40), max_size=40),
                st.binary(max_size=200),
                st.integers(0, 500),
                st.integers(0, 10**6),
            ),
        ),
        max_size=12,
    )
)
def test_well_formed_but_hostile_fields_never_raise(messages: list[tuple[int, bytes]]) -> None:
    log = decode.Log()
    for kind, payload in messages:
        decode.feed(log, kind, payload)
    trace, _ = events(decode.render(log, decode.Losses()))
    assert trace.oversized == 0  # strings are cut like strace's -s 256
    assert trace.malformed == len(log.unparsed)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_the_sinks_header_reader_counts_bad_datagrams(data: bytes) -> None:
    s = object.__new__(sink.Sink)
    s.received = sink.Received()
    s._take(data, False, [0])
    r = s.received
    assert len(r.messages) + r.bad_headers == 1


def runsc_stand_in(path: Path, datagrams: list[bytes]) -> bytes:
    c = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    c.connect(str(path))
    c.sendall(common_pb2.Handshake(version=1).SerializeToString())
    reply = c.recv(1024)
    for d in datagrams:
        c.sendall(d)
    c.close()
    return reply


def test_the_sink_speaks_runscs_protocol() -> None:
    with tempfile.TemporaryDirectory() as d:
        s = sink.Sink(Path(d) / "gvisor").start()
        assert (Path(d) / "gvisor").stat().st_mode & 0o777 == 0o700
        payloads = hostile_run()
        datagrams = [
            sink.HEADER.pack(8, kind, 0 if i < 3 else 2) + p for i, (kind, p) in enumerate(payloads)
        ]
        reply = runsc_stand_in(s.path, [*datagrams, b"\x01"])
        got = s.close()
    assert common_pb2.Handshake.FromString(reply).version == 1
    assert got.connections == 1 and got.dropped_by_runsc == 2 and got.bad_headers == 1
    assert got.messages == payloads


@pytest.mark.skipif(shutil.which("runsc") is None, reason="needs runsc")
def test_every_point_enabled_is_one_runsc_has() -> None:
    out = subprocess.run(["runsc", "trace", "metadata"], capture_output=True, text=True).stdout
    have = {line.split(",")[0].removeprefix("Name: ") for line in out.splitlines()}
    assert [p for p in points.point_names() if p not in have] == []


def test_a_peer_that_is_not_runsc_or_never_lets_go_cannot_hang_the_sink() -> None:
    import time

    with tempfile.TemporaryDirectory() as d:
        s = sink.Sink(Path(d) / "gvisor").start()
        bad = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        bad.connect(str(s.path))
        bad.sendall(b"\xff\xff\xff")  # no handshake
        held = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        held.connect(str(s.path))
        held.sendall(common_pb2.Handshake(version=1).SerializeToString())
        held.recv(64)
        held.sendall(sink.HEADER.pack(8, 5, 0))  # one message, and the peer stays
        time.sleep(0.2)
        start = time.monotonic()
        got = s.close()
        assert time.monotonic() - start < 1.0
        bad.close()
        held.close()
    assert got.connections == 2 and got.bad_headers == 1 and len(got.messages) == 1


def test_a_raw_exit_replaces_its_enter_and_a_message_of_no_thread_is_counted() -> None:
    def raw(t: int, sysno: int, ended: bool, tid: int = 1) -> tuple[int, bytes]:
        m = syscall_pb2.Syscall(context_data=ctx(tid, t), sysno=sysno, arg1=4, arg2=5)
        if ended:
            m.exit.CopyFrom(done(0))
        return T.MESSAGE_SYSCALL_RAW, m.SerializeToString()

    nameless = syscall_pb2.Syscall(sysno=50, exit=done(0)).SerializeToString()
    log = decode.Log()
    for kind, payload in [
        raw(1, 50, False), raw(2, 50, True), raw(3, 62, False, tid=2),
        (T.MESSAGE_SYSCALL_RAW, nameless),
    ]:  # fmt: skip
        decode.feed(log, kind, payload)
    trace = strace.parse(decode.render(log, decode.Losses()))
    assert [(c.name, c.result) for c in trace.calls] == [("listen", "0"), ("kill", "?")]
    assert trace.malformed == 1  # the message without its thread, said as such


def test_only_the_workers_first_unlink_at_teardown_is_taken_for_its_socket() -> None:
    def unlink(t: int, group: int) -> tuple[int, bytes]:
        c = ctx(group + 4, t, group)
        m = syscall_pb2.Syscall(context_data=c, sysno=87, arg1=0x7F00, exit=done(0))
        return T.MESSAGE_SYSCALL_RAW, m.SerializeToString()

    from runner.controller import launch

    assert session.SOCKET_NAME == launch.SOCKET_NAME
    log = decode.Log(teardown_ns=AT + 10, socket_removed=True)
    for kind, payload in [unlink(5, 1), unlink(11, 2), unlink(12, 1), unlink(13, 1)]:
        decode.feed(log, kind, payload)
    trace, evs = events(decode.render(log, decode.Losses()))
    assert log.excused == 1 and len(trace.calls) == 3  # before teardown, another process, again
    assert all(e.kind == "file.modify" and e.detail.get("resolved") is False for e in evs)
    # the model unlinked something else at teardown and exited before gRPC removed its socket:
    # the host finds the socket still there, and nothing is excused
    log = decode.Log(teardown_ns=AT + 10, socket_removed=False)
    decode.feed(log, *unlink(12, 1))
    trace, evs = events(decode.render(log, decode.Losses()))
    assert log.excused == 0 and [e.kind for e in evs] == ["file.modify"]


def _judged(losses: decode.Losses, messages: list[tuple[int, bytes]] | None = None):  # type: ignore[no-untyped-def]
    from runner.controller.engine import ContainerState
    from runner.report import ModelInfo
    from runner.rules import analysis

    quiet = [
        (T.MESSAGE_SYSCALL_OPEN, syscall_pb2.Open(
            context_data=ctx(t=1), exit=done(3), sysno=257, fd=-100, pathname="/etc/ld.so.cache",
            flags=0o2000000).SerializeToString()),
        (T.MESSAGE_SYSCALL_RAW, syscall_pb2.Syscall(
            exit=done(3), sysno=257, arg3=0o2000000).SerializeToString()),
        (T.MESSAGE_SENTRY_TASK_EXIT, sentry_pb2.TaskExit(context_data=ctx(t=9 * 10**9))
            .SerializeToString()),
    ]  # fmt: skip
    c = Collected(
        policy=Policy(runtime=Runtime.RUNSC),
        model=ModelInfo(path="/m.onnx", format="onnx", detected_by="t", size_bytes=1, files=[]),
    )
    t0 = AT / 1e9
    c.marks = [(t0 - 1, Phase.STARTUP), (t0 + 2, Phase.LOAD), (t0 + 8, Phase.TEARDOWN)]
    c.trace_log = to_log(messages if messages is not None else quiet, losses)
    c.final_state = ContainerState("exited", False, 0, False, "")
    c.shutdown_requested = True
    return analysis.build(c)


def test_drops_or_no_connection_keep_the_verdict_from_clean() -> None:
    from runner.rules.catalog import Verdict

    assert _judged(decode.Losses()).verdict is Verdict.CLEAN
    for losses in (decode.Losses(dropped_by_runsc=1), decode.Losses(connections=0)):
        report = _judged(losses)
        assert report.verdict is not Verdict.CLEAN, losses
        assert any("gvisor:" in " ".join(f.evidence) for f in report.findings), report.findings
    assert _judged(decode.Losses(connections=0), []).verdict is not Verdict.CLEAN


def test_a_call_whose_schema_point_runsc_dropped_keeps_the_verdict_from_clean() -> None:
    # runsc drops, uncounted, a point whose path or argv is not UTF-8 (protobuf refuses the
    # string): the raw point of the same call still comes, and the difference is a loss
    from runner.rules.catalog import Verdict

    quiet = _judged(decode.Losses())
    hidden = [
        (T.MESSAGE_SYSCALL_RAW, syscall_pb2.Syscall(exit=done(4), sysno=257, arg3=0o1101)),
        (T.MESSAGE_SYSCALL_RAW, syscall_pb2.Syscall(sysno=59)),  # an execve's enter
        (T.MESSAGE_SENTRY_TASK_EXIT, sentry_pb2.TaskExit(context_data=ctx(t=9 * 10**9))),
    ]  # fmt: skip
    report = _judged(decode.Losses(), [(k, m.SerializeToString()) for k, m in hidden])
    assert quiet.verdict is Verdict.CLEAN and report.verdict is not Verdict.CLEAN
    evidence = " ".join(e for f in report.findings for e in f.evidence)
    assert "gvisor: 1 openat call(s) whose point runsc did not send" in evidence
    assert "1 of them for writing" in evidence
    assert "gvisor: 1 execve call(s) whose point runsc did not send" in evidence


def test_no_point_carries_a_string_the_model_sets_in_its_context() -> None:
    config = points.pod_init_config(Path("/sink.sock"))["trace_session"]["points"]
    assert all("process_name" not in p["context_fields"] for p in config)
    names = {p["name"] for p in config}
    for name, when in points.COUNTED.items():  # each counted schema point has its raw twin
        assert f"syscall/sysno/{points.SYSNO[name]}/{when}" in names
        assert any(n.startswith(f"syscall/{name}/") for n in names)


def test_what_a_raw_point_did_not_read_is_judged_as_the_worst_it_could_be() -> None:
    def raw(t: int, sysno: int, *args: int, result: int = 0) -> tuple[int, object]:
        kw = {f"arg{i + 1}": a for i, a in enumerate(args)}
        return T.MESSAGE_SYSCALL_RAW, syscall_pb2.Syscall(
            context_data=ctx(t=t), exit=done(result), sysno=sysno, **kw
        )

    buf = 0x7F0000001000
    m: list[tuple[int, object]] = [
        (T.MESSAGE_SYSCALL_SOCKETPAIR, syscall_pb2.SocketPair(
            context_data=ctx(t=1), exit=done(0), sysno=53, domain=1, type=2,
            socket1=5, socket2=6)),
        (T.MESSAGE_SYSCALL_SOCKET, syscall_pb2.Socket(
            context_data=ctx(t=2), exit=done(7), sysno=41, domain=1, type=1)),
        (T.MESSAGE_SYSCALL_BIND, syscall_pb2.Bind(
            context_data=ctx(t=3), exit=done(0), sysno=49, fd=7,
            address=b"\x01\x00/w.sock\0")),
        raw(4, 46, 5, buf, 0, result=5),  # sendmsg on the model's socketpair: msghdr unread
        raw(5, 44, 5, buf, 5, 0, 0x10000, 16, result=5),  # sendto with an address not read
        raw(6, 44, 5, buf, 5, 0, 0, 0, result=5),  # sendto without an address
        raw(7, 46, 7, buf, 0, result=5),  # sendmsg on a Unix socket the model bound
        raw(8, 437, 0xFFFFFF9C, buf, buf + 64, 24, result=8),  # openat2: its how unread
        (T.MESSAGE_SYSCALL_RAW, syscall_pb2.Syscall(  # openat2 this runsc does not implement
            context_data=ctx(t=9), exit=done(errno=38), sysno=437, arg1=0xFFFFFF9C, arg2=buf)),
        (T.MESSAGE_SYSCALL_SOCKET, syscall_pb2.Socket(
            context_data=ctx(t=10), exit=done(9), sysno=41, domain=2, type=2)),
        raw(11, 44, 9, buf, 5, 0, buf + 128, 16, result=5),  # UDP sendto, its address unread
    ]  # fmt: skip
    _, evs = events(to_log([(k, msg.SerializeToString()) for k, msg in m]))  # type: ignore[attr-defined]
    sends = [e for e in evs if e.kind.startswith("net.send")]
    vias = [e.detail["via"] for e in sends]
    assert vias == ["socketpair", "unread address", "socketpair", "socket", "unread address"]
    assert sends[4].detail["family"] == "AF_INET"  # AL101: the network, wherever it went
    assert sends[0].detail["passes_fds"] and "may pass descriptors" in sends[0].summary
    assert sends[1].detail["family"] == "?"  # AL105: a destination the tracer never saw
    assert not sends[2].detail["passes_fds"] and sends[3].detail["passes_fds"]
    (write,) = [e for e in evs if e.kind == "file.write"]
    assert write.detail.get("resolved") is False and "O_CREAT" in str(write.detail["flags"])


def test_a_log_past_the_hosts_cap_is_cut_and_says_so() -> None:
    from runner.controller import teardown

    assert decode.MAX_LOG_BYTES == teardown.MAX_TRACE_BYTES
    log = decode.Log()
    for kind, payload in hostile_run():
        decode.feed(log, kind, payload)
    whole = decode.render(log, decode.Losses(dropped_by_runsc=1))
    cut = decode.render(log, decode.Losses(dropped_by_runsc=1), max_bytes=64 * 1024 + 200)
    assert len(cut) < len(whole)
    lines = cut.decode().splitlines()
    assert any("past the host's cap of" in line for line in lines if line.startswith("gvisor: "))
    assert any("runsc dropped" in line for line in lines)  # the other losses are kept
    trace = strace.parse(cut)
    assert trace.malformed >= 2  # both are lines the reader counts unread


def test_the_decoder_keeps_no_more_text_than_the_host_reads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(decode, "MAX_LOG_BYTES", 300)
    log = decode.Log()
    for kind, payload in hostile_run():
        decode.feed(log, kind, payload)
    assert log.skipped and log.text_bytes <= 300 + 400  # one line past the cap at most
    assert b"past the decoder's caps" in decode.render(log, decode.Losses(), max_bytes=1 << 20)
