"""The in-pod controller (runner.backends.kubernetes.pod) attached to a worker it did not
launch. There is no cluster here, so the Pod is emulated on the local engine: the sandbox
container is started as the Docker backend starts it (the same command line, tracer and
hardening, the run and trace directories shared), and the controller runs in this process,
given only those directories and the model, as it is in the Pod's controller container. What
this shows: the attach path (health, load, probes, shutdown, both logs read, the rules applied)
and that a verdict without the container's exit state is never clean. What it does not show:
gVisor, a NetworkPolicy, the kubelet's volumes."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from runner.backends.base import Outcome
from runner.backends.kubernetes import outcome_file, pod
from runner.controller import engine, images, launch, sessions
from runner.policy import Policy
from runner.rules.catalog import Verdict
from tests.fixtures import hostile
from tests.fixtures.models import onnx_model, sample_input

pytestmark = pytest.mark.docker
POLICY = Policy(memory_bytes=512 << 20, wall_timeout_s=120, startup_timeout_s=60)
Start = Callable[[Path], tuple[sessions.SessionDirs, str]]


@pytest.fixture
def emulated_pod() -> Iterator[Start]:
    started: list[tuple[str, sessions.SessionDirs]] = []

    def start(model: Path) -> tuple[sessions.SessionDirs, str]:
        session = sessions.new_session_id()
        dirs = sessions.make_dirs(session)
        targets = launch.mounts(dirs, model.resolve(), None, [])
        tag, _ = images.require_current()
        spec = launch.container_spec(POLICY, tag, session, dirs, targets.binds)
        started.append((engine.create_and_start(spec), dirs))
        return dirs, targets.model_target

    yield start
    for container, dirs in started:
        engine.remove(container)
        sessions.remove_dirs(dirs.root)


def _run(tmp_path: Path, model: Path, start: Start, probes: Path | None = None) -> Outcome:
    dirs, target = start(model)
    out = tmp_path / "outcomes" / "0.json"
    argv = [
        "--index", "0", "--model", str(model), "--worker-model", target,
        "--display-path", str(model), "--policy", POLICY.model_dump_json(),
        "--session", "emulated", "--out", str(out),
        "--run-dir", str(dirs.run), "--trace-dir", str(dirs.trace),
    ]  # fmt: skip
    if probes is not None:
        argv += ["--probes", str(probes)]
    assert pod.main(argv) == 0
    return outcome_file.read(out, 64 << 20)


def test_benign_model_is_loaded_probed_and_never_clean(tmp_path: Path, emulated_pod: Start) -> None:
    x = sample_input()
    built = onnx_model(tmp_path, x)
    probes = tmp_path / "probes.npz"
    np.savez(probes, x=x)
    outcome = _run(tmp_path, built.path, emulated_pod, probes)
    r = outcome.result
    assert r.probed, r
    assert r.verdict is Verdict.ERROR  # no exit state from inside a Pod: not clean
    assert "exit state" in (r.error or "")
    report = json.loads(outcome.report_json or "{}")
    assert any("cannot be clean" in n for n in report["notes"])
    assert report["tracer"] and report["events"] is not None
    assert report["signature"]["inputs"][0]["name"] == "x"


def test_hostile_model_is_caught_through_the_attached_trace(
    tmp_path: Path, emulated_pod: Start
) -> None:
    model = hostile.write(tmp_path / "connect.pkl", hostile.exec_connect_loopback())
    outcome = _run(tmp_path, model, emulated_pod)
    r = outcome.result
    assert r.verdict in (Verdict.MALICIOUS, Verdict.SUSPICIOUS), r
    assert "AL101" in r.top_findings, r  # the tracer's own record of the connect
    report = json.loads(outcome.report_json or "{}")
    sources = {f["source"] for f in report["findings"]}
    assert {"tracer", "worker", "static"} <= sources
