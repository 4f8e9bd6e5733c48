"""The Open Inference Protocol over gRPC: inference.GRPCInferenceService over a Backend.

Our messages live in the protobuf package airlock.serve.v2 (so they never clash with a
client's inference.* in one process); the wire format is the protocol's, and the service is
registered by hand under its original name, which is what clients call. Requests are parsed in
the handler (a message that does not parse is INVALID_ARGUMENT), bounded by Limits, and every
backend exception becomes its status with a one-line message.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent import futures
from typing import Any

import grpc
import numpy as np
from google.protobuf.message import DecodeError, Message

from runner.errors import UsageError
from runner.serve.backend import Backend, BadRequest
from runner.serve.v2 import tensors
from runner.serve.v2._proto import airlock_serve_v2_pb2 as pb
from runner.serve.v2.common import (
    DEFAULT_TIMEOUT_S,
    EXTENSIONS,
    MAX_CONNECTIONS,
    SERVER_NAME,
    SERVER_VERSION,
    check_model,
    check_token,
    map_error,
    observe,
    run_infer,
    timeout_for,
)
from runner.serve.v2.tensors import Limits

SERVICE = "inference.GRPCInferenceService"

Handler = Callable[[Any, grpc.ServicerContext], Message]


def _remaining(context: grpc.ServicerContext) -> float | None:
    left = context.time_remaining()
    return None if left is None or left > 1e9 else float(left)


def _param(params: Any, key: str) -> Any:
    if key not in params:
        return None
    p = params[key]
    which = p.WhichOneof("parameter_choice")
    return getattr(p, which) if which else None


def decode_infer(
    req: pb.ModelInferRequest, limits: Limits
) -> tuple[dict[str, np.ndarray], list[str]]:
    """The inputs and the requested output names of a ModelInferRequest (BadRequest if not)."""
    if len(req.inputs) > limits.max_tensors or len(req.outputs) > limits.max_tensors:
        raise BadRequest(f"more than {limits.max_tensors} inputs or outputs")
    if len(req.parameters) > limits.max_parameters:
        raise BadRequest(f"more than {limits.max_parameters} parameters")
    raw = req.raw_input_contents
    if raw and len(raw) != len(req.inputs):
        raise BadRequest(f"{len(raw)} raw_input_contents for {len(req.inputs)} inputs")
    inputs: dict[str, np.ndarray] = {}
    total = 0
    for i, t in enumerate(req.inputs):
        name = tensors.name_ok(t.name, limits, "input")
        if name in inputs:
            raise BadRequest(f"input {name!r} given twice")
        shape = list(t.shape)
        if raw:
            if t.HasField("contents"):
                raise BadRequest(f"input {name!r} has both contents and raw_input_contents")
            arr = tensors.from_raw(t.datatype, shape, raw[i], limits)
        else:
            field = tensors.CONTENTS_FIELD.get(t.datatype)
            if field is None:
                tensors.dtype_of(t.datatype)  # unsupported, or FP16: say which
                raise BadRequest(f"{t.datatype} input {name!r} must use raw_input_contents")
            arr = tensors.from_contents(t.datatype, shape, getattr(t.contents, field), limits)
        total += arr.nbytes if t.datatype != "BYTES" else sum(len(b) for b in arr.reshape(-1))
        if total > limits.max_total_bytes:
            raise BadRequest(f"inputs are larger than {limits.max_total_bytes} bytes")
        inputs[name] = arr
    wanted = [tensors.name_ok(o.name, limits, "output") for o in req.outputs]
    if len(set(wanted)) != len(wanted):
        raise BadRequest("an output is asked for twice")
    return inputs, wanted


class _Service:
    def __init__(
        self, backend: Backend, token: str | None, limits: Limits, default_timeout_s: float | None
    ) -> None:
        self.backend = backend
        self.token = token
        self.limits = limits
        self.default_timeout_s = default_timeout_s

    def server_live(self, _req: Any, _ctx: grpc.ServicerContext) -> Message:
        return pb.ServerLiveResponse(live=self.backend.live())

    def server_ready(self, _req: Any, _ctx: grpc.ServicerContext) -> Message:
        return pb.ServerReadyResponse(ready=self.backend.ready())

    def model_ready(self, req: Any, _ctx: grpc.ServicerContext) -> Message:
        return pb.ModelReadyResponse(ready=self.backend.model_ready(req.name, req.version))

    def server_metadata(self, _req: Any, _ctx: grpc.ServicerContext) -> Message:
        return pb.ServerMetadataResponse(
            name=SERVER_NAME, version=SERVER_VERSION, extensions=EXTENSIONS
        )

    def model_metadata(self, req: Any, _ctx: grpc.ServicerContext) -> Message:
        meta = self.backend.metadata()
        check_model(meta, req.name, req.version)
        tm = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=meta.name,
            versions=[meta.version],
            platform=meta.platform,
            inputs=[tm(name=t.name, datatype=t.datatype, shape=t.shape) for t in meta.inputs],
            outputs=[tm(name=t.name, datatype=t.datatype, shape=t.shape) for t in meta.outputs],
        )

    def model_infer(self, req: Any, ctx: grpc.ServicerContext) -> Message:
        meta = self.backend.metadata()
        check_model(meta, req.model_name, req.model_version)
        timeout = timeout_for(
            self.default_timeout_s, _remaining(ctx), _param(req.parameters, "timeout")
        )
        inputs, wanted = decode_infer(req, self.limits)
        outputs = run_infer(self.backend, inputs, wanted, timeout, self.limits)
        resp = pb.ModelInferResponse(
            model_name=meta.name, model_version=meta.version, id=req.id[:256]
        )
        for name, datatype, arr in outputs:
            resp.outputs.add(name=name, datatype=datatype, shape=list(arr.shape))
            resp.raw_output_contents.append(tensors.to_raw(datatype, arr))
        return resp


def _wrap(
    fn: Handler, parse: type[Message], token: str | None, infer: bool
) -> grpc.RpcMethodHandler:
    def handle(raw: bytes, ctx: grpc.ServicerContext) -> bytes:
        start = time.monotonic()
        code = grpc.StatusCode.OK
        try:
            check_token(token, dict(ctx.invocation_metadata()).get("authorization"))
            try:
                req = parse.FromString(raw)
            except (DecodeError, RecursionError, ValueError) as e:
                raise BadRequest("the request message does not parse") from e
            return fn(req, ctx).SerializeToString()
        except Exception as e:
            mapped = map_error(e)
            code = mapped.grpc
            ctx.set_code(mapped.grpc)
            ctx.set_details(mapped.message)
            return b""
        finally:
            if infer:
                observe("grpc", code.name, time.monotonic() - start)

    return grpc.unary_unary_rpc_method_handler(handle)


class GrpcServer:
    """inference.GRPCInferenceService on host:port (port 0: any free port; see .port)."""

    def __init__(
        self,
        backend: Backend,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        token: str | None = None,
        limits: Limits | None = None,
        default_timeout_s: float | None = DEFAULT_TIMEOUT_S,
        workers: int = 8,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self.host, self.port = host, port
        self.limits = limits or Limits()
        service = _Service(backend, token, self.limits, default_timeout_s)
        methods = {
            "ServerLive": (service.server_live, pb.ServerLiveRequest),
            "ServerReady": (service.server_ready, pb.ServerReadyRequest),
            "ModelReady": (service.model_ready, pb.ModelReadyRequest),
            "ServerMetadata": (service.server_metadata, pb.ServerMetadataRequest),
            "ModelMetadata": (service.model_metadata, pb.ModelMetadataRequest),
            "ModelInfer": (service.model_infer, pb.ModelInferRequest),
        }
        handlers = {
            name: _wrap(fn, msg, token, name == "ModelInfer") for name, (fn, msg) in methods.items()
        }
        self._pool = futures.ThreadPoolExecutor(workers, thread_name_prefix="airlock-grpc")
        size = self.limits.max_message_bytes
        self._server = grpc.server(
            self._pool,
            options=[
                ("grpc.max_receive_message_length", size),
                (
                    "grpc.max_send_message_length",
                    max(size, self.limits.max_total_bytes + (1 << 20)),
                ),
                ("grpc.max_metadata_size", 16 << 10),
                ("grpc.so_reuseport", 0),
                # a hostile client's idle or half-open connections: bounded in count and time
                ("grpc.max_allowed_incoming_connections", max_connections),
                ("grpc.server_handshake_timeout_ms", 15_000),
                ("grpc.max_connection_idle_ms", 300_000),
                ("grpc.max_concurrent_streams", workers * 4),
            ],
            maximum_concurrent_rpcs=workers * 4,
        )
        self._server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, handlers),)
        )
        self._started = False

    def start(self) -> int:
        """Bind and serve; the bound port (UsageError if it cannot listen there)."""
        where = f"[{self.host}]" if ":" in self.host else self.host
        try:
            bound = self._server.add_insecure_port(f"{where}:{self.port}")
        except RuntimeError:
            bound = 0
        if not bound:
            self._pool.shutdown(wait=False)
            raise UsageError(
                f"cannot listen for gRPC on {self.host}:{self.port}",
                "choose another --grpc-port (0 picks a free one)",
            )
        self.port = int(bound)
        self._server.start()
        self._started = True
        return self.port

    def stop(self, grace_s: float = 5.0) -> None:
        """Stop taking requests, let those in flight finish (up to grace_s), free the pool."""
        if self._started:
            self._server.stop(grace_s).wait(grace_s + 1.0)
            self._started = False
        self._pool.shutdown(wait=True, cancel_futures=True)
