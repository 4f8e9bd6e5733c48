"""The host's static read of an ONNX model's graph inputs (runner.static.inputs), checked
against onnxruntime on real models built here with the onnx package, and the usage errors it
tells before a sandbox starts, in the CLI's words; DOCKER_HOST points nowhere, so an error that
reached for the engine would read differently."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from runner.cli import main
from runner.errors import UsageError
from runner.static import inputs as si

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

F, I64 = TensorProto.FLOAT, TensorProto.INT64


def _model(
    ins: list[Any], outs: list[Any], nodes: list[Any], inits: Sequence[Any] = (), ir: int = 8
) -> bytes:
    graph = helper.make_graph(nodes, "g", ins, outs, initializer=list(inits))
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=ir)
    onnx.checker.check_model(m)
    return bytes(m.SerializeToString())


def two_inputs() -> bytes:
    """x float32 [batch, 4] and mask int64 [batch, 4] -> y."""
    x = helper.make_tensor_value_info("x", F, ["batch", 4])
    mask = helper.make_tensor_value_info("mask", I64, ["batch", 4])
    y = helper.make_tensor_value_info("y", F, ["batch", 4])
    cast = helper.make_node("Cast", ["mask"], ["m"], to=F)
    mul = helper.make_node("Mul", ["x", "m"], ["y"])
    return _model([x, mask], [y], [cast, mul])


def shadowed() -> bytes:
    """x [2, 3], and a weight w listed as an input that an initializer gives (onnxruntime: an
    overridable initializer, not an input)."""
    x = helper.make_tensor_value_info("x", F, [2, 3])
    w = helper.make_tensor_value_info("w", F, [2, 3])
    y = helper.make_tensor_value_info("y", F, [2, 3])
    init = numpy_helper.from_array(np.ones((2, 3), np.float32), "w")
    return _model([x, w], [y], [helper.make_node("Add", ["x", "w"], ["y"])], [init])


def dynamic() -> bytes:
    """One input: a symbol, an unnamed dimension and a fixed one."""
    x = helper.make_tensor_value_info("input.1", TensorProto.DOUBLE, ["n", None, 256])
    y = helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["n", None, 256])
    return _model([x], [y], [helper.make_node("Relu", ["input.1"], ["y"])])


def _write(tmp: Path, data: bytes, name: str = "model.onnx") -> Path:
    p = tmp / name
    p.write_bytes(data)
    return p


def _ort(path: Path) -> list[tuple[str, str, list[int]]]:
    ort = pytest.importorskip("onnxruntime")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    kind = {"tensor(float)": "float32", "tensor(int64)": "int64", "tensor(double)": "float64"}
    return [
        (a.name, kind[a.type], [d if isinstance(d, int) and d >= 0 else -1 for d in a.shape])
        for a in sess.get_inputs()
    ]


@pytest.mark.parametrize("build", [two_inputs, shadowed, dynamic])
def test_the_read_agrees_with_onnxruntime(tmp_path: Path, build: Any) -> None:
    path = _write(tmp_path, build())
    found = si.onnx_inputs(path)
    assert found is not None and found
    assert [(i.name, i.dtype, list(i.shape or [])) for i in found] == _ort(path)


def test_the_read_in_detail(tmp_path: Path) -> None:
    two = si.onnx_inputs(_write(tmp_path, two_inputs()))
    assert two == [
        si.GraphInput("x", "float32", (-1, 4)),
        si.GraphInput("mask", "int64", (-1, 4)),
    ]
    # the initializer's name takes w out of the inputs
    assert si.onnx_inputs(_write(tmp_path, shadowed())) == [si.GraphInput("x", "float32", (2, 3))]
    dyn = si.onnx_inputs(_write(tmp_path, dynamic()))
    assert dyn == [si.GraphInput("input.1", "float64", (-1, -1, 256))]
    assert dyn[0].shown() == "input.1 float64 [-1, -1, 256]"


def test_a_big_initializer_is_skipped_not_read(tmp_path: Path) -> None:
    x = helper.make_tensor_value_info("x", F, [1, 1 << 20])
    y = helper.make_tensor_value_info("y", F, [1, 1 << 20])
    big = numpy_helper.from_array(np.zeros((1, 1 << 20), np.float32), "b")  # 4 MiB raw_data
    data = _model([x], [y], [helper.make_node("Add", ["x", "b"], ["y"])], [big])
    assert len(data) > si.READ_BYTES
    assert si.onnx_inputs(_write(tmp_path, data)) == [si.GraphInput("x", "float32", (1, 1 << 20))]


def test_odd_bytes_are_not_known(tmp_path: Path) -> None:
    good = two_inputs()
    assert si.onnx_inputs(_write(tmp_path, good[: len(good) // 2])) is None  # truncated
    assert si.onnx_inputs(_write(tmp_path, b"\x3a\x00" + good)) is None  # two graphs: merged
    assert si.onnx_inputs(_write(tmp_path, b"\x08\x07")) is None  # no graph at all
    assert si.onnx_inputs(_write(tmp_path, b"")) is None
    assert si.onnx_inputs(tmp_path / "absent.onnx") is None
    fifo = tmp_path / "fifo.onnx"
    os.mkfifo(fifo)
    assert si.onnx_inputs(fifo) is None  # never opened: it would block


def test_model_inputs_finds_the_file_a_run_loads(tmp_path: Path) -> None:
    d = tmp_path / "export"
    d.mkdir()
    _write(d, two_inputs())
    (d / "config.json").write_text('{"model_type": "bert"}')  # an optimum export: still ONNX
    assert si.model_inputs(d) is not None
    (d / "model.safetensors").write_bytes(b"")  # now transformers would load it instead
    assert si.model_inputs(d) is None
    assert si.model_inputs(d, "onnx") is not None  # unless ONNX is asked for
    assert si.model_inputs(_write(tmp_path, two_inputs()), "torch") is None
    assert si.inputs_note(d / "model.onnx") == (
        "ONNX graph inputs, read statically: x float32 [-1, 4], mask int64 [-1, 4]"
    )


@pytest.fixture
def no_docker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/airlock-test-static-inputs.sock")


def _npy(tmp: Path, name: str, arr: np.ndarray) -> str:
    p = tmp / name
    np.save(p, arr)
    return str(p)


def _run(capsys: pytest.CaptureFixture[str], model: Path, *specs: str) -> str:
    argv = ["run", str(model)]
    for s in specs:
        argv += ["--input", s]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    return err.strip()


@pytest.mark.usefixtures("no_docker")
def test_names_are_checked_before_a_sandbox(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = _write(tmp_path, two_inputs())
    x = _npy(tmp_path, "x.npy", np.zeros((1, 4), np.float32))
    m = _npy(tmp_path, "m.npy", np.zeros((1, 4), np.int64))
    err = _run(capsys, model, f"y={x}", f"x={x}")
    assert err == (
        "airlock: error: model.onnx takes inputs x, mask; --input names y (unknown) and lacks "
        "mask; pass --input x=FILE.npy --input mask=FILE.npy"
    )
    assert "lacks mask;" in _run(capsys, model, f"x={x}")
    assert "--input names z (unknown);" in _run(capsys, model, f"x={x}", f"mask={m}", f"z={m}")
    err = _run(capsys, model, x)
    assert err == (
        f"airlock: error: model.onnx takes 2 inputs x, mask; a single unnamed --input {x} was "
        "given; pass --input x=FILE.npy --input mask=FILE.npy"
    )


@pytest.mark.usefixtures("no_docker")
def test_ranks_sizes_and_dtypes_are_checked_before_a_sandbox(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = _write(tmp_path, two_inputs())
    m = _npy(tmp_path, "m.npy", np.zeros((1, 4), np.int64))
    x3 = _npy(tmp_path, "a.npy", np.zeros((1, 4, 1), np.float32))
    err = _run(capsys, model, f"x={x3}", f"mask={m}")
    assert f"error: --input x={x3} is 3-D; x is 2-D [-1, 4]; give x an array of 2" in err
    x5 = _npy(tmp_path, "b.npy", np.zeros((3, 5), np.float32))
    assert f"--input x={x5} has shape [3, 5]; x is [-1, 4]" in _run(
        capsys, model, f"x={x5}", f"mask={m}"
    )
    x64 = _npy(tmp_path, "c.npy", np.zeros((3, 4), np.float64))
    assert f"--input x={x64} is float64; x takes float32; save it as float32" in _run(
        capsys, model, f"x={x64}", f"mask={m}"
    )
    one = _write(tmp_path, dynamic(), "one.onnx")  # a single unnamed array: its one input
    err = _run(capsys, one, x5)
    assert f"--input {x5} is 2-D; input.1 is 3-D [-1, -1, 256]" in err
    npz = tmp_path / "feed.npz"
    np.savez(npz, x=np.zeros((1, 4), np.float32), mask=np.zeros((1, 4), np.int32))
    assert f"--input {npz} (mask) is int32; mask takes int64" in _run(capsys, model, str(npz))


@pytest.mark.usefixtures("no_docker")
def test_right_inputs_go_on_to_the_engine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Inputs that fit (and models whose inputs are not known) are not refused here: the run
    goes on, and fails only for want of an engine."""
    model = _write(tmp_path, two_inputs())
    x = _npy(tmp_path, "x.npy", np.zeros((7, 4), np.float32))
    m = _npy(tmp_path, "m.npy", np.zeros((7, 4), np.int64))
    odd = _write(tmp_path, b"\x3a\x00" + two_inputs(), "odd.onnx")  # two graphs: not known
    assert si.onnx_inputs(odd) is None
    for argv in (
        ["run", str(model), "--input", f"x={x}", "--input", f"mask={m}"],
        ["run", str(odd), "--input", f"y={x}"],
    ):
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 3 and "Docker engine is not reachable" in err, err


@pytest.mark.usefixtures("no_docker")
def test_preflight_shows_the_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = _write(tmp_path, two_inputs())
    main(["preflight", str(model), "--json"])
    out = capsys.readouterr().out
    assert "ONNX graph inputs, read statically: x float32 [-1, 4], mask int64 [-1, 4]" in out


def _wide(names: list[str]) -> bytes:
    ins = [helper.make_tensor_value_info(n, F, [1]) for n in names]
    out = helper.make_tensor_value_info("y", F, [1])
    return _model(ins, [out], [helper.make_node("Sum", names, ["y"])])


def test_names_as_shown_are_accepted_and_many_inputs_get_a_short_hint(tmp_path: Path) -> None:
    """A name with a control character is accepted as `describe` shows it (as the sandbox
    accepts it); with more than a few inputs the hint does not spell each one out."""
    model = _write(tmp_path, _wide(["in\x1bput", "b"]))
    one = np.zeros(1, np.float32)
    si.check_feed(model, "auto", ["in put=a.npy", "b=b.npy"], {"in put": one, "b": one})
    si.check_feed(model, "auto", ["in\x1bput=a.npy", "b=b.npy"], {"in\x1bput": one, "b": one})
    with pytest.raises(UsageError) as e:
        si.check_feed(model, "auto", ["b=b.npy"], {"b": one})
    assert e.value.message == "model.onnx takes inputs in put, b; --input lacks in put"
    assert e.value.hint == "pass --input 'in put=FILE.npy' --input b=FILE.npy"
    many = _write(tmp_path, _wide([f"i{n}" for n in range(6)]), "many.onnx")
    with pytest.raises(UsageError) as e:
        si.check_feed(many, "auto", ["i0=a.npy"], {"i0": one})
    assert e.value.message.endswith("--input lacks i1, i2, i3, i4, i5")
    assert e.value.hint == (
        "pass --input NAME=FILE.npy for each of its 6 inputs, or one .npz that holds them by name"
    )
