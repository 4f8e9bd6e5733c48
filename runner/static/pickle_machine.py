"""The symbolic stack and memo of one pickle, stepped by the opcode walk (runner.static.pickles).

Strings are followed through the stack and the memo; everything else is UNKNOWN. It is
conservative where it cannot be exact: a value the walk does not follow reads as UNKNOWN, so a
STACK_GLOBAL fed by it is reported as an import whose name is computed ("?"), never as a name
it might have had.
"""

from __future__ import annotations

import pickletools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MAX_NAME = 500  # characters kept of a module or attribute name ("…" marks a cut)
KEPT_EXTENSIONS = 100  # extension codes kept for the evidence (all are counted)
EXTENSIONS = frozenset(("EXT1", "EXT2", "EXT4"))


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


def name_text(value: object) -> str:
    """A module or attribute name as it may be shown and judged: printable, bounded, a cut
    marked with "…" (so it cannot pass for a whole name)."""
    if not isinstance(value, str):
        return "?"
    cleaned = "".join(c if c.isprintable() else "\ufffd" for c in value[:MAX_NAME])
    return cleaned + ("…" if len(value) > MAX_NAME else "")


_STRINGS = frozenset(
    (
        *("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE"),
        *("SHORT_BINSTRING", "BINSTRING", "STRING"),
    )
)
# Opcodes that pop a fixed number of items and push one value the walk does not follow.
_POP_THEN_PUSH = {
    **dict.fromkeys(("EMPTY_TUPLE", "EMPTY_LIST", "EMPTY_DICT", "EMPTY_SET", "NONE"), 0),
    **dict.fromkeys(("NEWTRUE", "NEWFALSE", "PERSID"), 0),
    "BINPERSID": 1,
    "TUPLE1": 1,
    "TUPLE2": 2,
    "TUPLE3": 3,
    **dict.fromkeys(("REDUCE", "NEWOBJ", "BUILD", "APPEND"), 2),
    "SETITEM": 3,
    "NEWOBJ_EX": 3,
}
_MARKED_PUSH = frozenset(("TUPLE", "LIST", "DICT", "FROZENSET", "OBJ"))
_MARKED = frozenset(("APPENDS", "SETITEMS", "ADDITEMS", "POP_MARK"))
_PUTS = frozenset(("PUT", "BINPUT", "LONG_BINPUT"))
_GETS = frozenset(("GET", "BINGET", "LONG_BINGET"))


class Machine:
    """The stack and memo of one pickle; `room` imports may still be recorded (the file's
    bound), the rest are counted in `dropped`."""

    def __init__(self, member: str, room: int) -> None:
        self.member = member
        self.room = room
        self.imports: list[Import] = []
        self.dropped = 0  # globals met once the bound was reached
        self.extensions: list[tuple[str, int, int]] = []  # (opcode, code, offset), bounded
        self.extension_count = 0
        self.stack: list[object] = []
        self.memo: dict[int, object] = {}

    def _pop(self, n: int = 1) -> object:
        top: object = UNKNOWN
        for _ in range(n):
            top = self.stack.pop() if self.stack else UNKNOWN
        return top

    def _top(self) -> object:
        return self.stack[-1] if self.stack else UNKNOWN

    def _pop_to_mark(self) -> None:
        stack = self.stack
        while stack:
            if stack.pop() is _MARK:
                return

    def _found(self, module: object, name: object, pos: int) -> None:
        if len(self.imports) >= self.room:
            self.dropped += 1  # keep walking to the STOP; record no more, count them
            return
        self.imports.append(Import(name_text(module), name_text(name), self.member, pos))

    def _global_op(self, name: str, arg: Any, pos: int) -> None:
        module, attr = arg if isinstance(arg, tuple) and len(arg) == 2 else ("?", "?")
        if name == "INST":
            self._pop_to_mark()
        self._found(module, attr, pos)
        self.stack.append(UNKNOWN)

    def _stack_global(self, pos: int) -> None:
        top = self._pop()
        self._found(self._pop(), top, pos)
        self.stack.append(UNKNOWN)

    def _extension(self, name: str, arg: Any, pos: int) -> None:
        self.extension_count += 1
        if len(self.extensions) < KEPT_EXTENSIONS:
            self.extensions.append((name, arg if isinstance(arg, int) else -1, pos))
        self.stack.append(UNKNOWN)

    def step(self, name: str, arg: Any, pos: int) -> None:
        """One opcode, by name, with its argument and offset."""
        _STEP[name](self, name, arg, pos)


_Step = Callable[[Machine, str, Any, int], None]


def _memoize(m: Machine, _name: str, _arg: Any, _pos: int) -> None:
    m.memo[len(m.memo)] = m._top()


def _mark(m: Machine, _name: str, _arg: Any, _pos: int) -> None:
    m.stack.append(_MARK)


def _pop(m: Machine, _name: str, _arg: Any, _pos: int) -> None:
    m._pop()


def _dup(m: Machine, _name: str, _arg: Any, _pos: int) -> None:
    m.stack.append(m._top())


def _stack_global(m: Machine, _name: str, _arg: Any, pos: int) -> None:
    m._stack_global(pos)


def _string(m: Machine, _name: str, arg: Any, _pos: int) -> None:
    m.stack.append(arg if isinstance(arg, str) else UNKNOWN)


def _put(m: Machine, _name: str, arg: Any, _pos: int) -> None:
    if isinstance(arg, int):
        m.memo[arg] = m._top()


def _get(m: Machine, _name: str, arg: Any, _pos: int) -> None:
    m.stack.append(m.memo.get(arg, UNKNOWN) if isinstance(arg, int) else UNKNOWN)


def _to_mark(m: Machine, _name: str, _arg: Any, _pos: int) -> None:
    m._pop_to_mark()


def _to_mark_push(m: Machine, _name: str, _arg: Any, _pos: int) -> None:
    m._pop_to_mark()
    m.stack.append(UNKNOWN)


def _pop_push(m: Machine, name: str, _arg: Any, _pos: int) -> None:
    m._pop(_POP_THEN_PUSH[name])
    m.stack.append(UNKNOWN)


def _push(m: Machine, _name: str, _arg: Any, _pos: int) -> None:
    m.stack.append(UNKNOWN)  # any other push (numbers, bytes, ...)


def _nothing(m: Machine, _name: str, _arg: Any, _pos: int) -> None:
    return None  # FRAME, PROTO, STOP and the like: no value the walk follows


_SPECIAL: dict[str, _Step] = {
    "GLOBAL": Machine._global_op,
    "INST": Machine._global_op,
    "STACK_GLOBAL": _stack_global,
    **dict.fromkeys(EXTENSIONS, Machine._extension),
    "MEMOIZE": _memoize,
    "MARK": _mark,
    "POP": _pop,
    "DUP": _dup,
}


def _handler(op: pickletools.OpcodeInfo) -> _Step:
    name = op.name
    if name in _SPECIAL:
        return _SPECIAL[name]
    groups: tuple[tuple[frozenset[str] | dict[str, int], _Step], ...] = (
        (_STRINGS, _string),
        (_PUTS, _put),
        (_GETS, _get),
        (_MARKED, _to_mark),
        (_MARKED_PUSH, _to_mark_push),
        (_POP_THEN_PUSH, _pop_push),
    )
    for names, handler in groups:
        if name in names:
            return handler
    return _push if op.stack_after and not op.stack_before else _nothing


_STEP: dict[str, _Step] = {op.name: _handler(op) for op in pickletools.opcodes}
