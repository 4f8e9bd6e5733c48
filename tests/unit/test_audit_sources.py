"""The audit hook's exemptions cannot be borrowed by the model's code (found in review of the
Hugging Face path): a compile that names a library file, an annotation string typing
evaluates, methods dataclasses writes from hostile field names, and a module the model writes
into transformers' module cache and imports are all recorded as dynamic code; what the
libraries really do (a dataclass, type hints, a repository's own module) is not."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from runner.worker import audit_sources

ROOT = Path(__file__).resolve().parents[2]

PROBE = r"""
import dataclasses, importlib, os, sys, typing
from pathlib import Path
from runner.worker import audit, audit_sources
log, repo, cache = sys.argv[1], Path(sys.argv[2]), Path(os.environ["HF_MODULES_CACHE"])
audit_sources.trust_repository(repo)
audit.install(log)
sys.path.insert(0, str(cache))
audit.start_recording()
def mark(name):
    audit._locked(audit._write, "probe.mark", [name])
mark("benign")
@dataclasses.dataclass(frozen=True)
class P:
    a: int
    b: "typing.Optional[typing.List[int]]" = None
    c: "int | None" = None
typing.get_type_hints(P)
P(1) == P(1); repr(P(1)); hash(P(1))
(cache / "good_mod.py").write_bytes((repo / "good_mod.py").read_bytes())
importlib.import_module("good_mod")
mark("library-name")
exec(compile("x = 1", os.__file__, "exec"))
mark("typing")
class A: pass
A.__annotations__ = {"x": "(lambda: 1)()"}
typing.get_type_hints(A)
mark("written-module")
(cache / "evil_mod.py").write_text("y = 2\n")
importlib.import_module("evil_mod")
mark("end")
"""


def _run_probe(tmp_path: Path) -> dict[str, list[str]]:
    repo, cache = tmp_path / "repo", tmp_path / "cache"
    repo.mkdir()
    cache.mkdir()
    (repo / "good_mod.py").write_text("z = 3\n")
    (tmp_path / "probe.py").write_text(PROBE)
    env = {**os.environ, "HF_MODULES_CACHE": str(cache), "PYTHONPATH": str(ROOT)}
    subprocess.run(
        [sys.executable, str(tmp_path / "probe.py"), str(tmp_path / "log"), str(repo)],
        env=env,
        check=True,
        timeout=60,
    )
    sections: dict[str, list[str]] = {}
    current = ""
    for line in (tmp_path / "log").read_text().splitlines():
        _, event, args, _, _ = json.loads(line)
        if event == "probe.mark":
            current = args[0]
            sections[current] = []
        elif event in ("exec", "compile"):
            sections.setdefault(current, []).append(
                f"{event} {args[1] if event == 'compile' else args[0]}"
            )
    return sections


def test_the_exemptions_cannot_be_borrowed(tmp_path: Path) -> None:
    seen = _run_probe(tmp_path)
    assert seen["benign"] == [], (
        "a dataclass, type hints and the repository's module are the libraries'"
    )
    assert any(e.startswith("compile ") and e.endswith("os.py") for e in seen["library-name"])
    assert seen["typing"] == ["compile <string>"]
    assert any(
        e.startswith("compile ") and e.endswith("evil_mod.py") for e in seen["written-module"]
    )
    assert any(e.startswith("exec ") and "evil_mod.py" in e for e in seen["written-module"])
    assert seen["end"] == []


def test_annotations_are_plain_type_expressions() -> None:
    for ok in (
        "Optional[torch.Tensor]",
        "int | None",
        "Literal[-1, 'a']",
        "list['Foo']",
        "tuple[int, ...]",
        "(*Ts,)[0]",
        "Callable[..., Any]",
    ):
        assert audit_sources.plain_annotation(ok), ok
    for bad in (
        "__import__('os').system('true')",
        "(lambda: 1)()",
        "[x for x in ()]",
        "().__class__.__base__",
        "Foo[open]",
        "a + b",
        "x.__globals__",
        b"\xff",
        "f()",
        "(x := 1)",
    ):
        assert not audit_sources.plain_annotation(bad), bad


def test_generated_methods_are_judged() -> None:
    ok = (
        "def __create_fn__(_type_a, MISSING, __dataclass_builtins_object__, _return_type):\n"
        " def __init__(self, a:_type_a):\n"
        "  __dataclass_builtins_object__.__setattr__(self,'a',a)\n"
        " return __init__"
    )
    assert audit_sources.plain_generated(ok)
    for bad in (
        "def f(self, a=__import__('os').system('true')):\n pass",
        "def f(self):\n return ().__class__.__base__.__subclasses__()",
        "def f(self, a=(lambda: 1)()):\n pass",
        "import os",
        "def f(self):\n return self.__init__.__globals__",
        "def f(self):\n  eval('1')",
        "not python (",
    ):
        assert not audit_sources.plain_generated(bad), bad


def test_only_the_repository_files_bytes_are_trusted(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "m.py").write_bytes(b"# the repository's own\nA = 1\n")
    outside = tmp_path.parent / f"{tmp_path.name}-outside.py"
    outside.write_bytes(b"# not the repository's\nB = 2\n")
    (tmp_path / "link.py").symlink_to(outside)
    assert audit_sources.trust_repository(tmp_path) == 1
    assert audit_sources.repository_source(b"# the repository's own\nA = 1\n")
    assert audit_sources.repository_source(b"")  # the __init__.py transformers writes
    assert not audit_sources.repository_source(b"# not the repository's\nB = 2\n")
    assert not audit_sources.repository_source(None)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300)))
def test_the_judges_never_raise(source: str | bytes) -> None:
    assert isinstance(audit_sources.plain_annotation(source), bool)
    assert isinstance(audit_sources.plain_generated(source), bool)
    assert isinstance(audit_sources.repository_source(source), bool)
