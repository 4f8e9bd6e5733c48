"""Fuzzing the static signs (hypothesis): the safetensors header reader, the code-import reader
of torch.package sources, the pickle allocation walk, the ONNX metadata reader and the
torch.package archive reader. Each never raises, always ends (bounded inputs, bounded reads),
keeps its evidence printable and bounded, and says what it could not read."""

from __future__ import annotations

import io
import json
import struct
import tempfile
import zipfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.static import allocations, package, signs
from runner.static.tamper import TamperKind
from runner.worker.shared.formats import Format
from tests.hostile.pickles import Asm

FUZZ = settings(
    max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)
MAX_EVIDENCE = 500


def _bounded(found: list[signs.Tamper]) -> None:
    for t in found:
        assert isinstance(t.check, TamperKind)
        assert len(t.evidence) <= MAX_EVIDENCE and t.evidence.isprintable(), t.evidence


def _file(data: bytes, suffix: str) -> Path:
    f = tempfile.NamedTemporaryFile(suffix=suffix, delete=False)  # noqa: SIM115
    f.write(data)
    f.close()
    return Path(f.name)


# --- safetensors headers ----------------------------------------------------------------------

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(1 << 70), 1 << 70) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=20,
)
_INFO = st.fixed_dictionaries(
    {},
    optional={
        "dtype": st.sampled_from(["F32", "F64", "BF16", "U8", "?"]) | _JSON,
        "shape": st.lists(st.integers(-5, 1 << 40), max_size=8) | _JSON,
        "data_offsets": st.lists(st.integers(-5, 1 << 40), max_size=3) | _JSON,
    },
)
_HEADER = st.dictionaries(
    st.text(max_size=10) | st.just("__metadata__"),
    _INFO | st.dictionaries(st.text(max_size=8), st.text(max_size=60), max_size=4) | _JSON,
    max_size=12,
)


@settings(FUZZ, max_examples=300)
@given(header=_HEADER, data=st.binary(max_size=64), lie=st.integers(-8, 8))
def test_safetensors_headers_never_raise(header: dict[str, object], data: bytes, lie: int) -> None:
    raw = json.dumps(header).encode()
    path = _file(struct.pack("<Q", max(0, len(raw) + lie)) + raw + data, ".safetensors")
    try:
        found = signs.safetensors(path)
        _bounded(found)
        assert signs.examine(path, Format.SAFETENSORS).tamper == found
    finally:
        path.unlink()


@FUZZ
@given(data=st.binary(max_size=256), length=st.integers(0, (1 << 64) - 1))
def test_safetensors_bytes_never_raise(data: bytes, length: int) -> None:
    path = _file(struct.pack("<Q", length) + data, ".safetensors")
    try:
        _bounded(signs.safetensors(path))
    finally:
        path.unlink()


# --- torch.package code -----------------------------------------------------------------------

_TOKENS = st.sampled_from(
    [
        "import ", "from ", " as ", "os", "sys", "subprocess", ".", ",", "(", ")", "[", "]",
        "__import__", "importlib", "import_module", "getattr", "eval", "exec", "'os'", "'x'",
        "+", "\n", "    ", "def ", "class ", ":", "=", "lambda", "*", "system", "modules",
        "\\", '"""', "#", "if ", "else", "\x00", "\ufeff", "1", "f'{x}'", "@", "yield ",
    ]
)  # fmt: skip


@FUZZ
@given(source=st.lists(_TOKENS, max_size=80).map("".join))
def test_the_code_reader_never_raises_on_python_like_text(source: str) -> None:
    uses, error, nodes = package.code_uses(source.encode("utf-8", "surrogatepass"), "p/m.py")
    assert isinstance(error, str) and nodes <= 2 * package.MAX_NODES
    assert len(uses) <= package.MAX_USES
    for u in uses:
        assert u.evidence().isprintable() and len(u.evidence()) <= 300


@FUZZ
@given(source=st.binary(max_size=400), budget=st.integers(0, 50))
def test_the_code_reader_never_raises_on_bytes(source: bytes, budget: int) -> None:
    _uses, error, nodes = package.code_uses(source, "p/m.py", max_nodes=budget)
    assert nodes <= budget + 1
    assert error or nodes <= budget  # a read cut at the node bound says so


def test_deeply_nested_code_is_read_or_said() -> None:
    for source in (b"x = " + b"[" * 5000 + b"]" * 5000, b"f" + b"(1)" * 50_000,
                   b"x = 1" + b" + 1" * 100_000, b"a" + b".b" * 100_000):  # fmt: skip
        uses, error, _ = package.code_uses(source, "m.py")
        assert uses == [] and isinstance(error, str)


# --- pickle allocations -----------------------------------------------------------------------

_CALLS = st.sampled_from(
    [("numpy", "ones"), ("torch", "zeros"), ("builtins", "bytearray"), ("_operator", "mul"),
     ("builtins", "range"), ("builtins", "list"), ("numpy", "full"), ("torch", "eye")]
)  # fmt: skip
_ARG = st.recursive(
    st.integers(-(1 << 70), 1 << 70) | st.binary(max_size=8) | st.text(max_size=8) | st.none(),
    lambda inner: st.lists(inner, max_size=4).map(tuple),
    max_leaves=6,
)


@FUZZ
@given(calls=st.lists(st.tuples(_CALLS, st.lists(_ARG, max_size=3)), max_size=6),
       cut=st.integers(0, 200), junk=st.binary(max_size=16))  # fmt: skip
def test_the_allocation_walk_never_raises(
    calls: list[tuple[tuple[str, str], list[object]]], cut: int, junk: bytes
) -> None:
    a = Asm()
    for (module, name), args in calls:
        a.call(module, name, *args)
    data = a.stop()
    for stream in (data, data[:cut] + junk, junk + data):
        found = allocations.walk(io.BytesIO(stream), len(stream), pickles=3, max_ops=500)
        assert 0 <= found.total <= allocations.CAP and found.ops <= 501
        assert found.error or found.cut or found.ops <= 500


# --- ONNX metadata and torch.package archives --------------------------------------------------


@FUZZ
@given(data=st.binary(max_size=512))
def test_the_onnx_metadata_reader_never_raises(data: bytes) -> None:
    path = _file(data, ".onnx")
    try:
        _bounded(signs.onnx(path))
    finally:
        path.unlink()


_MEMBER = st.tuples(
    st.sampled_from(["m.py", "a/__init__.py", "a/b.py", "model/model.pkl", "x", ".data/x"]),
    st.binary(max_size=64) | _TOKENS.map(str.encode) | st.just(b"\x80\x04K\x01."),
)


@FUZZ
@given(members=st.lists(_MEMBER, max_size=6, unique_by=lambda m: m[0]), compressed=st.booleans())
def test_the_package_reader_never_raises(
    members: list[tuple[str, bytes]], compressed: bool
) -> None:
    buf = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED
    with zipfile.ZipFile(buf, "w", method) as zf:
        zf.writestr("p/.data/version", "6\n")
        zf.writestr("p/.data/extern_modules", "torch\n")
        for name, data in members:
            zf.writestr(f"p/{name}", data)
    path = _file(buf.getvalue(), ".pt")
    try:
        found = signs.examine(path, Format.TORCH_PACKAGE)
        _bounded(found.tamper)
        assert all(
            not package.packaged(i.module, package.read(path).modules) for i in found.imports
        )
    finally:
        path.unlink()
