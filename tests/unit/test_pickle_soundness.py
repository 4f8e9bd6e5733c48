"""Pickle globals judged by the full dotted path they resolve to; extension codes and the walk's
bounds reported, never passed over in silence (no Docker: the static read and the rules)."""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
from pathlib import Path

import pytest

from runner.rules.catalog import Severity
from runner.rules.evaluation import HostFacts, evaluate
from runner.rules.pickle_allowed import ALLOWED
from runner.rules.pickle_globals import judge_global
from runner.static import pickles, preflight
from runner.static.pickles import Issue, walk_pickle_file
from runner.static.tamper import TamperKind
from tests.hostile.pickles import Asm

C, H, M = Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM


@pytest.mark.parametrize(
    ("module", "name", "expected"),
    [
        ("torch._utils", "os.system", C),  # a safe-looking module, an attribute path
        ("numpy.lib._datasource", "os.system", C),
        ("torch", "serialization.os.system", C),
        ("collections", "_sys.modules.get", C),  # sys under an alias
        ("copyreg", "_extension_registry.setdefault", C),
        ("copyreg", "_inverted_registry.setdefault", C),
        ("copyreg", "add_extension", C),
        ("builtins", "getattr", C),
        ("__builtin__", "eval", C),
        ("torch.nn.modules.linear", "Linear.__init__.__globals__", C),
        ("numpy", "load", C),
        ("cPickle", "loads", C),  # what protocol 2 maps it to: pickle.loads
        ("\uff4f\uff53", "system", C),  # fullwidth "os": NFKC
        ("os ", "system", C),  # whitespace around a segment
        ("torch._utils", " _rebuild_tensor_v2", H),  # malformed, though it reads as allowed
        ("torch..nn", "Module", H),  # an empty segment
        ("torch._utils", "_rebuild_tensor_v2…", H),  # cut by the walk
        ("torch._utils", "_rebuild_\ufffdtensor", H),  # unprintable replaced
        ("collections", "OrderedDict.fromkeys", M),  # dotted under a safe module: not allowed
        ("torch.storage", "_load_from_bytes", M),  # not on the list, whatever its module
        ("torch", "FancyNewThing", M),
        ("sklearn.linear_model", "LogisticRegression", M),
        ("torch._utils", "_rebuild_tensor_v2", None),
        ("torch", "nn.modules.linear.Linear", None),  # the same full path, on the list
        ("__builtin__", "set", None),
        ("copy_reg", "_reconstructor", None),
        ("numpy._core.multiarray", "_reconstruct", None),
        ("numpy.random._pickle", "__randomstate_ctor", None),
    ],
)
def test_globals_are_judged_by_their_full_path(
    module: str, name: str, expected: Severity | None
) -> None:
    assert judge_global(module, name).severity == expected


def test_every_allowed_path_is_ordinary_and_none_is_dangerous_text() -> None:
    for path in ALLOWED:
        module, _, name = path.rpartition(".")
        assert judge_global(module, name).severity is None, path


def test_benign_torch_and_numpy_pickles_import_only_allowed_paths(tmp_path: Path) -> None:
    import numpy as np
    import torch

    m = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.LayerNorm(3))
    objs: list[object] = [m, {"sd": m.state_dict(), "t": torch.zeros(2, dtype=torch.float16)}]
    for i, obj in enumerate(objs):
        torch.save(obj, tmp_path / f"{i}.pt")
        torch.save(obj, tmp_path / f"legacy{i}.pt", _use_new_zipfile_serialization=False)
    for proto in (2, 4, 5):
        for j, v in enumerate((np.zeros((2, 3), np.float32), np.float64(1.5), np.dtype("i4"))):
            (tmp_path / f"np{proto}_{j}.pkl").write_bytes(pickle.dumps(v, protocol=proto))
    seen = [i for p in sorted(tmp_path.iterdir()) for i in pickles.imports_in_file(p)]
    assert seen
    assert [(i.module, i.name) for i in seen if judge_global(i.module, i.name).severity] == []


# --- the static read's notes, and the rules they meet ------------------------------------------


def _static_ids(path: Path) -> tuple[set[str], preflight.StaticResult]:
    r = preflight.examine(path)
    facts = HostFacts(
        tamper=tuple((t.check, t.evidence) for t in r.tamper),
        static_imports=tuple((i.module, i.name, i.member) for i in r.imports),
    )
    return {f.rule_id for f in evaluate([], facts)}, r


@pytest.mark.parametrize(
    ("op", "arg"),
    [(pickle.EXT1, bytes([7])), (pickle.EXT2, struct.pack("<H", 700)), (pickle.EXT4, b"\0\0\1\0")],
)
def test_extension_codes_are_reported(op: bytes, arg: bytes, tmp_path: Path) -> None:
    a = Asm()
    a.out += op + arg
    a.mark().string("id").tuple().reduce()
    p = tmp_path / "ext.pkl"
    p.write_bytes(a.stop())
    ids, r = _static_ids(p)
    assert "AL614" in ids
    assert [t.check for t in r.tamper] == [TamperKind.PICKLE_EXTENSION_CODE]


def test_an_extension_code_inside_a_torch_zip_is_reported(tmp_path: Path) -> None:
    inner = Asm()
    inner.out += pickle.EXT1 + bytes([9])
    p = tmp_path / "ckpt.pt"
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("archive/data.pkl", inner.stop())
    ids, _ = _static_ids(p)
    assert "AL614" in ids


def _after_ops(n: int) -> bytes:
    a = Asm()
    a.out += (pickle.NONE + pickle.POP) * (n // 2 + 1)
    return a.call("posix", "system", "id").stop()


def test_a_payload_after_the_opcode_bound_is_a_finding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pickles, "MAX_OPS", 1000)
    p = tmp_path / "ops.pkl"
    p.write_bytes(_after_ops(1000))
    ids, r = _static_ids(p)
    assert "AL615" in ids and "AL611" not in ids  # the payload is past the bound: unseen
    assert any("bound of 1000 opcodes" in t.evidence for t in r.tamper)


def test_the_real_opcode_bound_fails_closed_too(tmp_path: Path) -> None:
    p = tmp_path / "ops.pkl"
    p.write_bytes(_after_ops(pickles.MAX_OPS))
    ids, _ = _static_ids(p)
    assert "AL615" in ids


def _after_imports(n: int) -> bytes:
    a = Asm()
    for _ in range(n):
        a.glob("collections", "OrderedDict").pop()
    return a.call("posix", "system", "id").stop()


def test_a_payload_after_the_import_bound_is_a_finding(tmp_path: Path) -> None:
    p = tmp_path / "imports.pkl"
    p.write_bytes(_after_imports(pickles.MAX_IMPORTS))  # the real bound: 250 KB
    ids, r = _static_ids(p)
    assert "AL615" in ids and "AL611" not in ids
    assert any("1 after the bound" in t.evidence for t in r.tamper)


def test_the_report_keeps_the_worst_imports_and_says_how_many_it_left_out(tmp_path: Path) -> None:
    a = Asm()
    for i in range(preflight.MAX_IMPORTS + 20):
        a.glob(f"pkg{i}", "Thing").pop()
    a.call("posix", "system", "id")
    p = tmp_path / "many.pkl"
    p.write_bytes(a.stop())
    ids, r = _static_ids(p)
    assert len(r.imports) == preflight.MAX_IMPORTS
    assert r.imports[0].module == "posix"  # the dangerous one is kept, first
    assert {"AL611", "AL613", "AL615"} <= ids
    assert any("21 most ordinary" in t.evidence for t in r.tamper)


def test_zip_members_not_read_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pickles, "MAX_BYTES", 100)
    p = tmp_path / "big.pt"
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("archive/data.pkl", Asm().call("posix", "system", "id").stop() + b"\0" * 200)
    read = pickles.read_file(p)
    assert [n.issue for n in read.notes] == [Issue.UNREAD]
    assert "archive/data.pkl" in read.notes[0].evidence


def test_a_broken_zip_member_is_reported(tmp_path: Path) -> None:
    p = tmp_path / "broken.pt"
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("archive/data.pkl", Asm().call("posix", "system", "id").stop()[:-3])
    read = pickles.read_file(p)
    assert [(i.module, i.name) for i in read.imports] == [("posix", "system")]
    assert [n.issue for n in read.notes] == [Issue.BROKEN]


# --- the walk goes on where the unpickler goes on -----------------------------------------------


def _walk(data: bytes) -> pickles.FileWalk:
    return walk_pickle_file(io.BytesIO(data), len(data))


def test_an_over_long_line_is_skipped_and_the_walk_goes_on() -> None:
    body = b"V" + b"a" * (pickles.SKIP_ABOVE + 10) + b"\n0" + b"cposix\nsystem\n" + b"."
    w = _walk(b"\x80\x02" + body)
    assert not w.error and w.end == len(body) + 2
    assert [(i.module, i.name) for i in w.imports] == [("posix", "system")]


def test_global_names_are_read_as_the_unpickler_reads_them() -> None:
    # UTF-8 (pickletools would refuse it), backslashes kept (pickletools would unescape them)
    w = _walk(b"c\xc3\xa9t\xc3\xa9\nx\nc\\x6fs\nsystem\ncposix\nsystem\n.")
    assert [(i.module, i.name) for i in w.imports] == [
        ("\u00e9t\u00e9", "x"),
        ("\\x6fs", "system"),
        ("posix", "system"),
    ]


def test_numbers_in_forms_cpython_accepts_do_not_stop_the_walk() -> None:
    w = _walk(b"I0x10\n0L1_000\n0F1e5\n0cposix\nsystem\n.")
    assert not w.error and [(i.module, i.name) for i in w.imports] == [("posix", "system")]


# --- the worker's side: find_class events, judged alike ----------------------------------------


def test_find_class_events_are_judged_by_the_full_path() -> None:
    from runner.rules.evaluation import _find_class

    assert _find_class("torch._utils", "os.system") is not None
    rule, message = _find_class("torch._utils", "os.system") or ("", "")
    assert rule.value == "dangerous-pickle-import" and "torch._utils.os.system" in message
    assert _find_class("collections", "OrderedDict") is None
    unusual = _find_class("collections", "OrderedDict.fromkeys")
    assert unusual is not None and unusual[0].value == "unusual-pickle-import"


def test_the_audit_hook_keeps_names_whole_and_marks_a_cut() -> None:
    from runner.worker import audit

    class Sly(str):
        def __getitem__(self, key: object) -> str:
            raise AssertionError("the model's method ran")

    assert audit._args("pickle.find_class", ("torch._utils", "os.system")) == [
        "torch._utils",
        "os.system",
    ]
    assert audit._name_arg(Sly("posix")) == "posix"
    long = "a." * 600
    cut = audit._name_arg(long)
    assert len(cut) == audit.MAX_NAME_CHARS + 1 and cut.endswith("…")
    assert judge_global("torch", cut).severity is H


def test_the_worker_event_for_an_extension_code_names_what_it_resolved_to(tmp_path: Path) -> None:
    """In a child process (an audit hook cannot be removed): a pickle registers an extension
    code for a harmless global and uses it; the hook's find_class event names the global."""
    import json
    import subprocess
    import sys

    a = Asm().call("copyreg", "add_extension", "collections", "OrderedDict", 77).pop()
    a.out += pickle.EXT1 + bytes([77])
    a.mark().tuple().reduce()
    (tmp_path / "ext.pkl").write_bytes(a.stop())
    log = tmp_path / "audit.jsonl"
    code = (
        "import pickle, sys; from runner.worker import audit; audit.install(sys.argv[1]); "
        "audit.start_recording(); print(type(pickle.load(open(sys.argv[2], 'rb'))).__name__)"
    )
    root = str(Path(__file__).resolve().parents[2])
    out = subprocess.run(
        [sys.executable, "-c", code, str(log), str(tmp_path / "ext.pkl")],
        capture_output=True, text=True, cwd=root, check=True, timeout=60,
    )  # fmt: skip
    assert out.stdout.strip() == "OrderedDict"
    events = [json.loads(line) for line in log.read_text().splitlines()]
    found = [e[2] for e in events if e[1] == "pickle.find_class"]
    assert ["copyreg", "add_extension"] in found and ["collections", "OrderedDict"] in found
