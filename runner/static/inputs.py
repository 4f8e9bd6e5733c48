"""An ONNX model's graph inputs, read from its bytes on the host, and the usage mistakes they
show before a sandbox starts (input names and count, an array's rank, fixed sizes or dtype),
told in the CLI's own words (`--input NAME=FILE.npy`).

The read walks the protobuf wire format by hand: no `onnx`, no `onnxruntime`, since the host
never hands model bytes to a library parser. ModelProto.graph (7) -> GraphProto.input (11):
ValueInfoProto name (1) and type (2) -> TypeProto.tensor_type (1) -> elem_type (1) and shape
(2) -> dims (1): dim_value (1) or dim_param (2). Inputs that an initializer (5, its TensorProto
name 8) or a sparse initializer (15) shares a name with are not real inputs, as onnxruntime
sees them. Length-delimited payloads that are not needed (nodes, tensor data) are skipped by a
seek, never read. Every read is bounded (bytes read, fields walked, a name's length, inputs,
dimensions); anything odd (a truncated field, a wrong wire type, a repeated singular field,
a name that is not UTF-8) makes the answer None, "not known", never an exception.

The sandbox checks the inputs again itself: this is for the message, not for safety.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from runner.errors import UsageError, untrusted_text
from runner.worker.shared.formats import Format, FormatError, _open, _read_varint, detect

READ_BYTES = 4 << 20  # bytes read of one file (payloads skipped by a seek are not read)
MAX_FIELDS = 1_000_000  # protobuf fields walked in all, every message counted
MAX_INPUTS = 4096  # graph inputs (a real model has a handful)
MAX_NAME = 4096  # bytes of one name
MAX_DIMS = 64  # dimensions of one input's shape
CHUNK = 4096  # bytes read at a time
SHOWN_NAME = 60  # characters of a name in a message
SHOWN_NAME_CHARS = 200  # a name as `describe` shows it: accepted for the real name too
NAMED_IN_HINT = 4  # inputs spelt out in a hint; more: NAME=FILE.npy for each
HF_WEIGHTS = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
CONFIG_BYTES = 1 << 20

# TensorProto.DataType -> numpy, the types the sandbox can send (its onnxruntime names them so)
_DTYPES = {
    1: "float32",
    2: "uint8",
    3: "int8",
    4: "uint16",
    5: "int16",
    6: "int32",
    7: "int64",
    9: "bool",
    10: "float16",
    11: "float64",
    12: "uint32",
    13: "uint64",
}


class _Odd(Exception):
    """Bytes this read does not vouch for: the answer is 'not known'."""


@dataclass(frozen=True)
class GraphInput:
    name: str
    dtype: str  # numpy dtype name; "" when unknown or not a tensor
    shape: tuple[int, ...] | None  # -1 for a dynamic dimension; None when not declared

    def shown(self) -> str:
        shape = "?" if self.shape is None else str(list(self.shape))
        return f"{untrusted_text(self.name, SHOWN_NAME)} {self.dtype or '?'} {shape}"


class _Reader:
    """Bounded reads of one file at absolute offsets, through a small window."""

    def __init__(self, f: BinaryIO, size: int) -> None:
        self.f, self.size = f, size
        self.base, self.buf = 0, b""
        self.read_left, self.fields_left = READ_BYTES, MAX_FIELDS

    def _window(self, pos: int, need: int) -> tuple[bytes, int]:
        end = min(pos + need, self.size)
        if self.base <= pos and end <= self.base + len(self.buf):
            return self.buf, pos - self.base
        n = min(max(CHUNK, need), self.size - pos)
        if n <= 0 or n > self.read_left:
            raise _Odd("past the end, or past the read bound")
        self.read_left -= n
        self.f.seek(pos)
        self.buf, self.base = self.f.read(n) or b"", pos
        if len(self.buf) < end - pos:
            raise _Odd("the file is shorter than it was")
        return self.buf, 0

    def varint(self, pos: int, end: int) -> tuple[int, int]:
        if pos >= end:
            raise _Odd("a field breaks off")
        buf, rel = self._window(pos, 10)
        value, after = _read_varint(buf, rel)  # ValueError when truncated
        after += self.base
        if after > end:
            raise _Odd("a varint runs past its message")
        return value, after

    def text(self, pos: int, n: int) -> str:
        if n > MAX_NAME:
            raise _Odd("a name longer than the bound")
        buf, rel = self._window(pos, n)
        return buf[rel : rel + n].decode("utf-8")  # UnicodeDecodeError is a ValueError

    def fields(self, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
        """(number, wire type, value or length, payload offset) of each varint or
        length-delimited field of the message in [start, end)."""
        pos = start
        while pos < end:
            self.fields_left -= 1
            if self.fields_left < 0:
                raise _Odd("more fields than the bound")
            key, pos = self.varint(pos, end)
            number, wire = key >> 3, key & 7
            if number == 0:
                raise _Odd("field number 0")
            if wire == 0:
                value, pos = self.varint(pos, end)
                yield number, wire, value, pos
            elif wire == 2:
                length, pos = self.varint(pos, end)
                if length > end - pos:
                    raise _Odd("a length runs past its message")
                yield number, wire, length, pos
                pos += length
            elif wire in (1, 5):
                pos += 8 if wire == 1 else 4
            else:
                raise _Odd(f"wire type {wire}")
        if pos != end:
            raise _Odd("a fixed-width field runs past its message")


def _message(r: _Reader, start: int, end: int, wanted: dict[int, int]) -> dict[int, int]:
    """The singular fields `wanted` (number -> wire type) of a message: their value (varint)
    or payload offset, with a payload's length under -number. A second one, or a wrong wire
    type, is odd: protobuf would merge or override it, and a reader that may disagree with
    the loader must not answer."""
    out: dict[int, int] = {}
    for number, wire, value, pos in r.fields(start, end):
        if number not in wanted:
            continue
        if wire != wanted[number] or number in out:
            raise _Odd(f"field {number}: wire type {wire}, or repeated")
        out[number] = value if wire == 0 else pos
        if wire == 2:
            out[-number] = value
    return out


def _dim(r: _Reader, start: int, end: int) -> int:
    last = -1
    for number, wire, value, _ in r.fields(start, end):
        if number == 1 and wire == 0:  # dim_value: an int64 (a negative one is ten bytes)
            last = value if value < 1 << 62 else -1
        elif number == 2:  # dim_param: a symbol
            last = -1
    return last


def _shape(r: _Reader, start: int, end: int) -> tuple[int, ...]:
    dims: list[int] = []
    for number, wire, length, pos in r.fields(start, end):
        if number != 1:
            continue
        if wire != 2 or len(dims) >= MAX_DIMS:
            raise _Odd("a dim that is not a message, or too many")
        dims.append(_dim(r, pos, pos + length))
    return tuple(dims)


def _value_info(r: _Reader, start: int, end: int) -> GraphInput:
    info = _message(r, start, end, {1: 2, 2: 2})
    if 1 not in info or info[-1] == 0:
        raise _Odd("an input with no name")
    name = r.text(info[1], info[-1])
    if 2 not in info:
        return GraphInput(name, "", None)
    kind = _message(r, info[2], info[2] + info[-2], {1: 2})  # TypeProto.tensor_type
    if 1 not in kind:
        return GraphInput(name, "", None)  # a sequence, map or optional: not checked here
    tensor = _message(r, kind[1], kind[1] + kind[-1], {1: 0, 2: 2})
    dtype = _DTYPES.get(tensor.get(1, 0), "")
    shape = _shape(r, tensor[2], tensor[2] + tensor[-2]) if 2 in tensor else None
    return GraphInput(name, dtype, shape)


def _tensor_name(r: _Reader, start: int, end: int) -> str | None:
    t = _message(r, start, end, {8: 2})
    return r.text(t[8], t[-8]) if 8 in t else None


def _graph(r: _Reader, start: int, end: int) -> list[GraphInput]:
    inputs: list[GraphInput] = []
    initialized: set[str] = set()
    for number, wire, length, pos in r.fields(start, end):
        if number not in (5, 11, 15):
            continue
        if wire != 2:
            raise _Odd(f"graph field {number} has wire type {wire}")
        if number == 11:
            if len(inputs) >= MAX_INPUTS:
                raise _Odd("more inputs than the bound")
            inputs.append(_value_info(r, pos, pos + length))
        elif number == 5:
            name = _tensor_name(r, pos, pos + length)
            initialized.update([name] if name else [])
        else:  # a SparseTensorProto: its values (1) carry the name
            values = _message(r, pos, pos + length, {1: 2})
            name = _tensor_name(r, values[1], values[1] + values[-1]) if 1 in values else None
            initialized.update([name] if name else [])
    names = [i.name for i in inputs]
    if len(set(names)) != len(names):
        raise _Odd("two inputs of one name")
    return [i for i in inputs if i.name not in initialized]


def read_inputs(f: BinaryIO) -> list[GraphInput] | None:
    """The graph inputs of the ONNX model in f, in order; None when the bytes do not say."""
    try:
        size = os.fstat(f.fileno()).st_size
        r = _Reader(f, size)
        model = _message(r, 0, size, {7: 2})
        if 7 not in model:
            return None
        return _graph(r, model[7], model[7] + model[-7])
    except (_Odd, ValueError, OSError, OverflowError):
        return None


def onnx_inputs(path: Path, follow: bool = True) -> list[GraphInput] | None:
    """The graph inputs of the ONNX file at path (a regular file only); None when unknown."""
    try:
        with _open(path, follow) as f:
            return read_inputs(f)
    except (FormatError, OSError):
        return None


def _transformers_repo(model: Path) -> bool:
    """A directory the worker may load as a Hugging Face repository rather than by its ONNX
    file: a config.json beside weights transformers reads, or one that mentions auto_map (a
    byte search, broader than the worker's own test: then nothing is said here)."""
    cfg = model / "config.json"
    try:
        if not cfg.is_file() or cfg.is_symlink():
            return False
        if any((model / w).exists() for w in HF_WEIGHTS):
            return True
        with _open(cfg, follow=False) as f:
            return b"auto_map" in f.read(CONFIG_BYTES)
    except (FormatError, OSError):
        return True


def model_inputs(model: Path, fmt: str = "auto") -> tuple[str, list[GraphInput]] | None:
    """The file name and graph inputs of the ONNX file a run of MODEL would load; None when it
    is not one, or its inputs cannot be read."""
    if fmt not in ("auto", "", Format.ONNX.value):
        return None
    try:
        if fmt != Format.ONNX.value and model.is_dir() and _transformers_repo(model):
            return None
        found = detect(model)
    except (FormatError, OSError, ValueError):
        return None
    if found.format is not Format.ONNX:
        return None
    inputs = onnx_inputs(found.path, follow=found.path == model)
    return None if inputs is None else (found.path.name, inputs)


def inputs_note(model: Path, limit: int = 16) -> str | None:
    """A line for the report: the ONNX inputs the static read found; None when it found none."""
    read = model_inputs(model)
    if read is None or not read[1]:
        return None
    _, inputs = read
    more = f" and {len(inputs) - limit} more" if len(inputs) > limit else ""
    shown = ", ".join(i.shown() for i in inputs[:limit])
    return f"ONNX graph inputs, read statically: {shown}{more}"


def _names(items: list[str], limit: int = 8) -> str:
    shown = ", ".join(untrusted_text(n, SHOWN_NAME) for n in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _how(inputs: list[GraphInput]) -> str:
    """What to pass, in the CLI's words."""
    if len(inputs) > NAMED_IN_HINT:
        return (
            f"pass --input NAME=FILE.npy for each of its {len(inputs)} inputs, or one .npz "
            "that holds them by name"
        )
    names = (untrusted_text(i.name, SHOWN_NAME) for i in inputs)
    return "pass " + " ".join(f"--input {shlex.quote(n + '=FILE.npy')}" for n in names)


class _Origins(dict[str, str]):
    """Each array's --input as the user typed it, by the name it feeds (an array of a
    .npz: the file, and its name)."""

    def __init__(self, named: dict[str, str], whole: list[str]) -> None:
        super().__init__(named)
        self.whole = whole

    def __missing__(self, name: str) -> str:
        if len(self.whole) == 1:
            return f"--input {untrusted_text(self.whole[0], 120)} ({untrusted_text(name, 60)})"
        return f"the array {untrusted_text(name, SHOWN_NAME)!r}"


def _origins(specs: list[str]) -> _Origins:
    """Each array's --input as the user typed it, by the name it feeds."""
    named: dict[str, str] = {}
    whole = [s for s in specs if "=" not in s]  # a single .npy, or .npz files
    for s in specs:
        name, sep, _ = s.partition("=")
        if sep:
            named[name] = f"--input {untrusted_text(s, 120)}"
    return _Origins(named, whole)


def _check_array(origin: str, spec: GraphInput, arr: np.ndarray) -> None:
    name = untrusted_text(spec.name, SHOWN_NAME)
    if spec.shape:  # () is unknown to the sandbox too (a scalar declares none)
        want = list(spec.shape)
        if arr.ndim != len(want):
            raise UsageError(
                f"{origin} is {arr.ndim}-D; {name} is {len(want)}-D {want}",
                f"give {name} an array of {len(want)} dimensions (-1 is any size)",
            )
        if any(e not in (-1, a) for e, a in zip(want, arr.shape, strict=True)):
            raise UsageError(
                f"{origin} has shape {list(arr.shape)}; {name} is {want}",
                "-1 is any size; the others are fixed",
            )
    if spec.dtype and arr.dtype.name != spec.dtype:
        raise UsageError(
            f"{origin} is {arr.dtype.name}; {name} takes {spec.dtype}",
            f"save it as {spec.dtype}, e.g. numpy.save(FILE, array.astype('{spec.dtype}'))",
        )


def check_feed(
    model: Path, fmt: str, specs: list[str], feed: Mapping[str, Any] | np.ndarray
) -> None:
    """Raise the UsageError a static read of an ONNX model's inputs tells about the arrays
    given with --input (specs, as typed; feed, as loaded), before a sandbox starts: names
    missing or unknown, a single unnamed array for several inputs, a rank, fixed size or dtype
    that cannot be. Nothing is said when the model is not ONNX or its inputs are not known."""
    read = model_inputs(model, fmt)
    if read is None or not read[1]:
        return
    file, inputs = read
    shown_file = untrusted_text(file, 80)
    origins = _origins(specs)
    if not isinstance(feed, Mapping):
        if len(inputs) != 1:
            raise UsageError(
                f"{shown_file} takes {len(inputs)} inputs {_names([i.name for i in inputs])}; "
                f"a single unnamed --input {untrusted_text(specs[0], 120)} was given",
                _how(inputs),
            )
        _check_array(f"--input {untrusted_text(specs[0], 120)}", inputs[0], np.asarray(feed))
        return
    by_name = {untrusted_text(i.name, SHOWN_NAME_CHARS): i for i in inputs}
    by_name.update({i.name: i for i in inputs})
    unknown = [k for k in feed if k not in by_name]
    given = {by_name[k].name for k in feed if k in by_name}
    missing = [i.name for i in inputs if i.name not in given]
    if unknown or missing:
        what = [f"names {_names(unknown)} (unknown)"] if unknown else []
        what += [f"lacks {_names(missing)}"] if missing else []
        takes = "input" if len(inputs) == 1 else "inputs"
        raise UsageError(
            f"{shown_file} takes {takes} {_names([i.name for i in inputs])}; --input "
            + " and ".join(what),
            _how(inputs),
        )
    for key, arr in feed.items():
        _check_array(origins[key], by_name[key], np.asarray(arr))
