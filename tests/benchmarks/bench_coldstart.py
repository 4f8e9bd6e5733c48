"""Cold start: `docker run --rm --network none IMAGE` running `true` (the floor) against
Sandbox open-to-ready and open-to-first-inference, for a small ONNX and a small TorchScript
model, under runc and runsc. The target compares open-to-first-inference with the floor plus
the in-process load time."""

from __future__ import annotations

import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import runner
from runner.controller import images as _image
from runner.controller.zygote import Zygote
from tests.fixtures import models

REPEATS = {"runc": 5, "runsc": 3}


def _floor(tag: str, runtime: str) -> float:
    start = time.perf_counter()
    subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--network",
            "none",
            "--runtime",
            runtime,
            "--entrypoint",
            "true",
            tag,
        ],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - start


def _in_process_load(kind: str, path: Path) -> float:
    start = time.perf_counter()
    if kind == "onnx":
        import onnxruntime as ort

        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    else:
        import torch

        torch.jit.load(str(path))
    return time.perf_counter() - start


def _open(path: Path, runtime: str, zygote: Zygote | None = None) -> tuple[float, float]:
    x = models.sample_input(2)
    start = time.perf_counter()
    policy = runner.Policy(runtime=runner.Runtime(runtime))
    with runner.Sandbox(path, policy, zygote=zygote) as sb:
        ready = time.perf_counter() - start
        sb.infer(x)
        first = time.perf_counter() - start
    assert (zygote is not None) == any(n.startswith("warm start: the worker") for n in sb.notes)
    assert sb.report().verdict is runner.Verdict.CLEAN
    return ready, first


def test_cold_start(tmp_path: Path, record: Callable[[str, dict[str, object]], None]) -> None:
    tag, _ = _image.require_current()
    x = models.sample_input()
    paths = {
        "onnx": models.onnx_model(tmp_path, x).path,
        "torchscript": models.torchscript_model(tmp_path, x).path,
    }
    for kind, p in paths.items():
        _in_process_load(kind, p)  # warm the libraries once
    figures: dict[str, object] = {}
    print(
        f"\n{'runtime':<7} {'model':<12} {'floor s':>8} {'in-proc load':>12} {'ready s':>8} "
        f"{'first inf s':>11} {'ratio':>7}"
    )
    for runtime, n in REPEATS.items():
        floor = statistics.median(_floor(tag, runtime) for _ in range(n))
        for kind, path in paths.items():
            load = statistics.median(_in_process_load(kind, path) for _ in range(n))
            runs = [_open(path, runtime) for _ in range(n)]
            ready = statistics.median(r for r, _ in runs)
            first = statistics.median(f for _, f in runs)
            ratio = first / (floor + load)
            figures[f"{runtime}_{kind}"] = {
                "floor_s": floor,
                "in_process_load_s": load,
                "open_to_ready_s": ready,
                "open_to_first_inference_s": first,
                "ratio_vs_floor_plus_load": ratio,
            }
            print(
                f"{runtime:<7} {kind:<12} {floor:>8.3f} {load:>12.3f} {ready:>8.3f} "
                f"{first:>11.3f} {ratio:>6.2f}x"
            )
    with Zygote(runner.Policy()) as zygote:  # a fresh container each, its worker forked warm
        runs = [_open(paths["torchscript"], "runc", zygote) for _ in range(REPEATS["runc"])]
    floor = figures["runc_torchscript"]["floor_s"]  # type: ignore[index]
    load = figures["runc_torchscript"]["in_process_load_s"]  # type: ignore[index]
    ready = statistics.median(r for r, _ in runs)
    first = statistics.median(f for _, f in runs)
    figures["runc_torchscript_warm"] = {
        "floor_s": floor,
        "in_process_load_s": load,
        "open_to_ready_s": ready,
        "open_to_first_inference_s": first,
        "ratio_vs_floor_plus_load": first / (floor + load),
        "runs_first_inference_s": [f for _, f in runs],
    }
    print(
        f"{'runc':<7} {'ts (warm)':<12} {floor:>8.3f} {load:>12.3f} {ready:>8.3f} "
        f"{first:>11.3f} {first / (floor + load):>6.2f}x"
    )
    with runner.SandboxPool(size=1) as pool:
        claims = []
        for _ in range(REPEATS["runc"]):
            sb = pool.sandbox(paths["onnx"])
            start = time.perf_counter()
            pool_wait = time.perf_counter()
            with sb:
                sb.infer(models.sample_input(2))
                claims.append(time.perf_counter() - start)
            del pool_wait
            time.sleep(1.0)  # let the replacement warm up
        first = statistics.median(claims)
        floor = figures["runc_onnx"]["floor_s"]  # type: ignore[index]
        load = figures["runc_onnx"]["in_process_load_s"]  # type: ignore[index]
        figures["runc_onnx_pool"] = {
            "open_to_first_inference_s": first,
            "ratio_vs_floor_plus_load": first / (floor + load),
        }
        print(
            f"{'runc':<7} {'onnx (pool)':<12} {floor:>8.3f} {load:>12.3f} {'-':>8} "
            f"{first:>11.3f} {first / (floor + load):>6.2f}x"
        )
    record("coldstart", figures)
