"""GGUF on the host: the bounded header reader, the chat template judge and the findings they
make, on files gguf.GGUFWriter writes at test time; fuzzed with hypothesis."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.static import chat_template, gguf
from runner.static.preflight import examine
from runner.static.tamper import TamperKind
from runner.worker.shared import gguf_header
from runner.worker.shared.formats import Format, detect
from tests.fixtures import gguf_models as gm


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return gm.tiny_llama(tmp_path_factory.mktemp("gguf") / "tiny.gguf", gm.LLAMA3)


def _kinds(path: Path) -> list[TamperKind]:
    return [t.check for t in gguf.examine(path).tamper]


def test_tiny_model_reads_whole(tiny: Path) -> None:
    h = gguf_header.read_path(tiny, frozenset({"tokenizer.ggml.tokens"}))
    assert h.problem == ""
    assert h.version == 3 and h.tensor_count == len(h.tensors) == 3 + 9 * gm.N_LAYER
    assert h.string("general.architecture") == "llama"
    assert h.string("tokenizer.chat_template") == gm.LLAMA3
    tokens = h.arrays["tokenizer.ggml.tokens"]
    assert tokens.strings is not None and tokens.strings[1] == "<s>"
    assert h.data_start % h.alignment == 0
    assert all(t.offset + t.size <= h.file_size - h.data_start for t in h.tensors)
    assert detect(tiny).format is Format.GGUF
    assert "architecture llama" in gguf.describe(h) and "parameters" in gguf.describe(h)


@pytest.mark.parametrize("family", sorted(gm.REAL_TEMPLATES))
def test_real_chat_templates_are_clean(family: str, tmp_path: Path) -> None:
    assert chat_template.judge(gm.REAL_TEMPLATES[family]) == chat_template.Judgement()
    path = gm.tiny_llama(tmp_path / "m.gguf", gm.REAL_TEMPLATES[family])
    result = examine(path)
    assert result.format == "gguf" and result.tamper == [], result.tamper


def test_injection_is_al960_with_metadata(tmp_path: Path) -> None:
    extra = {"rag": gm.injection_obfuscated("/tmp/x")}
    path = gm.tiny_llama(tmp_path / "i.gguf", gm.injection("/tmp/x"), extra_templates=extra)
    found = gguf.examine(path).tamper
    assert [t.check for t in found] == [TamperKind.TEMPLATE_OBJECT_ACCESS] * 2
    assert "__globals__" in found[0].evidence and "architecture llama" in found[0].evidence
    assert found[1].evidence.startswith("tokenizer.chat_template.rag:")


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ self._TemplateReference__context }}",
        "{{ x|attr('__cla' ~ 'ss__') }}",
        "{{ x['\\x5f\\x5fclass\\x5f\\x5f'] }}",
        "{% set a = '_' * 2 %}{{ x|attr(a + 'class' + a) }}",
        "{{ x|attr('%sclass%s' % ('__', '__')) }}",
        "{{ x|attr('{0}class{0}'.format('__')) }}",
        "{{ x|attr('__CLASS__'|lower) }}",
        "{{ x|attr('..class..'|replace('.', '_')) }}",
        "{{ x|attr('__ssalc__'|reverse) }}",
        "{{ x|attr('a__class__'[1:]) }}",
        "{% set ns = namespace(k='__') %}{% set ns.k = ns.k ~ 'class__' %}{{ x|attr(ns.k) }}",
        "{% set d = {'k': '__class__'} %}{{ x[d.k] }}",
        "{% for c in ['__class__'] %}{{ x[c] }}{% endfor %}",
        "{% set k %}__class__{% endset %}{{ x|attr(k) }}",
        "{{ '{0.__class__}'.format(x) }}",
        "{{ g.gi_frame.f_back.f_globals }}",
    ],
)
def test_reaching_python_objects(source: str) -> None:
    j = chat_template.judge(source)
    assert j.reaches, source


@pytest.mark.parametrize(
    "source",
    [
        "{{ x|attr(y ~ 'class') }}",
        "{{ x[y|join] }}",
        "{{ (y ~ 'x').format(z) }}",
        "{% include 'other.jinja' %}",
        "{% import 'macros' as m %}",
    ],
)
def test_dynamic_names_are_al963(source: str) -> None:
    j = chat_template.judge(source)
    assert j.dynamic and not j.reaches, (source, j)


def test_ordinary_lookups_are_not_dynamic() -> None:
    source = (
        "{% for m in messages %}{{ messages[loop.index0 + 1].role if not loop.last }}"
        "{{ m['content'] }}{{ m[key] }}{{ m.tool_calls[0].function.name }}{% endfor %}"
    )
    assert chat_template.judge(source) == chat_template.Judgement()


@pytest.mark.parametrize(
    ("source", "why"),
    [
        ("{{ x", "does not parse"),
        ("{% for %}", "does not parse"),
        ("{{" * 5000, "nested too deeply"),
        ("x" * (chat_template.MAX_CHARS + 1), "over the bound"),
    ],
)
def test_unjudgeable_templates(source: str, why: str) -> None:
    assert why in chat_template.judge(source).unreadable


def test_unparsable_template_is_al962(tmp_path: Path) -> None:
    path = gm.tiny_llama(tmp_path / "u.gguf", "{% if %}")
    assert _kinds(path) == [TamperKind.TEMPLATE_UNREADABLE]


# --- the header's bounds ----------------------------------------------------------------------


def _header(version: int = 3, tensors: int = 0, kvs: int = 0) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", version, tensors, kvs)


def _kv_string(key: str, value: bytes, declared: int | None = None) -> bytes:
    k = key.encode()
    n = len(value) if declared is None else declared
    return struct.pack("<Q", len(k)) + k + struct.pack("<IQ", 8, n) + value


def _problem(data: bytes) -> str:
    return gguf_header.read(io.BytesIO(data), len(data)).problem


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"GGUF", "version 0"),
        (b"GGUX" + bytes(20), "no GGUF magic"),
        (_header(version=1), "version 1"),
        (b"GGUF" + struct.pack(">I", 3) + bytes(16), "big-endian"),
        (_header(tensors=1 << 40), "over the bound"),
        (_header(kvs=1 << 40), "over the bound"),
        (_header(kvs=1000), "cannot fit"),
        (_header(kvs=1) + _kv_string("k", b"ab", declared=1 << 40), "over the bound"),
        (_header(kvs=1) + _kv_string("k", b"ab", declared=1000), "past the end"),
        (_header(kvs=1) + struct.pack("<Q", 1 << 62) + bytes(16), "over the bound"),
        (
            _header(kvs=1) + struct.pack("<Q", 1) + b"k" + struct.pack("<I", 99) + bytes(8),
            "not a GGUF type",
        ),
        (
            _header(kvs=1) + struct.pack("<Q", 1) + b"k" + struct.pack("<IIQ", 9, 8, 1 << 20),
            "cannot fit",
        ),
        (
            _header(kvs=1) + struct.pack("<Q", 1) + b"k" + struct.pack("<IIQ", 9, 4, 1 << 40),
            "over the bound",
        ),
        (
            _header(kvs=1) + struct.pack("<Q", 1) + b"k" + struct.pack("<IIQ", 9, 4, 1 << 20),
            "past the end",
        ),
    ],
)
def test_header_bounds(data: bytes, why: str) -> None:
    assert why in _problem(data + bytes(8))
    assert "past the end" in _problem(b"GGUF" + data[4:6]) or not data.startswith(b"GGUF")


def _with_tensor(dims: tuple[int, ...], type_id: int, offset: int, alignment: int = 0) -> bytes:
    kv = b""
    if alignment:
        kv = struct.pack("<Q", 17) + b"general.alignment" + struct.pack("<II", 4, alignment)
    name = b"t"
    info = struct.pack("<Q", 1) + name + struct.pack("<I", len(dims))
    info += b"".join(struct.pack("<Q", d) for d in dims) + struct.pack("<IQ", type_id, offset)
    head = _header(tensors=1, kvs=1 if alignment else 0) + kv + info
    pad = -len(head) % (alignment or 32)
    return head + bytes(pad) + bytes(64)  # 64 bytes of data


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (_with_tensor((16,), 0, 0), ""),  # 64 bytes of F32: fits exactly
        (_with_tensor((17,), 0, 0), "run past the data section"),
        (_with_tensor((16,), 0, 32), "run past the data section"),
        (_with_tensor((4,), 0, 3), "not aligned"),
        (_with_tensor((1 << 62, 1 << 62), 0, 0), "ask for more"),
        (_with_tensor((1, 1, 1, 1, 1), 0, 0), "dimensions"),
        (_with_tensor((16,), 77, 0), "ggml type 77"),
        (_with_tensor((16,), 2, 0), "no multiple"),
        (_with_tensor((4,), 0, 0, alignment=3), "power of two"),
        (_with_tensor((4,), 0, 0, alignment=1 << 20), "power of two"),
    ],
)
def test_tensor_bounds(data: bytes, why: str) -> None:
    problem = _problem(data)
    assert (why in problem) if why else problem == "", problem


def test_truncated_model_is_al961(tiny: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(tiny.read_bytes()[:-100])
    result = examine(cut)
    kinds = [t.check for t in result.tamper]
    assert kinds == [TamperKind.GGUF_MALFORMED], result.tamper
    assert "past the data section" in result.tamper[0].evidence


def test_huge_counts_in_a_real_file_are_al961(tiny: Path, tmp_path: Path) -> None:
    data = bytearray(tiny.read_bytes())
    data[16:24] = struct.pack("<Q", 1 << 60)  # the key-value count
    bad = tmp_path / "huge.gguf"
    bad.write_bytes(bytes(data))
    assert _kinds(bad) == [TamperKind.GGUF_MALFORMED]


# --- fuzzing ----------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=512))
def test_fuzz_header_never_raises(data: bytes) -> None:
    h = gguf_header.read(io.BytesIO(b"GGUF" + data), 4 + len(data))
    assert isinstance(h.problem, str)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 4000), st.binary(min_size=1, max_size=16))
def test_fuzz_mutated_model_never_raises(tiny: Path, at: int, junk: bytes) -> None:
    data = bytearray(tiny.read_bytes()[:8000])
    data[at : at + len(junk)] = junk
    h = gguf_header.read(io.BytesIO(bytes(data)), len(data))
    assert h.problem or h.tensors is not None


_PIECES = st.sampled_from(
    [
        "{{", "}}", "{%", "%}", "{#", "#}", "x", ".", "__class__", "|attr(", ")", "(", "[", "]",
        "'", '"', "~", "+", "set ", "for ", " in ", "endfor", "if ", "endif", "'_'", "*2", ",",
        "namespace(", "k=", "|join", "'\\x5f'", "format", "lipsum", "=", " ", "\n", "1",
    ]
)  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_PIECES, max_size=40).map("".join))
def test_fuzz_template_judge_never_raises(source: str) -> None:
    j = chat_template.judge(source)
    assert isinstance(j.reaches, list) and isinstance(j.unreadable, str)
