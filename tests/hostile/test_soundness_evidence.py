"""The evidence fixtures, checked from the host (tests/hostile/soundness_evidence.py):

- contained: no marker on the host, the host's files unchanged, the container gone;
- detected: the expected findings, and a verdict that stands on the host's evidence alone
  (the findings of the tracer and the host, without a word of the worker's or the static read);
- complete: phases, resources, the tracer's log, evidence in every finding, the error's cause,
  and a report that serialises.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import runner
from runner.rules.catalog import Verdict, verdict
from runner.telemetry.events import Source
from tests.hostile.soundness_evidence import CASES, Case
from tests.hostile.test_corpus import run_fixture

HOST_SIDE = (Source.TRACER, Source.HOST)


@pytest.mark.parametrize("case", CASES, ids=[c.fixture.name for c in CASES])
def test_evidence_fixture(case: Case, tmp_path: Path) -> None:
    fx = case.fixture
    report, error = run_fixture(fx, tmp_path)  # contained (checked inside)
    ids = {f.rule_id for f in report.findings}
    # detected, on the host's evidence alone
    assert fx.expect <= ids, (fx.name, sorted(ids), [f.evidence for f in report.findings])
    host = [f for f in report.findings if f.source in HOST_SIDE]
    assert verdict(host, could_not_evaluate=False) is case.host_verdict, [
        (f.rule_id, f.evidence) for f in host
    ]
    assert report.verdict in (Verdict.MALICIOUS, Verdict.SUSPICIOUS)
    # complete
    names = [p.name for p in report.phases]
    assert names[0] == "preflight" and names[-1] == "teardown"
    assert report.resources is not None and report.resources.timeline
    assert report.tracer is not None and report.tracer.log_bytes > 0
    assert report.findings and all(f.evidence for f in report.findings)
    if fx.error:
        assert error is not None and type(error).__name__ == fx.error, error
    if error is not None:
        assert report.error is not None and report.error.kind == type(error).__name__
    json.loads(report.model_dump_json())


def test_cases_cover_each_weakness_with_several_techniques() -> None:
    silenced = [c for c in CASES if "AL901" in c.fixture.expect]
    replaced = [c for c in CASES if "AL904" in c.fixture.expect]
    capped = [c for c in CASES if c.fixture.expect & {"AL903", "AL906"}]
    killed = [c for c in CASES if "AL907" in c.fixture.expect]
    assert len(silenced) >= 3 and len(replaced) >= 2 and len(capped) >= 3 and len(killed) >= 2
    assert len({c.fixture.name for c in CASES}) == len(CASES)
    assert all(isinstance(c.fixture.expect, frozenset) for c in CASES)
    assert runner.Verdict is Verdict
