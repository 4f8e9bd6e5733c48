"""Where an ONNX model's tensors keep their external data, read from the protobuf bytes with
the standard library only (no `onnx` import, no parse of the whole model into memory).

Both sides use it: the host flags external data that leaves the model's directory before
anything runs, and the worker refuses to load such a model. Every tensor is reached: the
graph's initializers and sparse initializers, tensors in node attributes, nested subgraphs
(If, Loop, Scan bodies) and the nodes of model-local functions.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

MAX_ENTRIES = 100_000  # protobuf fields read per message
MAX_DEPTH = 16  # nested graphs followed
MAX_ENTRY_BYTES = 65_536  # a single external_data entry (key and value)


@dataclass(frozen=True)
class External:
    tensor: str
    location: str


def _varint(f: BinaryIO) -> int | None:
    result, shift = 0, 0
    while shift < 64:
        b = f.read(1)
        if not b:
            return None
        result |= (b[0] & 0x7F) << shift
        if not b[0] & 0x80:
            return result
        shift += 7
    raise ValueError("varint too long")


def _fields(f: BinaryIO, start: int, end: int) -> list[tuple[int, int, int, int]]:
    """(field, wire type, value or length, payload offset) of each field in [start, end)."""
    out: list[tuple[int, int, int, int]] = []
    f.seek(start)
    while f.tell() < end and len(out) < MAX_ENTRIES:
        key = _varint(f)
        if key is None:
            break
        field_no, wire = key >> 3, key & 7
        if wire == 0:
            value = _varint(f)
            if value is None:
                break
            out.append((field_no, wire, value, f.tell()))
        elif wire == 2:
            length = _varint(f)
            if length is None or f.tell() + length > end:
                raise ValueError("a length runs past the end of its message")
            out.append((field_no, wire, length, f.tell()))
            f.seek(length, os.SEEK_CUR)
        elif wire == 5:
            f.seek(4, os.SEEK_CUR)
        elif wire == 1:
            f.seek(8, os.SEEK_CUR)
        else:
            raise ValueError(f"wire type {wire}")
    return out


def _messages(fields: list[tuple[int, int, int, int]], number: int) -> Iterator[tuple[int, int]]:
    for field_no, wire, length, offset in fields:
        if field_no == number and wire == 2:
            yield offset, offset + length


def _tensor(f: BinaryIO, start: int, end: int) -> Iterator[External]:
    fields = _fields(f, start, end)
    name, location, external = "", "", False
    for field_no, wire, value, offset in fields:
        if field_no == 14 and wire == 0 and value == 1:  # data_location = EXTERNAL
            external = True
        elif field_no == 8 and wire == 2 and value < MAX_ENTRY_BYTES:  # name
            f.seek(offset)
            name = f.read(value).decode("utf-8", "replace")
        elif field_no == 13 and wire == 2 and value < MAX_ENTRY_BYTES:  # external_data
            external = True
            key = val = b""
            for e_field, e_wire, e_len, e_off in _fields(f, offset, offset + value):
                if e_wire == 2 and e_field in (1, 2):
                    f.seek(e_off)
                    if e_field == 1:
                        key = f.read(e_len)
                    else:
                        val = f.read(e_len)
            if key == b"location":
                location = val.decode("utf-8", "replace")
    if external:
        yield External(name, location)


def _sparse(f: BinaryIO, start: int, end: int) -> Iterator[External]:
    fields = _fields(f, start, end)
    for number in (1, 2):  # SparseTensorProto.values, .indices
        for s, e in _messages(fields, number):
            yield from _tensor(f, s, e)


def _nodes(f: BinaryIO, nodes: Iterator[tuple[int, int]], depth: int) -> Iterator[External]:
    for n_start, n_end in nodes:
        for a_start, a_end in _messages(_fields(f, n_start, n_end), 5):  # NodeProto.attribute
            attr = _fields(f, a_start, a_end)
            for number in (5, 10):  # AttributeProto.t, .tensors
                for s, e in _messages(attr, number):
                    yield from _tensor(f, s, e)
            for number in (22, 23):  # .sparse_tensor, .sparse_tensors
                for s, e in _messages(attr, number):
                    yield from _sparse(f, s, e)
            for number in (6, 11):  # .g, .graphs: subgraphs
                for s, e in _messages(attr, number):
                    yield from _graph(f, s, e, depth + 1)


def _graph(f: BinaryIO, start: int, end: int, depth: int) -> Iterator[External]:
    if depth > MAX_DEPTH:
        raise ValueError("graphs nested too deep")
    fields = _fields(f, start, end)
    for s, e in _messages(fields, 5):  # GraphProto.initializer
        yield from _tensor(f, s, e)
    for s, e in _messages(fields, 15):  # GraphProto.sparse_initializer
        yield from _sparse(f, s, e)
    yield from _nodes(f, _messages(fields, 1), depth)  # GraphProto.node


def external_data(path: Path) -> list[External]:
    """Every tensor of the model that keeps its data outside the file. Raises ValueError for
    bytes that are not a well-formed protobuf, OSError when the file cannot be read."""
    size = path.stat().st_size
    out: list[External] = []
    with path.open("rb") as f:
        fields = _fields(f, 0, size)
        for s, e in _messages(fields, 7):  # ModelProto.graph
            out += _graph(f, s, e, 0)
        for s, e in _messages(fields, 25):  # ModelProto.functions
            out += _nodes(f, _messages(_fields(f, s, e), 7), 0)  # FunctionProto.node
    return out


def escapes(path: Path) -> list[str]:
    """Why each external-data location leads outside the model's directory ('' for none):
    an empty, absolute or `..` location, or a symlink that resolves outside."""
    base = path.parent.resolve()
    problems = []
    for ext in external_data(path):
        loc = ext.location
        if not loc or os.path.isabs(loc) or ".." in Path(loc).parts:
            problems.append(
                f"tensor {ext.tensor[:80]!r} keeps its external data at "
                f"{loc[:200]!r}, outside the model's directory"
            )
            continue
        target = base / loc
        if target.is_symlink():  # even one that points inside could be swapped
            problems.append(
                f"tensor {ext.tensor[:80]!r} reaches its external data "
                f"{loc[:200]!r} through a symlink"
            )
        elif not target.resolve().is_relative_to(base):
            problems.append(
                f"tensor {ext.tensor[:80]!r} keeps its external data at "
                f"{loc[:200]!r}, outside the model's directory"
            )
    return problems
