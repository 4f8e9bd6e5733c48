"""Batch evaluation: one fresh sandbox per model, one line per model, right verdicts, resumable
after Ctrl-C, nothing left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from runner.batch import discovery
from tests.fixtures import batch as batch_fixture
from tests.sandbox.test_cli import AIRLOCK, ROOT, airlock, sessions

LIMITS = ["--memory", "1g", "--load-timeout", "20", "--call-timeout", "20"]


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_expand_recognises_models_by_content(tmp_path: Path) -> None:
    expected = batch_fixture.build(tmp_path / "m", full=False)
    found = discovery.expand([tmp_path / "m"])
    assert sorted(p.name for p in found) == sorted(expected)
    listing = tmp_path / "list.txt"
    listing.write_text("m/tiny.onnx\n# a comment\nm/shell.pkl\n")
    assert [p.name for p in discovery.expand([listing])] == ["tiny.onnx", "shell.pkl"]


def test_batch_of_models(tmp_path: Path) -> None:
    models_dir = tmp_path / "models"
    expected = batch_fixture.build(models_dir)
    assert len(expected) >= 12
    probes = batch_fixture.probes(tmp_path / "probes.npz")
    out = tmp_path / "out"
    proc = airlock(
        "eval",
        str(models_dir),
        "--probes",
        str(probes),
        "--jobs",
        "2",
        "--out",
        str(out),
        *LIMITS,
        timeout=900,
    )
    assert proc.returncode == 1, proc.stderr  # findings at or above medium
    lines = _lines(out / "results.jsonl")
    assert len(lines) == len(expected)
    got = {Path(str(r["path"])).name: r for r in lines}
    assert {k: v["verdict"] for k, v in got.items()} == expected
    assert got["tiny.onnx"]["probed"] and got["hook.pkl"]["probed"]
    assert not got["shell.pkl"]["probed"] and "load-only" in str(got["shell.pkl"]["probe_note"])
    assert "AL503" in got["hang.pkl"]["top_findings"]  # type: ignore[operator]
    assert "AL501" in got["membomb.pkl"]["top_findings"]  # type: ignore[operator]
    assert got["corrupt.pt"]["error"]
    for r in lines:
        if r["report"]:
            assert (out / str(r["report"])).is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["models"] == len(expected)
    assert summary["by_verdict"]["malicious"] == 4
    assert "eval: " in proc.stderr and f"[{len(expected)}/{len(expected)}]" in proc.stderr
    assert sessions() == []


def test_interrupted_batch_resumes_to_the_same_lines(tmp_path: Path) -> None:
    models_dir = tmp_path / "models"
    batch_fixture.build(models_dir, full=False)
    whole = tmp_path / "whole"
    proc = airlock("eval", str(models_dir), "--jobs", "2", "--out", str(whole), *LIMITS)
    assert proc.returncode == 1, proc.stderr
    cut = tmp_path / "cut"
    run = subprocess.Popen(
        [*AIRLOCK, "eval", str(models_dir), "--jobs", "1", "--out", str(cut), *LIMITS],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    deadline = time.monotonic() + 120
    results = cut / "results.jsonl"
    while time.monotonic() < deadline:
        if results.exists() and len(_lines(results)) >= 1:
            break
        time.sleep(0.1)
    run.send_signal(signal.SIGINT)
    _, stderr = run.communicate(timeout=120)
    assert run.returncode == 130, stderr
    assert sessions() == []
    partial = len(_lines(results))
    assert 1 <= partial < 4
    again = airlock("eval", str(models_dir), "--jobs", "2", "--out", str(cut), "--resume", *LIMITS)
    assert again.returncode == 1, again.stderr
    assert f"skipping {partial} model(s)" in again.stderr

    def key(r: dict[str, object]) -> tuple[object, ...]:
        return (r["path"], r["sha256"], r["verdict"])

    resumed = [key(r) for r in _lines(results)]
    assert len(resumed) == len(set(resumed))  # no duplicates
    assert set(resumed) == {key(r) for r in _lines(whole / "results.jsonl")}
    assert sessions() == []
    assert not list(Path("/tmp").glob("airlock-*/owner.json"))


def test_existing_results_need_resume(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.jsonl").write_text('{"x": 1}\n')
    proc = airlock("eval", str(tmp_path), "--out", str(out))
    assert proc.returncode == 2 and "--resume" in proc.stderr
