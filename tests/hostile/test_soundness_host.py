"""Nothing the model writes crashes the host: forged gRPC replies, garbled data-plane frames, a
description out of bounds, a huge garbled log tail. Each is contained (seen from the host: no
container, directory or mount left, host files unchanged), detected (its rule in the report,
the verdict not clean) and fully reported (phases, resources, the trace, the error that ended
it)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

import runner
from runner.errors import deceptive_chars
from runner.views import View, render
from tests.hostile.soundness_host import (
    DESCRIPTION_BOMB,
    GARBLED_DESCRIBE,
    GARBLED_FRAMES,
    GARBLED_REPLIES,
    GARBLED_TAIL,
    INJECTION,
    complete,
    contained_run,
    leftovers,
    onnx_many_inputs,
    pickle_of,
)

ROOT = Path(__file__).resolve().parents[2]


def _ids(report: runner.Report) -> set[str]:
    return {f.rule_id for f in report.findings}


def test_a_forged_grpc_reply_is_a_malformed_reply(tmp_path: Path) -> None:
    run = contained_run(tmp_path, pickle_of(GARBLED_DESCRIBE))
    r = run.report
    assert "AL911" in _ids(r) and r.verdict is not runner.Verdict.CLEAN
    assert r.error is not None and r.error.kind == "SandboxError"
    assert "malformed reply" in r.error.message and "Describe" in r.error.message
    assert [type(e).__name__ for e in run.errors] == ["SandboxError"]
    complete(r)


def test_a_description_with_100000_inputs_is_out_of_bounds(tmp_path: Path) -> None:
    run = contained_run(tmp_path, pickle_of(DESCRIPTION_BOMB))
    r = run.report
    assert {"AL912", "AL913"} <= _ids(r) and r.verdict is not runner.Verdict.CLEAN
    assert r.signature is not None and not r.signature.can_infer
    assert len(r.signature.inputs) == 1024  # read up to the bound, no further
    assert all(not deceptive_chars(s.name) for s in r.signature.inputs)
    evidence = next(f for f in r.findings if f.rule_id == "AL912").evidence
    assert any("100000 inputs" in e for e in evidence)
    assert any("negative size" in e for e in evidence)
    assert run.errors == []
    complete(r)


def test_an_onnx_graph_with_1100_inputs_is_out_of_bounds_without_running_code(
    tmp_path: Path,
) -> None:
    run = contained_run(tmp_path, onnx_many_inputs)
    r = run.report
    assert "AL912" in _ids(r) and r.verdict is runner.Verdict.SUSPICIOUS
    assert r.signature is not None and not r.signature.can_infer
    complete(r)


def test_garbled_data_plane_frames_are_malformed_replies(tmp_path: Path) -> None:
    policy = runner.Policy(call_timeout_s=3)
    run = contained_run(tmp_path, pickle_of(GARBLED_FRAMES), calls=8, policy=policy)
    r = run.report
    kinds = [type(e).__name__ for e in run.errors]
    assert kinds == ["SandboxError"] * GARBLED_REPLIES + ["DeadlineExceeded"]
    assert run.outputs == []
    malformed = next(f for f in r.findings if f.rule_id == "AL911")
    assert malformed.event_count == GARBLED_REPLIES
    assert {"AL911", "AL503"} <= _ids(r) and r.verdict is not runner.Verdict.CLEAN
    assert r.error is not None and r.error.kind == "DeadlineExceeded"
    complete(r)


def test_a_huge_garbled_log_tail_is_shown_inert(tmp_path: Path) -> None:
    run = contained_run(tmp_path, pickle_of(GARBLED_TAIL))
    r = run.report
    assert "AL505" in _ids(r) and r.verdict is not runner.Verdict.CLEAN
    assert r.error is not None and r.error.kind == "WorkerCrashed" and r.error.exit_code == 3
    assert r.error.log_tail and len(r.error.log_tail) <= 600
    assert not deceptive_chars(r.error.log_tail) and not deceptive_chars(r.error.message)
    for view in View:
        assert not INJECTION.search(render(r, view).encode())
    complete(r)


def test_the_command_line_survives_a_garbled_tail_and_says_the_true_verdict(
    tmp_path: Path,
) -> None:
    model = pickle_of(GARBLED_TAIL)(tmp_path)
    report = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, "-m", "runner.cli", "scan", str(model), "--report", str(report)],
        capture_output=True,
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    for stream in (proc.stdout, proc.stderr):
        assert not INJECTION.search(stream), INJECTION.search(stream)
    lines = proc.stdout.decode().splitlines()
    assert lines[0].split() == ["verdict", "MALICIOUS"]
    assert [ln for ln in lines if ln.startswith("verdict")] == [lines[0]]
    err = [ln for ln in proc.stderr.decode().splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("airlock: error: ")
    assert json.loads(report.read_text())["verdict"] == "malicious"
    session = json.loads(report.read_text())["sandbox"]["session"]
    assert leftovers(session) == []


def test_inference_still_works_next_to_a_garbled_one(tmp_path: Path) -> None:
    """The control: the same payload wrapper, nothing swapped, answers correctly."""
    from tests.hostile.soundness_host import DOUBLE

    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    run = contained_run(tmp_path, pickle_of(DOUBLE), calls=1, x=x)
    assert run.errors == []
    (out,) = run.outputs[0].values()
    np.testing.assert_array_equal(out, x * 2)
    assert not {"AL911", "AL912", "AL913"} & _ids(run.report)
