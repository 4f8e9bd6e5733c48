"""Detection: benign models get a clean verdict; each harmless payload gets the finding named,
with evidence citing the syscall or event, in the phase where it happened."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import runner
from runner import Report
from tests.fixtures import hostile, models


def _scan(path: Path, infer: np.ndarray | None = None) -> Report:
    sb = runner.Sandbox(path)
    with sb:
        if infer is not None:
            sb.infer(infer)
    return sb.report()


def _benign(kind: str, tmp_path: Path) -> tuple[Path, Path | None, bool]:
    x = models.sample_input()
    if kind == "checkpoint dict":
        return models.state_dict_checkpoint(tmp_path), None, False
    builder = {
        "onnx": models.onnx_model,
        "torchscript": models.torchscript_model,
        "full module": models.full_module_pickle,
        "safetensors": models.safetensors_model,
    }[kind]
    built = builder(tmp_path, x)
    return built.path, built.architecture, True


@pytest.mark.parametrize(
    "kind", ["onnx", "torchscript", "full module", "safetensors", "checkpoint dict"]
)
def test_benign_models_are_clean(kind: str, tmp_path: Path) -> None:
    path, arch, infers = _benign(kind, tmp_path)
    sb = runner.Sandbox(path, architecture=arch)
    with sb:
        if infers:
            sb.infer(models.sample_input())
    report = sb.report()
    above_info = [f for f in report.findings if f.severity is not runner.Severity.INFO]
    assert report.verdict is runner.Verdict.CLEAN, above_info
    assert above_info == []
    assert report.tracer is not None and report.tracer.worker_exit == "exited with 0"
    assert report.resources is not None and report.resources.timeline


PAYLOADS: dict[str, tuple[Callable[[], bytes], set[str], str]] = {
    # name: (builder, finding ids that must appear, the syscall or event the evidence cites)
    "os.system shell": (lambda: hostile.shell_marker("/tmp/m"), {"AL202", "AL601"}, "exec /bin/sh"),
    "exec + connect 127.0.0.1": (
        hostile.exec_connect_loopback,
        {"AL101", "AL603", "AL601"},
        "connect AF_INET 127.0.0.1:9",
    ),
    "lookup .invalid": (hostile.lookup_invalid, {"AL102"}, ":53"),
    "read credentials": (hostile.read_fake_credentials, {"AL303"}, "read /tmp/.aws/credentials"),
    "write outside scratch": (
        hostile.write_outside_scratch,
        {"AL301"},
        "open /opt/airlock/implant.py for writing",
    ),
    "spawn child": (hostile.spawn_child, {"AL201", "AL605"}, "exec /usr/bin/true"),
    "probe /.dockerenv": (hostile.probe_dockerenv, {"AL304"}, "/.dockerenv"),
    "kill parent and tracer": (hostile.kill_parent_and_tracer, {"AL403"}, "to the tracer (pid 1)"),
}


@pytest.mark.parametrize("name", list(PAYLOADS))
def test_payload_is_detected(name: str, tmp_path: Path) -> None:
    builder, expected, cited = PAYLOADS[name]
    path = hostile.write(tmp_path / "payload.pkl", builder())
    report = _scan(path)
    ids = {f.rule_id for f in report.findings}
    assert expected <= ids, (ids, [f.evidence for f in report.findings])
    assert report.verdict in (runner.Verdict.MALICIOUS, runner.Verdict.SUSPICIOUS)
    evidence = " | ".join(e for f in report.findings for e in f.evidence)
    assert cited in evidence
    assert all(
        f.phase in (None, runner.Event.model_fields["phase"].annotation.LOAD)
        for f in report.findings
        if f.rule_id in expected
    )


def test_tracer_survives_a_kill_attempt(tmp_path: Path) -> None:
    path = hostile.write(tmp_path / "kill.pkl", hostile.kill_parent_and_tracer())
    report = _scan(path)
    assert report.tracer is not None
    assert report.tracer.worker_exit == "exited with 0"  # the tracer saw the worker out
    assert report.tracer.exit_code == 0
    assert "AL404" not in {f.rule_id for f in report.findings}
    kills = [e for e in report.events if e.kind == "signal.send"]
    assert kills and all(e.result == "EPERM" for e in kills)


def test_inference_time_payload_is_attributed_to_infer(tmp_path: Path) -> None:
    path = hostile.write(tmp_path / "hook.pkl", hostile.forward_hook())
    report = _scan(path, infer=np.zeros((2, 4), np.float32))
    shell = [f for f in report.findings if f.rule_id == "AL202" and f.source.value == "tracer"]
    assert shell, report.findings
    assert {f.phase.value for f in shell if f.phase} == {"infer"}
    assert report.verdict is runner.Verdict.MALICIOUS


@pytest.mark.runsc
def test_detection_under_gvisor_with_strace_inside(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # AIRLOCK_RUNSC_TRACER=strace: runsc's former tracer, strace inside the sandbox
    monkeypatch.setenv("AIRLOCK_RUNSC_TRACER", "strace")
    path = hostile.write(tmp_path / "shell.pkl", hostile.shell_marker("/tmp/m"))
    sb = runner.Sandbox(path, runner.Policy(runtime=runner.Runtime.RUNSC))
    with sb:
        pass
    report = sb.report()
    assert {"AL202", "AL601"} <= {f.rule_id for f in report.findings}
    assert report.verdict is runner.Verdict.MALICIOUS
    assert report.tracer is not None and report.tracer.worker_exit == "exited with 0"
    assert report.tracer.kind == "strace"


def test_static_read_names_the_gadget_before_it_runs(tmp_path: Path) -> None:
    path = hostile.write(tmp_path / "shell.pkl", hostile.shell_marker("/tmp/m"))
    report = _scan(path)
    static = [f for f in report.findings if f.rule_id == "AL611"]
    assert static and static[0].source.value == "static"
    assert "static: the pickle imports builtins.eval" in static[0].evidence[0]


LEAVE_A_FILE = """
import os
fd = os.open("/airlock/run/implant", os.O_WRONLY | os.O_CREAT, 0o600)
os.close(fd)
"""


def test_files_left_in_the_run_directory_are_found_by_the_host(tmp_path: Path) -> None:
    # the host lists /airlock/run once the container stopped, whatever the tracer read: a
    # path another thread rewrote during the call can be reported wrong by either tracer
    path = hostile.write(tmp_path / "left.pkl", hostile.code_pickle(LEAVE_A_FILE))
    report = _scan(path)
    host = [
        e
        for f in report.findings
        if f.rule_id == "AL305"
        for e in f.evidence
        if e == "host: found after the container stopped: /airlock/run/implant"
    ]
    assert host, [f.evidence for f in report.findings]
    assert report.verdict is runner.Verdict.MALICIOUS
