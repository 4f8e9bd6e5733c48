"""Probe sets: the inputs a model is run on to see how it behaves.

A probe set is an .npz of named input arrays that share their first (row) dimension, plus two
optional arrays: `category` (one label per row, e.g. "digit-3" or "trigger") and `label` (the
ground truth per row). Every other array is an input.
"""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from runner.behaviour.probes_text import SUFFIXES as SUFFIXES_TEXT
from runner.errors import InputError, UsageError

CATEGORY, LABEL = "category", "label"
RESERVED = (CATEGORY, LABEL)
CHUNK_BYTES = 16 << 20  # input bytes per inference call when the model takes a batch


@dataclass(frozen=True)
class ProbeSet:
    inputs: dict[str, np.ndarray]
    categories: np.ndarray  # str, one per row ("all" when the file has none)
    labels: np.ndarray | None
    digest: str
    source: str = ""
    names: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return len(self.categories)

    def category_names(self) -> list[str]:
        return sorted({str(c) for c in self.categories})


def digest_arrays(arrays: dict[str, np.ndarray]) -> str:
    """sha256 over every array's name, dtype, shape and bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}\0{a.dtype.str}\0{list(a.shape)}\0".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def load_arrays(path: Path) -> np.ndarray | dict[str, np.ndarray]:
    """A .npy file's array, or an .npz file's named arrays; never unpickles. Raises
    ValueError saying why the file is neither."""
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            return np.asarray(data)
        with data:
            arrays = {k: data[k] for k in data.files}
    except (
        ValueError,
        OSError,
        AttributeError,
        EOFError,
        TypeError,
        KeyError,
        zipfile.BadZipFile,
    ) as e:
        raise ValueError(str(e)) from e
    for k, v in arrays.items():
        if not isinstance(v, np.ndarray):
            raise ValueError(f"member {k!r} is not an array")
    return arrays


def read_npz(path: str | Path) -> dict[str, np.ndarray]:
    p = Path(path)
    if p.suffix.lower() in SUFFIXES_TEXT:
        raise UsageError(
            f"probes file {p}: text probes (.jsonl) are for airlock diff",
            "pass an .npz of named input arrays here",
        )
    if not p.is_file():
        raise UsageError(f"probes file {p} not found", "pass an .npz of named input arrays")
    hint = "save probes with numpy.savez(path, name=array, ...)"
    try:
        arrays = load_arrays(p)
    except ValueError as e:
        raise UsageError(f"probes file {p} is not an .npz of arrays ({e})", hint) from e
    if not isinstance(arrays, dict):
        raise UsageError(
            f"probes file {p} is not an .npz of arrays (a single array, not an "
            ".npz of named arrays)",
            hint,
        )
    return arrays


def from_arrays(arrays: dict[str, np.ndarray], source: str = "") -> ProbeSet:
    where = source or "the probes"
    inputs = {k: v for k, v in arrays.items() if k not in RESERVED}
    if not inputs:
        raise UsageError(
            f"{where}: no input arrays (only {sorted(arrays)})",
            "add the model's inputs as named arrays",
        )
    rows = {k: (v.shape[0] if v.ndim else None) for k, v in inputs.items()}
    if None in rows.values() or len(set(rows.values())) != 1:
        raise UsageError(
            f"{where}: the input arrays must share their first dimension (rows); got {rows}",
            "put one probe per row",
        )
    n = next(iter(rows.values()))
    assert n is not None
    if n == 0:
        raise UsageError(f"{where}: the probes have no rows", "put at least one probe in it")
    cats = arrays.get(CATEGORY)
    if cats is None:
        cats = np.full(n, "all")
    elif cats.ndim != 1 or len(cats) != n:
        raise UsageError(
            f"{where}: 'category' must hold one label per row ({n}); "
            f"its shape is {list(cats.shape)}"
        )
    labels = arrays.get(LABEL)
    if labels is not None and (labels.ndim != 1 or len(labels) != n):
        raise UsageError(
            f"{where}: 'label' must hold one value per row ({n}); its shape is {list(labels.shape)}"
        )
    return ProbeSet(
        inputs=inputs,
        categories=np.asarray(cats).astype(str),
        labels=labels,
        digest=digest_arrays(arrays),
        source=source,
        names=sorted(inputs),
    )


def load(path: str | Path) -> ProbeSet:
    return from_arrays(read_npz(path), str(path))


def feed_for(signature: Any, inputs: dict[str, np.ndarray]) -> tuple[dict[str, Any] | None, str]:
    """The probe arrays this model takes, by input name, or None and why not."""
    if not inputs:
        return None, "no probes given: load-only"
    if signature is None or not signature.can_infer:
        return None, f"load-only: {signature.note if signature else 'no signature'}"
    names = [s.name for s in signature.inputs]
    if names and set(names) <= set(inputs):
        return {n: inputs[n] for n in names}, ""
    if len(names) == 1 and len(inputs) == 1:
        return {names[0]: next(iter(inputs.values()))}, ""
    if not names and len(inputs) == 1:
        return dict(inputs), ""
    return None, f"no probe named {names}: load-only"


def run(
    infer: Callable[[dict[str, Any]], dict[str, np.ndarray]], signature: Any, probes: ProbeSet
) -> dict[str, np.ndarray]:
    """Every probe row through the model, in as few calls as the model's shapes allow: chunks
    of rows when its first dimension is free, one row at a time when it is fixed at 1. The
    outputs are joined back together along the first dimension."""
    feed, why = feed_for(signature, probes.inputs)
    if feed is None:
        raise InputError(
            f"the probes cannot be fed to this model ({why})",
            "name the probe arrays after the model's inputs (airlock describe)",
        )
    n = probes.rows
    fixed = {s.shape[0] for s in signature.inputs if s.shape and s.shape[0] != -1}
    if not fixed:  # the first dimension is free: chunks of rows
        row_bytes = max(1, sum(a[:1].nbytes for a in feed.values()))
        step = max(1, min(n, CHUNK_BYTES // row_bytes))
    elif len(fixed) == 1 and next(iter(fixed)) > 0 and n % next(iter(fixed)) == 0:
        step = next(iter(fixed))  # a fixed batch size: that many rows a call
    else:
        raise InputError(
            f"the model takes batches of {sorted(fixed)} rows and the probes have {n}",
            "give a multiple of the batch size, or export the model with a free batch dimension",
        )
    parts: list[dict[str, np.ndarray]] = []
    for start in range(0, n, step):
        parts.append(infer({k: v[start : start + step] for k, v in feed.items()}))
    out: dict[str, np.ndarray] = {}
    for name in parts[0]:
        chunks = [p[name] for p in parts]
        if any(c.ndim == 0 or c.shape[0] != min(step, n - i * step) for i, c in enumerate(chunks)):
            raise InputError(
                f"output {name!r} does not have one row per probe",
                "behaviour can only be compared on per-row outputs",
            )
        out[name] = np.concatenate(chunks)
    return out
