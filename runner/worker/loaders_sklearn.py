"""scikit-learn estimators saved with joblib (compressed or not), skops, or plain pickle, loaded
inside the sandbox only.

joblib.load runs the dump's pickle (the observation); a skops archive is loaded with
skops.io.load(trusted=<the types it names that skops does not trust by default>), as a user
who trusts the file would, so whatever those types do on load is seen. `run` takes "X", float64
of shape (-1, n_features_in_), and gives predict_proba where the estimator has it, else predict.
Threads: scikit-learn's own (n_jobs as the estimator says, OpenMP and BLAS as many as the
sandbox's CPUs); threadpoolctl is not used, as every call of it dlopens the libraries again.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from runner.worker.loaders import Loaded, LoadError, Options, Spec
from runner.worker.shared.formats import Format

MAX_SCAN_BYTES = 256 << 20  # of a plain pickle, looking for what it names
_warmed = False


def warm(path: Path | None) -> None:
    """Import scikit-learn, joblib, skops and threadpoolctl, fit and predict a tiny logistic
    regression and forest of our own, and save and load them the ways a model comes (joblib
    plain and compressed, skops): scikit-learn's lazy imports and OpenMP start-up are the
    baseline, not the model's doing. Once per process."""
    global _warmed
    if _warmed:
        return
    _warmed = True
    import joblib
    import skops.io
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.array([[0.0, 1.0], [1.0, 0.0], [0.2, 0.9], [0.8, 0.1]])
    y = np.array([0, 1, 0, 1])
    models = [
        make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y),
        RandomForestClassifier(n_estimators=2, random_state=0).fit(x, y),
    ]
    for model in models:
        model.predict_proba(x)
        for compress in (0, ("zlib", 1), ("gzip", 1), ("bz2", 1), ("xz", 1)):
            buf = io.BytesIO()
            joblib.dump(model, buf, compress=compress)
            buf.seek(0)
            joblib.load(buf).predict_proba(x)
        data = skops.io.dumps(model)
        skops.io.loads(data, trusted=skops.io.get_untrusted_types(data=data)).predict(x)


def load(path: Path, architecture: Path | None, threads: int, options: Options) -> Loaded:
    fmt = Format.SKOPS if _is_zip(path) else Format.JOBLIB
    obj = _load_skops(path) if fmt is Format.SKOPS else load_joblib(path)
    return from_object(fmt, obj, threads)


def _is_zip(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(4) == b"PK\x03\x04"


def load_joblib(path: Path) -> Any:
    import joblib

    try:
        return joblib.load(path)  # the observation: what loading does
    except Exception as e:
        raise LoadError(f"joblib.load failed: {type(e).__name__}: {e}") from e


def _load_skops(path: Path) -> Any:
    import skops.io

    try:
        untrusted = skops.io.get_untrusted_types(file=path)
        return skops.io.load(path, trusted=untrusted)  # as a user who trusts the file
    except Exception as e:
        raise LoadError(f"skops.io.load failed: {type(e).__name__}: {e}") from e


def mentions(path: Path, needles: tuple[bytes, ...], limit: int = MAX_SCAN_BYTES) -> bool:
    """Whether the file's first `limit` bytes hold any of `needles` (read in chunks)."""
    longest = max(len(n) for n in needles)
    with path.open("rb") as f:
        tail, read = b"", 0
        while read < limit:
            chunk = f.read(1 << 20)
            if not chunk:
                return False
            window = tail + chunk
            if any(n in window for n in needles):
                return True
            tail, read = window[-longest:], read + len(chunk)
    return False


def is_joblib_dump(path: Path) -> bool:
    """A plain pickle that joblib wrote: it names joblib's array wrapper."""
    return mentions(path, (b"NumpyArrayWrapper",))


def is_estimator(obj: Any) -> bool:
    import sys

    base = sys.modules.get("sklearn.base")  # only when the pickle itself imported sklearn
    return base is not None and isinstance(obj, base.BaseEstimator)


def from_object(fmt: Format, obj: Any, threads: int = 1) -> Loaded:
    """A loaded object as a model: an estimator with predict runs; anything else is
    load-only, and says what it is."""
    if not is_estimator(obj) or not hasattr(obj, "predict"):
        return Loaded(
            fmt, [], [], None, note=f"a {type(obj).__name__}, not an estimator: load-only"
        )
    n = getattr(obj, "n_features_in_", None)
    width = int(n) if isinstance(n, (int, np.integer)) and n > 0 else -1
    proba = hasattr(obj, "predict_proba")
    name = "probabilities" if proba else "predictions"
    inputs = [Spec("X", "float64", (-1, width))]
    outputs = [Spec(name, "float64", (-1, -1)) if proba else Spec(name, "", (-1,))]
    method = obj.predict_proba if proba else obj.predict

    def run(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if "X" not in feed:
            raise LoadError("the estimator takes one input, X")
        x = np.asarray(feed["X"], dtype=np.float64)
        out = np.asarray(method(x))
        if out.dtype.kind not in "biufc":
            raise LoadError(f"{name} are {out.dtype} (labels), not numbers: not sent")
        return {name: out}

    note = f"a {type(obj).__module__}.{type(obj).__qualname__}; run gives {name}"
    return Loaded(fmt, inputs, outputs, run, note=note)
