"""Teardown runs whatever happened before it, and a report is never lost: with a collection
step, the container's removal or the analysis made to fail inside a real sandbox run, no
container, directory or mount is left behind, and the report (from the API, from `--report`,
from `eval`) says what failed, with verdict error."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import runner
from runner.batch import evaluation
from runner.controller import engine, teardown
from runner.rules import analysis
from tests.fixtures import models
from tests.hostile.soundness_host import leftovers

ROOT = Path(__file__).resolve().parents[2]


def _run(tmp_path: Path) -> runner.Sandbox:
    built = models.onnx_model(tmp_path, models.sample_input())
    sb = runner.Sandbox(built.path)
    with sb:
        sb.infer(models.sample_input())
    return sb


def test_a_failing_collection_step_leaves_nothing_and_the_verdict_is_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(path: Path) -> object:
        raise RuntimeError("the audit log reader fell over")

    monkeypatch.setattr(teardown, "parse_audit_log", broken)
    sb = _run(tmp_path)
    assert leftovers(sb.session) == []
    report = sb.report()
    assert report.verdict is runner.Verdict.ERROR
    assert report.error is not None and "reading the worker's audit log" in report.error.message
    assert any(n.startswith("teardown: reading the worker's audit log") for n in report.notes)
    assert report.resources is not None and report.tracer is not None  # the rest was collected


def test_an_engine_that_fails_in_teardown_still_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    removals: list[str] = []
    real_remove, real_finish = engine.remove, teardown.finish_container

    def flaky_remove(container: str) -> None:  # the first removal fails, as an engine may
        removals.append(container)
        if len(removals) == 1:
            raise runner.EngineError("removing the sandbox: the engine hung up")
        real_remove(container)

    def broken_state(container: str) -> object:
        raise runner.EngineError("inspecting the sandbox: the engine hung up")

    def finish(*args: object, **kwargs: object) -> object:  # the engine fails from here on
        monkeypatch.setattr(engine, "remove", flaky_remove)
        monkeypatch.setattr(engine, "state", broken_state)
        return real_finish(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(teardown, "finish_container", finish)
    sb = _run(tmp_path)
    monkeypatch.undo()
    assert len(removals) == 2 and leftovers(sb.session) == []
    report = sb.report()
    assert report.verdict is runner.Verdict.ERROR
    assert report.error is not None and "recording the container's state" in report.error.message


def test_an_analysis_that_raises_gives_a_minimal_report_with_verdict_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(c: analysis.Collected) -> runner.Report:
        raise RecursionError("hostile data nested too deep")

    monkeypatch.setattr(analysis, "build", broken)
    sb = _run(tmp_path)
    assert leftovers(sb.session) == []
    report = sb.report()
    assert report.verdict is runner.Verdict.ERROR
    assert report.error is not None and report.error.kind == "ReportError"
    assert "RecursionError" in report.error.message
    assert report.model.files and report.sandbox is not None  # what is known is kept


BROKEN_ANALYSIS = (
    "import sys, runner.rules.analysis as a, runner.cli as c\n"
    "def boom(c): raise RuntimeError('analysis failed \\x1b[2J')\n"
    "a.build = boom\n"
    "sys.exit(c.main())\n"
)


def test_the_command_line_writes_the_report_whatever_happened(tmp_path: Path) -> None:
    built = models.onnx_model(tmp_path, models.sample_input())
    report = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, "-c", BROKEN_ANALYSIS, "scan", str(built.path), "--report", str(report)],
        capture_output=True,
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 3, proc.stderr  # could not be evaluated
    assert b"\x1b" not in proc.stdout + proc.stderr
    data = json.loads(report.read_text())
    assert data["verdict"] == "error" and data["error"]["kind"] == "ReportError"
    assert leftovers(data["sandbox"]["session"]) == []


def test_eval_writes_the_report_of_a_model_whose_evaluation_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built = models.onnx_model(tmp_path, models.sample_input())

    def broken(*args: object) -> object:
        raise RuntimeError("a bug after the sandbox ran")

    monkeypatch.setattr(evaluation, "_model_sha", broken)
    out = tmp_path / "out"
    (result,) = evaluation.evaluate([built.path], out_dir=out, jobs=1)
    assert result.verdict is runner.Verdict.ERROR and result.error is not None
    assert "internal error: RuntimeError" in result.error and result.report is not None
    written = json.loads((out / result.report).read_text())
    assert written["verdict"] == "error" and written["sandbox"] is not None
    assert written["error"]["kind"] == "InternalError"
    assert leftovers(written["sandbox"]["session"]) == []
