"""Tensors on the wire: name, dtype, shape and raw little-endian bytes.

Used on both sides. Decoding validates everything, since on the host the bytes come from an
untrusted worker: a known dtype, non-negative dimensions, and a byte count that matches.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

# dtypes that may cross the wire; object and void dtypes never do.
ALLOWED_DTYPES = frozenset(
    {
        "bool",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "float16",
        "float32",
        "float64",
        "complex64",
        "complex128",
    }
)
MAX_DIMS = 32
# Each allowed dtype as it travels (little-endian) and as it is handed back (native), by name.
_WIRE = {n: (np.dtype(n).newbyteorder("<"), np.dtype(n)) for n in ALLOWED_DTYPES}
_NAMES: dict[np.dtype, str] = {}  # dtype.name is computed in Python each time: about 2 us
_MAX_NAMES = 256


def dtype_name(dt: np.dtype) -> str:
    """dt.name, remembered for the dtypes seen so far (equal dtypes have equal names). A call
    asks for it several times on each side, and it costs more than the call's own checks."""
    name = _NAMES.get(dt)
    if name is None:
        name = dt.name
        if len(_NAMES) < _MAX_NAMES:
            _NAMES[dt] = name
    return name


class TensorError(ValueError):
    """A tensor that cannot be encoded or decoded safely."""


class InputError(ValueError):
    """The inputs do not match the model."""


def little_endian(name: str, array: np.ndarray) -> np.ndarray:
    """The array as it travels: an allowed dtype, little-endian, C order."""
    arr = np.asarray(array)
    check_dtype(name, arr)
    return np.asarray(arr, dtype=arr.dtype.newbyteorder("<"), order="C")


def describe(name: str, arr: np.ndarray, message: Any) -> None:
    message.name = name
    message.dtype = dtype_name(arr.dtype)
    message.shape.extend(int(d) for d in arr.shape)


def encode(name: str, array: np.ndarray, message: Any) -> Any:
    """Fill a wire Tensor message from a numpy array."""
    arr = little_endian(name, array)
    describe(name, arr, message)
    message.data = arr.tobytes()
    return message


def check_inputs(specs: Sequence[Any], feed: dict[str, np.ndarray]) -> None:
    """Validate names, dtypes and ranks against the model's input specs (anything with name,
    dtype and shape; "" and () mean unknown, -1 any size). Used on both sides."""
    if not specs:
        return
    expected = {s.name: s for s in specs}
    missing = sorted(set(expected) - set(feed))
    unknown = sorted(set(feed) - set(expected))
    if missing or unknown:
        raise InputError(
            f"inputs do not match the model: missing {missing or 'none'}, "
            f"unexpected {unknown or 'none'}; the model takes {sorted(expected)}"
        )
    for name, arr in feed.items():
        spec = expected[name]
        if spec.dtype and dtype_name(arr.dtype) != spec.dtype:
            raise InputError(f"input {name!r} is {arr.dtype.name}; the model expects {spec.dtype}")
        if spec.shape:
            ok = len(spec.shape) == arr.ndim and all(
                e in (-1, a) for e, a in zip(spec.shape, arr.shape, strict=True)
            )
            if not ok:
                raise InputError(
                    f"input {name!r} has shape {list(arr.shape)}; the model expects "
                    f"{list(spec.shape)} (-1 is any size)"
                )


def check_dtype(name: str, arr: np.ndarray) -> None:
    if dtype_name(arr.dtype) not in ALLOWED_DTYPES:
        raise TensorError(f"tensor {name!r} has dtype {arr.dtype.name}, which cannot be sent")


def decode_buffer(message: Any, data: Any) -> tuple[str, np.ndarray]:
    """Like decode, with the bytes given separately (a shared-memory view: not copied)."""
    dtype = message.dtype
    wire = _WIRE.get(dtype)
    if wire is None:
        raise TensorError(f"tensor {message.name!r} has unsupported dtype {dtype!r}")
    shape = tuple(int(d) for d in message.shape)
    if len(shape) > MAX_DIMS or any(d < 0 for d in shape):
        raise TensorError(f"tensor {message.name!r} has an invalid shape {shape}")
    dt, native = wire
    count = 1
    for d in shape:
        count *= d
    if count * dt.itemsize != len(data):
        raise TensorError(
            f"tensor {message.name!r}: {len(data)} bytes do not fit shape {shape} of {dtype}"
        )
    arr = np.frombuffer(data, dtype=dt).reshape(shape)
    return message.name, arr.astype(native, copy=False)


def decode(message: Any) -> tuple[str, np.ndarray]:
    """Turn a wire Tensor into (name, read-only numpy array), validating it."""
    return decode_buffer(message, message.data)
