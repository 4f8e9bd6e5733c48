"""The gRPC client for the worker. The only module that sees `grpc.RpcError`.

The worker is untrusted: every call carries a deadline, replies are capped in size, and every
tensor that comes back is validated before it becomes a numpy array.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
import numpy as np

from runner.errors import untrusted_text
from runner.worker.shared import tensors
from runner.worker.shared._proto import worker_pb2 as pb
from runner.worker.shared._proto import worker_pb2_grpc as pb_grpc

T = TypeVar("T")


class RpcFailure(Exception):
    """A call to the worker failed; subclasses say how. Messages are sanitised."""


class WorkerUnavailable(RpcFailure):
    """The worker is not answering (not up yet, or gone)."""


class CallDeadline(RpcFailure):
    """The call did not finish before its deadline."""


class ReplyTooLarge(RpcFailure):
    """The worker's reply was larger than the cap."""


class WorkerRejected(RpcFailure):
    """The worker answered with an error status (bad input, load failure, ...)."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


class BadReply(RpcFailure):
    """The worker's reply did not validate."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class Description:
    format: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    can_infer: bool
    note: str


@dataclass(frozen=True)
class LoadInfo:
    format: str
    can_infer: bool
    note: str
    load_seconds: float


@dataclass(frozen=True)
class HealthInfo:
    status: str
    worker_version: str
    uid: int
    pid: int


class WorkerClient:
    def __init__(self, socket_path: str, max_reply_bytes: int, max_request_bytes: int) -> None:
        self._channel = grpc.insecure_channel(
            f"unix:{socket_path}",
            options=[
                ("grpc.max_receive_message_length", max_reply_bytes),
                ("grpc.max_send_message_length", max_request_bytes),
                ("grpc.enable_http_proxy", 0),
                ("grpc.enable_retries", 0),
            ],
        )
        self._stub = pb_grpc.WorkerStub(self._channel)  # type: ignore[no-untyped-call]

    def close(self) -> None:
        self._channel.close()

    def _call(self, fn: Callable[..., T], request: Any, timeout_s: float) -> T:
        try:
            return fn(request, timeout=timeout_s)
        except grpc.RpcError as e:
            code = e.code() if hasattr(e, "code") else None
            detail = untrusted_text(str(e.details() if hasattr(e, "details") else e) or "")
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise CallDeadline(detail) from e
            if code == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in detail:
                raise ReplyTooLarge(detail) from e
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, None):
                raise WorkerUnavailable(detail) from e
            raise WorkerRejected(detail, code.name if code else "UNKNOWN") from e

    def health(self, timeout_s: float) -> HealthInfo:
        r = self._call(self._stub.Health, pb.HealthRequest(), timeout_s)
        return HealthInfo(
            untrusted_text(r.status, 20),
            untrusted_text(r.worker_version, 20),
            int(r.uid),
            int(r.pid),
        )

    def prepare(self, model_path: str, fmt: str, timeout_s: float) -> None:
        self._call(
            self._stub.Prepare, pb.PrepareRequest(model_path=model_path, format=fmt), timeout_s
        )

    def load(self, model_path: str, fmt: str, architecture_path: str, timeout_s: float) -> LoadInfo:
        r = self._call(
            self._stub.Load,
            pb.LoadRequest(model_path=model_path, format=fmt, architecture_path=architecture_path),
            timeout_s,
        )
        return LoadInfo(
            untrusted_text(r.format, 32),
            bool(r.can_infer),
            untrusted_text(r.note),
            float(r.load_seconds),
        )

    def describe(self, timeout_s: float) -> Description:
        r = self._call(self._stub.Describe, pb.DescribeRequest(), timeout_s)

        def specs(items: Any) -> tuple[TensorSpec, ...]:
            out = []
            for s in list(items)[:1024]:
                dtype = s.dtype if s.dtype in tensors.ALLOWED_DTYPES else ""
                shape = tuple(int(d) if int(d) >= 0 else -1 for d in list(s.shape)[:32])
                out.append(TensorSpec(untrusted_text(s.name, 200), dtype, shape))
            return tuple(out)

        return Description(
            untrusted_text(r.format, 32),
            specs(r.inputs),
            specs(r.outputs),
            bool(r.can_infer),
            untrusted_text(r.note),
        )

    def infer(self, inputs: Mapping[str, np.ndarray], timeout_s: float) -> dict[str, np.ndarray]:
        request = pb.InferRequest()
        for name, arr in inputs.items():
            tensors.encode(name, arr, request.inputs.add())
        r = self._call(self._stub.Infer, request, timeout_s)
        outputs: dict[str, np.ndarray] = {}
        for t in r.outputs:
            try:
                name, arr = tensors.decode(t)
            except tensors.TensorError as e:
                raise BadReply(untrusted_text(str(e))) from e
            outputs[untrusted_text(name, 200)] = arr
        return outputs

    def shutdown(self, timeout_s: float) -> None:
        self._call(self._stub.Shutdown, pb.ShutdownRequest(), timeout_s)
