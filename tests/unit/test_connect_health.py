"""The startup wait both the Docker backend and the in-Pod controller use (pure logic)."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.channel.client import RpcFailure
from runner.controller import connect
from runner.errors import DeadlineExceeded
from runner.policy import Deadline, Policy
from runner.rules.analysis import Collected


class _Client:
    def __init__(self, failures: int) -> None:
        self.failures, self.calls = failures, 0

    def health(self, timeout_s: float) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise RpcFailure("UNAVAILABLE", "not yet")


def _collected() -> Collected:
    return Collected.__new__(Collected)  # only its deadline is set here


def test_it_returns_once_the_worker_answers(tmp_path: Path) -> None:
    sock = tmp_path / "worker.sock"
    sock.touch()
    client = _Client(failures=2)
    connect.await_health(client, sock, Policy(), _collected(), "hint")  # type: ignore[arg-type]
    assert client.calls == 3


def test_past_the_deadline_it_says_so_and_records_it(tmp_path: Path) -> None:
    collected = _collected()
    policy = Policy(startup_timeout_s=0.05)
    with pytest.raises(DeadlineExceeded) as e:
        connect.await_health(
            _Client(0),  # type: ignore[arg-type]
            tmp_path / "never.sock",
            policy,
            collected,
            "check the pod",
        )
    assert "startup_timeout_s=0.05" in e.value.message and e.value.hint == "check the pod"
    assert collected.deadline is Deadline.STARTUP


def test_a_worker_known_gone_ends_the_wait(tmp_path: Path) -> None:
    def gone() -> None:
        raise RuntimeError("exited")

    with pytest.raises(RuntimeError, match="exited"):
        connect.await_health(
            _Client(0),  # type: ignore[arg-type]
            tmp_path / "never.sock",
            Policy(),
            _collected(),
            "hint",
            gone,
        )
