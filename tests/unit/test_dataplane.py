"""The worker's side of the shared-memory data path, run in-process on a temp file: outputs an
ONNX model writes in place equal those onnxruntime returns, and a model whose declared output
shape does not hold still gets the right answer."""

from __future__ import annotations

import gc
from pathlib import Path

import numpy as np
import pytest

from runner._client import BadReply
from runner._dataplane import DataPlane, Regions
from runner.worker import dataplane, loaders
from runner.worker._proto import worker_pb2 as pb

THRESHOLD = 64 << 10


def _onnx(path: Path, in_shape: list[object], out_shape: list[object], reshape: bool = False
          ) -> Path:
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)
    small = helper.make_tensor_value_info("s", TensorProto.FLOAT, [1])
    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0, noop_with_empty_axes=0)]
    inits = []
    if reshape:  # y is declared [n, 64] but is really [n * 2, 32]
        inits.append(numpy_helper.from_array(np.array([-1, 32], np.int64), "shape"))
        nodes.append(helper.make_node("Reshape", ["r", "shape"], ["y"]))
    else:
        nodes.append(helper.make_node("Identity", ["r"], ["y"]))
    graph = helper.make_graph(nodes, "g", [x], [y, small], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return path


def _call(loaded: loaders.Loaded, shm: dataplane.SharedMemory, x: np.ndarray
          ) -> tuple[pb.InferReply, dict[str, np.ndarray]]:
    request = pb.InferRequest()
    end = dataplane.put_tensor(shm.map, 0, "x", x, request.inputs.add())
    feed = dataplane.decode_inputs(request, shm)
    arena = dataplane.OutputArena(shm, end, shm.size - end, THRESHOLD)
    assert loaded.run_into is not None
    reply = pb.InferReply()
    arena.encode(loaded.run_into(feed, arena.place), reply)
    out = {}
    for t in reply.outputs:
        if t.in_shm:
            meta = pb.Tensor(name=t.name, dtype=t.dtype, shape=list(t.shape))
            out[t.name] = np.array(dataplane.tensors.decode_buffer(
                meta, shm.view(t.shm_offset, t.shm_length))[1])
        else:
            out[t.name] = dataplane.tensors.decode(t)[1]
    return reply, out


@pytest.fixture
def shm(tmp_path: Path) -> dataplane.SharedMemory:
    path = tmp_path / "shm"
    path.write_bytes(b"")
    with path.open("r+b") as f:
        f.truncate(8 << 20)
    return dataplane.SharedMemory(str(path))


@pytest.mark.parametrize("reshape", [False, True], ids=["declared", "declared-wrongly"])
def test_outputs_written_in_place_match_a_plain_run(tmp_path: Path, shm: dataplane.SharedMemory,
                                                    reshape: bool) -> None:
    model = _onnx(tmp_path / "m.onnx", ["n", 64], ["n", 64], reshape=reshape)
    loaded = loaders._load_onnx(model, None, 1)
    x = np.random.default_rng(0).standard_normal((2048, 64)).astype(np.float32)  # 512 KiB
    reply, out = _call(loaded, shm, x)
    assert loaded.run is not None
    expected = loaded.run({"x": x})
    assert set(out) == {"y", "s"}
    for name, value in expected.items():
        assert out[name].shape == value.shape and out[name].dtype == value.dtype
        np.testing.assert_array_equal(out[name], value)
    y, s = (next(t for t in reply.outputs if t.name == n) for n in ("y", "s"))
    assert y.in_shm and y.shm_offset >= x.nbytes and y.shm_offset % dataplane.ALIGN == 0
    assert not s.in_shm  # 4 bytes go inline


def test_output_shapes_come_from_the_declaration_and_the_feed() -> None:
    declared = ([("x", ["n", 64]), ("m", [])],
                [("y", "float32", ["n", 64]), ("z", "int64", ["k"]), ("w", "float32", [3, 2]),
                 ("v", "", ["n"]), ("u", "float32", [])])
    feed = {"x": np.zeros((5, 64), np.float32)}
    assert loaders._output_shapes(declared, feed) == {
        "y": ("float32", (5, 64)), "w": ("float32", (3, 2))}


def test_the_arena_never_overlaps_inputs_or_runs_past_the_file(shm: dataplane.SharedMemory
                                                               ) -> None:
    arena = dataplane.OutputArena(shm, 1000, (4 << 20) - 1000, THRESHOLD)
    a = arena.place("a", "float32", (256, 64))
    assert a is not None
    assert arena.place("a", "float32", (256, 64)) is None  # one view per name
    assert arena.place("small", "float32", (4,)) is None  # below the threshold: inline
    assert arena.place("huge", "float64", (1 << 19,)) is None  # does not fit in the window
    b = arena.place("b", "uint8", (THRESHOLD,))
    assert b is not None
    base = np.frombuffer(shm.map, np.uint8)
    offsets = [x.__array_interface__["data"][0] - base.__array_interface__["data"][0]
               for x in (a, b)]
    assert offsets[0] >= 1000 and offsets[0] % dataplane.ALIGN == 0
    assert offsets[1] >= offsets[0] + a.nbytes
    del a, b, base


# --- the host's side, against a stand-in worker on a real socket and file -------------------
# (pure logic: what the host accepts from a worker; containment is tested with Docker)

class _Worker:
    """Answers each call with handle(request, shm) on a Unix socket, as the worker would."""

    def __init__(self, tmp_path: Path, handle: object) -> None:
        self.shm_path = tmp_path / "tensors.bin"
        with self.shm_path.open("wb") as f:
            f.truncate(8 << 20)
        self.shm = dataplane.SharedMemory(str(self.shm_path))
        self.requests: list[pb.InferRequest] = []
        self.socket = tmp_path / "data.sock"

        def answer(request: pb.InferRequest) -> pb.InferReply:
            self.requests.append(request)
            return handle(request, self.shm)  # type: ignore[operator]

        dataplane.serve(str(self.socket), answer, 1 << 30)

    def plane(self) -> DataPlane:
        plane = DataPlane(self.socket, self.shm_path, 64 << 20, 64 << 20)
        assert plane.connect(timeout_s=5)
        return plane


def _doubling(request: pb.InferRequest, shm: dataplane.SharedMemory) -> pb.InferReply:
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
    x[:] = 0  # a plain array of the same size is copied in, and its range freed after
    plain = np.ones((512, 256), np.float32)
    plane.infer({"x": plain}, timeout_s=5)
    assert worker.requests[-1].inputs[0].shm_offset != sent.shm_offset
    assert plane.regions.largest_gap() == free_before
    plane.close()


@pytest.mark.parametrize("copy", [True, False], ids=["copy", "view"])
def test_outputs_outside_the_window_are_refused(tmp_path: Path, copy: bool) -> None:
    def outside(request: pb.InferRequest, shm: dataplane.SharedMemory) -> pb.InferReply:
        reply = pb.InferReply()
        t = reply.outputs.add(name="y", dtype="float32", shape=[1024], in_shm=True)
        t.shm_offset, t.shm_length = request.inputs[0].shm_offset, 4096  # the caller's input
        return reply

    plane = _Worker(tmp_path, outside).plane()
    with pytest.raises(BadReply, match="outside the output window"):
        plane.infer({"x": np.ones(1 << 16, np.float32)}, timeout_s=5, copy=copy)


def test_overlapping_output_views_are_refused_and_nothing_stays_leased(tmp_path: Path) -> None:
    def overlapping(request: pb.InferRequest, shm: dataplane.SharedMemory) -> pb.InferReply:
        reply = pb.InferReply()
        for name, offset in (("a", 0), ("b", 2048)):
            t = reply.outputs.add(name=name, dtype="float32", shape=[1024], in_shm=True)
            t.shm_offset, t.shm_length = request.output_offset + offset, 4096
        return reply

    plane = _Worker(tmp_path, overlapping).plane()
    before = plane.regions.largest_gap()
    with pytest.raises(BadReply, match="overlaps"):
        plane.infer({"x": np.ones(4, np.float32)}, timeout_s=5, copy=False)
    assert plane.regions.largest_gap() == before


def test_regions_first_fit_aligned_and_freed() -> None:
    r = Regions(1 << 20)
    a, b = r.alloc(100), r.alloc(1000)
    assert (a, b) == (0, 2 * dataplane.ALIGN)  # 100 bytes take two aligned blocks
    r.free(a)
    assert r.alloc(64) == 0  # first fit reuses the hole
    assert r.alloc(1 << 20) is None
    assert not r.reserve(b + 10, 10)  # overlaps b
    r.release_later(b)  # what a finalizer does: applied on the next look
    assert r.reserve(b + 10, 10)
    assert r.gaps()[0] == (dataplane.ALIGN, b + 10 - dataplane.ALIGN)
