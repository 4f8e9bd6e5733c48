"""TFLite flatbuffers read on the host: operator codes, custom ops and Flex ops, by hand, every
offset checked against the file (nothing is deserialised, no flatbuffers library is trusted).

- Every operator code is read as the interpreter reads it: max(deprecated_builtin_code,
  builtin_code); a CUSTOM (32) code carries its custom_code string.
- A Flex op (custom code "Flex" + a TensorFlow op name) runs the TensorFlow op its options
  name: the options are a flexbuffer [op name, serialized NodeDef], and TensorFlow's Flex
  delegate runs the NodeDef's op, whatever the custom code says. Both names (and the functions
  the NodeDef's attributes call) are judged like a SavedModel's ops (runner.static.tf_graph:
  file AL970, Python AL971, network AL974).
- Custom and Flex ops are AL973 (low): code outside the model resolves them. The custom ops
  LiteRT's own resolver ships are not.
- A file that breaks the layout (an offset or a length outside the file, an operator whose
  opcode index is out of range, Flex options that are not [name, NodeDef]) or reaches a bound is
  AL972.
"""

from __future__ import annotations

import os
from pathlib import Path

from runner.errors import untrusted_text
from runner.static import tf_graph
from runner.static.signs import Signs
from runner.static.tamper import TamperKind

CUSTOM = 32  # BuiltinOperator.CUSTOM
MAX_OPCODES = 10_000
MAX_SUBGRAPHS = 1_000
MAX_OPERATORS = 500_000  # every subgraph's together
MAX_OPTIONS_BYTES = 4 << 20  # of one Flex op's custom options
MAX_OPTIONS_TOTAL = 64 << 20  # of every Flex op's together (options may alias)
MAX_READS = 4_000_000  # scalar reads of the file, all together
_PAGE = 1 << 14
_PAGES_KEPT = 256
# Custom ops LiteRT's builtin resolver registers itself (tensorflow/lite/core/kernels/register.cc)
SHIPPED_CUSTOM = frozenset({"TFLite_Detection_PostProcess", "Mfcc", "AudioSpectrogram"})
# flexbuffer types (flatbuffers/flexbuffers.h)
_FBT_KEY, _FBT_STRING, _FBT_VECTOR, _FBT_BLOB = 4, 5, 10, 25


class _File:
    """Bounded little-endian reads at offsets of a file, each checked against its size."""

    def __init__(self, fd: int, size: int, data: bytes | None = None) -> None:
        self.fd, self.size, self.left, self.data = fd, size, MAX_READS, data
        self.pages: dict[int, bytes] = {}
        self.options_left = MAX_OPTIONS_TOTAL

    def read(self, at: int, n: int) -> bytes:
        self.left -= 1
        if self.left < 0:
            raise tf_graph.Unreadable(f"more than {MAX_READS} reads of the flatbuffer")
        if at < 0 or n < 0 or at + n > self.size:
            raise tf_graph.Unreadable(f"{n} bytes at offset {at} lie outside the file")
        if self.data is not None:
            return self.data[at : at + n]
        if n > _PAGE:
            return os.pread(self.fd, n, at)
        out = b""
        while len(out) < n:
            page, off = divmod(at + len(out), _PAGE)
            data = self._page(page)
            out += data[off : off + n - len(out)]
        return out

    def _page(self, page: int) -> bytes:
        data = self.pages.get(page)
        if data is None:
            if len(self.pages) >= _PAGES_KEPT:
                self.pages.clear()
            data = self.pages[page] = os.pread(self.fd, _PAGE, page * _PAGE)
        return data

    def uint(self, at: int, n: int) -> int:
        return int.from_bytes(self.read(at, n), "little")

    def int(self, at: int, n: int) -> int:
        return int.from_bytes(self.read(at, n), "little", signed=True)


class _Table:
    """A flatbuffer table: its position and its vtable's field offsets."""

    def __init__(self, f: _File, at: int) -> None:
        self.f, self.at = f, at
        vtable = at - f.int(at, 4)
        vsize = f.uint(vtable, 2)
        if vsize < 4 or vsize % 2:
            raise tf_graph.Unreadable(f"a vtable of {vsize} bytes at offset {vtable}")
        self.slots = [f.uint(vtable + 4 + 2 * i, 2) for i in range((vsize - 4) // 2)]
        self.inline = f.uint(vtable + 2, 2)

    def _pos(self, slot: int) -> int | None:
        off = self.slots[slot] if slot < len(self.slots) else 0
        if not off:
            return None
        if off >= max(self.inline, 1):
            raise tf_graph.Unreadable(f"a field offset {off} past its table at {self.at}")
        return self.at + off

    def scalar(self, slot: int, n: int, default: int = 0, signed: bool = False) -> int:
        pos = self._pos(slot)
        if pos is None:
            return default
        return self.f.int(pos, n) if signed else self.f.uint(pos, n)

    def target(self, slot: int) -> int | None:
        pos = self._pos(slot)
        return None if pos is None else pos + self.f.uint(pos, 4)

    def vector(self, slot: int, width: int, limit: int, what: str) -> tuple[int, int]:
        """(first element's offset, count) of a vector field; (0, 0) when absent."""
        at = self.target(slot)
        if at is None:
            return 0, 0
        count = self.f.uint(at, 4)
        if count > limit:
            raise tf_graph.Unreadable(f"{count} {what} (more than {limit})")
        if at + 4 + count * width > self.f.size:
            raise tf_graph.Unreadable(f"{count} {what} at offset {at} run past the file")
        return at + 4, count

    def tables(self, slot: int, limit: int, what: str) -> list[_Table]:
        start, count = self.vector(slot, 4, limit, what)
        return [_Table(self.f, start + 4 * i + self.f.uint(start + 4 * i, 4)) for i in range(count)]

    def string(self, slot: int, limit: int = 1024) -> str:
        at = self.target(slot)
        if at is None:
            return ""
        n = self.f.uint(at, 4)
        if at + 4 + n > self.f.size:
            raise tf_graph.Unreadable(f"a string of {n} bytes at offset {at} runs past the file")
        return self.f.read(at + 4, min(n, limit)).decode("utf-8", "replace")


def _operator_codes(model: _Table) -> list[tuple[int, str]]:
    """OperatorCode: deprecated_builtin_code 0 (int8), custom_code 1, builtin_code 3 (int32)."""
    codes = []
    for t in model.tables(1, MAX_OPCODES, "operator codes"):
        code = max(t.scalar(0, 1, signed=True), t.scalar(3, 4, signed=True))
        codes.append((code, t.string(1) if code == CUSTOM else ""))
    return codes


def _flex_options(op: _Table) -> bytes:
    """Operator: custom_options 5 ([ubyte]), or large_custom_options_offset 9 and _size 10."""
    start, count = op.vector(5, 1, MAX_OPTIONS_BYTES, "bytes of custom options")
    if not count:
        start, count = op.scalar(9, 8), op.scalar(10, 8)
        if count > MAX_OPTIONS_BYTES:
            raise tf_graph.Unreadable(f"{count} bytes of custom options (more than it reads)")
    op.f.options_left -= count
    if op.f.options_left < 0:
        raise tf_graph.Unreadable(f"more than {MAX_OPTIONS_TOTAL} bytes of Flex op options")
    return op.f.read(start, count) if count else b""


def flex_node(options: bytes) -> tf_graph.Node:
    """The NodeDef of a Flex op's options: a flexbuffer vector [op name, NodeDef bytes]."""
    f = _File(-1, len(options), options)
    if len(options) < 3:
        raise tf_graph.Unreadable("Flex op options too short for a flexbuffer")
    width, packed = options[-1], options[-2]
    root = len(options) - 2 - width
    if width not in (1, 2, 4, 8) or packed >> 2 != _FBT_VECTOR:
        raise tf_graph.Unreadable("Flex op options are not a flexbuffer vector")
    child = 1 << (packed & 3)
    vec = root - f.uint(root, width)
    count = f.uint(vec - child, child)
    if count != 2:
        raise tf_graph.Unreadable(f"Flex op options hold {count} values, not [name, NodeDef]")
    values = []
    for i in range(2):
        at, kind = vec + i * child, f.uint(vec + 2 * child + i, 1)
        start = at - f.uint(at, child)
        if kind >> 2 == _FBT_KEY and i == 0:
            values.append(b"")  # a key names the op too, but the NodeDef is what runs
        elif kind >> 2 in (_FBT_STRING, _FBT_BLOB):
            size = 1 << (kind & 3)
            values.append(f.read(start, f.uint(start - size, size)))
        else:
            raise tf_graph.Unreadable(f"Flex op option {i} is of flexbuffer type {kind >> 2}")
    return tf_graph.node_def(tf_graph.Wire(values[1]), 0, len(values[1]), keep_inputs=False)


def _judge_flex(name: str, node: tf_graph.Node | None, found: dict[TamperKind, list[str]]) -> None:
    names = [name[4:]] + ([*node.ops, *node.funcs] if node else [])
    for op in dict.fromkeys(names):
        verdict = tf_graph.judge_op(op, node.strings if node else {})
        if verdict is not None:
            kind, what = verdict
            found.setdefault(kind, []).append(
                f"{what}: Flex op {untrusted_text(op, 80)} (custom code {untrusted_text(name, 80)})"
            )


def read(f: _File, found: dict[TamperKind, list[str]]) -> None:
    """Model: operator_codes 1, subgraphs 2 (SubGraph: operators 3 (Operator: opcode_index 0))."""
    if f.size < 8 or f.read(4, 4) != b"TFL3":
        raise tf_graph.Unreadable("no TFL3 file identifier")
    model = _Table(f, f.uint(0, 4))
    codes = _operator_codes(model)
    for code, name in codes:
        if code == CUSTOM and name not in SHIPPED_CUSTOM:
            what = "a Flex op (TensorFlow's)" if name.startswith("Flex") else "a custom op"
            found.setdefault(TamperKind.TFLITE_CUSTOM_OP, []).append(
                f"{what} {untrusted_text(name, 80)!r}"
            )
    operators = 0
    for sub in model.tables(2, MAX_SUBGRAPHS, "subgraphs"):
        ops = sub.tables(3, MAX_OPERATORS - operators, "operators")
        operators += len(ops)
        for op in ops:
            index = op.scalar(0, 4)
            if index >= len(codes):
                raise tf_graph.Unreadable(f"an operator names opcode {index} of {len(codes)}")
            code, name = codes[index]
            if code == CUSTOM and name.startswith("Flex"):
                try:
                    node: tf_graph.Node | None = flex_node(_flex_options(op))
                except tf_graph.Unreadable as e:
                    _judge_flex(name, None, found)
                    raise tf_graph.Unreadable(f"{name}: {e}") from e
                _judge_flex(name, node, found)


def examine(primary: Path) -> Signs:
    """The judged ops of a TFLite flatbuffer; never raises for a hostile file."""
    found: dict[TamperKind, list[str]] = {}
    try:
        fd = os.open(primary, os.O_RDONLY)
        try:
            read(_File(fd, os.fstat(fd).st_size), found)
        finally:
            os.close(fd)
    except tf_graph.Unreadable as e:
        found.setdefault(TamperKind.GRAPH_UNREADABLE, []).append(
            f"{primary.name}: {untrusted_text(str(e), 200)}"
        )
    except (OSError, ValueError, IndexError, MemoryError) as e:
        why = f"{primary.name} could not be read: {untrusted_text(str(e), 160)}"
        found.setdefault(TamperKind.GRAPH_UNREADABLE, []).append(why)
    return Signs(tamper=tf_graph.tampers(found))
