"""Tensors on the Open Inference Protocol's wire, both ways, bounded.

A client is untrusted input, and so is what the model answers: every decoder checks the
datatype, the rank, each dimension, the element count and the byte length against the shape
before it allocates, and raises only BadRequest (the client's fault) or OutputError (the
model's). Raw contents are little-endian, row-major; a BYTES tensor's raw form is each element
as a 4-byte little-endian length and its bytes (as tritonclient serialises it).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from runner.serve.backend import BadRequest

DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(object),
}

# which InferTensorContents field holds each datatype's typed contents (FP16 has none)
CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}

_BY_KIND = {np.dtype(v).str: k for k, v in DTYPES.items() if k not in ("BYTES", "BOOL")}


class OutputError(Exception):
    """The model answered something the protocol cannot carry, or too much of it."""


@dataclass(frozen=True)
class Limits:
    """Caps on what a client may send and what a model may answer."""

    max_message_bytes: int = 64 << 20  # a gRPC message, an HTTP body
    max_tensors: int = 64  # inputs or requested outputs in one request
    max_rank: int = 8
    max_elements: int = 1 << 24  # per tensor
    max_total_bytes: int = 256 << 20  # all of one request's (or response's) tensors decoded
    max_element_bytes: int = 1 << 20  # one BYTES element
    # a BYTES element costs a Python object (~40 bytes) and a pointer however short it is: 60
    # MB of 2-byte elements on the wire decode to ~600 MB, so their count is capped on its own
    max_bytes_elements: int = 1 << 20
    max_name_len: int = 256
    max_json_bytes: int = 16 << 20  # JSON data is costly: binary is the way for big tensors
    max_json_depth: int = 32
    max_parameters: int = 32


def name_ok(name: str, limits: Limits, what: str) -> str:
    if not name or len(name) > limits.max_name_len:
        raise BadRequest(f"{what} name is empty or longer than {limits.max_name_len} characters")
    return name


def dtype_of(datatype: str) -> np.dtype[Any]:
    try:
        return DTYPES[datatype]
    except (KeyError, TypeError):
        shown = datatype[:32] if isinstance(datatype, str) else type(datatype).__name__
        raise BadRequest(
            f"unsupported datatype {shown!r}; supported: {', '.join(DTYPES)}"
        ) from None


def element_count(shape: Any, limits: Limits) -> int:
    """The number of elements a shape holds, every dimension checked before multiplying."""
    if not isinstance(shape, list | tuple) or len(shape) > limits.max_rank:
        raise BadRequest(f"shape must be a list of at most {limits.max_rank} dimensions")
    count, nonzero = 1, 1  # a zero dimension does not make huge others fine (numpy refuses)
    for d in shape:
        if isinstance(d, bool) or not isinstance(d, int | np.integer) or d < 0:
            raise BadRequest(f"shape {_show(shape)} has a dimension that is not a count")
        count *= int(d)
        nonzero *= max(int(d), 1)
        if nonzero > limits.max_elements:
            raise BadRequest(f"shape {_show(shape)} holds more than {limits.max_elements} elements")
    return count


def _show(shape: Any) -> str:
    text = repr(list(shape)) if isinstance(shape, list | tuple) else repr(shape)
    return text if len(text) <= 80 else text[:77] + "..."


def _bytes_count_ok(count: int, limits: Limits) -> None:
    if count > limits.max_bytes_elements:
        raise BadRequest(f"a BYTES tensor holds more than {limits.max_bytes_elements} elements")


def _bytes_elements(data: bytes, count: int, limits: Limits) -> list[bytes]:
    _bytes_count_ok(count, limits)
    out: list[bytes] = []
    pos = 0
    while pos < len(data):
        if len(out) >= count or pos + 4 > len(data):
            raise BadRequest("BYTES raw contents do not match the shape")
        (n,) = struct.unpack_from("<I", data, pos)
        pos += 4
        if n > limits.max_element_bytes or pos + n > len(data):
            raise BadRequest("BYTES raw contents hold an element longer than allowed or given")
        out.append(bytes(data[pos : pos + n]))
        pos += n
    if len(out) != count:
        raise BadRequest(f"BYTES raw contents hold {len(out)} elements, the shape {count}")
    return out


def from_raw(datatype: str, shape: Any, data: bytes, limits: Limits) -> np.ndarray:
    dtype = dtype_of(datatype)
    count = element_count(shape, limits)
    dims = [int(d) for d in shape]
    if datatype == "BYTES":
        elements = _bytes_elements(data, count, limits)  # 4 bytes each at least: no big alloc
        arr = np.empty(count, dtype=object)
        arr[:] = elements
        return arr.reshape(dims)
    if len(data) != count * dtype.itemsize:
        raise BadRequest(
            f"raw contents are {len(data)} bytes; shape {_show(shape)} of {datatype} "
            f"needs {count * dtype.itemsize}"
        )
    arr = np.frombuffer(data, dtype=dtype).reshape(dims)
    if datatype == "BOOL" and arr.size and int(arr.view(np.uint8).max()) > 1:
        raise BadRequest("BOOL raw contents hold a byte that is neither 0 nor 1")
    return arr.copy()


def from_values(datatype: str, shape: Any, values: Any, limits: Limits) -> np.ndarray:
    """A tensor from typed values (gRPC InferTensorContents, JSON data, flattened)."""
    dtype = dtype_of(datatype)
    count = element_count(shape, limits)
    dims = [int(d) for d in shape]
    if len(values) != count:
        raise BadRequest(f"{len(values)} values given; shape {_show(shape)} needs {count}")
    if datatype == "BYTES":
        _bytes_count_ok(count, limits)
        arr = np.empty(count, dtype=object)
        arr[:] = [_as_bytes(v, limits) for v in values]
        return arr.reshape(dims)
    for v in values:
        if not _fits(datatype, v):
            raise BadRequest(f"a value of {datatype} is out of range or of the wrong kind")
    try:
        return np.asarray(list(values), dtype=dtype).reshape(dims)
    except (ValueError, TypeError, OverflowError) as e:
        raise BadRequest(f"values do not fit {datatype}") from e


def from_contents(datatype: str, shape: Any, values: Any, limits: Limits) -> np.ndarray:
    """A tensor from gRPC typed contents: the field is typed already, so range checks are
    vectorised (int_contents is int32 for INT8 too, uint_contents uint32 for UINT8)."""
    if datatype == "BYTES":
        return from_values(datatype, shape, values, limits)
    dtype = dtype_of(datatype)
    count = element_count(shape, limits)
    if len(values) != count:
        raise BadRequest(f"{len(values)} values given; shape {_show(shape)} needs {count}")
    wide = np.asarray(values)
    if datatype not in ("BOOL", "FP32", "FP64") and wide.size:
        info = np.iinfo(dtype)
        if int(wide.min()) < int(info.min) or int(wide.max()) > int(info.max):
            raise BadRequest(f"a value of {datatype} is out of range")
    return wide.astype(dtype).reshape([int(d) for d in shape])


def _fits(datatype: str, v: Any) -> bool:
    if datatype == "BOOL":
        return isinstance(v, bool | np.bool_)
    if datatype.startswith("FP"):
        return isinstance(v, int | float | np.floating | np.integer) and not isinstance(v, bool)
    if isinstance(v, bool) or not isinstance(v, int | np.integer):
        return False
    info = np.iinfo(DTYPES[datatype])
    return int(info.min) <= int(v) <= int(info.max)


def _as_bytes(v: Any, limits: Limits) -> bytes:
    if isinstance(v, str):
        v = v.encode("utf-8", "surrogatepass")
    if not isinstance(v, bytes):
        raise BadRequest("a BYTES value is neither a string nor bytes")
    if len(v) > limits.max_element_bytes:
        raise BadRequest(f"a BYTES element is longer than {limits.max_element_bytes} bytes")
    return v


def datatype_of(arr: np.ndarray) -> str:
    """The protocol's datatype for an array the model answered (OutputError if none fits)."""
    kind = arr.dtype.kind
    if kind == "b":
        return "BOOL"
    if kind in "OSU":
        return "BYTES"
    found = _BY_KIND.get(
        arr.dtype.newbyteorder("<").str if arr.dtype.itemsize > 1 else arr.dtype.str
    )
    if found is None:
        raise OutputError(f"the model answered a dtype the protocol cannot carry: {arr.dtype}")
    return found


def check_output(name: str, value: Any, limits: Limits) -> tuple[str, np.ndarray]:
    """Check one output of the model: an array, a carried dtype, bounded; (datatype, array)."""
    if not isinstance(value, np.ndarray):
        raise OutputError(f"output {name[:64]!r} is not an array")
    if value.ndim > limits.max_rank or value.size > limits.max_elements:
        raise OutputError(f"output {name[:64]!r} is larger than allowed ({value.shape})")
    datatype = datatype_of(value)
    if datatype == "BYTES":
        if value.size > limits.max_bytes_elements:
            raise OutputError(f"output {name[:64]!r} holds too many BYTES elements")
        flat = value.reshape(-1)
        total = 0
        for v in flat:
            b = _output_bytes(v)
            if len(b) > limits.max_element_bytes:
                raise OutputError(f"output {name[:64]!r} has a BYTES element too long")
            total += len(b) + 4
        if total > limits.max_total_bytes:
            raise OutputError(f"output {name[:64]!r} is larger than allowed")
    elif value.nbytes > limits.max_total_bytes:
        raise OutputError(f"output {name[:64]!r} is larger than allowed")
    return datatype, value


def _output_bytes(v: Any) -> bytes:
    if isinstance(v, bytes | np.bytes_):
        return bytes(v)
    if isinstance(v, str | np.str_):
        return str(v).encode("utf-8", "surrogatepass")
    raise OutputError("a BYTES output element is neither bytes nor a string")


def to_raw(datatype: str, arr: np.ndarray) -> bytes:
    if datatype == "BYTES":
        parts = []
        for v in arr.reshape(-1):
            b = _output_bytes(v)
            parts.append(struct.pack("<I", len(b)))
            parts.append(b)
        return b"".join(parts)
    return np.ascontiguousarray(arr, dtype=DTYPES[datatype]).tobytes()


def to_values(datatype: str, arr: np.ndarray) -> list[Any]:
    """Flattened values for JSON: BYTES as UTF-8 text (OutputError if it is not)."""
    flat = arr.reshape(-1)
    if datatype == "BYTES":
        try:
            return [_output_bytes(v).decode("utf-8") for v in flat]
        except UnicodeDecodeError:
            raise OutputError(
                "a BYTES output is not UTF-8 text; ask for it with binary_data"
            ) from None
    if datatype.startswith("FP"):
        values = [float(v) for v in flat]
        if any(v != v or v in (float("inf"), float("-inf")) for v in values):
            raise OutputError("a float output is NaN or infinite; ask for it with binary_data")
        return values
    if datatype == "BOOL":
        return [bool(v) for v in flat]
    return [int(v) for v in flat]
