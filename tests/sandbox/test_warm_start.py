"""Warm starts (runner.controller.zygote), seen from the host: the forked worker is confined like
its fresh container's own first process, is traced before the model is read, and nothing is
left behind; a warm start that cannot be had falls back to a cold one; a tracer that dies under
a running worker leaves a report that is not clean."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

import runner
from runner.controller import engine, sessions
from runner.controller.zygote import NAMESPACES, Zygote, differences
from tests.fixtures import models

WARM_NOTE = "warm start: the worker was forked"


@pytest.fixture(scope="module")
def zygote() -> Iterator[Zygote]:
    with Zygote(runner.Policy(), formats=("torchscript", "torch")) as z:
        yield z


def _status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


def _left(session: str) -> list[str]:
    out = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=airlock.session={session}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    if (sessions.tmp_base() / f"{sessions.DIR_PREFIX}{session}").exists():
        out.append("its session directory")
    return out


def _tracers_of(init: int) -> list[int]:
    """nsenter/strace processes still attached to the container whose first process is init."""
    found = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = p.info["cmdline"] or []
        if cmd[:3] == ["nsenter", "--target", str(init)]:
            found.append(p.info["pid"])
    return found


def test_a_forked_worker_is_confined_like_its_container(zygote: Zygote, tmp_path: Path) -> None:
    x = models.sample_input()
    path = models.torchscript_model(tmp_path, x).path
    with runner.Sandbox(path, runner.Policy(), zygote=zygote) as sb:
        run = sb._run
        assert run is not None and run.warm is not None
        pid, container = run.warm.pid, run.container
        init = engine.host_pid(container)
        assert init is not None
        assert differences(pid, init) == []
        # and checked here on its own terms, not only by the code under test
        st = _status(pid)
        assert st["Uid"].split() == ["10001"] * 4 and st["Gid"].split() == ["10001"] * 4
        for caps in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
            assert int(st[caps], 16) == 0, caps
        assert st["NoNewPrivs"] == "1" and st["Seccomp"] == "2"
        for ns in (*NAMESPACES, "user", "net"):
            assert os.readlink(f"/proc/{pid}/ns/{ns}") == os.readlink(f"/proc/{init}/ns/{ns}")
        assert container in Path(f"/proc/{pid}/cgroup").read_text()
        tracer = int(st["TracerPid"])
        assert Path(f"/proc/{tracer}/comm").read_text().strip() == "strace"
        lines = [ln.split(":", 2) for ln in Path(f"/proc/{tracer}/cgroup").read_text().split()]
        cpu = [path for _, names, path in lines if {"cpu", "cpuacct"} & set(names.split(","))]
        assert cpu and all(container in p for p in cpu)  # its CPU counts against the sandbox
        assert len(st["NSpid"].split()) == 2  # a member of the container's PID namespace
        # the zygote's container mounts nothing of any model
        assert zygote.container is not None
        mounts = engine.client().api.inspect_container(zygote.container)["Mounts"]
        assert [m["Destination"] for m in mounts] == ["/airlock/run"]
        assert sb.infer(x)
    report = sb.report()
    assert any(n.startswith(WARM_NOTE) for n in report.notes), report.notes
    assert report.verdict is runner.Verdict.CLEAN, [f.evidence for f in report.findings]
    assert report.tracer is not None and report.tracer.worker_exit == "exited with 0"
    assert _left(sb.session) == [] and _tracers_of(init) == []
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_differences_names_a_process_that_is_not_confined(zygote: Zygote) -> None:
    assert zygote.container is not None
    init = engine.host_pid(zygote.container)
    assert init is not None
    problems = differences(os.getpid(), init)  # this test process: the host's, root
    assert any(p.startswith("another mnt namespace") for p in problems), problems
    assert any(p.startswith("Uid") for p in problems) and any("CapEff" in p for p in problems)


def test_a_sandbox_starts_cold_when_its_zygote_is_gone(tmp_path: Path) -> None:
    x = models.sample_input()
    path = models.torchscript_model(tmp_path, x).path
    with Zygote(runner.Policy(), formats=("torchscript",)) as z:
        assert z.container is not None
        engine.kill(z.container)  # behind its back: the zygote's socket answers no more
        engine.wait(z.container, timeout_s=10)
        with runner.Sandbox(path, runner.Policy(), zygote=z) as sb:
            assert sb.infer(x)
        session = z.session
    report = sb.report()
    assert not any(n.startswith(WARM_NOTE) for n in report.notes)
    assert any(n.startswith("warm start:") and "started cold" in n for n in report.notes)
    assert report.verdict is runner.Verdict.CLEAN
    assert _left(sb.session) == [] and _left(session) == []


def test_a_tracer_killed_under_a_running_worker_is_not_clean(
    zygote: Zygote, tmp_path: Path
) -> None:
    x = models.sample_input()
    path = models.torchscript_model(tmp_path, x).path
    sb = runner.Sandbox(path, runner.Policy(), zygote=zygote)
    with pytest.raises(runner.AirlockError), sb:
        run = sb._run
        assert run is not None and run.warm is not None
        os.kill(int(_status(run.warm.pid)["TracerPid"]), signal.SIGKILL)
        for _ in range(100):  # the host's watcher kills the container, and the worker with it
            if run.worker_exited(0.1):
                break
        sb.infer(x)
    report = sb.report()
    assert report.verdict not in (runner.Verdict.CLEAN, runner.Verdict.SUSPICIOUS)
    assert report.error is not None  # the run could not be judged whole
    assert any("strace ended before the warm worker" in n for n in report.notes)
    assert _left(sb.session) == []


def test_a_batch_forks_its_workers_warm_and_leaves_nothing(tmp_path: Path) -> None:
    before = {c.id for c in engine.list_sessions()}  # this module's own zygote
    dirs_before = set(sessions.tmp_base().glob(f"{sessions.DIR_PREFIX}*"))
    x = models.sample_input()
    dirs = [tmp_path / str(i) for i in range(3)]
    for d in dirs:
        d.mkdir()
    paths = [models.torchscript_model(d, x).path for d in dirs]
    out = tmp_path / "out"
    results = list(runner.evaluate(paths, jobs=2, out_dir=out))
    assert [r.verdict for r in results] == [runner.Verdict.CLEAN] * 3, [r.error for r in results]
    for f in (out / "reports").glob("*.json"):
        assert WARM_NOTE in f.read_text()
    assert [c.name for c in engine.list_sessions() if c.id not in before] == []
    assert set(sessions.tmp_base().glob(f"{sessions.DIR_PREFIX}*")) <= dirs_before


def test_eval_cold_forks_nothing_and_cold_is_for_the_local_backend(tmp_path: Path) -> None:
    from tests.sandbox.test_cli import airlock

    x = models.sample_input()
    (tmp_path / "m").mkdir()
    models.torchscript_model(tmp_path / "m", x)
    models.full_module_pickle(tmp_path / "m", x)
    out = tmp_path / "out"
    proc = airlock("eval", str(tmp_path / "m"), "--cold", "--jobs", "2", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    reports = list((out / "reports").glob("*.json"))
    assert len(reports) == 2 and not any(WARM_NOTE in f.read_text() for f in reports)
    proc = airlock("eval", str(tmp_path / "m"), "--cold", "--backend", "ray", "--out", str(out))
    assert proc.returncode == 2 and "--cold is for the local backend" in proc.stderr
    assert "Traceback" not in proc.stderr
