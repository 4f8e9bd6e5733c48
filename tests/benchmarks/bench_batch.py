"""Batch throughput: models per minute at --jobs 1 and --jobs 2, against loading the same
models in-process (no isolation at all) in the same run."""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

import runner
from runner.batch import evaluation as batch
from tests.fixtures import models

N_MODELS = 8


def _build(root: Path) -> list[Path]:
    root.mkdir()
    x = models.sample_input()
    paths = []
    for i in range(N_MODELS // 2):
        d = root / f"onnx{i}"
        d.mkdir()
        paths.append(models.onnx_model(d, x).path)
        p = root / f"ckpt{i}.pkl"
        p.write_bytes(pickle.dumps({"w": np.full(16, i, np.float32), "step": i}))
        paths.append(p)
    return paths


def _in_process(paths: list[Path]) -> float:
    import onnxruntime as ort

    start = time.perf_counter()
    for p in paths:
        if p.suffix == ".onnx":
            ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
        else:
            with p.open("rb") as f:
                pickle.load(f)
    return time.perf_counter() - start


def test_batch_throughput(tmp_path: Path, record: Callable[[str, dict[str, object]], None]) -> None:
    paths = _build(tmp_path / "models")
    baseline = _in_process(paths)
    figures: dict[str, object] = {
        "models": len(paths),
        "in_process_per_min": len(paths) / baseline * 60,
    }
    print(f"\n{len(paths)} small models (ONNX and pickles), load-only")
    print(f"{'mode':<14} {'seconds':>8} {'models/min':>11} {'vs in-process':>14}")
    print(f"{'in-process':<14} {baseline:>8.3f} {len(paths) / baseline * 60:>11.0f} {'1.0x':>14}")
    for jobs in (1, 2):
        start = time.perf_counter()
        results = list(
            batch.evaluate(
                [tmp_path / "models"], jobs=jobs, policy=runner.Policy(memory_bytes=1 << 30)
            )
        )
        took = time.perf_counter() - start
        assert len(results) == len(paths)
        assert all(r.verdict is runner.Verdict.CLEAN for r in results), results
        per_min = len(paths) / took * 60
        figures[f"jobs{jobs}_per_min"] = per_min
        print(
            f"{'--jobs ' + str(jobs):<14} {took:>8.3f} {per_min:>11.1f} {took / baseline:>13.0f}x"
        )
    record("batch", figures)
