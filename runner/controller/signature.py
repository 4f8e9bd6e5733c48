"""The model's signature as the report and the caller see it (the names as shown), and the
exercise's calls built from it, bounded: a description whose sizes no array can have is out of
bounds (AL912), never a crash of the host."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from runner.channel.replies import Description, Faults, FeedError, feed_for_call
from runner.controller.exercise import Plan, plans
from runner.errors import InputError, untrusted_text
from runner.report import Signature, TensorSpecInfo

log = logging.getLogger(__name__)


def exercise_plans(
    d: Description, faults: Faults | None, calls: int, seconds: float
) -> list[list[Plan]] | None:
    """The exercise's calls for this description, or None when its sizes are ones no array
    can have (recorded in faults: the description is out of bounds)."""
    try:
        return plans(signature(d), calls, seconds)
    except Exception as e:  # numpy refusing an array of the declared sizes
        log.debug("building the exercise's inputs failed", exc_info=True)
        if faults is not None:
            what = untrusted_text(f"{type(e).__name__}: {e}", 120)
            faults.problem(
                faults.description, f"inputs of the declared sizes cannot be built ({what})"
            )
        return None


def signature(d: Description) -> Signature:
    return Signature(
        format=d.format,
        inputs=[TensorSpecInfo(name=s.name, dtype=s.dtype, shape=list(s.shape)) for s in d.inputs],
        outputs=[
            TensorSpecInfo(name=s.name, dtype=s.dtype, shape=list(s.shape)) for s in d.outputs
        ],
        can_infer=d.can_infer,
        note=d.note,
    )


def check_inputs(d: Description, inputs: Mapping[str, Any] | np.ndarray) -> dict[str, np.ndarray]:
    """The caller's inputs as the call's feed: a single array for a single-input model, names
    and shapes checked here first (the worker checks them too) for a clear, local error."""
    if not isinstance(inputs, Mapping):
        if len(d.inputs) != 1:
            names = [s.name for s in d.inputs]
            raise InputError(
                f"the model takes {len(d.inputs)} inputs {names}; a single array was given",
                "pass a mapping of input name to array",
            )
        inputs = {d.inputs[0].call_name: inputs}
    try:
        return feed_for_call(d.inputs, dict(inputs))
    except FeedError as e:
        raise InputError(str(e), "see the model's inputs with 'airlock describe'") from e
