"""The imports a pickle would perform, found by reading its opcodes, never by unpickling.

The opcodes are walked in order, as the unpickler reads them (frames are contiguous, so a FRAME
cannot hide opcodes from a sequential walk; a frame that claims more bytes than there are ends
the walk, as it ends the real unpickler). A small symbolic stack follows strings through the
stack and the memo, so STACK_GLOBAL's module and name are known when they were pushed as
literals, even through MEMOIZE/PUT and GET; names computed at run time (by a REDUCE) are
reported as dynamic, which is itself a sign of obfuscation.
"""

from __future__ import annotations

import io
import pickletools
import struct
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

MAX_BYTES = 512 << 20
MAX_OPS = 5_000_000


@dataclass(frozen=True)
class Import:
    module: str  # "?" when computed at run time
    name: str
    member: str = ""  # the zip member holding the pickle, for torch checkpoints
    offset: int = 0


class _Unknown:
    pass


UNKNOWN = _Unknown()
_MARK = object()


SKIP_ABOVE = 1 << 20  # opcode arguments larger than this are skipped, not read
MAX_NAME = 200  # characters kept of a module or attribute name
MAX_IMPORTS = 10_000
TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # the first pickle of a legacy torch.save file
TORCH_LEGACY_PICKLES = 5  # magic, protocol, sys info, the object, the storage keys


class Skipped(bytes):
    """Stands for an opcode argument of `n` bytes that was seeked past, not read."""

    n: int

    def __new__(cls, n: int) -> Skipped:
        obj = super().__new__(cls, b"")
        obj.n = n
        return obj

    def __len__(self) -> int:
        return self.n


class Walkable:
    """A view of a stream for pickletools.genops that seeks past large arguments (tensor
    data in a pickle, or a blob put before a GLOBAL to exhaust a reader) and bounds lines."""

    def __init__(self, stream: IO[bytes], size: int) -> None:
        self.stream, self.size = stream, size

    def read(self, n: int = -1) -> bytes:
        if n > SKIP_ABOVE:
            here = self.stream.tell()
            if here + n <= self.size:
                self.stream.seek(n, io.SEEK_CUR)
                return Skipped(n)
            return b""  # runs past the end: the walk ends, as the unpickler's read would
        return self.stream.read(n)

    def readline(self) -> bytes:
        return self.stream.readline(SKIP_ABOVE)

    def tell(self) -> int:
        return self.stream.tell()


def ops(stream: Walkable) -> Iterator[tuple[pickletools.OpcodeInfo, Any, int | None]]:
    """pickletools.genops over a Walkable (which reads like a binary file)."""
    return pickletools.genops(cast(IO[bytes], stream))


def _name(value: object) -> str:
    """A module or attribute name as it may be shown: printable, bounded."""
    if not isinstance(value, str):
        return "?"
    cleaned = "".join(c if c.isprintable() else "\ufffd" for c in value[:MAX_NAME])
    return cleaned + ("…" if len(value) > MAX_NAME else "")


def imports_in_bytes(data: bytes, member: str = "") -> list[Import]:
    return imports_in_stream(io.BytesIO(data), len(data), member)


def imports_in_stream(stream: IO[bytes], size: int, member: str = "") -> list[Import]:
    """Walk one pickle's opcodes as they are read from `stream` (of `size` bytes), leaving it
    after the STOP. Memory is bounded: large arguments are skipped, names are cut short."""
    return _walk(Walkable(stream, size), size, member).imports


@dataclass
class Walk:
    imports: list[Import]
    first: object = None  # the first value pushed: the legacy torch magic number tells those
    end: int | None = None  # the offset just after the STOP, when it was reached
    error: str = ""  # why the stream broke off, when it did


def _walk(stream: Walkable, size: int, member: str) -> Walk:
    """One pickle, opcode by opcode, as the unpickler reads it; at most MAX_OPS opcodes."""
    w = Walk(imports=[])
    machine = _Machine(member)
    try:
        for n, (op, arg, at) in enumerate(ops(stream)):
            if n <= 1 and w.first is None and op.name != "PROTO":
                w.first = arg
            pos = at or 0
            if n > MAX_OPS:
                break
            if op.name == "FRAME" and isinstance(arg, int) and pos + 9 + arg > size:
                w.error = f"a frame at offset {pos} runs past the end of the file"
                break
            if op.name == "STOP":
                w.end = stream.tell()
                break
            machine.step(op, arg, pos)
    except (
        ValueError,
        EOFError,
        IndexError,
        KeyError,
        UnicodeDecodeError,
        OverflowError,
        struct.error,
    ) as e:
        # a broken stream: what was read so far is what the unpickler would reach
        w.error = str(e)
    w.imports = machine.imports
    return w


_STRINGS = frozenset(
    (
        *("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE"),
        *("SHORT_BINSTRING", "BINSTRING", "STRING"),
    )
)
# Opcodes that pop a fixed number of items and push one value the walk does not follow.
_POP_THEN_PUSH = {
    **dict.fromkeys(("EMPTY_TUPLE", "EMPTY_LIST", "EMPTY_DICT", "EMPTY_SET", "NONE"), 0),
    **dict.fromkeys(("NEWTRUE", "NEWFALSE", "PERSID", "EXT1", "EXT2", "EXT4"), 0),
    "BINPERSID": 1,
    "TUPLE1": 1,
    "TUPLE2": 2,
    "TUPLE3": 3,
    **dict.fromkeys(("REDUCE", "NEWOBJ", "BUILD", "APPEND"), 2),
    "SETITEM": 3,
    "NEWOBJ_EX": 3,
}
_MARKED_PUSH = frozenset(("TUPLE", "LIST", "DICT", "FROZENSET", "OBJ", "INST"))
_MARKED = frozenset(("APPENDS", "SETITEMS", "ADDITEMS"))


class _Machine:
    """The symbolic stack and memo of one pickle: strings are followed, all else is UNKNOWN."""

    def __init__(self, member: str) -> None:
        self.member = member
        self.imports: list[Import] = []
        self.stack: list[object] = []
        self.memo: dict[int, object] = {}
        self.capped = False  # MAX_IMPORTS were recorded; the walk goes on to the STOP

    def _pop(self, n: int = 1) -> object:
        top: object = UNKNOWN
        for _ in range(n):
            top = self.stack.pop() if self.stack else UNKNOWN
        return top

    def _top(self) -> object:
        return self.stack[-1] if self.stack else UNKNOWN

    def _found(self, module: object, name: object, pos: int) -> None:
        if len(self.imports) >= MAX_IMPORTS:
            self.capped = True  # keep walking to the STOP; record no more
            return
        self.imports.append(Import(_name(module), _name(name), self.member, pos))

    def step(self, op: pickletools.OpcodeInfo, arg: Any, pos: int) -> None:
        name, stack = op.name, self.stack
        if name in _STRINGS:
            stack.append(arg if isinstance(arg, str) else UNKNOWN)
        elif name in ("GLOBAL", "INST") and isinstance(arg, str):
            module, _, attr = arg.partition(" ")
            if name == "INST":
                _pop_to_mark(stack)
            self._found(module, attr, pos)
            stack.append(UNKNOWN)
        elif name == "STACK_GLOBAL":
            top = self._pop()
            self._found(self._pop(), top, pos)
            stack.append(UNKNOWN)
        elif name == "MEMOIZE":
            self.memo[len(self.memo)] = self._top()
        elif name in ("PUT", "BINPUT", "LONG_BINPUT") and isinstance(arg, int):
            self.memo[arg] = self._top()
        elif name in ("GET", "BINGET", "LONG_BINGET") and isinstance(arg, int):
            stack.append(self.memo.get(arg, UNKNOWN))
        elif name == "MARK":
            stack.append(_MARK)
        elif name == "POP":
            self._pop()
        elif name in ("POP_MARK", *_MARKED):
            _pop_to_mark(stack)
        elif name == "DUP":
            stack.append(self._top())
        elif name in _MARKED_PUSH:
            _pop_to_mark(stack)
            stack.append(UNKNOWN)
        elif name in _POP_THEN_PUSH:
            self._pop(_POP_THEN_PUSH[name])
            stack.append(UNKNOWN)
        elif op.stack_after and not op.stack_before:
            stack.append(UNKNOWN)  # any other push (numbers, bytes, ...)


@dataclass
class FileWalk:
    imports: list[Import]
    end: int | None  # where the pickles end; None when a walk stopped short of a STOP
    error: str  # why the stream broke off, when it did
    legacy: bool  # a legacy (pre-zip) torch.save file: its storage bytes follow by design


def walk_pickle_file(stream: IO[bytes], size: int) -> FileWalk:
    """A raw pickle file from its start: its pickle, or all five pickles of a legacy
    torch.save file, with their imports and where they end."""
    reader = Walkable(stream, size)
    w = _walk(reader, size, "")
    legacy = w.first == TORCH_LEGACY_MAGIC
    found = w.imports
    for i in range(1, TORCH_LEGACY_PICKLES if legacy else 1):
        if w.end is None or w.error:
            break
        w = _walk(reader, size, f"legacy pickle {i + 1}")
        found = found + w.imports
    return FileWalk(found[:MAX_IMPORTS], w.end, w.error, legacy)


def _pop_to_mark(stack: list[object]) -> None:
    while stack:
        if stack.pop() is _MARK:
            return


def imports_in_file(path: Path) -> list[Import]:
    """Imports of a pickle file, or of every pickle in a torch zip checkpoint. The file is
    streamed: a large checkpoint costs the size of its pickles, not of its tensors."""
    if not path.is_file():
        return []
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(4)
        if head == b"PK\x03\x04":
            out: list[Import] = []
            try:
                with zipfile.ZipFile(f) as zf:
                    for info in zf.infolist():
                        if info.filename.endswith(".pkl") and info.file_size < MAX_BYTES:
                            with zf.open(info) as member:
                                out += imports_in_stream(member, info.file_size, info.filename)
            except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, EOFError):
                return out
            return out
        if head[:1] == b"\x80" or path.suffix.lower() in (".pkl", ".pickle"):
            f.seek(0)
            return walk_pickle_file(f, size).imports
    return []
