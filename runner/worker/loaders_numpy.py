"""NumPy .npy and .npz files, loaded inside the sandbox only, with allow_pickle=True (what a
user who trusts the file does): an object array is unpickled here, where what its pickle does
is seen.

A .npy/.npz holds data, not a model: `run` takes no input and gives back the arrays that can
cross the wire (numbers and booleans; object, string and structured arrays are named in the
note), so the host can compare them with what np.load gives in-process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from runner.worker.loaders import Loaded, LoadError, Options, Spec
from runner.worker.shared.formats import Format
from runner.worker.shared.tensors import ALLOWED_DTYPES

MAX_ARRAYS = 1024  # members of an .npz loaded
_warmed = False


def warm(path: Path | None) -> None:
    """np.load of a tiny .npy, .npz and object array of our own (numpy's lazy imports: the
    format module, zipfile, pickle), before the model's bytes are read. Once per process."""
    global _warmed
    if _warmed:
        return
    _warmed = True
    import io
    import pickle  # noqa: F401

    for save in (np.save, np.savez, np.savez_compressed):
        buf = io.BytesIO()
        save(buf, np.array([1, "a"], dtype=object), allow_pickle=True)
        buf.seek(0)
        loaded = np.load(buf, allow_pickle=True)
        if hasattr(loaded, "files"):
            _ = [loaded[k] for k in loaded.files]


def load(path: Path, architecture: Path | None, threads: int, options: Options) -> Loaded:
    arrays = read(path)
    sendable = {k: v for k, v in arrays.items() if v.dtype.name in ALLOWED_DTYPES}
    held = {k: str(v.dtype) for k, v in arrays.items() if k not in sendable}
    outputs = [Spec(k, v.dtype.name, tuple(v.shape)) for k, v in sendable.items()]
    note = f"{len(arrays)} array(s), no inference: run gives back {len(sendable)}"
    if held:
        shown = ", ".join(f"{k} ({t})" for k, t in list(held.items())[:10])
        note += f"; not sent (not numbers): {shown}"

    def run(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: np.ascontiguousarray(v) for k, v in sendable.items()}

    return Loaded(Format.NUMPY, [], outputs, run, note=note)


def read(path: Path) -> dict[str, np.ndarray]:
    """Every array in the file, each loaded (an .npz member is unpickled only when read)."""
    try:
        loaded: Any = np.load(path, allow_pickle=True)  # the observation: what loading does
        if not hasattr(loaded, "files"):
            return {"array": np.asarray(loaded)}
        with loaded:
            names = list(loaded.files)[:MAX_ARRAYS]
            return {n: np.asarray(loaded[n]) for n in names}
    except Exception as e:
        raise LoadError(f"np.load failed: {type(e).__name__}: {e}") from e
