"""Fuzz: the host's readers of a repository's hostile files (runner.hf.repo's bounded JSON and
the code files' import reader) never raise and never hang, whatever the bytes."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.hf import repo

FUZZ = settings(
    max_examples=300,
    deadline=2000,  # milliseconds per example: a hang fails
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    database=None,
)

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=40,
)
JSON_TOKENS = st.sampled_from(
    [
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        '"a"',
        '"\\ud800"',
        '"\\u0000"',
        "1e999",
        "-0",
        "NaN",
        "Infinity",
        "9" * 50,
        "true",
        "null",
        " ",
        '"',
        "\\",
        "\xff",
        "\ufeff",
        "auto_map",
    ]
)
PY_TOKENS = st.sampled_from(
    [
        "import ",
        "from ",
        " . ",
        "..",
        "os",
        " as ",
        ",",
        "(",
        ")",
        "\n",
        "    ",
        "def f():",
        "__import__(",
        "importlib.import_module(",
        "'x'",
        "x",
        "-",
        ".b",
        "[0]",
        "\\",
        "#",
        "\0",
        "# coding: latin-1\n",
        "\xff",
        "lambda:",
        "if 1:\n",
        "async ",
        "yield",
        "*",
        "\t",
    ]
)


def _check_json(result: object) -> None:
    assert isinstance(result, dict | str)
    if isinstance(result, str):
        assert result


@FUZZ
@given(st.binary(max_size=2000))
def test_parse_json_of_any_bytes(data: bytes) -> None:
    _check_json(repo.parse_json(data))


@FUZZ
@given(JSON_VALUES, st.integers(0, 50), st.binary(max_size=4))
def test_parse_json_of_json_cut_and_spliced(value: object, cut: int, splice: bytes) -> None:
    text = json.dumps({"v": value}, allow_nan=True).encode()
    _check_json(repo.parse_json(text))
    _check_json(repo.parse_json(text[: max(0, len(text) - cut)] + splice))


@FUZZ
@given(st.lists(JSON_TOKENS, max_size=200), st.integers(0, 3000))
def test_parse_json_of_token_soup(tokens: list[str], nest: int) -> None:
    body = "".join(tokens)
    _check_json(repo.parse_json(body.encode("utf-8", "surrogatepass")))
    _check_json(repo.parse_json(("[" * nest + body + "]" * nest).encode("utf-8", "surrogatepass")))
    _check_json(repo.parse_json(('{"a":' * nest + "1" + "}" * nest).encode()))


@FUZZ
@given(st.binary(max_size=300))
def test_read_json_of_a_file(tmp_path: Path, data: bytes) -> None:
    f = tmp_path / "config.json"
    f.write_bytes(data)
    _check_json(repo.read_json(f, max_bytes=200))


def _check_imports(result: object) -> None:
    assert isinstance(result, list | str)
    if isinstance(result, list):
        assert all(isinstance(m, str) for m in result) and len(result) <= repo.MAX_IMPORTS


@FUZZ
@given(st.binary(max_size=2000))
def test_imports_of_any_bytes(data: bytes) -> None:
    _check_imports(repo.imports_of(data))


@FUZZ
@given(st.lists(PY_TOKENS, max_size=300), st.integers(0, 100_000), st.sampled_from("-([.+~"))
def test_imports_of_python_soup(tokens: list[str], depth: int, op: str) -> None:
    body = "".join(tokens).encode("utf-8", "surrogatepass")
    _check_imports(repo.imports_of(body))
    nested = {
        "-": "-" * depth + "1",
        "(": "(" * depth + ")" * depth,
        "[": "a" + "[0]" * depth,
        ".": "a" + ".b" * depth,
        "+": "1" + "+1" * depth,
        "~": "~" * depth + "x",
    }[op]
    _check_imports(repo.imports_of(b"import os\nx = " + nested.encode() + b"\n"))
