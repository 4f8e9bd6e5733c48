"""Hostile joblib, skops and NumPy files in a real sandbox, each through its format's own code
path: contained (no marker on the host, the host's files unchanged, no container left) and
detected, with the static finding (read on the host, by bytes) and the dynamic one (what the
sandbox saw the payload do) side by side in the report."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest

import runner
from tests.hostile import sklearn_hostile
from tests.hostile.corpus import Fixture
from tests.hostile.test_corpus import run_fixture

pytest.importorskip("sklearn")

Build = Callable[[Path, str], Path]
# name, builder, static ids, dynamic ids (every payload runs while the file loads)
CASES: list[tuple[str, Build, set[str], set[str]]] = [
    ("joblib command", sklearn_hostile.joblib_command, {"AL611"}, {"AL601", "AL202"}),
    (
        "joblib zlib command",
        partial(sklearn_hostile.joblib_command, compress="zlib"),
        {"AL611"},
        {"AL601", "AL202"},
    ),
    (
        "joblib object array",
        sklearn_hostile.joblib_object_array,
        {"AL611"},
        {"AL601", "AL202"},
    ),
    (
        "joblib gzip object array",
        partial(sklearn_hostile.joblib_object_array, compress="gzip"),
        {"AL611"},
        {"AL601", "AL202"},
    ),
    ("npz object array", sklearn_hostile.npz_object_array, {"AL611", "AL940"}, {"AL601"}),
    ("skops posix.system", sklearn_hostile.skops_reduce, {"AL611", "AL942"}, {"AL202"}),
    # attacker review: once clean on the host (the nested pickle skipped as array bytes), and
    # once only "breaks off" (the command in a second xz stream)
    ("joblib xz dtype singleton", sklearn_hostile.joblib_dtype_singleton, {"AL701"}, {"AL601"}),
    ("joblib xz second stream", sklearn_hostile.joblib_second_stream, {"AL611"}, {"AL601"}),
]


@pytest.mark.parametrize(("name", "build", "static", "dynamic"), CASES, ids=[c[0] for c in CASES])
def test_contained_and_detected(
    name: str, build: Build, static: set[str], dynamic: set[str], tmp_path: Path
) -> None:
    fx = Fixture(name, name, build, frozenset(static | dynamic))
    report, _error = run_fixture(fx, tmp_path)  # asserts containment from the host
    seen_static = {f.rule_id for f in report.findings if f.source.value == "static"}
    seen_dynamic = {f.rule_id for f in report.findings if f.source.value != "static"}
    assert report.verdict is runner.Verdict.MALICIOUS, sorted(seen_static | seen_dynamic)
    assert static <= seen_static, (sorted(seen_static), [f.evidence for f in report.findings])
    assert dynamic <= seen_dynamic, (sorted(seen_dynamic), [f.evidence for f in report.findings])
