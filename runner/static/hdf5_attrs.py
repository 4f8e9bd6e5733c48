"""One attribute of an HDF5 file's root group, read by bytes (a legacy Keras .h5 file's
`model_config`), never through libhdf5: the host runs no large C parser over hostile bytes.

What is followed is what libhdf5 follows to answer `file.attrs[name]`: the superblock (versions
0 to 3) to the root group's object header (version 1 or 2), its messages and continuation
chunks, the attribute messages stored there (compact storage), and for a variable-length
string the global heap object it points to. Anything else that could hold the attribute is
not read, and is said (Unreadable): attributes in dense storage (a fractal heap, which may be
compressed), shared attribute messages, shared or committed datatypes, strings that are not
scalar. Every read is bounded: addresses and sizes are checked against the file's size, the
messages and chunks walked are counted, the bytes read are capped.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

SIGNATURE = b"\x89HDF\r\n\x1a\n"
MAX_VALUE_BYTES = 32 << 20  # the attribute's value (a model config is a few hundred KiB)
MAX_CHUNKS = 64  # object header chunks followed (continuations)
MAX_MESSAGES = 4096  # messages read over all chunks
MAX_CHUNK_BYTES = 1 << 20
MAX_HEAP_BYTES = 64 << 20  # a global heap collection

ATTRIBUTE, CONTINUATION, ATTRIBUTE_INFO = 0x000C, 0x0010, 0x0015
STRING, VLEN = 3, 9


class Unreadable(Exception):
    """The file, or where the attribute could be, is not read: the reason."""


@dataclass
class Found:
    values: list[bytes] = field(default_factory=list)  # every attribute of the name, in order
    names: list[str] = field(default_factory=list)  # the root group's attribute names


class _File:
    def __init__(self, f: BinaryIO, size: int) -> None:
        self.f, self.size = f, size
        self.offsets = self.lengths = 8
        self.base = 0

    def read(self, at: int, n: int, what: str) -> bytes:
        if at < 0 or n < 0 or at + n > self.size:
            raise Unreadable(f"{what} at {at} (+{n} bytes) lies outside the file")
        self.f.seek(at)
        data = self.f.read(n)
        if len(data) != n:
            raise Unreadable(f"{what} at {at}: the file ended")
        return data

    def address(self, data: bytes, at: int) -> int | None:
        """An address field (relative to the base address); None when undefined."""
        raw = data[at : at + self.offsets]
        if len(raw) != self.offsets:
            raise Unreadable("an address field is cut short")
        if raw == b"\xff" * self.offsets:
            return None
        return int.from_bytes(raw, "little") + self.base

    def length(self, data: bytes, at: int) -> int:
        raw = data[at : at + self.lengths]
        if len(raw) != self.lengths:
            raise Unreadable("a length field is cut short")
        return int.from_bytes(raw, "little")


def root_attribute(path: Path, name: str) -> Found:
    """Every value of the root group's attribute `name` stored where libhdf5 can find it
    (raises Unreadable for what cannot be read, or could hold it unseen)."""
    with path.open("rb") as f:
        h = _File(f, os.fstat(f.fileno()).st_size)
        root = _superblock(h)
        found = Found()
        for message_type, flags, body in _messages(h, root):
            if message_type == ATTRIBUTE_INFO:
                _attribute_info(h, body)
            elif message_type == ATTRIBUTE:
                if flags & 0x02:
                    raise Unreadable("a root attribute is a shared message (not read)")
                attr_name, value = _attribute(h, body, name)
                found.names.append(attr_name)
                if value is not None:
                    found.values.append(value)
        return found


def _superblock(h: _File) -> int:
    head = h.read(0, min(h.size, 128), "the superblock")
    if not head.startswith(SIGNATURE) or len(head) < 16:
        raise Unreadable("no HDF5 signature at the start of the file")
    version = head[8]
    if version in (0, 1):
        h.offsets, h.lengths = head[13], head[14]
        at = 24 if version == 0 else 28
    elif version in (2, 3):
        h.offsets, h.lengths = head[9], head[10]
        at = 12
    else:
        raise Unreadable(f"superblock version {version} (not read)")
    if h.offsets not in (2, 4, 8) or h.lengths not in (2, 4, 8):
        raise Unreadable(f"offsets of {h.offsets} bytes, lengths of {h.lengths} (not read)")
    base = h.address(head, at)
    h.base = base or 0
    if version in (0, 1):
        # base, free space, end of file, driver: then the root's symbol table entry
        root = h.address(head, at + 4 * h.offsets + h.offsets)
    else:
        root = h.address(head, at + 3 * h.offsets)
    if root is None:
        raise Unreadable("the root group's object header address is undefined")
    return root


def _messages(h: _File, address: int) -> list[tuple[int, int, bytes]]:
    """(type, flags, body) of every message in the object header at `address`, over all
    its chunks, in order."""
    first = h.read(address, 16, "the root object header")
    out: list[tuple[int, int, bytes]] = []
    pending: list[tuple[int, int]] = []
    if first[:4] == b"OHDR":
        version = 2
        flags = first[5]
        at = 6 + (16 if flags & 0x20 else 0) + (4 if flags & 0x10 else 0)
        width = 1 << (flags & 0x03)
        prefix = h.read(address, at + width, "the root object header")
        size = int.from_bytes(prefix[at : at + width], "little")
        start = address + at + width
        chunk = (start, size)
    elif first[0] == 1:
        version, flags = 1, 0
        size = struct.unpack_from("<I", first, 8)[0]
        chunk = (address + 16, size)
    else:
        raise Unreadable(f"the root object header has version {first[0]} (not read)")
    chunks = 0
    while True:
        chunks += 1
        if chunks > MAX_CHUNKS:
            raise Unreadable(f"the root object header has more than {MAX_CHUNKS} chunks")
        start, size = chunk
        if size > MAX_CHUNK_BYTES:
            raise Unreadable(f"an object header chunk of {size} bytes (more than the host reads)")
        data = h.read(start, size, "an object header chunk")
        for message in _chunk_messages(data, version, flags):
            if len(out) >= MAX_MESSAGES:
                raise Unreadable(f"more than {MAX_MESSAGES} messages in the root object header")
            out.append(message)
            if message[0] == CONTINUATION:
                target = h.address(message[2], 0)
                length = h.length(message[2], h.offsets)
                if target is None:
                    raise Unreadable("a continuation message points nowhere")
                pending.append((target, length))
        if not pending:
            return out
        target, length = pending.pop(0)
        if version == 2:
            if h.read(target, 4, "a continuation chunk") != b"OCHK" or length < 8:
                raise Unreadable(f"the continuation chunk at {target} has no OCHK signature")
            chunk = (target + 4, length - 8)  # its signature and checksum left out
        else:
            chunk = (target, length)


def _chunk_messages(data: bytes, version: int, flags: int) -> list[tuple[int, int, bytes]]:
    out, at = [], 0
    head = 8 if version == 1 else 4 + (2 if flags & 0x04 else 0)
    while at + head <= len(data):
        if version == 1:
            message_type, size, mflags = struct.unpack_from("<HHB", data, at)
        else:
            message_type, size, mflags = struct.unpack_from("<BHB", data, at)
        body = data[at + head : at + head + size]
        if len(body) != size:
            raise Unreadable("an object header message runs past its chunk")
        out.append((message_type, mflags, body))
        at += head + size
    return out


def _attribute_info(h: _File, body: bytes) -> None:
    """Dense storage (a fractal heap and a name index) may hold attributes unseen: refused."""
    if len(body) < 2:
        raise Unreadable("an attribute info message is cut short")
    at = 2 + (2 if body[1] & 0x01 else 0)
    if h.address(body, at) is not None:
        raise Unreadable(
            "the root group keeps attributes in dense storage (a fractal heap: not read)"
        )


def _attribute(h: _File, body: bytes, wanted: str) -> tuple[str, bytes | None]:
    """(the attribute's name, its value when it is `wanted`)."""
    if len(body) < 8:
        raise Unreadable("an attribute message is cut short")
    version, flags = body[0], body[1]
    name_size, type_size, space_size = struct.unpack_from("<HHH", body, 2)
    if version == 1:
        pad = _pad8
        at = 8
    elif version in (2, 3):
        pad = _same
        at = 8 if version == 2 else 9
    else:
        raise Unreadable(f"an attribute message of version {version} (not read)")
    raw_name = body[at : at + name_size]
    at += pad(name_size)
    dtype = body[at : at + type_size]
    at += pad(type_size)
    space = body[at : at + space_size]
    at += pad(space_size)
    name = raw_name.split(b"\x00", 1)[0].decode("utf-8", "replace")
    if raw_name.rstrip(b"\x00") != wanted.encode():
        return name, None
    if version > 1 and flags & 0x03:
        raise Unreadable(f"the attribute {wanted!r} has a shared datatype or dataspace (not read)")
    if not _scalar(space):
        raise Unreadable(f"the attribute {wanted!r} is not a scalar (Keras reads one string)")
    return name, _value(h, dtype, body[at:], wanted)


def _pad8(n: int) -> int:
    return (n + 7) & ~7


def _same(n: int) -> int:
    return n


def _scalar(space: bytes) -> bool:
    if len(space) < 2:
        return False
    version, rank = space[0], space[1]
    if version == 1:
        return rank == 0
    if version == 2 and len(space) >= 4:
        return space[3] == 0  # type 0: scalar
    return False


def _value(h: _File, dtype: bytes, data: bytes, wanted: str) -> bytes:
    if len(dtype) < 8:
        raise Unreadable(f"the attribute {wanted!r} has a datatype cut short")
    cls = dtype[0] & 0x0F
    size = struct.unpack_from("<I", dtype, 4)[0]
    if cls == STRING:
        if size > len(data) or size > MAX_VALUE_BYTES:
            raise Unreadable(
                f"the attribute {wanted!r}: a string of {size} bytes not in its message"
            )
        value = data[:size]
        return value.split(b"\x00", 1)[0] if dtype[1] & 0x0F == 0 else value.rstrip(b"\x00")
    if cls == VLEN and dtype[1] & 0x0F == 1:  # a variable-length string
        return _heap_object(h, data, wanted)
    raise Unreadable(f"the attribute {wanted!r} is of datatype class {cls}, not a string")


def _heap_object(h: _File, data: bytes, wanted: str) -> bytes:
    """The global heap object a variable-length element points to: length (4), collection
    address, object index (4)."""
    if len(data) < 8 + h.offsets:
        raise Unreadable(f"the attribute {wanted!r} has its heap reference cut short")
    length = struct.unpack_from("<I", data, 0)[0]
    collection = h.address(data, 4)
    index = struct.unpack_from("<I", data, 4 + h.offsets)[0]
    if collection is None:
        raise Unreadable(f"the attribute {wanted!r} points to no global heap")
    head = h.read(collection, 8 + h.lengths, "a global heap collection")
    if head[:4] != b"GCOL":
        raise Unreadable(f"no global heap collection at {collection}")
    total = h.length(head, 8)
    if total > MAX_HEAP_BYTES or total < 8 + h.lengths:
        raise Unreadable(f"a global heap collection of {total} bytes (not read)")
    heap = h.read(collection, total, "a global heap collection")
    at = 8 + h.lengths
    while at + 8 + h.lengths <= total:
        obj, _refs = struct.unpack_from("<HH", heap, at)
        size = h.length(heap, at + 8)
        start = at + 8 + h.lengths
        if obj == 0:
            break
        if obj == index:
            if size > MAX_VALUE_BYTES or start + size > total or length > size:
                raise Unreadable(f"the attribute {wanted!r}: heap object {index} out of bounds")
            return heap[start : start + length]
        at = start + _pad8(size)
    raise Unreadable(f"the attribute {wanted!r}: heap object {index} is not in its collection")
