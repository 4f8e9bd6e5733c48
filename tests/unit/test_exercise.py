"""The inputs scan builds from a model's signature: bounded, typed as declared, varied."""

from __future__ import annotations

import numpy as np

from runner.controller import exercise
from runner.report import Signature, TensorSpecInfo


def _sig(*inputs: TensorSpecInfo) -> Signature:
    return Signature(format="onnx", inputs=list(inputs), outputs=[], can_infer=True)


def test_declared_inputs_are_followed_and_bounded() -> None:
    sig = _sig(
        TensorSpecInfo(name="ids", dtype="int64", shape=[-1, 16]),
        TensorSpecInfo(name="img", dtype="float16", shape=[-1, 3, 4096, 4096]),
    )
    [calls] = exercise.plans(sig, calls=8, seconds=5.0)
    assert len(calls) == 8
    for call in calls:
        ids, img = call.inputs["ids"], call.inputs["img"]
        assert ids.dtype == np.int64 and ids.shape[1:] == (16,)
        assert img.dtype == np.float16 and img.ndim == 4 and img.size <= exercise.MAX_ELEMENTS
    assert {c.inputs["ids"].shape[0] for c in calls} > {1}  # batch sizes vary
    assert len({c.inputs["img"].tobytes() for c in calls}) > 3  # and so do the values
    times = [c.at_s for c in calls]
    assert times == sorted(times) and times[-1] == 5.0 and times[0] == 0.0


def test_a_model_that_declares_nothing_gets_a_few_guesses() -> None:
    guesses = exercise.plans(_sig(TensorSpecInfo(name="x", dtype="", shape=[])), calls=2)
    assert len(guesses) == len(exercise.GUESSED_SHAPES)
    assert [g[0].inputs["x"].shape for g in guesses] == list(exercise.GUESSED_SHAPES)
    assert exercise.plans(_sig(), calls=1)[0][0].inputs.keys() == {"input"}
