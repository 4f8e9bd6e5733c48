"""The shared-memory data path, in-process (pure logic; containment is tested with Docker):

- the worker's side: outputs an ONNX model writes in place equal a plain run, a declared output
  shape that does not hold still gives the right answer, a failing model stays a failure;
- the host's side, against a stand-in worker on a real socket and real shared memory: what it
  accepts from a worker, and how ranges of the shared memory are lent and given back.
"""

from __future__ import annotations

import array
import gc
import mmap
import os
import socket
from pathlib import Path

import numpy as np
import pytest

from runner.channel.client import BadReply
from runner.channel.dataplane import DataPlane, Regions, _sealed_memory
from runner.worker import dataplane, loaders
from runner.worker.shared import frames
from runner.worker.shared._proto import worker_pb2 as pb
from tests.fixtures.memory import in_shared_memory

THRESHOLD = 64 << 10


def _reshaping_onnx(path: Path) -> Path:
    """y = reshape(relu(x), s), declared [n, 64] like x: true only when s is [-1, 64]. Also a
    small output, t = sum(x), that always goes inline."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [
            helper.make_node("Relu", ["x"], ["r"]),
            helper.make_node("Reshape", ["r", "s"], ["y"]),
            helper.make_node("ReduceSum", ["x"], ["t"], keepdims=0),
        ],
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 64]),
            helper.make_tensor_value_info("s", TensorProto.INT64, [2]),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 64]),
            helper.make_tensor_value_info("t", TensorProto.FLOAT, []),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return path


class _Counting(dataplane.OutputArena):
    """An arena that counts the views it hands out and keeps."""

    placed = 0

    def place(self, name: str, dtype: str, shape: tuple[int, ...]) -> np.ndarray | None:
        view = super().place(name, dtype, shape)
        self.placed += view is not None
        return view

    def rewind(self) -> None:
        super().rewind()
        self.placed = 0


def _call(
    loaded: loaders.Loaded, shm: dataplane.SharedMemory, x: np.ndarray, s: list[int]
) -> tuple[pb.InferReply, dict[str, np.ndarray], int]:
    request = pb.InferRequest()
    end = frames.put_tensor(shm.map, 0, "x", x, request.inputs.add())
    dataplane.tensors.encode("s", np.array(s, np.int64), request.inputs.add())
    feed = dataplane.decode_inputs(request, shm)
    arena = _Counting(shm, end, shm.size - end, THRESHOLD)
    assert loaded.run_into is not None
    reply = pb.InferReply()
    arena.encode(loaded.run_into(feed, arena), reply)
    out = {}
    for t in reply.outputs:
        if t.in_shm:
            meta = pb.Tensor(name=t.name, dtype=t.dtype, shape=list(t.shape))
            out[t.name] = np.array(
                dataplane.tensors.decode_buffer(meta, shm.view(t.shm_offset, t.shm_length))[1]
            )
        else:
            out[t.name] = dataplane.tensors.decode(t)[1]
    return reply, out, arena.placed


@pytest.fixture
def shm() -> dataplane.SharedMemory:
    fd = _sealed_memory(8 << 20)
    try:
        return dataplane.SharedMemory(fd)
    finally:
        os.close(fd)


def test_outputs_written_in_place_match_a_plain_run(
    tmp_path: Path, shm: dataplane.SharedMemory
) -> None:
    loaded = loaders._load_onnx(_reshaping_onnx(tmp_path / "m.onnx"), None, 1, loaders.Options())
    assert loaded.run is not None
    x = np.random.default_rng(0).standard_normal((2048, 64)).astype(np.float32)  # 512 KiB

    def check(s: list[int]) -> tuple[pb.InferReply, int]:
        reply, out, placed = _call(loaded, shm, x, s)
        expected = loaded.run({"x": x, "s": np.array(s, np.int64)})  # type: ignore[misc]
        assert set(out) == {"y", "t"}
        for name, value in expected.items():
            assert out[name].shape == value.shape and out[name].dtype == value.dtype
            np.testing.assert_array_equal(out[name], value)
        return reply, placed

    with pytest.raises(Exception, match=r"(?i)reshape"):  # the model fails, seen as such
        _call(loaded, shm, x, [7, -1])
    reply, placed = check([-1, 64])  # the declaration holds: written in place
    y, t = (next(o for o in reply.outputs if o.name == n) for n in ("y", "t"))
    assert placed == 1 and y.in_shm and y.shm_offset >= x.nbytes
    assert y.shm_offset % frames.ALIGN == 0 and not t.in_shm  # 4 bytes go inline
    _, placed = check([-1, 32])  # it does not: onnxruntime refuses, a plain run answers
    assert placed == 0
    reply, placed = check([-1, 64])  # and the model is no longer trusted to declare shapes
    assert placed == 0 and next(o for o in reply.outputs if o.name == "y").in_shm  # copied


def test_output_shapes_come_from_the_declaration_and_the_feed() -> None:
    declared = (
        [("x", ["n", 64]), ("m", [])],
        [
            ("y", "float32", ["n", 64]),
            ("z", "int64", ["k"]),
            ("w", "float32", [3, 2]),
            ("v", "", ["n"]),
            ("u", "float32", []),
        ],
    )
    feed = {"x": np.zeros((5, 64), np.float32)}
    assert loaders._output_shapes(declared, feed) == {
        "y": ("float32", (5, 64)),
        "w": ("float32", (3, 2)),
    }


def test_the_arena_stays_in_its_window(shm: dataplane.SharedMemory) -> None:
    arena = dataplane.OutputArena(shm, 1000, (4 << 20) - 1000, THRESHOLD)
    a = arena.place("a", "float32", (256, 64))
    assert a is not None
    assert arena.place("a", "float32", (256, 64)) is None  # one view per name
    assert arena.place("small", "float32", (4,)) is None  # below the threshold: inline
    assert arena.place("huge", "float64", (1 << 19,)) is None  # does not fit in the window
    b = arena.place("b", "uint8", (THRESHOLD,))
    assert b is not None
    base = np.frombuffer(shm.map, np.uint8)
    offsets = [
        v.__array_interface__["data"][0] - base.__array_interface__["data"][0] for v in (a, b)
    ]
    assert offsets[0] >= 1000 and offsets[0] % frames.ALIGN == 0
    assert offsets[1] >= offsets[0] + a.nbytes
    arena.rewind()
    again = arena.place("a", "float32", (256, 64))
    assert again is not None and again.ctypes.data == a.ctypes.data
    del a, b, base, again
    assert dataplane.OutputArena(shm, 8 << 20, 4096, 0).place("x", "uint8", (1,)) is None


def test_the_memory_cannot_be_shrunk_or_grown() -> None:
    fd = _sealed_memory(4096)
    try:
        for size in (0, 8192):
            with pytest.raises(PermissionError):
                os.ftruncate(fd, size)
    finally:
        os.close(fd)


# --- the host's side ------------------------------------------------------------------------


class _Worker:
    """Answers each call with handle(request, shm) on a Unix socket, as the worker does."""

    def __init__(self, tmp_path: Path, handle: object) -> None:
        self.requests: list[pb.InferRequest] = []
        self.socket = tmp_path / "data.sock"

        def answer(request: pb.InferRequest, shm: dataplane.SharedMemory | None) -> pb.InferReply:
            self.requests.append(request)
            return handle(request, shm)  # type: ignore[operator]

        dataplane.serve(str(self.socket), answer, 1 << 30)

    def plane(self) -> DataPlane:
        plane = DataPlane(self.socket, 8 << 20, 64 << 20, 64 << 20)
        assert plane.connect(timeout_s=5)
        return plane


def _doubling(request: pb.InferRequest, shm: dataplane.SharedMemory | None) -> pb.InferReply:
    feed = dataplane.decode_inputs(request, shm)
    arena = dataplane.OutputArena(shm, request.output_offset, request.output_length, THRESHOLD)
    reply = pb.InferReply()
    arena.encode({"y": feed["x"] * 2}, reply)
    return reply


def test_shared_arrays_and_views_travel_without_copies(tmp_path: Path) -> None:
    worker = _Worker(tmp_path, _doubling)
    plane = worker.plane()
    x = plane.shared_array((512, 256), np.dtype("float32"))
    assert x is not None
    x[:] = 1.5
    free_before = plane.regions.largest_gap()
    out = plane.infer({"x": x}, timeout_s=5, copy=False)["y"]
    sent = worker.requests[-1].inputs[0]
    assert sent.in_shm and sent.shm_offset == x.ctypes.data - plane._base  # no copy made
    np.testing.assert_array_equal(out, np.full((512, 256), 3.0, np.float32))
    assert not out.flags.writeable
    assert plane.regions.largest_gap()[1] < free_before[1]  # the view holds its range
    copied = plane.infer({"x": x}, timeout_s=5)["y"]  # the default: the host's own copy
    np.testing.assert_array_equal(copied, out)
    del out
    gc.collect()
    assert plane.regions.largest_gap() == free_before  # given back when dropped
    plain = np.ones((512, 256), np.float32)  # a plain array is copied in, its range freed
    plane.infer({"x": plain}, timeout_s=5)
    assert worker.requests[-1].inputs[0].shm_offset != sent.shm_offset
    assert plane.regions.largest_gap() == free_before
    plane.close()


def test_a_slice_keeps_its_range(tmp_path: Path) -> None:
    plane = _Worker(tmp_path, _doubling).plane()
    x = plane.shared_array((512, 256), np.dtype("float32"))
    assert x is not None
    x[:] = 1
    part = x[:4]
    row = plane.infer({"x": x}, timeout_s=5, copy=False)["y"][0]
    del x
    gc.collect()
    other = plane.shared_array((512, 256), np.dtype("float32"))
    assert other is not None
    other[:] = 5
    plane.infer({"x": other}, timeout_s=5, copy=False)
    assert np.all(part == 1) and np.all(row == 2)  # neither range was handed out again
    plane.close()
    assert np.all(part == 1) and np.all(row == 2)  # still mapped after the plane is closed


@pytest.mark.parametrize("copy", [True, False], ids=["copy", "view"])
def test_outputs_outside_the_window_are_refused(tmp_path: Path, copy: bool) -> None:
    def outside(request: pb.InferRequest, shm: object) -> pb.InferReply:
        reply = pb.InferReply()
        t = reply.outputs.add(name="y", dtype="float32", shape=[1024], in_shm=True)
        t.shm_offset, t.shm_length = request.inputs[0].shm_offset, 4096  # the caller's input
        return reply

    plane = _Worker(tmp_path, outside).plane()
    with pytest.raises(BadReply, match="outside the output window"):
        plane.infer({"x": np.ones(1 << 16, np.float32)}, timeout_s=5, copy=copy)


def test_overlapping_views_are_refused_and_a_late_release_frees_nothing(tmp_path: Path) -> None:
    def overlapping(request: pb.InferRequest, shm: object) -> pb.InferReply:
        reply = pb.InferReply()
        for name, offset in (("a", 0), ("b", 2048)):
            t = reply.outputs.add(name=name, dtype="float32", shape=[1024], in_shm=True)
            t.shm_offset, t.shm_length = request.output_offset + offset, 4096
        return reply

    plane = _Worker(tmp_path, overlapping).plane()
    before = plane.regions.largest_gap()
    try:
        plane.infer({"x": np.ones(4, np.float32)}, timeout_s=5, copy=False)
    except BadReply as e:
        caught = e  # its traceback keeps the first view alive
    assert "overlaps" in str(caught)
    assert plane.regions.largest_gap() == before
    shared = plane.shared_array((1024,), np.dtype("float32"))  # takes the same range again
    assert shared is not None
    del caught
    gc.collect()  # the first view dies now: its release must not free the new array's range
    other = plane.shared_array((1024,), np.dtype("float32"))
    assert other is not None and other.ctypes.data != shared.ctypes.data


class _Garbled:
    """What the stand-in returns instead of a reply: raw bytes, not a valid InferReply."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def SerializeToString(self) -> bytes:
        return self.data


def test_a_garbled_reply_is_a_bad_reply(tmp_path: Path) -> None:
    plane = _Worker(tmp_path, lambda request, shm: _Garbled(b"\x0a\x05\xff")).plane()
    with pytest.raises(BadReply):
        plane.infer({"x": np.ones(4, np.float32)}, timeout_s=5)


def test_an_interrupted_call_closes_the_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plane = _Worker(tmp_path, _doubling).plane()

    def interrupted(n: int) -> bytes:
        raise KeyboardInterrupt

    monkeypatch.setattr(plane, "_recv", interrupted)
    with pytest.raises(KeyboardInterrupt):
        plane.infer({"x": np.ones(4, np.float32)}, timeout_s=5)
    assert not plane.connected  # out of step with the worker: closed, never reused


def test_shared_array_sizes_are_checked(tmp_path: Path) -> None:
    plane = _Worker(tmp_path, _doubling).plane()
    before = plane.regions.largest_gap()
    assert plane.shared_array((1 << 32, 1 << 32), np.dtype("float32")) is None
    assert plane.shared_array((9 << 20,), np.dtype("uint8")) is None  # larger than the memory
    assert plane.regions.largest_gap() == before


def test_regions_first_fit_aligned_and_freed_by_token() -> None:
    r = Regions(1 << 20)
    a, b = r.alloc(100), r.alloc(1000)
    assert a is not None and b is not None
    assert (a[0], b[0]) == (0, 2 * frames.ALIGN)  # 100 bytes take two aligned blocks
    r.free(*a)
    c = r.alloc(64)
    assert c is not None and c[0] == 0  # first fit reuses the hole
    r.free(a[0], a[1])  # a stale token: c keeps its range
    assert r.gaps()[0][0] == frames.ALIGN
    assert r.alloc(1 << 20) is None
    assert r.reserve(b[0] + 10, 10) is None  # overlaps b
    r.release_later(*b)  # what a finalizer does: applied on the next look
    assert r.reserve(b[0] + 10, 10) is not None


def test_the_worker_gets_the_memory_from_the_hello(tmp_path: Path) -> None:
    fd = _sealed_memory(1 << 16)
    left, right = socket.socketpair()
    with left, right:
        left.sendmsg([b"\x01"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))])
        os.close(fd)
        shm = dataplane._hello(right)
        assert shm is not None and shm.size == 1 << 16 and isinstance(shm.map, mmap.mmap)
        left.sendall(b"\x00")
        assert dataplane._hello(right) is None


def test_no_view_is_made_before_every_output_checks_out(tmp_path: Path) -> None:
    def good_then_bad(request: pb.InferRequest, shm: object) -> pb.InferReply:
        reply = pb.InferReply()
        a = reply.outputs.add(name="a", dtype="float32", shape=[1024], in_shm=True)
        a.shm_offset, a.shm_length = request.output_offset, 4096
        b = reply.outputs.add(name="b", dtype="float32", shape=[1024], in_shm=True)
        b.shm_offset = request.output_offset + request.output_length - 1024  # runs past it
        b.shm_length = 4096
        return reply

    plane = _Worker(tmp_path, good_then_bad).plane()
    before = plane.regions.largest_gap()
    with pytest.raises(BadReply, match="outside") as caught:
        plane.infer({"x": np.ones(4, np.float32)}, timeout_s=5, copy=False)

    def reachable(v: object) -> list[object]:  # a value, and what it holds one level down
        if isinstance(v, dict):
            return [v, *v.values()]
        if isinstance(v, (list, tuple)):
            return [v, *[w for item in v for w in reachable(item)]] if v else [v]
        return [v]

    tb = caught.value.__traceback__
    while tb is not None:  # nothing the traceback keeps alive points into shared memory
        held = [w for v in tb.tb_frame.f_locals.values() for w in reachable(v)]
        assert not any(in_shared_memory(w) for w in held)
        tb = tb.tb_next
    assert plane.regions.largest_gap() == before
