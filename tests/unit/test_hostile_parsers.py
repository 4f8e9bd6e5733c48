"""The tracer's log and the worker's audit log are hostile input: each nasty shape is read
without raising, in bounded memory, and what could not be read is counted."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from runner.rules import audit_log
from runner.rules.audit_log import AuditEvents, parse_audit_log
from runner.telemetry import strace as _strace
from tests.fixtures.traces import T0, line, s, shell_in_load, worker_exit, worker_start

# --- the tracer's log -------------------------------------------------------------------------


def test_numbers_of_any_size_are_malformed_and_clipped_never_raised() -> None:
    huge = "9" * 5000
    log = (
        worker_start()
        + f"{huge} {T0:.6f} execve({s('/bin/sh')}, [], 0x0) = 0\n"  # pid of 5000 digits
        + f"10 {huge}.5 execve({s('/bin/sh')}, [], 0x0) = 0\n"  # a timestamp of 5000 digits
        + line(10, 1.0, f"clone(child_stack=NULL, flags=SIGCHLD) = {huge}")  # a result
        + line(10, 1.1, f"connect(3, {{sa_family=AF_INET, sin_port=htons({huge})}}, 16) = 0")
        + f"-5 {T0:.6f} execve({s('/bin/sh')}, [], 0x0) = 0\n"  # negative pid
        + f"10 nan execve({s('/bin/sh')}, [], 0x0) = 0\n"
        + f"10 inf execve({s('/bin/sh')}, [], 0x0) = 0\n"
        + line(10, 1.2, f"+++ exited with {huge} +++")
    )
    trace = _strace.parse(log.encode())
    assert trace.malformed >= 7
    for c in trace.calls:
        assert 0 <= c.pid < 10**10 and c.time < 10**12
        assert len(c.result) <= 21
        assert all(len(run) <= 20 for a in c.args for run in a.split("(") if run.isdigit())


def test_invalid_utf8_nul_bytes_and_carriage_returns_do_not_split_or_raise() -> None:
    log = (
        worker_start().encode()
        + b"10 1800000001.000000 open\xff\xfeat(AT_FDCWD, \x00\x00) = 3\n"
        + b'10 1800000001.100000 execve("\\x2f\\x62\\x69\\x6e\\x2f\\x73\\x68", [], 0x0)'
        + b' = 0\r10 1800000001.2 execve("\\x2f\\x78", [], 0x0) = 0\n'  # \r is no line end
        + b"\x00" * 1000
        + b"\n"
    )
    trace = _strace.parse(log)
    assert trace.malformed >= 2
    # the \r did not make a second line: one execve after the worker's start, as strace wrote
    assert [c.name for c in trace.calls].count("execve") == 2


def test_a_huge_line_without_a_newline_is_read_from_its_head() -> None:
    head = line(10, 2.0, f"execve({s('/bin/sh')}, [{s('sh')}, {s('-c')}, ").rstrip("\n")
    log = worker_start().encode() + head.encode() + b"A" * (30 << 20)
    trace = _strace.parse(log)
    assert trace.oversized == 1 and trace.cut_mid_line
    execs = [c for c in trace.calls if c.name == "execve" and c.pid == 10 and c.result == "?"]
    assert execs and _strace.decode_string(execs[0].args[0]) == "/bin/sh"
    assert any("longer than" in p for p in trace.problems())


def test_strace_lines_injected_through_an_unescaped_string_are_counted() -> None:
    # with -xx no string is printed raw, so a raw quote means the line is not strace's own
    forged = line(10, 2.0, 'openat(AT_FDCWD, "/etc/shadow", O_RDONLY) = 3')
    trace = _strace.parse((worker_start() + forged).encode())
    assert trace.unescaped == 1 and trace.malformed >= 1
    # an escaped newline stays inside its string: no line is made of it
    inside = s("x\n10 1800000002.0 +++ exited with 0 +++")
    trace = _strace.parse(
        (worker_start() + line(10, 2.0, f"unlink({inside}) = -1 ENOENT")).encode()
    )
    assert trace.exits == {} and trace.unescaped == 0
    assert _strace.decode_string(trace.calls[-1].args[0]).startswith("x\n10 ")


def test_a_resume_without_its_start_is_still_a_call() -> None:
    log = worker_start() + line(20, 2.0, "<... execve resumed>) = 0")
    trace = _strace.parse(log.encode())
    assert trace.orphans == 1
    assert any(c.name == "execve" and c.pid == 20 and c.result == "0" for c in trace.calls)


def test_a_call_never_resumed_and_a_call_superseded_are_kept() -> None:
    log = (
        worker_start()
        + line(10, 2.0, f"execve({s('/bin/sh')}, [], 0x0 <unfinished ...>")
        + line(10, 2.1, "connect(3, {sa_family=AF_INET}, 16 <unfinished ...>")  # supersedes
        + line(11, 2.2, f"openat(AT_FDCWD, {s('/etc/shadow')}, O_RDONLY <unfinished ...>")
        + line(10, 2.3, "<... openat resumed>) = 3")  # resumes another process's call
    )
    trace = _strace.parse(log.encode())
    names = {(c.pid, c.name) for c in trace.calls}
    assert {(10, "execve"), (10, "connect"), (11, "openat"), (10, "openat")} <= names
    assert trace.orphans == 2 and trace.unfinished == 2


def test_past_the_call_cap_each_syscall_keeps_a_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_strace, "MAX_LINES", 50)
    monkeypatch.setattr(_strace, "PAST_CAP_PER_NAME", 5)
    flood = "".join(
        line(10, 1.5 + i * 1e-5, f"openat(AT_FDCWD, {s(f'/tmp/{i}')}, O_RDONLY) = -1 ENOENT")
        for i in range(500)
    )
    trace = _strace.parse((worker_start() + flood + shell_in_load() + worker_exit()).encode())
    assert any(_strace.decode_string(c.args[0]) == "/bin/sh" for c in trace.calls if c.args)
    assert trace.truncated and trace.skipped == 500 + 1 - 50 - 5
    assert any("not kept" in p for p in trace.problems())


# --- the audit log ----------------------------------------------------------------------------


def _log(tmp_path: Path, data: bytes) -> Path:
    p = tmp_path / "audit.jsonl"
    p.write_bytes(data)
    return p


def _line(t: object, name: str, args: list[object], seq: int | None) -> bytes:
    return json.dumps([t, name, args] + ([] if seq is None else [seq])).encode() + b"\n"


def test_hostile_json_lines_are_counted_not_raised(tmp_path: Path) -> None:
    good = _line(T0, "open", ["/x", "w"], 0)
    nasty = [
        b"[" * 30_000 + b"]" * 30_000 + b"\n",  # nested 30000 deep, short enough to be read
        b'[1e999, "open", [], 1]\n',  # inf
        b'[NaN, "open", [], 1]\n',
        b"[" + b"9" * 5000 + b', "open", [], 1]\n',  # a number of 5000 digits
        b'[1.0, "open", [' + b"9" * 5000 + b"], 1]\n",
        b'[1.0, "\xff\xfe", [], 1]\n',  # invalid UTF-8
        b'[1.0, "op\x00en", [], 1]\n',  # a raw NUL
        b'[1.0, "open", [], -1]\n',
        b'[1.0, "open", [], true]\n',
        b'[true, "open", [], 1]\n',
        b'{"t": 1}\n',
        b"[" * 100_000 + b"]" * 100_000 + b"\n",  # nested 100000 deep: too long to be read
    ]
    events, lost = parse_audit_log(_log(tmp_path, good + b"".join(nasty)))
    assert isinstance(events, AuditEvents) and len(events) == 1
    r = events.read
    assert r.malformed == len(nasty) - 1 and r.oversized == 1 and lost == len(nasty)
    assert r.lost() and not r.tampered()
    # the depth is checked before any JSON parser sees the line, whatever its length
    assert audit_log._decode(b'[1.0, "x", ' + b"[" * 100_000 + b"]" * 100_000 + b", 0]") is None


def test_a_huge_line_past_the_read_cap_is_counted(tmp_path: Path) -> None:
    data = _line(T0, "open", ["/x", "w"], 0) + b"A" * (20 << 20)  # 20 MiB, no newline
    events, _ = parse_audit_log(_log(tmp_path, data))
    r = events.read
    assert len(events) == 1 and r.bytes_unread == len(data) - audit_log.MAX_AUDIT_BYTES
    assert r.oversized == 1 and not r.cut_mid_line  # the cut is the read cap's, said there


def test_numbering_shows_lines_removed_rewritten_or_forged(tmp_path: Path) -> None:
    data = (
        _line(T0, "open", ["/a", "w"], 5)  # the first 5 are gone: the log was cut
        + _line(T0, "open", ["/b", "w"], 6)
        + _line(T0, "open", ["/c", "w"], 3)  # back: rewritten
        + _line(T0, "import", ["json"], None)  # no number: not the writer's
    )
    events, _ = parse_audit_log(_log(tmp_path, data))
    r = events.read
    assert (r.missing_numbers, r.out_of_order, r.unnumbered) == (5, 1, 1)
    assert len(r.tampered()) == 3


def test_each_process_numbers_its_own_lines(tmp_path: Path) -> None:
    # a forked child numbers its lines from 0 under its pid: no line reads as rewritten
    data = b"".join(
        json.dumps([T0, "open", [f"/tmp/{pid}-{i}", "w"], i, pid]).encode() + b"\n"
        for i in range(3)
        for pid in (100, 101)
    )
    data += json.dumps([T0, "open", ["/tmp/x", "w"], 9, 101]).encode() + b"\n"
    events, _ = parse_audit_log(_log(tmp_path, data))
    r = events.read
    assert len(events) == 7 and r.out_of_order == 0 and r.missing_numbers == 6


def test_the_writers_drop_records_and_the_event_cap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit_log, "MAX_AUDIT_EVENTS", 10)
    monkeypatch.setattr(audit_log, "PAST_CAP_PER_NAME", 2)
    lines = [_line(T0, "compile", [str(i)], i) for i in range(100)]
    lines += [_line(T0, audit_log.DROPPED_EVENT, ["4096"], 100)]
    lines += [_line(T0, "os.system", ["sh -c id"], 101)]
    events, lost = parse_audit_log(_log(tmp_path, b"".join(lines)))
    r = events.read
    assert r.writer_dropped == 4096 and r.unread_events == 100 - 10 - 2
    assert ("os.system" in {e[1] for e in events}) and lost == 4096 + 88


def test_missing_symlinked_and_fifo_logs_never_block_or_follow(tmp_path: Path) -> None:
    events, _ = parse_audit_log(tmp_path / "absent.jsonl")
    assert not events.read.present and events.read.tampered()
    secret = tmp_path / "host-secret.json"
    secret.write_bytes(_line(T0, "open", ["secret", "w"], 0))
    (tmp_path / "link.jsonl").symlink_to(secret)
    events, _ = parse_audit_log(tmp_path / "link.jsonl")
    assert len(events) == 0 and "symbolic link" in events.read.not_regular
    os.mkfifo(tmp_path / "fifo.jsonl")  # opening a FIFO for reading would block without a writer
    events, _ = parse_audit_log(tmp_path / "fifo.jsonl")
    assert len(events) == 0 and "not a regular file" in events.read.not_regular
