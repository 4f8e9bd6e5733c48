"""A served model: the replica backend and both protocol fronts, started and stopped together.

    with Server("model.onnx", replicas=2, grpc_port=0, http_port=0) as server:
        print(server.grpc_port, server.http_port)
        ...                                  # tritonclient calls
    server.exit_code                         # 1 when quarantined

Binding is 127.0.0.1 unless `host` says otherwise, and then a bearer token is required. Every
request and every replica event is a JSON line (to stderr for `airlock serve`). Stopping drains
the fronts (requests in flight finish), then the backend (every container removed), then writes
the running report (`report` path); a quarantine writes it at once too.
"""

from __future__ import annotations

import ipaddress
import json
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from runner.errors import EXIT_FINDINGS, EXIT_OK, UsageError
from runner.policy import Policy
from runner.rules.catalog import Severity
from runner.serve.backend import BadRequest, Deadline, Exhausted, ModelMeta, Unavailable
from runner.serve.replicas import ReplicaBackend

Log = Callable[[dict[str, Any]], None]
_CODES: tuple[tuple[type[Exception], str], ...] = (
    (Unavailable, "UNAVAILABLE"),
    (Exhausted, "RESOURCE_EXHAUSTED"),
    (Deadline, "DEADLINE_EXCEEDED"),
    (BadRequest, "INVALID_ARGUMENT"),
)


def json_lines(stream: Any = None) -> Log:
    """A log that writes each entry as one JSON line (default: stderr)."""
    lock = threading.Lock()

    def write(entry: dict[str, Any]) -> None:
        line = json.dumps(entry, default=str, ensure_ascii=True)
        with lock:
            out = stream or sys.stderr
            out.write(line + "\n")
            out.flush()

    return write


def loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Logged:
    """The backend, each request logged: its id, the model, its code, its seconds."""

    def __init__(self, backend: ReplicaBackend, log: Log) -> None:
        self.backend, self.log = backend, log

    def live(self) -> bool:
        return self.backend.live()

    def ready(self) -> bool:
        return self.backend.ready()

    def model_ready(self, name: str, version: str = "") -> bool:
        return self.backend.model_ready(name, version)

    def metadata(self) -> ModelMeta:
        return self.backend.metadata()

    def infer(
        self, inputs: dict[str, np.ndarray], timeout_s: float | None
    ) -> dict[str, np.ndarray]:
        rid, start, code = uuid.uuid4().hex[:16], time.monotonic(), "INTERNAL"
        try:
            out = self.backend.infer(inputs, timeout_s)
            code = "OK"
            return out
        except Exception as e:
            code = next((c for kind, c in _CODES if isinstance(e, kind)), "INTERNAL")
            raise
        finally:
            self.log(
                {
                    "time": round(time.time(), 3),
                    "event": "request",
                    "request_id": rid,
                    "model": self.backend.name,
                    "code": code,
                    "seconds": round(time.monotonic() - start, 6),
                }
            )

    def report(self) -> dict[str, Any]:
        return self.backend.report()

    def close(self) -> None:
        self.backend.close()


class Server:
    """A model served over the Open Inference Protocol (gRPC and HTTP/REST) from watched
    sandbox replicas (runner.serve.replicas.ReplicaBackend)."""

    def __init__(
        self,
        model: str | Path,
        policy: Policy | None = None,
        *,
        replicas: int = 1,
        fail_on: Severity = Severity.MEDIUM,
        queue: int = 16,
        request_timeout_s: float = 30.0,
        host: str = "127.0.0.1",
        grpc_port: int = 8001,
        http_port: int = 8000,
        token: str | None = None,
        report: str | Path | None = None,
        name: str = "model",
        log: Log | None = None,
        sandbox_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        if not loopback(host) and not token:
            raise UsageError(
                f"serving on {host} (not loopback) needs a bearer token",
                "pass --token T (clients send Authorization: Bearer T), or bind 127.0.0.1",
            )
        self.host, self.token, self.request_timeout_s = host, token or None, request_timeout_s
        self._ports = (grpc_port, http_port)
        self.report_path = Path(report) if report is not None else None
        self.log: Log = log or (lambda entry: None)
        self.backend = ReplicaBackend(
            model,
            policy,
            replicas=replicas,
            fail_on=fail_on,
            queue=queue,
            request_timeout_s=request_timeout_s,
            name=name,
            sandbox_kwargs=sandbox_kwargs,
            on_event=self._on_event,
        )
        self._fronts: list[Any] = []
        self._stopped = threading.Event()
        self.grpc_port = self.http_port = 0

    def _on_event(self, entry: dict[str, Any]) -> None:
        self.log(entry)
        if entry.get("event") == "quarantined":
            threading.Thread(target=self._write_report, daemon=True).start()

    def start(self) -> Server:
        """Open the replicas, then listen; on any failure, everything started is stopped."""
        from runner.serve.v2.grpc_server import GrpcServer
        from runner.serve.v2.http_server import HttpServer

        try:
            self.backend.start()
            front = _Logged(self.backend, self.log)
            kw = {"token": self.token, "default_timeout_s": self.request_timeout_s}
            grpc = GrpcServer(front, self.host, self._ports[0], **kw)  # type: ignore[arg-type]
            self._fronts.append(grpc)
            self.grpc_port = grpc.start()
            http = HttpServer(front, self.host, self._ports[1], **kw)  # type: ignore[arg-type]
            self._fronts.append(http)
            self.http_port = http.start()
        except BaseException:
            self.stop()
            raise
        self.log(
            {
                "time": round(time.time(), 3),
                "event": "listening",
                "model": self.backend.name,
                "grpc": f"{self.host}:{self.grpc_port}",
                "http": f"{self.host}:{self.http_port}",
                "replicas": len(self.backend.containers()),
            }
        )
        return self

    def stop(self) -> None:
        """Drain and stop the fronts, close every replica, write the report. Idempotent."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        for front in reversed(self._fronts):
            try:
                front.stop(grace_s=min(self.request_timeout_s, 10.0))
            except Exception as e:  # the backend is closed whatever a front did
                self.log({"event": "stop-error", "error": f"{type(e).__name__}: {e}"[:300]})
        self.backend.close()
        self._write_report()
        self.log({"time": round(time.time(), 3), "event": "stopped", "code": self.exit_code})

    def _write_report(self) -> None:
        if self.report_path is None:
            return
        try:
            text = json.dumps(self.backend.report(), indent=2, default=str)
            tmp = self.report_path.with_name(self.report_path.name + ".tmp")
            tmp.write_text(text + "\n")
            tmp.replace(self.report_path)
        except OSError as e:
            self.log({"event": "report-error", "error": f"{e}"[:300]})

    @property
    def quarantined(self) -> str:
        return self.backend.quarantined

    @property
    def exit_code(self) -> int:
        """1 when the model was quarantined (a finding at or above fail_on), else 0."""
        return EXIT_FINDINGS if self.backend.quarantined else EXIT_OK

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
