"""Tensors on the wire: exact round trips, and strict validation of what comes back."""

from __future__ import annotations

import numpy as np
import pytest

from runner.worker.shared import tensors
from runner.worker.shared._proto import worker_pb2 as pb


@pytest.mark.parametrize(
    "arr",
    [
        np.arange(12, dtype=np.float32).reshape(3, 4),
        np.array(3.5, dtype=np.float64),
        np.zeros((0, 3), dtype=np.int64),
        np.array([True, False]),
        np.arange(6, dtype=np.uint8).reshape(2, 3)[:, ::2],  # not contiguous
        np.arange(4, dtype=">i4"),  # big-endian input is sent little-endian
    ],
)
def test_round_trip(arr: np.ndarray) -> None:
    name, back = tensors.decode(tensors.encode("t", arr, pb.Tensor()))
    assert name == "t"
    assert back.shape == arr.shape
    assert back.dtype == arr.dtype.newbyteorder("=")
    np.testing.assert_array_equal(back, arr)


def test_object_arrays_are_not_sent() -> None:
    with pytest.raises(tensors.TensorError, match="cannot be sent"):
        tensors.encode("t", np.array([object()]), pb.Tensor())


@pytest.mark.parametrize(
    ("dtype", "shape", "data", "needle"),
    [
        ("object", [1], b"x" * 8, "unsupported dtype"),
        ("float32", [2, 2], b"\0" * 12, "do not fit"),
        ("float32", [-1], b"", "invalid shape"),
        ("float32", [1] * 40, b"\0" * 4, "invalid shape"),
    ],
)
def test_decode_rejects(dtype: str, shape: list[int], data: bytes, needle: str) -> None:
    msg = pb.Tensor(name="t", dtype=dtype, shape=shape, data=data)
    with pytest.raises(tensors.TensorError, match=needle):
        tensors.decode(msg)


def test_dtype_names_are_those_numpy_gives() -> None:
    kinds = [np.dtype(n) for n in sorted(tensors.ALLOWED_DTYPES)]
    kinds += [d.newbyteorder(">") for d in kinds] + [np.dtype("U3"), np.dtype("O")]
    kinds += [np.dtype([("a", "<f4"), ("b", "O")]), np.dtype(float, metadata={"k": 1})]
    for _ in range(2):  # the second time from what was remembered
        assert [tensors.dtype_name(d) for d in kinds] == [d.name for d in kinds]
    with pytest.raises(tensors.TensorError, match="object"):
        tensors.check_dtype("t", np.array([None]))
