"""The gateway itself killed: `airlock serve` SIGKILLed (no drain, no finally) leaves its replica
behind, labelled with its owner's pid and start time; the next reap (`airlock gc`, and every
sandbox start) sees the owner is gone and removes it. Loopback only, one replica."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import docker
import pytest

from runner.controller import engine, sessions
from tests.fixtures.models import sample_input, torchscript_model

pytestmark = pytest.mark.timeout(300)


def _owned_by(pid: int) -> list[str]:
    client = docker.from_env()
    try:
        found = client.containers.list(all=True, filters={"label": "airlock.session"})
        return [
            c.id
            for c in found
            if (c.labels.get(engine.OWNER_PID_LABEL) or "").split(":")[0] == str(pid)
        ]
    finally:
        client.close()


def test_a_sigkilled_gateway_leaves_nothing_the_next_reap_misses(tmp_path: Path) -> None:
    built = torchscript_model(tmp_path, sample_input(2))
    cmd = [sys.executable, "-m", "runner.cli", "serve", str(built.path)]
    cmd += ["--grpc-port", "0", "--http-port", "0"]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=dict(os.environ)
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert re.search(r"gRPC 127\.0\.0\.1:\d+", line), line
        left = _owned_by(proc.pid)
        assert len(left) == 1  # its one replica
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    assert _owned_by(proc.pid) == left  # nothing could remove it: the gateway died at once
    sessions.reap()  # what `airlock gc` and every sandbox start run
    assert not _owned_by(proc.pid)
