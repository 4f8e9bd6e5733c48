"""The controller's side of the data plane: inference frames over a Unix socket, large tensors
through shared memory. The host creates that memory per sandbox (a memfd sealed so that neither
side can shrink or grow it: no access to it can fault), maps it, and hands it to the worker when
it connects. Everything read back is untrusted: lengths are bounded, offsets checked against the
output window given to the worker, and shared-memory outputs copied out before they are
validated and returned, unless the caller asked for views (copy=False)."""

from __future__ import annotations

import array
import contextlib
import fcntl
import functools
import itertools
import logging
import math
import mmap
import os
import socket
import struct
import time
import weakref
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from runner.channel.replies import (
    BadReply,
    CallDeadline,
    Faults,
    ReplyTooLarge,
    WorkerRejected,
    WorkerUnavailable,
    checked_outputs,
    decode_inline,
    error_text,
    parse,
)
from runner.errors import untrusted_text
from runner.worker.shared import frames, tensors
from runner.worker.shared._proto import worker_pb2 as pb
from runner.worker.shared.frames import (
    align,
    describe_shared,
    put_tensor,
    recv_exact,
    recv_spinning,
)

log = logging.getLogger(__name__)

SHM_THRESHOLD = 64 << 10  # inputs this large go through shared memory
# How long to poll for a reply before sleeping: waking a thread that slept costs about as much
# as a small model's whole call. The poll follows the model: twice the last call's wait, from
# SPIN_S up to MAX_SPIN_S; a model slower than that is waited for asleep, polled only SPIN_S.
SPIN_S = 100e-6
MAX_SPIN_S = 1e-3


def next_spin(waited_s: float) -> float:
    """How long to poll for the next reply, given how long the last one took."""
    if waited_s > MAX_SPIN_S:
        return SPIN_S
    return min(MAX_SPIN_S, max(SPIN_S, 2 * waited_s))


_STATUS_CODES = {
    frames.STATUS_BAD_INPUT: "INVALID_ARGUMENT",
    frames.STATUS_MODEL_RAISED: "ABORTED",
    frames.STATUS_INTERNAL: "INTERNAL",
}
_Spec = tuple[int, tuple[int, ...], np.dtype]  # an output in shared memory: offset, shape, dtype


class Regions:
    """The byte ranges in use in the shared memory: a call's inputs while it runs, the caller's
    shared arrays and output views while they live. First fit, aligned. Each range has a token,
    so a late release cannot free a range handed out again since. Arrays give their range back
    from a finalizer, which only queues it (a finalizer can run inside any allocation, even one
    made while the table is being read)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._used: dict[int, tuple[int, int]] = {}  # offset -> (length, token)
        self._released: list[tuple[int, int]] = []
        self._tokens = itertools.count(1)

    def release_later(self, offset: int, token: int) -> None:
        self._released.append((offset, token))

    def _settle(self) -> None:
        while self._released:
            self.free(*self._released.pop())

    def gaps(self) -> list[tuple[int, int]]:
        """Free ranges as (offset, length), in order."""
        self._settle()
        out, pos = [], 0
        for offset, (length, _) in sorted(self._used.copy().items()):
            if offset > pos:
                out.append((pos, offset - pos))
            pos = max(pos, align(offset + length))
        if pos < self.size:
            out.append((pos, self.size - pos))
        return out

    def alloc(self, nbytes: int) -> tuple[int, int] | None:
        """(offset, token) of a free range this large, or None."""
        need = align(max(nbytes, 1))
        for offset, length in self.gaps():
            if length >= need:
                token = next(self._tokens)
                self._used[offset] = (need, token)
                return offset, token
        return None

    def reserve(self, offset: int, nbytes: int) -> int | None:
        """Take exactly this range: its token, or None when it overlaps one in use."""
        self._settle()
        end = offset + max(nbytes, 1)
        if any(o < end and offset < o + n for o, (n, _) in self._used.items()):
            return None
        token = next(self._tokens)
        self._used[offset] = (max(nbytes, 1), token)
        return token

    def free(self, offset: int, token: int) -> None:
        if self._used.get(offset, (0, 0))[1] == token:
            del self._used[offset]

    def largest_gap(self) -> tuple[int, int]:
        return max(self.gaps(), key=lambda g: g[1], default=(0, 0))


def _sealed_memory(size: int) -> int:
    """A memfd of this size that can be neither shrunk nor grown, by anyone."""
    fd = os.memfd_create("airlock-tensors", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        os.ftruncate(fd, size)
        fcntl.fcntl(
            fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL
        )
    except BaseException:
        os.close(fd)
        raise
    return fd


def _lent_array(
    shm: mmap.mmap,
    offset: int,
    shape: tuple[int, ...],
    dtype: np.dtype,
    release: Callable[[], None],
) -> np.ndarray:
    """An array over part of the mapping, calling release() once no view of it is left. The
    root (np.frombuffer) holds an export of the mapping, so the mapping cannot be unmapped
    under it, and numpy makes it the base of every view (reshapes, slices), so the finalizer
    on it waits for all of them."""
    root = np.frombuffer(shm, dtype=dtype, count=math.prod(shape), offset=offset)
    weakref.finalize(root, release)
    return root.reshape(shape)


class DataPlane:
    def __init__(
        self, socket_path: Path, shm_bytes: int, max_reply_bytes: int, max_request_bytes: int
    ) -> None:
        self._path = socket_path
        self._max_reply = max_reply_bytes
        self._max_request = max_request_bytes
        self._spin_s = SPIN_S
        self._sock: socket.socket | None = None
        self._shm: mmap.mmap | None = None
        self._memfd = -1  # until it is handed to the worker
        self._base = 0  # the mapping's address, to recognise the caller's shared arrays
        self._shared: dict[int, tuple[int, int]] = {}  # offset -> (length, token) of live
        self.regions = Regions(0)  # shared_array() arrays
        self.faults = Faults()  # what the worker sent that did not hold
        if shm_bytes:
            self._memfd = _sealed_memory(shm_bytes)
            try:
                self._shm = mmap.mmap(self._memfd, shm_bytes)
            except BaseException:
                self._close_memfd()
                raise
            probe = np.frombuffer(self._shm, np.uint8, count=1)
            self._base = probe.ctypes.data
            del probe
            self.regions = Regions(shm_bytes)

    def connect(self, timeout_s: float, peer_ok: Callable[[int], bool] | None = None) -> bool:
        """Connect, and hand the worker the shared memory (a 1 with the descriptor attached;
        a 0 when there is none). The socket's directory is the worker's: it could put a
        symlink to any socket of the host there, so the peer's pid must pass peer_ok first."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout_s)
        try:
            sock.connect(str(self._path))
            pid, _, _ = struct.unpack(
                "3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            )
            if peer_ok is not None and not peer_ok(pid):
                sock.close()
                return False
            if self._memfd >= 0:
                sock.sendmsg(
                    [b"\x01"],
                    [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [self._memfd]))],
                )
            else:
                sock.sendall(b"\x00")
        except OSError as e:  # no data plane: inference goes over gRPC
            log.debug("connecting the data plane: %r", e)
            sock.close()
            return False
        self._sock = sock
        self._close_memfd()
        return True

    def _close_memfd(self) -> None:
        if self._memfd >= 0:
            os.close(self._memfd)
            self._memfd = -1

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._close_memfd()
        if self._shm is not None:
            with contextlib.suppress(BufferError):  # views and shared arrays keep it mapped
                self._shm.close()
            self._shm = None

    def shared_array(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray | None:
        """An uninitialised array in the shared memory, or None when there is no room. Given
        to infer, it reaches the worker without a copy."""
        if self._shm is None or any(d < 0 for d in shape):
            return None
        dt = dtype.newbyteorder("=")
        nbytes = math.prod(shape) * dt.itemsize  # Python ints: no overflow
        if nbytes > self.regions.size:
            return None
        taken = self.regions.alloc(nbytes)
        if taken is None:
            return None
        offset, token = taken
        self._shared[offset] = (nbytes, token)
        try:
            return _lent_array(
                self._shm, offset, shape, dt, functools.partial(self._forget_shared, offset, token)
            )
        except BaseException:
            self._forget_shared(offset, token)
            raise

    def _forget_shared(self, offset: int, token: int) -> None:
        if self._shared.get(offset, (0, 0))[1] == token:
            self._shared.pop(offset, None)
        self.regions.release_later(offset, token)

    def _shared_offset(self, arr: np.ndarray) -> int | None:
        """Where arr lies in the shared memory, when it is (part of) a live shared array."""
        if (
            not self._shared
            or not arr.flags.c_contiguous
            or arr.dtype.byteorder == ">"
            or tensors.dtype_name(arr.dtype) not in tensors.ALLOWED_DTYPES
        ):
            return None
        at = arr.ctypes.data - self._base
        for offset, (length, _) in self._shared.copy().items():
            if offset <= at and at + arr.nbytes <= offset + length:
                return at
        return None

    def infer(
        self, inputs: Mapping[str, np.ndarray], timeout_s: float, copy: bool = True
    ) -> dict[str, np.ndarray]:
        assert self._sock is not None
        request = pb.InferRequest()
        staged: list[tuple[int, int]] = []  # ranges this call's inputs were copied into
        try:
            for name, value in inputs.items():
                msg = request.inputs.add()
                arr = np.asarray(value)
                at = self._shared_offset(arr)
                if at is not None:
                    describe_shared(name, arr, at, msg)
                elif (
                    self._shm is not None
                    and arr.nbytes >= SHM_THRESHOLD
                    and (taken := self.regions.alloc(arr.nbytes)) is not None
                ):
                    staged.append(taken)
                    put_tensor(self._shm, taken[0], name, arr, msg)
                else:
                    tensors.encode(name, arr, msg)
            window = self.regions.largest_gap() if self._shm is not None else (0, 0)
            request.output_offset, request.output_length = window
            return self._call(request, window, timeout_s, copy)
        finally:
            for offset, token in staged:
                self.regions.free(offset, token)

    def _call(
        self, request: pb.InferRequest, window: tuple[int, int], timeout_s: float, copy: bool
    ) -> dict[str, np.ndarray]:
        assert self._sock is not None
        body = request.SerializeToString()
        if len(body) > self._max_request:
            raise WorkerRejected(
                f"the request is {len(body)} bytes, above the limit", "INVALID_ARGUMENT"
            )
        self._sock.settimeout(timeout_s)
        try:
            self._sock.sendall(struct.pack("<I", len(body)) + body)
            sent = time.perf_counter()
            head = recv_spinning(self._sock, 5, self._spin_s)
            self._spin_s = next_spin(time.perf_counter() - sent)
            if head is None:
                raise ConnectionError("the worker closed the data connection")
            status, length = struct.unpack("<BI", head)
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
        except BaseException:  # interrupted mid-frame: the connection is out of step
            self.close()
            raise
        if status != frames.STATUS_OK:
            raise WorkerRejected(error_text(payload), _STATUS_CODES.get(status, "INTERNAL"))
        with self.faults.reading("the data plane's reply"):
            reply = parse(pb.InferReply, payload, self.faults, "Infer")
            outputs = checked_outputs(reply, self.faults)
            total = len(payload) + sum(t.shm_length for _, t in outputs if t.in_shm)
            if total > self._max_reply:
                raise ReplyTooLarge(f"a reply of {total} bytes is larger than max")
            return self._outputs(outputs, window, copy)

    def _recv(self, n: int) -> bytes:
        assert self._sock is not None
        data = recv_exact(self._sock, n)
        if data is None:
            raise ConnectionError("the worker closed the data connection")
        return data

    def _outputs(
        self, outputs: list[tuple[str, pb.Tensor]], window: tuple[int, int], copy: bool
    ) -> dict[str, np.ndarray]:
        """Validate every output first (nothing is lent or copied until all pass), then
        copy each shared one out, or lend it as a view. Keyed by the names as shown."""
        checked: list[tuple[str, np.ndarray | _Spec]] = []  # inline arrays, or where to look
        leased: list[tuple[int, int]] = []
        try:
            for shown, t in outputs:
                if t.in_shm:
                    checked.append((shown, self._check_shared(t, shown, window)))
                    if not copy:
                        token = self.regions.reserve(t.shm_offset, t.shm_length)
                        if token is None:
                            raise BadReply(f"output {shown!r} overlaps another")
                        leased.append((t.shm_offset, token))
                else:
                    checked.append((shown, decode_inline(t, shown)))
        except BaseException:
            for offset, token in leased:  # no view exists yet: give the ranges back
                self.regions.free(offset, token)
            raise
        out: dict[str, np.ndarray] = {}
        tokens = iter(token for _, token in leased)
        for name, value in checked:
            out[name] = (
                value
                if isinstance(value, np.ndarray)
                else (self._copy_out(*value) if copy else self._lend(*value, next(tokens)))
            )
        return out

    def _check_shared(self, t: pb.Tensor, shown: str, window: tuple[int, int]) -> _Spec:
        """Where it lies: (offset, shape, little-endian dtype), once its range is inside the
        window and its dtype, shape and length agree."""
        start, end = t.shm_offset, t.shm_offset + t.shm_length
        if (
            self._shm is None
            or start < window[0]
            or end > window[0] + window[1]
            or t.shm_length > self._max_reply
        ):
            raise BadReply(f"output {shown!r} lies outside the output window in shared memory")
        view = memoryview(self._shm)[start:end]
        checked = None
        try:
            _, checked = tensors.decode_buffer(
                pb.Tensor(name=t.name, dtype=t.dtype, shape=list(t.shape)), view
            )
            spec = (start, checked.shape, checked.dtype.newbyteorder("<"))
        except (tensors.TensorError, ValueError) as e:
            raise BadReply(f"output {shown!r}: {untrusted_text(str(e), 200)}") from e
        finally:
            del checked
            view.release()
        return spec

    def _copy_out(self, offset: int, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """The host's own copy: the worker can change shared memory after replying."""
        assert self._shm is not None
        shared = np.frombuffer(self._shm, dtype=dtype, count=math.prod(shape), offset=offset)
        arr = shared.reshape(shape).astype(dtype.newbyteorder("="))
        del shared
        arr.flags.writeable = False
        return arr

    def _lend(self, offset: int, shape: tuple[int, ...], dtype: np.dtype, token: int) -> np.ndarray:
        """A read-only view; its range stays out of use until no view of it is left."""
        assert self._shm is not None
        arr = _lent_array(
            self._shm,
            offset,
            shape,
            dtype,
            functools.partial(self.regions.release_later, offset, token),
        )
        arr.flags.writeable = False
        return arr
