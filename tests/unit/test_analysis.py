"""Rules and verdicts over synthetic evidence (pure logic: no Docker needed)."""

from __future__ import annotations

import pytest

from runner.controller.engine import ContainerState
from runner.policy import Policy
from runner.report import ModelInfo
from runner.rules import analysis as _analysis
from runner.rules import catalog as rules
from runner.rules.catalog import Severity, Verdict
from runner.rules.pickle_globals import classify_global
from runner.telemetry.events import Phase
from tests.fixtures.traces import T0, line, s, shell_in_load, worker_exit, worker_start


def collected(
    log: str,
    *,
    exit_code: int = 0,
    killed: bool = False,
    worker_events: list[tuple[float, str, list[str]]] | None = None,
) -> _analysis.Collected:
    c = _analysis.Collected(
        policy=Policy(),
        model=ModelInfo(path="/m.pkl", format="pickle", detected_by="test", size_bytes=1, files=[]),
    )
    c.marks = [
        (T0 - 1, Phase.STARTUP),
        (T0 + 1.0, Phase.LOAD),
        (T0 + 5.0, Phase.INFER),
        (T0 + 8.0, Phase.TEARDOWN),
    ]
    c.trace_log = log.encode()
    c.final_state = ContainerState("exited", False, exit_code, False, "")
    c.killed_by_host = killed
    c.shutdown_requested = True
    c.worker_events = worker_events or []
    return c


def test_shell_in_load_is_malicious_and_attributed() -> None:
    report = _analysis.build(collected(worker_start() + shell_in_load() + worker_exit()))
    ids = {(f.rule_id, f.phase) for f in report.findings}
    assert ("AL202", Phase.LOAD) in ids and ("AL201", Phase.LOAD) in ids
    assert report.verdict is Verdict.MALICIOUS


def test_startup_phase_is_baseline() -> None:
    log = worker_start() + line(10, -0.5, f"openat(AT_FDCWD, {s('/.dockerenv')}, O_RDONLY) = 3")
    report = _analysis.build(collected(log + worker_exit()))
    assert report.findings == [] and report.verdict is Verdict.CLEAN


@pytest.mark.parametrize(
    ("log", "problem"),
    [
        (worker_start(), "exit record is missing"),
        (worker_start() + worker_exit(code=0), "exited with 137"),
        (worker_start() + worker_exit()[:-1], "mid-line"),
        ("", "empty or missing"),
    ],
)
def test_tracer_tampering(log: str, problem: str) -> None:
    c = collected(log, exit_code=137 if "137" in problem else 0)
    report = _analysis.build(c)
    tamper = [f for f in report.findings if f.rule_id == "AL404"]
    assert tamper and any(problem in e for e in tamper[0].evidence), report.findings
    assert report.verdict is Verdict.MALICIOUS


def test_no_tampering_when_the_host_killed_the_sandbox() -> None:
    report = _analysis.build(collected(worker_start(), exit_code=137, killed=True))
    assert "AL404" not in {f.rule_id for f in report.findings}


def test_worker_events_are_labelled_and_judged() -> None:
    events = [
        (T0 + 2, "pickle.find_class", ["posix", "system"]),
        (T0 + 2, "pickle.find_class", ["collections", "OrderedDict"]),
        (T0 + 6, "socket.getaddrinfo", ["x.invalid", "80"]),
    ]
    report = _analysis.build(collected(worker_start() + worker_exit(), worker_events=events))
    by_id = {f.rule_id: f for f in report.findings}
    assert by_id["AL601"].source.value == "worker" and by_id["AL601"].phase is Phase.LOAD
    assert by_id["AL606"].phase is Phase.INFER
    assert all(e.source.value == "worker" for e in report.events)


@pytest.mark.parametrize(
    ("module", "name", "expected"),
    [
        ("posix", "system", Severity.CRITICAL),
        ("builtins", "eval", Severity.CRITICAL),
        ("__builtin__", "exec", Severity.CRITICAL),
        ("runpy", "run_path", Severity.CRITICAL),
        ("pkgutil", "resolve_name", Severity.CRITICAL),
        ("uuid", "_popen", Severity.CRITICAL),
        ("torch._utils", "_rebuild_tensor_v2", None),
        ("collections", "OrderedDict", None),
        ("__builtin__", "set", None),
        ("numpy.core.multiarray", "_reconstruct", None),
        ("sklearn.linear_model", "LogisticRegression", Severity.MEDIUM),
    ],
)
def test_pickle_global_classification(module: str, name: str, expected: Severity | None) -> None:
    assert classify_global(module, name) == expected


def test_verdict_order() -> None:
    assert rules.verdict([], could_not_evaluate=False) is Verdict.CLEAN
    assert rules.verdict([], could_not_evaluate=True) is Verdict.ERROR


def test_rule_table_is_large_unique_and_documented() -> None:
    from pathlib import Path

    ids = [r.id for r in rules.RULES]
    assert len(ids) >= 15 and len(set(ids)) == len(ids)
    assert len({r.name for r in rules.RULES}) == len(ids)
    doc = (Path(__file__).resolve().parents[2] / "docs" / "rules.md").read_text()
    for r in rules.RULES:
        assert f"| {r.id} | {r.name} | {r.severity.value} |" in doc


def test_static_imports_and_disagreement_notes() -> None:
    c = collected(worker_start() + shell_in_load() + worker_exit())
    report = _analysis.build(c)
    assert any("disagree" in n and "found no dangerous import" in n for n in report.notes)
    c.static_imports = [("posix", "system", ""), ("?", "?", " (archive/data.pkl)")]
    report = _analysis.build(c)
    ids = {f.rule_id for f in report.findings}
    assert {"AL611", "AL612"} <= ids
    assert not any("disagree" in n for n in report.notes)
    quiet = collected(worker_start() + worker_exit())
    quiet.static_imports = [("builtins", "eval", "")]
    assert any("saw no code run" in n for n in _analysis.build(quiet).notes)
