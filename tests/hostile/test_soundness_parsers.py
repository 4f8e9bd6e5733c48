"""Parser abuse, code in metadata and torch.package archives (issue class 9), checked from the
host: contained (no marker on the host, the host's files unchanged, the container gone),
detected (the static, dynamic and measured rules each case names, a verdict that is not clean
unless the case is benign or its only finding is low) and complete (phases, resources, trace,
evidence on every finding).

The measured rules (AL508, AL509) are checked on the host's own load-window samples in the
report: the cost computed from them must cross its threshold, and the finding must be in the
report once the run's host facts carry the load cost (runner.rules.analysis._host_facts).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest

import runner
from runner.report import ModelInfo
from runner.rules import analysis, catalog, cost
from runner.telemetry.events import Phase
from runner.telemetry.resources import Sample
from tests.hostile.soundness_parsers import CASES, Case
from tests.hostile.test_corpus import _containers, _snapshot


def _facts_carry_load_cost() -> bool:
    """Whether the report is built with the load window's cost (a probe of the wiring: samples
    that cross the memory threshold, through analysis.build)."""
    samples = [
        Sample(time=t, phase=p, cpu_seconds=t, memory_bytes=m, pids=1, io_read_bytes=0,
               io_write_bytes=0)
        for t, p, m in ((0.0, Phase.STARTUP, 0), (1.0, Phase.LOAD, 4 << 30))
    ]  # fmt: skip
    model = ModelInfo(path="m.pkl", format="pickle", detected_by="", size_bytes=10, files=[])
    c = analysis.Collected(policy=runner.Policy(), model=model, samples=samples)
    return any(f.rule_id == "AL508" for f in analysis.build(c).findings)


def _run(case: Case, tmp_path: Path) -> tuple[runner.Report, np.ndarray | None]:
    marker = f"/tmp/airlock-parsers-{uuid.uuid4().hex}"
    models = tmp_path / "m"
    models.mkdir()
    (tmp_path / "canary.txt").write_text("the host's file, unchanged\n")
    path = case.build(models, marker)
    before = _snapshot(tmp_path)
    sb = runner.Sandbox(path, runner.Policy(**case.policy))  # type: ignore[arg-type]
    out = None
    try:
        with sb:
            if case.infer:
                out = sb.infer(np.ones((1, 4), np.float32))
    except runner.AirlockError:
        pass  # a file that does not load is still reported
    report = sb.report()
    assert not Path(marker).exists(), "the payload's marker appeared on the host"
    assert _snapshot(tmp_path) == before, "host files changed"
    assert _containers(sb.session) == []
    first = next(iter(out.values())) if out else None
    return report, first


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_parser_abuse_and_packages(case: Case, tmp_path: Path) -> None:
    report, output = _run(case, tmp_path)
    static = {f.rule_id for f in report.findings if f.source.value == "static"}
    dynamic = {f.rule_id for f in report.findings if f.source.value != "static"}
    why = [(f.rule_id, f.evidence) for f in report.findings]
    assert case.static <= static, why
    assert case.dynamic <= dynamic, why
    # complete
    names = [p.name for p in report.phases]
    assert names[0] == "preflight" and names[-1] == "teardown"
    assert report.resources is not None and report.resources.timeline
    assert report.tracer is not None and report.tracer.log_bytes > 0
    assert all(f.evidence for f in report.findings)
    if case.measured:
        measured = cost.load_cost(report.resources.timeline, report.model.size_bytes)
        ids = {catalog.BY_NAME[rule].id for rule, _m, _e in cost.cost_findings(measured)}
        assert case.measured <= ids, measured
        if _facts_carry_load_cost():
            assert case.measured <= dynamic, why
    if case.clean:
        assert report.verdict is runner.Verdict.CLEAN, why
        assert all(f.severity.value in ("info", "low") for f in report.findings), why
    else:
        assert report.verdict is not runner.Verdict.CLEAN, why
    if case.infer:
        assert output is not None and output.shape[0] == 1, report.notes
        assert report.model.format == ("torch-package" if "package" in case.name else "onnx")
