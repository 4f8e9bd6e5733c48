"""Pre-started sandboxes: fast to claim, each used for one model only, none left behind."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np

import runner
from tests.fixtures import hostile, models
from tests.sandbox.test_cli import sessions


def test_pool_serves_models_one_sandbox_each(tmp_path: Path) -> None:
    x = models.sample_input()
    built = models.onnx_model(tmp_path, x)
    marker = f"/tmp/airlock-pool-{uuid.uuid4().hex}"
    evil = hostile.write(tmp_path / "evil.pkl", hostile.shell_marker(marker))
    seen: set[str] = set()
    with runner.SandboxPool(size=1) as pool:
        sb = pool.sandbox(built.path)
        with sb:
            out = sb.infer(x)
        np.testing.assert_allclose(out["y"], built.reference["y"], rtol=0, atol=1e-6)
        report = sb.report()
        assert report.verdict is runner.Verdict.CLEAN, report.findings
        assert any("pre-started" in n for n in report.notes)
        seen.add(sb.session)
        bad = pool.sandbox(evil)
        with bad:
            pass
        evil_report = bad.report()
        assert evil_report.verdict is runner.Verdict.MALICIOUS
        assert {"AL202", "AL601"} <= {f.rule_id for f in evil_report.findings}
        assert not Path(marker).exists()
        seen.add(bad.session)
        assert len(seen) == 2  # a fresh sandbox per model, never reused
        for s in seen:
            assert all(s not in c for c in sessions())
    assert sessions() == []  # the pool's idle sandbox is gone too
