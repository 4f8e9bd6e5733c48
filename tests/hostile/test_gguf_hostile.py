"""Hostile GGUF files in the sandbox, checked from the host: contained (no marker on the
host, the host's files unchanged, no container left) and detected (static and dynamic findings
side by side); a header out of bounds never crashes the controller and the report says AL961."""

from __future__ import annotations

import pytest

import runner
from tests.hostile.gguf_hostile import CORPUS, Hostile
from tests.hostile.test_corpus import Fixture, run_fixture

pytestmark = pytest.mark.docker


@pytest.mark.parametrize("fx", CORPUS, ids=[f.name for f in CORPUS])
def test_hostile_gguf(fx: Hostile, tmp_path: pytest.TempPathFactory) -> None:
    as_corpus = Fixture(fx.name, fx.technique, fx.build, fx.static)
    report, error = run_fixture(as_corpus, tmp_path)  # type: ignore[arg-type]  # contained
    static = {f.rule_id for f in report.findings if f.source.value == "static"}
    dynamic = {f.rule_id for f in report.findings if f.source.value != "static"}
    evidence = [(f.rule_id, f.evidence[:2]) for f in report.findings]
    assert report.verdict is not runner.Verdict.CLEAN
    assert fx.static <= static, evidence
    if fx.dynamic:
        assert fx.dynamic & dynamic, evidence
    assert fx.all_dynamic <= dynamic, evidence
    if fx.loads:
        assert error is None, (error, evidence)
    else:  # refused in the worker, said in one line; the static read still reported
        assert error is not None and report.error is not None, evidence
        assert "out of bounds" in report.error.message or report.error.message
