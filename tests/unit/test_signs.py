"""Static signs (runner.static.signs, allocations, package) and the rules over them: parser
abuse, pickle allocations, code in metadata, torch.package code, and the measured load cost."""

from __future__ import annotations

import io
import json
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

from runner.rules import catalog, cost, evaluation
from runner.static import allocations, package, preflight, signs
from runner.static.tamper import TamperKind
from runner.telemetry.events import Phase
from runner.telemetry.resources import Sample
from runner.worker.shared.formats import Format, detect
from tests.fixtures import models
from tests.hostile import soundness_parsers as fx
from tests.hostile.pickles import Asm

ROOT = Path(__file__).resolve().parents[2]


def _st(header: dict[str, object], data: bytes = b"") -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def _with_meta(meta: dict[str, str]) -> bytes:
    one = {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}
    return _st({"__metadata__": meta, "w": one}, b"\0" * 4)


def _kinds(found: list[signs.Tamper]) -> list[TamperKind]:
    return [t.check for t in found]


# --- safetensors ------------------------------------------------------------------------------


def test_a_large_header_and_many_tensors_are_parser_abuse(tmp_path: Path) -> None:
    path = fx.many_tensors(tmp_path, "/tmp/x")
    found = signs.safetensors(path)
    text = " ".join(t.evidence for t in found)
    assert _kinds(found) == [TamperKind.PARSER_ABUSE, TamperKind.PARSER_ABUSE]
    assert "200000 tensors" in text and "safetensors header of" in text


def test_many_tensors_in_a_small_header_are_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(signs, "TENSOR_COUNT", 50)
    header = {f"t{i}": {"dtype": "F32", "shape": [1], "data_offsets": [4 * i, 4 * i + 4]}
              for i in range(60)}  # fmt: skip
    path = tmp_path / "m.safetensors"
    path.write_bytes(_st(header, b"\0" * 240))
    (found,) = signs.safetensors(path)
    assert found.check is TamperKind.PARSER_ABUSE and "60 tensors" in found.evidence


def test_shapes_that_declare_terabytes_are_parser_abuse(tmp_path: Path) -> None:
    (found,) = signs.safetensors(fx.terabyte_shapes(tmp_path, "/tmp/x"))
    assert found.check is TamperKind.PARSER_ABUSE and "TiB" in found.evidence


def test_metadata_code_is_found_and_neutralised(tmp_path: Path) -> None:
    meta = {"note": "\x1b[31m__import__('os').system('id')\u202e", "format": "pt"}
    path = tmp_path / "m.safetensors"
    path.write_bytes(_with_meta(meta))
    (found,) = signs.safetensors(path)
    assert found.check is TamperKind.METADATA_CODE and "__import__" in found.evidence
    assert "\x1b" not in found.evidence and "\u202e" not in found.evidence


def test_metadata_of_a_header_too_large_to_parse_is_still_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(signs, "PARSE_BYTES", 10)
    monkeypatch.setattr(signs, "HEADER_COST_BYTES", 10)
    path = tmp_path / "m.safetensors"
    path.write_bytes(_with_meta({"x": "eval(input())"}))
    assert _kinds(signs.safetensors(path)) == [TamperKind.PARSER_ABUSE, TamperKind.METADATA_CODE]


def test_benign_safetensors_have_no_signs(tmp_path: Path) -> None:
    built = models.safetensors_model(tmp_path, models.sample_input())
    assert signs.examine(built.path, Format.SAFETENSORS).tamper == []


@pytest.mark.parametrize(
    "text",
    ["__import__('os')", "os.system('x')", "eval (x)", "exec(code)", "import subprocess",
     "from os import popen", "pickle.loads(b)", "/bin/sh -c id", "import os"],
)  # fmt: skip
def test_code_like_text(text: str) -> None:
    assert signs.code_strings([("where", f"some text {text} more")])


@pytest.mark.parametrize(
    "text", ["pt", "a model card: evaluation on ImageNet", "license: apache-2.0", "osmosis"]
)
def test_ordinary_metadata_is_not_code(text: str) -> None:
    assert signs.code_strings([("where", text)]) == []


# --- ONNX -------------------------------------------------------------------------------------


def test_onnx_metadata_and_doc_strings_are_read(tmp_path: Path) -> None:
    found = signs.onnx(fx.onnx_metadata(tmp_path, "/tmp/x"))
    text = " ".join(t.evidence for t in found)
    assert _kinds(found) == [TamperKind.METADATA_CODE] * 2
    assert "metadata_props 'postprocess'" in text and "node 1 doc_string" in text


@pytest.mark.parametrize(
    "path", ["examples/tiny.onnx", "examples/digits/benign.onnx", "examples/digits/base.onnx"]
)
def test_benign_onnx_has_no_signs(path: str) -> None:
    assert signs.examine(ROOT / path, Format.ONNX).tamper == []


# --- pickles ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "least"),
    [
        (Asm().call("numpy", "ones", (1 << 27,)).stop(), 1 << 30),
        (Asm().call("torch", "zeros", 1 << 15, 1 << 15).stop(), 1 << 32),
        (Asm().call("builtins", "bytearray", 1 << 30).stop(), 1 << 30),
        (Asm().call("_operator", "mul", b"x" * 1024, 1 << 20).stop(), 1 << 30),
        (Asm().call("_operator", "mul", 1 << 20, "y" * 1024).stop(), 1 << 30),
    ],
)
def test_allocator_calls_are_estimated(data: bytes, least: int) -> None:
    a = allocations.walk(io.BytesIO(data), len(data))
    assert a.total >= least and a.calls == 1 and not a.error


def test_sizes_reached_through_the_memo_are_followed() -> None:
    a = Asm().stack_glob("builtins", "list")
    fn = a.memoize()
    a.mark().call("builtins", "range", 10**8).tuple().reduce().pop()
    a.get(fn).mark().call("builtins", "range", 10**8).tuple().reduce()
    data = a.stop()
    walked = allocations.walk(io.BytesIO(data), len(data))
    assert walked.total >= 2 * 8 * 10**8 and walked.calls == 2


def test_a_pickle_allocation_is_a_sign(tmp_path: Path) -> None:
    (found,) = signs.pickle_file(fx.numpy_ones(tmp_path, "/tmp/x"))
    assert found.check is TamperKind.PICKLE_ALLOCATION and "numpy.ones" in found.evidence


@pytest.mark.parametrize(
    "obj",
    [np.zeros((300, 300)), {str(i): list(range(50)) for i in range(2000)}, b"x" * 100_000],
    ids=["array", "dict", "bytes"],
)
def test_benign_pickles_ask_for_nothing_much(obj: object, tmp_path: Path) -> None:
    path = tmp_path / "b.pkl"
    path.write_bytes(pickle.dumps(obj, protocol=4))
    assert signs.pickle_file(path) == []


@pytest.mark.parametrize(
    "build", [models.full_module_pickle, models.torchscript_model], ids=["module", "script"]
)
def test_benign_torch_files_have_no_signs(build: object, tmp_path: Path) -> None:
    path = build(tmp_path, models.sample_input()).path  # type: ignore[operator]
    fmt = detect(path).format
    assert signs.examine(path, fmt).tamper == []
    assert signs.examine(models.state_dict_checkpoint(tmp_path), Format.TORCH).tamper == []


# --- torch.package ----------------------------------------------------------------------------


def test_a_torch_package_is_recognised_and_its_own_modules_are_not_imports(
    tmp_path: Path,
) -> None:
    path = fx.benign_package(tmp_path, "/tmp/x")
    assert detect(path).format is Format.TORCH_PACKAGE
    result = preflight.examine(path)
    assert result.format == "torch-package" and result.tamper == []
    modules = {i.module for i in result.imports}
    assert "torch.nn.modules.linear" in modules and "airlock_pkgnet" not in modules
    pkg = package.read(path)
    assert pkg.modules == {"airlock_pkgnet"} and pkg.pickles == ["net/model/model.pkl"]


@pytest.mark.parametrize(
    ("build", "kind"),
    [
        (fx.terabyte_shapes, TamperKind.PARSER_ABUSE),
        (fx.numpy_ones, TamperKind.PICKLE_ALLOCATION),
        (fx.onnx_metadata, TamperKind.METADATA_CODE),
        (fx.shell_package, TamperKind.PACKAGE_DANGEROUS_CODE),
    ],
    ids=lambda v: getattr(v, "__name__", ""),
)
def test_the_static_read_carries_the_signs(build: object, kind: TamperKind, tmp_path: Path) -> None:
    path = build(tmp_path, "/tmp/x")  # type: ignore[operator]
    assert kind in [t.check for t in preflight.examine(path).tamper]


def test_torch_save_and_torchscript_are_no_packages(tmp_path: Path) -> None:
    assert detect(models.state_dict_checkpoint(tmp_path)).format is Format.TORCH
    x = models.sample_input()
    assert detect(models.torchscript_model(tmp_path, x).path).format is Format.TORCHSCRIPT


def test_packaged_code_that_runs_a_shell_is_dangerous(tmp_path: Path) -> None:
    found = signs.examine(fx.shell_package(tmp_path, "/tmp/x"), Format.TORCH_PACKAGE).tamper
    assert [(t.check, t.evidence) for t in found] == [
        (TamperKind.PACKAGE_DANGEROUS_CODE, "shell/airlock_evil.py:3 uses os.system")
    ]


def test_packaged_code_with_computed_names_is_dynamic(tmp_path: Path) -> None:
    found = signs.examine(fx.hidden_shell_package(tmp_path, "/tmp/x"), Format.TORCH_PACKAGE)
    assert _kinds(found.tamper) == [TamperKind.PACKAGE_DYNAMIC_CODE]
    assert found.imports == [] or all(i.module == "torch" for i in found.imports)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import subprocess", ["imports subprocess"]),
        ("from os import system as s", ["imports os.system"]),
        ("import os\nos.popen('x')", ["uses os.popen"]),
        ("x = __import__('os').system", ["uses os.system"]),
        ("import importlib\nimportlib.import_module('socket')", ["imports socket"]),
        ("import importlib\nimportlib.import_module(n)", ["imports <computed>"]),
        ("import os\ngetattr(os, 'sys' + 'tem')", ["looks up os.<computed>"]),
        ("import os\ngetattr(os, 'execv')", ["looks up os.execv"]),
        ("eval('1')", ["calls builtins.eval"]),
        ("import sys\nsys.modules['os']", ["uses sys.modules"]),
        ("def f():\n    return os.system('x')\nimport os", ["uses os.system"]),
        ("import os, sys, math, torch\nos.path.join('a')\nsys.argv", []),
        ("from . import helpers\nfrom .x import system", []),
    ],
)
def test_code_uses(source: str, expected: list[str]) -> None:
    uses, error, _ = package.code_uses(source.encode(), "f.py")
    assert error == ""
    assert [f"{u.how} {u.name}" for u in uses] == expected


@pytest.mark.parametrize(
    "source", [b"def (", b"\x00", b"a" + b"()" * 100_000, b"# coding: nope\nx = 1\n"]
)
def test_unparsable_code_is_said(source: bytes) -> None:
    uses, error, _ = package.code_uses(source, "f.py")
    assert uses == [] and "not Python" in error


# --- the rules --------------------------------------------------------------------------------

SIGNS = {
    TamperKind.PARSER_ABUSE: ("AL620", "medium"),
    TamperKind.PICKLE_ALLOCATION: ("AL621", "medium"),
    TamperKind.METADATA_CODE: ("AL622", "low"),
    TamperKind.PACKAGE_DANGEROUS_CODE: ("AL623", "critical"),
    TamperKind.PACKAGE_DYNAMIC_CODE: ("AL624", "high"),
    TamperKind.PACKAGE_UNREADABLE: ("AL625", "medium"),
}


@pytest.mark.parametrize("kind", list(SIGNS), ids=lambda k: k.value)
def test_each_sign_is_its_rule(kind: TamperKind) -> None:
    (f,) = evaluation.evaluate([], evaluation.HostFacts(tamper=((kind, "the evidence"),)))
    assert (f.rule_id, f.severity.value) == SIGNS[kind]
    assert f.evidence == ["static: the evidence"] and f.source.value == "static"


def _samples(*rows: tuple[float, Phase, float, int]) -> list[Sample]:
    return [
        Sample(time=t, phase=p, cpu_seconds=c, memory_bytes=m, pids=1, io_read_bytes=0,
               io_write_bytes=0)
        for t, p, c, m in rows
    ]  # fmt: skip


MIB = 1 << 20


def test_the_load_window_runs_from_the_baseline_to_the_sample_after_the_load() -> None:
    s = _samples(
        (0.0, Phase.STARTUP, 1.0, 200 * MIB),
        (0.1, Phase.LOAD, 2.0, 900 * MIB),
        (0.2, Phase.LOAD, 3.0, 1200 * MIB),
        (0.3, Phase.TEARDOWN, 12.0, 1100 * MIB),
        (0.4, Phase.TEARDOWN, 13.0, 3000 * MIB),
    )
    c = cost.load_cost(s, 1000)
    assert c is not None
    assert (c.baseline_bytes, c.peak_bytes, c.cpu_seconds, c.samples) == (
        200 * MIB, 1200 * MIB, 11.0, 3
    )  # fmt: skip
    rules = [r for r, _m, _e in cost.cost_findings(c)]
    assert rules == [catalog.RuleName.LOAD_MEMORY_COST, catalog.RuleName.LOAD_CPU_COST]


def test_a_load_between_two_samples_is_measured() -> None:
    s = _samples((0.0, Phase.STARTUP, 1.0, 100 * MIB), (0.1, Phase.INFER, 1.5, 2000 * MIB))
    c = cost.load_cost(s, 10)
    assert c is not None and c.growth_bytes == 1900 * MIB and c.samples == 1
    assert cost.load_cost(s[:1], 10) is None and cost.load_cost([], 10) is None


@pytest.mark.parametrize(
    ("size", "growth", "cpu", "expected"),
    [
        (1_000, 400 * MIB, 4.0, []),  # under the floors
        (1_000, 600 * MIB, 9.0, ["AL508", "AL509"]),
        (200 * MIB, 1500 * MIB, 5.0, []),  # 7.5 x a large model: warranted
        (200 * MIB, 1700 * MIB, 5.0, ["AL508"]),
        (4 << 30, 0, 100.0, []),  # 25 s per GiB
    ],
)
def test_cost_thresholds_scale_with_size(
    size: int, growth: int, cpu: float, expected: list[str]
) -> None:
    c = cost.LoadCost(size, 100 * MIB, 100 * MIB + growth, cpu, 2.0, 5)
    found = evaluation.evaluate([], evaluation.HostFacts(load_cost=c))
    assert [f.rule_id for f in found] == expected
    assert all(f.severity.value == "medium" and f.evidence for f in found)
