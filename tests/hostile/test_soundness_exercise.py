"""Inference-time behaviour that a load-only scan never triggers (issue class 8): scan exercises
the model with inputs built from its declared signature, so code that waits for a later call,
for a delay or for any input at all fires inside the sandbox, where it is seen.

Each fixture is checked from the host (no marker on the host, the host's files unchanged, the
container gone) and for detection: the finding is there, from the infer phase.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

import runner
from tests.fixtures import hostile
from tests.hostile import corpus
from tests.hostile.test_corpus import _containers, _snapshot

ROOT = Path(__file__).resolve().parents[2]

# Attack: a module that behaves until a few seconds after it was loaded, then runs a shell.
LATE_CODE = r"""
import os, time, torch
class Late(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.t0 = time.monotonic()
    def forward(self, x):
        if time.monotonic() - self.t0 > 2.0:
            os.system("echo late > MARKER")
        return x
model = Late()
"""


def late_trigger(d: Path, marker: str) -> Path:
    return hostile.write(
        d / "late.pkl", hostile.code_pickle(LATE_CODE.replace("MARKER", marker), "model")
    )


CLIMB_SOURCE = """
import torch

class Climb(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.from_file("/proc/net/../environ", False, 64, dtype=torch.uint8)
        return x + s.sum().to(x.dtype) * 0
"""


def climb_through_a_link(d: Path, marker: str) -> Path:
    # Attack (found in review): /proc/net is a kernel link to self/net, so the kernel opens
    # /proc/self/environ while the spelling resolves to /proc/environ; no event was raised.
    import importlib.util
    import sys

    import torch

    src = d / "climb_src.py"
    src.write_text(CLIMB_SOURCE)
    spec = importlib.util.spec_from_file_location("climb_src", src)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["climb_src"] = mod
    spec.loader.exec_module(mod)
    path = d / "climb.pt"
    torch.jit.script(mod.Climb()).save(str(path))
    src.unlink()
    return path


CASES: list[tuple[str, Callable[[Path, str], Path], str]] = [
    # TorchScript: three ordinary calls, then the fourth reads /proc/self/environ
    ("fourth call", corpus.torchscript_fourth_call, "AL303"),
    # a forward hook registered while unpickling: it runs a shell at the first inference
    ("forward hook", corpus.forward_hook, "AL202"),
    # a shell only once two seconds have passed since loading
    ("after a delay", late_trigger, "AL202"),
    # /proc/self/environ spelled through a kernel link: it must be judged by where it can end
    ("climb through a link", climb_through_a_link, "AL303"),
]


@pytest.mark.parametrize(("name", "build", "rule"), CASES, ids=[c[0] for c in CASES])
def test_scan_exercises_the_model(
    name: str, build: Callable[[Path, str], Path], rule: str, tmp_path: Path
) -> None:
    marker = f"/tmp/airlock-exercise-{uuid.uuid4().hex}"
    models = tmp_path / "m"
    models.mkdir()
    path = build(models, marker)
    before = _snapshot(tmp_path)
    sb = runner.Sandbox(path)
    with sb:
        answered = sb.exercise()
    report = sb.report()
    assert not Path(marker).exists(), "the payload's marker appeared on the host"
    assert _snapshot(tmp_path) == before
    assert _containers(sb.session) == []
    assert answered >= 1 or name == "climb through a link", report.notes  # /proc: no mmap
    assert report.verdict is not runner.Verdict.CLEAN
    hits = [f for f in report.findings if f.rule_id == rule]
    assert hits and any(f.phase == "infer" for f in hits), [f.rule_id for f in report.findings]
    assert any(n.startswith("exercised after loading") for n in report.notes)


def test_the_cli_scan_exercises_and_load_only_does_not(tmp_path: Path) -> None:
    """Through the real CLI: the fourth-call model is judged by what it did when called; with
    --exercise-seconds 0 the scan is load-only and (as before) sees nothing."""
    path = corpus.torchscript_fourth_call(tmp_path, "/tmp/unused")
    cmd = [sys.executable, "-m", "runner.cli", "scan", str(path), "--json"]
    exercised = subprocess.run(
        cmd, capture_output=True, text=True, cwd=ROOT, timeout=300, check=False
    )
    assert exercised.returncode == 1, exercised.stderr
    rules = {f["rule_id"] for f in json.loads(exercised.stdout)["findings"]}
    assert "AL303" in rules
    load_only = subprocess.run(
        [*cmd, "--exercise-seconds", "0"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    assert "AL303" not in {f["rule_id"] for f in json.loads(load_only.stdout)["findings"]}
