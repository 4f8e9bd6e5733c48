"""scikit-learn, joblib, skops and NumPy files in a real sandbox: the outputs equal what the
same libraries give in-process, and the verdict of benign files is clean; a real model from
PyPI (alt-profanity-check's calibrated linear SVM and its TF-IDF vectorizer, joblib dumps)
is scanned and run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import runner
from tests.fixtures import sklearn_models

pytest.importorskip("sklearn")

CASES = [
    ("forest", "pickle"),
    ("forest", "joblib"),
    ("forest", "joblib-zlib"),
    ("forest", "joblib-bz2"),
    ("forest", "skops"),
    ("logistic", "joblib-gzip"),
    ("logistic", "joblib-xz"),
    ("pipeline", "joblib"),
    ("pipeline", "skops"),
]


def _clean(report: runner.Report) -> None:
    assert report.verdict is runner.Verdict.CLEAN, [
        (f.rule_id, f.evidence[:3]) for f in report.findings
    ]


@pytest.mark.parametrize(("estimator", "kind"), CASES, ids=[f"{e}-{k}" for e, k in CASES])
def test_predict_proba_matches_in_process(estimator: str, kind: str, tmp_path: Path) -> None:
    saved = sklearn_models.saved(estimator, kind, tmp_path)
    x = sklearn_models.sample_input()
    with runner.Sandbox(saved.path) as sb:
        sig = sb.describe()
        out = sb.infer({"X": x})
    assert [(s.name, s.dtype, s.shape) for s in sig.inputs] == [
        ("X", "float64", [-1, sklearn_models.N_FEATURES])
    ]
    np.testing.assert_array_equal(out["probabilities"], sklearn_models.expected(saved.model, x))
    _clean(sb.report())


def test_arrays_come_back_as_np_load_gives_them(tmp_path: Path) -> None:
    path = sklearn_models.save_npz(tmp_path, compressed=True)
    with runner.Sandbox(path) as sb:
        out = sb.infer({})
    expected = sklearn_models.arrays()
    assert set(out) == {"weights", "ids"}  # the strings stay in the sandbox, named in the note
    for name, arr in out.items():
        np.testing.assert_array_equal(arr, expected[name])
    report = sb.report()
    _clean(report)
    assert report.model.format == "numpy"


def _profanity() -> Path:
    pc = pytest.importorskip("profanity_check")
    return Path(pc.__file__).parent / "data"


def test_a_real_model_from_pypi_is_clean_and_answers_as_in_process(tmp_path: Path) -> None:
    import joblib

    data = _profanity()
    vectorizer = joblib.load(data / "vectorizer.joblib")
    model = joblib.load(data / "model.joblib")
    x = vectorizer.transform(["have a nice day", "you are a stupid idiot"]).toarray()
    with runner.Sandbox(data / "model.joblib") as sb:
        out = sb.infer({"X": x})
    np.testing.assert_array_equal(out["probabilities"], model.predict_proba(x))
    assert out["probabilities"][1, 1] > out["probabilities"][0, 1]  # the insult is offensive
    _clean(sb.report())
    with runner.Sandbox(data / "vectorizer.joblib") as sb:  # a transformer: load-only
        assert not sb.describe().can_infer
    _clean(sb.report())
