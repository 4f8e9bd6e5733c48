"""The pickle-soundness fixtures, run for real and checked from the host: contained (no marker
on the host, the host's files unchanged, the container gone), detected by the static read and by
what the sandbox saw (the rule ids each names, the verdict not clean), the report complete."""

from __future__ import annotations

from pathlib import Path

import pytest

import runner
from tests.hostile.corpus import Fixture
from tests.hostile.soundness_pickles import HIDDEN_FROM_STATIC, SOUNDNESS
from tests.hostile.test_corpus import run_fixture

STATIC_IDS = {"AL611", "AL612", "AL613", "AL614", "AL615", "AL616", "AL701"}


@pytest.mark.parametrize("fx", SOUNDNESS, ids=[f.name for f in SOUNDNESS])
def test_soundness_fixture(fx: Fixture, tmp_path: Path) -> None:
    report, error = run_fixture(fx, tmp_path)
    ids = {f.rule_id for f in report.findings}
    static = {f.rule_id for f in report.findings if f.source.value == "static"}
    dynamic = ids - static
    # detected, statically and in the sandbox, by the rules the fixture names
    assert report.verdict is runner.Verdict.MALICIOUS, (report.verdict, sorted(ids))
    assert fx.expect <= ids, (fx.name, sorted(ids), [f.evidence for f in report.findings])
    assert fx.expect & STATIC_IDS <= static and fx.expect - STATIC_IDS <= dynamic
    hidden = HIDDEN_FROM_STATIC.get(fx.name)
    if hidden:  # past the bound the read saw nothing: the bound's own finding is the proof
        assert hidden not in static and "AL601" in dynamic
    # complete
    names = [p.name for p in report.phases]
    assert names[0] == "preflight" and names[-1] == "teardown"
    assert report.resources is not None and report.resources.timeline
    assert report.tracer is not None and report.tracer.log_bytes > 0
    assert report.findings and all(f.evidence for f in report.findings)
    assert report.integrity is not None and not report.integrity.static.aborted
    if error is not None:
        assert report.error is not None and report.error.kind == type(error).__name__
