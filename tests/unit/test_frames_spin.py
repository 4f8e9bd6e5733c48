"""recv_spinning: a frame's first bytes polled for without sleeping, then read as recv_exact
reads them, on blocking sockets (the worker's) and sockets with a timeout (the host's)."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from runner.worker.shared.frames import recv_spinning


@pytest.fixture(params=[None, 2.0], ids=["blocking", "timeout"])
def pair(request: pytest.FixtureRequest) -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair()
    a.settimeout(request.param)
    yield a, b
    a.close()
    b.close()


def test_data_already_there(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    b.sendall(b"hello world")
    assert recv_spinning(a, 5, 1e-3) == b"hello"
    assert recv_spinning(a, 6, 1e-3) == b" world"


def test_data_after_the_spin_is_read_blocking(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    timer = threading.Timer(0.05, b.sendall, args=(b"late!",))
    timer.start()
    start = time.monotonic()
    assert recv_spinning(a, 5, 1e-4) == b"late!"
    assert time.monotonic() - start >= 0.04  # it waited for them, after spinning
    timer.join()


def test_bytes_split_across_writes(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    b.sendall(b"ab")
    timer = threading.Timer(0.02, b.sendall, args=(b"cde",))
    timer.start()
    assert recv_spinning(a, 5, 1e-3) == b"abcde"
    timer.join()


def test_peer_closed_before_and_midway(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    b.sendall(b"ab")
    b.close()
    assert recv_spinning(a, 5, 1e-3) is None
    assert recv_spinning(a, 1, 1e-3) is None


def test_a_timeout_still_applies_after_the_spin() -> None:
    a, b = socket.socketpair()
    a.settimeout(0.05)
    with a, b, pytest.raises(TimeoutError):
        recv_spinning(a, 4, 1e-4)


def test_the_hosts_poll_follows_the_model() -> None:
    from runner.channel.dataplane import MAX_SPIN_S, SPIN_S, next_spin

    assert next_spin(0.0) == SPIN_S  # never less than the floor
    assert next_spin(200e-6) == pytest.approx(400e-6)  # twice the last wait
    assert next_spin(0.9e-3) == MAX_SPIN_S  # capped
    assert next_spin(MAX_SPIN_S * 1.01) == SPIN_S  # a slow model is waited for asleep
    assert next_spin(30.0) == SPIN_S
