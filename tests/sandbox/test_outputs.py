"""Outputs from the sandbox equal those computed in-process, for every format that infers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import runner
from tests.fixtures import models
from tests.fixtures.memory import in_shared_memory

BUILDERS: dict[str, Callable[[Path, np.ndarray], models.Built]] = {
    "onnx": models.onnx_model,
    "torchscript": models.torchscript_model,
    "full-module pickle": models.full_module_pickle,
    "safetensors + architecture": models.safetensors_model,
}


@pytest.mark.parametrize("kind", list(BUILDERS))
def test_outputs_match_in_process(kind: str, tmp_path: Path) -> None:
    x = models.sample_input()
    built = BUILDERS[kind](tmp_path, x)
    with runner.Sandbox(built.path, architecture=built.architecture) as sb:
        outputs = sb.infer(x)
        again = sb.infer(x[:2])
    assert set(outputs) == set(built.reference)
    for name, expected in built.reference.items():
        got = outputs[name]
        assert got.dtype == expected.dtype
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    first = next(iter(built.reference))
    np.testing.assert_allclose(again[first], built.reference[first][:2], rtol=0, atol=1e-6)
    result = sb.report()
    assert result.error is None
    assert result.calls == 2
    assert result.sandbox is not None and result.sandbox.image_id.startswith("sha256:")
    assert [p.name for p in result.phases] == [
        "preflight",
        "launch",
        "startup",
        "load",
        "infer",
        "teardown",
    ]


def test_describe_onnx(tmp_path: Path) -> None:
    built = models.onnx_model(tmp_path, models.sample_input())
    with runner.Sandbox(built.path) as sb:
        sig = sb.describe()
    assert sig.format == "onnx"
    assert [(s.name, s.dtype, s.shape) for s in sig.inputs] == [("x", "float32", [-1, 4])]
    assert [(s.name, s.dtype, s.shape) for s in sig.outputs] == [("y", "float32", [-1, 3])]


def test_state_dict_without_architecture_is_describe_only(tmp_path: Path) -> None:
    path = models.state_dict_checkpoint(tmp_path)
    with runner.Sandbox(path) as sb:
        sig = sb.describe()
        with pytest.raises(runner.UsageError, match="cannot run inference"):
            sb.infer(models.sample_input())
    assert sig.format == "torch"
    assert not sig.can_infer


def test_model_directory_is_one_model(tmp_path: Path) -> None:
    x = models.sample_input()
    model_dir = tmp_path / "my-model"
    model_dir.mkdir()
    built = models.safetensors_model(model_dir, x)
    (model_dir / "config.json").write_text('{"hidden": 8}')
    with runner.Sandbox(model_dir, architecture=built.architecture) as sb:
        out = sb.infer(x)
    np.testing.assert_allclose(out["output"], built.reference["output"], rtol=0, atol=1e-6)


@pytest.mark.runsc
def test_onnx_under_gvisor(tmp_path: Path) -> None:
    # gVisor maps the host's tensor file too: inline, copied and zero-copy calls agree
    x = models.sample_input()
    built = models.onnx_model(tmp_path, x)
    big = np.repeat(x, 1 << 14, axis=0)  # 1.25 MiB: through the shared-memory file both ways
    with runner.Sandbox(built.path, runner.Policy(runtime=runner.Runtime.RUNSC)) as sb:
        out = sb.infer(x)
        shared = sb.shared_array(big.shape, big.dtype)
        shared[:] = big
        (copied,), (viewed,) = sb.infer(big).values(), sb.infer(shared, copy=False).values()
    np.testing.assert_allclose(out["y"], built.reference["y"], rtol=0, atol=1e-6)
    expected = np.repeat(built.reference["y"], 1 << 14, axis=0)
    np.testing.assert_allclose(copied, expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(viewed, expected, rtol=0, atol=1e-6)
    assert sb.report().sandbox is not None
    assert sb.report().sandbox.runtime == "runsc"  # type: ignore[union-attr]


@pytest.mark.parametrize("shm_bytes", [0, 64 << 20], ids=["inline", "shared-memory"])
def test_large_tensors_round_trip(shm_bytes: int, tmp_path: Path) -> None:
    from tests.benchmarks.bench_latency import WIDTH, _model

    path = _model("mlp", tmp_path / "mlp.onnx")
    import onnxruntime as ort

    x = np.random.default_rng(3).standard_normal((2048, WIDTH)).astype(np.float32)  # 2 MiB
    (expected,) = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"x": x}
    )
    with runner.Sandbox(path, runner.Policy(shm_bytes=shm_bytes)) as sb:
        out = sb.infer({"x": x})["y"]
        again = sb.infer({"x": x[:10]})["y"]
    assert out.shape == expected.shape and out.dtype == expected.dtype
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(again, expected[:10], rtol=1e-5, atol=1e-4)
    assert not out.flags.writeable or shm_bytes == 0


def test_dropped_views_give_their_memory_back(tmp_path: Path) -> None:
    # 3 MiB in and 3 MiB out of 8 MiB: each call's output fits only if the last call's view,
    # dropped by the caller, really gave its range back (else it comes back inline)
    from tests.benchmarks.bench_latency import WIDTH, _model

    path = _model("relu", tmp_path / "relu.onnx")
    with runner.Sandbox(path, runner.Policy(shm_bytes=8 << 20)) as sb:
        x = sb.shared_array(((3 << 20) // (4 * WIDTH), WIDTH))
        x[:] = -1.0
        x[::2] = 1.0
        for _ in range(4):
            (y,) = sb.infer({"x": x}, copy=False).values()
            assert in_shared_memory(y) and not y.flags.writeable
            np.testing.assert_array_equal(y, np.maximum(x, 0))
            del y
        kept = sb.infer({"x": x}, copy=False)["y"]
        assert in_shared_memory(kept)
        (copied,) = sb.infer({"x": x}).values()
        assert not in_shared_memory(copied)
    assert [o.name for o in sb.report().outputs] == ["y"]


def test_calls_leave_no_events_of_their_own(tmp_path: Path) -> None:
    # The worker's replies once went out with sendmsg: a tracer stop and an audit line on every
    # call, which filled the bounded audit log in a long session and then dropped the model's
    # own events. Replies are plain writes now: calls add nothing to the evidence.
    from tests.benchmarks.bench_latency import WIDTH, _model

    path = _model("mlp", tmp_path / "mlp.onnx")
    x = np.ones((3, WIDTH), np.float32)
    with runner.Sandbox(path) as sb:
        for _ in range(200):
            sb.infer({"x": x})
    report = sb.report()
    assert report.calls == 200
    sends = [e for e in report.events if "send" in e.kind]
    assert sends == [], [e.kind for e in sends[:5]]
    assert report.events_dropped == 0
    assert report.verdict == runner.Verdict.CLEAN
