"""Tracer overhead: load plus 100 inferences of a small model, with the tracer and without:
the MLP of bench_latency (256 rows of width 256 a call) and a small TorchScript model."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

import runner
from tests.benchmarks.bench_latency import WIDTH, _model
from tests.fixtures import models

CALLS = 100
REPEATS = 5


def _load_and_infer(path: Path, trace: bool) -> float:
    x = (
        np.random.default_rng(0).standard_normal((256, WIDTH)).astype(np.float32)
        if path.suffix == ".onnx"
        else models.sample_input(8)
    )
    start = time.perf_counter()
    with runner.Sandbox(path, runner.Policy(trace=trace)) as sb:
        t0 = time.perf_counter()
        for _ in range(CALLS):
            sb.infer(x)
        work = time.perf_counter() - t0
    phases = {p.name: p.seconds for p in sb.report().phases}
    del start
    return phases["load"] + work


def test_tracer_overhead(tmp_path: Path, record: Callable[[str, dict[str, object]], None]) -> None:
    built = {
        "onnx mlp": _model("mlp", tmp_path / "mlp.onnx"),
        "torchscript": models.torchscript_model(tmp_path, models.sample_input()).path,
    }
    figures: dict[str, object] = {}
    print(f"\nload + {CALLS} inferences, median of {REPEATS} (seconds)")
    print(f"{'model':<12} {'untraced':>9} {'traced':>9} {'overhead':>9}")
    for name, path in built.items():
        off = statistics.median(_load_and_infer(path, False) for _ in range(REPEATS))
        on = statistics.median(_load_and_infer(path, True) for _ in range(REPEATS))
        overhead = on / off - 1
        figures[name] = {"untraced_s": off, "traced_s": on, "overhead": overhead}
        print(f"{name:<12} {off:>9.3f} {on:>9.3f} {overhead:>8.1%}")
    record("tracer", figures)
