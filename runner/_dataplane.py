"""The controller's side of the data plane: inference frames over a Unix socket, large tensors
through the sandbox's shared-memory file. Everything read back is untrusted: lengths are bounded,
offsets checked against the output window given to the worker, and shared-memory outputs copied
out before they are validated and returned, unless the caller asked for views (copy=False)."""

from __future__ import annotations

import contextlib
import mmap
import os
import socket
import struct
import weakref
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ._client import BadReply, CallDeadline, ReplyTooLarge, WorkerRejected, WorkerUnavailable
from .errors import untrusted_text
from .worker import tensors
from .worker._proto import worker_pb2 as pb
from .worker.dataplane import ALIGN, put_tensor, recv_exact

SHM_THRESHOLD = 64 << 10  # inputs this large go through shared memory
_STATUS_CODES = {2: "INVALID_ARGUMENT", 3: "ABORTED", 4: "INTERNAL"}


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


class Regions:
    """The byte ranges in use in the shared-memory file: a call's inputs while it runs, the
    caller's shared arrays and output views while they live. First fit, aligned. Arrays give
    their range back from a finalizer, which only queues it (a finalizer can run inside any
    allocation, even one made while the table is being read)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._used: dict[int, int] = {}
        self._released: list[int] = []

    def release_later(self, offset: int) -> None:
        self._released.append(offset)

    def _settle(self) -> None:
        while self._released:
            self._used.pop(self._released.pop(), None)

    def gaps(self) -> list[tuple[int, int]]:
        """Free ranges as (offset, length), in order."""
        self._settle()
        out, pos = [], 0
        for offset, length in sorted(self._used.copy().items()):
            if offset > pos:
                out.append((pos, offset - pos))
            pos = max(pos, _align(offset + length))
        if pos < self.size:
            out.append((pos, self.size - pos))
        return out

    def alloc(self, nbytes: int) -> int | None:
        need = _align(max(nbytes, 1))
        for offset, length in self.gaps():
            if length >= need:
                self._used[offset] = need
                return offset
        return None

    def reserve(self, offset: int, nbytes: int) -> bool:
        """Take exactly this range; False when it overlaps one in use."""
        self._settle()
        end = offset + max(nbytes, 1)
        if any(o < end and offset < o + n for o, n in self._used.items()):
            return False
        self._used[offset] = max(nbytes, 1)
        return True

    def free(self, offset: int) -> None:
        self._used.pop(offset, None)

    def largest_gap(self) -> tuple[int, int]:
        return max(self.gaps(), key=lambda g: g[1], default=(0, 0))


class DataPlane:
    def __init__(self, socket_path: Path, shm_path: Path | None, max_reply_bytes: int,
                 max_request_bytes: int) -> None:
        self._path = socket_path
        self._max_reply = max_reply_bytes
        self._max_request = max_request_bytes
        self._sock: socket.socket | None = None
        self._shm: mmap.mmap | None = None
        self._shm_size = 0
        self._base = 0  # the mapping's address, to recognise the caller's shared arrays
        self._shared: dict[int, int] = {}  # offset -> length of live shared_array() arrays
        self.regions = Regions(0)
        if shm_path is not None and shm_path.exists():
            fd = os.open(shm_path, os.O_RDWR)
            try:
                self._shm_size = os.fstat(fd).st_size
                if self._shm_size:
                    self._shm = mmap.mmap(fd, self._shm_size)
                    probe = np.frombuffer(self._shm, np.uint8, count=1)
                    self._base = probe.ctypes.data
                    del probe
                    self.regions = Regions(self._shm_size)
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

    def shared_array(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray | None:
        """An uninitialised array in the shared-memory file, or None when there is no room.
        Given to infer, it reaches the worker without a copy."""
        if self._shm is None:
            return None
        dt = dtype.newbyteorder("<")
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        offset = self.regions.alloc(count * dt.itemsize)
        if offset is None:
            return None
        arr = np.frombuffer(self._shm, dtype=dt, count=count, offset=offset).reshape(shape)
        arr = arr.astype(dtype.newbyteorder("="), copy=False)
        self._shared[offset] = count * dt.itemsize
        weakref.finalize(arr, self._forget_shared, offset)
        return arr

    def _forget_shared(self, offset: int) -> None:
        self._shared.pop(offset, None)
        self.regions.release_later(offset)

    def _shared_offset(self, arr: np.ndarray) -> int | None:
        """Where arr lies in the file, when it is (part of) a live shared array."""
        if (not self._shared or not arr.flags.c_contiguous or arr.dtype.byteorder == ">"
                or arr.dtype.name not in tensors.ALLOWED_DTYPES):
            return None
        at = arr.ctypes.data - self._base
        for offset, length in self._shared.copy().items():
            if offset <= at and at + arr.nbytes <= offset + length:
                return at
        return None

    def infer(self, inputs: Mapping[str, np.ndarray], timeout_s: float, copy: bool = True
              ) -> dict[str, np.ndarray]:
        assert self._sock is not None
        request = pb.InferRequest()
        staged: list[int] = []  # ranges this call's inputs were copied into
        try:
            for name, value in inputs.items():
                msg = request.inputs.add()
                arr = np.asarray(value)
                at = self._shared_offset(arr)
                if at is not None:
                    tensors.describe(name, arr, msg)
                    msg.in_shm, msg.shm_offset, msg.shm_length = True, at, arr.nbytes
                elif (self._shm is not None and arr.nbytes >= SHM_THRESHOLD
                      and (offset := self.regions.alloc(arr.nbytes)) is not None):
                    staged.append(offset)
                    put_tensor(self._shm, offset, name, arr, msg)
                else:
                    tensors.encode(name, arr, msg)
            window = self.regions.largest_gap() if self._shm is not None else (0, 0)
            request.output_offset, request.output_length = window
            return self._call(request, window, timeout_s, copy)
        finally:
            for offset in staged:
                self.regions.free(offset)

    def _call(self, request: pb.InferRequest, window: tuple[int, int], timeout_s: float,
              copy: bool) -> dict[str, np.ndarray]:
        assert self._sock is not None
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
            return self._outputs(reply, window, copy)
        except (tensors.TensorError, ValueError) as e:
            raise BadReply(untrusted_text(str(e))) from e

    def _recv(self, n: int) -> bytes:
        assert self._sock is not None
        data = recv_exact(self._sock, n)
        if data is None:
            raise ConnectionError("the worker closed the data connection")
        return data

    def _outputs(self, reply: pb.InferReply, window: tuple[int, int], copy: bool
                 ) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        leased: list[int] = []
        try:
            for t in list(reply.outputs)[:1024]:
                if t.in_shm:
                    name, arr = self._shared_output(t, window, copy, leased)
                else:
                    name, arr = tensors.decode(t)
                out[untrusted_text(name, 200)] = arr
        except BaseException:
            for offset in leased:
                self.regions.free(offset)
            raise
        return out

    def _shared_output(self, t: pb.Tensor, window: tuple[int, int], copy: bool,
                       leased: list[int]) -> tuple[str, np.ndarray]:
        start, end = t.shm_offset, t.shm_offset + t.shm_length
        if (self._shm is None or start < window[0] or end > window[0] + window[1]
                or t.shm_length > self._max_reply):
            raise BadReply(f"output {untrusted_text(t.name, 80)!r} lies outside the output "
                           "window in the shared-memory file")
        meta = pb.Tensor(name=t.name, dtype=t.dtype, shape=list(t.shape))
        if not copy:  # a view: the range stays out of use until the array is dropped
            if not self.regions.reserve(start, t.shm_length):
                raise BadReply(f"output {untrusted_text(t.name, 80)!r} overlaps another")
            leased.append(start)
            name, arr = tensors.decode_buffer(meta, memoryview(self._shm)[start:end])
            arr.flags.writeable = False
            weakref.finalize(arr, self.regions.release_later, start)
            return name, arr
        # validate the metadata on the shared view, then copy out: the worker could change the
        # file after replying
        view = memoryview(self._shm)[start:end]
        shared = None
        try:
            name, shared = tensors.decode_buffer(meta, view)
            arr = np.empty(shared.shape, shared.dtype)
            np.copyto(arr, shared)
        finally:
            del shared
            view.release()
        arr.flags.writeable = False
        return name, arr
