"""What a pickle asks the unpickler to allocate, estimated from its opcodes, never by unpickling.

A pickle is a program: a few bytes can call an allocator with a large literal size
(`numpy.ones((1 << 27,))`, `bytearray(1 << 30)`, `b"x" * (1 << 30)` through `operator.mul`,
`list(range(n))`), so a file of a few hundred bytes costs gigabytes to load. A small symbolic
stack follows integers, literal lengths, tuples and globals through the stack and the memo; a
REDUCE or NEWOBJ of a known allocator whose arguments are literals adds what it asks for.
Container items (APPENDS, SETITEMS, ...) are counted too, as they cost memory per item.

The walk is bounded (opcodes, stack items kept, tuple sizes, sizes saturate at 2**62) and never
raises for a hostile stream: a stream that breaks off ends the walk with what was read.
"""

from __future__ import annotations

import pickletools
import struct
from dataclasses import dataclass, field
from typing import IO, Any

from runner.static.pickles import Walkable, ops

MAX_OPS = 2_000_000
MAX_TUPLE = 8  # items of a literal tuple followed; longer ones are unknown
CAP = 1 << 62  # sizes saturate here
DICT_ITEM_BYTES = 100  # about what a dict entry costs
LIST_ITEM_BYTES = 8  # a pointer per item


class _Unknown:
    pass


UNKNOWN = _Unknown()
_MARK = object()


@dataclass(frozen=True)
class _Seq:
    """A str or bytes literal, or something built from one: only its length is known."""

    n: int


@dataclass(frozen=True)
class _Count:
    """A lazy sequence of n items (a range)."""

    n: int


@dataclass(frozen=True)
class _Global:
    module: str
    name: str


# Allocators and the bytes of one element they make.
_SHAPED: dict[tuple[str, str], int] = {
    **{("numpy", n): 8 for n in ("ones", "zeros", "empty", "full", "arange", "eye", "identity")},
    **{
        ("torch", n): 4
        for n in ("ones", "zeros", "empty", "full", "rand", "randn", "arange", "eye")
    },
}
_SEQUENCES = {"bytes", "bytearray", "list", "tuple", "set", "frozenset", "sorted"}
_REPEAT = {("operator", "mul"), ("_operator", "mul"), ("operator", "imul"), ("_operator", "imul")}
_STRINGS = frozenset(
    (
        *("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE"),
        *("SHORT_BINSTRING", "BINSTRING", "STRING"),
        *("SHORT_BINBYTES", "BINBYTES", "BINBYTES8", "BYTEARRAY8"),
    )
)
_INTS = frozenset(("INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4"))


def _sat(n: int) -> int:
    return max(0, min(int(n), CAP))


def _product(values: list[int]) -> int:
    total = 1
    for v in values:
        total = _sat(total * max(0, v))
    return total


def _ints(v: object) -> list[int] | None:
    """An int, or a tuple of ints, as a shape."""
    if isinstance(v, int) and not isinstance(v, bool):
        return [v]
    if isinstance(v, tuple) and v and all(isinstance(i, int) for i in v):
        return list(v)
    return None


def _builtin(g: _Global) -> str:
    return g.name if g.module in ("builtins", "__builtin__") else ""


def _range_count(args: tuple[object, ...]) -> int | None:
    """The items of range(*args) (or arange), when every argument is an int literal."""
    if not args or len(args) > 3 or not all(isinstance(a, int) for a in args):
        return None
    a = [int(x) for x in args]  # type: ignore[call-overload]
    start, stop = (0, a[0]) if len(a) == 1 else (a[0], a[1])
    step = a[2] if len(a) > 2 and a[2] else 1
    return _sat((stop - start) // step)


def _shape(lib: str, fn: str, args: tuple[object, ...]) -> list[int] | None:
    if fn == "arange":
        n = _range_count(args)
        return None if n is None else [n]
    if fn in ("eye", "identity"):
        dims = [a for a in args[:2] if isinstance(a, int)]
        return [dims[0], dims[-1]] if dims else None
    if lib == "numpy" or fn == "full" or isinstance(args[0], tuple):
        return _ints(args[0])  # numpy.ones(shape, ...), torch.ones((2, 3)), torch.full(size, v)
    return _ints(tuple(args)) if all(isinstance(a, int) for a in args) else None  # torch.ones(2, 3)


def estimate(g: _Global, args: object) -> tuple[int, object]:
    """(bytes the call asks for, the value it leaves) for a call of `g` with `args`."""
    if not isinstance(args, tuple) or not args:
        return 0, UNKNOWN
    key = (g.module.split(".")[0], g.name)
    if key in _SHAPED:
        shape = _shape(key[0], key[1], args)
        return (_sat(_product(shape) * _SHAPED[key]) if shape else 0), UNKNOWN
    name = _builtin(g)
    if name == "range":
        count = _range_count(args)
        return 0, (UNKNOWN if count is None else _Count(count))
    if name in _SEQUENCES and len(args) == 1:
        (arg,) = args
        if isinstance(arg, int) and not isinstance(arg, bool) and name in ("bytes", "bytearray"):
            return _sat(arg), _Seq(_sat(arg))
        if isinstance(arg, _Count):
            per = 1 if name in ("bytes", "bytearray") else LIST_ITEM_BYTES
            return _sat(arg.n * per), _Seq(arg.n)
        return 0, UNKNOWN
    if (g.module, g.name) in _REPEAT and len(args) == 2:
        return _repeat(*args)
    return 0, UNKNOWN


def _repeat(a: object, b: object) -> tuple[int, object]:
    """seq * n (or n * seq): a literal string, bytes or tuple repeated."""
    seq, times = (a, b) if isinstance(b, int) else (b, a)
    if not isinstance(times, int) or isinstance(times, bool):
        return 0, UNKNOWN
    if isinstance(seq, str):
        seq = _Seq(len(seq))
    if isinstance(seq, _Seq):
        n = _sat(seq.n * times)
        return n, _Seq(n)
    if isinstance(seq, tuple):
        n = _sat(len(seq) * times)
        return _sat(n * LIST_ITEM_BYTES), _Seq(n)
    return 0, UNKNOWN


@dataclass
class Allocations:
    """What a pickle's opcodes ask for."""

    total: int = 0  # bytes, saturating
    calls: int = 0  # allocator calls with a known size
    largest: tuple[int, str, int] = (0, "", 0)  # (bytes, allocator, offset)
    container_items: int = 0
    ops: int = 0
    cut: bool = False  # the opcode bound was reached
    error: str = ""  # why the stream broke off

    def add(self, n: int, what: str, at: int) -> None:
        if n <= 0:
            return
        self.total, self.calls = _sat(self.total + n), self.calls + 1
        if n > self.largest[0]:
            self.largest = (n, what, at)


def _global(arg: object) -> object:
    """GLOBAL's argument: "module name" (pickletools) or (module, name) (runner's reader)."""
    if isinstance(arg, str):
        module, _, attr = arg.partition(" ")
        return _Global(module, attr)
    if isinstance(arg, tuple) and len(arg) == 2 and all(isinstance(a, str) for a in arg):
        return _Global(arg[0], arg[1])
    return UNKNOWN


@dataclass
class _Machine:
    found: Allocations
    stack: list[object] = field(default_factory=list)
    memo: dict[int, object] = field(default_factory=dict)

    def pop(self) -> object:
        return self.stack.pop() if self.stack else UNKNOWN

    def to_mark(self) -> list[object]:
        items: list[object] = []
        while self.stack:
            top = self.stack.pop()
            if top is _MARK:
                break
            items.append(top)
        items.reverse()
        return items

    def step(self, op: pickletools.OpcodeInfo, arg: Any, pos: int) -> None:
        name, stack = op.name, self.stack
        if name in _INTS:
            stack.append(int(arg) if isinstance(arg, int) else UNKNOWN)
        elif name in _STRINGS:
            short = isinstance(arg, str) and len(arg) < 256
            stack.append(arg if short else _Seq(len(arg) if arg is not None else 0))
        elif name == "GLOBAL":
            stack.append(_global(arg))
        elif name == "STACK_GLOBAL":
            attr, module = self.pop(), self.pop()
            ok = isinstance(module, str) and isinstance(attr, str)
            stack.append(_Global(str(module), str(attr)) if ok else UNKNOWN)
        elif name in ("TUPLE", "EMPTY_TUPLE", "TUPLE1", "TUPLE2", "TUPLE3"):
            n = {"EMPTY_TUPLE": 0, "TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3}.get(name)
            items = self.to_mark() if n is None else [self.pop() for _ in range(n)][::-1]
            stack.append(tuple(items) if len(items) <= MAX_TUPLE else UNKNOWN)
        elif name in ("REDUCE", "NEWOBJ"):
            args, func = self.pop(), self.pop()
            if isinstance(func, _Global):
                n, value = estimate(func, args)
                self.found.add(n, f"{func.module}.{func.name}"[:120], pos)
                stack.append(value)
            else:
                stack.append(UNKNOWN)
        else:
            self._structure(op, arg)

    def _structure(self, op: pickletools.OpcodeInfo, arg: Any) -> None:
        name, stack = op.name, self.stack
        if name == "MARK":
            stack.append(_MARK)
        elif name == "MEMOIZE":
            self.memo[len(self.memo)] = stack[-1] if stack else UNKNOWN
        elif name in ("PUT", "BINPUT", "LONG_BINPUT") and isinstance(arg, int):
            self.memo[arg] = stack[-1] if stack else UNKNOWN
        elif name in ("GET", "BINGET", "LONG_BINGET") and isinstance(arg, int):
            stack.append(self.memo.get(arg, UNKNOWN))
        elif name == "DUP":
            stack.append(stack[-1] if stack else UNKNOWN)
        elif name in ("APPEND", "SETITEM"):
            self.found.container_items += 1
            self.found.total = _sat(
                self.found.total + (DICT_ITEM_BYTES if name == "SETITEM" else LIST_ITEM_BYTES)
            )
            self._generic(op)
        elif name in ("APPENDS", "SETITEMS", "ADDITEMS"):
            items = self.to_mark()
            count = len(items) // 2 if name == "SETITEMS" else len(items)
            per = DICT_ITEM_BYTES if name != "APPENDS" else LIST_ITEM_BYTES
            self.found.container_items += count
            self.found.total = _sat(self.found.total + count * per)
        else:
            self._generic(op)

    def _generic(self, op: pickletools.OpcodeInfo) -> None:
        """Any other opcode: pop what it takes (to the mark, for marked ones), push unknowns."""
        before = op.stack_before
        if pickletools.markobject in before:
            self.to_mark()
            for _ in range(before.index(pickletools.markobject)):
                self.pop()
        else:
            for _ in before:
                self.pop()
        for item in op.stack_after:
            self.stack.append(_MARK if item is pickletools.markobject else UNKNOWN)


def walk(stream: IO[bytes], size: int, pickles: int = 1, max_ops: int = MAX_OPS) -> Allocations:
    """The allocations of up to `pickles` consecutive pickles read from `stream` (a legacy
    torch.save file holds five), opcode by opcode, at most `max_ops` in all."""
    found = Allocations()
    reader = Walkable(stream, size)
    for _ in range(pickles):
        if found.error or found.cut or (found.ops and stream.tell() >= size):
            break
        _walk_one(reader, found, max_ops)
    return found


def _walk_one(reader: Walkable, found: Allocations, max_ops: int) -> None:
    machine = _Machine(found)
    try:
        for op, arg, at in ops(reader):
            found.ops += 1
            if found.ops > max_ops:
                found.cut = True
                return
            if op.name == "STOP":
                return
            machine.step(op, arg, at or 0)
    except (
        ValueError,
        EOFError,
        IndexError,
        KeyError,
        TypeError,
        UnicodeDecodeError,
        OverflowError,
        struct.error,
    ) as e:
        found.error = str(e)[:200]
