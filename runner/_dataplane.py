"""The controller's side of the data plane: inference frames over a Unix socket, large tensors
through the sandbox's shared-memory file. Everything read back is untrusted: lengths are bounded,
offsets checked, and shared-memory outputs copied out before they are validated and returned."""

from __future__ import annotations

import contextlib
import mmap
import os
import socket
import struct
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ._client import BadReply, CallDeadline, ReplyTooLarge, WorkerRejected, WorkerUnavailable
from .errors import untrusted_text
from .worker import tensors
from .worker._proto import worker_pb2 as pb
from .worker.dataplane import put_tensor, recv_exact

SHM_THRESHOLD = 64 << 10  # inputs this large go through shared memory
_STATUS_CODES = {2: "INVALID_ARGUMENT", 3: "ABORTED", 4: "INTERNAL"}


class DataPlane:
    def __init__(self, socket_path: Path, shm_path: Path | None, max_reply_bytes: int,
                 max_request_bytes: int) -> None:
        self._path = socket_path
        self._max_reply = max_reply_bytes
        self._max_request = max_request_bytes
        self._sock: socket.socket | None = None
        self._shm: mmap.mmap | None = None
        self._shm_size = 0
        if shm_path is not None and shm_path.exists():
            fd = os.open(shm_path, os.O_RDWR)
            try:
                self._shm_size = os.fstat(fd).st_size
                if self._shm_size:
                    self._shm = mmap.mmap(fd, self._shm_size)
            finally:
                os.close(fd)

    def connect(self, timeout_s: float) -> bool:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout_s)
        try:
            sock.connect(str(self._path))
        except OSError:
            sock.close()
            return False
        self._sock = sock
        return True

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._shm is not None:
            with contextlib.suppress(BufferError):
                self._shm.close()
            self._shm = None

    def infer(self, inputs: Mapping[str, np.ndarray], timeout_s: float
              ) -> dict[str, np.ndarray]:
        assert self._sock is not None
        request = pb.InferRequest()
        offset = 0
        for name, arr in inputs.items():
            msg = request.inputs.add()
            arr = np.asarray(arr)
            if (self._shm is not None and arr.nbytes >= SHM_THRESHOLD
                    and offset + arr.nbytes <= self._shm_size):
                offset = put_tensor(self._shm, offset, name, arr, msg)
            else:
                tensors.encode(name, arr, msg)
        body = request.SerializeToString()
        if len(body) > self._max_request:
            raise WorkerRejected(f"the request is {len(body)} bytes, above the limit",
                                 "INVALID_ARGUMENT")
        self._sock.settimeout(timeout_s)
        try:
            self._sock.sendall(struct.pack("<I", len(body)) + body)
            status, length = struct.unpack("<BI", self._recv(5))
            if length > self._max_reply:
                self.close()
                raise ReplyTooLarge(f"a reply of {length} bytes is larger than max")
            payload = self._recv(length)
        except TimeoutError as e:
            self.close()
            raise CallDeadline("no reply before the deadline") from e
        except (ConnectionError, OSError, struct.error) as e:
            self.close()
            raise WorkerUnavailable(f"the data connection failed: {e}") from e
        if status != 0:
            text = untrusted_text(payload.decode("utf-8", "replace"))
            raise WorkerRejected(text, _STATUS_CODES.get(status, "INTERNAL"))
        try:
            reply = pb.InferReply.FromString(payload)
            total = len(payload) + sum(t.shm_length for t in reply.outputs if t.in_shm)
            if total > self._max_reply:
                raise ReplyTooLarge(f"a reply of {total} bytes is larger than max")
            return self._outputs(reply)
        except (tensors.TensorError, ValueError) as e:
            raise BadReply(untrusted_text(str(e))) from e

    def _recv(self, n: int) -> bytes:
        assert self._sock is not None
        data = recv_exact(self._sock, n)
        if data is None:
            raise ConnectionError("the worker closed the data connection")
        return data

    def _outputs(self, reply: pb.InferReply) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for t in list(reply.outputs)[:1024]:
            if t.in_shm:
                end = t.shm_offset + t.shm_length
                if self._shm is None or end > self._shm_size or t.shm_length > self._max_reply:
                    raise BadReply(f"output {untrusted_text(t.name, 80)!r} lies outside the "
                                   "shared-memory file")
                # validate the metadata on the shared view, then copy out: the worker could
                # change the file after replying
                meta = pb.Tensor(name=t.name, dtype=t.dtype, shape=list(t.shape))
                view = memoryview(self._shm)[t.shm_offset:end]
                try:
                    name, shared = tensors.decode_buffer(meta, view)
                    arr = np.empty(shared.shape, shared.dtype)
                    np.copyto(arr, shared)
                finally:
                    del shared
                    view.release()
                arr.flags.writeable = False
            else:
                name, arr = tensors.decode(t)
            out[untrusted_text(name, 200)] = arr
        return out
