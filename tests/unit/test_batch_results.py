"""What a batch produced: results.jsonl read back, the summary, the exit code over the models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runner.batch.evaluation import EvalResult
from runner.batch.results import exit_code, read_results, summary
from runner.rules.catalog import Severity, Verdict


def _result(
    path: str, verdict: Verdict = Verdict.CLEAN, seconds: float = 1.0, **extra: Any
) -> EvalResult:
    fields: dict[str, Any] = {"findings": {}, "probed": True, **extra}
    return EvalResult(
        path=path, sha256=path * 4, format="onnx", verdict=verdict, seconds=seconds, **fields
    )


def test_read_results_skips_blank_lines_and_names_the_cut_ones(tmp_path: Path) -> None:
    a, b = _result("a"), _result("b", Verdict.MALICIOUS, findings={"high": 1})
    path = tmp_path / "results.jsonl"
    cut = b.model_dump_json()[:20]
    path.write_text(f"{a.model_dump_json()}\n\n{cut}\n{b.model_dump_json()}\n{{}}\n")
    found = read_results(path)
    assert found.results == [a, b]
    assert found.bad_lines == [3, 5]


def test_summary_counts_and_ranks() -> None:
    results = [
        _result("clean", seconds=9.0, probed=False),
        _result("low", Verdict.SUSPICIOUS, findings={"low": 2}, top_findings=["AL101"]),
        _result(
            "bad",
            Verdict.MALICIOUS,
            findings={"critical": 1, "low": 1},
            top_findings=["AL201", "AL101"],
            baseline="drift",
        ),
        _result(
            "broken", Verdict.ERROR, seconds=0.5, error="the worker crashed", baseline="no drift"
        ),
    ]
    s = summary(results)
    assert s["models"] == 4
    assert s["by_verdict"] == {"clean": 1, "suspicious": 1, "malicious": 1, "error": 1}
    assert [w["path"] for w in s["worst"]] == ["bad", "low"]
    assert s["worst"][0] == {"path": "bad", "verdict": "malicious", "findings": ["AL201", "AL101"]}
    assert [x["path"] for x in s["slowest"]] == ["clean", "low", "bad", "broken"]
    assert s["errors"] == [{"path": "broken", "error": "the worker crashed"}]
    assert s["load_only"] == 1
    assert s["baselines"] == {"checked": 2, "drift": ["bad"]}
    assert summary([])["by_verdict"] == {"clean": 0, "suspicious": 0, "malicious": 0, "error": 0}


def test_exit_code_is_that_of_the_worst_model() -> None:
    clean, error = _result("c"), _result("e", Verdict.ERROR, error="boom")
    low = _result("l", Verdict.SUSPICIOUS, findings={"low": 1})
    assert exit_code([clean], Severity.MEDIUM) == 0
    assert exit_code([clean, low], Severity.MEDIUM) == 0
    assert exit_code([clean, low], Severity.LOW) == 1
    assert exit_code([clean, error], Severity.MEDIUM) == 3
    assert exit_code([error, low], Severity.LOW) == 1  # findings come before errors
    assert exit_code([], Severity.MEDIUM) == 0
