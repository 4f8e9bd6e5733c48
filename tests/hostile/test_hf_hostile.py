"""Hostile Hugging Face repositories in a real sandbox (the attacker review of issue #15):
each is contained (no marker or change on the host, no container left) and detected (the
verdict is not clean, with the findings named); generated text that would steer a terminal
is printed neutralised."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

import runner
from tests.hostile import hf_hostile
from tests.hostile.test_corpus import _containers, _snapshot

pytest.importorskip("transformers")


def _scan(
    build: Callable[[Path], Path], tmp_path: Path, exercise: bool = False, trust: bool = True
) -> tuple[runner.Report, set[str]]:
    (tmp_path / "canary.txt").write_text("the host's file, unchanged\n")
    path = build(tmp_path / f"repo-{uuid.uuid4().hex[:8]}")
    before = _snapshot(tmp_path)
    sb = runner.Sandbox(path, trust_remote_code=trust)
    try:
        with sb:
            if exercise:
                sb.exercise()
    except runner.AirlockError:
        pass
    report = sb.report()
    assert _snapshot(tmp_path) == before, "host files changed"
    assert _containers(sb.session) == []
    return report, {f.rule_id for f in report.findings}


def test_a_module_written_into_the_module_cache_is_dynamic_code(tmp_path: Path) -> None:
    report, ids = _scan(hf_hostile.laundered_module, tmp_path)
    assert report.verdict is runner.Verdict.MALICIOUS, sorted(ids)
    assert {"AL202", "AL101", "AL930"} <= ids, sorted(ids)
    dynamic = [f for f in report.findings if f.rule_id == "AL603"]
    evidence = [e for f in dynamic for e in f.evidence]
    assert any("airlock_laundered" in e for e in evidence), evidence


def test_custom_generate_code_runs_on_load_and_is_caught(tmp_path: Path) -> None:
    """No auto_map anywhere: transformers still runs custom_generate/generate.py when remote
    code is trusted. The tracer sees it; the host's static read lists the file (AL930 does not
    name it yet: see tests/unit/test_hf_hostile_static.py)."""
    report, ids = _scan(hf_hostile.custom_generate, tmp_path)
    assert report.verdict is runner.Verdict.MALICIOUS, sorted(ids)
    assert {"AL202", "AL101"} <= ids, sorted(ids)
    hf = report.model.huggingface
    assert hf is not None
    assert any(c.path.endswith("custom_generate/generate.py") for c in hf.code_files)


def test_code_that_waits_for_the_second_call_is_caught_by_the_exercise(tmp_path: Path) -> None:
    report, ids = _scan(hf_hostile.on_second_call, tmp_path, exercise=True)
    assert report.verdict is runner.Verdict.MALICIOUS, sorted(ids)
    shells = [f for f in report.findings if f.rule_id == "AL202"]
    assert shells and all(f.phase.value == "infer" for f in shells), shells


def test_a_pickle_payload_in_pytorch_model_bin_is_named_and_never_runs(tmp_path: Path) -> None:
    report, ids = _scan(hf_hostile.pickled_weights, tmp_path, trust=False)
    assert report.verdict is runner.Verdict.MALICIOUS, sorted(ids)
    static = {f.rule_id for f in report.findings if f.source.value == "static"}
    assert static, sorted(ids)
    assert not {"AL201", "AL202", "AL605"} & ids, "the payload ran"


STEERING = ("\x1b", "\x07", "\u202e", "\r", "\x08", "\u2028")


def test_generated_text_cannot_steer_the_terminal(tmp_path: Path) -> None:
    repo = hf_hostile.steering_lm(tmp_path / "steer")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "runner.cli",
            "run",
            str(repo),
            "--text",
            "hello world",
            "--generate",
            "3",
            "--report",
            str(tmp_path / "r.json"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    shown = done.stdout + done.stderr
    assert "generated:" in shown, shown
    assert "owned" in shown  # the model's text is shown...
    assert not [c for c in STEERING if c in shown], repr(shown)  # ...with nothing that steers


@pytest.mark.parametrize("build", ["encoder", "causal_lm", "remote_code"])
def test_benign_repositories_stay_clean(build: str, tmp_path: Path) -> None:
    """The audit hook's narrowed exemptions still leave out what transformers itself does
    (generated dataclasses, evaluated annotations, the repository's own modules) while a
    benign repository loads, answers texts and generates."""
    from tests import hf_repos

    report, ids = _scan(getattr(hf_repos, build), tmp_path, exercise=True)
    assert report.verdict is runner.Verdict.CLEAN, [
        (f.rule_id, f.evidence) for f in report.findings
    ]
    assert "AL603" not in ids
