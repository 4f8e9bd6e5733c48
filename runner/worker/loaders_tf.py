"""TensorFlow SavedModel directories, loaded with tf.saved_model.load in the TensorFlow image.

The model's serving_default signature (or its only one) is what runs: its keyword inputs and
its outputs are the Specs, and a call feeds it constants. The default image has no TensorFlow:
there the load fails with NO_TENSORFLOW, which names the image to build.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from runner.worker.loaders import Loaded, LoadError, Options, Spec
from runner.worker.shared.formats import Format

NO_TENSORFLOW = (
    "a TensorFlow SavedModel needs the TensorFlow sandbox image, and this one has no "
    "TensorFlow: build it with 'airlock image build --with tensorflow'"
)
SIGNATURE = "serving_default"


def _tf() -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    try:
        import tensorflow as tf
    except ImportError as e:
        raise LoadError(NO_TENSORFLOW) from e
    return tf


def warm(path: Path | None) -> None:
    """Import TensorFlow (one thread for its pools, before its runtime starts), build and call
    a tiny tf.function over a variable, and import the SavedModel loader, so TensorFlow's
    start-up is the baseline. Nothing is written: a SavedModel of our own would be saved to
    scratch, and those writes would count as the model's."""
    tf = _tf()
    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass  # the runtime already started (a second warm)
    w = tf.Variable([1.0])

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])  # type: ignore[untyped-decorator]
    def serve(x: Any) -> Any:
        return {"y": tf.nn.relu(x * w)}

    serve(tf.constant(np.zeros(1, np.float32)))
    serve.get_concrete_function()(tf.constant(np.zeros(2, np.float32)))
    from tensorflow.python.saved_model import load as _load  # noqa: F401  (the loader's imports)


def _spec(name: str, spec: Any) -> Spec:
    dtype = getattr(spec, "dtype", None)
    shape = getattr(spec, "shape", None)
    dims: tuple[int, ...] = ()
    if shape is not None and shape.rank is not None:
        dims = tuple(-1 if d is None else int(d) for d in shape.as_list())
    return Spec(name, np.dtype(dtype.as_numpy_dtype).name if dtype is not None else "", dims)


def load(path: Path, architecture: Path | None, threads: int, options: Options) -> Loaded:
    if architecture is not None:
        raise LoadError("a SavedModel takes no architecture file")
    tf = _tf()
    directory = path.parent if path.is_file() else path
    try:
        model = tf.saved_model.load(str(directory))
    except Exception as e:  # TensorFlow raises errors of its own kinds
        raise LoadError(f"TensorFlow could not load the SavedModel: {str(e)[:2000]}") from e
    signatures = dict(getattr(model, "signatures", {}) or {})
    name = SIGNATURE if SIGNATURE in signatures else next(iter(sorted(signatures)), "")
    if not name:
        return Loaded(Format.SAVEDMODEL, [], [], None, "loaded; it has no signature to call")
    sig = signatures[name]
    args, kwargs = sig.structured_input_signature
    if args:
        raise LoadError(f"the signature {name!r} takes positional inputs, not named ones")
    inputs = [_spec(k, v) for k, v in sorted(kwargs.items())]
    outputs_of = sig.structured_outputs
    outputs = (
        [_spec(k, v) for k, v in sorted(outputs_of.items())] if isinstance(outputs_of, dict) else []
    )
    wanted = {s.name: s for s in inputs}

    def run(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing, extra = sorted(set(wanted) - set(feed)), sorted(set(feed) - set(wanted))
        if missing or extra:
            raise ValueError(
                f"the signature's inputs are {sorted(wanted)}; missing {missing}, unknown {extra}"
            )
        result = sig(**{k: tf.constant(v) for k, v in feed.items()})
        if not isinstance(result, dict):
            result = {"output_0": result}
        return {str(k): np.asarray(v.numpy()) for k, v in result.items()}

    return Loaded(
        Format.SAVEDMODEL, inputs, outputs, run, f"the {name!r} signature, with TensorFlow"
    )
