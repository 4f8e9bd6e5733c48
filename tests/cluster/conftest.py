"""A real Ray cluster on this machine: a head and one more node (`ray start`, each with its own
temp dir and ports), each with 1 CPU, 3 GiB of memory, one sandbox slot and the labels Airlock
routes by, each running sandboxes through the local Docker engine. Module-scoped: a test
file's tests share one cluster. Its processes are found by their temp dirs and killed by pid."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from runner.backends import ray_nodes

RAY = str(Path(sys.executable).with_name("ray"))
NODE_ARGS = [
    "--node-ip-address=127.0.0.1",
    "--num-cpus=1",
    f"--memory={3 << 30}",
    f"--object-store-memory={200 << 20}",
    f"--resources={json.dumps({ray_nodes.SANDBOX_RESOURCE: 1})}",
    f"--labels={ray_nodes.ENGINE_LABEL}=docker,airlock-runc=1",
    "--disable-usage-stats",
]
WORKER_PORTS = (
    "--node-manager-port",
    "--object-manager-port",
    "--dashboard-agent-listen-port",
    "--dashboard-agent-grpc-port",
    "--metrics-export-port",
    "--runtime-env-agent-port",
)


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def processes(marker: str) -> list[psutil.Process]:
    """The processes started for a node (their command lines name its temp dir), with all
    their descendants (Ray's agents rename themselves), gathered before any is killed."""
    found: dict[int, psutil.Process] = {}
    for p in psutil.process_iter(["cmdline"]):
        if p.pid != os.getpid() and any(marker in a for a in p.info["cmdline"] or []):
            found[p.pid] = p
            with contextlib.suppress(psutil.Error):
                found.update({c.pid: c for c in p.children(recursive=True)})
    return list(found.values())


def kill(marker: str) -> None:
    procs = processes(marker)
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(procs, timeout=15)


@dataclass
class RayCluster:
    address: str
    head_dir: Path
    worker_dir: Path

    def kill_worker(self) -> None:
        """The second node dies at once: its raylet, its agents and every worker it ran."""
        kill(str(self.worker_dir))


def _log(tmp: Path) -> str:
    logs = [*tmp.glob("*.log"), *tmp.glob("**/logs/raylet.out"), *tmp.glob("**/logs/raylet.err")]
    return "\n".join(f"--- {p}\n{p.read_text(errors='replace')[-3000:]}" for p in logs)


LOOPBACK = Path(__file__).parent / "ray_loopback"  # see its sitecustomize.py


def _loopback_env() -> dict[str, str]:
    """PYTHONPATH with the loopback patch first, for every process the tests start."""
    path = os.environ.get("PYTHONPATH", "")
    return {"PYTHONPATH": os.pathsep.join(p for p in (str(LOOPBACK), path) if p)}


def _ray_start(args: list[str], log: Path) -> None:
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", **_loopback_env()}
    with log.open("w") as out:
        subprocess.run(
            [RAY, "start", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            check=True,
            timeout=120,
        )


def _start(tmp: Path) -> RayCluster:
    head, worker = tmp / "h", tmp / "w"
    port, *ports = _free_ports(1 + len(WORKER_PORTS))
    _ray_start(
        ["--head", f"--port={port}", *NODE_ARGS, f"--temp-dir={head}", "--include-dashboard=false"],
        tmp / "head.log",
    )
    low = _free_ports(1)[0]
    _ray_start(
        [
            f"--address=127.0.0.1:{port}",
            *NODE_ARGS,
            f"--temp-dir={worker}",
            *(f"{flag}={p}" for flag, p in zip(WORKER_PORTS, ports, strict=True)),
            f"--min-worker-port={low}",
            f"--max-worker-port={low + 40}",
        ],
        tmp / "worker.log",
    )
    return RayCluster(f"127.0.0.1:{port}", head, worker)


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[RayCluster]:
    # a short temp dir: Ray's Unix socket paths must fit in 107 bytes
    tmp = Path(tempfile.mkdtemp(prefix="rt-", dir="/tmp"))  # tests know it by /tmp/rt-
    import tests.cluster.ray_loopback.sitecustomize  # noqa: F401  (this process's Ray too)

    saved = os.environ.get("PYTHONPATH")
    os.environ.update(_loopback_env())  # the airlock drivers the tests start inherit it
    try:
        for attempt in range(3):  # a raylet can die when its agents start slowly here
            try:
                cluster = _start(tmp)
                break
            except (subprocess.SubprocessError, OSError) as e:
                log = _log(tmp)
                kill(str(tmp))
                if attempt == 2:
                    pytest.fail(f"the Ray cluster did not start: {e}\n{log}")
        yield cluster
    finally:
        kill(str(tmp))
        shutil.rmtree(tmp, ignore_errors=True)
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved
