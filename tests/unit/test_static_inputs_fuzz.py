"""The static read of ONNX graph inputs on hostile bytes: arbitrary bytes, real models (made
with the onnx package) mutated, and protobuf built to cost the most. It never raises, never
hangs, and what it returns stays within its bounds."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.static import inputs as si

pytest.importorskip("onnx")
from tests.unit.test_static_inputs import dynamic, shadowed, two_inputs

REAL = [two_inputs(), shadowed(), dynamic()]
FUZZ = settings(
    max_examples=300,
    deadline=timedelta(seconds=5),
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def _bounded(found: list[si.GraphInput] | None) -> None:
    if found is None:
        return
    assert len(found) <= si.MAX_INPUTS
    for i in found:
        assert isinstance(i, si.GraphInput) and 0 < len(i.name.encode()) <= si.MAX_NAME
        assert i.shape is None or len(i.shape) <= si.MAX_DIMS
        assert i.shape is None or all(d >= -1 for d in i.shape)
        assert isinstance(i.shown(), str)


def _read(tmp_path: Path, data: bytes) -> list[si.GraphInput] | None:
    path = tmp_path / "m.onnx"
    path.write_bytes(data)
    found = si.onnx_inputs(path)
    _bounded(found)
    return found


@FUZZ
@given(st.binary(max_size=4000))
def test_arbitrary_bytes(tmp_path: Path, data: bytes) -> None:
    _read(tmp_path, data)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(REAL)))
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[at:]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif data:
            del data[at : at + draw(st.integers(1, 16))]
    return bytes(data)


@FUZZ
@given(mutated())
def test_mutated_real_models(tmp_path: Path, data: bytes) -> None:
    _read(tmp_path, data)


def test_the_mutations_reach_both_answers(tmp_path: Path) -> None:
    """The fuzz above exercises the read, not only its refusal: a flip in a name's bytes
    still reads (another name), a flip in a length does not."""
    good = two_inputs()
    at = good.rindex(b"mask")  # the graph input's name (the nodes come first)
    found = _read(tmp_path, good[:at] + b"mAsk" + good[at + 4 :])
    assert found is not None and found[1].name == "mAsk"
    assert _read(tmp_path, good[: at - 1] + b"\x7f" + good[at:]) is None


def _v(x: int) -> bytes:
    out = bytearray()
    while True:
        c, x = x & 0x7F, x >> 7
        out.append(c | (0x80 if x else 0))
        if not x:
            return bytes(out)


def _ld(number: int, payload: bytes) -> bytes:
    return _v(number << 3 | 2) + _v(len(payload)) + payload


def _costly() -> dict[str, bytes]:
    tensor = _ld(1, b"\x08\x01" + _ld(2, _ld(1, b"\x08\x05") * 64))
    inputs = b"".join(_ld(11, _ld(1, b"i%d" % i) + _ld(2, tensor)) for i in range(5000))
    return {
        "varints": b"\x08\x01" * 3_000_000,
        "initializers": _ld(7, b"\x2a\x00" * 2_000_000),
        "inputs": _ld(7, inputs),
        "dims": _ld(7, _ld(11, _ld(1, b"x") + _ld(2, _ld(1, _ld(2, _ld(1, b"") * 100_000))))),
        "long name": _ld(7, _ld(11, _ld(1, b"n" * (si.MAX_NAME + 1)))),
        "huge length": _v(7 << 3 | 2) + _v(1 << 62) + b"\x00" * 10,
        "long varint": b"\x38" + b"\xff" * 64,
    }


@pytest.mark.parametrize("name", list(_costly()))
def test_costly_shapes_stop_at_a_bound(tmp_path: Path, name: str) -> None:
    data = _costly()[name]
    start = time.monotonic()
    assert _read(tmp_path, data) is None
    assert time.monotonic() - start < 10


def test_many_inputs_up_to_the_bound_read(tmp_path: Path) -> None:
    tensor = _ld(1, b"\x08\x07" + _ld(2, _ld(1, b"\x12\x01n") + _ld(1, b"\x08\x03")))
    inputs = b"".join(_ld(11, _ld(1, b"i%d" % i) + _ld(2, tensor)) for i in range(100))
    found = _read(tmp_path, _ld(7, inputs))
    assert found is not None and len(found) == 100
    assert found[99] == si.GraphInput("i99", "int64", (-1, 3))
