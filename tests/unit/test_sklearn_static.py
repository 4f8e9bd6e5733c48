"""The host's static read of scikit-learn, joblib, skops and NumPy files, by bytes only (no
Docker): benign files of every kind are clean; hostile ones are named; the readers never
raise, never hang and read within their bounds, whatever the bytes (hypothesis)."""

from __future__ import annotations

import io
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.controller.sandbox import Sandbox
from runner.rules.catalog import Severity
from runner.rules.pickle_globals import classify_global
from runner.static import joblib_layout, npy, pickles, preflight, skops_schema
from tests.fixtures import sklearn_models
from tests.hostile import sklearn_hostile

pytest.importorskip("sklearn")

JOBLIB_KINDS = [k for k in sklearn_models.SAVERS if k != "skops"]


def _verdict(path: Path) -> tuple[str, list[tuple[str, str]]]:
    report = Sandbox(path).preflight_report()
    above = [f for f in report.findings if f.severity.rank > Severity.LOW.rank]
    return report.verdict.value, [(f.rule_id, f.evidence[0]) for f in above]


def _imports(path: Path) -> set[str]:
    return {f"{i.module}.{i.name}" for i in preflight.examine(path).imports}


@pytest.mark.parametrize("kind", JOBLIB_KINDS)
def test_a_benign_forest_in_every_joblib_form_is_clean(kind: str, tmp_path: Path) -> None:
    saved = sklearn_models.saved("forest", kind, tmp_path)
    verdict, worst = _verdict(saved.path)
    assert verdict == "clean", worst
    result = preflight.examine(saved.path)
    assert "sklearn.tree._tree.Tree" in _imports(saved.path)
    assert all(classify_global(i.module, i.name) is None for i in result.imports)


@pytest.mark.parametrize("estimator", ["logistic", "pipeline"])
@pytest.mark.parametrize("kind", ["pickle", "joblib", "joblib-zlib"])
def test_benign_estimators_are_clean(estimator: str, kind: str, tmp_path: Path) -> None:
    saved = sklearn_models.saved(estimator, kind, tmp_path)
    assert _verdict(saved.path) == ("clean", [])


def test_the_allow_list_is_current() -> None:
    """The committed list is what the script makes from the pinned scikit-learn."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, str(root / "scripts" / "gen_sklearn_allowed.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_no_sklearn_function_at_large_is_allowed() -> None:
    for path in (
        "sklearn.datasets._openml.fetch_openml",
        "sklearn.utils._testing.assert_run_python_script_without_output",
        "sklearn.utils.fixes.parse_version",
        "joblib.numpy_pickle.NDArrayWrapper",
        "joblib.load",
        "sklearn.metrics._dist_metrics.PyFuncDistance64",
        "numpy.void",
    ):
        module, _, name = path.rpartition(".")
        assert classify_global(module, name) is not None, path


@pytest.mark.parametrize("compress", [None, "zlib", "bz2"])
def test_a_command_in_a_joblib_dump_is_named(compress: str | None, tmp_path: Path) -> None:
    for build in (sklearn_hostile.joblib_command, sklearn_hostile.joblib_object_array):
        path = build(tmp_path, str(tmp_path / "marker"), compress)
        assert "posix.system" in _imports(path), build.__name__
        verdict, worst = _verdict(path)
        assert verdict == "malicious" and "AL611" in {r for r, _ in worst}
        assert not (tmp_path / "marker").exists()


def test_array_bytes_pickle_load_would_run_are_read_too(tmp_path: Path) -> None:
    path = sklearn_hostile.joblib_hidden_opcodes(tmp_path, str(tmp_path / "marker"))
    assert "posix.system" in _imports(path)


@pytest.mark.parametrize(
    "build", [sklearn_hostile.joblib_oversized_array, sklearn_hostile.joblib_in_frame]
)
def test_a_layout_the_walk_cannot_follow_fails_closed(build: object, tmp_path: Path) -> None:
    path = build(tmp_path, "")  # type: ignore[operator]
    checks = {t.check.value for t in preflight.examine(path).tamper}
    assert "pickle-truncated" in checks
    assert _verdict(path)[0] != "clean"


def test_a_stream_that_inflates_past_its_bound_is_al941(tmp_path: Path) -> None:
    path = sklearn_hostile.joblib_bomb(tmp_path, "")
    result = preflight.bounded(path)
    assert not result.aborted
    assert "array-header-malformed" in {t.check.value for t in result.tamper}
    assert "AL941" in {r for r, _ in _verdict(path)[1]}


def test_a_truncated_compressed_dump_is_not_clean(tmp_path: Path) -> None:
    saved = sklearn_models.saved("forest", "joblib-zlib", tmp_path)
    data = saved.path.read_bytes()
    saved.path.write_bytes(data[: len(data) // 2])
    assert _verdict(saved.path)[0] != "clean"


# --- fuzzing: never raise, never hang, bounded ---------------------------------------------------

FUZZ = settings(
    max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _seed_joblib() -> bytes:
    buf = io.BytesIO()
    import joblib
    import numpy as np

    joblib.dump({"a": np.arange(3.0), "o": np.array([1, "x"], dtype=object)}, buf)
    return buf.getvalue()


SEED = _seed_joblib()


@FUZZ
@given(st.data())
def test_fuzz_the_joblib_walk(data: st.DataObject) -> None:
    raw = bytearray(SEED)
    for _ in range(data.draw(st.integers(1, 8))):
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(1, len(raw)))
    blob = bytes(raw[:cut])
    walked = pickles.walk_pickle_file(io.BytesIO(blob), len(blob))
    assert walked.end is None or walked.end <= len(blob)


@FUZZ
@given(tail=st.binary(max_size=2000), kind=st.sampled_from(["zlib", "gzip", "bz2", "xz"]))
def test_fuzz_the_compressed_reader(tail: bytes, kind: str, tmp_path: Path) -> None:
    head = {"zlib": zlib.compress(SEED)[:40], "gzip": b"\x1f\x8b\x08\x00", "bz2": b"BZh9"}
    p = tmp_path / f"f.{kind}.joblib"
    p.write_bytes(head.get(kind, b"\xfd7zXZ\x00") + tail)
    joblib_layout.examine(p)  # never raises


@FUZZ
@given(blob=st.binary(max_size=600))
def test_fuzz_the_npy_and_skops_readers(blob: bytes, tmp_path: Path) -> None:
    p = tmp_path / "f.npy"
    p.write_bytes(b"\x93NUMPY" + blob)
    npy.examine(p)
    z = tmp_path / "f.skops"
    import zipfile

    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("schema.json", blob)
    skops_schema.examine(z)
