"""What a batch evaluation produced: results.jsonl read back (to resume), the summary, and the
exit code over all the models."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NotRequired, TypedDict

from pydantic import ValidationError

from runner.batch.evaluation import EvalResult
from runner.errors import EXIT_ERROR, EXIT_FINDINGS, EXIT_OK
from runner.rules.catalog import Severity, Verdict


@dataclass(frozen=True)
class ReadResults:
    """The results in a results.jsonl, and the numbers of the lines that were not results (a
    line cut off when the batch was killed, say)."""

    results: list[EvalResult]
    bad_lines: list[int] = field(default_factory=list)


def read_results(path: Path) -> ReadResults:
    results: list[EvalResult] = []
    bad: list[int] = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            results.append(EvalResult.model_validate_json(line))
        except ValidationError:
            bad.append(n)
    return ReadResults(results, bad)


class Worst(TypedDict):
    path: str
    repo: NotRequired[str]  # ORG/NAME@REVISION, for a model from the Hugging Face cache
    verdict: str
    findings: list[str]


class Slowest(TypedDict):
    path: str
    repo: NotRequired[str]
    seconds: float


class Failed(TypedDict):
    path: str
    repo: NotRequired[str]
    error: str


class Baselines(TypedDict):
    checked: int
    drift: list[str]


class Summary(TypedDict):
    """summary.json: counts by verdict, the worst models, the slowest, the errors."""

    models: int
    by_verdict: dict[str, int]
    worst: list[Worst]
    slowest: list[Slowest]
    errors: list[Failed]
    load_only: int
    baselines: Baselines


class _Repo(TypedDict, total=False):
    repo: str


def _repo(r: EvalResult) -> _Repo:
    """ORG/NAME@REVISION for a model from the Hugging Face cache; nothing otherwise."""
    return {"repo": f"{r.repo_id}@{r.revision or '?'}"} if r.repo_id else {}


def summary(results: Sequence[EvalResult]) -> Summary:
    by_verdict = {v.value: 0 for v in Verdict}
    for r in results:
        by_verdict[r.verdict.value] += 1
    worst = sorted(
        (r for r in results if r.findings),
        key=lambda r: max(Severity(s).rank for s in r.findings),
        reverse=True,
    )
    return {
        "models": len(results),
        "by_verdict": by_verdict,
        "worst": [
            Worst(path=r.path, verdict=r.verdict.value, findings=r.top_findings, **_repo(r))
            for r in worst[:10]
        ],
        "slowest": [
            Slowest(path=r.path, seconds=r.seconds, **_repo(r))
            for r in sorted(results, key=lambda r: -r.seconds)[:5]
        ],
        "errors": [
            Failed(path=r.path, error=error, **_repo(r)) for r in results if (error := r.error)
        ][:20],
        "load_only": sum(1 for r in results if not r.probed),
        "baselines": {
            "checked": sum(1 for r in results if r.baseline),
            "drift": [r.path for r in results if r.baseline == "drift"],
        },
    }


def exit_code(results: Sequence[EvalResult], fail_on: Severity) -> int:
    """That of `scan` over the worst model: 1 for findings at or above fail_on, else 3 when a
    model could not be evaluated, else 0."""
    if any(Severity(s).rank >= fail_on.rank for r in results for s in r.findings):
        return EXIT_FINDINGS
    if any(r.verdict is Verdict.ERROR for r in results):
        return EXIT_ERROR
    return EXIT_OK
