"""The Ray backend on a real two-node Ray cluster on this machine, each node running sandboxes
through the local Docker engine: the same verdicts as the local backend, spread over both
nodes; Ctrl-C leaves nothing behind and --resume completes the batch; a node killed mid-batch
loses no model's line."""

from __future__ import annotations

import json
import os
import pickle
import re
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from runner.controller import engine as _docker
from runner.controller import sessions as _sessions
from tests.cluster.conftest import RayCluster
from tests.fixtures import batch as batch_fixture
from tests.fixtures import hostile
from tests.hostile.pickles import Asm
from tests.sandbox.test_cli import AIRLOCK, ROOT, airlock

pytestmark = pytest.mark.docker

CLUSTER_MARK = "/tmp/rt-"  # the fixture's temp dirs
# tight, so the hanging fixtures end soon; the mixed batch, whose benign torch files must load
# in time with both nodes busy, allows them twice as long
LIMITS = ["--memory", "1g", "--load-timeout", "10", "--call-timeout", "10"]
ROOMY = ["--memory", "1g", "--load-timeout", "20", "--call-timeout", "20"]


def _hang(path: Path) -> None:
    hostile.write(path, Asm().call("time", "sleep", 600).stop())  # a bounded sleep, no gadget


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _verdicts(out: Path) -> dict[str, object]:
    return {Path(str(r["path"])).name: r["verdict"] for r in _lines(out / "results.jsonl")}


def _why(out: Path, names: set[str]) -> str:
    """The top findings and error of the named models' lines: what a failed comparison shows."""
    rows = [r for r in _lines(out / "results.jsonl") if Path(str(r["path"])).name in names]
    return "; ".join(
        f"{r['path']}: {r['verdict']} {r.get('top_findings')} {r.get('error')}" for r in rows
    )


def _ours(owner: str) -> bool:
    """Whether a sandbox's owner (pid:create_time) was this test's (a node's worker, an eval
    process) or is dead: another engineer's live sandboxes on this machine are not ours."""
    pid, _, created = owner.partition(":")
    try:
        proc = psutil.Process(int(pid))
        if created and abs(proc.create_time() - float(created)) >= 1.0:
            return True  # that process is gone: a leftover
    except (psutil.NoSuchProcess, ValueError):
        return True
    me = os.getpid()
    try:  # a worker of our cluster's raylets (their command lines name its temp dir)
        family = [proc, *proc.parents()]
        return any(p.pid == me or CLUSTER_MARK in " ".join(p.cmdline()) for p in family)
    except psutil.Error:
        return True


def _containers() -> list[str]:
    return [
        c.name for c in _docker.list_sessions() if _ours(c.labels.get(_docker.OWNER_PID_LABEL, ""))
    ]


def leftovers() -> list[str]:
    """Our sandboxes' containers, directories and tmpfs mounts still on this machine."""
    left = [f"container {name}" for name in _containers()]
    for d in _sessions.tmp_base().glob(f"{_sessions.DIR_PREFIX}*/owner.json"):
        try:
            owner = json.loads(d.read_text())
            if _ours(f"{owner['pid']}:{owner['create_time']}"):
                left.append(f"directory {d.parent}")
        except (OSError, ValueError, KeyError):
            left.append(f"directory {d.parent} (unreadable owner)")
    base = f"{_sessions.tmp_base()}/{_sessions.DIR_PREFIX}"
    for line in Path("/proc/mounts").read_text().splitlines():
        mount = line.split()[1]
        if mount.startswith(base) and not Path(mount).parent.joinpath("owner.json").exists():
            left.append(f"mount {mount}")
    return left


def _nodes_used(stderr: str) -> set[str]:
    return set(re.findall(r"ran on Ray node ([0-9a-f]+)", stderr))


def _ray(cluster: RayCluster, *args: str) -> list[str]:
    return [*AIRLOCK, "-v", "eval", *args, "--backend", "ray", "--address", cluster.address]


def test_mixed_batch_gives_the_local_verdicts_on_both_nodes(
    ray_cluster: RayCluster, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    expected = batch_fixture.build(models, full=False)
    _hang(models / "hang.pkl")
    expected["hang.pkl"] = "suspicious"
    local = airlock("eval", str(models), "--jobs", "2", "--out", str(tmp_path / "l"), *ROOMY)
    assert local.returncode == 1, local.stderr
    proc = subprocess.run(
        _ray(ray_cluster, str(models), "--out", str(tmp_path / "r"), *ROOMY),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    for run in ("l", "r"):
        got = _verdicts(tmp_path / run)
        odd = {n for n in set(got) | set(expected) if got.get(n) != expected.get(n)}
        assert not odd, f"{run}: {_why(tmp_path / run, odd)}"
    lines = _lines(tmp_path / "r" / "results.jsonl")
    assert all((tmp_path / "r" / str(r["report"])).is_file() for r in lines if r["report"])
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["models"] == len(expected)
    assert len(_nodes_used(proc.stderr)) == 2, proc.stderr[-3000:]
    assert leftovers() == []


def test_a_sandbox_no_node_can_run_is_refused_before_anything_runs(
    ray_cluster: RayCluster, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "plain.pkl").write_bytes(pickle.dumps({"step": 1}))
    for extra, asked in ((["--memory", "8g"], "8.0 GiB memory"), (["--cpus", "2"], "2 CPU")):
        out = tmp_path / "o"
        argv = [*AIRLOCK, "eval", str(models), "--backend", "ray", "--out", str(out), *extra]
        proc = subprocess.run(
            [*argv, "--address", ray_cluster.address],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 2, proc.stderr
        line = proc.stderr.strip().splitlines()[-1]
        assert line.startswith("airlock: error: no node of the Ray cluster"), proc.stderr
        assert "Traceback" not in proc.stderr
        assert asked in line and "the largest is node" in line and "3.0 GiB memory" in line
    written = tmp_path / "o" / "results.jsonl"
    assert not (written.exists() and _lines(written)) and leftovers() == []  # nothing ran


def test_ctrl_c_leaves_nothing_and_resume_completes(
    ray_cluster: RayCluster, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    batch_fixture.build(models, full=False)
    _hang(models / "hang1.pkl")
    _hang(models / "hang2.pkl")
    out = tmp_path / "out"
    run = subprocess.Popen(
        _ray(ray_cluster, str(models), "--out", str(out), *LIMITS),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    results = out / "results.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and run.poll() is None:
        if results.exists() and len(_lines(results)) >= 1:
            break
        time.sleep(0.2)
    time.sleep(3)  # the next models' sandboxes start
    assert run.poll() is None and _containers(), "nothing running to interrupt"
    run.send_signal(signal.SIGINT)
    _, stderr = run.communicate(timeout=180)
    assert run.returncode == 130, stderr[-3000:]
    assert leftovers() == []
    partial = len(_lines(results))
    assert 1 <= partial < 6
    again = subprocess.run(
        _ray(ray_cluster, str(models), "--out", str(out), "--resume", *LIMITS),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert again.returncode == 1, again.stderr[-3000:]
    names = [Path(str(r["path"])).name for r in _lines(results)]
    assert sorted(names) == sorted(p.name for p in models.iterdir() if p.suffix != ".txt")
    assert len(names) == len(set(names))
    assert leftovers() == []


def test_node_killed_mid_batch_loses_no_line(ray_cluster: RayCluster, tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    _hang(models / "hang1.pkl")
    _hang(models / "hang2.pkl")
    (models / "plain.pkl").write_bytes(pickle.dumps({"step": 1}))
    out = tmp_path / "out"
    run = subprocess.Popen(
        _ray(ray_cluster, str(models), "--out", str(out), *LIMITS),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and run.poll() is None:
        if len(_containers()) >= 2:
            break  # both nodes run a hanging model
        time.sleep(0.2)
    assert len(_containers()) >= 2, "the hanging models did not start on both nodes"
    ray_cluster.kill_worker()
    _, stderr = run.communicate(timeout=400)
    assert run.returncode in (1, 3), stderr[-3000:]
    lines = _lines(out / "results.jsonl")
    names = sorted(Path(str(r["path"])).name for r in lines)
    assert names == ["hang1.pkl", "hang2.pkl", "plain.pkl"]
    for r in lines:
        assert r["verdict"] in ("suspicious", "clean") or "Ray" in str(r["error"]), r
    assert leftovers() == []
