"""A hostile client (and a hostile model's answers) against the protocol fronts, on loopback with
a fake backend: requests beyond the in-flight bound are refused before their bodies are read
(the backend's queue bound is a memory bound too), idle, slow-header and slow-body connections
are closed, connections are capped, a BYTES tensor of many tiny elements cannot decode to ten
times its wire size, and a model's own output names never make a message unbounded."""

from __future__ import annotations

import http.client
import json
import socket
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from runner.serve.backend import BadRequest, ModelMeta, TensorMeta
from runner.serve.v2 import http_server, tensors
from runner.serve.v2.common import NotFound, run_infer
from runner.serve.v2.http_server import HttpServer
from runner.serve.v2.tensors import Limits, OutputError

pytestmark = pytest.mark.timeout(60)

META = ModelMeta("f", "1", "fake", [TensorMeta("x", "FP32", [-1])], [TensorMeta("y", "FP32", [-1])])
BODY = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": [1, 2]}]})


class Gated:
    """Answers y = x once the gate opens; counts the calls that reached it."""

    def __init__(self, meta: ModelMeta = META) -> None:
        self.gate = threading.Event()
        self.calls = 0
        self.meta = meta
        self.answer: dict[str, Any] | None = None

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        return True

    def model_ready(self, name: str, version: str = "") -> bool:
        return True

    def metadata(self) -> ModelMeta:
        return self.meta

    def infer(self, inputs: dict[str, np.ndarray], timeout_s: float | None) -> Any:
        self.calls += 1
        self.gate.wait(20)
        return self.answer if self.answer is not None else {"y": inputs["x"]}

    def report(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        pass


@pytest.fixture
def gated() -> Iterator[tuple[Gated, HttpServer]]:
    backend = Gated()
    server = HttpServer(backend, workers=1, max_connections=16)
    server.start()
    yield backend, server
    backend.gate.set()
    server.stop(1)


def _post(port: int, codes: list[int]) -> None:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        c.request("POST", "/v2/models/f/infer", BODY, {"Content-Type": "application/json"})
        codes.append(c.getresponse().status)
    finally:
        c.close()


def test_requests_beyond_the_inflight_bound_are_refused_at_once(
    gated: tuple[Gated, HttpServer],
) -> None:
    backend, server = gated  # one worker: 4 requests in flight at most
    codes: list[int] = []
    threads = [threading.Thread(target=_post, args=(server.port, codes)) for _ in range(12)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while codes.count(429) < 8 and time.monotonic() < deadline:
        time.sleep(0.05)
    refused = codes.count(429)  # while the backend still holds the first: no pile-up behind it
    backend.gate.set()
    for t in threads:
        t.join(30)
    assert refused == 8 and backend.calls <= 4
    assert sorted(codes) == [200] * 4 + [429] * 8


def _closed_by_server(s: socket.socket, within_s: float) -> bool:
    s.settimeout(within_s)
    try:
        return s.recv(1024) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_connections_beyond_the_cap_are_closed(gated: tuple[Gated, HttpServer]) -> None:
    backend, server = gated
    backend.gate.set()  # the backend answers at once: only connections are held here
    socks = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(24)]
    try:
        time.sleep(0.5)
        closed = sum(_closed_by_server(s, 0.2) for s in socks)
        assert closed == 8  # 16 kept
    finally:
        for s in socks:
            s.close()
    time.sleep(0.5)
    codes: list[int] = []
    _post(server.port, codes)  # others are served again once the idle ones are gone
    assert codes == [200]


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> Iterator[HttpServer]:
    monkeypatch.setattr(http_server, "KEEPALIVE_S", 1.0)
    monkeypatch.setattr(http_server, "BODY_TIMEOUT_S", 1.0)
    backend = Gated()
    backend.gate.set()
    server = HttpServer(backend, workers=1)
    server.start()
    yield server
    server.stop(1)


def test_idle_and_slow_header_connections_are_closed(quick: HttpServer) -> None:
    idle = socket.create_connection(("127.0.0.1", quick.port))
    slow = socket.create_connection(("127.0.0.1", quick.port))
    try:
        slow.sendall(b"GET /v2 HTTP/1.1\r\nHost: x\r\n")  # the headers never end
        assert _closed_by_server(idle, 5.0)
        assert _closed_by_server(slow, 5.0)
    finally:
        idle.close()
        slow.close()


def test_a_body_that_never_arrives_is_given_up(quick: HttpServer) -> None:
    s = socket.create_connection(("127.0.0.1", quick.port))
    try:
        s.sendall(
            b"POST /v2/models/f/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 1000\r\n\r\n{"inputs"'
        )
        s.settimeout(10)
        head = s.recv(4096)
        assert head.startswith(b"HTTP/1.1 504") or head == b""
    finally:
        s.close()


def test_a_bytes_tensor_of_many_tiny_elements_is_refused() -> None:
    limits = Limits()
    n = limits.max_bytes_elements + 1
    with pytest.raises(BadRequest, match="BYTES"):  # 4 MiB on the wire, ~50 MiB decoded
        tensors.from_raw("BYTES", [n], struct.pack("<I", 0) * n, limits)
    with pytest.raises(BadRequest, match="BYTES"):
        tensors.from_values("BYTES", [n], [""] * n, limits)
    many = np.empty(n, dtype=object)
    many[:] = b""
    with pytest.raises(OutputError, match="BYTES"):
        tensors.check_output("y", many, limits)
    few = tensors.from_raw("BYTES", [2], (struct.pack("<I", 1) + b"a") * 2, limits)
    assert list(few) == [b"a", b"a"]


def test_a_models_own_output_names_stay_bounded() -> None:
    odd = [TensorMeta(f"out\r\n{i}\x1b[31m" + "z" * 300, "FP32", [-1]) for i in range(2000)]
    backend = Gated(ModelMeta("f", "1", "fake", META.inputs, odd))
    backend.gate.set()
    backend.answer = {t.name: np.zeros(1, np.float32) for t in odd}
    x = {"x": np.zeros(2, np.float32)}
    with pytest.raises(NotFound) as e:
        run_infer(backend, x, ["nope"], 5.0, Limits())
    assert len(str(e.value)) < 2000 and "\r\n" not in str(e.value)
    with pytest.raises(OutputError):  # 2000 outputs, names past the name limit: not carried
        run_infer(backend, x, [], 5.0, Limits())


def test_grpc_connections_beyond_the_cap_are_closed() -> None:
    tg = pytest.importorskip("tritonclient.grpc")
    from runner.serve.v2.grpc_server import GrpcServer

    backend = Gated()
    backend.gate.set()
    server = GrpcServer(backend, workers=1, max_connections=8)
    port = server.start()
    try:
        socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
        time.sleep(0.5)
        closed = sum(_closed_by_server(s, 0.1) for s in socks)
        for s in socks:
            s.close()
        assert closed >= 12  # 8 kept (half-open ones, until the handshake timeout)
        time.sleep(0.5)
        client = tg.InferenceServerClient(f"127.0.0.1:{port}")
        x = tg.InferInput("x", [2], "FP32")
        x.set_data_from_numpy(np.zeros(2, np.float32))
        assert client.infer("f", [x]).as_numpy("y").tolist() == [0.0, 0.0]
        client.close()
    finally:
        server.stop(1)
