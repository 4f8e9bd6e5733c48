"""A tiny pickle assembler, so hostile pickles are written as readable code rather than
opaque bytes. Supports the opcodes the attacks need: GLOBAL and STACK_GLOBAL, strings, ints,
bytes, tuples, lists, dicts, REDUCE, the memo (MEMOIZE/BINGET), and STOP."""

from __future__ import annotations

import pickle
import struct
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Asm:
    out: bytearray = field(default_factory=lambda: bytearray(b"\x80\x04"))
    memo: int = 0

    # values
    def string(self, s: str) -> Asm:
        data = s.encode()
        self.out += (
            pickle.SHORT_BINUNICODE + bytes([len(data)]) + data
            if len(data) < 256
            else pickle.BINUNICODE + struct.pack("<I", len(data)) + data
        )
        return self

    def raw(self, b: bytes) -> Asm:
        self.out += pickle.BINBYTES + struct.pack("<I", len(b)) + b
        return self

    def int(self, n: int) -> Asm:
        if -(1 << 31) <= n < (1 << 31):
            self.out += pickle.BININT + struct.pack("<i", n)
        else:
            data = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
            self.out += pickle.LONG1 + bytes([len(data)]) + data
        return self

    def none(self) -> Asm:
        self.out += pickle.NONE
        return self

    def value(self, v: Any) -> Asm:
        if isinstance(v, str):
            return self.string(v)
        if isinstance(v, bytes):
            return self.raw(v)
        if isinstance(v, bool) or v is None:
            self.out += (
                pickle.NEWTRUE if v is True else pickle.NEWFALSE if v is False else pickle.NONE
            )
            return self
        if isinstance(v, int):
            return self.int(v)
        if isinstance(v, (list, tuple)):
            self.out += pickle.MARK
            for item in v:
                self.value(item)
            self.out += pickle.LIST if isinstance(v, list) else pickle.TUPLE
            return self
        raise TypeError(type(v))

    # structure
    def glob(self, module: str, name: str) -> Asm:
        """GLOBAL: module and name as literal text in the stream."""
        self.out += pickle.GLOBAL + module.encode() + b"\n" + name.encode() + b"\n"
        return self

    def stack_glob(self, module: str, name: str) -> Asm:
        self.string(module).string(name)
        self.out += pickle.STACK_GLOBAL
        return self

    def mark(self) -> Asm:
        self.out += pickle.MARK
        return self

    def tuple(self) -> Asm:
        self.out += pickle.TUPLE
        return self

    def reduce(self) -> Asm:
        self.out += pickle.REDUCE
        return self

    def memoize(self) -> int:
        self.out += pickle.MEMOIZE
        self.memo += 1
        return self.memo - 1

    def get(self, index: int) -> Asm:
        self.out += pickle.BINGET + bytes([index])
        return self

    def pop(self) -> Asm:
        self.out += pickle.POP
        return self

    def call(self, module: str, name: str, *args: Any, stack: bool = True) -> Asm:
        """module.name(*args), leaving the result on the stack."""
        (self.stack_glob if stack else self.glob)(module, name)
        self.mark()
        for a in args:
            self.value(a)
        self.tuple().reduce()
        return self

    def stop(self) -> bytes:
        self.out += pickle.STOP
        return bytes(self.out)
