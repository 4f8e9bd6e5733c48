"""The request decoders take hostile input: arbitrary or mutated bodies and messages raise only
BadRequest (the mapped error), never anything else, and never take long."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.serve.backend import BadRequest
from runner.serve.v2 import http_codec, tensors
from runner.serve.v2._proto import airlock_serve_v2_pb2 as pb
from runner.serve.v2.grpc_server import decode_infer
from runner.serve.v2.tensors import Limits

LIMITS = Limits(max_message_bytes=1 << 20, max_elements=1 << 16, max_total_bytes=1 << 20)
FUZZ = settings(
    max_examples=150,
    deadline=timedelta(seconds=5),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
DATATYPES = [*tensors.DTYPES, "FP8", "", "BF16"]

dims = st.one_of(st.integers(0, 5), st.integers(-2, 2), st.integers(0, 1 << 62))
shapes = st.lists(dims, max_size=10)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True),
    st.text(max_size=8),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=40,
)


def _timed(fn: Any, *args: Any) -> Any:
    start = time.monotonic()
    try:
        return fn(*args)
    except BadRequest:
        return None
    finally:
        assert time.monotonic() - start < 3.0


@st.composite
def infer_docs(draw: st.DrawFn) -> tuple[bytes, str | None]:
    """Plausible infer requests, some binary, with fields drawn wrong at times."""
    inputs = []
    binary = b""
    for _ in range(draw(st.integers(0, 4))):
        t: dict[str, Any] = {
            "name": draw(st.sampled_from(["x", "y", "x", ""]) | st.text(max_size=4)),
            "datatype": draw(st.sampled_from(DATATYPES)),
            "shape": draw(shapes | json_values),
        }
        if draw(st.booleans()):
            chunk = draw(st.binary(max_size=64))
            t["parameters"] = {"binary_data_size": draw(st.sampled_from([len(chunk), 3, -1]))}
            binary += chunk
        else:
            t["data"] = draw(json_values | st.lists(scalars, max_size=12))
        inputs.append(t)
    doc: dict[str, Any] = {"inputs": inputs}
    if draw(st.booleans()):
        doc["outputs"] = draw(st.lists(st.fixed_dictionaries({"name": st.text(max_size=3)})))
    if draw(st.booleans()):
        doc["parameters"] = draw(json_values)
    head = json.dumps(doc).encode()
    length = draw(st.sampled_from([str(len(head)), None, "0", "x", str(len(head) + 1)]))
    return head + (binary if length is not None else b""), length


@FUZZ
@given(body=st.binary(max_size=512), length=st.none() | st.text(max_size=6))
def test_arbitrary_http_bodies_raise_only_bad_request(body: bytes, length: str | None) -> None:
    _timed(http_codec.decode_request, body, length, LIMITS)


@FUZZ
@given(case=infer_docs())
def test_plausible_http_bodies_raise_only_bad_request(case: tuple[bytes, str | None]) -> None:
    req = _timed(http_codec.decode_request, case[0], case[1], LIMITS)
    if req is not None:  # what decoded fits its own shapes
        for arr in req.inputs.values():
            assert isinstance(arr, np.ndarray) and arr.size <= LIMITS.max_elements


@FUZZ
@given(doc=json_values)
def test_arbitrary_json_documents_raise_only_bad_request(doc: Any) -> None:
    _timed(http_codec.decode_request, json.dumps(doc).encode(), None, LIMITS)


def _valid_request() -> bytes:
    req = pb.ModelInferRequest(model_name="m", id="1")
    t = req.inputs.add(name="x", datatype="FP32", shape=[2, 2])
    t.contents.fp32_contents.extend([1.0, 2.0, 3.0, 4.0])
    t = req.inputs.add(name="s", datatype="BYTES", shape=[2])
    t.contents.bytes_contents.extend([b"a", b"bc"])
    req.outputs.add(name="y")
    return req.SerializeToString()


@FUZZ
@given(data=st.data())
def test_mutated_grpc_requests_raise_only_bad_request(data: st.DataObject) -> None:
    raw = bytearray(_valid_request())
    for _ in range(data.draw(st.integers(1, 6))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    try:
        req = pb.ModelInferRequest.FromString(bytes(raw))
    except Exception:  # the handler turns a message that does not parse into BadRequest
        return
    _timed(decode_infer, req, LIMITS)


@st.composite
def grpc_requests(draw: st.DrawFn) -> pb.ModelInferRequest:
    req = pb.ModelInferRequest(model_name="m")
    raw = draw(st.booleans())
    for _ in range(draw(st.integers(0, 4))):
        t = req.inputs.add(
            name=draw(st.sampled_from(["x", "y", "x", ""])),
            datatype=draw(st.sampled_from(DATATYPES)),
            shape=draw(st.lists(st.integers(-3, 1 << 40) | st.integers(0, 4), max_size=9)),
        )
        if raw:
            req.raw_input_contents.append(draw(st.binary(max_size=64)))
        else:
            field = draw(st.sampled_from(sorted(set(tensors.CONTENTS_FIELD.values()))))
            values = {
                "bool_contents": st.booleans(),
                "int_contents": st.integers(-(2**31), 2**31 - 1),
                "int64_contents": st.integers(-(2**63), 2**63 - 1),
                "uint_contents": st.integers(0, 2**32 - 1),
                "uint64_contents": st.integers(0, 2**64 - 1),
                "fp32_contents": st.floats(width=32),
                "fp64_contents": st.floats(),
                "bytes_contents": st.binary(max_size=8),
            }[field]
            getattr(t.contents, field).extend(draw(st.lists(values, max_size=10)))
    if draw(st.booleans()):
        req.raw_input_contents.append(b"extra")
    return req


@FUZZ
@given(req=grpc_requests())
def test_built_grpc_requests_raise_only_bad_request(req: pb.ModelInferRequest) -> None:
    got = _timed(decode_infer, req, LIMITS)
    if got is not None:
        for arr in got[0].values():
            assert arr.size <= LIMITS.max_elements


@FUZZ
@given(datatype=st.sampled_from(DATATYPES), shape=shapes, data=st.binary(max_size=256))
def test_raw_tensors_raise_only_bad_request(datatype: str, shape: list[int], data: bytes) -> None:
    arr = _timed(tensors.from_raw, datatype, shape, data, LIMITS)
    if arr is not None:
        assert list(arr.shape) == shape
        assert tensors.to_raw(datatype, arr) == data  # what decoded encodes back the same


@pytest.mark.parametrize(
    ("datatype", "values"),
    [("UINT8", [256]), ("INT8", [-129]), ("INT16", [1 << 15]), ("UINT32", [-1])],
)
def test_typed_contents_out_of_range(datatype: str, values: list[int]) -> None:
    with pytest.raises(BadRequest, match="out of range"):
        tensors.from_contents(datatype, [1], values, LIMITS)
    with pytest.raises(BadRequest, match="out of range"):
        tensors.from_values(datatype, [1], values, LIMITS)


def test_costly_shapes_fail_before_allocating() -> None:
    start = time.monotonic()
    for shape in ([1 << 62, 1 << 62], [1 << 16] * 8, [1 << 17]):
        with pytest.raises(BadRequest, match="more than"):
            tensors.from_raw("BYTES", shape, b"", LIMITS)
    with pytest.raises(BadRequest, match="BYTES raw contents"):  # 4 bytes an element at least
        tensors.from_raw("BYTES", [1 << 16], b"\0" * 16, LIMITS)
    with pytest.raises(BadRequest, match="longer than allowed"):
        tensors.from_raw("BYTES", [1], b"\xff\xff\xff\x7f", LIMITS)
    deep = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(BadRequest):
        http_codec.decode_request(deep, None, LIMITS)
    with pytest.raises(BadRequest):
        http_codec.decode_request(b'{"inputs": 1' + b"0" * 10_000 + b"}", None, LIMITS)
    assert time.monotonic() - start < 5.0
