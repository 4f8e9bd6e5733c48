"""The imports a pickle would perform, found by reading its opcodes, never by unpickling.

The opcodes are walked in order, as the unpickler reads them (frames are contiguous, so a FRAME
cannot hide opcodes from a sequential walk; a frame that claims more bytes than there are ends
the walk, as it ends the real unpickler). A small symbolic stack follows strings through the
stack and the memo, so STACK_GLOBAL's module and name are known when they were pushed as
literals, even through MEMOIZE/PUT and GET; names computed at run time (by a REDUCE) are
reported as dynamic, which is itself a sign of obfuscation.

Nothing the walk cannot see is left unsaid: an import by copyreg extension code (EXT1/2/4, which
names no global in the stream), the opcode bound (MAX_OPS, for all the pickles of one file
together), the import bound (MAX_IMPORTS), a zip member not read and a stream that breaks off
are notes (runner.static.tamper turns them into Tamper entries, the rules into findings). The
bounds are counts, so the same file gets the same notes on an idle and on a loaded machine.
"""

from __future__ import annotations

import io
import os
import pickletools
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import IO, Any, cast

from runner.static.pickle_machine import Import, Machine

MAX_BYTES = 512 << 20  # a zip member larger than this is not read (and a note says so)
MAX_OPS = 2_000_000  # opcodes read of one file, all its pickles together
MAX_IMPORTS = 10_000  # globals recorded of one file
SKIP_ABOVE = 1 << 20  # opcode arguments larger than this are skipped, not read
TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # the first pickle of a legacy torch.save file
TORCH_LEGACY_PICKLES = 5  # magic, protocol, sys info, the object, the storage keys
SHOWN = 5  # extension codes and members cited by name in a note

__all__ = ["Import", "Issue", "Note", "imports_in_bytes", "read_file", "walk_pickle_file"]


class Issue(StrEnum):
    """What a walk could not read, or read and found hiding an import. The values are
    runner.static.tamper.TamperKind values."""

    EXTENSION = "pickle-extension-code"
    OPCODE_CAP = "pickle-opcode-cap"
    IMPORT_CAP = "pickle-import-cap"
    UNREAD = "pickle-unread"
    BROKEN = "pickle-truncated"


@dataclass(frozen=True)
class Note:
    issue: Issue
    evidence: str


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
    """A view of a stream for the opcode walk that seeks past large arguments (tensor data in
    a pickle, or a blob put before a GLOBAL to exhaust a reader) and bounds lines: a line
    longer than SKIP_ABOVE is read through to its newline in chunks and kept cut short, so the
    walk goes on where the unpickler goes on."""

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
        line = self.stream.readline(SKIP_ABOVE)
        if len(line) < SKIP_ABOVE or line.endswith(b"\n"):
            return line
        while True:  # an over-long line: skip its rest, keep its start
            rest = self.stream.readline(SKIP_ABOVE)
            if not rest or rest.endswith(b"\n"):
                return line + (b"\n" if rest.endswith(b"\n") else b"")

    def tell(self) -> int:
        return self.stream.tell()


def _line(stream: Walkable) -> bytes:
    data = stream.readline()
    if not data.endswith(b"\n"):
        raise ValueError("no newline found when trying to read a line argument")
    return data[:-1]


def _name_pair(stream: Walkable) -> tuple[str, str]:
    """GLOBAL's and INST's module and name, decoded as the unpickler decodes them (UTF-8,
    nothing unescaped: pickletools would undo backslash escapes and refuse non-ASCII)."""
    return _line(stream).decode("utf-8"), _line(stream).decode("utf-8")


def _any_line(stream: Walkable) -> None:
    _line(stream)  # a number or a persistent id: its value is not followed


_READERS: dict[str, Callable[[Walkable], Any]] = {
    "GLOBAL": _name_pair,
    "INST": _name_pair,
    **dict.fromkeys(("INT", "LONG", "FLOAT", "PERSID"), _any_line),
}
_Reader = Callable[[Walkable], Any] | None
# each opcode byte: the opcode and how its argument is read
_TABLE: dict[bytes, tuple[pickletools.OpcodeInfo, _Reader]] = {
    op.code.encode("latin-1"): (
        op,
        _READERS.get(op.name) or (cast(_Reader, op.arg.reader) if op.arg is not None else None),
    )
    for op in pickletools.opcodes
}


def ops(stream: Walkable) -> Iterator[tuple[pickletools.OpcodeInfo, Any, int]]:
    """The opcodes of one pickle as the unpickler reads them: pickletools' argument readers,
    but for the line arguments the unpickler reads differently (names are UTF-8; numbers the
    walk does not need are not parsed, so a form CPython accepts cannot stop the walk)."""
    read, tell = stream.stream.read, stream.stream.tell  # an opcode is one byte: read directly
    while True:
        pos = tell()
        code = read(1)
        entry = _TABLE.get(code)
        if entry is None:
            if not code:
                raise ValueError("pickle exhausted before seeing STOP")
            raise ValueError(f"at position {pos}, opcode {code!r} unknown")
        op, reader = entry
        yield op, (reader(stream) if reader is not None else None), pos
        if op.name == "STOP":
            return


@dataclass
class Budget:
    """What is left to read of one file: opcodes and recorded imports, shared by its pickles."""

    ops: int = field(default_factory=lambda: MAX_OPS)
    imports: int = field(default_factory=lambda: MAX_IMPORTS)
    cut_at: int | None = None  # the offset where the opcode bound stopped a walk
    cut_member: str = ""
    dropped: int = 0  # globals met after the import bound, not recorded


@dataclass
class Walk:
    imports: list[Import]
    first: object = None  # the first value pushed: the legacy torch magic number tells those
    end: int | None = None  # the offset just after the STOP, when it was reached
    error: str = ""  # why the stream broke off, when it did
    extensions: list[tuple[str, int, int]] = field(default_factory=list)  # (op, code, offset)
    extension_count: int = 0  # all of them (`extensions` keeps the first few)
    nested: list[Import] = field(default_factory=list)  # of pickles inside it (joblib arrays)


def _walk(stream: Walkable, size: int, member: str, budget: Budget, joblib: int = 0) -> Walk:
    """One pickle, opcode by opcode, as the unpickler reads it, within the file's budget.
    With `joblib`, as joblib's unpickler reads it: the array bytes after each array wrapper
    are skipped (runner.static.joblib_layout); with joblib=2 (a raw file, which pickle.load
    could read too), where those bytes would go on as opcodes they are walked as well."""
    w = Walk(imports=[])
    machine = Machine(member, budget.imports)
    step, n, frame_end = machine.step, 0, 0
    layout = _layout() if joblib else None
    try:
        for op, arg, pos in ops(stream):
            if budget.ops <= 0:
                budget.cut_at, budget.cut_member = pos, member
                break
            budget.ops -= 1
            name = op.name
            if n < 2 and w.first is None and name != "PROTO":
                w.first = arg
            n += 1
            if name == "FRAME" and isinstance(arg, int):
                if pos + 9 + arg > size:
                    w.error = f"a frame at offset {pos} runs past the end of the file"
                    break
                frame_end = pos + 9 + arg
            if name == "STOP":
                w.end = stream.tell()
                break
            step(name, arg, pos)
            if layout is not None and (array := layout.step(name, arg, pos)) is not None:
                _array_bytes(stream, size, member, budget, w, array, frame_end, joblib == 2)
    except MemoryError:
        raise  # the pre-flight's memory bound: its own finding
    except Exception as e:  # any break in a hostile stream is a finding, never a crash
        # a broken stream: what was read so far is what the unpickler would reach
        w.error = f"{type(e).__name__}: {e}"[:300]
    w.imports = machine.imports + w.nested
    w.extensions, w.extension_count = machine.extensions, machine.extension_count
    budget.imports -= len(machine.imports)
    budget.dropped += machine.dropped
    return w


def _layout() -> Any:
    from runner.static.joblib_layout import Layout  # it imports this module's readers

    return Layout()


def _array_bytes(
    stream: Walkable,
    size: int,
    member: str,
    budget: Budget,
    w: Walk,
    array: Any,
    frame_end: int,
    plain: bool,
) -> None:
    """Past the bytes joblib reads for one array (a nested pickle for an object array, its
    imports kept), or a ValueError that ends the walk where they cannot be known."""
    raw, here = stream.stream, stream.tell()
    where = f"the joblib array at offset {here}"
    if here < frame_end:
        raise ValueError(f"{where} sits inside a pickle frame (joblib writes it after one)")
    if array.objects:
        inner = _walk(stream, size, f"{member} array at {here}".strip(), budget)
        w.nested += inner.imports
        if inner.error or inner.end is None:
            raise ValueError(f"{where}: its nested pickle {inner.error or 'was not read'}")
        return
    if plain and raw.read(1)[:1] in _TABLE:  # pickle.load would read on: what would it run?
        raw.seek(here)
        inner = _walk(stream, size, f"{member} array at {here}, as pickle.load reads on", budget)
        w.nested += inner.imports
    raw.seek(here)
    pad = raw.read(1)[0] if array.aligned and here < size else 0
    end = stream.tell() + pad + array.nbytes
    if end > size or (array.aligned and here >= size):
        raise ValueError(f"{where} claims {array.nbytes} bytes, past the end of the file")
    raw.seek(end)
    if raw.tell() != end:
        raise ValueError(f"{where} claims {array.nbytes} bytes, past the end of the stream")


def imports_in_bytes(data: bytes, member: str = "") -> list[Import]:
    return imports_in_stream(io.BytesIO(data), len(data), member)


def imports_in_stream(stream: IO[bytes], size: int, member: str = "") -> list[Import]:
    """Walk one pickle's opcodes as they are read from `stream` (of `size` bytes), leaving it
    after the STOP. Memory is bounded: large arguments are skipped, names are cut short."""
    return _walk(Walkable(stream, size), size, member, Budget()).imports


@dataclass
class FileWalk:
    imports: list[Import]
    end: int | None  # where the pickles end; None when a walk stopped short of a STOP
    error: str  # why the stream broke off, when it did
    legacy: bool  # a legacy (pre-zip) torch.save file: its storage bytes follow by design
    notes: list[Note] = field(default_factory=list)  # bounds reached, extension codes


def walk_pickle_file(
    stream: IO[bytes], size: int, plain_check: bool = True, joblib: bool = True
) -> FileWalk:
    """A raw pickle file from its start: its pickle, or all five pickles of a legacy
    torch.save file, with their imports, where they end and what could not be read (a broken
    stream is `error`, for runner.static.tamper to judge with the bytes that follow). The
    first pickle is read as joblib reads it too (a joblib dump is a pickle file with array
    bytes between its opcodes); `plain_check`: also as pickle.load would read those bytes.
    joblib=False: as pickle.load alone reads it (np.load's object arrays)."""
    reader, budget = Walkable(stream, size), Budget()
    w = _walk(reader, size, "", budget, joblib=(2 if plain_check else 1) if joblib else 0)
    legacy = w.first == TORCH_LEGACY_MAGIC
    found, extensions, count = w.imports, list(w.extensions), w.extension_count
    for i in range(1, TORCH_LEGACY_PICKLES if legacy else 1):
        if w.end is None or w.error:
            break
        w = _walk(reader, size, f"legacy pickle {i + 1}", budget)
        found, extensions = found + w.imports, extensions + w.extensions
        count += w.extension_count
    notes = _extension_notes("", extensions, count) + _budget_notes(budget, size)
    return FileWalk(found, w.end, w.error, legacy, notes)


def _where(member: str) -> str:
    return f" ({member})" if member else ""


def _extension_notes(member: str, extensions: list[tuple[str, int, int]], count: int) -> list[Note]:
    if not count:
        return []
    shown = ", ".join(f"{op} code {code} at offset {at}" for op, code, at in extensions[:SHOWN])
    more = f" and {count - SHOWN} more" if count > SHOWN else ""
    return [
        Note(
            Issue.EXTENSION,
            f"the pickle{_where(member)} imports {count} global(s) by copyreg "
            f"extension code, with no name in the stream: {shown}{more}",
        )
    ]


def _budget_notes(budget: Budget, size: int) -> list[Note]:
    notes = []
    if budget.cut_at is not None:
        notes.append(
            Note(
                Issue.OPCODE_CAP,
                f"the read of the pickle{_where(budget.cut_member)} stopped at its bound of "
                f"{MAX_OPS} opcodes, at offset {budget.cut_at} of {size} bytes: what follows "
                "was not read",
            )
        )
    if budget.dropped:
        notes.append(
            Note(
                Issue.IMPORT_CAP,
                f"the pickles import more than {MAX_IMPORTS} globals: {budget.dropped} after "
                "the bound were not recorded",
            )
        )
    return notes


@dataclass
class FileRead:
    imports: list[Import]
    notes: list[Note]


_cache: dict[tuple[str, int, int, int, int], FileWalk] = {}


def walk_path(path: Path) -> FileWalk:
    """walk_pickle_file of a path, remembered for the file as it is now (size, mtime, inode):
    the tamper check and the import list read a raw pickle once."""
    st = path.stat()
    key = (str(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _cache:
        with path.open("rb") as f:
            walked = walk_pickle_file(f, st.st_size)
        _cache.clear()  # one file at a time: the pre-flight reads one model
        _cache[key] = walked
    return _cache[key]


def read_file(path: Path) -> FileRead:
    """Imports of a pickle file, or of every pickle in a torch zip checkpoint, and notes of
    what was not read. The file is streamed: a large checkpoint costs the size of its
    pickles, not of its tensors."""
    if not path.is_file():
        return FileRead([], [])
    with path.open("rb") as f:
        head = f.read(4)
    if head == b"PK\x03\x04":
        return _read_zip(path)
    if head[:1] == b"\x80" or path.suffix.lower() in (".pkl", ".pickle"):
        walked = walk_path(path)
        return FileRead(walked.imports, walked.notes)
    return FileRead([], [])


def imports_in_file(path: Path) -> list[Import]:
    return read_file(path).imports


def _read_zip(path: Path) -> FileRead:
    """Every .pkl member, within one budget; members too large, unreadable or left when the
    budget ran out are named in a note."""
    out: list[Import] = []
    notes: list[Note] = []
    budget, unread = Budget(), []
    size = os.path.getsize(path)
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if not info.filename.endswith(".pkl"):
                    continue
                if info.file_size >= MAX_BYTES or budget.ops <= 0:
                    unread.append(f"{info.filename[:120]!r} ({info.file_size} bytes)")
                    continue
                with zf.open(info) as member:
                    reader = Walkable(member, info.file_size)
                    w = _walk(reader, info.file_size, info.filename, budget)
                out += w.imports
                notes += _extension_notes(info.filename, w.extensions, w.extension_count)
                if w.error:
                    notes.append(_broken(info.filename, w.error))
    except MemoryError:
        raise
    except Exception as e:  # a damaged archive is a note, never a crash
        unread.append(f"the rest of the archive ({type(e).__name__}: {str(e)[:160]})")
    if unread:
        more = f" and {len(unread) - SHOWN} more" if len(unread) > SHOWN else ""
        shown = ", ".join(unread[:SHOWN]) + more
        notes.append(Note(Issue.UNREAD, f"pickles in the zip not read: {shown}"))
    return FileRead(out, notes + _budget_notes(budget, size))


def _broken(member: str, error: str) -> Note:
    return Note(Issue.BROKEN, f"the pickle{_where(member)} breaks off: {error}"[:300])
