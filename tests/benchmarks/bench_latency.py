"""Per-call latency, p50 and p99, in the sandbox against onnxruntime in-process, for inputs of
3 KB, 4 MB and 64 MB. Two models: a 2-layer MLP of width 256 (compute-bound, like a model) and
an elementwise Relu (copy-bound: the worst case for the sandbox's data path).

Two ways to call for 4 MB and more: the default (the host copies the input into the shared
file and the outputs out of it) and zero-copy (the input built in a `shared_array`, outputs
returned as views with `copy=False`).

Last, the MLP at 3 KB in a sandbox whose worker was forked from a zygote (warm starts, as a
batch of torch-family models gets): strace attached with `-p` stops at every system call there,
not only at the traced ones. Not a target: warm sandboxes load and describe, they do not serve."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

import runner

SIZES = {"3KB": 3 << 10, "4MB": 4 << 20, "64MB": 64 << 20}
WIDTH = 256


def _model(kind: str, path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", WIDTH])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", WIDTH])
    if kind == "relu":
        nodes, inits = [helper.make_node("Relu", ["x"], ["y"])], []
    else:
        w1 = numpy_helper.from_array(rng.standard_normal((WIDTH, WIDTH)).astype(np.float32), "w1")
        w2 = numpy_helper.from_array(rng.standard_normal((WIDTH, WIDTH)).astype(np.float32), "w2")
        nodes = [
            helper.make_node("MatMul", ["x", "w1"], ["h"]),
            helper.make_node("Relu", ["h"], ["r"]),
            helper.make_node("MatMul", ["r", "w2"], ["y"]),
        ]
        inits = [w1, w2]
    graph = helper.make_graph(nodes, kind, [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    path.chmod(0o644)
    onnx.checker.check_model(str(path))
    return path


def _times(fn: Callable[[], object], budget_s: float, max_n: int = 300) -> list[float]:
    fn()  # warm
    out: list[float] = []
    start = time.perf_counter()
    while len(out) < max_n and (time.perf_counter() - start < budget_s or len(out) < 5):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] * 1e3


def _row(
    kind: str, label: str, how: str, lp50: float, lp99: float, bp50: float, bp99: float
) -> str:
    return (
        f"{kind:<6} {label:<5} {how:<9} {lp50:>10.3f} /{lp99:>9.3f} "
        f"{bp50:>8.3f} /{bp99:>9.3f} {bp50 - lp50:>16.3f} {bp50 / lp50:>8.2f}x"
    )


def test_latency(tmp_path: Path, record: Callable[[str, dict[str, object]], None]) -> None:
    import onnxruntime as ort

    figures: dict[str, object] = {}
    print(
        f"\n{'model':<6} {'input':<5} {'call':<9} {'in-process p50/p99 ms':>22} "
        f"{'sandbox p50/p99 ms':>19} {'overhead p50 ms':>16} {'ratio p50':>9}"
    )
    for kind in ("mlp", "relu"):
        path = _model(kind, tmp_path / f"{kind}.onnx")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        policy = runner.Policy(memory_bytes=2 << 30, max_reply_bytes=128 << 20, shm_bytes=512 << 20)
        with runner.Sandbox(path, policy) as sb:
            for label, nbytes in SIZES.items():
                rows = max(1, nbytes // (4 * WIDTH))
                x = np.random.default_rng(1).standard_normal((rows, WIDTH)).astype(np.float32)
                budget = 3.0 if nbytes < (1 << 20) else 8.0
                local = _times(lambda x=x: sess.run(None, {"x": x}), budget)
                calls = {"default": lambda x=x: sb.infer({"x": x})}
                if nbytes >= (1 << 20):
                    shared = sb.shared_array(x.shape, x.dtype)
                    shared[:] = x
                    calls["zero-copy"] = lambda s=shared: sb.infer({"x": s}, copy=False)
                lp50, lp99 = _pct(local, 0.5), _pct(local, 0.99)
                for how, call in calls.items():
                    boxed = _times(call, budget)
                    bp50, bp99 = _pct(boxed, 0.5), _pct(boxed, 0.99)
                    key = f"{kind}_{label}" + ("" if how == "default" else "_zero_copy")
                    figures[key] = {
                        "in_process_p50_ms": lp50,
                        "in_process_p99_ms": lp99,
                        "sandbox_p50_ms": bp50,
                        "sandbox_p99_ms": bp99,
                        "overhead_p50_ms": bp50 - lp50,
                        "ratio_p50": bp50 / lp50,
                        "calls": len(boxed),
                    }
                    print(_row(kind, label, how, lp50, lp99, bp50, bp99))
    figures["mlp_3KB_warm"] = _warm_3kb(tmp_path / "mlp.onnx", figures["mlp_3KB"])  # type: ignore[arg-type]
    record("latency", figures)


def _warm_3kb(path: Path, cold: dict[str, float]) -> dict[str, float]:
    from runner.controller.zygote import Zygote

    policy = runner.Policy()
    x = np.random.default_rng(1).standard_normal((3, WIDTH)).astype(np.float32)
    with Zygote(policy) as zygote, runner.Sandbox(path, policy, zygote=zygote) as sb:
        assert any(n.startswith("warm start: the worker") for n in sb.notes)
        boxed = _times(lambda: sb.infer({"x": x}), 3.0)
    bp50, bp99 = _pct(boxed, 0.5), _pct(boxed, 0.99)
    lp50 = cold["in_process_p50_ms"]
    row = _row("mlp", "3KB", "warm", lp50, cold["in_process_p99_ms"], bp50, bp99)
    print(f"{row}  (forked, strace -p)")
    return {
        "sandbox_p50_ms": bp50,
        "sandbox_p99_ms": bp99,
        "overhead_p50_ms": bp50 - lp50,
        "cold_overhead_p50_ms": cold["overhead_p50_ms"],
        "calls": len(boxed),
    }
