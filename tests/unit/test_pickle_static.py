"""The static pickle reader: it lists what a pickle would import without unpickling it."""

from __future__ import annotations

import pickle
import struct

from runner.static.pickles import imports_in_bytes
from tests.hostile.pickles import Asm


def _pairs(data: bytes) -> list[tuple[str, str]]:
    return [(i.module, i.name) for i in imports_in_bytes(data)]


def test_global_and_stack_global() -> None:
    assert _pairs(Asm().call("posix", "system", "id", stack=False).stop()) == [("posix", "system")]
    assert _pairs(Asm().call("builtins", "eval", "1").stop()) == [("builtins", "eval")]


def test_names_through_the_memo() -> None:
    a = Asm().string("os")
    a.memoize()
    a.pop().string("system")
    a.memoize()
    a.pop().get(0).get(1)
    a.out += pickle.STACK_GLOBAL
    assert _pairs(a.stop()) == [("os", "system")]


def test_names_computed_at_run_time_are_unknown() -> None:
    a = Asm().call("operator", "add", "o", "s")
    a.call("operator", "add", "sys", "tem")
    a.out += pickle.STACK_GLOBAL
    assert _pairs(a.stop())[-1] == ("?", "?")


def test_a_frame_cannot_hide_opcodes() -> None:
    body = Asm().call("posix", "system", "id").stop()[2:]  # without PROTO
    framed = b"\x80\x04" + pickle.FRAME + struct.pack("<Q", len(body)) + body
    assert _pairs(framed) == [("posix", "system")]


def test_benign_pickles_import_nothing_unusual() -> None:
    assert _pairs(pickle.dumps({"a": [1, 2.0, "x"]}, protocol=4)) == []
