"""In a batch every failure is a value, and cancelling kills what runs (pure logic, no engine)."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.backends import local
from runner.backends.base import Outcome
from runner.batch import evaluation
from runner.rules.catalog import Verdict


def test_an_unexpected_exception_is_that_models_error_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = [tmp_path / "a.onnx", tmp_path / "b.onnx"]
    for m in models:
        m.write_bytes(b"\x08\x07")  # any bytes: evaluate_one is replaced below

    def evaluate_one(path: Path, *args: object) -> Outcome:
        if path.name == "a.onnx":
            raise RuntimeError("a parser did not survive \x1b[31mhostile\x1b[0m data")
        return evaluation.failed_result(path, "", ValueError("stand-in for a real result"))

    monkeypatch.setattr(evaluation, "evaluate_one", evaluate_one)
    monkeypatch.setattr(local._docker, "client", lambda: None)
    results = {Path(r.path).name: r for r in evaluation.evaluate(models, jobs=1)}
    assert set(results) == {"a.onnx", "b.onnx"}  # the batch went on
    a = results["a.onnx"]
    assert a.verdict is Verdict.ERROR
    assert a.error is not None and a.error.startswith("internal error: RuntimeError: a parser")
    assert "\x1b" not in a.error


def test_cancel_kills_every_running_sandbox() -> None:
    killed: list[str] = []

    class Box:
        def __init__(self, name: str) -> None:
            self.name = name

        def kill(self) -> None:
            killed.append(self.name)

    running = evaluation._Running()
    running.sandboxes.update({1: Box("a"), 2: Box("b")})
    local.cancel_running(running)
    assert running.cancelled.is_set()
    assert sorted(killed) == ["a", "b"]
