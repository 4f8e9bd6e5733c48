"""What the gRPC and HTTP fronts share: error mapping, deadlines, tokens, metrics, outputs."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np

from runner import __version__
from runner.serve.backend import (
    Backend,
    BadRequest,
    Deadline,
    Exhausted,
    ModelMeta,
    Unavailable,
)
from runner.serve.v2.tensors import Limits, OutputError, check_output

log = logging.getLogger("airlock.serve")

SERVER_NAME = "airlock"
SERVER_VERSION = __version__
EXTENSIONS = ["binary_tensor_data"]
DEFAULT_TIMEOUT_S = 30.0
MAX_TIMEOUT_S = 3600.0
# open connections per front; more are closed at once (no descriptor exhaustion)
MAX_CONNECTIONS = 1024


class NotFound(Exception):
    """No such model or version, or no such output."""


class Unauthenticated(Exception):
    """A token is set and the request did not carry it."""


@dataclass(frozen=True)
class Mapped:
    grpc: grpc.StatusCode
    http: int
    message: str


def map_error(e: BaseException) -> Mapped:
    """The wire error for an exception out of the backend or the decoders."""
    if isinstance(e, Unavailable):
        return Mapped(grpc.StatusCode.UNAVAILABLE, 503, f"unavailable: {e.reason}")
    if isinstance(e, Exhausted):
        return Mapped(grpc.StatusCode.RESOURCE_EXHAUSTED, 429, f"too many requests: {e}")
    if isinstance(e, Deadline):
        return Mapped(grpc.StatusCode.DEADLINE_EXCEEDED, 504, f"deadline exceeded: {e}")
    if isinstance(e, BadRequest):
        return Mapped(grpc.StatusCode.INVALID_ARGUMENT, 400, f"bad request: {e}")
    if isinstance(e, NotFound):
        return Mapped(grpc.StatusCode.NOT_FOUND, 404, f"not found: {e}")
    if isinstance(e, Unauthenticated):
        return Mapped(grpc.StatusCode.UNAUTHENTICATED, 401, "unauthenticated: bearer token needed")
    if isinstance(e, OutputError):
        return Mapped(grpc.StatusCode.INTERNAL, 500, f"model output refused: {e}")
    log.error("serve: unexpected %s: %s", type(e).__name__, str(e)[:500])
    return Mapped(grpc.StatusCode.INTERNAL, 500, f"internal error: {type(e).__name__}")


def check_token(token: str | None, header: str | None) -> None:
    if token is None:
        return
    want = f"Bearer {token}".encode()
    got = (header or "").encode("utf-8", "replace")
    if not hmac.compare_digest(want, got):
        raise Unauthenticated()


def timeout_for(
    default_s: float | None, remaining_s: float | None, param_us: Any = None
) -> float | None:
    """The request's deadline: the least of the server default, the transport's deadline
    (gRPC) and the request's `timeout` parameter (microseconds, as tritonclient sends it)."""
    choices = [t for t in (default_s, remaining_s) if t is not None]
    if param_us is not None:
        if isinstance(param_us, bool) or not isinstance(param_us, int) or param_us < 0:
            raise BadRequest("the timeout parameter must be a count of microseconds")
        choices.append(param_us / 1e6)
    if not choices:
        return None
    t = min(min(choices), MAX_TIMEOUT_S)
    if t <= 0:
        raise Deadline("the request's deadline had passed on arrival")
    return t


def observe(protocol: str, code: str, seconds: float) -> None:
    """Count a request in runner.serve.metrics (tolerant: serving never fails on metrics)."""
    try:
        from runner.serve import metrics

        metrics.observe_request(protocol, code, seconds)
    except Exception as e:  # a missing module or attribute, a registry problem
        log.debug("serve: metrics not recorded: %s", e)


def metrics_text() -> tuple[bytes, str] | None:
    """The Prometheus exposition of runner.serve.metrics, or None when it is not there."""
    try:
        from runner.serve import metrics

        return metrics.exposition()
    except Exception as e:
        log.debug("serve: no metrics: %s", e)
        return None


def check_model(meta: ModelMeta, name: str, version: str) -> None:
    if name != meta.name:
        raise NotFound(f"model {name[:128]!r} (this server serves {meta.name!r})")
    if version not in ("", meta.version):
        raise NotFound(f"version {version[:32]!r} of {meta.name!r} (it has {meta.version!r})")


def _some(names: Iterable[str], shown: int = 16) -> str:
    """Names for a message, bounded (a model's own output names may be many, long or odd)."""
    ordered = sorted(names)
    text = ", ".join(repr(n[:64]) for n in ordered[:shown])
    return f"[{text}{', ...' if len(ordered) > shown else ''}]"


def run_infer(
    backend: Backend,
    inputs: dict[str, np.ndarray],
    wanted: Iterable[str],
    timeout_s: float | None,
    limits: Limits,
) -> list[tuple[str, str, np.ndarray]]:
    """Run the backend and check what it answered: [(name, datatype, array)] in the order
    asked for (every output of the model's metadata when none was asked for)."""
    meta = backend.metadata()
    names = list(wanted) or [t.name for t in meta.outputs]
    known = {t.name for t in meta.outputs}
    for n in names:
        if n not in known:
            raise NotFound(f"output {n[:128]!r} (the model has {_some(known)})")
    if len(names) > limits.max_tensors or any(len(n) > limits.max_name_len for n in names):
        raise OutputError(  # the names may be the model's own (learned from its answer)
            f"the model has more than {limits.max_tensors} outputs or too long a name"
        )
    result = backend.infer(inputs, timeout_s)
    if not isinstance(result, dict):
        raise OutputError("the backend answered no mapping of outputs")
    out = []
    total = 0
    for n in names:
        if n not in result:
            raise OutputError(f"the model answered no output {n[:128]!r}")
        datatype, arr = check_output(n, result[n], limits)
        total += arr.nbytes if datatype != "BYTES" else arr.size * 4
        if total > limits.max_total_bytes:
            raise OutputError("the outputs are larger than allowed")
        out.append((n, datatype, arr))
    return out
