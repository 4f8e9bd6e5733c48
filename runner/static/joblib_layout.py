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

A raw joblib dump is a pickle file (runner.static.pickles walks it with this layout); a
compressed one is inflated under a bound and walked the same way (runner.static.joblib_compressed).
"""

from __future__ import annotations

import pickletools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass

WRAPPER = "joblib.numpy_pickle.NumpyArrayWrapper"
MAX_TEXT = 128  # characters of a string the layout keeps (longer ones are never keys)
MAX_ITEMS = 64  # items of a tuple or dict the layout follows (more: opaque)
MAX_DIMS = 64


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
    copied: bool = True  # numpy.dtype(descr, align, copy): False may give numpy's own singleton
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
            _check_flags(inst, pos)
            return None
        if not isinstance(inst, _Wrapper):
            return None
        _set_state(inst, state, pos)
        self.stack[-1] = _Opaque()  # joblib puts the array in the wrapper's place
        return _array(inst.state, pos)


def _flags(dtype: _Dtype) -> int | None:
    state = dtype.state
    if state is None:
        return 63 if dtype.descr.lstrip("<>=|").startswith("O") else 0
    ok = isinstance(state, tuple) and len(state) in (8, 9) and isinstance(state[7], int)
    return state[7] if ok else None  # type: ignore[index]


def _holds_objects(state: tuple[object, ...]) -> bool:
    """Whether a structured or subarray dtype's state names a field or base holding objects
    (what the walk can read of it)."""
    sub, fields = state[2], state[4]
    parts = [sub[0]] if isinstance(sub, tuple) and sub else []
    if isinstance(fields, dict):
        parts += [v[0] for v in fields.values() if isinstance(v, tuple) and v]
    return any(isinstance(d, _Dtype) and ((_flags(d) or 0) & 1) for d in parts)


def _check_flags(dtype: _Dtype, pos: int) -> None:
    """numpy's dtype.__setstate__ takes the state's flags as they come: an object dtype whose
    flags say it holds no objects makes arrays whose raw bytes (from the file) numpy uses as
    object pointers (forged objects: memory corruption), one that says a number holds objects
    the reverse. numpy's own pickles never write either."""
    flags, state = _flags(dtype), dtype.state
    m = _DESCR.fullmatch(dtype.descr)
    if flags is None or m is None or not isinstance(state, tuple):
        return  # refused where an array uses it
    kind, has = m.group(1), bool(flags & 1)
    forged = (not has and _holds_objects(state)) if kind == "V" else has != (kind == "O")
    if forged:
        raise LayoutError(
            f"the numpy dtype {dtype.descr[:20]!r} set at offset {pos} has flags that say "
            f"it {'holds' if has else 'holds no'} objects: arrays of it would take the "
            "file's bytes as object pointers (numpy's own pickles never write this)"
        )


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
    if state is not None and not dtype.copied:
        # numpy.dtype("O8", False, False) is numpy's built-in dtype itself, whose
        # __setstate__ numpy ignores (a state saying "no objects" leaves it holding objects);
        # a flexible one is new and takes the state: numpy's own pickles always copy
        raise LayoutError(f"{where}: its dtype is set as numpy's own pickles never set one")
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
        size = 8 if kind == "O" else n  # "O4" is a pointer too: 8 bytes here
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
        descr, copy = args[0], args[2] if len(args) > 2 else False
        known = isinstance(descr, str) and isinstance(copy, (bool, int)) and len(args) <= 3
        lay.stack.append(_Dtype(descr if known else "?", bool(copy)))
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
