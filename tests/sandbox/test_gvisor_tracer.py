"""gVisor's trace points, runsc's default tracer (AIRLOCK_RUNSC_TRACER unset): the worker starts
without strace, the events come from the host's sink, the rules are the same.
Two container runs: a benign ONNX model is clean, with events received; a pickle that runs a
shell is caught by the exec it makes, its marker never reaches the host, and the sink's socket,
which it tries to reach, is not there in the sandbox."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

import runner
from runner.controller import sessions
from runner.telemetry.gvisor import session as gvisor_session
from runner.telemetry.gvisor import sink
from tests.fixtures import hostile, models

pytestmark = [pytest.mark.runsc, pytest.mark.docker]


@pytest.fixture(autouse=True)
def _default_tracer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRLOCK_RUNSC_TRACER", raising=False)  # the default: gvisor


def _runsc() -> runner.Policy:
    return runner.Policy(runtime=runner.Runtime.RUNSC)


def test_a_benign_model_is_clean_with_events_from_the_sink(tmp_path: Path) -> None:
    x = models.sample_input()
    built = models.onnx_model(tmp_path, x)
    with runner.Sandbox(built.path, _runsc()) as sb:
        out = sb.infer(x)
    report = sb.report()
    assert out["y"].shape == built.reference["y"].shape
    assert report.verdict is runner.Verdict.CLEAN, [f.rule_id for f in report.findings]
    assert report.tracer is not None and report.tracer.enabled
    assert report.tracer.kind == "gvisor"
    assert report.tracer.syscalls > 100  # the worker's start-up, from gVisor's points
    assert report.tracer.malformed_lines == 0
    assert report.tracer.worker_exit == "exited with 0"
    log = sb.trace_log.decode()
    assert "openat(" in log and "gvisor:" not in log
    assert log.startswith("1 ")  # the worker is the sandbox's pid 1: no strace before it
    assert report.sandbox is not None and report.sandbox.runtime == "runsc"


def test_a_shell_at_load_is_caught_and_contained_and_the_sink_is_out_of_reach(
    tmp_path: Path,
) -> None:
    marker = f"/tmp/airlock-gvisor-marker-{uuid.uuid4().hex}"
    path = tmp_path / "shell.pkl"
    sb = runner.Sandbox(path, _runsc())
    root = sessions.tmp_base() / f"{sessions.DIR_PREFIX}{sb.session}"
    sink_path = root / gvisor_session.DIR_NAME / sink.SOCKET_NAME
    code = (
        "import os, socket\n"
        f"os.system('echo pwned > {marker}')\n"
        "s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)\n"
        f"try:\n    s.connect({str(sink_path)!r})\nexcept OSError:\n    pass\n"
        f"seen = os.path.exists({str(root)!r})\n"
        "seen = seen or os.environ.get('AIRLOCK_GVISOR_CONFIG', '').startswith('/')\n"
        "if seen:\n    os.system('echo seen')\n"
    )
    hostile.write(path, hostile.code_pickle(code))
    with sb:
        pass
    report = sb.report()
    ids = {f.rule_id for f in report.findings}
    assert "AL202" in ids and report.verdict is runner.Verdict.MALICIOUS, ids
    execs = [e for e in report.events if e.kind == "process.exec" and e.source.value == "tracer"]
    assert any("pwned" in " ".join(map(str, e.detail.get("argv") or [])) for e in execs)
    assert not any("echo seen" in " ".join(map(str, e.detail.get("argv") or [])) for e in execs)
    unix = [
        e for e in report.events if e.kind == "net.connect" and e.detail.get("family") == "AF_UNIX"
    ]
    assert unix and all(e.result == "ENOENT" for e in unix), [(e.summary, e.result) for e in unix]
    assert not Path(marker).exists()
    assert report.tracer is not None and report.tracer.worker_exit == "exited with 0"
