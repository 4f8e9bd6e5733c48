"""The in-pod controller (runner.backends.kubernetes.pod) attached to a worker it did not
launch. There is no cluster here, so the Pod is emulated on the local engine: the sandbox
container is started as the Docker backend starts it (the same command line, tracer and
hardening, the run and trace directories shared), and the controller runs in this process,
given only those directories and the model, as it is in the Pod's controller container. What
this shows: the attach path (health, load, probes, shutdown, both logs read, the rules applied),
the exit code the controller assumes from the tracer's record, and, with the emulated sandbox
container's real exit state (docker inspect) given to the driver's confirmation as if the
kubelet had reported it, a verdict that is clean end to end. What it does not show: gVisor, a
NetworkPolicy, the kubelet's volumes, the kubelet's own containerStatuses."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from runner.backends.base import Outcome
from runner.backends.kubernetes import exit_state, outcome_file, pod
from runner.controller import engine, images, launch, sessions
from runner.policy import Policy
from runner.rules.catalog import Verdict
from tests.fixtures import hostile
from tests.fixtures.models import onnx_model, sample_input

pytestmark = pytest.mark.docker
POLICY = Policy(memory_bytes=512 << 20, wall_timeout_s=120, startup_timeout_s=60)
Start = Callable[[Path], tuple[sessions.SessionDirs, str, str]]


@pytest.fixture
def emulated_pod() -> Iterator[Start]:
    started: list[tuple[str, sessions.SessionDirs]] = []

    def start(model: Path) -> tuple[sessions.SessionDirs, str, str]:
        session = sessions.new_session_id()
        dirs = sessions.make_dirs(session)
        targets = launch.mounts(dirs, model.resolve(), None, [])
        tag, _ = images.require_current()
        spec = launch.container_spec(POLICY, tag, session, dirs, targets.binds)
        container = engine.create_and_start(spec)
        started.append((container, dirs))
        return dirs, targets.model_target, container

    yield start
    for container, dirs in started:
        engine.remove(container)
        sessions.remove_dirs(dirs.root)


def _kubelet(container: str) -> exit_state.Observed:
    """The emulated sandbox container's exit state from the engine, shaped as the kubelet's
    containerStatuses (the API's JSON) and read by the driver's own reader."""
    end = time.monotonic() + 30
    st = engine.state(container)
    while st is not None and st.running and time.monotonic() < end:
        time.sleep(0.2)
        st = engine.state(container)
    assert st is not None and not st.running, st
    reason = "OOMKilled" if st.oom_killed else "Completed" if st.exit_code == 0 else "Error"
    terminated = {"exitCode": st.exit_code, "reason": reason}
    status = {"containerStatuses": [{"name": "sandbox", "state": {"terminated": terminated}}]}
    return exit_state.from_pods({"items": [{"status": status}]})


def _run(
    tmp_path: Path, model: Path, start: Start, probes: Path | None = None
) -> tuple[Outcome, int | None, exit_state.Observed]:
    """The controller's outcome, the exit it assumed and the (emulated) kubelet's state."""
    dirs, target, container = start(model)
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
    written = outcome_file.read_file(out, 64 << 20)
    return written.outcome(), written.assumed_code, _kubelet(container)


def test_benign_model_is_clean_once_the_exit_is_confirmed(
    tmp_path: Path, emulated_pod: Start
) -> None:
    x = sample_input()
    built = onnx_model(tmp_path, x)
    probes = tmp_path / "probes.npz"
    np.savez(probes, x=x)
    outcome, assumed, kubelet = _run(tmp_path, built.path, emulated_pod, probes)
    assert assumed == 0 and kubelet == exit_state.Observed(exit_code=0, reason="Completed")
    confirmed = exit_state.confirm(outcome, assumed, kubelet)
    assert confirmed is outcome  # accepted as written
    r = confirmed.result
    assert r.probed, r
    assert r.verdict is Verdict.CLEAN, r
    assert r.error is None
    report = json.loads(confirmed.report_json or "{}")
    assert report["verdict"] == "clean"
    assert any("confirms it" in n for n in report["notes"])
    assert report["resources"]["exit_code"] == 0 and report["tracer"]["exit_code"] == 0
    assert report["signature"]["inputs"][0]["name"] == "x"
    # the same outcome, had the kubelet said otherwise, is not clean
    oom = exit_state.confirm(outcome, assumed, exit_state.Observed(137, "OOMKilled"))
    assert oom.result.verdict is Verdict.ERROR and "OOM" in (oom.result.error or "")


def test_hostile_model_is_caught_through_the_attached_trace(
    tmp_path: Path, emulated_pod: Start
) -> None:
    model = hostile.write(tmp_path / "connect.pkl", hostile.exec_connect_loopback())
    written, assumed, kubelet = _run(tmp_path, model, emulated_pod)
    outcome = exit_state.confirm(written, assumed, kubelet)
    r = outcome.result
    assert r.verdict is Verdict.MALICIOUS, r
    assert "AL101" in r.top_findings, r  # the tracer's own record of the connect
    report = json.loads(outcome.report_json or "{}")
    sources = {f["source"] for f in report["findings"]}
    assert {"tracer", "worker", "static"} <= sources
