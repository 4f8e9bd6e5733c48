"""Connect: the gRPC channel to a started worker, and the data plane for inference.

The worker is asked for its health over the Unix socket in the run directory until it answers,
the container stops, or the startup deadline passes. The data plane's socket is trusted only
once the host has checked that the process at its other end is in the container's cgroup: the
worker owns the run directory, so model code could swap the socket for one of the host's.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from runner.channel.client import RpcFailure, WorkerClient
from runner.channel.dataplane import DataPlane
from runner.controller import engine
from runner.controller.failures import diagnose
from runner.controller.launch import DATA_SOCKET_NAME, SOCKET_NAME, Running
from runner.errors import DeadlineExceeded, UsageError
from runner.policy import Deadline, Policy
from runner.rules.analysis import Collected
from runner.worker.shared import tensors

POLL_S = 0.02


def wait_for_worker(run_dir: Path, policy: Policy, run: Running) -> WorkerClient:
    """A client to the worker once it answers its health check. The caller closes it."""
    client = WorkerClient(
        str(run_dir / SOCKET_NAME), policy.max_reply_bytes, policy.max_request_bytes
    )

    def still_running() -> None:
        if run.worker_exited():
            raise diagnose("the worker exited during startup", policy, run)

    try:
        await_health(
            client,
            run_dir / SOCKET_NAME,
            policy,
            run.collected,
            "raise the startup timeout, or check 'airlock doctor'",
            still_running,
        )
        return client
    except BaseException:
        client.close()
        raise


def await_health(
    client: WorkerClient,
    socket_path: Path,
    policy: Policy,
    collected: Collected,
    hint: str,
    still_running: Callable[[], None] = lambda: None,
) -> None:
    """Ask the worker for its health over its socket until it answers; `still_running` raises
    when the worker is known to be gone; past the startup deadline, DeadlineExceeded (with
    `hint`) and the deadline recorded in `collected`."""
    deadline = time.monotonic() + policy.startup_timeout_s
    while True:
        if socket_path.exists():
            try:
                client.health(timeout_s=1.0)
                return
            except RpcFailure:
                pass
        still_running()
        if time.monotonic() > deadline:
            collected.deadline = Deadline.STARTUP
            raise DeadlineExceeded(
                f"the worker did not answer within startup_timeout_s={policy.startup_timeout_s}",
                hint,
                deadline=Deadline.STARTUP,
            )
        time.sleep(POLL_S)


def open_data_plane(run_dir: Path, policy: Policy, run: Running) -> DataPlane | None:
    """The shared-memory data plane, or None when it could not be had (inference then goes
    over gRPC, and a note says why)."""
    notes = run.collected.notes
    p = policy
    try:
        data = DataPlane(
            run_dir / DATA_SOCKET_NAME, p.shm_bytes, p.max_reply_bytes, p.max_request_bytes
        )
    except OSError as e:  # no memory for it, an address-space limit: go without
        notes.append(f"no shared memory for tensors ({e.strerror}): every tensor went inline")
        data = DataPlane(run_dir / DATA_SOCKET_NAME, 0, p.max_reply_bytes, p.max_request_bytes)

    def peer_ok(pid: int) -> bool:
        if engine.pid_in_container(pid, run.container):
            return True
        notes.append(
            f"the data socket led to a process outside the sandbox (pid {pid}): "
            "nothing was sent to it; inference went over gRPC"
        )
        return False

    connected = False
    try:
        connected = data.connect(timeout_s=2.0, peer_ok=peer_ok)
    finally:
        if not connected:
            data.close()
    return data if connected else None


def shared_array(
    data: DataPlane | None, policy: Policy, shape: tuple[int, ...] | int, dtype: Any
) -> np.ndarray:
    """An uninitialised array in the data plane's shared memory (Sandbox.shared_array)."""
    dims = (shape,) if isinstance(shape, int) else tuple(int(d) for d in shape)
    dt = np.dtype(dtype)
    if dt.name not in tensors.ALLOWED_DTYPES or any(d < 0 for d in dims):
        raise UsageError(
            f"cannot make a shared {dt.name} array of shape {list(dims)}",
            f"use one of {', '.join(sorted(tensors.ALLOWED_DTYPES))} and sizes >= 0",
        )
    if data is None or not data.connected or not policy.shm_bytes:
        raise UsageError(
            "this sandbox has no shared-memory data path",
            "give it one with Policy(shm_bytes=...) (the default is 256 MiB)",
        )
    arr = data.shared_array(dims, dt)
    if arr is None:
        free = max((g[1] for g in data.regions.gaps()), default=0)
        raise UsageError(
            f"no room for a shared array of {math.prod(dims) * dt.itemsize}"
            f" bytes (the largest free range is {free} bytes)",
            "drop shared arrays and output views you no longer need, or raise Policy.shm_bytes",
        )
    return arr
