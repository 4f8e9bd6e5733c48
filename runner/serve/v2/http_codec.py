"""The Open Inference Protocol's REST inference bodies: JSON, and the binary tensor extension.

A request body is a JSON header, followed (when `Inference-Header-Content-Length` says where
the header ends) by the binary data of the inputs whose parameters carry `binary_data_size`, in
order. The JSON is read bounded (size, depth, counts) and validated; decoding raises only
BadRequest. A response carries each output as JSON `data`, or as binary after the header when
the output asks for `binary_data` (or the request for `binary_data_output`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from runner.serve.backend import BadRequest
from runner.serve.v2 import tensors
from runner.serve.v2.tensors import Limits

HEADER_LENGTH = "Inference-Header-Content-Length"


@dataclass
class InferRequest:
    id: str
    inputs: dict[str, np.ndarray]
    wanted: list[str]
    binary: dict[str, bool]  # per requested output: answer in binary
    binary_default: bool
    timeout_us: Any


def _depth_ok(doc: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return False
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node if isinstance(v, list | dict))
    return True


def load_json(text: bytes, limits: Limits) -> Any:
    if len(text) > limits.max_json_bytes:
        raise BadRequest(f"the JSON header is longer than {limits.max_json_bytes} bytes")
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as e:  # bad JSON, bad UTF-8, huge ints, deep nesting
        raise BadRequest(f"the request is not valid JSON ({type(e).__name__})") from None
    if not _depth_ok(doc, limits.max_json_depth):
        raise BadRequest(f"the JSON is nested deeper than {limits.max_json_depth}")
    return doc


def _flatten(data: Any, limit: int) -> list[Any]:
    """Nested lists flattened row-major, never more than limit + 1 values."""
    out: list[Any] = []
    stack = [iter([data])]
    while stack:
        item = next(stack[-1], _END)
        if item is _END:
            stack.pop()
        elif isinstance(item, list):
            stack.append(iter(item))
        else:
            out.append(item)
            if len(out) > limit:
                raise BadRequest("data holds more values than its shape")
    return out


_END = object()


def _params(obj: dict[str, Any], limits: Limits) -> dict[str, Any]:
    params = obj.get("parameters", {})
    if not isinstance(params, dict) or len(params) > limits.max_parameters:
        raise BadRequest(f"parameters must be an object of at most {limits.max_parameters}")
    return params


def _str(obj: dict[str, Any], key: str, what: str) -> str:
    v = obj.get(key)
    if not isinstance(v, str):
        raise BadRequest(f"{what} needs a string {key!r}")
    return v


def _input(t: Any, binary: memoryview, pos: int, limits: Limits) -> tuple[str, np.ndarray, int]:
    if not isinstance(t, dict):
        raise BadRequest("each input must be an object")
    name = tensors.name_ok(_str(t, "name", "an input"), limits, "input")
    datatype = _str(t, "datatype", f"input {name!r}")
    shape = t.get("shape")
    tensors.element_count(shape, limits)
    size = _params(t, limits).get("binary_data_size")
    if size is not None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise BadRequest(f"input {name!r}: binary_data_size must be a byte count")
        if pos + size > len(binary):
            raise BadRequest(f"input {name!r}: binary_data_size goes past the body's end")
        arr = tensors.from_raw(datatype, shape, bytes(binary[pos : pos + size]), limits)
        return name, arr, pos + size
    if "data" not in t:
        raise BadRequest(f"input {name!r} has neither data nor binary_data_size")
    count = tensors.element_count(shape, limits)
    return name, tensors.from_values(datatype, shape, _flatten(t["data"], count), limits), pos


def decode_request(body: bytes, header_length: str | None, limits: Limits) -> InferRequest:
    if len(body) > limits.max_message_bytes:
        raise BadRequest(f"the request is longer than {limits.max_message_bytes} bytes")
    if header_length is None:
        split = len(body)
    else:
        text = header_length.strip()
        if not (text.isascii() and text.isdigit()) or len(text) > 20:
            raise BadRequest(f"{HEADER_LENGTH} must be a byte count")
        split = int(text)
        if split > len(body):
            raise BadRequest(f"{HEADER_LENGTH} is longer than the body")
    view = memoryview(body)
    doc = load_json(bytes(view[:split]), limits)
    if not isinstance(doc, dict):
        raise BadRequest("the request must be a JSON object")
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not 0 < len(raw_inputs) <= limits.max_tensors:
        raise BadRequest(f"inputs must be a list of 1 to {limits.max_tensors} tensors")
    binary, pos, total = view[split:], 0, 0
    inputs: dict[str, np.ndarray] = {}
    for t in raw_inputs:
        name, arr, pos = _input(t, binary, pos, limits)
        if name in inputs:
            raise BadRequest(f"input {name!r} given twice")
        total += arr.nbytes if arr.dtype != object else sum(len(b) for b in arr.reshape(-1))
        if total > limits.max_total_bytes:
            raise BadRequest(f"inputs are larger than {limits.max_total_bytes} bytes")
        inputs[name] = arr
    if pos != len(binary):
        raise BadRequest(f"{len(binary) - pos} bytes of binary data belong to no input")
    params = _params(doc, limits)
    wanted, flags = _outputs(doc.get("outputs", []), limits)
    rid = doc.get("id", "")
    return InferRequest(
        id=rid[:256] if isinstance(rid, str) else "",
        inputs=inputs,
        wanted=wanted,
        binary=flags,
        binary_default=params.get("binary_data_output") is True,
        timeout_us=params.get("timeout"),
    )


def _outputs(raw: Any, limits: Limits) -> tuple[list[str], dict[str, bool]]:
    if not isinstance(raw, list) or len(raw) > limits.max_tensors:
        raise BadRequest(f"outputs must be a list of at most {limits.max_tensors}")
    wanted: list[str] = []
    flags: dict[str, bool] = {}
    for o in raw:
        if not isinstance(o, dict):
            raise BadRequest("each requested output must be an object")
        name = tensors.name_ok(_str(o, "name", "an output"), limits, "output")
        if name in flags:
            raise BadRequest(f"output {name!r} asked for twice")
        flag = _params(o, limits).get("binary_data")
        if flag is not None and not isinstance(flag, bool):
            raise BadRequest(f"output {name!r}: binary_data must be true or false")
        wanted.append(name)
        if flag is not None:
            flags[name] = flag
    return wanted, flags


def encode_response(
    req: InferRequest, model: str, version: str, outputs: list[tuple[str, str, np.ndarray]]
) -> tuple[bytes, int | None]:
    """The response body and, when binary data follows the JSON, the JSON's length."""
    items: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for name, datatype, arr in outputs:
        item: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(arr.shape)}
        if req.binary.get(name, req.binary_default):
            raw = tensors.to_raw(datatype, arr)
            item["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            item["data"] = tensors.to_values(datatype, arr)
        items.append(item)
    doc: dict[str, Any] = {"model_name": model, "model_version": version, "outputs": items}
    if req.id:
        doc["id"] = req.id
    head = json.dumps(doc, allow_nan=False).encode()
    if not chunks:
        return head, None
    return head + b"".join(chunks), len(head)
