"""Reading what the worker sends, for both channels (gRPC and the data plane).

Everything here is hostile data: a reply may not parse, may lie about its sizes, may list more
tensors or dimensions than any model has, may carry names made to steer a terminal. It is read
with bounds, and nothing but the channel's own errors (the RpcFailure family) comes out of it.
What did not hold is kept in Faults, so the report can say so: a reply that did not validate,
a description out of bounds, a name with control characters.

Names: a tensor keeps its name as the worker gave it (`wire`, bounded, used in calls) and is
shown by its neutralised form (`name`, untrusted_text), which is what the host prints, reports
and keys outputs by.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from runner.errors import deceptive_chars, untrusted_text
from runner.worker.shared import tensors

M = TypeVar("M")

MAX_SPECS = 1024  # inputs, or outputs, a description may list
MAX_OUTPUTS = 1024  # outputs a reply may carry
MAX_NAME_CHARS = 1024  # a tensor name longer than this is refused
MAX_ELEMENTS = 1 << 40  # a tensor declared larger than this (4 TiB of float32) has no model
SHOWN_NAME_CHARS = 200  # a name as shown
MAX_ERROR_BYTES = 4096  # of an error text, read
MAX_KEPT = 10  # evidence kept per kind of fault


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

    recorded = False  # counted in a Faults already


@dataclass(frozen=True)
class TensorSpec:
    name: str  # as shown: neutralised
    dtype: str
    shape: tuple[int, ...]
    wire: str = ""  # as the worker gave it, when it differs: the name calls use

    @property
    def call_name(self) -> str:
        return self.wire or self.name


@dataclass(frozen=True)
class Description:
    format: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    can_infer: bool
    note: str
    problems: tuple[str, ...] = ()  # what was out of bounds in it (then can_infer is False)


@dataclass
class Faults:
    """What the worker sent that did not hold, bounded: kept for the report."""

    malformed: list[str] = field(default_factory=list)
    malformed_count: int = 0
    description: list[str] = field(default_factory=list)
    description_count: int = 0
    names: list[str] = field(default_factory=list)  # names with control or bidi characters
    names_count: int = 0

    def record(self, message: str) -> None:
        self.malformed_count += 1
        if len(self.malformed) < MAX_KEPT and message not in self.malformed:
            self.malformed.append(message)

    def bad(self, message: str) -> BadReply:
        """A BadReply to raise, recorded."""
        self.record(message)
        e = BadReply(message)
        e.recorded = True
        return e

    def problem(self, problems: list[str], message: str) -> None:
        self.description_count += 1
        if len(problems) < MAX_KEPT:
            problems.append(message)

    def name(self, raw: str, what: str) -> str:
        """The name as shown; one with characters that steer a terminal or reorder text is
        recorded, with what it holds."""
        shown = untrusted_text(raw, SHOWN_NAME_CHARS)
        found = deceptive_chars(raw)
        if found:
            self.names_count += 1
            entry = f"{what} {shown!r} holds {', '.join(found)}"
            if len(self.names) < MAX_KEPT and entry not in self.names:
                self.names.append(entry)
        return shown

    @contextlib.contextmanager
    def reading(self, what: str) -> Iterator[None]:
        """Anything raised while reading a reply is a BadReply (recorded); the channel's own
        errors pass through."""
        try:
            yield
        except BadReply as e:
            if not e.recorded:
                self.record(str(e))
                e.recorded = True
            raise
        except RpcFailure:
            raise
        except Exception as e:  # numpy, protobuf, a recursion or memory limit: all the worker's
            raise self.bad(f"{what}: {type(e).__name__}: {untrusted_text(str(e), 200)}") from e


def parse(cls: type[M], data: Any, faults: Faults, what: str) -> M:
    """A message of type cls from the reply's bytes, or a BadReply."""
    if not isinstance(data, bytes):
        raise faults.bad(f"{what}: the reply is not bytes but {type(data).__name__}")
    try:
        return cls.FromString(data)  # type: ignore[attr-defined, no-any-return]
    except Exception as e:  # DecodeError, invalid UTF-8, nesting past the parser's limit
        raise faults.bad(f"{what}: the reply does not parse ({type(e).__name__})") from e


def error_text(payload: bytes) -> str:
    """An error reply's text, bounded and neutralised."""
    return untrusted_text(payload[:MAX_ERROR_BYTES].decode("utf-8", "replace"))


# --- descriptions -------------------------------------------------------------------------------


def _spec(s: Any, which: str, faults: Faults, problems: list[str]) -> TensorSpec:
    raw = str(s.name)
    if len(raw) > MAX_NAME_CHARS:
        faults.problem(problems, f"an {which} name of {len(raw)} characters")
        raw = raw[:MAX_NAME_CHARS]
    shown = faults.name(raw, which)
    rank = len(s.shape)
    dims: list[int] = []
    if rank > tensors.MAX_DIMS:
        faults.problem(problems, f"{which} {shown!r} has {rank} dimensions")
    else:
        dims = [int(d) for d in s.shape]
    if any(d < -1 for d in dims):
        faults.problem(problems, f"{which} {shown!r} has a negative size in {dims}")
        dims = [max(d, -1) for d in dims]
    elements = math.prod(d for d in dims if d > 0)  # Python ints: no overflow
    if elements > MAX_ELEMENTS:
        faults.problem(problems, f"{which} {shown!r} declares {elements} elements")
    dtype = s.dtype if s.dtype in tensors.ALLOWED_DTYPES else ""
    return TensorSpec(shown, dtype, tuple(dims), raw if raw != shown else "")


def _specs(items: Any, which: str, faults: Faults, problems: list[str]) -> tuple[TensorSpec, ...]:
    n = len(items)
    if n > MAX_SPECS:
        faults.problem(problems, f"{n} {which}s listed; at most {MAX_SPECS} are read")
    out: list[TensorSpec] = []
    seen: set[str] = set()
    for i in range(min(n, MAX_SPECS)):
        spec = _spec(items[i], which, faults, problems)
        if spec.name in seen:
            faults.problem(problems, f"two {which}s are named {spec.name!r}")
        seen.add(spec.name)
        out.append(spec)
    return tuple(out)


def description(r: Any, faults: Faults) -> Description:
    """The worker's description of the model, bounded. When anything in it is out of bounds,
    the problems are listed (and recorded) and the model is not fed."""
    problems: list[str] = []
    inputs = _specs(r.inputs, "input", faults, problems)
    outputs = _specs(r.outputs, "output", faults, problems)
    can_infer, note = bool(r.can_infer), untrusted_text(r.note)
    if problems:
        faults.description.extend(p for p in problems if p not in faults.description)
        del faults.description[MAX_KEPT:]
        can_infer = False
        note = f"the worker's description is out of bounds: {'; '.join(problems[:3])}"
    return Description(
        untrusted_text(r.format, 32), inputs, outputs, can_infer, note, tuple(problems)
    )


# --- outputs ------------------------------------------------------------------------------------


def checked_outputs(reply: Any, faults: Faults) -> list[tuple[str, Any]]:
    """The reply's outputs with their shown names, once their count, names and ranks are in
    bounds and no two are shown alike. Raises BadReply."""
    n = len(reply.outputs)
    if n > MAX_OUTPUTS:
        raise BadReply(f"the reply has {n} outputs, more than {MAX_OUTPUTS}")
    out: list[tuple[str, Any]] = []
    seen: set[str] = set()
    for t in reply.outputs:
        if len(t.name) > MAX_NAME_CHARS:
            raise BadReply(f"an output name of {len(t.name)} characters")
        shown = faults.name(t.name, "output")
        if len(t.shape) > tensors.MAX_DIMS:
            raise BadReply(f"output {shown!r} has {len(t.shape)} dimensions")
        if shown in seen:
            raise BadReply(f"two outputs are named {shown!r}")
        seen.add(shown)
        out.append((shown, t))
    return out


def decode_inline(t: Any, shown: str) -> np.ndarray:
    """An output whose bytes came in the reply, validated."""
    if t.in_shm:
        raise BadReply(f"output {shown!r} claims to be in shared memory, which this call has not")
    try:
        return tensors.decode(t)[1]
    except (tensors.TensorError, ValueError) as e:
        raise BadReply(f"output {shown!r}: {untrusted_text(str(e), 200)}") from e


def inline_outputs(reply: Any, faults: Faults) -> dict[str, np.ndarray]:
    with faults.reading("outputs"):
        return {shown: decode_inline(t, shown) for shown, t in checked_outputs(reply, faults)}


class FeedError(ValueError):
    """The caller's inputs do not fit the model's description."""


def feed_for_call(specs: Sequence[TensorSpec], inputs: dict[str, Any]) -> dict[str, np.ndarray]:
    """The caller's inputs, named as shown (the real names are taken too), checked against the
    description as the worker will check them, then named as the worker gave them, for the
    call. Raises FeedError with a message that shows only neutralised names."""
    shown_of = {s.call_name: s.name for s in specs}
    feed: dict[str, np.ndarray] = {}
    for key, value in inputs.items():
        name = shown_of.get(str(key), untrusted_text(str(key), SHOWN_NAME_CHARS))
        arr = np.asarray(value)
        if tensors.dtype_name(arr.dtype) not in tensors.ALLOWED_DTYPES:
            raise FeedError(f"input {name!r} is {arr.dtype.name}, which cannot be sent")
        feed[name] = arr
    try:
        tensors.check_inputs(specs, feed)
    except tensors.InputError as e:  # it lists the model's names: bounded
        raise FeedError(untrusted_text(str(e), 600)) from e
    call_of = {s.name: s.call_name for s in specs}
    return {call_of.get(k, k): v for k, v in feed.items()}
