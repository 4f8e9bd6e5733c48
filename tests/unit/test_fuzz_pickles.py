"""Fuzzing the static pickle read (hypothesis): random bytes, opcode soups and mutated real
pickles, raw and inside a torch zip, through the walker, the tamper check and the judge of
global names. It never raises, always ends (bounded input, the opcode bound), and what it did
not read to the end it says: a walk with no STOP has an error or an opcode-bound note."""

from __future__ import annotations

import io
import pickle
import struct
import tempfile
import zipfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.rules.catalog import Severity
from runner.rules.pickle_globals import judge_global
from runner.static import pickles, tamper
from runner.static.pickles import Issue, walk_pickle_file
from runner.worker.shared.formats import Format
from tests.hostile.pickles import Asm

FUZZ = settings(
    max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)


def _seeds() -> list[bytes]:
    a = Asm().call("torch._utils", "os.system", "id")
    ext = Asm().call("copyreg", "add_extension", "os", "system", 240).pop()
    ext.out += pickle.EXT1 + b"\xf0"
    memo = Asm().string("posix")
    memo.memoize()
    memo.pop().string("system").get(0)
    memo.out += pickle.STACK_GLOBAL
    return [
        pickle.dumps({"a": [1, 2.5, "x", b"y"], "b": (None, True)}, protocol=p) for p in range(6)
    ] + [a.stop(), ext.stop(), memo.stop()]


SEEDS = _seeds()
_LEN = st.integers(min_value=0, max_value=1 << 33)


def _fragment() -> st.SearchStrategy[bytes]:
    """Pieces of pickles, well-formed or not: names, strings that lie about their length,
    frames, extension codes, marks, the memo, protocol changes."""
    text = st.text(max_size=12).map(lambda s: s.encode("utf-8", "surrogatepass"))
    return st.one_of(
        st.binary(max_size=8),
        text.map(lambda t: b"c" + t + b"\n" + t + b"\n"),
        text.map(lambda t: b"i" + t + b"\n" + t + b"\n"),
        text.map(lambda t: pickle.SHORT_BINUNICODE + bytes([len(t) % 256]) + t),
        _LEN.map(lambda n: pickle.BINUNICODE + struct.pack("<I", n % (1 << 32))),
        _LEN.map(lambda n: pickle.FRAME + struct.pack("<Q", n)),
        _LEN.map(lambda n: pickle.BINBYTES8 + struct.pack("<Q", n)),
        st.integers(0, 255).map(lambda c: pickle.EXT1 + bytes([c])),
        st.integers(0, 0xFFFF).map(lambda c: pickle.EXT2 + struct.pack("<H", c)),
        st.integers(-(1 << 31), (1 << 31) - 1).map(lambda c: pickle.EXT4 + struct.pack("<i", c)),
        st.integers(0, 255).map(lambda n: pickle.BINGET + bytes([n])),
        st.integers(0, 255).map(lambda n: pickle.PROTO + bytes([n])),
        st.sampled_from(
            [
                *(pickle.MARK, pickle.MEMOIZE, pickle.STACK_GLOBAL, pickle.TUPLE, pickle.REDUCE),
                *(pickle.POP, pickle.POP_MARK, pickle.DUP, pickle.BUILD, pickle.NONE, b"I0x1\n"),
            ]
        ),
    )


def _mutate(data: bytes, edits: list[tuple[int, int, bytes]]) -> bytes:
    out = bytearray(data)
    for kind, at, blob in edits:
        at = at % (len(out) + 1)
        if kind == 0:
            out[at : at + 1] = blob[:1]  # replace (or delete, with an empty blob)
        elif kind == 1:
            out[at:at] = blob  # insert
        else:
            del out[at : at + len(blob)]
    return bytes(out)


_EDITS = st.lists(
    st.tuples(st.integers(0, 2), st.integers(0, 1 << 16), st.binary(max_size=6)), max_size=6
)
SOUPS = st.lists(_fragment(), max_size=40).map(lambda parts: b"\x80\x04" + b"".join(parts))
MUTANTS = st.tuples(st.sampled_from(SEEDS), _EDITS).map(lambda t: _mutate(*t))
ANY = st.one_of(st.binary(max_size=4096), SOUPS, MUTANTS)


def _accounted(w: pickles.FileWalk) -> bool:
    """Every walk ends at a STOP, or says why it did not."""
    cut = any(n.issue is Issue.OPCODE_CAP for n in w.notes)
    return w.end is not None or bool(w.error) or cut


@FUZZ
@given(ANY)
def test_the_walk_never_raises_and_says_what_it_did_not_read(data: bytes) -> None:
    w = walk_pickle_file(io.BytesIO(data), len(data))
    assert _accounted(w)
    assert len(w.imports) <= pickles.MAX_IMPORTS
    assert all(len(i.module) <= 501 and len(i.name) <= 501 for i in w.imports)
    again = walk_pickle_file(io.BytesIO(data), len(data))  # counts, not time: the same notes
    assert again.notes == w.notes and again.imports == w.imports
    pickles.imports_in_bytes(data)


_EXT = st.one_of(
    st.integers(0, 255).map(lambda c: pickle.EXT1 + bytes([c])),
    st.integers(0, 0xFFFF).map(lambda c: pickle.EXT2 + struct.pack("<H", c)),
    st.integers(0, (1 << 31) - 1).map(lambda c: pickle.EXT4 + struct.pack("<i", c)),
)


@FUZZ
@given(st.binary(max_size=64), _EXT, ANY)
def test_an_extension_code_is_always_reported(head: bytes, ext: bytes, tail: bytes) -> None:
    data = b"\x80\x04" + pickle.SHORT_BINBYTES + bytes([len(head)]) + head + ext
    data += tail  # whatever follows cannot take back what was read
    w = walk_pickle_file(io.BytesIO(data), len(data))
    assert [n.issue for n in w.notes if n.issue is Issue.EXTENSION] == [Issue.EXTENSION]


@settings(max_examples=300, deadline=None, database=None)
@given(st.integers(0, 100), st.sampled_from([b"N0", b"(0", b"}0"]), st.booleans())
def test_the_opcode_bound_is_reported_not_passed_over(n: int, pair: bytes, stop: bool) -> None:
    body = pair * (n // 2) + pair[:1] * (n % 2)  # n one-byte opcodes
    data = b"\x80\x04" + body + (b"." if stop else b"")
    saved = pickles.MAX_OPS
    pickles.MAX_OPS = 50
    try:
        w = walk_pickle_file(io.BytesIO(data), len(data))
    finally:
        pickles.MAX_OPS = saved
    cut = any(note.issue is Issue.OPCODE_CAP for note in w.notes)
    assert cut == (1 + n + stop > 50)  # PROTO, the body, the STOP
    assert _accounted(w)


@settings(max_examples=300, deadline=None, database=None)
@given(ANY, st.booleans())
def test_the_tamper_check_and_the_zip_read_never_raise(data: bytes, zipped: bool) -> None:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / ("m.pt" if zipped else "m.pkl")
        if zipped:
            with zipfile.ZipFile(p, "w") as zf:
                zf.writestr("archive/data.pkl", data)
                zf.writestr("archive/data/0", b"\0" * 8)
        else:
            p.write_bytes(data)
        found = tamper.check(p, Format.TORCH if zipped else Format.PICKLE)
        read = pickles.read_file(p)
    assert all(isinstance(t, tamper.Tamper) for t in found)
    if not zipped:  # the tamper check reports the raw walk's notes, or its break
        walked = walk_pickle_file(io.BytesIO(data), len(data))
        kinds = {t.check for t in found}
        assert {tamper.TamperKind(n.issue.value) for n in walked.notes} <= kinds
        if walked.error:
            assert tamper.TamperKind.PICKLE_TRUNCATED in kinds
    assert all(n.issue in Issue for n in read.notes)


@settings(max_examples=2000, deadline=None, database=None)
@given(st.text(max_size=80), st.text(max_size=80))
def test_the_judge_of_names_never_raises_and_odd_text_is_never_ordinary(
    module: str, name: str
) -> None:
    j = judge_global(module, name)
    exact = all(s.isidentifier() for s in f"{module}.{name}".split("."))
    if not exact:
        assert j.severity in (Severity.HIGH, Severity.CRITICAL)
