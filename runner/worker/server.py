"""The worker's gRPC service: health, load, describe, infer, shutdown."""

from __future__ import annotations

import os
import platform
import sys
import threading
import time
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from runner.worker import WORKER_VERSION, audit, dataplane, loaders_hf
from runner.worker.loaders import Loaded, LoadError, Options, load, prepare
from runner.worker.shared import frames, tensors
from runner.worker.shared._proto import worker_pb2 as pb
from runner.worker.shared._proto import worker_pb2_grpc as pb_grpc

MODEL_ROOT = Path("/model")
BASE_ROOT = Path("/base")
SHM_THRESHOLD = 64 << 10  # outputs this large go through shared memory when there is one


def _specs(specs: list[Any], out: Any) -> None:
    for s in specs:
        out.add(name=s.name, dtype=s.dtype, shape=list(s.shape))


def _options(request: Any) -> Options:
    base = Path(request.base_path) if request.base_path else None
    if base is not None and not base.is_relative_to(BASE_ROOT):
        base = None  # only the base the host mounted
    return Options(
        trust_remote_code=bool(request.trust_remote_code),
        state_key=str(request.state_key)[:256],
        non_strict=bool(request.non_strict),
        base_path=base,
    )


class WorkerService(pb_grpc.WorkerServicer):
    def __init__(self, threads: int, done: threading.Event) -> None:
        self._threads = threads
        self._done = done
        self._loaded: Loaded | None = None
        self._lock = threading.Lock()

    def Health(self, request: Any, context: Any) -> Any:
        return pb.HealthReply(
            status="ok",
            worker_version=WORKER_VERSION,
            python_version=platform.python_version(),
            uid=os.getuid(),
            pid=os.getpid(),
        )

    def Prepare(self, request: Any, context: Any) -> Any:
        start = time.perf_counter()
        path = Path(request.model_path) if request.model_path else None
        if path is None or path.is_relative_to(MODEL_ROOT):
            try:
                prepare(path, request.format or "auto")
            except ValueError as e:  # an unknown format name
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        return pb.PrepareReply(seconds=time.perf_counter() - start)

    def Load(self, request: Any, context: Any) -> Any:
        path = Path(request.model_path)
        if not path.is_relative_to(MODEL_ROOT):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "model path must be under /model")
        arch = Path(request.architecture_path) if request.architecture_path else None
        with self._lock:
            if self._loaded is not None:
                context.abort(grpc.StatusCode.FAILED_PRECONDITION, "a model is already loaded")
            start = time.perf_counter()
            try:
                self._loaded = load(
                    path, request.format or "auto", arch, self._threads, _options(request)
                )
            except LoadError as e:
                context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(e))
            except Exception as e:  # anything the model's own code raised while loading
                context.abort(
                    grpc.StatusCode.FAILED_PRECONDITION, f"loading raised {type(e).__name__}: {e}"
                )
            loaded = self._loaded
            assert loaded is not None
            return pb.LoadReply(
                format=loaded.format.value,
                can_infer=loaded.can_infer,
                note=loaded.note,
                load_seconds=time.perf_counter() - start,
            )

    def Describe(self, request: Any, context: Any) -> Any:
        loaded = self._require(context)
        reply = pb.DescribeReply(
            format=loaded.format.value, can_infer=loaded.can_infer, note=loaded.note
        )
        _specs(loaded.inputs, reply.inputs)
        _specs(loaded.outputs, reply.outputs)
        return reply

    def Infer(self, request: Any, context: Any) -> Any:
        try:
            return self.infer(request)
        except dataplane.CallError as e:
            code = {
                frames.STATUS_BAD_INPUT: grpc.StatusCode.INVALID_ARGUMENT,
                frames.STATUS_MODEL_RAISED: grpc.StatusCode.ABORTED,
            }.get(e.status, grpc.StatusCode.INTERNAL)
            context.abort(code, str(e))

    def infer(self, request: Any, shm: dataplane.SharedMemory | None = None) -> Any:
        """One inference call, for gRPC (tensors inline) and the data plane alike."""
        loaded = self._loaded
        if loaded is None:
            raise dataplane.CallError(frames.STATUS_BAD_INPUT, "no model is loaded")
        if loaded.run is None:
            raise dataplane.CallError(
                frames.STATUS_BAD_INPUT, f"this model cannot run inference: {loaded.note}"
            )
        try:
            feed = dataplane.decode_inputs(request, shm)
            tensors.check_inputs(loaded.inputs, feed)
        except (tensors.TensorError, tensors.InputError) as e:
            raise dataplane.CallError(frames.STATUS_BAD_INPUT, str(e)) from e
        arena = dataplane.OutputArena(
            shm, request.output_offset, request.output_length, SHM_THRESHOLD
        )
        start = time.perf_counter()
        try:
            outputs = (
                loaded.run_into(feed, arena) if loaded.run_into is not None else loaded.run(feed)
            )
        except Exception as e:  # the model's own failure, not the caller's
            raise dataplane.CallError(
                frames.STATUS_MODEL_RAISED, f"the model raised {type(e).__name__}: {e}"
            ) from e
        reply = pb.InferReply(infer_seconds=time.perf_counter() - start)
        try:
            arena.encode(outputs, reply)
        except tensors.TensorError as e:
            raise dataplane.CallError(frames.STATUS_INTERNAL, str(e)) from e
        return reply

    def Text(self, request: Any, context: Any) -> Any:
        loaded = self._require(context)
        if loaded.text is None:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "this model takes no text: it is not a Hugging Face repository",
            )
        assert loaded.text is not None
        start = time.perf_counter()
        try:
            out = loaded.text(
                list(request.texts), int(request.max_new_tokens), float(request.max_seconds)
            )
        except loaders_hf.TextError as e:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        except Exception as e:  # the model's (or its tokenizer's) own failure
            context.abort(
                grpc.StatusCode.ABORTED, f"the model raised {type(e).__name__}: {str(e)[:500]}"
            )
        reply = pb.TextReply(
            task=out.task, tokens=out.tokens, infer_seconds=time.perf_counter() - start
        )
        for name, arr in out.outputs.items():
            tensors.encode(name, np.ascontiguousarray(arr), reply.outputs.add())
        for label, score in out.labels:
            reply.labels.add(label=label, score=score)
        reply.generated.extend(out.generated)
        return reply

    def Shutdown(self, request: Any, context: Any) -> Any:
        self._done.set()
        return pb.ShutdownReply()

    def _require(self, context: Any) -> Loaded:
        if self._loaded is None:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "no model is loaded")
        assert self._loaded is not None
        return self._loaded


def serve(
    socket_path: str,
    threads: int,
    max_message_bytes: int,
    audit_log: str | None = None,
    data_socket: str | None = None,
) -> None:
    done = threading.Event()
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=2),
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
        ],
    )
    audit.install(audit_log)
    service = WorkerService(threads, done)
    pb_grpc.add_WorkerServicer_to_server(  # type: ignore[no-untyped-call]
        service, server
    )
    if data_socket:
        dataplane.serve(data_socket, service.infer, max_message_bytes)
    if os.path.exists(socket_path):
        os.unlink(socket_path)
    server.add_insecure_port(f"unix:{socket_path}")
    server.start()
    print(
        f"airlock worker {WORKER_VERSION} listening on {socket_path}", file=sys.stderr, flush=True
    )
    done.wait()
    server.stop(grace=0.5).wait()
    sys.stdout.flush()
    sys.stderr.flush()
    # Model code may have left non-daemon threads behind; do not wait for them.
    os._exit(0)
