"""Exercise: calls made with inputs Airlock builds from the model's declared signature.

A load-only scan never reaches code that waits for inference: a hook that fires on the fourth
call, or after a delay, or on inputs of some size. After loading, `scan` therefore calls the
model a bounded number of times over a bounded time, with inputs built from what the model
declares (dtype, and shape with dynamic dimensions filled in), each call with other values:
zeros, ones, random values, large and negative values, other batch sizes. Where the model
declares nothing (a pickled module), a few common shapes are tried. The model raising on such
inputs is not a failure of the run; what it does meanwhile is recorded like any other call.

It cannot find a trigger on one exact value (a backdoor keyed to a password-like input), nor
one that waits longer than the time given: docs/threat-model.md says so.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from runner.channel.text import TextResult
from runner.errors import InputError, SandboxError
from runner.report import Signature, TensorSpecInfo
from runner.rules.analysis import Collected
from runner.worker.shared.tensors import ALLOWED_DTYPES

CALLS = 8  # calls at most
SECONDS = 5.0  # the last calls are spread out to this long after the first
MAX_ELEMENTS = 1 << 16  # per input: a declared dimension is capped so inputs stay small
GUESSED_SHAPES = ((1, 4), (1,), (1, 3, 32, 32), (1, 16))  # for a model that declares nothing
_PATTERNS = ("zeros", "ones", "normal", "large", "negative", "uniform", "normal", "ones")


@dataclass(frozen=True)
class Plan:
    """One call: its inputs and how long after the first call it is made."""

    inputs: dict[str, np.ndarray]
    at_s: float


def _dtype(spec: TensorSpecInfo) -> np.dtype[np.generic]:
    return np.dtype(spec.dtype if spec.dtype in ALLOWED_DTYPES else "float32")


def _shape(spec_shape: list[int], batch: int) -> tuple[int, ...]:
    dims = [
        batch if i == 0 and d < 0 else (min(d, MAX_ELEMENTS) if d >= 0 else 4)
        for i, d in enumerate(spec_shape)
    ]
    while dims and math.prod(dims) > MAX_ELEMENTS:
        biggest = max(range(len(dims)), key=lambda i: dims[i])
        dims[biggest] = max(1, dims[biggest] // 2)
    return tuple(dims)


def _values(
    shape: tuple[int, ...], dtype: np.dtype[np.generic], pattern: str, rng: np.random.Generator
) -> np.ndarray:
    if dtype == np.bool_:
        return rng.integers(0, 2, size=shape).astype(bool)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)  # type: ignore[type-var]
        low, high = max(int(info.min), -3), min(int(info.max), 16)
        if pattern == "zeros":
            return np.zeros(shape, dtype)
        return rng.integers(low if pattern == "negative" else 0, high, size=shape).astype(dtype)
    base = {
        "zeros": np.zeros(shape),
        "ones": np.ones(shape),
        "normal": rng.standard_normal(shape),
        "large": rng.standard_normal(shape) * 1e4,
        "negative": -np.abs(rng.standard_normal(shape)),
        "uniform": rng.uniform(0.0, 1.0, shape),
    }[pattern]
    return base.astype(dtype)


def _feeds(sig: Signature) -> Iterator[list[TensorSpecInfo]]:
    """The input specs to build from: the declared ones, or guesses for a single input."""
    if sig.inputs and all(s.shape for s in sig.inputs):
        yield list(sig.inputs)
        return
    name = sig.inputs[0].name if len(sig.inputs) == 1 else "input"
    for shape in GUESSED_SHAPES:
        yield [TensorSpecInfo(name=name, dtype="float32", shape=list(shape))]


def plans(
    sig: Signature, calls: int = CALLS, seconds: float = SECONDS, seed: int = 0
) -> list[list[Plan]]:
    """For each candidate feed (one when the signature is declared), the calls to make."""
    rng = np.random.default_rng(seed)
    out = []
    for specs in _feeds(sig):
        calls_for = []
        for i in range(calls):
            batch = (1, 2, 1, 3)[i % 4]
            pattern = _PATTERNS[i % len(_PATTERNS)]
            inputs = {
                s.name: _values(_shape(s.shape, batch), _dtype(s), pattern, rng) for s in specs
            }
            at = 0.0 if i < calls // 2 else seconds * (i - calls // 2 + 1) / (calls - calls // 2)
            calls_for.append(Plan(inputs, at))
        out.append(calls_for)
    return out


def run_plans(
    planned: list[list[Plan]], call: Callable[[dict[str, np.ndarray]], None], c: Collected
) -> tuple[int, int]:
    """Make the calls of each candidate feed in turn, at their times, until one feed is
    answered: (calls answered, calls the model raised on). A failure of the sandbox itself (a
    crash, a limit: recorded as the run's error) ends the run."""
    answered = raised = 0
    for plan in planned:
        start = time.monotonic()
        for p in plan:
            time.sleep(max(0.0, start + p.at_s - time.monotonic()))
            try:
                call(p.inputs)
                answered += 1
            except InputError:
                break  # these inputs do not fit: the next guess, if any
            except SandboxError as e:
                if c.error is e:
                    raise
                raised += 1
        if answered:
            break
    return answered, raised


SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "Hello, how are you today?",
    "Airlock is looking at what this model does.",
)
GENERATED_TOKENS = 8


def with_texts(
    text: Callable[..., TextResult], notes: list[str], c: Collected, calls: int = CALLS
) -> int:
    """Exercise a Hugging Face repository with a few ordinary sentences, and a few generated
    tokens for a causal language model; the answered calls."""
    answered = raised = 0
    generate = 0
    for i in range(min(calls, 4)):
        texts = list(SENTENCES[: 1 + i % len(SENTENCES)])
        try:
            result = text(texts[:1] if generate else texts, generate, guessed=True)
            answered += 1
            if result.task == "causal-lm" and not generate:
                generate = GENERATED_TOKENS
        except InputError:
            break
        except SandboxError as e:
            if c.error is e:
                raise
            raised += 1
    notes.append(
        f"exercised after loading: {answered} text call(s) answered, {raised} raised, with "
        f"ordinary sentences{' and generation' if generate else ''}"
    )
    return answered
