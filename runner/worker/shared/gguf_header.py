"""A GGUF file's header, metadata and tensor table, read by bytes with bounds.

The host reads it to judge a model before any sandbox starts (runner.static.gguf), and the
worker reads it for the chat template it renders (runner.worker.loaders_gguf): the same reader,
which executes nothing and never trusts a count. Every count, string length, array length and
tensor offset is checked against the reader's bounds and what is left of the file before it is
used; the first one that does not hold ends the read with a problem said in plain words (the
caller makes it a finding: what follows was not checked). Layout (version 2 and 3, little
endian): magic "GGUF", u32 version, u64 tensor count, u64 key-value count, the key-value pairs
(u64-length strings as keys, a u32 value type, the value), the tensor infos (name, u32 number
of dimensions, u64 dimensions, u32 ggml type, u64 offset into the data section), padding to
general.alignment, the data section.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

MAGIC = b"GGUF"
VERSIONS = (2, 3)
MAX_TENSORS = 1 << 17  # the largest real models hold a few thousand tensors
MAX_KV = 1 << 16
MAX_KEY_BYTES = 1 << 16
MAX_STRING_BYTES = 64 << 20  # one string value; longer is out of bounds
KEPT_STRING_BYTES = 1 << 20  # values kept (longer ones are skipped, their length said)
MAX_ARRAY = 1 << 23  # elements of one array (vocabularies and merges are up to a few 100k)
MAX_ARRAY_DEPTH = 2  # an array of arrays, no deeper
MAX_METADATA_BYTES = 256 << 20  # the key-value section in all
MAX_DIMS = 4  # GGML_MAX_DIMS
MAX_ALIGNMENT = 1 << 16
DEFAULT_ALIGNMENT = 32
KEPT_ARRAY_STRINGS = 1 << 19  # string arrays kept for the keys the caller names

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?"}
_SCALARS.update({10: "<Q", 11: "<q", 12: "<d"})
STRING, ARRAY = 8, 9
TYPE_NAMES = {0: "u8", 1: "i8", 2: "u16", 3: "i16", 4: "u32", 5: "i32", 6: "f32", 7: "bool"}
TYPE_NAMES.update({8: "string", 9: "array", 10: "u64", 11: "i64", 12: "f64"})
# ggml tensor types: (elements per block, bytes per block), as gguf.constants.GGML_QUANT_SIZES
GGML_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22), 7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 40),
    10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144),
    13: ("Q5_K", 256, 176), 14: ("Q6_K", 256, 210), 15: ("Q8_K", 256, 292),
    16: ("IQ2_XXS", 256, 66), 17: ("IQ2_XS", 256, 74), 18: ("IQ3_XXS", 256, 98),
    19: ("IQ1_S", 256, 50), 20: ("IQ4_NL", 32, 18), 21: ("IQ3_S", 256, 110),
    22: ("IQ2_S", 256, 82), 23: ("IQ4_XS", 256, 136), 24: ("I8", 1, 1), 25: ("I16", 1, 2),
    26: ("I32", 1, 4), 27: ("I64", 1, 8), 28: ("F64", 1, 8), 29: ("IQ1_M", 256, 56),
    30: ("BF16", 1, 2), 34: ("TQ1_0", 256, 54), 35: ("TQ2_0", 256, 66),
    39: ("MXFP4", 32, 17), 40: ("NVFP4", 64, 36), 41: ("Q1_0", 128, 18),
}  # fmt: skip

Value = int | float | bool | str | None


class Malformed(Exception):
    """A count, length or offset out of bounds: the message says which."""


@dataclass(frozen=True)
class ArrayInfo:
    element: str  # the element type's name
    length: int
    strings: tuple[str, ...] | None = None  # kept only for the keys the caller asked for


@dataclass(frozen=True)
class Tensor:
    name: str
    dims: tuple[int, ...]
    type: str
    offset: int  # into the data section
    size: int  # bytes


@dataclass
class Header:
    version: int = 0
    tensor_count: int = 0
    kv_count: int = 0
    values: dict[str, Value] = field(default_factory=dict)  # scalars and kept strings
    arrays: dict[str, ArrayInfo] = field(default_factory=dict)
    long_strings: dict[str, int] = field(default_factory=dict)  # key -> length, not kept
    tensors: list[Tensor] = field(default_factory=list)
    alignment: int = DEFAULT_ALIGNMENT
    data_start: int = 0
    file_size: int = 0
    problem: str = ""  # the first bound that did not hold; "" when the whole table was read

    def string(self, key: str) -> str | None:
        v = self.values.get(key)
        return v if isinstance(v, str) else None

    def integer(self, key: str) -> int | None:
        v = self.values.get(key)
        return v if isinstance(v, int) and not isinstance(v, bool) else None

    def parameters(self) -> int:
        """Elements over every tensor read (the model's parameter count)."""
        total = 0
        for t in self.tensors:
            n = 1
            for d in t.dims:
                n *= d
            total += n
        return total


class _Reader:
    def __init__(self, f: BinaryIO, size: int) -> None:
        self.f, self.size, self.pos = f, size, 0
        self.last = 0  # the length of the last string read

    def left(self) -> int:
        return self.size - self.pos

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or n > self.left():
            raise Malformed(f"{what}: {n} bytes at offset {self.pos} run past the end of the file")
        data = self.f.read(n)
        if len(data) != n:
            raise Malformed(f"{what}: the file ended at offset {self.pos + len(data)}")
        self.pos += n
        return data

    def skip(self, n: int, what: str) -> None:
        if n < 0 or n > self.left():
            raise Malformed(f"{what}: {n} bytes at offset {self.pos} run past the end of the file")
        self.f.seek(n, 1)
        self.pos += n

    def unpack(self, fmt: str, what: str) -> int | float | bool:
        value: int | float | bool = struct.unpack(fmt, self.take(struct.calcsize(fmt), what))[0]
        return value

    def u32(self, what: str) -> int:
        return int(self.unpack("<I", what))

    def u64(self, what: str) -> int:
        return int(self.unpack("<Q", what))

    def string(self, what: str, limit: int, keep: bool = True) -> str | None:
        n = self.last = self.u64(f"{what}'s length")
        if n > limit:
            raise Malformed(f"{what}: a length of {n} bytes is over the bound of {limit}")
        if not keep or n > KEPT_STRING_BYTES:
            self.skip(n, what)
            return None
        return self.take(n, what).decode("utf-8", "replace")


def read_path(path: Path, keep_arrays: frozenset[str] = frozenset()) -> Header:
    """The header of the GGUF file at path (OSError is the caller's)."""
    with path.open("rb", buffering=1 << 16) as f:
        size = path.stat().st_size
        return read(f, size, keep_arrays)


def read(f: BinaryIO, size: int, keep_arrays: frozenset[str] = frozenset()) -> Header:
    """Read a GGUF header from f (size bytes long); never raises Malformed: a bound that did
    not hold is Header.problem, with what was read before it."""
    h = Header(file_size=size)
    r = _Reader(f, size)
    try:
        _read(r, h, keep_arrays)
    except Malformed as e:
        h.problem = str(e)
    except (UnicodeError, struct.error, OverflowError, ValueError) as e:
        h.problem = f"unreadable at offset {r.pos}: {type(e).__name__}"
    return h


def _read(r: _Reader, h: Header, keep_arrays: frozenset[str]) -> None:
    if r.take(4, "magic") != MAGIC:
        raise Malformed("no GGUF magic")
    raw = r.take(4, "version")
    h.version = struct.unpack("<I", raw)[0]
    if h.version not in VERSIONS:
        swapped = struct.unpack(">I", raw)[0]
        order = " (a big-endian file)" if swapped in VERSIONS else ""
        raise Malformed(f"GGUF version {h.version}{order} is not one this reader knows (2, 3)")
    h.tensor_count = r.u64("tensor count")
    h.kv_count = r.u64("key-value count")
    if h.tensor_count > MAX_TENSORS:
        raise Malformed(f"a tensor count of {h.tensor_count} is over the bound of {MAX_TENSORS}")
    if h.kv_count > MAX_KV:
        raise Malformed(f"a key-value count of {h.kv_count} is over the bound of {MAX_KV}")
    # every pair is at least a key length, a type and a one-byte value; every tensor info at
    # least a name length, a dimension count, a type and an offset
    if h.kv_count * 13 + h.tensor_count * 24 > r.left():
        raise Malformed(
            f"{h.kv_count} key-value pairs and {h.tensor_count} tensors cannot fit in the "
            f"{r.left()} bytes left of the file"
        )
    for i in range(h.kv_count):
        key = r.string(f"key {i}", MAX_KEY_BYTES) or ""
        vtype = r.u32(f"{key!r}'s value type")
        _value(r, h, key, vtype, keep_arrays)
        if r.pos > MAX_METADATA_BYTES:
            raise Malformed(f"the metadata is over the bound of {MAX_METADATA_BYTES} bytes")
    _alignment(h)
    infos = [_tensor_info(r, i) for i in range(h.tensor_count)]
    h.data_start = -(-r.pos // h.alignment) * h.alignment
    if h.data_start > r.size:
        raise Malformed(f"the data section would start at {h.data_start}, past the file's end")
    data_size = r.size - h.data_start
    for name, dims, type_id, offset in infos:
        h.tensors.append(_tensor(name, dims, type_id, offset, h.alignment, data_size))


def _value(r: _Reader, h: Header, key: str, vtype: int, keep_arrays: frozenset[str]) -> None:
    if vtype in _SCALARS:
        h.values[key] = r.unpack(_SCALARS[vtype], key)
    elif vtype == STRING:
        text = r.string(key, MAX_STRING_BYTES)
        if text is None:
            h.long_strings[key] = r.last
        h.values[key] = text
    elif vtype == ARRAY:
        h.arrays[key] = _array(r, key, 1, key in keep_arrays)
    else:
        raise Malformed(f"{key!r}: value type {vtype} is not a GGUF type")


def _array(r: _Reader, key: str, depth: int, keep: bool) -> ArrayInfo:
    etype = r.u32(f"{key!r}'s element type")
    n = r.u64(f"{key!r}'s length")
    if n > MAX_ARRAY:
        raise Malformed(f"{key!r}: an array of {n} elements is over the bound of {MAX_ARRAY}")
    name = TYPE_NAMES.get(etype)
    if name is None:
        raise Malformed(f"{key!r}: element type {etype} is not a GGUF type")
    if etype in _SCALARS:
        r.skip(n * struct.calcsize(_SCALARS[etype]), f"{key!r}'s {n} elements")
        return ArrayInfo(name, n)
    if etype == STRING:
        if n * 8 > r.left():
            raise Malformed(f"{key!r}: {n} strings cannot fit in the {r.left()} bytes left")
        kept: list[str] | None = [] if keep and n <= KEPT_ARRAY_STRINGS else None
        for i in range(n):
            s = r.string(f"{key!r}[{i}]", MAX_STRING_BYTES, keep=kept is not None)
            if kept is not None:
                kept.append(s or "")
        return ArrayInfo(name, n, tuple(kept) if kept is not None else None)
    if depth >= MAX_ARRAY_DEPTH:
        raise Malformed(f"{key!r}: arrays nested deeper than {MAX_ARRAY_DEPTH}")
    if n * 12 > r.left():
        raise Malformed(f"{key!r}: {n} arrays cannot fit in the {r.left()} bytes left")
    for i in range(n):
        _array(r, f"{key}[{i}]", depth + 1, False)
    return ArrayInfo(name, n)


def _alignment(h: Header) -> None:
    a = h.values.get("general.alignment")
    if a is None:
        return
    if isinstance(a, bool) or not isinstance(a, int) or a <= 0 or a & (a - 1) or a > MAX_ALIGNMENT:
        raise Malformed(f"general.alignment {a!r} is not a power of two up to {MAX_ALIGNMENT}")
    h.alignment = a


def _tensor_info(r: _Reader, i: int) -> tuple[str, tuple[int, ...], int, int]:
    name = r.string(f"tensor {i}'s name", MAX_KEY_BYTES) or ""
    n_dims = r.u32(f"tensor {name!r}'s dimension count")
    if n_dims > MAX_DIMS:
        raise Malformed(f"tensor {name!r}: {n_dims} dimensions, over GGML's {MAX_DIMS}")
    dims = tuple(r.u64(f"tensor {name!r}'s dimensions") for _ in range(n_dims))
    type_id = r.u32(f"tensor {name!r}'s type")
    offset = r.u64(f"tensor {name!r}'s offset")
    return name, dims, type_id, offset


def _tensor(
    name: str, dims: tuple[int, ...], type_id: int, offset: int, alignment: int, data_size: int
) -> Tensor:
    if type_id not in GGML_TYPES:
        raise Malformed(f"tensor {name!r}: ggml type {type_id} is not one this reader knows")
    type_name, block, block_bytes = GGML_TYPES[type_id]
    elements = 1
    for d in dims:
        elements *= d
        if elements > data_size * 8 + 1:  # at most a few elements per bit; never a bignum
            raise Malformed(
                f"tensor {name!r}: dimensions {list(dims)} ask for more than the data section holds"
            )
    if dims and dims[0] % block:
        raise Malformed(
            f"tensor {name!r}: its first dimension {dims[0]} is no multiple of {type_name}'s "
            f"block of {block}"
        )
    size = elements // block * block_bytes
    if offset % alignment:
        raise Malformed(f"tensor {name!r}: offset {offset} is not aligned to {alignment}")
    if offset + size > data_size:
        raise Malformed(
            f"tensor {name!r}: {size} bytes at offset {offset} run past the data section's "
            f"{data_size} bytes"
        )
    return Tensor(name, dims, type_name, offset, size)
