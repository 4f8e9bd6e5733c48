"""Fuzzing what the worker sends: random and mutated gRPC replies and data-plane frames, from a
stand-in worker on a real Unix socket (gRPC: a real grpc server answering raw bytes; data
plane: a socket that takes the host's shared memory and answers frames the test chooses).

Whatever arrives, the channel raises nothing but its own errors (the RpcFailure family), every
name it returns is neutralised, every array has an allowed dtype, and what did not validate is
recorded (Faults) for the report.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.channel.client import WorkerClient
from runner.channel.dataplane import DataPlane
from runner.channel.replies import MAX_OUTPUTS, MAX_SPECS, RpcFailure
from runner.controller.signature import exercise_plans
from runner.errors import deceptive_chars
from runner.worker import dataplane as worker_dataplane
from runner.worker.shared import frames, tensors
from runner.worker.shared._proto import worker_pb2 as pb
from runner.worker.shared.frames import recv_exact

FUZZ = settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --- building hostile bytes ---------------------------------------------------------------------


def varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited field holding any bytes (a string field with invalid UTF-8, a
    sub-message, ...)."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def deep_groups(depth: int) -> bytes:
    """Unknown groups nested `depth` deep (the parser recurses into groups)."""
    return b"\xa3\x06" * depth + b"\xa4\x06" * depth  # field 100, start and end group


NAMES = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "x",
            "\x1b[2J\x1b[32mverdict CLEAN\x1b[0m",
            "\u202eNAELC",
            "a\x9b31m",
            "[green]CLEAN[/green]",
            "line\nverdict  CLEAN",
            "\x08\x08\x08\x08ok\r",
            "x" * 2000,
        ]
    ),
)
DTYPES = st.sampled_from([*sorted(tensors.ALLOWED_DTYPES), "", "object", "V8", "<f4", "bfloat16"])
_DIM = st.one_of(
    st.integers(-3, 8), st.sampled_from([-(2**63), 2**62, 2**63 - 1, 0, 1 << 32, 1 << 21])
)
DIMS = st.one_of(st.lists(_DIM, max_size=6), st.lists(_DIM, min_size=30, max_size=40))


def mutate(data: bytes, draw: Callable[..., Any]) -> bytes:
    """A few byte flips, an insertion and a cut."""
    buf = bytearray(data)
    for _ in range(draw(st.integers(0, 4))):
        if buf:
            i = draw(st.integers(0, len(buf) - 1))
            buf[i] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        i = draw(st.integers(0, len(buf)))
        buf[i:i] = draw(st.binary(max_size=16))
    if buf and draw(st.booleans()):
        buf = buf[: draw(st.integers(0, len(buf)))]
    return bytes(buf)


@st.composite
def tensor_msg(draw: Callable[..., Any]) -> pb.Tensor:
    t = pb.Tensor(name=draw(NAMES), dtype=draw(DTYPES), shape=draw(DIMS))
    if draw(st.booleans()):
        t.data = draw(st.binary(max_size=256))
    elif t.dtype in tensors.ALLOWED_DTYPES and all(0 <= d < 64 for d in t.shape):
        count = int(np.prod(t.shape, dtype=np.int64)) if t.shape else 1
        t.data = b"\x00" * (count * np.dtype(t.dtype).itemsize)  # bytes that fit
    return t


@st.composite
def describe_reply(draw: Callable[..., Any]) -> bytes:
    r = pb.DescribeReply(format=draw(NAMES), can_infer=draw(st.booleans()), note=draw(NAMES))
    for specs in (r.inputs, r.outputs):
        for _ in range(draw(st.integers(0, 6))):
            specs.add(name=draw(NAMES), dtype=draw(DTYPES), shape=draw(DIMS))
    if draw(st.integers(0, 9)) == 0:  # a description with thousands of inputs
        spec = pb.TensorSpec(name="i", dtype="float32", shape=[1]).SerializeToString()
        return r.SerializeToString() + field(2, spec) * (MAX_SPECS + 5)
    return r.SerializeToString()


@st.composite
def infer_reply(draw: Callable[..., Any]) -> bytes:
    r = pb.InferReply()
    for _ in range(draw(st.integers(0, 4))):
        r.outputs.append(draw(tensor_msg()))
    if draw(st.booleans()):
        t = r.outputs.add(name=draw(NAMES), dtype=draw(DTYPES), shape=draw(DIMS), in_shm=True)
        t.shm_offset = draw(st.sampled_from([0, 64, 4096, 2**63, 2**64 - 1]))
        t.shm_length = draw(st.sampled_from([0, 4, 4096, 1 << 20, 2**64 - 1]))
    data = r.SerializeToString()
    if draw(st.integers(0, 9)) == 0:  # more outputs than any model has
        data += field(1, pb.Tensor(name="o", dtype="uint8", shape=[0]).SerializeToString()) * (
            MAX_OUTPUTS + 1
        )
    return data


def reply_bytes(kind: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """Valid replies, mutated ones, invalid UTF-8 in a name, deep nesting, random bytes."""

    @st.composite
    def build(draw: Callable[..., Any]) -> bytes:
        choice = draw(st.integers(0, 5))
        if choice == 0:
            return draw(st.binary(max_size=512))
        if choice == 1:  # a string field that is not UTF-8, in a nested message
            bad = draw(st.binary(min_size=1, max_size=8)) + b"\xff\xc3\x28"
            return field(2, field(1, bad)) + field(1, field(1, bad))
        if choice == 2:
            return deep_groups(draw(st.integers(1, 5000)))
        data = draw(kind)
        return mutate(data, draw) if choice == 3 else data

    return build()


def check_name(name: str) -> None:
    assert isinstance(name, str)
    assert deceptive_chars(name) == [] and "\n" not in name
    assert len(name) <= 200


def check_outputs(outputs: dict[str, np.ndarray]) -> None:
    for name, arr in outputs.items():
        check_name(name)
        assert isinstance(arr, np.ndarray) and arr.dtype.name in tensors.ALLOWED_DTYPES


# --- a stand-in gRPC worker: a real server answering raw bytes ----------------------------------


class _Grpc:
    def __init__(self, path: Path) -> None:
        self.reply = b""

        def answer(request: bytes, context: Any) -> bytes:
            return self.reply

        outer = self

        class Handler(grpc.GenericRpcHandler):
            def service(self, details: Any) -> Any:
                return grpc.unary_unary_rpc_method_handler(
                    answer, request_deserializer=None, response_serializer=None
                )

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        self.server.add_generic_rpc_handlers((Handler(),))
        self.server.add_insecure_port(f"unix:{path}")
        self.server.start()
        self.client = WorkerClient(str(path), 1 << 20, 1 << 20)
        del outer


@pytest.fixture(scope="module")
def grpc_worker() -> Iterator[_Grpc]:
    with tempfile.TemporaryDirectory(prefix="fuzz-grpc-") as d:
        worker = _Grpc(Path(d) / "w.sock")
        yield worker
        worker.client.close()
        worker.server.stop(0)


@FUZZ
@given(data=reply_bytes(describe_reply()))
def test_describe_replies_never_escape(grpc_worker: _Grpc, data: bytes) -> None:
    grpc_worker.reply = data
    try:
        d = grpc_worker.client.describe(timeout_s=5)
    except RpcFailure:
        return
    assert len(d.inputs) <= MAX_SPECS and len(d.outputs) <= MAX_SPECS
    for s in (*d.inputs, *d.outputs):
        check_name(s.name)
        assert len(s.call_name) <= 1024
        assert s.dtype in tensors.ALLOWED_DTYPES or s.dtype == ""
        assert len(s.shape) <= tensors.MAX_DIMS and all(d >= -1 for d in s.shape)
    if d.problems:
        assert not d.can_infer and grpc_worker.client.faults.description
    elif d.can_infer:  # what the host builds from a description stays small, or is refused
        faults = grpc_worker.client.faults
        before = faults.description_count
        planned = exercise_plans(d, faults, calls=2, seconds=0.0)
        if planned is None:
            assert faults.description_count == before + 1
        else:
            assert all(
                a.size <= 1 << 16 for plan in planned for c in plan for a in c.inputs.values()
            )
    check_name(d.format)


@FUZZ
@given(data=reply_bytes(infer_reply()))
def test_grpc_infer_replies_never_escape(grpc_worker: _Grpc, data: bytes) -> None:
    grpc_worker.reply = data
    try:
        outputs = grpc_worker.client.infer({"x": np.ones(2, np.float32)}, timeout_s=5)
    except RpcFailure:
        return
    check_outputs(outputs)


@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=256), method=st.sampled_from(["health", "load", "prepare"]))
def test_other_replies_never_escape(grpc_worker: _Grpc, data: bytes, method: str) -> None:
    grpc_worker.reply = data
    calls = {
        "health": lambda: grpc_worker.client.health(timeout_s=5),
        "load": lambda: grpc_worker.client.load("/model/m", "auto", "", timeout_s=5),
        "prepare": lambda: grpc_worker.client.prepare("/model/m", "auto", timeout_s=5),
    }
    with contextlib.suppress(RpcFailure):
        calls[method]()


@pytest.mark.parametrize(
    "shape", [[2**40, 2**40], [2**31] * 3, [2**62, 2**62, 4]], ids=["2^80", "2^93", "2^124"]
)
def test_a_description_of_impossible_sizes_is_out_of_bounds(
    grpc_worker: _Grpc, shape: list[int]
) -> None:
    """Sizes whose product overflows 64 bits: the host never builds inputs from them."""
    r = pb.DescribeReply(format="onnx", can_infer=True)
    r.inputs.add(name="x", dtype="float32", shape=shape)
    grpc_worker.reply = r.SerializeToString()
    d = grpc_worker.client.describe(timeout_s=5)
    assert not d.can_infer and any("elements" in p for p in d.problems)


@pytest.mark.parametrize("shape", [[-1] * 32, [2**39] + [-1] * 12], ids=["4^32", "2^39*4^12"])
def test_sizes_too_large_to_build_are_cut_to_the_exercise_bound(shape: list[int]) -> None:
    """Dynamic and huge dimensions whose product overflows 64 bits: the exercise builds small
    inputs of the same rank instead (at most MAX_ELEMENTS each), and nothing is out of bounds."""
    from runner.channel.replies import Description, Faults, TensorSpec
    from runner.controller.exercise import MAX_ELEMENTS
    from runner.controller.reporting import channel_findings

    d = Description("onnx", (TensorSpec("x", "float32", tuple(shape)),), (), True, "")
    faults = Faults()
    built = exercise_plans(d, faults, calls=4, seconds=0.0)
    assert built is not None
    for call in built[0]:
        assert call.inputs["x"].ndim == len(shape) and call.inputs["x"].size <= MAX_ELEMENTS
    assert channel_findings([faults]) == []


def test_a_malformed_reply_is_recorded(grpc_worker: _Grpc) -> None:
    before = grpc_worker.client.faults.malformed_count
    grpc_worker.reply = field(2, field(1, b"\xff\xfe"))  # an input name that is not UTF-8
    with pytest.raises(RpcFailure, match="does not parse"):
        grpc_worker.client.describe(timeout_s=5)
    assert grpc_worker.client.faults.malformed_count == before + 1


# --- a stand-in data-plane worker: frames the test chooses --------------------------------------


class _Frames:
    """Takes the host's connection (and its shared memory), then answers each request with
    whatever `answer(request, shm)` returns: raw bytes to send and whether to hang up after
    them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.answer: Callable[[pb.InferRequest, Any], tuple[bytes, bool]] = lambda r, m: (
            b"",
            True,
        )
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        self.listener.listen(4)
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                try:
                    shm = worker_dataplane._hello(conn)
                    self._serve(conn, shm)
                except OSError:
                    continue

    def _serve(self, conn: socket.socket, shm: Any) -> None:
        while (head := recv_exact(conn, 4)) is not None:
            body = recv_exact(conn, struct.unpack("<I", head)[0])
            if body is None:
                return
            reply, hang_up = self.answer(pb.InferRequest.FromString(body), shm)
            conn.sendall(reply)
            if hang_up:
                return


@pytest.fixture(scope="module")
def frame_worker() -> Iterator[_Frames]:
    with tempfile.TemporaryDirectory(prefix="fuzz-frames-") as d:
        worker = _Frames(Path(d) / "data.sock")
        yield worker
        worker.listener.close()


def frame(status: int, payload: bytes, claimed: int | None = None) -> bytes:
    return struct.pack("<BI", status, len(payload) if claimed is None else claimed) + payload


@st.composite
def frames_(draw: Callable[..., Any]) -> tuple[bytes, bool]:
    """A reply frame, and whether the stand-in hangs up after it (a length that lies)."""
    payload = draw(reply_bytes(infer_reply()))
    status = draw(st.sampled_from([frames.STATUS_OK] * 4 + [2, 3, 4, 9, 255]))
    if draw(st.integers(0, 7)) == 0:
        claimed = draw(st.sampled_from([len(payload) + 1, len(payload) + 4096, 2**32 - 1]))
        return frame(status, payload, claimed), True
    if draw(st.integers(0, 7)) == 0:
        return frame(status, b"\x1b[2J\xff\xfe" * draw(st.integers(1, 2000))), False
    return frame(status, payload), False


def shm_reply(request: pb.InferRequest, spec: tuple[str, str, list[int], int, int]) -> bytes:
    """An output said to lie in the output window: at an offset and of a length the test chose,
    relative to the window."""
    name, dtype, shape, offset, length = spec
    reply = pb.InferReply()
    t = reply.outputs.add(name=name, dtype=dtype, shape=shape, in_shm=True)
    t.shm_offset = max(0, request.output_offset + offset) % (1 << 64)
    t.shm_length = max(0, length) % (1 << 64)
    return frame(frames.STATUS_OK, reply.SerializeToString())


def plane_for(worker: _Frames) -> DataPlane:
    plane = DataPlane(worker.path, 1 << 20, 1 << 20, 1 << 20)
    assert plane.connect(timeout_s=5)
    return plane


@FUZZ
@given(reply=frames_(), copy=st.booleans())
def test_data_plane_frames_never_escape(
    frame_worker: _Frames, reply: tuple[bytes, bool], copy: bool
) -> None:
    data, hang_up = reply
    frame_worker.answer = lambda request, shm: (data, hang_up)
    plane = plane_for(frame_worker)
    try:
        outputs = plane.infer({"x": np.ones(4, np.float32)}, timeout_s=2, copy=copy)
    except RpcFailure:
        return
    finally:
        plane.close()
    check_outputs(outputs)


@FUZZ
@given(
    spec=st.tuples(
        NAMES,
        DTYPES,
        DIMS,
        st.integers(-(1 << 21), 1 << 21),
        st.one_of(st.integers(-8, 1 << 21), st.sampled_from([2**63, 2**64 - 1])),
    ),
    copy=st.booleans(),
)
def test_shared_memory_outputs_stay_in_their_window(
    frame_worker: _Frames, spec: tuple[str, str, list[int], int, int], copy: bool
) -> None:
    frame_worker.answer = lambda request, shm: (shm_reply(request, spec), False)
    plane = plane_for(frame_worker)
    before = plane.regions.largest_gap()
    try:
        outputs = plane.infer({"x": np.ones(4, np.float32)}, timeout_s=5, copy=copy)
    except RpcFailure:
        assert plane.regions.largest_gap() == before  # nothing lent on a refused reply
        return
    finally:
        plane.close()
    check_outputs(outputs)
    for arr in outputs.values():
        assert arr.nbytes <= 1 << 20


def test_each_malformed_reply_is_counted_once(frame_worker: _Frames) -> None:
    plane = plane_for(frame_worker)
    replies = [field(1, field(1, b"\xff\xfe")), field(1, pb.Tensor(name="y").SerializeToString())]
    for data in replies:  # one that does not parse, one that does not validate
        frame_worker.answer = lambda request, shm, data=data: (frame(0, data), False)
        with pytest.raises(RpcFailure):
            plane.infer({"x": np.ones(4, np.float32)}, timeout_s=5)
    plane.close()
    assert plane.faults.malformed_count == 2 and len(plane.faults.malformed) == 2
