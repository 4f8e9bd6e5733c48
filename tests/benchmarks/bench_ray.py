"""Batch throughput on Ray: the same batch on the local backend (--jobs 2) and on a two-node
Ray cluster on this machine (one sandbox slot per node, so also two at once); models per
minute for each, and Ray's overhead per model as a ratio of the local backend's time."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import runner
from runner.batch import evaluation as batch
from tests.benchmarks.bench_batch import _build
from tests.cluster.conftest import RayCluster, ray_cluster  # noqa: F401  (the fixture)


def _timed(models: Path, **kw: object) -> float:
    start = time.perf_counter()
    results = list(batch.evaluate([models], policy=runner.Policy(memory_bytes=1 << 30), **kw))
    took = time.perf_counter() - start
    assert all(r.verdict is runner.Verdict.CLEAN for r in results), results
    return took


def test_ray_throughput(
    ray_cluster: RayCluster,  # noqa: F811
    tmp_path: Path,
    record: Callable[[str, dict[str, object]], None],
) -> None:
    paths = _build(tmp_path / "models")
    n = len(paths)
    _timed(tmp_path / "models", backend="ray", address=ray_cluster.address)  # warm workers
    local = _timed(tmp_path / "models", jobs=2)
    ray = _timed(tmp_path / "models", backend="ray", address=ray_cluster.address)
    figures: dict[str, object] = {
        "models": n,
        "local_jobs2_per_min": n / local * 60,
        "ray_2_nodes_per_min": n / ray * 60,
        "ray_seconds_per_model": ray / n,
        "local_seconds_per_model": local / n,
        "ray_overhead_ratio": ray / local,
        "ray_extra_seconds_per_model": (ray - local) / n,  # connecting and node checks included
    }
    print(f"\n{n} small models (ONNX and pickles), load-only, two sandboxes at once")
    print(f"{'backend':<22} {'seconds':>8} {'models/min':>11} {'vs local':>9}")
    print(f"{'local --jobs 2':<22} {local:>8.2f} {n / local * 60:>11.1f} {'1.00x':>9}")
    print(f"{'ray, 2 nodes x 1 slot':<22} {ray:>8.2f} {n / ray * 60:>11.1f} {ray / local:>8.2f}x")
    print(f"Ray's extra time per model: {(ray - local) / n:.2f} s (its connection included)")
    record("ray", figures)
