"""Benchmarks: run by `make bench`, never by `make test` (files are named bench_*.py).
Each prints a table of ratios against an in-process baseline measured in the same run, and
writes its figures as JSON under bench-results/. At the end of the run, one table says how the
figures written in this run stand against issue 17's targets (bench-results/targets.json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.benchmarks import targets

RESULTS = Path(__file__).resolve().parents[2] / "bench-results"
WRITTEN: dict[str, dict[str, object]] = {}  # the figures recorded in this session, by name


@pytest.fixture
def record() -> object:
    def write(name: str, figures: dict[str, object]) -> None:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / f"{name}.json").write_text(json.dumps(figures, indent=2) + "\n")
        WRITTEN[name] = figures

    return write


HERE = Path(__file__).resolve().parent
COLLECTED: list[str] = []  # the benchmarks of this session


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    COLLECTED.extend(i.nodeid for i in items if HERE in Path(str(i.path)).resolve().parents)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not COLLECTED:  # no benchmark in this session (make test only passed by this directory)
        return
    # through a JSON round trip, as a later reader of bench-results/ sees the figures
    results = {name: json.loads(json.dumps(figures)) for name, figures in WRITTEN.items()}
    rows = targets.judge(results)
    terminalreporter.write_sep("=", "issue 17 targets")
    for line in targets.table(rows).splitlines():
        terminalreporter.write_line(line)
    failed = [r.nodeid for r in terminalreporter.stats.get("failed", [])]
    if failed:  # a benchmark that failed recorded nothing: its rows say "not run"
        terminalreporter.write_line(f"failed in this run (no figures): {', '.join(failed)}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "targets.json").write_text(json.dumps(targets.as_json(rows), indent=2) + "\n")
