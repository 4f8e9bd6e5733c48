"""Keras 3 (.keras) and legacy HDF5 (.h5) models, on Keras's torch backend.

Loaded the way a user who trusts the file loads it: keras.saving.load_model(path,
safe_mode=False, compile=False), so Lambda layers' bytecode and a TorchModuleWrapper's pickle
run here, in the sandbox, where they are watched. A file whose name does not end the way
load_model dispatches on (.keras, .h5, .hdf5) goes to the same function load_model would call
for its content (saving_lib.load_model for a zip, load_model_from_hdf5 for HDF5).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np

from runner.worker.loaders import Loaded, LoadError, Options, Spec
from runner.worker.shared.formats import Format

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _keras() -> Any:
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras

    return keras


def warm(path: Path | None) -> None:
    """Import Keras (torch backend) and h5py, build and run a tiny Sequential of our own, and
    save and load it in both formats (in memory), so the loaders' lazy imports are baseline."""
    keras = _keras()
    import h5py
    from keras.src.legacy.saving import legacy_h5_format
    from keras.src.saving import saving_lib

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, activation="relu")])
    x = np.zeros((1, 2), np.float32)
    _numpy(keras, model(x, training=False))
    buf = io.BytesIO()
    saving_lib.save_model(model, buf)
    buf.seek(0)
    _numpy(keras, saving_lib.load_model(buf, compile=False, safe_mode=True)(x, training=False))
    h5 = io.BytesIO()
    with h5py.File(h5, "w") as f:
        legacy_h5_format.save_model_to_hdf5(model, f)
    h5.seek(0)
    with h5py.File(h5, "r") as f:
        again = legacy_h5_format.load_model_from_hdf5(f, compile=False, safe_mode=True)
    _numpy(keras, again(x, training=False))


def _numpy(keras: Any, value: Any) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(value))


def load(path: Path, architecture: Path | None, threads: int, options: Options) -> Loaded:
    keras = _keras()
    import torch

    torch.set_num_threads(max(threads, 1))
    with path.open("rb") as f:
        hdf5 = f.read(8) == HDF5_SIGNATURE
    fmt = Format.KERAS_H5 if hdf5 else Format.KERAS
    try:
        model = _load_model(keras, path, hdf5)
    except Exception as e:  # Keras raises whatever its config's objects raise
        raise LoadError(f"Keras could not load the model: {type(e).__name__}: {e}") from e
    inputs = _specs(getattr(model, "inputs", None) or [], "input")
    outputs = _specs(getattr(model, "outputs", None) or [], "output")
    if not inputs:
        note = "the model declares no inputs (a subclassed model that was never built)"
        return Loaded(fmt, [], outputs, None, note=note)
    names = [s.name for s in outputs]

    def run(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = [s.name for s in inputs if s.name not in feed]
        if missing:
            raise LoadError(f"missing input(s): {', '.join(missing)}")
        args = [np.asarray(feed[s.name]) for s in inputs]
        with torch.no_grad():
            result = model(args[0] if len(args) == 1 else args, training=False)
        return _outputs(keras, result, names)

    note = f"Keras {keras.__version__} ({keras.backend.backend()} backend), safe_mode=False"
    return Loaded(fmt, inputs, outputs, run, note=note)


def _load_model(keras: Any, path: Path, hdf5: bool) -> Any:
    suffix = path.suffix.lower()
    if (hdf5 and suffix in (".h5", ".hdf5")) or (not hdf5 and suffix == ".keras"):
        return keras.saving.load_model(str(path), compile=False, safe_mode=False)
    if hdf5:
        from keras.src.legacy.saving import legacy_h5_format

        return legacy_h5_format.load_model_from_hdf5(str(path), compile=False, safe_mode=False)
    from keras.src.saving import saving_lib

    return saving_lib.load_model(str(path), compile=False, safe_mode=False)


def _specs(tensors: list[Any], kind: str) -> list[Spec]:
    """Names, dtypes and shapes of the model's input or output tensors: an input by its own
    name, an output by the layer that makes it; names made unique."""
    out: list[Spec] = []
    seen: set[str] = set()
    for n, t in enumerate(tensors):
        name = str(getattr(t, "name", "") or "")
        if kind == "output":
            history = getattr(t, "_keras_history", None)
            layer = getattr(history, "operation", None) if history is not None else None
            name = str(getattr(layer, "name", "") or name)
        name = name or f"{kind}_{n}"
        if name in seen:
            name = f"{name}_{n}"
        seen.add(name)
        shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in (t.shape or ()))
        out.append(Spec(name, str(getattr(t, "dtype", "") or ""), shape))
    return out


def _outputs(keras: Any, result: Any, names: list[str]) -> dict[str, np.ndarray]:
    if isinstance(result, dict):
        return {str(k): _numpy(keras, v) for k, v in result.items()}
    values = list(result) if isinstance(result, (list, tuple)) else [result]
    out: dict[str, np.ndarray] = {}
    for n, value in enumerate(values):
        name = names[n] if n < len(names) else f"output_{n}"
        out[name] = _numpy(keras, value)
    return out
