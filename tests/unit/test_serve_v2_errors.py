"""Backend exceptions become the right gRPC status and HTTP code with a clear message, per-request
deadlines reach the backend, a token is checked, and what a client sends is bounded; with a
fake backend and real tritonclient clients on loopback."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

tg = pytest.importorskip("tritonclient.grpc")
th = pytest.importorskip("tritonclient.http")

from runner.serve.backend import (  # noqa: E402
    BadRequest,
    Deadline,
    Exhausted,
    ModelMeta,
    TensorMeta,
    Unavailable,
)
from runner.serve.v2.grpc_server import GrpcServer  # noqa: E402
from runner.serve.v2.http_server import HttpServer  # noqa: E402
from runner.serve.v2.tensors import Limits  # noqa: E402

META = ModelMeta("f", "1", "fake", [TensorMeta("x", "FP32", [-1])], [TensorMeta("y", "FP32", [-1])])


class Fake:
    """Answers y = x + 1, or raises what it is told to; records the deadlines it was given."""

    def __init__(self) -> None:
        self.raises: BaseException | None = None
        self.answer: Any = None
        self.timeouts: list[float | None] = []
        self.is_ready = True

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        return self.is_ready

    def model_ready(self, name: str, version: str = "") -> bool:
        return self.is_ready and name == "f"

    def metadata(self) -> ModelMeta:
        return META

    def infer(self, inputs: dict[str, np.ndarray], timeout_s: float | None) -> Any:
        self.timeouts.append(timeout_s)
        if self.raises is not None:
            raise self.raises
        if self.answer is not None:
            return self.answer
        return {"y": inputs["x"] + 1}

    def report(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        pass


SMALL = Limits(max_message_bytes=1 << 16, max_elements=4096, max_json_depth=8)


@pytest.fixture(scope="module")
def fake() -> Fake:
    return Fake()


@pytest.fixture(scope="module")
def servers(fake: Fake) -> Iterator[tuple[str, str]]:
    g = GrpcServer(fake, limits=SMALL, default_timeout_s=7.0)
    h = HttpServer(fake, limits=SMALL, default_timeout_s=7.0)
    gp, hp = g.start(), h.start()
    yield f"127.0.0.1:{gp}", f"127.0.0.1:{hp}"
    g.stop(1)
    h.stop(1)


@pytest.fixture(autouse=True)
def _reset(fake: Fake) -> None:
    fake.raises, fake.answer, fake.is_ready = None, None, True
    fake.timeouts.clear()


def _x(mod, n: int = 3):  # type: ignore[no-untyped-def]
    return [mod.InferInput("x", [n], "FP32").set_data_from_numpy(np.arange(n, dtype=np.float32))]


CASES = [
    (Unavailable("quarantined: AL-EXAMPLE ran /bin/sh"), "UNAVAILABLE", "503", "AL-EXAMPLE"),
    (Exhausted("queue full (8)"), "RESOURCE_EXHAUSTED", "429", "queue full"),
    (Deadline("no answer in 7s"), "DEADLINE_EXCEEDED", "504", "no answer"),
    (BadRequest("x has rank 2"), "INVALID_ARGUMENT", "400", "x has rank 2"),
    (RuntimeError("secret internals"), "INTERNAL", "500", "internal error"),
]


@pytest.mark.parametrize(("exc", "status", "code", "words"), CASES)
def test_backend_errors_are_mapped(
    servers: tuple[str, str], fake: Fake, exc: Exception, status: str, code: str, words: str
) -> None:
    fake.raises = exc
    g, h = tg.InferenceServerClient(servers[0]), th.InferenceServerClient(servers[1])
    try:
        with pytest.raises(tg.InferenceServerException) as ge:
            g.infer("f", _x(tg))
        assert ge.value.status() == f"StatusCode.{status}" and words in ge.value.message()
        with pytest.raises(th.InferenceServerException) as he:
            h.infer("f", _x(th))
        assert he.value.status() == code and words in he.value.message()
    finally:
        g.close()
        h.close()
    if isinstance(exc, RuntimeError):
        assert "secret" not in ge.value.message() and "secret" not in he.value.message()


def test_not_ready_is_seen(servers: tuple[str, str], fake: Fake) -> None:
    fake.is_ready = False
    g, h = tg.InferenceServerClient(servers[0]), th.InferenceServerClient(servers[1])
    try:
        assert not g.is_server_ready() and not g.is_model_ready("f")
        assert not h.is_server_ready() and not h.is_model_ready("f") and h.is_server_live()
    finally:
        g.close()
        h.close()


@pytest.mark.parametrize(
    "answer",
    [
        {},  # the output is missing
        {"y": "not an array"},
        {"y": np.zeros(5000, np.float32)},  # more elements than allowed
        {"y": np.zeros(2, np.complex64)},  # a dtype the protocol cannot carry
        ["y"],
    ],
)
def test_model_outputs_are_checked(servers: tuple[str, str], fake: Fake, answer: Any) -> None:
    fake.answer = answer
    g = tg.InferenceServerClient(servers[0])
    try:
        with pytest.raises(tg.InferenceServerException) as ge:
            g.infer("f", _x(tg))
        assert ge.value.status() == "StatusCode.INTERNAL"
        assert "model output refused" in ge.value.message()
    finally:
        g.close()


def test_deadlines_reach_the_backend(servers: tuple[str, str], fake: Fake) -> None:
    g, h = tg.InferenceServerClient(servers[0]), th.InferenceServerClient(servers[1])
    try:
        g.infer("f", _x(tg))  # the server's default
        g.infer("f", _x(tg), client_timeout=2.0)  # the gRPC deadline
        h.infer("f", _x(th))
        h.infer("f", _x(th), timeout=250_000)  # the timeout parameter, in microseconds
        g.infer("f", _x(tg), timeout=100_000_000)  # longer than the default: the default
    finally:
        g.close()
        h.close()
    t = fake.timeouts
    assert t[0] == 7.0 and 1.0 < t[1] <= 2.1 and t[2] == 7.0 and t[3] == 0.25 and t[4] == 7.0


def _post(addr: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    host, port = addr.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("POST", "/v2/models/f/infer", body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"null")
    finally:
        conn.close()


def _doc(**extra: Any) -> dict[str, Any]:
    return {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], **extra}]}


@pytest.mark.parametrize(
    ("body", "headers", "words"),
    [
        (b"{", {}, "not valid JSON"),
        (json.dumps(_doc(data=[1.0])).encode(), {}, "shape [2] needs 2"),
        (json.dumps(_doc(data=[1.0, True])).encode(), {}, "wrong kind"),
        (json.dumps(_doc(shape=[-1], data=[])).encode(), {}, "not a count"),
        (json.dumps(_doc(shape=[1 << 40], data=[])).encode(), {}, "more than 4096"),
        (json.dumps(_doc(datatype="FP8", data=[1, 2])).encode(), {}, "unsupported datatype"),
        (b"[" * 50 + b"]" * 50, {}, "nested deeper"),
        (json.dumps(_doc(data=[[[[[[[[[1.0]]]]]]]], 2.0])).encode(), {}, "nested deeper"),
        (b'{"inputs": []}', {}, "inputs must be a list"),
    ],
)
def test_json_requests_are_bounded(
    servers: tuple[str, str], body: bytes, headers: dict[str, str], words: str
) -> None:
    status, doc = _post(servers[1], body, headers)
    assert status == 400 and words in doc["error"], doc


def _binary(size: int, data: bytes, head: int | None = None) -> tuple[bytes, dict[str, str]]:
    header = json.dumps(_doc(parameters={"binary_data_size": size})).encode()
    length = len(header) if head is None else head
    return header + data, {"Inference-Header-Content-Length": str(length)}


@pytest.mark.parametrize(
    ("size", "data", "head", "words"),
    [
        (8, b"\0" * 4, None, "past the body's end"),
        (4, b"\0" * 4, None, "raw contents are 4 bytes"),
        (8, b"\0" * 12, None, "belong to no input"),
        (8, b"\0" * 8, 10**6, "longer than the body"),
        (8, b"\0" * 8, -1, "must be a byte count"),
    ],
)
def test_binary_requests_are_bounded(
    servers: tuple[str, str], size: int, data: bytes, head: int | None, words: str
) -> None:
    body, headers = _binary(size, data, head)
    status, doc = _post(servers[1], body, headers)
    assert status == 400 and words in doc["error"], doc
    body, headers = _binary(8, np.array([1.5, 2.5], np.float32).tobytes())
    status, doc = _post(servers[1], body, headers)
    assert status == 200 and doc["outputs"][0]["data"] == [2.5, 3.5]


def test_oversized_requests_are_refused(servers: tuple[str, str]) -> None:
    status, doc = _post(servers[1], b" " * (1 << 17))
    assert status == 413 and "too large" in doc["error"]
    status, doc = _post(servers[1], b"{}", {"Content-Encoding": "gzip"})
    assert status == 400 and "compressed" in doc["error"]
    g = tg.InferenceServerClient(servers[0])
    try:
        with pytest.raises(tg.InferenceServerException) as ge:
            g.infer("f", _x(tg, 1 << 15))  # 128 KiB over a 64 KiB message cap
        assert ge.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
    finally:
        g.close()


def test_a_token_is_required_when_set(fake: Fake) -> None:
    g = GrpcServer(fake, token="s3cret")
    h = HttpServer(fake, token="s3cret")
    gp, hp = g.start(), h.start()
    try:
        gc = tg.InferenceServerClient(f"127.0.0.1:{gp}")
        hc = th.InferenceServerClient(f"127.0.0.1:{hp}")
        with pytest.raises(tg.InferenceServerException) as ge:
            gc.infer("f", _x(tg))
        assert ge.value.status() == "StatusCode.UNAUTHENTICATED"
        with pytest.raises(th.InferenceServerException) as he:
            hc.infer("f", _x(th), headers={"Authorization": "Bearer wrong"})
        assert he.value.status() == "401"
        auth = {"Authorization": "Bearer s3cret"}
        r = gc.infer("f", _x(tg), headers={"authorization": "Bearer s3cret"})
        np.testing.assert_array_equal(r.as_numpy("y"), [1, 2, 3])
        r = hc.infer("f", _x(th), headers=auth)
        np.testing.assert_array_equal(r.as_numpy("y"), [1, 2, 3])
        assert hc.is_server_live(headers=auth) and not hc.is_server_live()
        gc.close()
        hc.close()
    finally:
        g.stop(1)
        h.stop(1)


def test_metrics_are_served(servers: tuple[str, str]) -> None:
    pytest.importorskip("prometheus_client")
    h = th.InferenceServerClient(servers[1])
    h.infer("f", _x(th))
    h.close()
    host, port = servers[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("GET", "/metrics")
    resp = conn.getresponse()
    text = resp.read().decode()
    conn.close()
    assert resp.status == 200 and "airlock_" in text and 'protocol="http"' in text


def test_grpc_messages_that_do_not_parse_are_invalid_argument(servers: tuple[str, str]) -> None:
    import grpc

    with grpc.insecure_channel(servers[0]) as ch:
        call = ch.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        with pytest.raises(grpc.RpcError) as e:
            call(b"\x0a\xff\xff\xff\xff\x0f", timeout=10)  # a length past the message's end
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "does not parse" in (e.value.details() or "")
        with pytest.raises(grpc.RpcError) as e:
            ch.unary_unary("/inference.GRPCInferenceService/ModelStreamInfer")(b"", timeout=10)
        assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
    g = tg.InferenceServerClient(servers[0])
    try:
        with pytest.raises(tg.InferenceServerException) as ge:
            g.infer("other", _x(tg))
        assert ge.value.status() == "StatusCode.NOT_FOUND" and "'other'" in ge.value.message()
    finally:
        g.close()
