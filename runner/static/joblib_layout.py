"""joblib dumps read on the host, by bytes only: the pickle frames and the array bytes between
them, and compressed dumps inflated under a bound.

joblib (joblib.numpy_pickle) pickles each NumPy array as a NumpyArrayWrapper (its shape, its
dtype, whether it is aligned) and, right after the BUILD that sets the wrapper's state, writes
the array's raw bytes outside the pickle: a padding byte and that many padding bytes when
aligned, then shape x itemsize bytes; for an array of Python objects, a nested pickle instead.
joblib's unpickler reads those bytes when that BUILD leaves a wrapper on its stack, then the
pickle resumes. `Layout` follows just enough of a pickle's values (strings, small ints and
tuples, dicts, the wrapper and numpy.dtype) to know, at each BUILD, whether the unpickler would
read array bytes and how many; anything it cannot know exactly (a wrapper made or used any way
joblib never writes, a dtype it cannot size, an array inside a pickle frame, more bytes than
the file holds) is an error that ends the walk, as a stream that breaks off does: fail closed.

A raw joblib dump is a pickle file (runner.static.pickles walks it with this layout). A
compressed one (zlib, gzip, bz2, xz, lzma; lz4 when the lz4 package is installed) is inflated
as a stream, never held whole, up to MAX_OUTPUT bytes, and walked the same way; a stream that
inflates past its bound is a finding (AL941), never an out-of-memory.
"""

from __future__ import annotations

import bz2
import io
import lzma
import pickletools
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runner.static.signs import Signs

WRAPPER = "joblib.numpy_pickle.NumpyArrayWrapper"
MAX_TEXT = 128  # characters of a string the layout keeps (longer ones are never keys)
MAX_ITEMS = 64  # items of a tuple or dict the layout follows (more: opaque)
MAX_DIMS = 64
OUTPUT_FLOOR = 256 << 20
OUTPUT_RATIO = 100  # bytes a compressed dump may inflate to, per byte of it
OUTPUT_CAP = 4 << 30
CHUNK = 1 << 16


class LayoutError(Exception):
    """What joblib's unpickler would read here cannot be known exactly: the walk stops."""


@dataclass(frozen=True)
class Array:
    """Bytes joblib reads after a wrapper's BUILD: `aligned` (a padding byte, then that many
    bytes), then `nbytes`; or, for `objects`, a nested pickle."""

    nbytes: int
    aligned: bool
    objects: bool


class _Opaque:
    __slots__ = ()


@dataclass(frozen=True)
class _Global:
    path: str


@dataclass
class _Dtype:
    descr: str
    state: object = None


@dataclass
class _Wrapper:
    state: dict[object, object] = field(default_factory=dict)


class _List:
    __slots__ = ()


_MARK = object()
_LONG_TEXT = _Opaque()
_INTS = frozenset(("BININT", "BININT1", "BININT2", "LONG1"))
_TEXTS = frozenset(
    (
        *("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE"),
        *("SHORT_BINSTRING", "BINSTRING", "STRING"),
    )
)
_DESCR = re.compile(r"[<>=|]?([biufcOSUVMm])(\d+)")
_SIZED = {"b": (1,), "i": (1, 2, 4, 8), "u": (1, 2, 4, 8), "f": (2, 4, 8, 16)}
_SIZED |= {"c": (8, 16, 32), "M": (8,), "m": (8,), "O": (4, 8)}


def _is_wrapper(v: object) -> bool:
    return isinstance(v, _Wrapper) or (isinstance(v, _Global) and v.path == WRAPPER)


def _dotted(module: object, name: object) -> str:
    if not isinstance(module, str) or not isinstance(name, str):
        return "?"
    return ".".join(p.strip() for p in f"{module}.{name}".split(".") if p.strip())


class Layout:
    """The stack, metastack and memo of joblib's unpickler, as far as the layout needs them."""

    def __init__(self) -> None:
        self.stack: list[object] = []
        self.meta: list[list[object]] = []
        self.memo: dict[object, object] = {}

    # -- the stack, as pickle._Unpickler keeps it
    def _pop(self, n: int = 1) -> list[object]:
        out = [self.stack.pop() if self.stack else _Opaque() for _ in range(n)][::-1]
        self._used(out)
        return out

    def _pop_mark(self) -> list[object]:
        items, self.stack = self.stack, self.meta.pop() if self.meta else []
        self._used(items)
        return items

    def _top(self) -> object:
        return self.stack[-1] if self.stack else _Opaque()

    def _used(self, values: list[object]) -> None:
        """A wrapper (its class or an instance) may only be NEWOBJ'd, BUILT, memoised: joblib
        writes nothing else, and any other use could hand one to code the walk cannot see."""
        if any(_is_wrapper(v) for v in values):
            raise LayoutError("joblib's array wrapper is used in a way joblib never writes")

    def step(self, name: str, arg: Any, pos: int) -> Array | None:
        """One opcode; an Array when this BUILD makes joblib read array bytes next."""
        if name == "BUILD":
            return self._build(pos)
        handler = _STEPS.get(name)
        if handler is not None:
            handler(self, arg)
        elif name in _INTS:
            self.stack.append(arg if isinstance(arg, int) else _Opaque())
        elif name in _TEXTS:
            ok = isinstance(arg, str) and len(arg) <= MAX_TEXT
            self.stack.append(arg if ok else _LONG_TEXT)
        else:
            self._generic(name)
        return None

    def _generic(self, name: str) -> None:
        """Any other opcode, by its stack effect: what it pushes is opaque."""
        op = _OPS[name]
        before = [s.name for s in op.stack_before]
        if "mark" in before:
            self._pop_mark()  # LIST, FROZENSET, OBJ; APPENDS and ADDITEMS keep their container
            if before[0] == "mark":
                self.stack.extend(_Opaque() for _ in op.stack_after)
            return
        self._pop(len(before))
        self.stack.extend(_Opaque() for _ in op.stack_after)

    def _build(self, pos: int) -> Array | None:
        state = self._pop(1)[0]
        inst = self._top()
        if isinstance(inst, _Dtype):
            inst.state = state
            return None
        if not isinstance(inst, _Wrapper):
            return None
        _set_state(inst, state, pos)
        self.stack[-1] = _Opaque()  # joblib puts the array in the wrapper's place
        return _array(inst.state, pos)


def _set_state(inst: _Wrapper, state: object, pos: int) -> None:
    slots: object = None
    if isinstance(state, tuple) and len(state) == 2:
        state, slots = state
    for part in (state, slots):
        if part is None or part == {}:
            continue
        if not isinstance(part, dict):
            raise LayoutError(f"the state of joblib's array wrapper at offset {pos} is unknown")
        inst.state.update(part)


def _array(state: dict[object, object], pos: int) -> Array:
    where = f"the joblib array at offset {pos}"
    if any(not isinstance(k, str) for k in state):
        raise LayoutError(f"{where}: its wrapper's state has keys the walk cannot read")
    shape, dtype = state.get("shape"), state.get("dtype")
    align = state.get("numpy_array_alignment_bytes")
    if not isinstance(shape, tuple) or len(shape) > MAX_DIMS:
        raise LayoutError(f"{where}: its shape is not a tuple the walk can read")
    count = 1
    for d in shape:
        if not isinstance(d, int) or d < 0:
            raise LayoutError(f"{where}: its shape is not a tuple the walk can read")
        count = min(count * d, 1 << 62)
    if not isinstance(dtype, _Dtype):
        raise LayoutError(f"{where}: its dtype is not one the walk can read")
    itemsize, objects = _dtype_size(dtype, where)
    if align is not None and not isinstance(align, int):
        raise LayoutError(f"{where}: its alignment is not a number")
    return Array(min(count * itemsize, 1 << 62), align is not None, objects)


def _dtype_size(dtype: _Dtype, where: str) -> tuple[int, bool]:
    """(itemsize, holds objects) as numpy.dtype(descr) and its __setstate__ make them."""
    m = _DESCR.fullmatch(dtype.descr)
    if m is None:
        raise LayoutError(f"{where}: dtype {dtype.descr[:40]!r} is not one the walk can size")
    kind, n = m.group(1), int(m.group(2))
    state = dtype.state
    elsize, flags = -1, 63 if kind == "O" else 0  # numpy's own when no state is set
    if state is not None:
        if not (isinstance(state, tuple) and len(state) in (8, 9) and state[0] in (3, 4)):
            raise LayoutError(f"{where}: its dtype's state is not one the walk can read")
        elsize, flags = state[5], state[7]
        if not isinstance(elsize, int) or not isinstance(flags, int):
            raise LayoutError(f"{where}: its dtype's state is not one the walk can read")
    if kind in "SUV":
        size = elsize if state is not None else n * (4 if kind == "U" else 1)
        if size <= 0:
            raise LayoutError(f"{where}: its dtype's size is not one the walk can read")
    elif n in _SIZED[kind]:
        size = n
    else:
        raise LayoutError(f"{where}: dtype {dtype.descr[:40]!r} is not one the walk can size")
    return size, bool(flags & 1)  # NPY_ITEM_HASOBJECT: numpy trusts the state's flags


def _push(value: object) -> Callable[[Layout, Any], None]:
    def go(lay: Layout, _arg: Any) -> None:
        lay.stack.append(value() if callable(value) else value)

    return go


def _mark(lay: Layout, _arg: Any) -> None:
    lay.meta.append(lay.stack)
    lay.stack = []


def _tuple_of(items: list[object]) -> object:
    return tuple(items) if len(items) <= MAX_ITEMS else _Opaque()


def _tuple(lay: Layout, _arg: Any) -> None:
    items = lay._pop_mark()  # before naming lay.stack: popping the mark replaces it
    lay.stack.append(_tuple_of(items))


def _tuple_n(n: int) -> Callable[[Layout, Any], None]:
    def go(lay: Layout, _arg: Any) -> None:
        items = lay._pop(n)
        lay.stack.append(_tuple_of(items))

    return go


def _dict_items(target: object, items: list[object]) -> None:
    if not isinstance(target, dict):
        return
    for k, v in zip(items[::2], items[1::2], strict=False):
        key = k if isinstance(k, (str, int, bool, type(None), _Global)) else _Opaque()
        if len(target) < MAX_ITEMS or key in target:
            target[key] = v
        else:
            target[_Opaque()] = v  # past the bound: an unreadable key, so never a state


def _dict(lay: Layout, _arg: Any) -> None:
    d: dict[object, object] = {}
    _dict_items(d, lay._pop_mark())
    lay.stack.append(d)


def _setitem(lay: Layout, _arg: Any) -> None:
    k, v = lay._pop(2)
    _dict_items(lay._top(), [k, v])


def _setitems(lay: Layout, _arg: Any) -> None:
    items = lay._pop_mark()
    _dict_items(lay._top(), items)


def _append(lay: Layout, _arg: Any) -> None:
    lay._pop(1)


def _appends(lay: Layout, _arg: Any) -> None:
    lay._pop_mark()


def _pop(lay: Layout, _arg: Any) -> None:
    if lay.stack:
        lay.stack.pop()  # discarded: no use of it
    else:
        lay._pop_mark()


def _pop_mark(lay: Layout, _arg: Any) -> None:
    lay._pop_mark()


def _dup(lay: Layout, _arg: Any) -> None:
    lay.stack.append(lay._top())


def _get(lay: Layout, arg: Any) -> None:
    lay.stack.append(lay.memo.get(arg, _Opaque()))


def _put(lay: Layout, arg: Any) -> None:
    lay.memo[arg] = lay._top()


def _memoize(lay: Layout, _arg: Any) -> None:
    lay.memo[len(lay.memo)] = lay._top()


def _global(lay: Layout, arg: Any) -> None:
    module, name = arg if isinstance(arg, tuple) and len(arg) == 2 else ("?", "?")
    lay.stack.append(_Global(_dotted(module, name)))


def _stack_global(lay: Layout, _arg: Any) -> None:
    module, name = lay._pop(2)
    lay.stack.append(_Global(_dotted(module, name)))


def _inst(lay: Layout, arg: Any) -> None:
    module, name = arg if isinstance(arg, tuple) and len(arg) == 2 else ("?", "?")
    lay._pop_mark()
    if _dotted(module, name) == WRAPPER:
        raise LayoutError("joblib's array wrapper is made by INST, which joblib never writes")
    lay.stack.append(_Opaque())


def _reduce(lay: Layout, _arg: Any) -> None:
    func, args = lay._pop(2)
    if func == _Global("numpy.dtype") and isinstance(args, tuple) and args:
        descr = args[0]
        lay.stack.append(_Dtype(descr if isinstance(descr, str) else "?"))
        return
    lay.stack.append(_Opaque())


def _newobj(lay: Layout, _arg: Any) -> None:
    args = lay._pop(1)[0]
    cls = lay.stack.pop() if lay.stack else _Opaque()
    if isinstance(cls, _Global) and cls.path == WRAPPER:
        if args != ():
            raise LayoutError("joblib's array wrapper is made with arguments joblib never writes")
        lay.stack.append(_Wrapper())
        return
    lay._used([cls])
    lay.stack.append(_Opaque())


_STEPS: dict[str, Callable[[Layout, Any], None]] = {
    "MARK": _mark,
    "TUPLE": _tuple,
    "EMPTY_TUPLE": _push(()),
    "TUPLE1": _tuple_n(1),
    "TUPLE2": _tuple_n(2),
    "TUPLE3": _tuple_n(3),
    "EMPTY_DICT": _push(dict),
    "DICT": _dict,
    "SETITEM": _setitem,
    "SETITEMS": _setitems,
    "EMPTY_LIST": _push(_List),
    "APPEND": _append,
    "APPENDS": _appends,
    "NONE": _push(None),
    "NEWTRUE": _push(True),
    "NEWFALSE": _push(False),
    "POP": _pop,
    "POP_MARK": _pop_mark,
    "DUP": _dup,
    **dict.fromkeys(("GET", "BINGET", "LONG_BINGET"), _get),
    **dict.fromkeys(("PUT", "BINPUT", "LONG_BINPUT"), _put),
    "MEMOIZE": _memoize,
    "GLOBAL": _global,
    "STACK_GLOBAL": _stack_global,
    "INST": _inst,
    "REDUCE": _reduce,
    "NEWOBJ": _newobj,
}
_OPS = {o.name: o for o in pickletools.opcodes}


# --- compressed dumps -------------------------------------------------------------------------


def _kind(head: bytes) -> str:
    if head.startswith(b"\x78"):
        return "zlib"
    for magic, kind in (
        (b"\x1f\x8b", "gzip"),
        (b"BZh", "bz2"),
        (b"\xfd7zXZ\x00", "xz"),
        (b"\x5d\x00\x00", "lzma"),
        (b"\x04\x22\x4d\x18", "lz4"),
    ):
        if head.startswith(magic):
            return kind
    return ""


def _decompressor(kind: str) -> Any:
    if kind == "zlib":
        return zlib.decompressobj()
    if kind == "gzip":
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if kind == "bz2":
        return bz2.BZ2Decompressor()
    if kind in ("xz", "lzma"):
        return lzma.LZMADecompressor(lzma.FORMAT_XZ if kind == "xz" else lzma.FORMAT_ALONE)
    import importlib

    return importlib.import_module("lz4.frame").LZ4FrameDecompressor()  # optional: ImportError


class Inflated(io.RawIOBase):
    """A compressed file as the stream of its inflated bytes: read, readline, tell and forward
    seeks (by inflating and dropping), at most `bound` bytes in all (`bombed` past it), never
    more than CHUNK-sized pieces in memory at once."""

    def __init__(self, f: IO[bytes], kind: str, bound: int) -> None:
        super().__init__()
        self.f, self.kind, self.bound = f, kind, bound
        self.d = _decompressor(kind)
        self.buf = b""
        self.pos = 0  # inflated bytes handed out
        self.made = 0  # inflated bytes produced
        self.bombed = False
        self.eof = False
        self.trailing = 0  # compressed bytes after the end of the stream

    def readable(self) -> bool:
        return True

    def _more(self) -> bool:
        if self.eof or self.bombed:
            return False
        room = self.bound - self.made
        if room <= 0:
            self.bombed = True
            return False
        d = self.d
        if self.kind in ("zlib", "gzip"):
            data = d.unconsumed_tail or self.f.read(CHUNK)
            out = d.decompress(data, min(CHUNK, room)) if data else d.flush()
            done = d.eof or not data
            rest = d.unused_data
        else:
            data = self.f.read(CHUNK) if d.needs_input else b""
            out = d.decompress(data, min(CHUNK, room)) if (data or not d.needs_input) else b""
            done = d.eof or (not data and d.needs_input)
            rest = d.unused_data if d.eof else b""
        self.made += len(out)
        self.buf += out
        if done:
            self.eof = True
            self.trailing = len(rest) + len(self.f.read(CHUNK))
        return bool(out) or not done

    def read(self, n: int | None = -1) -> bytes:
        want = (1 << 62) if n is None or n < 0 else n
        while len(self.buf) < want and self._more():
            pass
        out, self.buf = self.buf[:want], self.buf[want:]
        self.pos += len(out)
        return out

    def readline(self, limit: int | None = -1) -> bytes:
        cap = (1 << 62) if limit is None or limit < 0 else limit
        while b"\n" not in self.buf[:cap] and len(self.buf) < cap and self._more():
            pass
        at = self.buf.find(b"\n", 0, cap)
        return self.read(at + 1 if at >= 0 else min(cap, len(self.buf)))

    def tell(self) -> int:
        return self.pos

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        target = offset if whence == io.SEEK_SET else self.pos + offset
        if whence not in (io.SEEK_SET, io.SEEK_CUR) or target < self.pos:
            raise OSError("an inflated stream seeks forward only")
        while self.pos < target:
            if not self.read(min(target - self.pos, 1 << 20)):
                break
        return self.pos


def output_bound(size: int) -> int:
    return min(OUTPUT_CAP, max(OUTPUT_FLOOR, OUTPUT_RATIO * size))


def examine(primary: Path) -> Signs:
    """A compressed joblib dump: its pickle's imports, and what could not be read."""
    from runner.errors import untrusted_text
    from runner.static import pickles
    from runner.static.signs import Signs
    from runner.static.tamper import Tamper, TamperKind, pickle_notes

    out = Signs()
    size = primary.stat().st_size
    with primary.open("rb") as f:
        kind = _kind(f.read(8))
        f.seek(0)
        if not kind:
            return out
        bound = output_bound(size)
        try:
            stream = Inflated(f, kind, bound)
        except ImportError:
            why = f"a {kind}-compressed joblib dump: no {kind} reader on the host, not read"
            out.tamper.append(Tamper(TamperKind.ARRAY_HEADER_MALFORMED, why))
            return out
        try:
            walked = pickles.walk_pickle_file(stream, bound, plain_check=False)  # type: ignore[arg-type]
            error = walked.error
        except (OSError, EOFError, ValueError, zlib.error, lzma.LZMAError) as e:
            walked, error = None, f"{type(e).__name__}: {e}"
        if walked is not None:
            out.imports, out.tamper = walked.imports, pickle_notes(walked.notes)
        if stream.bombed:
            why = (
                f"the {kind} stream inflates to more than {bound} bytes (from {size}): what "
                "follows was not read"
            )
            out.tamper.append(Tamper(TamperKind.ARRAY_HEADER_MALFORMED, why))
        elif error:
            why = untrusted_text(f"the {kind}-compressed pickle breaks off: {error}", 300)
            out.tamper.append(Tamper(TamperKind.PICKLE_TRUNCATED, why))
        elif walked is not None and walked.end is not None:
            extra = len(stream.read(CHUNK)) + stream.trailing
            if extra:
                why = f"bytes after the pickle's STOP in the {kind} stream (at {walked.end - 1})"
                out.tamper.append(Tamper(TamperKind.PICKLE_TRAILING_DATA, why))
    return out
