"""Tensors on the wire: name, dtype, shape and raw little-endian bytes.

Used on both sides. Decoding validates everything, since on the host the bytes come from an
untrusted worker: a known dtype, non-negative dimensions, and a byte count that matches.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# dtypes that may cross the wire; object and void dtypes never do.
ALLOWED_DTYPES = frozenset(
    {
        "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
        "float16", "float32", "float64", "complex64", "complex128",
    }
)
MAX_DIMS = 32


class TensorError(ValueError):
    """A tensor that cannot be encoded or decoded safely."""


def encode(name: str, array: np.ndarray, message: Any) -> Any:
    """Fill a wire Tensor message from a numpy array."""
    arr = np.asarray(array)
    dtype = arr.dtype.name
    if dtype not in ALLOWED_DTYPES:
        raise TensorError(f"tensor {name!r} has dtype {dtype}, which cannot be sent")
    arr = np.asarray(arr, dtype=arr.dtype.newbyteorder("<"), order="C")
    message.name = name
    message.dtype = dtype
    message.shape.extend(int(d) for d in arr.shape)
    message.data = arr.tobytes()
    return message


def check_dtype(name: str, arr: np.ndarray) -> None:
    if arr.dtype.name not in ALLOWED_DTYPES:
        raise TensorError(f"tensor {name!r} has dtype {arr.dtype.name}, which cannot be sent")


def decode_buffer(message: Any, data: Any) -> tuple[str, np.ndarray]:
    """Like decode, with the bytes given separately (a shared-memory view: not copied)."""
    dtype = message.dtype
    if dtype not in ALLOWED_DTYPES:
        raise TensorError(f"tensor {message.name!r} has unsupported dtype {dtype!r}")
    shape = tuple(int(d) for d in message.shape)
    if len(shape) > MAX_DIMS or any(d < 0 for d in shape):
        raise TensorError(f"tensor {message.name!r} has an invalid shape {shape}")
    dt = np.dtype(dtype).newbyteorder("<")
    count = 1
    for d in shape:
        count *= d
    if count * dt.itemsize != len(data):
        raise TensorError(
            f"tensor {message.name!r}: {len(data)} bytes do not fit shape {shape} of {dtype}"
        )
    arr = np.frombuffer(data, dtype=dt).reshape(shape)
    return message.name, arr.astype(np.dtype(dtype), copy=False)


def decode(message: Any) -> tuple[str, np.ndarray]:
    """Turn a wire Tensor into (name, read-only numpy array), validating it."""
    return decode_buffer(message, message.data)
