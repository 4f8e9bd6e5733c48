"""The interface between the serving protocols (runner.serve.v2) and what runs the model.

A Backend answers health and metadata questions and runs one inference. The protocol servers
map its exceptions to wire errors: Unavailable -> UNAVAILABLE / 503, Exhausted ->
RESOURCE_EXHAUSTED / 429, Deadline -> DEADLINE_EXCEEDED / 504, BadRequest -> INVALID_ARGUMENT /
400. `ReplicaBackend` (runner.serve.replicas) runs sandboxed replicas; `InProcessBackend` here
runs an ONNX file in this process with onnxruntime, for trusted models only (the benchmark's
baseline and the protocol's unit tests).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np


class Unavailable(Exception):
    """The model cannot serve: quarantined, no replica up, or shutting down."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Exhausted(Exception):
    """The request queue is full."""


class Deadline(Exception):
    """The request's deadline passed before an answer."""


class BadRequest(Exception):
    """The inputs do not fit the model (names, datatypes, shapes)."""


@dataclass(frozen=True)
class TensorMeta:
    name: str
    datatype: str
    shape: list[int]


@dataclass(frozen=True)
class ModelMeta:
    name: str
    version: str
    platform: str
    inputs: list[TensorMeta] = field(default_factory=list)
    outputs: list[TensorMeta] = field(default_factory=list)


class Backend(Protocol):
    def live(self) -> bool: ...

    def ready(self) -> bool: ...

    def model_ready(self, name: str, version: str = "") -> bool: ...

    def metadata(self) -> ModelMeta: ...

    def infer(
        self, inputs: dict[str, np.ndarray], timeout_s: float | None
    ) -> dict[str, np.ndarray]: ...

    def report(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


_ORT_TYPES = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}


def _meta(args: Any) -> list[TensorMeta]:
    out = []
    for a in args:
        dims = [d if isinstance(d, int) else -1 for d in a.shape]
        out.append(TensorMeta(a.name, _ORT_TYPES.get(a.type, a.type), dims))
    return out


def _strings(arr: np.ndarray) -> np.ndarray:
    """BYTES elements as the text onnxruntime's string tensors take (BadRequest if not UTF-8)."""
    try:
        flat = [b.decode("utf-8") if isinstance(b, bytes) else str(b) for b in arr.reshape(-1)]
    except UnicodeDecodeError:
        raise BadRequest("a BYTES input is not UTF-8 text") from None
    out = np.empty(len(flat), dtype=object)
    out[:] = flat
    return out.reshape(arr.shape)


class InProcessBackend:
    """An ONNX file run in this process with onnxruntime: for TRUSTED models only."""

    def __init__(self, path: Path, name: str = "model", version: str = "1") -> None:
        import onnxruntime as ort

        self._session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self._meta = ModelMeta(
            name,
            version,
            "onnxruntime_onnx",
            _meta(self._session.get_inputs()),
            _meta(self._session.get_outputs()),
        )
        self._lock = threading.Lock()
        self._closed = False
        self._count = 0
        self._errors = 0

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        return not self._closed

    def model_ready(self, name: str, version: str = "") -> bool:
        return self.ready() and name == self._meta.name and version in ("", self._meta.version)

    def metadata(self) -> ModelMeta:
        return self._meta

    def infer(
        self, inputs: dict[str, np.ndarray], timeout_s: float | None
    ) -> dict[str, np.ndarray]:
        if self._closed:
            raise Unavailable("shutting down")
        want = {t.name for t in self._meta.inputs}
        if set(inputs) != want:
            self._errors += 1
            raise BadRequest(f"model takes inputs {sorted(want)}, got {sorted(inputs)}")
        start = time.monotonic()
        feed = {k: _strings(v) if v.dtype == object else v for k, v in inputs.items()}
        with self._lock:
            try:
                values = self._session.run(None, feed)
            except Exception as e:  # onnxruntime's errors for bad shapes or types
                self._errors += 1
                raise BadRequest(str(e).splitlines()[0][:500] if str(e) else "bad inputs") from e
            self._count += 1
        if timeout_s is not None and time.monotonic() - start > timeout_s:
            raise Deadline(f"inference took longer than {timeout_s:g}s")
        names = [t.name for t in self._meta.outputs]
        return {n: np.asarray(v) for n, v in zip(names, values, strict=True)}

    def report(self) -> dict[str, Any]:
        return {"backend": "in-process", "requests": self._count, "errors": self._errors}

    def close(self) -> None:
        self._closed = True
