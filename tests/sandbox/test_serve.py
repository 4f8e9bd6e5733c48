"""airlock serve with a real engine: replicas answer unmodified tritonclient calls (gRPC and
HTTP) with the in-process outputs; a replica killed from outside is replaced and the service
answers again; SIGTERM on `airlock serve` drains and leaves no container. TorchScript, not ONNX:
onnxruntime in the image looks up mobile.events.data.microsoft.com (its telemetry) about nine
seconds after it starts, which a replica serving that long is rightly quarantined for."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import docker
import numpy as np
import pytest

from runner.serve.app import Server
from tests.fixtures.models import sample_input, torchscript_model

pytestmark = pytest.mark.timeout(300)


def _grpc_infer(port: int, x: np.ndarray) -> np.ndarray:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(f"127.0.0.1:{port}")
    try:
        inp = grpcclient.InferInput("input", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        result = client.infer("model", [inp], client_timeout=30)
        return np.asarray(result.as_numpy("output"))
    finally:
        client.close()


def _http_infer(port: int, x: np.ndarray) -> np.ndarray:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(f"127.0.0.1:{port}")
    try:
        inp = httpclient.InferInput("input", list(x.shape), "FP32")
        inp.set_data_from_numpy(x, binary_data=True)
        return np.asarray(client.infer("model", [inp]).as_numpy("output"))
    finally:
        client.close()


def _gone(ids: list[str]) -> bool:
    client = docker.from_env()
    try:
        names = {c.id for c in client.containers.list(all=True)}
        return not any(any(n.startswith(i) for n in names) for i in ids)
    finally:
        client.close()


def _wait(predicate: object, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.2)
    return False


def test_replicas_answer_tritonclient_and_a_killed_one_is_replaced(tmp_path: Path) -> None:
    x = sample_input(3)
    built = torchscript_model(tmp_path, x)
    events: list[dict[str, object]] = []
    report = tmp_path / "serve.json"
    server = Server(
        built.path, replicas=2, grpc_port=0, http_port=0, report=report, log=events.append
    )
    with server:
        first = server.backend.containers()
        assert len(first) == 2
        server.backend.infer({"input": x}, 30.0)  # TorchScript names its outputs when it answers
        ref = built.reference["output"]
        np.testing.assert_allclose(_grpc_infer(server.grpc_port, x), ref, 1e-5)
        np.testing.assert_allclose(_http_infer(server.http_port, x), ref, 1e-5)
        assert any(e.get("event") == "request" and e.get("code") == "OK" for e in events)

        client = docker.from_env()
        client.containers.get(first[0]).kill()
        client.close()
        replaced = _wait(
            lambda: (
                len(server.backend.containers()) == 2
                and first[0] not in server.backend.containers()
            ),
            60,
        )
        assert replaced, server.backend.report()["events"]
        for _ in range(4):  # both replicas, the fresh one among them
            np.testing.assert_allclose(_grpc_infer(server.grpc_port, x), ref, 1e-5)
        running = server.backend.report()
        assert running["restarts"] == 1 and not running["quarantined"]
        assert any(e["event"] == "replica-failed" for e in running["events"])
        containers = server.backend.containers()
    assert server.exit_code == 0
    assert _gone(first + containers)
    written = json.loads(report.read_text())
    assert written["requests"] >= 6 and written["restarts"] == 1
    killed = [c for c in written["closed"] if c["container"] == first[0]]
    others = [c for c in written["closed"] if c["container"] != first[0]]
    assert len(killed) == 1 and len(others) == 2
    # the kill cut the trace (AL404: no exit record): the restart's event, not a quarantine
    assert {f["rule_id"] for f in killed[0]["findings"]} <= {"AL404", "AL905", "AL907", "AL505"}
    assert all(c["verdict"] == "clean" for c in others), [c["findings"] for c in others]


def test_sigterm_drains_and_leaves_no_container(tmp_path: Path) -> None:
    x = sample_input(2)
    built = torchscript_model(tmp_path, x)
    report = tmp_path / "serve.json"
    cmd = [sys.executable, "-m", "runner.cli", "serve", str(built.path), "--grpc-port", "0"]
    cmd += ["--http-port", "0", "--report", str(report)]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ)
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.search(r"gRPC 127\.0\.0\.1:(\d+), HTTP 127\.0\.0\.1:(\d+)", line)
        assert m, line + (proc.stderr.read() if proc.stderr and proc.poll() is not None else "")
        _http_infer(int(m.group(2)), x)  # TorchScript names its outputs when it answers
        np.testing.assert_allclose(_http_infer(int(m.group(2)), x), built.reference["output"], 1e-5)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr[-2000:]
    logs = [json.loads(x) for x in stderr.splitlines() if x.startswith("{")]
    started = [str(e["container"]) for e in logs if e.get("event") == "replica-started"]
    assert started and _gone(started)
    assert any(e.get("event") == "request" and e.get("code") == "OK" for e in logs)
    assert any(e.get("event") == "stopped" for e in logs)
    assert json.loads(report.read_text())["requests"] == 2


def test_a_replica_is_recycled_before_its_budget_and_no_request_fails(tmp_path: Path) -> None:
    from runner.serve.handles import SandboxHandle
    from runner.serve.recycle import Budget
    from runner.serve.replicas import ReplicaBackend

    x = sample_input(2)
    built = torchscript_model(tmp_path, x)
    handles: list[SandboxHandle] = []
    backend = ReplicaBackend(built.path, budget=Budget(requests=4), factory=None)
    make = backend._factory
    backend._factory = lambda: handles.append(make()) or handles[-1]  # type: ignore[func-returns-value]
    backend.start()
    try:
        end = time.monotonic() + 120
        while backend.report()["recycles"] < 2 and time.monotonic() < end:  # served meanwhile
            out = backend.infer({"input": x}, 60.0)
            np.testing.assert_allclose(out["output"], built.reference["output"], 1e-5)
            time.sleep(0.05)
        assert _wait(lambda: not backend._recycling, 60)
        running = backend.report()
    finally:
        backend.close()
    assert running["recycles"] >= 2 and not running["quarantined"], running["events"]
    assert not running["errors"], running["errors"]
    assert all(c["verdict"] == "clean" for c in running["closed"]), running["closed"]
    # the checks after each request were mostly proved quiet, not judged in full
    quiet = sum(h.evidence.quiet_checks for h in handles)
    assert quiet >= 6, [(h.evidence.quiet_checks, h.evidence.full_checks) for h in handles]
    assert _gone([h.container for h in handles if h.container])
