"""Data-plane frames, the same on both sides of the socket: the status codes of a reply, where
tensors start in shared memory, how a tensor in shared memory is written and described, and how
exactly n bytes are read. See the "Data plane" comment in proto/airlock/worker/v1/worker.proto.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

import numpy as np

from runner.worker.shared import tensors

STATUS_OK, STATUS_BAD_INPUT, STATUS_MODEL_RAISED, STATUS_INTERNAL = 0, 2, 3, 4
ALIGN = 64


def align(n: int) -> int:
    """n rounded up to where the next tensor may start. Used by both sides."""
    return (n + ALIGN - 1) // ALIGN * ALIGN


def describe_shared(name: str, arr: np.ndarray, offset: int, msg: Any) -> None:
    """Describe in msg an array that lies in shared memory at offset. Used by both sides."""
    tensors.describe(name, arr, msg)
    msg.in_shm, msg.shm_offset, msg.shm_length = True, offset, arr.nbytes


def put_tensor(buffer: Any, offset: int, name: str, arr: np.ndarray, msg: Any) -> int:
    """Write arr into a shared-memory buffer at offset, describe it in msg; return the aligned
    offset after it. Used by both sides."""
    little = tensors.little_endian(name, arr)
    target = np.frombuffer(buffer, dtype=little.dtype, count=little.size, offset=offset)
    target[:] = little.reshape(-1)
    describe_shared(name, little, offset, msg)
    return align(offset + little.nbytes)


def recv_exact(conn: socket.socket, n: int) -> bytes | None:
    """Exactly n bytes, or None when the peer closed first. Used by both sides."""
    chunks = []
    while n:
        chunk = conn.recv(min(n, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def recv_spinning(conn: socket.socket, n: int, spin_s: float) -> bytes | None:
    """Like recv_exact, but the first bytes are polled for without sleeping for up to spin_s
    first: on a call loop the reply (or the next request) comes within tens of microseconds,
    and waking a thread that slept costs as much again. A blocking socket is polled with
    MSG_DONTWAIT (no fcntl: the tracer stops on it), one with a timeout (non-blocking
    underneath) with plain reads."""
    deadline = time.perf_counter() + spin_s
    blocking = conn.gettimeout() is None
    while True:
        try:
            chunk = conn.recv(n, socket.MSG_DONTWAIT) if blocking else os.read(conn.fileno(), n)
        except BlockingIOError:
            if time.perf_counter() < deadline:
                continue
            return recv_exact(conn, n)
        if not chunk:
            return None
        if len(chunk) == n:
            return chunk
        rest = recv_exact(conn, n - len(chunk))
        return None if rest is None else chunk + rest
