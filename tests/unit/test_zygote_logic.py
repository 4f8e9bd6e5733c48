"""The warm start's pure decisions (runner.controller.zygote): what a batch's zygote warms, and
which policies can take a forked worker. What crosses the boundary is in tests/sandbox and
tests/hostile (test_warm_start, test_warm_subset)."""

from __future__ import annotations

from pathlib import Path

import runner
from runner.controller import zygote


def test_a_zygote_warms_transformers_only_for_a_batch_with_a_repository(tmp_path: Path) -> None:
    (tmp_path / "repo").mkdir()
    (tmp_path / "model.pt").write_bytes(b"")
    assert zygote.warm_formats([tmp_path / "model.pt"]) == ("torchscript", "torch")
    both = [tmp_path / "model.pt", tmp_path / "repo"]
    assert zygote.warm_formats(both) == ("torchscript", "torch", "huggingface")


def test_only_runc_with_its_tracer_takes_a_forked_worker() -> None:
    assert zygote.usable(runner.Policy())
    assert not zygote.usable(runner.Policy(trace=False))
    assert not zygote.usable(runner.Policy(runtime=runner.Runtime.RUNSC))
