"""Output injection, end to end: names, file names and evidence the model controls, made of
escape sequences, bidi overrides and fake verdict lines, through the real command line. The
bytes on stdout and stderr hold no ESC, C1 control or bidi override, the one verdict line is the
true one, the names still work for inference, and each is detected (AL913 for names made to
deceive), contained and fully reported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

import runner
from runner.errors import deceptive_chars
from tests.hostile.soundness_host import INJECTION, leftovers, snapshot
from tests.hostile.soundness_output import (
    INPUT_NAME,
    OUTPUT_NAME,
    hostile_evidence,
    hostile_file_names,
    onnx_hostile_names,
    relu,
)

ROOT = Path(__file__).resolve().parents[2]
X = np.array([[-1.0, 2.0, -3.0, 4.0], [5.0, -6.0, 7.0, -8.0]], np.float32)


def airlock(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "runner.cli", *args],
        capture_output=True,
        cwd=ROOT,
        timeout=300,
        check=False,
    )


def inert(proc: subprocess.CompletedProcess[bytes], verdict: str) -> list[str]:
    """No injection on either stream; the verdict line is the first and only one, and true."""
    for stream in (proc.stdout, proc.stderr):
        found = INJECTION.search(stream)
        assert found is None, (found, stream[max(0, found.start() - 80) : found.end() + 80])
    lines = proc.stdout.decode().splitlines()
    assert lines and lines[0].split() == ["verdict", verdict.upper()]
    assert [ln for ln in lines if ln.lstrip(" │┃").startswith("verdict")] == [lines[0]]
    return lines


def _session(report: Path) -> str:
    return str(json.loads(report.read_text())["sandbox"]["session"])


def test_hostile_tensor_names_still_infer_and_are_shown_neutralised(tmp_path: Path) -> None:
    path = onnx_hostile_names(tmp_path)
    before = snapshot(tmp_path)
    sb = runner.Sandbox(path)
    with sb:
        sig = sb.describe()
        shown_in, shown_out = sig.inputs[0].name, sig.outputs[0].name
        assert not deceptive_chars(shown_in) and not deceptive_chars(shown_out)
        by_real = sb.infer({INPUT_NAME: X})  # the real name works
        by_shown = sb.infer({shown_in: X})  # and the one the host shows
        single = sb.infer(X)
    for outputs in (by_real, by_shown, single):
        assert list(outputs) == [shown_out]
        np.testing.assert_array_equal(outputs[shown_out], relu(X))
    report = sb.report()
    found = next(f for f in report.findings if f.rule_id == "AL913")
    assert found.source.value == "host" and found.severity.rank >= runner.Severity.MEDIUM.rank
    assert any("ESC" in e and "U+202E" in e for e in found.evidence)
    assert report.verdict is runner.Verdict.SUSPICIOUS
    assert [o.name for o in report.outputs] == [shown_out]  # the report holds the shown name
    assert shown_out != OUTPUT_NAME
    assert snapshot(tmp_path) == before and leftovers(sb.session) == []


def test_run_with_hostile_names_prints_inert_lines_and_writes_safe_files(tmp_path: Path) -> None:
    path = onnx_hostile_names(tmp_path)
    np.save(tmp_path / "x.npy", X)
    out, report = tmp_path / "out", tmp_path / "report.json"
    proc = airlock(
        "run", str(path), "--input", str(tmp_path / "x.npy"), "--output-dir", str(out),
        "--report", str(report),
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr  # AL913 is medium: --fail-on medium
    lines = inert(proc, "suspicious")
    assert any(ln.startswith("output ") and ln.endswith(" =") for ln in lines)
    (saved,) = out.iterdir()
    assert saved.name.isascii() and saved.name.isprintable() and saved.suffix == ".npy"
    np.testing.assert_array_equal(np.load(saved), relu(X))
    assert json.loads(report.read_text())["verdict"] == "suspicious"
    shown = airlock("report", "show", str(report))
    assert shown.returncode == 0
    inert(shown, "suspicious")
    assert leftovers(_session(report)) == []


def test_scan_of_hostile_file_names_is_detected_and_inert(tmp_path: Path) -> None:
    model_dir = hostile_file_names(tmp_path)
    report = tmp_path / "report.json"
    proc = airlock("scan", str(model_dir), "--exercise-seconds", "0.5", "--report", str(report))
    assert proc.returncode == 1, proc.stderr
    inert(proc, "suspicious")
    data = json.loads(report.read_text())
    names = [f for f in data["findings"] if f["rule_id"] == "AL913"]
    assert names and names[0]["source"] == "static"
    assert any("the model's path" in e for e in names[0]["evidence"])
    assert any("file" in e and "U+202E" in e for e in names[0]["evidence"])
    assert data["tracer"]["log_bytes"] > 0 and data["resources"]["timeline"]
    assert leftovers(data["sandbox"]["session"]) == []


def test_evidence_and_errors_made_of_escape_sequences_are_inert(tmp_path: Path) -> None:
    path = hostile_evidence(tmp_path)
    np.save(tmp_path / "x.npy", X)
    report = tmp_path / "report.json"
    proc = airlock("run", str(path), "--input", str(tmp_path / "x.npy"), "--report", str(report))
    assert proc.returncode == 1, proc.stderr
    inert(proc, "malicious")
    err = [ln for ln in proc.stderr.decode().splitlines() if ln.strip()]
    assert len(err) == 1 and "the model failed during inference" in err[0]
    assert "[green]CLEAN" in err[0]  # markup shown as written
    data = json.loads(report.read_text())
    ids = {f["rule_id"] for f in data["findings"]}
    assert {"AL302", "AL601"} <= ids
    assert data["error"]["kind"] == "SandboxError"
    assert leftovers(data["sandbox"]["session"]) == []


def test_eval_lines_and_summary_are_inert(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    hostile_file_names(models)
    onnx_hostile_names(models)
    out = tmp_path / "out"
    proc = airlock("eval", str(models), "--out", str(out), "--jobs", "1")
    assert proc.returncode == 1, proc.stderr
    for stream in (proc.stdout, proc.stderr):
        assert INJECTION.search(stream) is None
    assert "2 model(s)" in proc.stdout.decode()
    results = [json.loads(ln) for ln in (out / "results.jsonl").read_text().splitlines()]
    assert {r["verdict"] for r in results} == {"suspicious"}
    for r in results:
        assert r["report"] and Path(r["report"]).name.isascii()
        assert "AL913" in r["top_findings"]
