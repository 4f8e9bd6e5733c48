"""The worker's data plane: inference calls over a plain Unix socket, large tensors through
shared memory the host creates and passes over that socket. See the "Data plane" comment in
proto/airlock/worker/v1/worker.proto."""

from __future__ import annotations

import array
import functools
import math
import mmap
import os
import socket
import struct
import sys
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from runner.worker.shared import tensors
from runner.worker.shared._proto import worker_pb2 as pb
from runner.worker.shared.frames import (
    STATUS_BAD_INPUT,
    STATUS_INTERNAL,
    STATUS_OK,
    align,
    describe_shared,
    put_tensor,
    recv_exact,
    recv_spinning,
)

SPIN_S = 200e-6  # after a reply, how long to wait for the next request without sleeping


class CallError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class SharedMemory:
    """The sandbox's tensor memory, mapped read-write: a memfd the host created and sealed
    against shrinking and growing, received when the host connects."""

    def __init__(self, fd: int) -> None:
        self.size = os.fstat(fd).st_size
        self.map = mmap.mmap(fd, self.size) if self.size else None

    def view(self, offset: int, length: int) -> memoryview:
        if self.map is None or offset + length > self.size:
            raise CallError(STATUS_BAD_INPUT, "a tensor lies outside the shared-memory file")
        return memoryview(self.map)[offset : offset + length]


def decode_inputs(request: Any, shm: SharedMemory | None) -> dict[str, np.ndarray]:
    """Inputs as arrays (shared-memory ones are views, not copies)."""
    feed: dict[str, np.ndarray] = {}
    for t in request.inputs:
        if t.in_shm:
            if shm is None:
                raise CallError(STATUS_BAD_INPUT, "no shared-memory file in this sandbox")
            buf = shm.view(t.shm_offset, t.shm_length)
            msg = pb.Tensor(name=t.name, dtype=t.dtype, shape=list(t.shape))
            name, arr = tensors.decode_buffer(msg, buf)
        else:
            name, arr = tensors.decode(t)
        feed[name] = arr
    return feed


class OutputArena:
    """Where one call's outputs go: the output window the host named in the shared-memory
    file, each tensor aligned. A model that can write its outputs in place (ONNX, through an
    I/O binding) asks for views first (`place`); the rest are copied in by `encode`."""

    def __init__(self, shm: SharedMemory | None, offset: int, length: int, threshold: int) -> None:
        usable = shm is not None and shm.map is not None and offset + length <= shm.size
        self._map = shm.map if usable and shm is not None else None
        self._start = self._offset = align(offset)
        self._end = offset + length if usable else 0
        self._threshold = threshold
        self._placed: dict[str, tuple[np.ndarray, int]] = {}

    def rewind(self) -> None:
        """Take back every view handed out (the model will not write into them)."""
        self._offset = self._start
        self._placed.clear()

    def place(self, name: str, dtype: str, shape: tuple[int, ...]) -> np.ndarray | None:
        """A writable view for an output of this dtype and shape, or None when it is too small
        to be worth it or does not fit."""
        dt = np.dtype(dtype).newbyteorder("<")
        count = math.prod(shape)
        nbytes = count * dt.itemsize
        if (
            self._map is None
            or name in self._placed
            or nbytes < self._threshold
            or self._offset + nbytes > self._end
        ):
            return None
        view = np.frombuffer(self._map, dtype=dt, count=count, offset=self._offset).reshape(shape)
        self._placed[name] = (view, self._offset)
        self._offset = align(self._offset + nbytes)
        return view

    def encode(self, outputs: dict[str, np.ndarray], reply: Any) -> None:
        for name, arr in outputs.items():
            msg = reply.outputs.add()
            placed = self._placed.get(name)
            if placed is not None and placed[0] is arr:  # written in place: nothing to copy
                describe_shared(name, arr, placed[1], msg)
                continue
            arr = np.asarray(arr)
            if (
                self._map is not None
                and arr.nbytes >= self._threshold
                and self._offset + arr.nbytes <= self._end
            ):
                self._offset = put_tensor(self._map, self._offset, name, arr, msg)
            else:
                tensors.encode(name, arr, msg)


def serve(
    path: str, handle: Callable[[Any, SharedMemory | None], Any], max_bytes: int
) -> threading.Thread:
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
                try:
                    shm = _hello(conn)
                    _answer(conn, functools.partial(_with_memory, handle, shm), max_bytes)
                except OSError:  # the controller went away mid-frame: wait for the next one
                    continue

    thread = threading.Thread(target=loop, name="airlock-dataplane", daemon=True)
    thread.start()
    return thread


def _with_memory(
    handle: Callable[[Any, SharedMemory | None], Any], shm: SharedMemory | None, request: Any
) -> Any:
    return handle(request, shm)


def _hello(conn: socket.socket) -> SharedMemory | None:
    """The first byte of a connection: 1 with the tensor memory's file descriptor attached,
    0 without (no shared memory)."""
    data, ancillary, _, _ = conn.recvmsg(1, socket.CMSG_SPACE(4 * array.array("i").itemsize))
    fds = array.array("i")
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
    try:
        return SharedMemory(fds[0]) if data == b"\x01" and fds else None
    finally:
        for fd in fds:
            os.close(fd)


def _answer(conn: socket.socket, handle: Callable[[Any], Any], max_bytes: int) -> None:
    while True:
        head = recv_spinning(conn, 4, SPIN_S)
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
    # os.write, neither send (a sendto in libc) nor sendmsg: the tracer stops on both, and
    # Python's sendmsg is an audit event, which the audit log would record on every call (a
    # busy sandbox would fill the log with the worker's own replies and then drop the model's
    # events). A write on a connected socket is neither traced nor audited.
    data = memoryview(struct.pack("<BI", status, len(payload)) + payload)
    fd = conn.fileno()
    while data:
        sent = os.write(fd, data)
        data = data[sent:]
