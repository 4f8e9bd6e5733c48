"""Evidence fails closed: every cap, cut, drop, kill and silence is a finding with counts, and
the verdict stands on the tracer's evidence alone (rules AL901-AL908, pure logic)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.controller.engine import ContainerState
from runner.policy import Deadline, Policy
from runner.report import ModelInfo, Report
from runner.rules import analysis as _analysis
from runner.rules.audit_log import AuditEvents, AuditRead, parse_audit_log
from runner.rules.catalog import Verdict, verdict
from runner.rules.evaluation import evaluate, rule_of
from runner.telemetry import folding
from runner.telemetry.events import Event, Phase, Source
from tests.fixtures.traces import T0, line, s, shell_in_load, worker_exit, worker_start

Raw = list[tuple[float, str, list[str]]]


def collected(
    log: str, audit: Raw | AuditEvents | None = None, **kw: object
) -> _analysis.Collected:
    c = _analysis.Collected(
        policy=Policy(),
        model=ModelInfo(path="/m.pkl", format="pickle", detected_by="test", size_bytes=1, files=[]),
    )
    c.marks = [(T0 - 1, Phase.STARTUP), (T0 + 1, Phase.LOAD), (T0 + 5, Phase.INFER)]
    c.marks.append((T0 + 8, Phase.TEARDOWN))
    c.trace_log = log.encode()
    c.final_state = ContainerState("exited", False, 0, False, "")
    c.shutdown_requested = True
    if isinstance(audit, AuditEvents):
        c.worker_events = audit
    else:
        c.worker_events = AuditEvents(AuditRead(numbered=len(audit or [])))
        c.worker_events.extend(audit or [])
    for k, v in kw.items():
        setattr(c, k, v)
    return c


def ids(report: Report) -> set[str]:
    return {f.rule_id for f in report.findings}


def by_id(report: Report, rule_id: str) -> list[str]:
    return [e for f in report.findings if f.rule_id == rule_id for e in f.evidence]


def _connect(dt: float, port: int) -> str:
    addr = f"sin_addr=inet_addr({s('127.0.0.1')})"
    return line(
        10, dt, f"connect(3, {{sa_family=AF_INET, sin_port=htons({port}), {addr}}}, 16) = 0"
    )


def _bind(dt: float, port: int) -> str:
    addr = f"sin_addr=inet_addr({s('0.0.0.0')})"
    return line(10, dt, f"bind(3, {{sa_family=AF_INET, sin_port=htons({port}), {addr}}}, 16) = 0")


# --- AL901: the worker's word against the tracer's -------------------------------------------


def test_a_shell_the_worker_did_not_report_is_malicious_and_a_contradiction() -> None:
    quiet = [(T0 + 2, "socket.__new__", ["<socket>", "1", "1", "0"])]  # the data plane's own
    report = _analysis.build(collected(worker_start() + shell_in_load() + worker_exit(), quiet))
    assert report.verdict is Verdict.MALICIOUS and {"AL202", "AL901"} <= ids(report)
    assert any("started a process" in e for e in by_id(report, "AL901"))


def test_a_reported_shell_is_no_contradiction() -> None:
    told = [(T0 + 2, "os.system", ["sh -c id"])]
    report = _analysis.build(collected(worker_start() + shell_in_load() + worker_exit(), told))
    assert "AL202" in ids(report) and "AL901" not in ids(report)


def test_an_ip_socket_the_worker_did_not_report_is_suspicious() -> None:
    unix = [(T0 + 2, "socket.connect", ["<socket>", "/airlock/run/data.sock"])]
    report = _analysis.build(collected(worker_start() + _connect(2.0, 9) + worker_exit(), unix))
    assert {"AL101", "AL901"} <= ids(report) and report.verdict is not Verdict.CLEAN
    told = [(T0 + 2, "socket.connect", ["<socket>", "('127.0.0.1', 9)"])]
    report = _analysis.build(collected(worker_start() + _connect(2.0, 9) + worker_exit(), told))
    assert "AL901" not in ids(report)


@pytest.mark.parametrize(
    ("told", "done"),
    [
        ((T0 + 2, "os.system", ["sh -c id"]), shell_in_load()),
        ((T0 + 2, "subprocess.Popen", ["/usr/bin/id", "['id']"]), shell_in_load()),
        ((T0 + 2, "os.fork", []), line(10, 2.0, "clone(child_stack=NULL, flags=SIGCHLD) = 21")),
        ((T0 + 2, "socket.connect", ["<socket>", "('127.0.0.1', 9)"]), _connect(2.0, 9)),
        ((T0 + 2, "socket.getaddrinfo", ["x.invalid", "80"]), _connect(2.0, 53)),
        ((T0 + 2, "socket.bind", ["<socket>", "('0.0.0.0', 80)"]), _bind(2.0, 80)),
    ],
)
def test_the_tracer_alone_reaches_the_workers_verdict_class(
    told: tuple[float, str, list[str]], done: str
) -> None:
    """Each rule the worker's events trigger, and what the tracer sees of the same act: the
    host's evidence alone gives a verdict at least as grave."""
    report = _analysis.build(collected(worker_start() + done + worker_exit(), [told]))
    worker = [f for f in report.findings if f.source is Source.WORKER]
    host = [f for f in report.findings if f.source in (Source.TRACER, Source.HOST)]
    assert worker, report.findings
    order = [Verdict.CLEAN, Verdict.SUSPICIOUS, Verdict.MALICIOUS]
    assert order.index(verdict(host, False)) >= order.index(verdict(worker, False))


def test_a_quiet_run_with_a_quiet_log_is_clean() -> None:
    report = _analysis.build(collected(worker_start() + worker_exit(), []))
    assert report.verdict is Verdict.CLEAN and report.findings == []


# --- AL902, AL903, AL904: the audit log lost, incomplete, tampered with ----------------------


def test_a_missing_audit_log_after_the_model_ran_is_a_finding(tmp_path: Path) -> None:
    events, _ = parse_audit_log(tmp_path / "audit.jsonl")
    report = _analysis.build(collected(worker_start() + worker_exit(), events))
    assert "AL902" in ids(report) and report.verdict is Verdict.SUSPICIOUS
    assert any("missing" in e for e in by_id(report, "AL902"))


def test_a_renumbered_log_and_a_full_log_are_findings_with_counts(tmp_path: Path) -> None:
    p = tmp_path / "audit.jsonl"
    rows = [[T0 + 2, "open", ["/tmp/x", "w"], 7], [T0 + 2, "airlock.audit.dropped", ["64"], 8]]
    p.write_text("".join(json.dumps(r) + "\n" for r in rows) + "[not json\n")
    events, lost = parse_audit_log(p)
    report = _analysis.build(collected(worker_start() + worker_exit(), events))
    assert {"AL902", "AL903"} <= ids(report) and lost == 65
    assert any("7 numbered line(s) missing" in e for e in by_id(report, "AL902"))
    assert any(e.startswith("64 event(s)") for e in by_id(report, "AL903"))
    assert any(e.startswith("1 line(s) that do not parse") for e in by_id(report, "AL903"))


def test_a_log_of_nothing_but_garbage_is_lost_not_just_incomplete(tmp_path: Path) -> None:
    p = tmp_path / "audit.jsonl"
    p.write_bytes(b"\x00garbage\n" * 5)
    events, _ = parse_audit_log(p)
    report = _analysis.build(collected(worker_start() + worker_exit(), events))
    assert {"AL902", "AL903"} <= ids(report)
    assert any("none of its 5 line(s)" in e for e in by_id(report, "AL902"))


@pytest.mark.parametrize(
    "call",
    [
        f"openat(AT_FDCWD, {s('/airlock/run/audit.jsonl')}, O_WRONLY|O_TRUNC) = 5",
        f"truncate({s('/airlock/run/audit.jsonl')}, 0) = 0",
        f"unlink({s('/airlock/run/audit.jsonl')}) = 0",
        f"openat(AT_FDCWD, {s('/proc/self/fd/4')}, O_WRONLY|O_TRUNC) = 5",
        f"rename({s('/tmp/forged')}, {s('/airlock/run/audit.jsonl')}) = 0",
    ],
)
def test_the_tracer_seeing_the_audit_log_rewritten_is_malicious(call: str) -> None:
    report = _analysis.build(collected(worker_start() + line(10, 2.0, call) + worker_exit(), []))
    assert "AL904" in ids(report) and report.verdict is Verdict.MALICIOUS


# --- AL905-AL908: the trace cut, the folder's cap, a kill, what could not be read ----------


def test_a_trace_cut_at_the_hosts_read_cap_is_a_finding_not_tampering() -> None:
    c = collected(worker_start() + line(10, 2.0, "openat(AT_FDCWD, "), [])
    c.trace_log_size = 10 << 30  # teardown read only the head of a 10 GiB log
    report = _analysis.build(c)
    assert "AL905" in ids(report) and "AL404" not in ids(report)
    assert report.verdict is Verdict.SUSPICIOUS
    assert any("host's cap" in e for e in by_id(report, "AL905"))


def test_the_read_cap_is_seen_without_teardown_recording_the_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from runner.controller import teardown

    log = worker_start() + line(10, 2.0, "openat(AT_FDCWD, ")
    monkeypatch.setattr(teardown, "MAX_TRACE_BYTES", len(log.encode()))
    report = _analysis.build(collected(log, []))
    assert "AL905" in ids(report) and report.verdict is not Verdict.CLEAN


def test_malformed_trace_lines_are_a_finding_with_counts() -> None:
    log = worker_start() + "garbage\n" * 3 + line(20, 2.0, "<... execve resumed>) = 0")
    report = _analysis.build(collected(log + worker_exit(), []))
    evidence = by_id(report, "AL905")
    assert any(e.startswith("3 line(s) not in strace's format") for e in evidence)
    assert any(e.startswith("1 call(s) resumed without their start") for e in evidence)
    assert "AL201" in ids(report)  # the exec resumed without its start still counts


def test_a_kill_before_the_worker_exit_is_a_finding(tmp_path: Path) -> None:
    log = worker_start() + line(10, 2.0, f"openat(AT_FDCWD, {s('/x')}, O_RDONLY <unfinished ...>")
    c = collected(log, [], killed_by_host=True, deadline=Deadline.LOAD)
    c.final_state = ContainerState("exited", False, 137, False, "")
    report = _analysis.build(c)
    assert {"AL907", "AL503"} <= ids(report) and "AL404" not in ids(report)
    evidence = by_id(report, "AL907")
    assert any("load deadline" in e for e in evidence)
    assert any("1 call(s) never finished" in e for e in evidence)


def test_events_past_the_folders_cap_keep_every_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(folding, "EXACT_LIMIT", 20)
    flood = "".join(
        line(10, 1.5 + i * 1e-5, f"openat(AT_FDCWD, {s(f'/tmp/d{i % 7}/{i}')}, O_WRONLY) = -1")
        for i in range(3000)
    )
    report = _analysis.build(collected(worker_start() + flood + shell_in_load() + worker_exit()))
    assert {"AL202", "AL201", "AL302", "AL906"} <= ids(report)
    assert report.verdict is Verdict.MALICIOUS
    writes = next(f for f in report.findings if f.rule_id == "AL302")
    assert writes.event_count == 3000  # every write counted, folded or not


def test_entries_of_another_shape_are_counted_never_raised() -> None:
    raw: list[object] = [(T0 + 2, "os.system", ["id"]), ("x",), None, (float("nan"), 3, 7)]
    c = collected(worker_start() + worker_exit(), [])
    c.worker_events.extend(raw)  # type: ignore[arg-type]
    report = _analysis.build(c)
    assert {"AL202", "AL908"} <= ids(report)
    assert any("2 audit entr" in e for e in by_id(report, "AL908"))
    report.model_dump_json()  # the report serialises (no NaN time, no lone surrogate)


def test_a_report_with_undecodable_paths_still_serialises() -> None:
    path = '"\\x2f\\x74\\x6d\\x70\\x2f\\xff\\xfe"'  # /tmp/ and two bytes that are not UTF-8
    log = worker_start() + line(10, 2.0, f"execve({path}, [], 0x0) = -1 ENOENT") + worker_exit()
    report = _analysis.build(collected(log, []))
    assert "AL201" in ids(report)
    assert "\\xff" in report.model_dump_json()


# --- folding ---------------------------------------------------------------------------------


def _ev(i: int, kind: str, path: str, source: Source = Source.TRACER) -> Event:
    return Event(
        time=T0 + i, phase=Phase.LOAD, source=source, kind=kind, summary=f"{kind} {path}",
        detail={"path": path},
    )  # fmt: skip


def test_folding_is_bounded_and_keeps_every_rule_phase_and_count() -> None:
    kinds = ["file.write", "file.probe", "file.sensitive_read", "process.exec", "file.modify"]
    events = [
        _ev(i, kinds[i % 5], f"/{['tmp', 'etc', 'root', 'bin'][i % 4]}/{i}/f")
        for i in range(200_000)
    ]
    events += [_ev(1, "process.exec", "/bin/sh")]
    f = folding.Folder(classify=rule_of, exact_limit=100, coarse_limit=50, kind_limit=10)
    for e in events:
        f.add(e)
    out = f.events
    assert len(out) <= 100 + 50 + 10 + 200 and f.folded == len(events) - 100
    assert sum(e.count for e in out) == len(events)
    whole = {(x.rule_id, x.phase, x.source) for x in evaluate(events, _no_facts())}
    folded = evaluate(out, _no_facts())
    assert {(x.rule_id, x.phase, x.source) for x in folded} == whole
    counts = {x.rule_id: x.event_count for x in evaluate(events, _no_facts())}
    assert {x.rule_id: x.event_count for x in folded} == counts
    assert "AL202" in counts  # the one shell among 200000 events


def test_a_flood_from_one_source_does_not_fold_the_other() -> None:
    f = folding.Folder(classify=rule_of, exact_limit=10)
    for i in range(1000):
        f.add(_ev(i, "file.write", f"/tmp/{i}"))
    f.add(_ev(1, "python.pickle.find_class", "posix", Source.WORKER))
    worker = [e for e in f.events if e.source is Source.WORKER]
    assert worker and "folded" not in worker[0].summary


def _no_facts() -> object:
    from runner.rules.evaluation import HostFacts

    return HostFacts()


# --- the worker's writer (run here without installing its hook) ------------------------------


def test_the_writer_numbers_lines_and_records_its_drops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runner.worker import audit

    p = tmp_path / "audit.jsonl"
    with p.open("a", encoding="utf-8") as f:
        monkeypatch.setattr(audit, "_log", f)
        monkeypatch.setattr(audit, "_log_bytes", 0)
        monkeypatch.setattr(audit, "_seq", 0)
        monkeypatch.setattr(audit, "_dropped", 0)
        monkeypatch.setattr(audit, "MAX_LOG_BYTES", 6000)
        monkeypatch.setattr(audit, "RESERVED_BYTES", 1000)
        for i in range(500):
            audit._locked(audit._write, "compile", [f"code {i}"])
    events, lost = parse_audit_log(p)
    r = events.read
    assert r.numbered == r.lines and not r.tampered()
    assert r.writer_dropped >= (500 - len(events)) // 2 and lost == r.writer_dropped
    assert audit._dropped == 500 - len(events)
