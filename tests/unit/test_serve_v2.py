"""The Open Inference Protocol fronts with real clients: tritonclient.grpc and tritonclient.http
against GrpcServer and HttpServer on loopback, over an InProcessBackend running a small ONNX
model (FP32, INT64 and BYTES inputs) whose answers are compared with onnxruntime in-process."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
tg = pytest.importorskip("tritonclient.grpc")
th = pytest.importorskip("tritonclient.http")

from runner.serve.backend import InProcessBackend  # noqa: E402
from runner.serve.v2.grpc_server import GrpcServer  # noqa: E402
from runner.serve.v2.http_server import HttpServer  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
RNG = np.random.default_rng(18)


def make_model(path: Path) -> Path:
    from onnx import TensorProto, helper, numpy_helper

    w = RNG.standard_normal((4, 3)).astype(np.float32)
    vi = helper.make_tensor_value_info
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["xw"]),
            helper.make_node("Relu", ["xw"], ["y"]),
            helper.make_node("Mul", ["ids", "two"], ["ids2"]),
            helper.make_node("Identity", ["s"], ["s_out"]),
        ],
        "serve",
        [
            vi("x", TensorProto.FLOAT, ["batch", 4]),
            vi("ids", TensorProto.INT64, ["batch"]),
            vi("s", TensorProto.STRING, ["batch"]),
        ],
        [
            vi("y", TensorProto.FLOAT, ["batch", 3]),
            vi("ids2", TensorProto.INT64, ["batch"]),
            vi("s_out", TensorProto.STRING, ["batch"]),
        ],
        [numpy_helper.from_array(w, "W"), numpy_helper.from_array(np.array(2, np.int64), "two")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return path


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model(tmp_path_factory.mktemp("serve") / "m.onnx")


@pytest.fixture(scope="module")
def servers(model: Path) -> Iterator[tuple[str, str]]:
    backend = InProcessBackend(model, name="m", version="3")
    grpc_server, http_server = GrpcServer(backend), HttpServer(backend)
    g, h = grpc_server.start(), http_server.start()
    yield f"127.0.0.1:{g}", f"127.0.0.1:{h}"
    grpc_server.stop(1)
    http_server.stop(1)


def feed(n: int = 3) -> dict[str, np.ndarray]:
    s = np.array([f"w{i}é".encode() for i in range(n)], dtype=object)
    return {
        "x": RNG.standard_normal((n, 4)).astype(np.float32),
        "ids": RNG.integers(-(2**40), 2**40, n, dtype=np.int64),
        "s": s,
    }


def expected(model: Path, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    text = np.array([b.decode() for b in inputs["s"]], dtype=object)
    y, ids2, s_out = sess.run(None, {**inputs, "s": text})
    return {"y": y, "ids2": ids2, "s_out": np.array([t.encode() for t in s_out], dtype=object)}


def triton_inputs(mod, inputs: dict[str, np.ndarray], binary: bool = True) -> list:  # type: ignore[no-untyped-def]
    types = {"x": "FP32", "ids": "INT64", "s": "BYTES"}
    out = []
    for name, arr in inputs.items():
        i = mod.InferInput(name, list(arr.shape), types[name])
        if mod is th:
            i.set_data_from_numpy(arr, binary_data=binary)
        else:
            i.set_data_from_numpy(arr)
        out.append(i)
    return out


def check_equal(result, want: dict[str, np.ndarray], as_text: bool = False) -> None:  # type: ignore[no-untyped-def]
    np.testing.assert_array_equal(result.as_numpy("y"), want["y"])
    np.testing.assert_array_equal(result.as_numpy("ids2"), want["ids2"])
    got = result.as_numpy("s_out")
    if as_text:  # JSON BYTES come back as text
        got = np.array([str(t).encode() for t in got], dtype=object)
    assert list(got) == list(want["s_out"])


def test_grpc_health_and_metadata(servers: tuple[str, str]) -> None:
    c = tg.InferenceServerClient(servers[0])
    try:
        assert c.is_server_live() and c.is_server_ready()
        assert c.is_model_ready("m") and c.is_model_ready("m", "3")
        assert not c.is_model_ready("other") and not c.is_model_ready("m", "4")
        meta = c.get_server_metadata(as_json=True)
        assert meta["name"] == "airlock" and "binary_tensor_data" in meta["extensions"]
        mm = c.get_model_metadata("m", as_json=True)
        assert mm["versions"] == ["3"] and mm["platform"] == "onnxruntime_onnx"
        assert [(t["name"], t["datatype"], t["shape"]) for t in mm["inputs"]] == [
            ("x", "FP32", ["-1", "4"]),
            ("ids", "INT64", ["-1"]),
            ("s", "BYTES", ["-1"]),
        ]
        with pytest.raises(tg.InferenceServerException) as e:
            c.get_model_metadata("nope")
        assert e.value.status() == "StatusCode.NOT_FOUND"
    finally:
        c.close()


def test_http_health_and_metadata(servers: tuple[str, str]) -> None:
    c = th.InferenceServerClient(servers[1])
    try:
        assert c.is_server_live() and c.is_server_ready()
        assert c.is_model_ready("m") and c.is_model_ready("m", "3")
        assert not c.is_model_ready("other")
        assert c.get_server_metadata()["extensions"] == ["binary_tensor_data"]
        mm = c.get_model_metadata("m", "3")
        assert [o["name"] for o in mm["outputs"]] == ["y", "ids2", "s_out"]
        assert mm["inputs"][0] == {"name": "x", "datatype": "FP32", "shape": [-1, 4]}
        with pytest.raises(th.InferenceServerException) as e:
            c.get_model_metadata("m", "9")
        assert e.value.status() == "404"
    finally:
        c.close()


def test_grpc_infer_equals_onnxruntime(servers: tuple[str, str], model: Path) -> None:
    inputs = feed()
    c = tg.InferenceServerClient(servers[0])
    try:
        r = c.infer("m", triton_inputs(tg, inputs), request_id="req-1")
        check_equal(r, expected(model, inputs))
        assert r.get_response().id == "req-1"
        one = c.infer("m", triton_inputs(tg, inputs), outputs=[tg.InferRequestedOutput("ids2")])
        assert [o.name for o in one.get_response().outputs] == ["ids2"]
    finally:
        c.close()


def test_grpc_typed_contents(servers: tuple[str, str], model: Path) -> None:
    """Typed InferTensorContents (no raw_input_contents), sent with tritonclient's own messages:
    the wire is the protocol's though our package is renamed."""
    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    inputs = feed(2)
    req = service_pb2.ModelInferRequest(model_name="m")
    t = req.inputs.add(name="x", datatype="FP32", shape=[2, 4])
    t.contents.fp32_contents.extend(inputs["x"].reshape(-1).tolist())
    t = req.inputs.add(name="ids", datatype="INT64", shape=[2])
    t.contents.int64_contents.extend(inputs["ids"].tolist())
    t = req.inputs.add(name="s", datatype="BYTES", shape=[2])
    t.contents.bytes_contents.extend(list(inputs["s"]))
    with grpc.insecure_channel(servers[0]) as ch:
        resp = service_pb2_grpc.GRPCInferenceServiceStub(ch).ModelInfer(req, timeout=10)
    want = expected(model, inputs)
    names = [o.name for o in resp.outputs]
    y = np.frombuffer(resp.raw_output_contents[names.index("y")], np.float32).reshape(2, 3)
    np.testing.assert_array_equal(y, want["y"])
    ids2 = np.frombuffer(resp.raw_output_contents[names.index("ids2")], np.int64)
    np.testing.assert_array_equal(ids2, want["ids2"])


@pytest.mark.parametrize("binary", [True, False])
def test_http_infer_equals_onnxruntime(servers: tuple[str, str], model: Path, binary: bool) -> None:
    inputs = feed()
    c = th.InferenceServerClient(servers[1])
    try:
        outs = [th.InferRequestedOutput(n, binary_data=binary) for n in ("y", "ids2", "s_out")]
        r = c.infer("m", triton_inputs(th, inputs, binary), outputs=outs, model_version="3")
        check_equal(r, expected(model, inputs), as_text=not binary)
        # no outputs named: every output, in binary (tritonclient asks binary_data_output)
        check_equal(c.infer("m", triton_inputs(th, inputs, binary)), expected(model, inputs))
    finally:
        c.close()


def test_bad_inputs_are_invalid_argument_and_400(servers: tuple[str, str]) -> None:
    inputs = feed()
    del inputs["ids"]
    g, h = tg.InferenceServerClient(servers[0]), th.InferenceServerClient(servers[1])
    try:
        with pytest.raises(tg.InferenceServerException) as ge:
            g.infer("m", triton_inputs(tg, inputs))
        assert ge.value.status() == "StatusCode.INVALID_ARGUMENT"
        assert "takes inputs" in ge.value.message()
        with pytest.raises(th.InferenceServerException) as he:
            h.infer("m", triton_inputs(th, inputs))
        assert he.value.status() == "400" and "takes inputs" in he.value.message()
        x = tg.InferInput("x", [3, 4], "INT32").set_data_from_numpy(np.zeros((3, 4), np.int32))
        with pytest.raises(tg.InferenceServerException) as ge:
            g.infer("m", [x, *triton_inputs(tg, feed())[1:]])
        assert ge.value.status() == "StatusCode.INVALID_ARGUMENT"
        with pytest.raises(th.InferenceServerException) as he:
            h.infer("m", triton_inputs(th, feed()), outputs=[th.InferRequestedOutput("zz")])
        assert he.value.status() == "404"
    finally:
        g.close()
        h.close()


def _airlock_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("airlock-")]


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_both_servers_stop_cleanly(model: Path) -> None:
    before = _airlock_threads()
    backend = InProcessBackend(model)
    g, h = GrpcServer(backend), HttpServer(backend)
    gp, hp = g.start(), h.start()
    assert not _free(gp) and not _free(hp)
    c = th.InferenceServerClient(f"127.0.0.1:{hp}")
    assert c.is_server_live()
    c.close()
    g.stop(1)
    h.stop(1)
    assert _free(gp) and _free(hp)
    assert _airlock_threads() == before


def test_a_taken_port_is_a_usage_error(model: Path) -> None:
    from runner.errors import UsageError

    before = _airlock_threads()
    backend = InProcessBackend(model)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        h = HttpServer(backend, port=port)
        with pytest.raises(UsageError, match="cannot listen for HTTP"):
            h.start()
        g = GrpcServer(backend, port=port)
        with pytest.raises(UsageError, match="cannot listen for gRPC"):
            g.start()
        g.stop()
    assert _airlock_threads() == before


def test_no_descriptor_clash_with_tritonclient() -> None:
    """tritonclient registers inference.* in the default pool; our messages are
    airlock.serve.v2.*: both import in one process, in either order."""
    for first, second in (
        ("tritonclient.grpc", "runner.serve.v2.grpc_server"),
        ("runner.serve.v2.grpc_server", "tritonclient.grpc"),
    ):
        code = (
            f"import {first}, {second}\n"
            "from google.protobuf import descriptor_pool as p\n"
            "pool = p.Default()\n"
            "print(pool.FindMessageTypeByName('inference.ModelInferRequest').full_name,"
            " pool.FindMessageTypeByName('airlock.serve.v2.ModelInferRequest').full_name)\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.split() == [
            "inference.ModelInferRequest",
            "airlock.serve.v2.ModelInferRequest",
        ]


def test_serve_proto_code_is_fresh(tmp_path: Path) -> None:
    import subprocess
    import sys

    # protoc in a process of its own: in the suite's, after torch, Keras and llama.cpp loaded
    # their native libraries, grpc_tools' compiler crashed (SIGSEGV)
    script = ROOT / "scripts" / "gen_proto.py"
    subprocess.run([sys.executable, str(script), "--serve", str(tmp_path)], check=True)
    committed = ROOT / "runner" / "serve" / "v2" / "_proto"
    for name in ("airlock_serve_v2_pb2.py", "airlock_serve_v2_pb2.pyi"):
        assert (tmp_path / name).read_text() == (committed / name).read_text(), (
            f"{name} is stale: run 'make proto'"
        )
