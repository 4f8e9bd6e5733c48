"""The host's read of Keras configs (runner.static.keras_config, runner.static.hdf5_attrs), by
bytes only: benign .keras and .h5 files are clean; Lambda layers, the safe_mode bypass shapes
(CVE-2025-1550, CVE-2025-8747, CVE-2025-9906), pickled torch modules and configs stored where
the host does not look are findings; hostile bytes never make the reader raise or hang."""

from __future__ import annotations

import json
import warnings
import zipfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.rules.catalog import BY_NAME, FORMAT_SIGNS
from runner.static import hdf5_attrs, keras_config, preflight
from runner.static.signs import Signs
from tests.fixtures import keras_models as km
from tests.hostile import keras_hostile as kh

pytest.importorskip("keras")
h5py = pytest.importorskip("h5py")


def _rules(signs: Signs) -> set[str]:
    return {BY_NAME[FORMAT_SIGNS[t.check.value][0]].id for t in signs.tamper}


def _archive(path: Path, *configs: bytes) -> Path:
    """A .keras-shaped zip with the given config.json member(s)."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("metadata.json", "{}")
        for raw in configs:
            zf.writestr("config.json", raw)
    return path


def _layer(class_name: str, config: dict[str, Any], module: str = "keras.layers") -> dict[str, Any]:
    return {"module": module, "class_name": class_name, "config": config, "registered_name": None}


def _model(*layers: dict[str, Any]) -> bytes:
    seq = {"name": "m", "layers": list(layers)}
    return json.dumps(_layer("Sequential", seq, "keras")).encode()


@pytest.mark.parametrize("build", ["dense", "conv"])
@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_benign_models_are_clean(build: str, suffix: str, tmp_path: Path) -> None:
    path = km.benign(tmp_path, build, suffix)
    signs = keras_config.examine(path)
    assert signs.tamper == [] and signs.imports == []
    result = preflight.bounded(path)  # the whole static read, in its bounded child
    assert not result.aborted and result.tamper == [], result.tamper


HOSTILE = {
    "lambda_keras": {"AL950", "AL953"},
    "lambda_h5": {"AL950", "AL953"},
    "torch_module": {"AL954"},
    "keras_utility": {"AL950", "AL953"},
    "arbitrary_module": {"AL953"},
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_fixtures_are_named(name: str, tmp_path: Path) -> None:
    path = getattr(kh, name)(tmp_path, str(tmp_path / "marker"))
    signs = keras_config.examine(path)
    assert HOSTILE[name] <= _rules(signs), signs.tamper
    if name == "torch_module":  # the pickle's own import, judged by the pickle rules
        assert ("posix", "system") in {(i.module, i.name) for i in signs.imports}
    if name.startswith("lambda"):
        assert any("subprocess" in t.evidence for t in signs.tamper)


@pytest.mark.parametrize(
    ("function", "rule"),
    [
        ("keras.config.enable_unsafe_deserialization", "AL953"),  # CVE-2025-9906
        ("keras.utils.get_file", "AL953"),  # CVE-2025-8747
        ("keras.models.load_model", "AL953"),
        ("keras.datasets.mnist.load_data", "AL953"),  # not on Keras's own block list
        ("keras.src.utils.file_utils.get_file", "AL953"),
        ("os.system", "AL953"),  # CVE-2025-1550
        ("subprocess.check_output", "AL953"),
        ("keras.utils.to_categorical", "AL951"),
        ("mypackage.layers.custom", "AL951"),
    ],
)
def test_named_functions_are_judged(function: str, rule: str, tmp_path: Path) -> None:
    module, _, name = function.rpartition(".")
    ref = {"module": module, "class_name": "function", "config": name, "registered_name": "x"}
    lam = _layer("Lambda", {"name": "l", "function": ref, "arguments": {}})
    signs = keras_config.examine(_archive(tmp_path / "m.keras", _model(lam)))
    assert rule in _rules(signs), signs.tamper


@pytest.mark.parametrize(
    "layer",
    [
        _layer("system", {"name": "a"}, module="os"),  # CVE-2025-1550: a class from any module
        _layer("Dense", {"name": "d", "kernel_initializer": {"class_name": "os.system"}}),
        _layer("Dense", {"name": "d", "activation": {"fn": "os:system"}}),
        # tf.keras's legacy Lambda: a function by name in a module
        {"class_name": "Lambda", "config": {"name": "l", "function": "system", "module": "os"}},
    ],
)
def test_module_shapes_are_dangerous(layer: dict[str, Any], tmp_path: Path) -> None:
    signs = keras_config.examine(_archive(tmp_path / "m.keras", _model(layer)))
    assert "AL953" in _rules(signs), signs.tamper


def test_a_module_that_is_no_name_is_foreign(tmp_path: Path) -> None:
    layer = _layer("Dense", {"name": "d"}, module="keras.layers; import os")
    assert "AL951" in _rules(keras_config.examine(_archive(tmp_path / "m.keras", _model(layer))))


def test_legacy_lambda_bytecode_lists_are_read(tmp_path: Path) -> None:
    from keras.src.utils.python_utils import func_dump

    code, _, _ = func_dump(kh.payload_function(str(tmp_path / "marker")))
    layer = {"class_name": "Lambda", "config": {"name": "l", "function": [code, None, None]}}
    signs = keras_config.examine(_archive(tmp_path / "m.keras", _model(layer)))
    assert {"AL950", "AL953"} <= _rules(signs), signs.tamper


def test_a_decoy_key_or_member_does_not_hide_the_real_one(tmp_path: Path) -> None:
    benign = _model(_layer("Dense", {"name": "d", "units": 2}))
    hostile = _model(_layer("system", {"name": "x"}, module="os"))
    # a duplicate key: json keeps the last, the reader reads both
    twice = b'{"class_name": "Sequential", "module": "os", "module": "keras", "config": {}}'
    for n, raws in enumerate([(benign, hostile), (hostile, benign), (twice,)]):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zipfile warns of the duplicate name
            path = _archive(tmp_path / f"m{n}.keras", *raws)
        assert "AL953" in _rules(keras_config.examine(path)), raws


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"\xff\xfe{}",
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a": ' + b"[" * 20 + b"]" * 20 + b"}",
    ],
)
def test_configs_that_cannot_be_read_are_findings(raw: bytes, tmp_path: Path) -> None:
    signs = keras_config.examine(_archive(tmp_path / "m.keras", raw))
    if raw.startswith(b'{"a"'):
        assert signs.tamper == []  # deep enough to be odd, within the bound: read
    else:
        assert _rules(signs) == {"AL952"}, signs.tamper


def test_an_archive_without_config_json_is_a_finding(tmp_path: Path) -> None:
    path = tmp_path / "m.keras"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("metadata.json", "{}")
        zf.writestr("sub/config.json", _model())
    assert _rules(keras_config.examine(path)) == {"AL952"}


def test_deep_nesting_past_the_walk_bound_is_a_finding(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(keras_config, "MAX_DEPTH", 5)
    raw = json.dumps({"a": [[[[[[[[{"module": "os", "class_name": "system"}]]]]]]]]}).encode()
    assert "AL952" in _rules(keras_config.examine(_archive(tmp_path / "m.keras", raw)))


# --- HDF5: where the model_config attribute can be -------------------------------------------


def _h5(path: Path, libver: str = "earliest", **attrs: Any) -> Path:
    with h5py.File(path, "w", libver=libver) as f:
        for k, v in attrs.items():
            f.attrs[k] = v
    return path


@pytest.mark.parametrize("libver", ["earliest", "v110", "latest"])
def test_the_root_attribute_is_read_as_h5py_reads_it(libver: str, tmp_path: Path) -> None:
    config = _model(_layer("Dense", {"name": "d"})).decode()
    path = _h5(tmp_path / "m.h5", libver, keras_version="3", model_config=config, fixed=b"abc")
    assert hdf5_attrs.root_attribute(path, "model_config").values == [config.encode()]
    assert hdf5_attrs.root_attribute(path, "fixed").values == [b"abc"]


def test_continuation_chunks_are_followed(tmp_path: Path) -> None:
    hostile = _model(_layer("system", {"name": "x"}, module="os")).decode()
    with h5py.File(tmp_path / "m.h5", "w") as f:
        for n in range(40):
            f.attrs[f"pad{n}"] = "z" * 300  # the root's header overflows into continuations
        f.attrs["model_config"] = hostile
    assert "AL953" in _rules(keras_config.examine(tmp_path / "m.h5"))


def test_a_decoy_config_on_a_subgroup_is_not_the_one_read(tmp_path: Path) -> None:
    benign = _model(_layer("Dense", {"name": "d"})).decode()
    hostile = _model(_layer("system", {"name": "x"}, module="os")).decode()
    with h5py.File(tmp_path / "m.h5", "w") as f:
        f.create_group("model_weights").attrs["model_config"] = benign
        f.attrs["model_config"] = hostile
    assert "AL953" in _rules(keras_config.examine(tmp_path / "m.h5"))


def test_dense_attribute_storage_is_not_read_and_says_so(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "m.h5", "w", libver="latest") as f:
        for n in range(20):  # past the compact limit: a fractal heap holds them all
            f.attrs[f"a{n}"] = n
        f.attrs["model_config"] = _model().decode()
    signs = keras_config.examine(tmp_path / "m.h5")
    assert _rules(signs) == {"AL952"} and "dense storage" in signs.tamper[0].evidence


@pytest.mark.parametrize(
    "attrs",
    [{}, {"model_config": 7}, {"model_config": ["a", "b"]}, {"model_config": "{"}],
    ids=["missing", "integer", "array", "not json"],
)
def test_h5_configs_that_cannot_be_read_are_findings(attrs: dict[str, Any], tmp_path: Path) -> None:
    path = _h5(tmp_path / "m.h5", **attrs)
    assert _rules(keras_config.examine(path)) == {"AL952"}


# --- fuzzing ---------------------------------------------------------------------------------

NAMES = ["class_name", "module", "config", "function", "fn", "registered_name", "name", "code"]
VALUES = ["Lambda", "__lambda__", "TorchModuleWrapper", "function", "os", "keras.layers", "x."]
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.sampled_from(VALUES) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(NAMES) | st.text(max_size=4), inner, max_size=5)
    ),
    max_leaves=30,
)
FUZZ = settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(tree=JSON)
def test_fuzzed_configs_never_raise(tree: object, tmp_path_factory: Any) -> None:
    path = tmp_path_factory.mktemp("f") / "m.keras"
    signs = keras_config.examine(_archive(path, json.dumps(tree).encode()))
    assert isinstance(signs, Signs)


@FUZZ
@given(raw=st.binary(max_size=512))
def test_fuzzed_config_bytes_never_raise(raw: bytes, tmp_path_factory: Any) -> None:
    path = tmp_path_factory.mktemp("f") / "m.keras"
    assert isinstance(keras_config.examine(_archive(path, raw)), Signs)


@pytest.fixture(scope="module")
def h5_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return km.benign(tmp_path_factory.mktemp("h5"), "dense", ".h5").read_bytes()


@FUZZ
@given(data=st.data())
def test_damaged_h5_files_never_raise(
    data: st.DataObject, h5_bytes: bytes, tmp_path_factory: Any
) -> None:
    raw = bytearray(h5_bytes[:8192])  # the superblock, the root's header, the global heap
    for _ in range(data.draw(st.integers(1, 12))):
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] = data.draw(st.integers(0, 255))
    path = tmp_path_factory.mktemp("f") / "m.h5"
    path.write_bytes(bytes(raw))
    assert isinstance(keras_config.examine(path), Signs)
