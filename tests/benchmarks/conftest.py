"""Benchmarks: run by `make bench`, never by `make test` (files are named bench_*.py).
Each prints a table of ratios against an in-process baseline measured in the same run, and
writes its figures as JSON under bench-results/."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

RESULTS = Path(__file__).resolve().parents[2] / "bench-results"


@pytest.fixture
def record() -> object:
    def write(name: str, figures: dict[str, object]) -> None:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / f"{name}.json").write_text(json.dumps(figures, indent=2) + "\n")

    return write
