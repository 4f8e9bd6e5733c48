"""The `airlock` command, run as a user would: exit codes, one-line errors, no leftovers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures import hostile, models

ROOT = Path(__file__).resolve().parents[2]
AIRLOCK = [sys.executable, "-m", "runner.cli"]


def airlock(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*AIRLOCK, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        timeout=timeout,
        check=False,
    )


def sessions() -> list[str]:
    out = subprocess.run(
        ["docker", "ps", "-aq", "--filter", "label=airlock.session"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.split()


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("airlock: error: ")
    assert "Traceback" not in proc.stderr
    return lines[0]


def test_run_prints_outputs_and_writes_npy(tmp_path: Path) -> None:
    x = models.sample_input(3)
    built = models.onnx_model(tmp_path, x)
    np.save(tmp_path / "x.npy", x)
    proc = airlock(
        "run",
        str(built.path),
        "--input",
        f"x={tmp_path / 'x.npy'}",
        "--output-dir",
        str(tmp_path / "out"),
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["schema_version"] == "1.0"
    assert result["sandbox"]["image_id"].startswith("sha256:")
    assert result["outputs"][0]["name"] == "y"
    np.testing.assert_allclose(
        np.load(tmp_path / "out" / "y.npy"), built.reference["y"], atol=1e-6, rtol=0
    )


def test_run_takes_an_npz_and_a_bare_npy(tmp_path: Path) -> None:
    x = models.sample_input(2)
    built = models.onnx_model(tmp_path, x)
    np.savez(tmp_path / "in.npz", x=x)
    np.save(tmp_path / "x.npy", x)
    for spec in (str(tmp_path / "in.npz"), str(tmp_path / "x.npy")):
        proc = airlock("run", str(built.path), "--input", spec)
        assert proc.returncode == 0, proc.stderr
        assert "y float32 [2, 3]" in proc.stdout


def test_describe_lists_inputs_and_outputs(tmp_path: Path) -> None:
    built = models.onnx_model(tmp_path, models.sample_input())
    proc = airlock("describe", str(built.path))
    assert proc.returncode == 0, proc.stderr
    assert "x float32 [-1, 4]" in proc.stdout
    assert "y float32 [-1, 3]" in proc.stdout


def test_missing_path_is_a_usage_error(tmp_path: Path) -> None:
    proc = airlock("scan", str(tmp_path / "nope.onnx"))
    assert proc.returncode == 2
    assert "no such file or directory" in one_error_line(proc)


def test_unrecognised_file_is_a_usage_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"this is not a model at all\n" * 10)
    proc = airlock("scan", str(junk))
    assert proc.returncode == 2
    assert "not a recognised model" in one_error_line(proc)


def test_safetensors_header_past_the_end_is_a_tamper_finding(tmp_path: Path) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes((10**9).to_bytes(8, "little") + b'{"a": 1}')
    proc = airlock("scan", str(bad), "--json")
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    assert report["verdict"] == "suspicious"
    assert "AL701" in {f["rule_id"] for f in report["findings"]}
    assert sessions() == []


@pytest.mark.parametrize(
    ("array", "spec", "needle"),
    [
        # caught before a sandbox starts, from the ONNX graph read on the host
        (np.zeros((2, 4), np.float32), "wrong={}", "--input names wrong (unknown) and lacks x"),
        (np.zeros((2, 4), np.int64), "x={}", "x takes float32"),
        (np.zeros((2, 5), np.float32), "x={}", "x is [-1, 4]"),
    ],
)
def test_bad_inputs_are_usage_errors(
    tmp_path: Path, array: np.ndarray, spec: str, needle: str
) -> None:
    built = models.onnx_model(tmp_path, models.sample_input())
    np.save(tmp_path / "in.npy", array)
    proc = airlock("run", str(built.path), "--input", spec.format(tmp_path / "in.npy"))
    assert proc.returncode == 2, proc.stderr
    assert needle in one_error_line(proc)
    assert sessions() == []


def test_engine_not_running_is_exit_3(tmp_path: Path) -> None:
    built = models.onnx_model(tmp_path, models.sample_input())
    proc = airlock("scan", str(built.path), env={"DOCKER_HOST": f"unix://{tmp_path}/none.sock"})
    assert proc.returncode == 3
    line = one_error_line(proc)
    assert "Docker engine is not reachable" in line and "make engine" in line


def test_stale_image_names_the_build_command(tmp_path: Path) -> None:
    built = models.onnx_model(tmp_path, models.sample_input())
    # A worker source that differs from the image's: the content tag changes, the image is stale.
    code = (
        "import sys, runner.controller.images as i, runner.cli as c; "
        "i.content_digest = lambda: '0' * 64; sys.exit(c.main())"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, "scan", str(built.path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 3
    line = one_error_line(proc)
    assert "stale" in line and "airlock image build" in line
    status = subprocess.run(
        [sys.executable, "-c", code.replace("c.main()", "c.main()"), "image", "status"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert status.returncode == 3 and "airlock image build" in status.stdout


def test_worker_crash_is_reported_with_exit_code(tmp_path: Path) -> None:
    path = hostile.write(tmp_path / "exit.pkl", hostile.exit_worker(7))
    proc = airlock("scan", str(path), "--json")
    assert proc.returncode == 1  # a crash is a finding (AL505)
    assert "exited with code 7" in one_error_line(proc)
    result = json.loads(proc.stdout)
    assert result["error"]["kind"] == "WorkerCrashed"
    assert result["error"]["exit_code"] == 7
    assert "AL505" in {f["rule_id"] for f in result["findings"]}
    assert sessions() == []


def test_corrupt_model_that_cannot_load_is_exit_3(tmp_path: Path) -> None:
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"\x08\x08\x3a\x04\x12\x02\x0a\x00" + b"\x42\x02\x10\x11")
    proc = airlock("scan", str(bad), "--json")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "could not be loaded" in one_error_line(proc)
    assert json.loads(proc.stdout)["verdict"] == "error"


def test_call_past_deadline_is_killed(tmp_path: Path) -> None:
    path = hostile.write(tmp_path / "slow.pkl", hostile.slow_forward())
    np.save(tmp_path / "x.npy", np.zeros(2, np.float32))
    proc = airlock("run", str(path), "--input", str(tmp_path / "x.npy"), "--call-timeout", "2")
    assert proc.returncode == 1  # a deadline is a finding (AL503)
    assert "call_timeout_s=2.0" in one_error_line(proc)
    assert sessions() == []


def test_reply_larger_than_the_limit_is_refused(tmp_path: Path) -> None:
    path = hostile.write(tmp_path / "huge.pkl", hostile.huge_reply())
    np.save(tmp_path / "x.npy", np.zeros(2, np.float32))
    proc = airlock("run", str(path), "--input", str(tmp_path / "x.npy"))
    assert proc.returncode == 1  # AL504
    assert "max_reply_bytes" in one_error_line(proc)


def _wait_for_session(timeout_s: float = 60) -> list[str]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = sessions()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError("no sandbox started")


def test_ctrl_c_removes_the_sandbox(tmp_path: Path) -> None:
    path = hostile.write(tmp_path / "hang.pkl", hostile.hang_in_load())
    proc = subprocess.Popen(
        [*AIRLOCK, "scan", str(path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for_session()
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert sessions() == []
    assert not list(Path("/tmp").glob("airlock-*/owner.json"))


def _orphan(tmp_path: Path) -> list[str]:
    """Start a scan that hangs in load, SIGKILL the controller, return its left sandbox."""
    path = hostile.write(tmp_path / "hang.pkl", hostile.hang_in_load())
    proc = subprocess.Popen(
        [*AIRLOCK, "scan", str(path)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    left = _wait_for_session()
    proc.kill()
    proc.wait()
    return left


def test_killed_controller_is_reaped_by_gc(tmp_path: Path) -> None:
    left = _orphan(tmp_path)
    assert sessions() == left  # the orphan is still there...
    gc = airlock("gc")
    assert gc.returncode == 0
    assert "removed 1 container(s)" in gc.stdout
    assert sessions() == []  # ...until gc reaps it, with its directory
    assert not list(Path("/tmp").glob("airlock-*/owner.json"))


def test_next_start_reaps_a_killed_controllers_sandbox(tmp_path: Path) -> None:
    orphan = _orphan(tmp_path)
    built = models.onnx_model(tmp_path, models.sample_input())
    ok = airlock("describe", str(built.path))
    assert ok.returncode == 0, ok.stderr
    assert not set(orphan) & set(sessions())
    assert not list(Path("/tmp").glob("airlock-*/owner.json"))


def test_doctor_and_image_status_report_a_healthy_setup() -> None:
    doctor = airlock("doctor")
    assert doctor.returncode == 0, doctor.stdout
    assert "FAIL" not in doctor.stdout
    assert "runsc passes Unix sockets" in doctor.stdout
    status = airlock("image", "status", "--json")
    assert status.returncode == 0
    assert json.loads(status.stdout)["state"] == "current"
