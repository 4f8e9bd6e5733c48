"""The gRPC client for the worker. The only module that sees `grpc.RpcError`.

The worker is untrusted: every call carries a deadline, replies are capped in size, and every
reply is parsed here, with bounds (runner.channel.replies): every tensor that comes back is
validated before it becomes a numpy array, and nothing but an RpcFailure comes out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
import numpy as np

from runner.channel import text
from runner.channel.replies import (
    BadReply,
    CallDeadline,
    Description,
    Faults,
    ReplyTooLarge,
    RpcFailure,
    TensorSpec,
    WorkerRejected,
    WorkerUnavailable,
    description,
    inline_outputs,
    parse,
)
from runner.channel.text import TextResult
from runner.errors import untrusted_text
from runner.worker.shared import tensors
from runner.worker.shared._proto import worker_pb2 as pb

__all__ = [
    "BadReply",
    "CallDeadline",
    "Description",
    "HealthInfo",
    "LoadInfo",
    "ReplyTooLarge",
    "RpcFailure",
    "TensorSpec",
    "WorkerClient",
    "WorkerRejected",
    "WorkerUnavailable",
]

M = TypeVar("M")
_SERVICE = "/airlock.worker.v1.Worker/"
_METHODS = ("Health", "Prepare", "Load", "Describe", "Infer", "Text", "Shutdown")


@dataclass(frozen=True)
class LoadOptions:
    """How the worker loads: what the caller chose (runner.controller.sandbox.Sandbox)."""

    trust_remote_code: bool = False  # a Hugging Face repository may run the code it ships
    state_key: str = ""  # the key a training checkpoint holds its weights under
    non_strict: bool = False  # load_state_dict(strict=False) for an architecture file
    base_path: str = ""  # a base model, inside the container, for an adapter


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


def _serialize(message: Any) -> bytes:
    return message.SerializeToString()  # type: ignore[no-any-return]


class WorkerClient:
    """Replies arrive as bytes (no deserializer in gRPC) and are parsed here, with bounds, so
    that nothing the worker sends raises anything but the RpcFailure family. What did not hold
    is kept in `faults`."""

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
        self._methods = {
            name: self._channel.unary_unary(
                _SERVICE + name, request_serializer=_serialize, response_deserializer=None
            )
            for name in _METHODS
        }
        self.faults = Faults()

    def close(self) -> None:
        self._channel.close()

    def _call(self, method: str, request: Any, reply: type[M], timeout_s: float) -> M:
        try:
            data = self._methods[method](request, timeout=timeout_s)
        except grpc.RpcError as e:
            raise _failure(e) from e
        except Exception as e:  # a closed channel, a call grpc refused to make
            raise WorkerUnavailable(untrusted_text(f"{type(e).__name__}: {e}")) from e
        return parse(reply, data, self.faults, method)

    def health(self, timeout_s: float) -> HealthInfo:
        r = self._call("Health", pb.HealthRequest(), pb.HealthReply, timeout_s)
        return HealthInfo(
            untrusted_text(r.status, 20),
            untrusted_text(r.worker_version, 20),
            int(r.uid),
            int(r.pid),
        )

    def prepare(self, model_path: str, fmt: str, timeout_s: float) -> None:
        request = pb.PrepareRequest(model_path=model_path, format=fmt)
        self._call("Prepare", request, pb.PrepareReply, timeout_s)

    def load(
        self,
        model_path: str,
        fmt: str,
        architecture_path: str,
        timeout_s: float,
        options: LoadOptions | None = None,
    ) -> LoadInfo:
        o = options or LoadOptions()
        request = pb.LoadRequest(
            model_path=model_path,
            format=fmt,
            architecture_path=architecture_path,
            trust_remote_code=o.trust_remote_code,
            state_key=o.state_key,
            non_strict=o.non_strict,
            base_path=o.base_path,
        )
        r = self._call("Load", request, pb.LoadReply, timeout_s)
        seconds = float(r.load_seconds)
        return LoadInfo(
            untrusted_text(r.format, 32),
            bool(r.can_infer),
            untrusted_text(r.note),
            seconds if 0.0 <= seconds < 1e9 else -1.0,  # NaN, inf, negative: not a time
        )

    def describe(self, timeout_s: float) -> Description:
        r = self._call("Describe", pb.DescribeRequest(), pb.DescribeReply, timeout_s)
        with self.faults.reading("Describe"):
            return description(r, self.faults)

    def infer(self, inputs: Mapping[str, np.ndarray], timeout_s: float) -> dict[str, np.ndarray]:
        request = pb.InferRequest()
        for name, arr in inputs.items():
            tensors.encode(name, arr, request.inputs.add())
        r = self._call("Infer", request, pb.InferReply, timeout_s)
        return inline_outputs(r, self.faults)

    def text(
        self, texts: list[str], max_new_tokens: int, max_seconds: float, timeout_s: float
    ) -> TextResult:
        request = pb.TextRequest(
            texts=texts, max_new_tokens=max_new_tokens, max_seconds=max_seconds
        )
        r = self._call("Text", request, pb.TextReply, timeout_s)
        return text.parse(r, self.faults, len(texts), max_new_tokens > 0)

    def shutdown(self, timeout_s: float) -> None:
        self._call("Shutdown", pb.ShutdownRequest(), pb.ShutdownReply, timeout_s)


def _failure(e: grpc.RpcError) -> RpcFailure:
    """The RpcFailure for a gRPC error; its text is the worker's, so it is neutralised."""
    code = e.code() if hasattr(e, "code") else None
    try:
        detail = untrusted_text(str(e.details() if hasattr(e, "details") else e) or "")
    except Exception:  # a details() that does not give text
        detail = ""
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return CallDeadline(detail)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in detail:
        return ReplyTooLarge(detail)
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, None):
        return WorkerUnavailable(detail)
    return WorkerRejected(detail, code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN")
