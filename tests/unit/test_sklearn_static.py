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
from runner.static import joblib_compressed, npy, pickles, preflight, skops_schema
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
    joblib_compressed.examine(p)  # never raises


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


# --- NumPy ----------------------------------------------------------------------------------------


def test_benign_arrays_are_clean(tmp_path: Path) -> None:
    for path in (
        sklearn_models.save_npy(tmp_path),
        sklearn_models.save_npz(tmp_path),
        sklearn_models.save_npz(tmp_path, "c.npz", compressed=True),
    ):
        assert _verdict(path) == ("clean", []), path
    verdict, _ = _verdict(sklearn_models.save_object_npy(tmp_path))
    assert verdict == "clean"  # a pickle of plain values: AL940 (low) only
    ids = {f.rule_id for f in Sandbox(tmp_path / "obj.npy").preflight_report().findings}
    assert ids == {"AL940"}


def test_an_object_array_member_that_runs_a_command_is_named(tmp_path: Path) -> None:
    path = sklearn_hostile.npz_object_array(tmp_path, str(tmp_path / "marker"))
    imports = {(i.module, i.name, i.member) for i in preflight.examine(path).imports}
    assert ("posix", "system", "objects.npy") in imports
    report = Sandbox(path).preflight_report()
    assert report.verdict.value == "malicious"
    assert {"AL611", "AL940"} <= {f.rule_id for f in report.findings}


@pytest.mark.parametrize(
    "header",
    [
        b"\x93NUMPY\x01\x00\xff\xff",  # longer than the file
        b"\x93NUMPY\x09\x00\x10\x00" + b" " * 16,  # no such version
        b"\x93NUMPY\x01\x00\x10\x00{'descr': [1] * 9}",  # not a literal
        b"\x93NUMPY\x01\x00\x40\x00{'descr': '<f8', 'fortran_order': False, 'shape': (10**9,)}"
        + b" " * 4,  # claims more than the file holds
        b"\x93NUMPY\x02\x00\x00\x00\x10\x00" + b" " * 16,  # over the header bound
    ],
)
def test_an_unreadable_header_is_al941(header: bytes, tmp_path: Path) -> None:
    p = tmp_path / "bad.npy"
    p.write_bytes(header)
    checks = {t.check.value for t in npy.examine(p).tamper}
    assert checks == {"array-header-malformed"}, checks
    assert "AL941" in {r for r, _ in _verdict(p)[1]}


# --- skops ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("estimator", sorted(sklearn_models.ESTIMATORS))
def test_skops_types_are_what_skops_reports_and_benign_ones_are_clean(
    estimator: str, tmp_path: Path
) -> None:
    import json
    import zipfile

    import skops.io

    saved = sklearn_models.saved(estimator, "skops", tmp_path)
    schema = json.loads(zipfile.ZipFile(saved.path).read("schema.json"))
    _, untrusted, cut = skops_schema.walk(schema)
    assert untrusted == set(skops.io.get_untrusted_types(file=saved.path)) and not cut
    assert _verdict(saved.path) == ("clean", [])


def test_a_skops_archive_that_builds_posix_system_is_named(tmp_path: Path) -> None:
    import skops.io

    path = sklearn_hostile.skops_reduce(tmp_path, str(tmp_path / "marker"))
    assert skops.io.get_untrusted_types(file=path) == ["posix.system"]
    report = Sandbox(path).preflight_report()
    assert report.verdict.value == "malicious"
    assert {"AL611", "AL942"} <= {f.rule_id for f in report.findings}
    assert not (tmp_path / "marker").exists()


def test_an_unreadable_schema_is_al941(tmp_path: Path) -> None:
    import zipfile

    for name, data in (("schema.json", b"{not json"), ("other.json", b"{}")):
        p = tmp_path / f"{name}.skops"
        with zipfile.ZipFile(p, "w") as zf:
            zf.writestr(name, data)
        checks = {t.check.value for t in skops_schema.examine(p).tamper}
        assert checks == {"array-header-malformed"}, (name, checks)
    deep = tmp_path / "deep.skops"
    with zipfile.ZipFile(deep, "w") as zf:
        zf.writestr("schema.json", "[" * 200_000 + "]" * 200_000)
    assert {t.check.value for t in skops_schema.examine(deep).tamper} == {"array-header-malformed"}


# --- attacker review: layouts the host read otherwise than joblib and numpy ---------------------


@pytest.mark.parametrize("compress", ["xz", "zlib"])
def test_an_object_dtype_numpy_will_not_reset_is_not_clean(compress: str, tmp_path: Path) -> None:
    """numpy.dtype('O8', False, False) is numpy's singleton, whose __setstate__ numpy ignores:
    a state saying 'no objects' had the host skip the bytes joblib unpickles (verdict clean)."""
    p = sklearn_hostile.joblib_dtype_singleton(tmp_path, str(tmp_path / "m"), compress)
    verdict, worst = _verdict(p)
    assert verdict != "clean"
    assert any("numpy's own pickles never" in evidence for _rule, evidence in worst), worst


@pytest.mark.parametrize("compress", ["xz", "bz2"])
def test_a_pickle_that_goes_on_in_a_second_stream_is_read(compress: str, tmp_path: Path) -> None:
    """lzma.LZMAFile and bz2.BZ2File (joblib's readers) read concatenated streams: the
    command in the second is named, not only 'breaks off'."""
    p = sklearn_hostile.joblib_second_stream(tmp_path, str(tmp_path / "m"), compress)
    assert "posix.system" in _imports(p)
    assert _verdict(p)[0] == "malicious"


@pytest.mark.parametrize("compress", [0, 3])
def test_a_dtype_that_forges_object_pointers_is_not_clean(compress: int, tmp_path: Path) -> None:
    """Allowed names only (numpy.dtype, _reconstruct, ndarray), but the dtype's flags say an
    object dtype holds no objects: numpy takes the file's bytes for object pointers."""
    p = sklearn_hostile.forged_object_pointer(tmp_path, "", compress)
    assert all(classify_global(i.module, i.name) is None for i in preflight.examine(p).imports)
    verdict, worst = _verdict(p)
    assert verdict != "clean"
    assert any("object pointers" in evidence for _rule, evidence in worst), worst


def test_trailing_bytes_after_a_compressed_stream_are_named(tmp_path: Path) -> None:
    import lzma
    import pickle

    p = tmp_path / "tail.xz.joblib"
    p.write_bytes(lzma.compress(pickle.dumps([1, 2], protocol=2)) + b"not a stream")
    assert any("after the pickle's STOP" in t.evidence for t in preflight.examine(p).tamper)
