"""Containment, checked from the host: what a model can reach from inside the sandbox.

The probe fixture is a hostile pickle that defines a module at load time; its forward() tries
the network, writes to the model and the root filesystem, and reads its own credentials, and
returns what happened as tensors.
"""

from __future__ import annotations

import contextlib
import socket
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

import runner
from tests.fixtures import hostile


def _probe(tmp_path: Path, policy: runner.Policy | None = None) -> tuple[dict[str, float], str]:
    marker = f"/tmp/airlock-test-marker-{uuid.uuid4().hex}"
    path = hostile.write(tmp_path / "probe.pkl", hostile.probe_module(marker))
    with runner.Sandbox(path, policy) as sb:
        out = sb.infer({"x": np.zeros(1, dtype=np.float32)})
    return {k: float(v) for k, v in out.items()}, marker


@pytest.mark.parametrize(
    "runtime", [runner.Runtime.RUNC, pytest.param(runner.Runtime.RUNSC, marks=pytest.mark.runsc)]
)
def test_model_is_contained(runtime: runner.Runtime, tmp_path: Path) -> None:
    facts, marker = _probe(tmp_path, runner.Policy(runtime=runtime))
    # no network: a connect to a closed loopback port fails, a .invalid lookup fails,
    # and there is no interface but lo
    assert facts["connect_ok"] == 0.0
    assert facts["lookup_ok"] == 0.0
    assert facts["interfaces_other_than_lo"] == 0.0
    # the model file and the root filesystem cannot be written
    assert facts["model_writable"] == 0.0
    assert facts["rootfs_writable"] == 0.0
    assert facts["etc_writable"] == 0.0
    # a non-root uid with no effective capabilities and no way to gain privileges
    assert facts["uid"] == 10001.0 and facts["euid"] == 10001.0
    assert facts["cap_eff_nonzero"] == 0.0
    if runtime is runner.Runtime.RUNC:
        assert facts["no_new_privs"] == 1.0  # gVisor's /proc/self/status lacks the field
    # the payload's marker was written inside (scratch tmpfs), never on the host
    assert facts["marker_written_inside"] == 1.0
    assert facts["marker_seen_inside"] == 1.0
    assert not Path(marker).exists()


def test_shell_payload_runs_inside_only(tmp_path: Path) -> None:
    marker = Path(f"/tmp/airlock-test-marker-{uuid.uuid4().hex}")
    path = hostile.write(tmp_path / "shell.pkl", hostile.shell_marker(str(marker)))
    before = sorted(p.name for p in tmp_path.iterdir())
    with runner.Sandbox(path) as sb:
        sig = sb.describe()
    assert sig.format == "pickle" and not sig.can_infer
    assert not marker.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert path.read_bytes() == hostile.shell_marker(str(marker))


def test_memory_limit_kills_and_names_the_limit(tmp_path: Path) -> None:
    path = hostile.write(tmp_path / "membomb.pkl", hostile.memory_bomb())
    policy = runner.Policy(memory_bytes=256 << 20)
    sb = runner.Sandbox(path, policy)
    with pytest.raises(runner.LimitExceeded, match="memory limit of 256 MiB") as info:
        sb.open()
    assert info.value.limit == "memory"
    report = sb.report()
    assert report.error is not None and report.error.kind == "LimitExceeded"
    assert report.resources is not None and report.resources.oom_killed
    assert "AL501" in {f.rule_id for f in report.findings}


def test_load_deadline_kills_the_sandbox(tmp_path: Path) -> None:
    path = hostile.write(tmp_path / "hang.pkl", hostile.hang_in_load())
    sb = runner.Sandbox(path, runner.Policy(load_timeout_s=3))
    with pytest.raises(runner.DeadlineExceeded, match="load_timeout_s=3") as info:
        sb.open()
    assert info.value.deadline == "load"
    report = sb.report()
    assert report.error is not None
    assert "AL503" in {f.rule_id for f in report.findings}


def test_worker_exit_is_reported_with_code_and_log(tmp_path: Path) -> None:
    path = hostile.write(tmp_path / "exit.pkl", hostile.exit_worker(7))
    with pytest.raises(runner.WorkerCrashed, match="exited with code 7") as info:
        runner.Sandbox(path).open()
    assert info.value.worker_exit_code == 7
    assert "payload: exiting" in info.value.log_tail


def test_native_crash_is_reported(tmp_path: Path) -> None:
    path = hostile.write(tmp_path / "segv.pkl", hostile.segfault())
    with pytest.raises(runner.WorkerCrashed) as info:
        runner.Sandbox(path).open()
    assert info.value.worker_exit_code == 139  # 128 + SIGSEGV


@pytest.mark.runsc
def test_fork_bomb_under_runsc_is_a_clear_resource_error(tmp_path: Path) -> None:
    path = hostile.write(tmp_path / "forkbomb.pkl", hostile.fork_bomb())
    policy = runner.Policy(runtime=runner.Runtime.RUNSC, load_timeout_s=90)
    with pytest.raises(runner.SandboxError) as info, runner.Sandbox(path, policy):
        pass
    assert isinstance(info.value, (runner.LimitExceeded, runner.WorkerCrashed))


def test_outputs_are_the_hosts_own_copies(tmp_path: Path) -> None:
    # The model finds the worker's shared memory and keeps overwriting it after its first
    # reply: the host's copy does not change; a view (copy=False) does, as documented; the
    # walk through the interpreter's objects that found it is reported.
    path = hostile.write(tmp_path / "rewrite.pkl", hostile.rewrite_outputs())
    x = np.ones(1 << 16, np.float32)  # 256 KiB: through shared memory both ways
    with runner.Sandbox(path) as sb:
        (first,) = sb.infer({"x": x}).values()  # starts the rewriting
        assert np.all(first == 2)
        time.sleep(1.0)
        assert np.all(first == 2)  # still the host's own copy
        (view,) = sb.infer({"x": x}, copy=False).values()
        time.sleep(0.2)
        assert not np.array_equal(view, 2 * x)  # shared memory, rewritten under the caller
    found = [f for f in sb.report().findings if f.rule_id == "AL607"]
    assert found and "gc.get_objects" in found[0].message


def test_a_swapped_data_socket_gets_nothing(tmp_path: Path) -> None:
    # The model replaces its data socket with a symlink to a socket of the host: the host
    # checks who answers before sending anything, sends nothing there, and uses gRPC.
    decoy = tmp_path / "decoy.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(decoy))
    listener.listen(4)
    listener.settimeout(0.2)
    path = hostile.write(tmp_path / "swap.pkl", hostile.swap_data_socket(str(decoy)))
    x = np.ones(1 << 16, np.float32)
    with listener, runner.Sandbox(path) as sb:
        (out,) = sb.infer({"x": x}).values()
        received = []
        with contextlib.suppress(TimeoutError):
            while True:
                conn, _ = listener.accept()
                with conn:
                    conn.settimeout(2)
                    received.append(conn.recvmsg(64, socket.CMSG_SPACE(64))[:2])
    np.testing.assert_array_equal(out, 2 * x)
    assert received, "the host never followed the symlink: the test proves nothing"
    assert all(data == b"" and not ancillary for data, ancillary in received)
    report = sb.report()
    assert any("outside the sandbox" in n for n in report.notes)
    writes = [f for f in report.findings if f.rule_id == "AL305"]  # into the run directory
    assert any("data.sock" in f.message for f in writes)
