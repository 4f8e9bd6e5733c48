"""The host's readers of TensorFlow SavedModel graphs and TFLite flatbuffers
(runner.static.tf_graph, runner.static.tflite): models TensorFlow builds at test time (benign:
no finding; hostile: the op named), graphs written by hand for what TensorFlow would not write
(a primitive op called by name, a second op field, the saver's reach, assets, bounds), and
hypothesis fuzzing of both readers (never raise, bounded, printable evidence)."""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.rules.catalog import BY_NAME, FORMAT_SIGNS
from runner.static import preflight, tf_graph, tflite
from runner.static.tamper import Tamper, TamperKind
from runner.worker.shared.formats import Format, detect
from tests.fixtures import tf_models

FUZZ = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)
KINDS = [
    "savedmodel", "savedmodel_write", "savedmodel_pyfunc", "savedmodel_save", "keras_export",
    "savedmodel_dump", "savedmodel_v1_restore", "tflite", "tflite_dynamic", "tflite_flex_write",
]  # fmt: skip
needs_tf = pytest.mark.skipif(not tf_models.have_tensorflow(), reason="needs tensorflow")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if not tf_models.have_tensorflow():
        pytest.skip("needs tensorflow")
    d = tmp_path_factory.mktemp("tf")
    return tf_models.build(KINDS, d, str(d / "marker"))


def _ids(found: Iterable[Tamper]) -> set[str]:
    return {BY_NAME[FORMAT_SIGNS[t.check.value][0]].id for t in found}


def _graph(model: Path) -> list[Tamper]:
    return tf_graph.examine(model / "saved_model.pb").tamper


# --- models TensorFlow builds ------------------------------------------------------------------


@needs_tf
def test_benign_models_have_no_finding(built: dict[str, Path]) -> None:
    for kind in ("savedmodel", "keras_export"):
        assert detect(built[kind]).format is Format.SAVEDMODEL
        assert _graph(built[kind]) == [], kind
        result = preflight.examine(built[kind])
        assert [t for t in result.tamper if t.check.value in FORMAT_SIGNS] == [], kind
    for kind in ("tflite", "tflite_dynamic"):
        assert detect(built[kind]).format is Format.TFLITE
        assert tflite.examine(built[kind]).tamper == [], kind


@needs_tf
def test_hostile_savedmodels_are_named(built: dict[str, Path]) -> None:
    write = _graph(built["savedmodel_write"])
    assert _ids(write) == {"AL970"} and "op WriteFile" in write[0].evidence
    assert "__inference_serve" in write[0].evidence
    pyfunc = _graph(built["savedmodel_pyfunc"])
    assert _ids(pyfunc) == {"AL971"} and "EagerPyFunc" in pyfunc[0].evidence
    save = _graph(built["savedmodel_save"])  # SaveV2 in the serving function, not the saver
    assert _ids(save) == {"AL970"} and "SaveV2" in save[0].evidence
    assert "outside the saver" in save[0].evidence
    dump = _graph(built["savedmodel_dump"])  # no tf.raw_ops wrapper, registered all the same
    assert _ids(dump) == {"AL970"} and "op DumpTensor" in dump[0].evidence
    v1 = _graph(built["savedmodel_v1_restore"])  # the v1 loader runs the restore op at load
    assert _ids(v1) == {"AL970"}
    assert "when the saver restores (at load): op SaveV2" in v1[0].evidence


@needs_tf
def test_flex_write_file_in_tflite(built: dict[str, Path]) -> None:
    found = tflite.examine(built["tflite_flex_write"]).tamper
    assert _ids(found) == {"AL970", "AL973"}
    assert any("Flex op WriteFile" in t.evidence for t in found)


@needs_tf
def test_flex_op_judged_by_its_node_def(built: dict[str, Path], tmp_path: Path) -> None:
    """The Flex delegate runs the op the options' NodeDef names, whatever the custom code says:
    a renamed custom code still shows WriteFile; a custom op that is not Flex is AL973 only."""
    data = built["tflite_flex_write"].read_bytes()
    renamed = tmp_path / "renamed.tflite"
    renamed.write_bytes(data.replace(b"FlexWriteFile", b"FlexIdentityX"))
    found = tflite.examine(renamed).tamper
    assert "AL970" in _ids(found)
    assert any("Flex op WriteFile (custom code FlexIdentityX)" in t.evidence for t in found)
    custom = tmp_path / "custom.tflite"
    data = data.replace(b"FlexWriteFile", b"MyWriteFile13")
    custom.write_bytes(data.replace(b"FlexAsString", b"MyAsString12"))
    assert _ids(tflite.examine(custom).tamper) == {"AL973"}


@needs_tf
def test_broken_files_are_unreadable(built: dict[str, Path], tmp_path: Path) -> None:
    for kind in ("tflite", "tflite_flex_write"):
        data = built[kind].read_bytes()
        cut = tmp_path / f"{kind}.tflite"
        cut.write_bytes(data[: len(data) // 3])
        assert "AL972" in _ids(tflite.examine(cut).tamper), kind
    pb = (built["savedmodel"] / "saved_model.pb").read_bytes()
    broken = tmp_path / "saved_model.pb"
    broken.write_bytes(pb[: len(pb) // 2])
    assert _ids(tf_graph.examine(broken).tamper) == {"AL972"}


# --- graphs written by hand ---------------------------------------------------------------------


def _v(n: int) -> bytes:
    out = b""
    while True:
        if n < 0x80:
            return out + bytes([n])
        out += bytes([n & 0x7F | 0x80])
        n >>= 7


def _f(number: int, payload: bytes | str) -> bytes:
    raw = payload.encode() if isinstance(payload, str) else payload
    return _v(number << 3 | 2) + _v(len(raw)) + raw


def _node(name: str, *ops: str, inputs: tuple[str, ...] = (), f: str = "", **attrs: str) -> bytes:
    out = _f(1, name) + b"".join(_f(2, op) for op in ops) + b"".join(_f(3, i) for i in inputs)
    if f:
        out += _f(5, _f(1, "f") + _f(2, _f(10, _f(1, f))))
    for key, value in attrs.items():
        out += _f(5, _f(1, key) + _f(2, _f(2, value)))
    return out


def _fn(name: str, *nodes: bytes) -> bytes:
    return _f(1, _f(1, name)) + b"".join(_f(3, n) for n in nodes)


def _saved(nodes: list[bytes], fns: Iterable[bytes] = (), extra: bytes = b"") -> bytes:
    graph = b"".join(_f(1, n) for n in nodes) + _f(2, b"".join(_f(1, f) for f in fns))
    return _f(2, _f(2, graph) + extra)


_SAVER = _f(3, _f(1, "saver_filename:0") + _f(2, "save:0") + _f(3, "restore"))
_SIG = _f(5, _f(1, "serving_default") + _f(2, _f(2, _f(1, "y") + _f(2, _f(1, "serve:0")))))
_SAVE_FN = _fn("save_fn", _node("s", "SaveV2"), _node("m", "MergeV2Checkpoints"))


def _examine(tmp_path: Path, data: bytes) -> list[Tamper]:
    p = tmp_path / "saved_model.pb"
    p.write_bytes(data)
    return tf_graph.examine(p).tamper


def test_checkpoint_ops_of_the_saver_are_its_own(tmp_path: Path) -> None:
    main = [
        _node("saver_filename", "Placeholder"),
        _node("save", "StatefulPartitionedCall", inputs=("saver_filename",), f="save_fn"),
        _node("restore", "RestoreV2", inputs=("saver_filename",)),
        _node("serve", "StatefulPartitionedCall", f="serve_fn"),
    ]
    serve = _fn("serve_fn", _node("mm", "MatMul"))
    assert _examine(tmp_path, _saved(main, [_SAVE_FN, serve], _SAVER + _SIG)) == []
    # the serving function calls the saver's function: its SaveV2 is no longer the saver's own
    serve = _fn("serve_fn", _node("call", "PartitionedCall", f="save_fn"))
    found = _examine(tmp_path, _saved(main, [_SAVE_FN, serve], _SAVER + _SIG))
    assert _ids(found) == {"AL970"} and any("SaveV2" in t.evidence for t in found)
    # a restore op a signature needs is not the saver's either
    sig = _f(5, _f(1, "s") + _f(2, _f(2, _f(1, "y") + _f(2, _f(1, "restore:0")))))
    assert _ids(_examine(tmp_path, _saved(main, [_SAVE_FN], _SAVER + sig))) == {"AL970"}
    # a function nothing calls is judged as one that runs
    assert _ids(_examine(tmp_path, _saved([], [_SAVE_FN]))) == {"AL970"}


def test_the_restore_side_of_the_saver_writes_nothing(tmp_path: Path) -> None:
    """TensorFlow's v1 loader runs the saver's restore op at load: a SaveV2 or a merge it
    reaches (directly or through a function) writes files then; the save side never runs."""
    base = [_node("saver_filename", "Placeholder"), _node("serve", "MatMul")]
    for restore in (
        _node("restore", "NoOp", inputs=("^w", "^r")),
        _node("restore", "StatefulPartitionedCall", inputs=("saver_filename",), f="save_fn"),
    ):
        main = [*base, restore, _node("w", "SaveV2"), _node("r", "RestoreV2")]
        found = _examine(tmp_path, _saved(main, [_SAVE_FN], _SAVER + _SIG))
        assert _ids(found) == {"AL970"}, found
        assert any("when the saver restores" in t.evidence for t in found), found
    # restoring only reads: the saver's own
    main = [*base, _node("restore", "NoOp", inputs=("^r",)), _node("r", "RestoreV2")]
    assert _examine(tmp_path, _saved(main, [], _SAVER + _SIG)) == []


def test_saver_functions_called_as_an_op_or_through_a_sparse_output(tmp_path: Path) -> None:
    main = [
        _node("saver_filename", "Placeholder"),
        _node("save", "StatefulPartitionedCall", inputs=("saver_filename",), f="save_fn"),
        _node("serve", "StatefulPartitionedCall", f="serve_fn"),
    ]
    by_op = _fn("serve_fn", _node("call", "save_fn"))  # a node whose op is a function's name
    assert _ids(_examine(tmp_path, _saved(main, [_SAVE_FN, by_op], _SAVER + _SIG))) == {"AL970"}
    # a signature whose output is a sparse tensor made by the saver's node
    serve = _fn("serve_fn", _node("mm", "MatMul"))
    sparse = _f(4, _f(1, "save:0") + _f(2, "save:1") + _f(3, "save:2"))
    sig = _f(5, _f(1, "s") + _f(2, _f(2, _f(1, "y") + _f(2, sparse))))
    found = _examine(tmp_path, _saved(main, [_SAVE_FN, serve], _SAVER + sig))
    assert _ids(found) == {"AL970"}, found
    composite = _f(5, _f(2, sparse))
    sig = _f(5, _f(1, "s") + _f(2, _f(2, _f(1, "y") + _f(2, composite))))
    assert _ids(_examine(tmp_path, _saved(main, [_SAVE_FN, serve], _SAVER + sig))) == {"AL970"}


def test_ops_the_op_lists_missed(tmp_path: Path) -> None:
    """Ops registered in tensorflow-cpu without a tf.raw_ops wrapper that write files, and ops
    that run a graph given as data (a dataset's GraphDef in a string constant)."""
    for op in ("DumpTensor", "CalibrationStatisticsSaver", "Skipgram", "DTensorRestoreV2"):
        assert _ids(_examine(tmp_path, _saved([], [_fn("f", _node("n", op))]))) == {"AL970"}, op
    for op in ("DatasetFromGraph", "MlirPassthroughOp"):
        found = _examine(tmp_path, _saved([_node("n", op)]))
        assert _ids(found) == {"AL972"} and "graph held as data" in found[0].evidence, op


def test_a_function_is_known_by_its_last_name(tmp_path: Path) -> None:
    """OpDef's name is singular (the last one wins), so a function given many names is one
    function: judged once, however many names it was given."""
    names = b"".join(_f(1, _f(1, f"n{i}")) for i in range(20_000))
    fn = names + b"".join(_f(3, _node(f"w{i}", "WriteFile")) for i in range(200))
    graph = _f(2, _f(1, fn))
    found = _examine(tmp_path, _f(2, _f(2, graph)))
    assert _ids(found) == {"AL970"} and "function 'n19999'" in found[0].evidence
    assert len(found) == tf_graph.MAX_SHOWN + 1


def test_ops_called_by_name_and_second_op_fields(tmp_path: Path) -> None:
    by_name = _saved([_node("call", "PartitionedCall", f="WriteFile")])
    assert _ids(_examine(tmp_path, by_name)) == {"AL970"}
    second = _saved([_node("n", "Identity", "PyFunc")])  # protobuf keeps the last op field
    assert _ids(_examine(tmp_path, second)) == {"AL971"}
    net = _saved([], [_fn("f", _node("d", "DataServiceDatasetV4"))])
    assert _ids(_examine(tmp_path, net)) == {"AL974"}


def test_attributes_decide_print_and_proto_ops(tmp_path: Path) -> None:
    quiet = _saved([_node("p", "PrintV2", output_stream="stderr")])
    assert _examine(tmp_path, quiet) == []
    to_file = _saved([_node("p", "PrintV2", output_stream="file:///tmp/x")])
    assert _ids(_examine(tmp_path, to_file)) == {"AL970"}
    proto = _saved([_node("d", "DecodeProtoV2", descriptor_source="/etc/descriptors")])
    assert _ids(_examine(tmp_path, proto)) == {"AL970"}


def test_assets_outside_the_directory(tmp_path: Path) -> None:
    for name, bad in (("vocab.txt", False), ("../../etc/passwd", True), ("/etc/passwd", True)):
        found = _examine(tmp_path, _saved([], [], _f(6, _f(2, name))))
        assert (_ids(found) == {"AL975"}) is bad, name
        assert bad or found == []


def test_what_cannot_be_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _ids(_examine(tmp_path, b"")) == {"AL972"}
    assert _ids(_examine(tmp_path, b"\x12\xff\xff\xff\x0f")) == {"AL972"}  # past the end
    assert _ids(_examine(tmp_path, _f(1, b"x"))) == {"AL972"}  # no meta graph
    deep = _f(1, "f") + _f(2, b"")
    for _ in range(tf_graph.MAX_ATTR_DEPTH + 2):
        deep = _f(1, "n") + _f(2, _f(10, _f(1, "g") + _f(2, deep)))
    assert _ids(_examine(tmp_path, _saved([_f(1, "x") + _f(5, deep)]))) == {"AL972"}
    text = tmp_path / "saved_model.pbtxt"
    text.write_text('meta_graphs { graph_def { node { op: "WriteFile" } } }')
    assert _ids(tf_graph.examine(text).tamper) == {"AL972"}
    many = _saved([_node(f"n{i}", "Identity") for i in range(50)])
    monkeypatch.setattr(tf_graph, "MAX_FIELDS", 20)
    found = tf_graph.Wire(many, 20)
    with pytest.raises(tf_graph.Unreadable):
        list(tf_graph.saved_model(found, len(many)))
    # what was read before the break is still judged
    partial = _saved([_node("w", "WriteFile")]) + b"\x12\x05ab"
    assert _ids(_examine(tmp_path, partial)) == {"AL970", "AL972"}


# --- fuzzing ----------------------------------------------------------------------------------


def _bounded(found: list[Tamper]) -> None:
    for t in found:
        assert isinstance(t.check, TamperKind)
        assert len(t.evidence) <= 500 and t.evidence.isprintable(), t.evidence


@contextlib.contextmanager
def _file(data: bytes, name: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="fuzz-tf-") as d:
        path = Path(d) / name
        path.write_bytes(data)
        yield path


_SEED_PB = _saved(
    [_node("save", "StatefulPartitionedCall", inputs=("saver_filename",), f="save_fn")],
    [_SAVE_FN, _fn("serve", _node("w", "WriteFile", f="x"))],
    _SAVER + _SIG + _f(6, _f(2, "a.txt")),
)


def _mutated(seed: bytes) -> st.SearchStrategy[bytes]:
    edits = st.lists(st.tuples(st.integers(0, len(seed) - 1), st.integers(0, 255)), max_size=8)
    return st.tuples(edits, st.integers(0, len(seed))).map(
        lambda e: bytes(_apply(seed, e[0]))[: e[1]]
    )


def _apply(seed: bytes, edits: list[tuple[int, int]]) -> bytearray:
    out = bytearray(seed)
    for at, value in edits:
        out[at] = value
    return out


@FUZZ
@given(st.binary(max_size=2048) | _mutated(_SEED_PB))
def test_fuzz_savedmodel_reader(data: bytes) -> None:
    start = time.monotonic()
    with _file(data, "saved_model.pb") as path:
        found = tf_graph.examine(path).tamper
    assert time.monotonic() - start < 5
    _bounded(found)


@needs_tf
def test_fuzz_tflite_reader(built: dict[str, Path]) -> None:
    seeds = [built["tflite"].read_bytes(), built["tflite_flex_write"].read_bytes()]

    @FUZZ
    @given(st.sampled_from([0, 1]).flatmap(lambda i: _mutated(seeds[i])) | st.binary(max_size=512))
    def check(data: bytes) -> None:
        start = time.monotonic()
        with _file(data, "m.tflite") as path:
            found = tflite.examine(path).tamper
        assert time.monotonic() - start < 5
        _bounded(found)

    check()


@FUZZ
@given(st.binary(max_size=512))
def test_fuzz_flex_options(data: bytes) -> None:
    with contextlib.suppress(tf_graph.Unreadable):
        tflite.flex_node(data)
