"""The worker's data plane: inference calls over a plain Unix socket, large tensors through a
shared-memory file. See the "Data plane" comment in proto/airlock/worker/v1/worker.proto."""

from __future__ import annotations

import mmap
import os
import socket
import struct
import sys
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from . import tensors
from ._proto import worker_pb2 as pb

STATUS_OK, STATUS_BAD_INPUT, STATUS_MODEL_RAISED, STATUS_INTERNAL = 0, 2, 3, 4
ALIGN = 64


class CallError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class SharedMemory:
    """The per-sandbox tensor file, mapped read-write."""

    def __init__(self, path: str) -> None:
        fd = os.open(path, os.O_RDWR)
        try:
            self.size = os.fstat(fd).st_size
            self.map = mmap.mmap(fd, self.size) if self.size else None
        finally:
            os.close(fd)

    def view(self, offset: int, length: int) -> memoryview:
        if self.map is None or offset + length > self.size:
            raise CallError(STATUS_BAD_INPUT, "a tensor lies outside the shared-memory file")
        return memoryview(self.map)[offset:offset + length]


def decode_inputs(request: Any, shm: SharedMemory | None) -> tuple[dict[str, np.ndarray], int]:
    """Inputs as arrays (shared-memory ones are views, not copies), and where outputs may
    start in the shared-memory file."""
    feed: dict[str, np.ndarray] = {}
    end = 0
    for t in request.inputs:
        if t.in_shm:
            if shm is None:
                raise CallError(STATUS_BAD_INPUT, "no shared-memory file in this sandbox")
            buf = shm.view(t.shm_offset, t.shm_length)
            msg = pb.Tensor(name=t.name, dtype=t.dtype, shape=list(t.shape))
            name, arr = tensors.decode_buffer(msg, buf)
            end = max(end, t.shm_offset + t.shm_length)
        else:
            name, arr = tensors.decode(t)
        feed[name] = arr
    return feed, end


def put_tensor(buffer: Any, offset: int, name: str, arr: np.ndarray, msg: Any) -> int:
    """Write arr into a shared-memory buffer at offset, describe it in msg; return the aligned
    offset after it. Used by both sides."""
    little = tensors.little_endian(name, arr)
    target = np.frombuffer(buffer, dtype=little.dtype, count=little.size, offset=offset)
    target[:] = little.reshape(-1)
    tensors.describe(name, little, msg)
    msg.in_shm, msg.shm_offset, msg.shm_length = True, offset, little.nbytes
    return (offset + little.nbytes + ALIGN - 1) // ALIGN * ALIGN


def encode_outputs(outputs: dict[str, np.ndarray], reply: Any, shm: SharedMemory | None,
                   start: int, threshold: int) -> None:
    offset = (start + ALIGN - 1) // ALIGN * ALIGN
    for name, arr in outputs.items():
        arr = np.asarray(arr)
        msg = reply.outputs.add()
        if (shm is not None and shm.map is not None and arr.nbytes >= threshold
                and offset + arr.nbytes <= shm.size):
            offset = put_tensor(shm.map, offset, name, arr, msg)
        else:
            tensors.encode(name, arr, msg)


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


def serve(path: str, handle: Callable[[Any], Any], max_bytes: int) -> threading.Thread:
    """Accept the controller's connection and answer frames until it goes away."""
    if os.path.exists(path):
        os.unlink(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)

    def loop() -> None:
        while True:
            conn, _ = listener.accept()
            with conn:
                _answer(conn, handle, max_bytes)

    thread = threading.Thread(target=loop, name="airlock-dataplane", daemon=True)
    thread.start()
    return thread


def _answer(conn: socket.socket, handle: Callable[[Any], Any], max_bytes: int) -> None:
    while True:
        head = recv_exact(conn, 4)
        if head is None:
            return
        (length,) = struct.unpack("<I", head)
        if length > max_bytes:
            _reply(conn, STATUS_BAD_INPUT, b"request larger than the limit")
            return
        body = recv_exact(conn, length)
        if body is None:
            return
        try:
            request = pb.InferRequest.FromString(body)
            reply = handle(request)
            _reply(conn, STATUS_OK, reply.SerializeToString())
        except CallError as e:
            _reply(conn, e.status, str(e).encode("utf-8", "replace")[:4096])
        except Exception as e:  # never let one bad call end the data plane
            print(f"dataplane: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
            _reply(conn, STATUS_INTERNAL, f"{type(e).__name__}: {e}".encode()[:4096])


def _reply(conn: socket.socket, status: int, payload: bytes) -> None:
    # sendmsg, not send (which libc makes a sendto): the tracer watches sendto for network
    # attempts, and the data plane must not stop for it on every call
    data = memoryview(struct.pack("<BI", status, len(payload)) + payload)
    while data:
        sent = conn.sendmsg([data])
        data = data[sent:]


